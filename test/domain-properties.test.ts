// Property tests of the shard core: random command sequences (SKUs with and without a drop,
// links, several buyers, every mode, restocks and write-offs, pays, cancels, expiries,
// refunds with and without restock,
// malformed commands, a clock that mostly advances and sometimes jumps back, reserves on
// several channels or none, channel policies with small caps set, changed and cleared, and
// reads and cancels scoped to the owner or to another buyer) are applied to the core and to
// the reference model in test/support/reference-model.ts; after every step the answers, the
// views, the events and the shard clock must agree, and the invariants of shared/API.md
// must hold. Further properties check that snapshots round-trip at any point and that the
// core is deterministic, and that replaying what the live run logged (through replay(), which
// builds no answers) rebuilds exactly the live state.

import fc from 'fast-check';
import { Packr } from 'msgpackr';
import { describe, expect, test } from 'vitest';
import {
  apply, createShardState, fromSnapshot, replay, shardForSku, toSnapshot,
  type Applied, type Command, type DomainEvent, type Mode, type ShardSnapshot, type ShardState, type SkuView,
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
/** The channels reserves name (a reserve may also name none: "default"); `__proto__` is just a name. */
const CHANNELS = ['web', 'app', '__proto__', 'default'];
type Policy = [name: string, maxUnits: number | null][] | null;

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
      /** undefined keeps the channel policy, null clears it. */
      channels: Policy | undefined;
    }
  /** An upsert of the channel policy alone: set, changed (caps and names) or cleared. */
  | { k: 'policy'; sku: string; channels: Policy }
  | { k: 'adjust'; sku: string; delta: number }
  | { k: 'link'; sku: string; dropId: string }
  | {
      k: 'reserve'; sku: string; buyer: string; qty: number; idemKey: string | undefined;
      accountAgeSeconds: number | undefined; pastOrders: number | undefined;
      /** Length of the nonce, 0..8 (it is zero-padded to 8 in the id). */
      nonceLength: number;
      /** undefined: the reserve names no channel. */
      channel: string | undefined;
    }
  /** One of MALFORMED: a command the core must refuse invalid_request without a change. */
  | { k: 'malformed'; which: number }
  /** Sends the latest reserve again, as a client retrying would. */
  | { k: 'repeat' }
  | { k: 'pay'; pick: Pick; paymentRef: string | undefined }
  | { k: 'refund'; pick: Pick; restock: boolean; reason: string | undefined }
  | { k: 'cancel'; pick: Pick; as: As }
  | { k: 'expire' }
  | { k: 'getSku'; sku: string }
  | { k: 'getRes'; pick: Pick; as: As };

/** Whose read or cancel: no buyerId (any caller), the owner's, or another buyer's (one of two). */
type As = 'anyone' | 'owner' | { other: number };

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

/** Whose read or cancel it is: mostly the owner or another buyer, sometimes anyone. */
const asArb: fc.Arbitrary<As> = fc.oneof(
  { weight: 2, arbitrary: fc.constant('anyone' as const) },
  { weight: 3, arbitrary: fc.constant('owner' as const) },
  { weight: 3, arbitrary: fc.nat(1).map((other) => ({ other })) },
);

/** A channel policy: 1..4 of the channels, in any order, with small caps (or none). */
const policyChannelsArb: fc.Arbitrary<Policy> = fc.oneof(
  { weight: 1, arbitrary: fc.constant(null) },
  {
    weight: 4,
    arbitrary: fc.uniqueArray(
      fc.tuple(fc.constantFrom(...CHANNELS), fc.constantFrom<number | null>(0, 1, 2, 3, 4, 5, null)),
      { selector: ([name]) => name, minLength: 1, maxLength: 4 },
    ),
  },
);

/** Mostly leaves the policy as it is. */
const upsertChannelsArb: fc.Arbitrary<Policy | undefined> = fc.oneof(
  { weight: 5, arbitrary: fc.constant(undefined) },
  { weight: 2, arbitrary: policyChannelsArb },
);

const channelArb: fc.Arbitrary<string | undefined> = fc.oneof(
  { weight: 2, arbitrary: fc.constant(undefined) },
  { weight: 5, arbitrary: fc.constantFrom(...CHANNELS) },
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
  () => ({ t: 'res.reserve', sku: 'a', buyerId: 'u1', qty: 1, nonce: 'm7', channel: 'Web' }),
  () => ({ t: 'res.reserve', sku: 'e', buyerId: 'u2', qty: 1, nonce: 'm8', channel: '' }),
  () => ({ t: 'res.reserve', sku: 'w', buyerId: 'u3', qty: 1, nonce: 'm9', channel: 'c'.repeat(33) }),
  () => ({ t: 'res.reserve', sku: 'a', buyerId: 'u1\n', qty: 1, nonce: 'ma' }),
  () => ({ t: 'res.reserve', sku: 'a', buyerId: 'u'.repeat(129), qty: 1, nonce: 'mb' }),
  () => ({ t: 'res.reserve', sku: 'a/b', buyerId: 'u1', qty: 1, nonce: 'mc' }),
  () => ({ t: 'res.reserve', sku: 'x', buyerId: 'u2', qty: 1, nonce: 'md', idemKey: 'k'.repeat(129) }),
  () => ({ t: 'sku.upsert', sku: 'a', channels: [] }),
  () => ({ t: 'sku.upsert', sku: 'e', channels: [['web', 1], ['web', 2]] }),
  () => ({ t: 'sku.upsert', sku: 'w', channels: [['web', -1]] }),
  () => ({ t: 'sku.upsert', sku: 'x', channels: [['app', 1.5]] }),
  () => ({ t: 'sku.upsert', sku: 'a', channels: [['Web', 1]] }),
  () => ({ t: 'sku.upsert', sku: 'e', startsAtMs: T0 + 5, endsAtMs: T0 + 5 }),
  (latestId) => ({ t: 'res.get', id: latestId, buyerId: '' }),
  (latestId) => ({ t: 'res.cancel', id: latestId, buyerId: 'u1\u200b' }),
  () => ({ t: 'res.cancel', id: `${UNKNOWN_ID}${'0'.repeat(60)}` }),
  (latestId) => ({ t: 'res.pay', id: latestId, paymentRef: 'p'.repeat(129) }),
  (latestId) => ({ t: 'res.refund', id: latestId, restock: 'yes' as unknown as boolean }),
  (latestId) => ({ t: 'res.refund', id: latestId, restock: true, reason: '' }),
  (latestId) => ({ t: 'res.refund', id: latestId, restock: false, reason: 'r'.repeat(201) }),
  (latestId) => ({ t: 'res.refund', id: latestId, restock: true, reason: 'broken\u0000' }),
  () => ({ t: 'res.refund', id: 42 as unknown as string, restock: true }),
];

/** A refund: mostly with restock (the default), with or without a reason (200 code points is the most). */
const refundArb = (picks: fc.Arbitrary<Pick>): fc.Arbitrary<Op> => fc.record({
  k: fc.constant('refund' as const), pick: picks, restock: fc.boolean(),
  reason: maybe(fc.constantFrom('damaged', 'changed mind', '\u{1F45F}'.repeat(200))),
});

const opArb = (modes: readonly Mode[]): fc.Arbitrary<Op> => fc.oneof(
  {
    weight: 3,
    arbitrary: fc.record({
      k: fc.constant('upsert' as const), sku: ANY_SKU, stock: fc.nat(8),
      mode: maybe(fc.constantFrom<Mode>(...modes)),
      holdSeconds: maybe(fc.integer({ min: 1, max: 120 })), startsAt: windowOffset, endsAt: windowOffset,
      lowStock: maybe(fc.nat(4)), drop: fc.constantFrom<'policy' | 'omit' | 'wrong'>('policy', 'policy', 'omit', 'wrong'),
      channels: upsertChannelsArb,
    }),
  },
  { weight: 2, arbitrary: fc.record({ k: fc.constant('policy' as const), sku: fc.constantFrom(...SKU_NAMES), channels: policyChannelsArb }) },
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
      pastOrders: maybe(fc.nat(3)), nonceLength: fc.integer({ min: 0, max: 8 }), channel: channelArb,
    }),
  },
  { weight: 2, arbitrary: fc.constant({ k: 'repeat' as const }) },
  { weight: 5, arbitrary: fc.record({ k: fc.constant('pay' as const), pick, paymentRef: maybe(fc.constantFrom('p1', 'p2')) }) },
  { weight: 3, arbitrary: fc.record({ k: fc.constant('cancel' as const), pick, as: asArb }) },
  { weight: 3, arbitrary: refundArb(pick) },
  { weight: 3, arbitrary: fc.constant({ k: 'expire' as const }) },
  { weight: 1, arbitrary: fc.record({ k: fc.constant('getSku' as const), sku: ANY_SKU }) },
  { weight: 2, arbitrary: fc.record({ k: fc.constant('getRes' as const), pick, as: asArb }) },
  { weight: 1, arbitrary: fc.record({ k: fc.constant('malformed' as const), which: fc.nat(MALFORMED.length - 1) }) },
);

/**
 * Contention for on_payment plans: mostly reserves, repeats and pays of recent holds, with
 * channel policies changing under them, so that holds outnumber the units or a channel's
 * cap and the last ones paid are refused.
 */
const contendedOpArb: fc.Arbitrary<Op> = fc.oneof(
  {
    weight: 12,
    arbitrary: fc.record({
      k: fc.constant('reserve' as const), sku: fc.constantFrom(...SKU_NAMES), buyer: fc.constantFrom(...BUYERS), qty: fc.integer({ min: 1, max: 3 }),
      idemKey: fc.constant(undefined), accountAgeSeconds: fc.constant(120), pastOrders: fc.constant(3),
      nonceLength: fc.integer({ min: 0, max: 8 }), channel: channelArb,
    }),
  },
  { weight: 4, arbitrary: fc.constant({ k: 'repeat' as const }) },
  { weight: 10, arbitrary: fc.record({ k: fc.constant('pay' as const), pick: fc.nat(3).map((recent): Pick => ({ recent })), paymentRef: maybe(fc.constant('p1')) }) },
  { weight: 2, arbitrary: fc.record({ k: fc.constant('policy' as const), sku: fc.constantFrom(...SKU_NAMES), channels: policyChannelsArb }) },
  { weight: 1, arbitrary: fc.record({ k: fc.constant('adjust' as const), sku: fc.constantFrom(...SKU_NAMES), delta: fc.integer({ min: -2, max: 3 }) }) },
  { weight: 1, arbitrary: fc.record({ k: fc.constant('cancel' as const), pick, as: asArb }) },
  { weight: 3, arbitrary: refundArb(fc.nat(3).map((recent): Pick => ({ recent }))) },
  { weight: 1, arbitrary: fc.constant({ k: 'expire' as const }) },
);

const dtArb = fc.oneof(
  { weight: 3, arbitrary: fc.constant(0) },
  { weight: 7, arbitrary: fc.integer({ min: 1, max: 2000 }) },
  { weight: 1, arbitrary: fc.integer({ min: 2000, max: 60_000 }) },
  { weight: 1, arbitrary: fc.integer({ min: -5000, max: -1 }) },
);

/**
 * Settled reservations kept at most, in most plans: a run settles only a few reservations,
 * so mostly 1..4, for settles to drop the earliest settled ones (with their keys); sometimes
 * more than any run settles. Churn plans (churnPlan) settle often and keep 3..10.
 */
const settledMaxArb = fc.oneof(
  { weight: 4, arbitrary: fc.integer({ min: 1, max: 4 }) },
  { weight: 1, arbitrary: fc.constant(1_000_000) },
);

/**
 * Three shapes of config: windows of up to a minute with retention well past them; windows
 * and retention longer than any run, with small expiry batches; and short windows, small
 * batches and retention that may be shorter than the window (holds wait behind the batch
 * bound, keys are re-queued, and retention drops reservations with their keys). Each also
 * bounds the settled reservations kept (`settledMax`), so drops by count mix with all three.
 *
 * `snapshotSafe` keeps retention at least two idempotency windows. No property needs it
 * any more: stale key-queue entries (which a snapshot does not carry) are no longer counted
 * as a change; the regression test is at the end of domain-snapshot.test.ts.
 */
function configArb(snapshotSafe: boolean, settledMax: fc.Arbitrary<number>): fc.Arbitrary<ModelConfig> {
  const placement = { shardId: SHARD_ID, shardCount: SHARD_COUNT };
  return fc.oneof(
    fc.record({
      idempotencyWindowMs: fc.integer({ min: 1000, max: 60_000 }),
      extraRetentionMs: fc.integer({ min: 30_000, max: 120_000 }),
      liveReservationsMax: fc.constantFrom(3, 5, 10_000), settledReservationsMax: settledMax,
    }).map(({ idempotencyWindowMs, extraRetentionMs, liveReservationsMax, settledReservationsMax }) => ({
      ...placement, idempotencyWindowMs, liveReservationsMax, settledReservationsMax, expireBatchMax: 10_000,
      settledRetentionMs: (snapshotSafe ? 2 * idempotencyWindowMs : idempotencyWindowMs) + extraRetentionMs,
    })),
    fc.record({ liveReservationsMax: fc.constantFrom(3, 10_000), expireBatchMax: fc.integer({ min: 1, max: 3 }), settledReservationsMax: settledMax })
      .map(({ liveReservationsMax, expireBatchMax, settledReservationsMax }) => ({
        ...placement, idempotencyWindowMs: 1e12, settledRetentionMs: 1e12, liveReservationsMax, expireBatchMax, settledReservationsMax,
      })),
    fc.record({
      idempotencyWindowMs: fc.integer({ min: 500, max: 10_000 }), retentionMs: fc.integer({ min: 1000, max: 40_000 }),
      liveReservationsMax: fc.constantFrom(3, 10_000), expireBatchMax: fc.constantFrom(1, 2, 3, 10_000),
      settledReservationsMax: settledMax,
    }).map(({ idempotencyWindowMs, retentionMs, liveReservationsMax, expireBatchMax, settledReservationsMax }) => ({
      ...placement, idempotencyWindowMs, liveReservationsMax, expireBatchMax, settledReservationsMax,
      settledRetentionMs: snapshotSafe ? 2 * idempotencyWindowMs + retentionMs : retentionMs,
    })),
  );
}

const policyArb = fc.record({
  maxPerBuyer: fc.constantFrom(0, 0, 1, 2, 3, 4),
  minAccountAgeSeconds: fc.constantFrom(0, 0, 0, 60),
  minPastOrders: fc.constantFrom(0, 0, 0, 2),
});

const ALL_MODES: readonly Mode[] = ['pre_deduct', 'on_order', 'on_payment'];

/** Creates the four SKUs first (with random stock, mode, hold, threshold and channel policy), so that most steps hit one. */
const setupArb = (shape: PlanShape): fc.Arbitrary<Step[]> => fc.tuple(...SKU_NAMES.map((sku) => fc.record({
  stock: shape.stock, mode: fc.constantFrom<Mode>(...shape.modes),
  holdSeconds: fc.integer({ min: 5, max: 120 }), lowStock: maybe(fc.nat(4)), channels: shape.channels,
}).map(({ stock, mode, holdSeconds, lowStock, channels }): Step => ({
  dtMs: 0,
  op: { k: 'upsert', sku, stock, mode, holdSeconds, startsAt: undefined, endsAt: undefined, lowStock, drop: 'policy', channels },
}))));

interface PlanShape {
  /** The modes SKUs are created and updated with. */
  modes: readonly Mode[];
  /** The steps after the setup. */
  ops: fc.Arbitrary<Op>;
  /** The channel policy each SKU is created with. */
  channels: fc.Arbitrary<Policy | undefined>;
  /** The stock each SKU is created with. */
  stock: fc.Arbitrary<number>;
  /** No per-buyer quota and no bound on live reservations, so that holds pile up. */
  unbounded?: boolean;
  /** settledReservationsMax; settledMaxArb when absent. */
  settledMax?: fc.Arbitrary<number>;
}

const anyPlan: PlanShape = { modes: ALL_MODES, ops: opArb(ALL_MODES), channels: upsertChannelsArb, stock: fc.nat(6) };

/** on_payment SKUs with more stock, that mostly start with a policy of small caps, and contended steps. */
const contendedPlan: PlanShape = {
  modes: ['on_payment'], ops: contendedOpArb, unbounded: true, stock: fc.integer({ min: 1, max: 8 }),
  channels: fc.oneof(
    { weight: 1, arbitrary: upsertChannelsArb },
    { weight: 3, arbitrary: fc.uniqueArray(fc.tuple(fc.constantFrom(...CHANNELS), fc.constantFrom<number | null>(1, 2, 3, 4, null)), { selector: ([name]) => name, minLength: 2, maxLength: 4 }) },
  ),
};

/**
 * Churn: reserves (some keyed, and re-sent) settled soon after by cancels, pays and expiries,
 * with restocks, so that many more reservations settle than a shard keeps; reads, pays and
 * cancels of any reservation then name dropped ones too. Quotas are plenty (maxPerBuyer is
 * covered with drops by the other plans), so that reserves mostly succeed.
 */
const churnOpArb: fc.Arbitrary<Op> = fc.oneof(
  {
    weight: 10,
    arbitrary: fc.record({
      k: fc.constant('reserve' as const), sku: fc.constantFrom(...SKU_NAMES), buyer: fc.constantFrom(...BUYERS), qty: fc.integer({ min: 1, max: 2 }),
      idemKey: fc.oneof({ weight: 2, arbitrary: fc.constant(undefined) }, { weight: 1, arbitrary: fc.constantFrom('k1', 'k2', 'same') }),
      accountAgeSeconds: fc.constant(120), pastOrders: fc.constant(3), nonceLength: fc.integer({ min: 0, max: 8 }), channel: channelArb,
    }),
  },
  { weight: 2, arbitrary: fc.constant({ k: 'repeat' as const }) },
  {
    weight: 6,
    arbitrary: fc.record({ k: fc.constant('cancel' as const), pick: fc.nat(2).map((recent): Pick => ({ recent })), as: fc.constantFrom<As>('anyone', 'owner') }),
  },
  { weight: 3, arbitrary: fc.record({ k: fc.constant('pay' as const), pick: fc.nat(2).map((recent): Pick => ({ recent })), paymentRef: maybe(fc.constant('p1')) }) },
  { weight: 3, arbitrary: fc.record({ k: fc.constant('getRes' as const), pick, as: asArb }) },
  { weight: 2, arbitrary: fc.record({ k: fc.constant('pay' as const), pick, paymentRef: fc.constant(undefined) }) },
  { weight: 2, arbitrary: fc.record({ k: fc.constant('cancel' as const), pick, as: asArb }) },
  { weight: 2, arbitrary: refundArb(pick) },
  { weight: 2, arbitrary: fc.constant({ k: 'expire' as const }) },
  { weight: 1, arbitrary: fc.record({ k: fc.constant('adjust' as const), sku: fc.constantFrom(...SKU_NAMES), delta: fc.integer({ min: 1, max: 6 }) }) },
);

const churnPlan: PlanShape = {
  modes: ALL_MODES, ops: churnOpArb, channels: fc.constant(undefined), stock: fc.integer({ min: 4, max: 10 }),
  unbounded: true, settledMax: fc.integer({ min: 3, max: 10 }),
};

function planArb(maxSteps: number, snapshotSafe = false, shape: PlanShape = anyPlan): fc.Arbitrary<Plan> {
  return fc.record({
    config: configArb(snapshotSafe, shape.settledMax ?? settledMaxArb),
    policies: fc.record({ a: policyArb, e: policyArb, drop: policyArb })
      .map(({ a, e, drop }) => ({ a, e, w: drop, x: drop, [LINKED]: a, [NEVER]: e })),
    setup: setupArb(shape),
    steps: fc.array(fc.record({ dtMs: dtArb, op: shape.ops }), { minLength: 1, maxLength: maxSteps, size: 'max' }),
  }).map(({ config, policies, setup, steps }) => (shape.unbounded === true
    ? {
        config: { ...config, liveReservationsMax: 10_000 },
        policies: Object.fromEntries(Object.entries(policies).map(([sku, p]) => [sku, { ...p, maxPerBuyer: 0 }])),
        steps: [...setup, ...steps],
      }
    : { config, policies, steps: [...setup, ...steps] }));
}

// ---- translation of a step into an engine command and a model command --------------------

interface Context {
  plan: Plan;
  /** Engine ids of the reservations created so far, in creation order. */
  ids: string[];
  /** The buyer of each of them. */
  owners: string[];
  stepIndex: number;
  lastReserve: Command | null;
}

/** A nonce of the given length (0..8), different at every step. */
function nonceOf(i: number, length: number): string {
  return length === 0 ? '' : i.toString(36).padStart(8, '0').slice(8 - length);
}

/** A step as sent to the core and to the model; `as` tags buyer-scoped reads and cancels for coverage. */
interface Translated {
  command: Command;
  model: ModelCommand;
  as?: 'owner' | 'other';
}

function translate(op: Op, ctx: Context): Translated {
  const same = (command: Command) => ({ command, model: command as ModelCommand });
  const n = ctx.ids.length;
  const pickIndex = (p: Pick) => (p === 'unknown' || n === 0 ? -1 : 'recent' in p ? Math.max(0, n - 1 - p.recent) : p.any % n);
  const idOf = (i: number) => (i < 0 ? UNKNOWN_ID : ctx.ids[i]!);
  /** The buyerId a read or cancel of reservation `i` is scoped to, if any. */
  const scope = (i: number, as: As): { buyerId?: string; as?: 'owner' | 'other' } => {
    if (as === 'anyone') return {};
    const owner = i < 0 ? BUYERS[0]! : ctx.owners[i]!;
    if (as === 'owner') return { buyerId: owner, as: 'owner' };
    return { buyerId: BUYERS.filter((b) => b !== owner)[as.other]!, as: 'other' };
  };
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
      if (op.channels !== undefined) c.channels = op.channels;
      return same(c);
    }
    case 'policy': return same({ t: 'sku.upsert', sku: op.sku, channels: op.channels });
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
      if (op.channel !== undefined) c.channel = op.channel;
      return same(c);
    }
    case 'malformed': {
      const latest = n - 1;
      const command = MALFORMED[op.which]!(idOf(latest));
      // The model names reservations by index, and judges the id exactly as it was sent.
      if (command.t === 'res.pay' || command.t === 'res.cancel' || command.t === 'res.get' || command.t === 'res.refund') {
        const { id, ...rest } = command;
        return { command, model: { ...rest, index: latest, id } as ModelCommand };
      }
      return same(command);
    }
    case 'pay': {
      const i = pickIndex(op.pick);
      const command: Command = { t: 'res.pay', id: idOf(i) };
      const model: ModelCommand = { t: 'res.pay', index: i };
      if (op.paymentRef !== undefined) command.paymentRef = model.paymentRef = op.paymentRef;
      return { command, model };
    }
    case 'refund': {
      const i = pickIndex(op.pick);
      const command: Extract<Command, { t: 'res.refund' }> = { t: 'res.refund', id: idOf(i), restock: op.restock };
      const model: ModelCommand = { t: 'res.refund', index: i, restock: op.restock };
      if (op.reason !== undefined) command.reason = model.reason = op.reason;
      return { command, model };
    }
    case 'cancel':
    case 'getRes': {
      const i = pickIndex(op.pick);
      const t = op.k === 'cancel' ? 'res.cancel' : 'res.get';
      const { buyerId, as } = scope(i, op.as);
      const command: Command = buyerId === undefined ? { t, id: idOf(i) } : { t, id: idOf(i), buyerId };
      const model: ModelCommand = buyerId === undefined ? { t, index: i } : { t, index: i, buyerId };
      return as === undefined ? { command, model } : { command, model, as };
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
  channel: string;
  status: string;
}

/** A SKU view equals the model's, and its channels are the same names in the same order, on an object with no prototype. */
function expectSkuView(where: string, actual: SkuView | undefined, expected: SkuView | undefined, coverage?: Coverage): void {
  // A fast path, as this runs after every step: JSON keeps key order (and own `__proto__`
  // keys), so equal texts are equal views with channels in the same order. Otherwise the
  // expectations below judge (a view whose top-level fields merely come in another order passes).
  const same = JSON.stringify(actual) === JSON.stringify(expected) && (actual === undefined || Object.getPrototypeOf(actual.channels) === null);
  if (!same) {
    expect(actual, where).toEqual(expected);
    if (actual === undefined || expected === undefined) return;
    expect(Object.getPrototypeOf(actual.channels), `${where}: channels is an object without a prototype`).toBeNull();
    expect(Object.entries(actual.channels), `${where}: channels, in order`).toEqual(Object.entries(expected.channels));
  }
  if (actual !== undefined && coverage !== undefined) {
    for (const [name, row] of Object.entries(actual.channels)) {
      const kind = `${name === '__proto__' ? '__proto__' : 'a'} channel${row.maxUnits === null ? '' : ' with a cap'}${row.reserved + row.sold > 0 ? ' with units' : ''}`;
      coverage.views.set(kind, (coverage.views.get(kind) ?? 0) + 1);
    }
  }
}

function engineSkuView(state: ShardState, sku: string): SkuView {
  const a = apply(state, { t: 'sku.get', sku }, 0);
  if (!a.outcome.ok || a.outcome.sku === undefined || a.mutated) throw new Error(`sku.get ${sku} did not answer a view`);
  return a.outcome.sku;
}

/** Units held and sold per channel of every SKU: `${sku}\n${channel}` to reserved + sold. */
function channelUse(state: ShardState): Map<string, number> {
  const use = new Map<string, number>();
  for (const s of state.skus.values()) for (const u of s.channelUnits.values()) use.set(`${s.sku}\n${u.name}`, u.reserved + u.sold);
  return use;
}

function compare(where: string, engine: Applied, model: ModelAnswer, command: Command, ref: ReferenceShard, coverage?: Coverage): void {
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
  expectSkuView(`${where}: sku view`, e.sku, model.sku === undefined ? undefined : ref.skuView(model.sku), coverage);
}

function checkEvents(where: string, engine: Applied, model: ModelAnswer, ref: ReferenceShard): void {
  const expected = model.events.map((ev): DomainEvent =>
    (ev.type === 'paid' ? { type: 'paid', reservation: ref.reservationView(ev.reservation) } : ev));
  // An expiry sweep settles holds in expiry order, over many SKUs at once: the order of its
  // events across SKUs is not a promise (each SKU has at most one, a restocked).
  const byJson = (evs: DomainEvent[] | null): DomainEvent[] | null => (where.includes('res.expire') && evs !== null ? [...evs].sort((x, y) => JSON.stringify(x).localeCompare(JSON.stringify(y))) : evs);
  expect(byJson(engine.events), `${where}: events`).toEqual(expected.length === 0 ? null : byJson(expected));
}

function checkInvariants(
  where: string, state: ShardState, ref: ReferenceShard, known: Map<string, Known>, plan: Plan, usedBefore: Map<string, number>,
): void {
  // A reservation the engine no longer has may have settled in the very command that dropped
  // it (a res.expire that expired more than settledReservationsMax holds): its last status is
  // then the model's (known is in creation order, as the model's reservations are).
  let index = 0;
  for (const [id, k] of known) {
    const r = state.reservations.get(id);
    k.status = r !== undefined ? r.status : ref.reservations[index]!.status;
    index++;
  }
  let held = 0;
  for (const r of state.reservations.values()) if (r.status === 'held') held++;
  expect(state.liveCount, `${where}: liveCount`).toBe(held);
  expect(state.lastNowMs, `${where}: shard clock`).toBe(ref.lastNowMs);
  expect([...state.skus.keys()].sort(), `${where}: skus`).toEqual([...ref.skus.keys()].sort());
  expect([...state.links].sort(), `${where}: links`).toEqual([...ref.links].sort());
  // Units held (in a holding mode) and paid per `${sku}\n${channel}`, from the reservations.
  const heldBy = new Map<string, number>();
  for (const r of state.reservations.values()) {
    if (r.status !== 'held' || r.mode === 'on_payment') continue;
    const key = `${r.sku.sku}\n${r.channel.name}`;
    heldBy.set(key, (heldBy.get(key) ?? 0) + r.qty);
  }
  const paidBy = new Map<string, number>();
  for (const k of known.values()) {
    if (k.status !== 'paid') continue;
    const key = `${k.sku}\n${k.channel}`;
    paidBy.set(key, (paidBy.get(key) ?? 0) + k.qty);
  }
  // What the shard keeps: the model's undropped reservations, and its settled ones in settle order.
  const kept = ref.reservations.filter((r) => !r.pruned);
  const settledKept = kept.filter((r) => r.status !== 'held').sort((a, b) => a.settleOrder - b.settleOrder);
  expect(state.reservations.size, `${where}: reservations kept`).toBe(kept.length);
  expect(state.settled.length, `${where}: settled reservations kept`).toBeLessThanOrEqual(plan.config.settledReservationsMax);
  expect([...state.settled].map((r) => r.seq), `${where}: settled queue, oldest settled first`).toEqual(settledKept.map((r) => r.index + 1));
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
    let refunded = 0;
    for (const k of known.values()) {
      if (k.sku === s.sku && k.status === 'paid') soldPaid += k.qty;
      if (k.sku === s.sku && k.status === 'refunded') refunded += k.qty;
    }
    expect(s.sold, `${at}: sold equals the units of paid reservations (refunded ones excluded)`).toBe(soldPaid);
    expect(s.refunded, `${at}: refunded equals the units of refunded reservations`).toBe(refunded);
    expect(s.lowStockSignaled, `${at}: lowStockSignaled`).toBe(ref.skus.get(s.sku)!.lowStockSignaled);
    expectSkuView(`${at}: view`, engineSkuView(state, s.sku), ref.skuView(s.sku));
    // One pool: the channels' shares add up to the SKU's counters, and each is what its reservations say.
    let channelsReserved = 0;
    let channelsSold = 0;
    for (const u of s.channelUnits.values()) {
      channelsReserved += u.reserved;
      channelsSold += u.sold;
      const held = heldBy.get(`${s.sku}\n${u.name}`) ?? 0;
      const paid = paidBy.get(`${s.sku}\n${u.name}`) ?? 0;
      if (u.reserved !== held || u.sold !== paid) {
        expect({ reserved: u.reserved, sold: u.sold }, `${at}: channel ${u.name} counts its held and paid reservations`).toEqual({ reserved: held, sold: paid });
      }
    }
    if (channelsReserved !== s.reserved || channelsSold !== s.sold) {
      expect({ reserved: channelsReserved, sold: channelsSold }, `${at}: the channels add up to the SKU`).toEqual({ reserved: s.reserved, sold: s.sold });
    }
    // A channel's held + sold never grows past its cap (a cap lowered under its use only stops growth).
    for (const [name, cap] of s.channelCaps ?? []) {
      if (cap === null) continue;
      const u = s.channelUnits.get(name);
      const used = u === undefined ? 0 : u.reserved + u.sold;
      const before = usedBefore.get(`${s.sku}\n${name}`) ?? 0;
      if (used > before && used > cap) expect.fail(`${at}: channel ${name} grew from ${before} to ${used}, past its cap ${cap}`);
    }
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
  /** Kinds of channel rows seen in SKU views answered. */
  views: Map<string, number>;
  /** Reservations dropped by count, and commands that named one so dropped, by their answer. */
  droppedByCount: number;
  namedDropped: Map<string, number>;
}

function newCoverage(): Coverage {
  return { codes: new Map(), events: new Map(), views: new Map(), droppedByCount: 0, namedDropped: new Map() };
}

/** Runs a plan against the core and the model, checking everything after every step. */
function runAgainstModel(plan: Plan, coverage?: Coverage): void {
  const state = newEngine(plan.config);
  const ref = new ReferenceShard(plan.config);
  const ids: string[] = [];
  const owners: string[] = [];
  const known = new Map<string, Known>();
  let lastReserve: Command | null = null;
  let clock = T0;
  plan.steps.forEach((step, stepIndex) => {
    clock += step.dtMs;
    const { command, model, as } = translate(step.op, { plan, ids, owners, stepIndex, lastReserve });
    if (command.t === 'res.reserve') lastReserve = command;
    const where = `step ${stepIndex} ${JSON.stringify(command)} at T0+${clock - T0}`;
    const usedBefore = channelUse(state);
    const namesDropped = 'index' in model && ref.reservations[model.index]?.pruned === true;
    const droppedBefore = ref.droppedByCount;
    const engine = apply(state, command, clock);
    const answer = ref.apply(model, clock);
    const id = createdId(engine);
    if (id !== null && command.t === 'res.reserve') {
      ids.push(id);
      owners.push(command.buyerId);
      known.set(id, { sku: command.sku, buyerId: command.buyerId, qty: command.qty, channel: command.channel ?? 'default', status: 'held' });
    }
    expect(ids.length, `${where}: reservations created`).toBe(ref.reservations.length);
    compare(where, engine, answer, command, ref, coverage);
    checkEvents(where, engine, answer, ref);
    checkInvariants(where, state, ref, known, plan, usedBefore);
    if (coverage !== undefined) {
      const code = `${command.t}${as === undefined ? '' : ` as ${as}`} ${engine.outcome.ok ? engine.outcome.status : engine.outcome.code}${engine.mutated ? ' mutated' : ''}`;
      coverage.codes.set(code, (coverage.codes.get(code) ?? 0) + 1);
      // A key used again for another qty, or another SKU of the drop, answers its first reservation.
      const replayedOf = engine.outcome.ok && engine.outcome.replayed === true ? (engine.outcome as { reservation?: { sku: string; qty: number } }).reservation : undefined;
      if (command.t === 'res.reserve' && replayedOf !== undefined && (replayedOf.qty !== command.qty || replayedOf.sku !== command.sku)) {
        coverage.codes.set('res.reserve replayed for another request', (coverage.codes.get('res.reserve replayed for another request') ?? 0) + 1);
      }
      for (const ev of engine.events ?? []) coverage.events.set(ev.type, (coverage.events.get(ev.type) ?? 0) + 1);
      coverage.droppedByCount += ref.droppedByCount - droppedBefore;
      if (namesDropped) coverage.namedDropped.set(code, (coverage.namedDropped.get(code) ?? 0) + 1);
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
  const owners: string[] = [];
  let lastReserve: Command | null = null;
  let clock = T0;
  plan.steps.forEach((step, stepIndex) => {
    if (checkpoints.has(stepIndex)) restored = roundTrip(restored);
    clock += step.dtMs;
    const { command } = translate(step.op, { plan, ids, owners, stepIndex, lastReserve });
    if (command.t === 'res.reserve') lastReserve = command;
    const a = apply(live, command, clock);
    const where = `step ${stepIndex} ${JSON.stringify(command)}`;
    expect(apply(restored, command, clock), `${where}: restored state answers as the live one`).toEqual(a);
    expect(apply(fresh, command, clock), `${where}: a second run answers the same`).toEqual(a);
    const id = createdId(a);
    if (id !== null && command.t === 'res.reserve') {
      ids.push(id);
      owners.push(command.buyerId);
    }
  });
  roundTrip(live);
  expect(toSnapshot(restored)).toEqual(toSnapshot(live));
  expect(toSnapshot(fresh)).toEqual(toSnapshot(live));
}

/**
 * Applies the plan live and logs each command that changed state with its clock, as the
 * shard runtime does; replays the log through replay() into a fresh state. Every logged
 * command must change state again (a res.expire may find its work done), and the replayed
 * state must equal the live one at each checkpoint and at the end.
 */
function runLiveThenReplay(plan: Plan, checkpoints: ReadonlySet<number>): void {
  const live = newEngine(plan.config);
  const log: { command: Command; nowMs: number; stepIndex: number }[] = [];
  const liveSnapshots = new Map<number, ShardSnapshot>();
  const ids: string[] = [];
  const owners: string[] = [];
  let lastReserve: Command | null = null;
  let clock = T0;
  plan.steps.forEach((step, stepIndex) => {
    clock += step.dtMs;
    const { command } = translate(step.op, { plan, ids, owners, stepIndex, lastReserve });
    if (command.t === 'res.reserve') lastReserve = command;
    const a = apply(live, command, clock);
    if (a.mutated) log.push({ command, nowMs: clock, stepIndex });
    if (checkpoints.has(stepIndex)) liveSnapshots.set(stepIndex, toSnapshot(live));
    const id = createdId(a);
    if (id !== null && command.t === 'res.reserve') {
      ids.push(id);
      owners.push(command.buyerId);
    }
  });
  const replayed = newEngine(plan.config);
  let next = 0;
  plan.steps.forEach((_, stepIndex) => {
    for (; next < log.length && log[next]!.stepIndex === stepIndex; next++) {
      const { command, nowMs } = log[next]!;
      const mutated = replay(replayed, command, nowMs);
      expect(mutated || command.t === 'res.expire', `step ${stepIndex} ${JSON.stringify(command)}: replayed, it changed state`).toBe(true);
    }
    const snap = liveSnapshots.get(stepIndex);
    if (snap !== undefined) expect(toSnapshot(replayed), `step ${stepIndex}: replayed state`).toEqual(snap);
  });
  expect(toSnapshot(replayed)).toEqual(toSnapshot(live));
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
    const coverage = newCoverage();
    fc.assert(fc.property(planArb(70), (plan) => runAgainstModel(plan, coverage)), { numRuns: 400 });
    // The generators reach every rule these properties are meant to check.
    const seen = [...coverage.codes.keys()];
    for (const code of [
      'sku.link ok mutated', 'sku.link ok', 'sku.link drop_mismatch', 'sku.link invalid_request',
      'sku.upsert moved', 'sku.upsert drop_mismatch', 'sku.upsert invalid_request', 'sku.upsert created mutated',
      'res.reserve moved', 'sku.adjust moved', 'sku.get moved', 'sku.adjust invalid_request',
      'res.reserve invalid_request', 'res.pay invalid_request', 'res.reserve created', 'res.reserve replayed for another request',
      'res.expire ok mutated', 'res.expire ok', 'res.pay reservation_expired mutated', 'res.reserve shard_full',
      'res.reserve channel_not_allowed', 'res.reserve channel_sold_out',
      'res.get as owner ok', 'res.get as other unknown_reservation', 'res.cancel as owner ok mutated',
      'res.cancel as other unknown_reservation', 'res.cancel as owner ok', 'res.get invalid_request', 'res.cancel invalid_request',
      'res.refund ok mutated', 'res.refund ok', 'res.refund not_paid', 'res.refund unknown_reservation', 'res.refund invalid_request',
    ]) expect(seen, `no step answered ${code}`).toContain(code);
    for (const type of ['low_stock', 'sold_out', 'paid']) expect(coverage.events.get(type) ?? 0, `${type} events`).toBeGreaterThan(0);
    expect(coverage.droppedByCount, 'reservations dropped by count').toBeGreaterThan(20);
    for (const kind of ['a channel with units', 'a channel with a cap', 'a channel with a cap with units', '__proto__ channel with units', '__proto__ channel with a cap']) {
      expect(coverage.views.get(kind) ?? 0, `SKU views showing ${kind}`).toBeGreaterThan(0);
    }
  });

  test('with every SKU in on_payment, a pay judges the channel cap and then the stock again, as the model does', () => {
    // Holds take no units in on_payment, so several can wait on the same units or the same
    // capped channel; whichever is paid last is refused channel_sold_out or sold_out.
    const coverage = newCoverage();
    fc.assert(fc.property(planArb(50, false, contendedPlan), (plan) => runAgainstModel(plan, coverage)), { numRuns: 100 });
    const seen = [...coverage.codes.keys()];
    for (const code of ['res.pay channel_sold_out', 'res.pay sold_out', 'res.pay ok mutated', 'res.reserve channel_sold_out', 'res.refund ok mutated']) {
      expect(seen, `no step answered ${code}`).toContain(code);
    }
  });

  test('with far more settles than the shard keeps, settles drop the earliest settled reservations and their keys, as in the model', () => {
    const coverage = newCoverage();
    fc.assert(fc.property(planArb(200, false, churnPlan), (plan) => runAgainstModel(plan, coverage)), { numRuns: 100 });
    expect(coverage.droppedByCount, 'reservations dropped by count').toBeGreaterThan(1000);
    const namedDropped = [...coverage.namedDropped.keys()];
    for (const code of [
      'res.get as owner unknown_reservation', 'res.get unknown_reservation', 'res.pay unknown_reservation',
      'res.cancel as owner unknown_reservation', 'res.cancel unknown_reservation', 'res.refund unknown_reservation',
    ]) expect(namedDropped, `no step naming a dropped reservation answered ${code}`).toContain(code);
    expect(coverage.codes.get('res.reserve created mutated') ?? 0, 'reserves').toBeGreaterThan(2000);
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

  test('with settles dropping reservations by count, a snapshot at any point round-trips and the restored state answers as the live one', () => {
    const arb = planArb(120, false, churnPlan).chain((plan) =>
      fc.tuple(fc.constant(plan), fc.uniqueArray(fc.nat(plan.steps.length), { maxLength: 4 })));
    fc.assert(fc.property(arb, ([plan, checkpoints]) => runWithRestores(plan, new Set(checkpoints))), { numRuns: 100 });
  });

  test('replaying what a live run logged (without building answers) gives exactly the live state, at any point', () => {
    const arb = planArb(120).chain((plan) =>
      fc.tuple(fc.constant(plan), fc.uniqueArray(fc.nat(plan.steps.length), { maxLength: 4 })));
    fc.assert(fc.property(arb, ([plan, checkpoints]) => runLiveThenReplay(plan, new Set(checkpoints))), { numRuns: 200 });
  });

  test('with settles dropping reservations by count, replaying what a live run logged gives exactly the live state', () => {
    fc.assert(fc.property(planArb(200, false, churnPlan), (plan) => runLiveThenReplay(plan, new Set())), { numRuns: 50 });
  });

  test('applying the same sequence to two fresh states gives equal answers and equal snapshots', () => {
    fc.assert(fc.property(planArb(70), (plan) => runWithRestores(plan, new Set())), { numRuns: 100 });
  });
});
