// Property tests of the shard core: random command sequences (SKUs with and without a drop,
// links, several buyers, every mode, restocks and write-offs, pays, cancels, expiries,
// malformed commands, a clock that mostly advances and sometimes jumps back) are applied to
// the core and to the reference model in test/support/reference-model.ts; after every step
// the answers, the events and the shard clock must agree, and the invariants of
// shared/API.md must hold. Further properties check that snapshots round-trip at any point
// and that the core is deterministic.

import fc from 'fast-check';
import { Packr } from 'msgpackr';
import { describe, expect, test } from 'vitest';
import {
  apply, createShardState, fromSnapshot, shardForSku, toSnapshot,
  type Applied, type Command, type DomainEvent, type Mode, type ShardSnapshot, type ShardState,
} from '../src/domain/index.js';
import { ReferenceShard, STOCK_MAX, type ModelAnswer, type ModelCommand, type ModelConfig } from './support/reference-model.js';

const T0 = 1_000_000_000;
/**
 * Every plan runs on shard SHARD_ID of SHARD_COUNT, so that placement matters (checked in
 * the first test below): a, e, w and n have their home on this shard, x and z elsewhere;
 * drop D lives on this shard, drops E and Q elsewhere. So a, e, w and x (the last two of
 * drop D) can be created here, n only ever by name (it is mostly linked, to E or Q), and z
 * never: its name routes elsewhere.
 */
const SHARD_COUNT = 4;
const SHARD_ID = 1;
const DROP = 'D';
const AWAY_DROPS = ['E', 'Q'];
const SKU_DROPS: Record<string, string | null> = { a: null, e: null, w: DROP, x: DROP };
const SKU_NAMES = ['a', 'e', 'w', 'x'];
const LINKED = 'n';
const NEVER = 'z';
const ANY_SKU = fc.oneof(
  { weight: 12, arbitrary: fc.constantFrom(...SKU_NAMES) },
  { weight: 3, arbitrary: fc.constant(LINKED) },
  { weight: 1, arbitrary: fc.constant(NEVER) },
);
const BUYERS = ['u1', 'u2', 'u3'];
const UNKNOWN_ID = `${SHARD_ID}.zzzzzzzzzz`;

interface SkuPolicy {
  maxPerBuyer: number;
  minAccountAgeSeconds: number;
  minPastOrders: number;
}

type Op =
  | {
      k: 'upsert'; sku: string; stock: number; mode: Mode | undefined; holdSeconds: number | undefined;
      startsAt: number | undefined; endsAt: number | undefined; lowStock: number | undefined;
      drop: 'policy' | 'omit' | 'wrong';
    }
  | { k: 'adjust'; sku: string; delta: number }
  | { k: 'link'; sku: string; dropId: string }
  | {
      k: 'reserve'; sku: string; buyer: string; qty: number; idemKey: string | undefined;
      accountAgeSeconds: number | undefined; pastOrders: number | undefined;
      /** Length of the nonce, 0..8 (it is zero-padded to 8 in the id). */
      nonceLength: number;
    }
  /** One of MALFORMED: a command the core must refuse invalid_request without a change. */
  | { k: 'malformed'; which: number }
  /** Sends the latest reserve again, as a client retrying would. */
  | { k: 'repeat' }
  | { k: 'pay'; pick: Pick; paymentRef: string | undefined }
  | { k: 'cancel'; pick: Pick }
  | { k: 'expire' }
  | { k: 'getSku'; sku: string }
  | { k: 'getRes'; pick: Pick };

interface Step {
  dtMs: number;
  op: Op;
}

interface Plan {
  config: ModelConfig;
  policies: Record<string, SkuPolicy>;
  steps: Step[];
}

// ---- generators -------------------------------------------------------------------------

const maybe = <T>(arb: fc.Arbitrary<T>) => fc.option(arb, { nil: undefined });
/** A sale-window bound as an offset from T0: undefined leaves it as is, 0 opens it. */
const windowOffset = fc.oneof(
  { weight: 8, arbitrary: fc.constant(undefined) },
  { weight: 2, arbitrary: fc.constant(0) },
  { weight: 3, arbitrary: fc.integer({ min: -10_000, max: 150_000 }) },
);
/** Which reservation a pay, cancel or read names: a recent one, any one, or none of ours. */
type Pick = { recent: number } | { any: number } | 'unknown';
const pick: fc.Arbitrary<Pick> = fc.oneof(
  { weight: 6, arbitrary: fc.nat(3).map((recent) => ({ recent })) },
  { weight: 6, arbitrary: fc.nat(1000).map((any) => ({ any })) },
  { weight: 1, arbitrary: fc.constant('unknown' as const) },
);

/** Malformed commands, given the id of the latest reservation (or an unknown one). */
const MALFORMED: ((latestId: string) => Command)[] = [
  () => ({ t: 'res.reserve', sku: 'a', buyerId: 'u1', qty: 0, nonce: 'm0' }),
  () => ({ t: 'res.reserve', sku: 'a', buyerId: 'u1', qty: 1001, nonce: 'm1' }),
  () => ({ t: 'res.reserve', sku: 'w', buyerId: 'u2', qty: 1.5, nonce: 'm2' }),
  () => ({ t: 'res.reserve', sku: 'x', buyerId: 'u2', qty: 1, nonce: '123456789' }),
  () => ({ t: 'res.reserve', sku: 'a', buyerId: 'u3', qty: 1, nonce: 'AB' }),
  () => ({ t: 'res.reserve', sku: 'e', buyerId: '', qty: 1, nonce: 'm5' }),
  () => ({ t: 'res.reserve', sku: 'e', buyerId: 'u1', qty: 1, nonce: 'm6', idemKey: '' }),
  () => ({ t: 'sku.upsert', sku: 'a', stock: -1 }),
  () => ({ t: 'sku.upsert', sku: 'e', stock: STOCK_MAX + 1 }),
  () => ({ t: 'sku.upsert', sku: 'w', holdSeconds: 0 }),
  () => ({ t: 'sku.upsert', sku: 'x', mode: 'bogus' as Mode }),
  () => ({ t: 'sku.upsert', sku: 'a', lowStockThreshold: -1 }),
  () => ({ t: 'sku.upsert', sku: LINKED, dropId: '' }),
  () => ({ t: 'sku.adjust', sku: 'a', delta: 0.5 }),
  () => ({ t: 'sku.adjust', sku: 'e', delta: STOCK_MAX + 1 }),
  () => ({ t: 'sku.link', sku: LINKED, dropId: '' }),
  (latestId) => ({ t: 'res.pay', id: latestId, paymentRef: '' }),
];

const opArb: fc.Arbitrary<Op> = fc.oneof(
  {
    weight: 3,
    arbitrary: fc.record({
      k: fc.constant('upsert' as const), sku: ANY_SKU, stock: fc.nat(8),
      mode: maybe(fc.constantFrom<Mode>('pre_deduct', 'on_order', 'on_payment')),
      holdSeconds: maybe(fc.integer({ min: 1, max: 120 })), startsAt: windowOffset, endsAt: windowOffset,
      lowStock: maybe(fc.nat(4)), drop: fc.constantFrom<'policy' | 'omit' | 'wrong'>('policy', 'policy', 'omit', 'wrong'),
    }),
  },
  { weight: 2, arbitrary: fc.record({ k: fc.constant('adjust' as const), sku: ANY_SKU, delta: fc.integer({ min: -4, max: 6 }) }) },
  {
    weight: 2,
    arbitrary: fc.record({
      k: fc.constant('link' as const), sku: fc.constantFrom(LINKED, LINKED, LINKED, 'w', 'x', 'a', NEVER),
      dropId: fc.constantFrom(DROP, ...AWAY_DROPS, AWAY_DROPS[0]!),
    }),
  },
  {
    weight: 12,
    arbitrary: fc.record({
      k: fc.constant('reserve' as const), sku: ANY_SKU, buyer: fc.constantFrom(...BUYERS), qty: fc.integer({ min: 1, max: 3 }),
      idemKey: maybe(fc.constantFrom('k1', 'k2', 'same')), accountAgeSeconds: maybe(fc.constantFrom(0, 30, 120)),
      pastOrders: maybe(fc.nat(3)), nonceLength: fc.integer({ min: 0, max: 8 }),
    }),
  },
  { weight: 2, arbitrary: fc.constant({ k: 'repeat' as const }) },
  { weight: 5, arbitrary: fc.record({ k: fc.constant('pay' as const), pick, paymentRef: maybe(fc.constantFrom('p1', 'p2')) }) },
  { weight: 3, arbitrary: fc.record({ k: fc.constant('cancel' as const), pick }) },
  { weight: 3, arbitrary: fc.constant({ k: 'expire' as const }) },
  { weight: 1, arbitrary: fc.record({ k: fc.constant('getSku' as const), sku: ANY_SKU }) },
  { weight: 1, arbitrary: fc.record({ k: fc.constant('getRes' as const), pick }) },
  { weight: 1, arbitrary: fc.record({ k: fc.constant('malformed' as const), which: fc.nat(MALFORMED.length - 1) }) },
);

const dtArb = fc.oneof(
  { weight: 3, arbitrary: fc.constant(0) },
  { weight: 7, arbitrary: fc.integer({ min: 1, max: 2000 }) },
  { weight: 1, arbitrary: fc.integer({ min: 2000, max: 60_000 }) },
  { weight: 1, arbitrary: fc.integer({ min: -5000, max: -1 }) },
);

/**
 * Three shapes of config: windows of up to a minute with retention well past them; windows
 * and retention longer than any run, with small expiry batches; and short windows, small
 * batches and retention that may be shorter than the window (holds wait behind the batch
 * bound, keys are re-queued, and retention drops reservations with their keys).
 *
 * `snapshotSafe` keeps retention at least two idempotency windows. No property needs it
 * any more: stale key-queue entries (which a snapshot does not carry) are no longer counted
 * as a change; the regression test is at the end of domain-snapshot.test.ts.
 */
function configArb(snapshotSafe: boolean): fc.Arbitrary<ModelConfig> {
  const placement = { shardId: SHARD_ID, shardCount: SHARD_COUNT };
  return fc.oneof(
    fc.record({
      idempotencyWindowMs: fc.integer({ min: 1000, max: 60_000 }),
      extraRetentionMs: fc.integer({ min: 30_000, max: 120_000 }),
      liveReservationsMax: fc.constantFrom(3, 5, 10_000),
    }).map(({ idempotencyWindowMs, extraRetentionMs, liveReservationsMax }) => ({
      ...placement, idempotencyWindowMs, liveReservationsMax, expireBatchMax: 10_000,
      settledRetentionMs: (snapshotSafe ? 2 * idempotencyWindowMs : idempotencyWindowMs) + extraRetentionMs,
    })),
    fc.record({ liveReservationsMax: fc.constantFrom(3, 10_000), expireBatchMax: fc.integer({ min: 1, max: 3 }) })
      .map(({ liveReservationsMax, expireBatchMax }) => ({
        ...placement, idempotencyWindowMs: 1e12, settledRetentionMs: 1e12, liveReservationsMax, expireBatchMax,
      })),
    fc.record({
      idempotencyWindowMs: fc.integer({ min: 500, max: 10_000 }), retentionMs: fc.integer({ min: 1000, max: 40_000 }),
      liveReservationsMax: fc.constantFrom(3, 10_000), expireBatchMax: fc.constantFrom(1, 2, 3, 10_000),
    }).map(({ idempotencyWindowMs, retentionMs, liveReservationsMax, expireBatchMax }) => ({
      ...placement, idempotencyWindowMs, liveReservationsMax, expireBatchMax,
      settledRetentionMs: snapshotSafe ? 2 * idempotencyWindowMs + retentionMs : retentionMs,
    })),
  );
}

const policyArb = fc.record({
  maxPerBuyer: fc.constantFrom(0, 0, 1, 2, 3, 4),
  minAccountAgeSeconds: fc.constantFrom(0, 0, 0, 60),
  minPastOrders: fc.constantFrom(0, 0, 0, 2),
});

/** Creates the four SKUs first (with random stock, mode, hold and threshold), so that most steps hit one. */
const setupArb: fc.Arbitrary<Step[]> = fc.tuple(...SKU_NAMES.map((sku) => fc.record({
  stock: fc.nat(6), mode: fc.constantFrom<Mode>('pre_deduct', 'on_order', 'on_payment'),
  holdSeconds: fc.integer({ min: 5, max: 120 }), lowStock: maybe(fc.nat(4)),
}).map(({ stock, mode, holdSeconds, lowStock }): Step => ({
  dtMs: 0,
  op: { k: 'upsert', sku, stock, mode, holdSeconds, startsAt: undefined, endsAt: undefined, lowStock, drop: 'policy' },
}))));

function planArb(maxSteps: number, snapshotSafe = false): fc.Arbitrary<Plan> {
  return fc.record({
    config: configArb(snapshotSafe),
    policies: fc.record({ a: policyArb, e: policyArb, drop: policyArb })
      .map(({ a, e, drop }) => ({ a, e, w: drop, x: drop, [LINKED]: a, [NEVER]: e })),
    setup: setupArb,
    steps: fc.array(fc.record({ dtMs: dtArb, op: opArb }), { minLength: 1, maxLength: maxSteps, size: 'max' }),
  }).map(({ config, policies, setup, steps }) => ({ config, policies, steps: [...setup, ...steps] }));
}

// ---- translation of a step into an engine command and a model command --------------------

interface Context {
  plan: Plan;
  /** Engine ids of the reservations created so far, in creation order. */
  ids: string[];
  stepIndex: number;
  lastReserve: Command | null;
}

/** A nonce of the given length (0..8), different at every step. */
function nonceOf(i: number, length: number): string {
  return length === 0 ? '' : i.toString(36).padStart(8, '0').slice(8 - length);
}

function translate(op: Op, ctx: Context): { command: Command; model: ModelCommand } {
  const same = (command: Command) => ({ command, model: command as ModelCommand });
  const n = ctx.ids.length;
  const pickIndex = (p: Pick) => (p === 'unknown' || n === 0 ? -1 : 'recent' in p ? Math.max(0, n - 1 - p.recent) : p.any % n);
  const idOf = (i: number) => (i < 0 ? UNKNOWN_ID : ctx.ids[i]!);
  switch (op.k) {
    case 'upsert': {
      const policy = ctx.plan.policies[op.sku]!;
      const c: Extract<Command, { t: 'sku.upsert' }> = {
        t: 'sku.upsert', sku: op.sku, stock: op.stock, maxPerBuyer: policy.maxPerBuyer,
        minAccountAgeSeconds: policy.minAccountAgeSeconds, minPastOrders: policy.minPastOrders,
      };
      if (op.mode !== undefined) c.mode = op.mode;
      if (op.holdSeconds !== undefined) c.holdSeconds = op.holdSeconds;
      if (op.startsAt !== undefined) c.startsAtMs = op.startsAt === 0 ? 0 : T0 + op.startsAt;
      if (op.endsAt !== undefined) c.endsAtMs = op.endsAt === 0 ? 0 : T0 + op.endsAt;
      if (op.lowStock !== undefined) c.lowStockThreshold = op.lowStock;
      // A wrong drop lives on another shard: drop_mismatch on an update, invalid_request on
      // a create (it does not route here), moved or drop_mismatch for the linked SKU.
      if (op.drop === 'wrong') c.dropId = AWAY_DROPS[0]!;
      else if (op.drop === 'policy') c.dropId = SKU_DROPS[op.sku] ?? null;
      return same(c);
    }
    case 'adjust': return same({ t: 'sku.adjust', sku: op.sku, delta: op.delta });
    case 'link': return same({ t: 'sku.link', sku: op.sku, dropId: op.dropId });
    case 'reserve': {
      const c: Extract<Command, { t: 'res.reserve' }> = {
        t: 'res.reserve', sku: op.sku, buyerId: op.buyer, qty: op.qty, nonce: nonceOf(ctx.stepIndex, op.nonceLength),
      };
      // 'same' names the SKU and qty in the key, so that a repeat is a replay, not a conflict.
      if (op.idemKey !== undefined) c.idemKey = op.idemKey === 'same' ? `r-${op.sku}-${op.qty}` : op.idemKey;
      if (op.accountAgeSeconds !== undefined) c.accountCreatedAtMs = T0 - op.accountAgeSeconds * 1000;
      if (op.pastOrders !== undefined) c.pastOrders = op.pastOrders;
      return same(c);
    }
    case 'malformed': {
      const latest = n - 1;
      const command = MALFORMED[op.which]!(idOf(latest));
      if (command.t !== 'res.pay') return same(command);
      const model: ModelCommand = { t: 'res.pay', index: latest };
      if (command.paymentRef !== undefined) model.paymentRef = command.paymentRef;
      return { command, model };
    }
    case 'pay': {
      const i = pickIndex(op.pick);
      const command: Command = { t: 'res.pay', id: idOf(i) };
      const model: ModelCommand = { t: 'res.pay', index: i };
      if (op.paymentRef !== undefined) command.paymentRef = model.paymentRef = op.paymentRef;
      return { command, model };
    }
    case 'cancel': {
      const i = pickIndex(op.pick);
      return { command: { t: 'res.cancel', id: idOf(i) }, model: { t: 'res.cancel', index: i } };
    }
    case 'getRes': {
      const i = pickIndex(op.pick);
      return { command: { t: 'res.get', id: idOf(i) }, model: { t: 'res.get', index: i } };
    }
    case 'repeat': return same(ctx.lastReserve ?? { t: 'sku.get', sku: 'a' });
    case 'expire': return same({ t: 'res.expire' });
    case 'getSku': return same({ t: 'sku.get', sku: op.sku });
  }
}

function newEngine(config: ModelConfig): ShardState {
  const { shardId, shardCount, ...rest } = config;
  return guarded(createShardState(shardId, shardCount, { ...rest, idempotencyKeysMax: 1_000_000 }));
}

/**
 * Turns an endless pruning loop (a regression pinned in domain-expire.test.ts) into a
 * failure instead of a hung test run: no run here queues keys 100,000 times.
 */
function guarded(state: ShardState): ShardState {
  const queue = state.idempotencyQueue;
  const push = queue.push.bind(queue);
  let pushes = 0;
  queue.push = (entry) => {
    if (++pushes > 100_000) throw new Error('idempotency keys were queued 100,000 times: res.expire does not end');
    push(entry);
  };
  return state;
}

/** The id of a reservation this answer created, or null. */
function createdId(a: Applied): string | null {
  const o = a.outcome;
  return o.ok && o.status === 'created' && o.reservation !== undefined && o.replayed !== true ? o.reservation.reservationId : null;
}

// ---- comparison and invariants ----------------------------------------------------------

interface Known {
  sku: string;
  buyerId: string;
  qty: number;
  status: string;
}

function compare(where: string, engine: Applied, model: ModelAnswer, command: Command, ref: ReferenceShard): void {
  const e = engine.outcome;
  expect(e.ok ? 'ok' : e.code, `${where}: answer`).toBe(model.ok ? 'ok' : model.code);
  expect(engine.mutated, `${where}: mutated`).toBe(model.mutated);
  if (!e.ok || !model.ok) {
    if (!e.ok && !model.ok) expect(e.dropId, `${where}: moved to`).toBe(model.dropId);
    return;
  }
  expect(e.status, `${where}: status`).toBe(model.status);
  expect(e.replayed === true, `${where}: replayed`).toBe(model.replayed);
  expect(e.expired, `${where}: expired count`).toBe(command.t === 'res.expire' ? model.expired : undefined);
  expect(e.reservation, `${where}: reservation view`).toEqual(model.reservation === undefined ? undefined : ref.reservationView(model.reservation));
  expect(e.sku, `${where}: sku view`).toEqual(model.sku === undefined ? undefined : ref.skuView(model.sku));
}

function checkEvents(where: string, engine: Applied, model: ModelAnswer, ref: ReferenceShard): void {
  const expected = model.events.map((ev): DomainEvent =>
    (ev.type === 'paid' ? { type: 'paid', reservation: ref.reservationView(ev.reservation) } : ev));
  expect(engine.events, `${where}: events`).toEqual(expected.length === 0 ? null : expected);
}

function checkInvariants(where: string, state: ShardState, ref: ReferenceShard, known: Map<string, Known>, plan: Plan): void {
  for (const [id, k] of known) {
    const r = state.reservations.get(id);
    if (r !== undefined) k.status = r.status;
  }
  let held = 0;
  for (const r of state.reservations.values()) if (r.status === 'held') held++;
  expect(state.liveCount, `${where}: liveCount`).toBe(held);
  expect(state.lastNowMs, `${where}: shard clock`).toBe(ref.lastNowMs);
  expect([...state.skus.keys()].sort(), `${where}: skus`).toEqual([...ref.skus.keys()].sort());
  expect([...state.links].sort(), `${where}: links`).toEqual([...ref.links].sort());
  expect(state.idempotency.size, `${where}: idempotency keys`).toBe(ref.keys.size);
  expect(state.idempotencyQueue.length, `${where}: idempotency review queue`).toBe(ref.queue.length);
  for (const s of state.skus.values()) {
    const at = `${where}: sku ${s.sku}`;
    expect(shardForSku(s.sku, s.dropId, SHARD_COUNT), `${at}: lives on the shard it routes to`).toBe(SHARD_ID);
    expect(s.reserved + s.sold <= s.onHand, `${at}: reserved ${s.reserved} + sold ${s.sold} <= onHand ${s.onHand}`).toBe(true);
    expect(s.available, `${at}: available`).toBeGreaterThanOrEqual(0);
    let reservedHeld = 0;
    for (const r of state.reservations.values()) {
      if (r.sku === s && r.status === 'held' && r.mode !== 'on_payment') reservedHeld += r.qty;
    }
    expect(s.reserved, `${at}: reserved equals the units of held reservations in holding modes`).toBe(reservedHeld);
    let soldPaid = 0;
    for (const k of known.values()) if (k.sku === s.sku && k.status === 'paid') soldPaid += k.qty;
    expect(s.sold, `${at}: sold equals the units of paid reservations`).toBe(soldPaid);
    const m = ref.skuView(s.sku);
    expect({ onHand: s.onHand, reserved: s.reserved, sold: s.sold, available: s.available, lowStockSignaled: s.lowStockSignaled }, `${at}: counters`)
      .toEqual({ onHand: m.onHand, reserved: m.reserved, sold: m.sold, available: m.available, lowStockSignaled: ref.skus.get(s.sku)!.lowStockSignaled });
  }
  for (const sku of state.links.keys()) {
    expect(shardForSku(sku, null, SHARD_COUNT), `${where}: link of ${sku} is at its home`).toBe(SHARD_ID);
    expect(shardForSku(sku, state.links.get(sku)!, SHARD_COUNT), `${where}: link of ${sku} points elsewhere`).not.toBe(SHARD_ID);
  }
  // No buyer holds or buys more than maxPerBuyer of a SKU, or of a drop.
  const units = new Map<string, number>();
  for (const k of known.values()) {
    if (k.status !== 'held' && k.status !== 'paid') continue;
    const drop = state.skus.get(k.sku)?.dropId ?? null;
    for (const scope of drop === null ? [k.sku] : [k.sku, `drop ${drop}`]) {
      const key = `${k.buyerId} ${scope}`;
      units.set(key, (units.get(key) ?? 0) + k.qty);
    }
  }
  for (const [key, n] of units) {
    const scope = key.slice(key.indexOf(' ') + 1);
    const max = scope.startsWith('drop ') ? plan.policies.x!.maxPerBuyer : plan.policies[scope]!.maxPerBuyer;
    if (max > 0) expect(n, `${where}: units of ${key}`).toBeLessThanOrEqual(max);
  }
}

/** What a run saw, so that a test can check its generators reach what they should. */
interface Coverage {
  codes: Map<string, number>;
  events: Map<string, number>;
}

/** Runs a plan against the core and the model, checking everything after every step. */
function runAgainstModel(plan: Plan, coverage?: Coverage): void {
  const state = newEngine(plan.config);
  const ref = new ReferenceShard(plan.config);
  const ids: string[] = [];
  const known = new Map<string, Known>();
  let lastReserve: Command | null = null;
  let clock = T0;
  plan.steps.forEach((step, stepIndex) => {
    clock += step.dtMs;
    const { command, model } = translate(step.op, { plan, ids, stepIndex, lastReserve });
    if (command.t === 'res.reserve') lastReserve = command;
    const where = `step ${stepIndex} ${JSON.stringify(command)} at T0+${clock - T0}`;
    const engine = apply(state, command, clock);
    const answer = ref.apply(model, clock);
    const id = createdId(engine);
    if (id !== null) {
      ids.push(id);
      if (command.t === 'res.reserve') known.set(id, { sku: command.sku, buyerId: command.buyerId, qty: command.qty, status: 'held' });
    }
    expect(ids.length, `${where}: reservations created`).toBe(ref.reservations.length);
    compare(where, engine, answer, command, ref);
    checkEvents(where, engine, answer, ref);
    checkInvariants(where, state, ref, known, plan);
    if (coverage !== undefined) {
      const code = `${command.t} ${engine.outcome.ok ? engine.outcome.status : engine.outcome.code}${engine.mutated ? ' mutated' : ''}`;
      coverage.codes.set(code, (coverage.codes.get(code) ?? 0) + 1);
      for (const ev of engine.events ?? []) coverage.events.set(ev.type, (coverage.events.get(ev.type) ?? 0) + 1);
    }
  });
}

// ---- snapshots and determinism ----------------------------------------------------------

const packr = new Packr({ useRecords: false, moreTypes: false, mapsAsObjects: true, variableMapSize: true });

function roundTrip(state: ShardState): ShardState {
  const snap = toSnapshot(state);
  const restored = guarded(fromSnapshot(packr.unpack(packr.pack(snap)) as ShardSnapshot, state.config));
  expect(toSnapshot(restored), 'toSnapshot(fromSnapshot(toSnapshot(s)))').toEqual(snap);
  return restored;
}

/**
 * Applies the plan to a live state, to a twin restored from its own snapshot at each
 * checkpoint, and to a fresh state: every answer and the final snapshots must be equal.
 */
function runWithRestores(plan: Plan, checkpoints: ReadonlySet<number>): void {
  const live = newEngine(plan.config);
  let restored = newEngine(plan.config);
  const fresh = newEngine(plan.config);
  const ids: string[] = [];
  let lastReserve: Command | null = null;
  let clock = T0;
  plan.steps.forEach((step, stepIndex) => {
    if (checkpoints.has(stepIndex)) restored = roundTrip(restored);
    clock += step.dtMs;
    const { command } = translate(step.op, { plan, ids, stepIndex, lastReserve });
    if (command.t === 'res.reserve') lastReserve = command;
    const a = apply(live, command, clock);
    const where = `step ${stepIndex} ${JSON.stringify(command)}`;
    expect(apply(restored, command, clock), `${where}: restored state answers as the live one`).toEqual(a);
    expect(apply(fresh, command, clock), `${where}: a second run answers the same`).toEqual(a);
    const id = createdId(a);
    if (id !== null) ids.push(id);
  });
  roundTrip(live);
  expect(toSnapshot(restored)).toEqual(toSnapshot(live));
  expect(toSnapshot(fresh)).toEqual(toSnapshot(live));
}

describe('the core against the reference model', () => {
  test('the names of the generated plans are placed as intended', () => {
    for (const sku of ['a', 'e', 'w', LINKED]) expect(shardForSku(sku, null, SHARD_COUNT), `home of ${sku}`).toBe(SHARD_ID);
    for (const sku of ['x', NEVER]) expect(shardForSku(sku, null, SHARD_COUNT), `home of ${sku}`).not.toBe(SHARD_ID);
    expect(shardForSku('any', DROP, SHARD_COUNT)).toBe(SHARD_ID);
    for (const drop of AWAY_DROPS) expect(shardForSku('any', drop, SHARD_COUNT), `shard of drop ${drop}`).not.toBe(SHARD_ID);
    expect(new Set(AWAY_DROPS.map((drop) => shardForSku('any', drop, SHARD_COUNT))).size).toBe(AWAY_DROPS.length);
  });

  test('random command sequences give the same answers as the model, and every invariant holds after every step', () => {
    const coverage: Coverage = { codes: new Map(), events: new Map() };
    fc.assert(fc.property(planArb(70), (plan) => runAgainstModel(plan, coverage)), { numRuns: 400 });
    // The generators reach every rule these properties are meant to check.
    const seen = [...coverage.codes.keys()];
    for (const code of [
      'sku.link ok mutated', 'sku.link ok', 'sku.link drop_mismatch', 'sku.link invalid_request',
      'sku.upsert moved', 'sku.upsert drop_mismatch', 'sku.upsert invalid_request', 'sku.upsert created mutated',
      'res.reserve moved', 'sku.adjust moved', 'sku.get moved', 'sku.adjust invalid_request',
      'res.reserve invalid_request', 'res.pay invalid_request', 'res.reserve created', 'res.reserve idempotency_conflict',
      'res.expire ok mutated', 'res.expire ok', 'res.pay reservation_expired mutated', 'res.reserve shard_full',
    ]) expect(seen, `no step answered ${code}`).toContain(code);
    for (const type of ['low_stock', 'sold_out', 'paid']) expect(coverage.events.get(type) ?? 0, `${type} events`).toBeGreaterThan(0);
  });

  test('long sequences with one drop and many buyers keep the invariants', () => {
    fc.assert(fc.property(planArb(250), (plan) => runAgainstModel(plan)), { numRuns: 40 });
  });
});

describe('snapshots and determinism', () => {
  test('a snapshot taken at any point round-trips exactly, and the restored state answers every later command as the live one', () => {
    const arb = planArb(70).chain((plan) =>
      fc.tuple(fc.constant(plan), fc.uniqueArray(fc.nat(plan.steps.length), { maxLength: 4 })));
    fc.assert(fc.property(arb, ([plan, checkpoints]) => runWithRestores(plan, new Set(checkpoints))), { numRuns: 200 });
  });

  test('applying the same sequence to two fresh states gives equal answers and equal snapshots', () => {
    fc.assert(fc.property(planArb(70), (plan) => runWithRestores(plan, new Set())), { numRuns: 100 });
  });
});
