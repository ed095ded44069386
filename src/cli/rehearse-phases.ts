// The phases of a rehearsal, each a kind of traffic a drop day brings:
//   sellout  one hot SKU, N distinct buyers, one reserve each, as fast as answered (or at a
//            rate), until it is sold out; then every hold is paid (payments token), so the
//            SKU's sold must equal its stock exactly;
//   reserve  holds at a load shape (constant, ramp, spike, overload, max), a new buyer per
//            request, spread over one SKU or many;
//   flow     reserve, then pay, cancel or abandon (the hold expires) in the scenario's mix;
//   queue    N buyers join a drop's queue, poll their place, and reserve once admitted.
// Buyers are `<prefix><phase>-<n>`; each phase's requests carry buyer tokens minted with the
// shop's secret (sub = buyerId) or the shop's token with the buyerId in the body.

import { CliError, Exit, seg } from './flash-client.js';
import type { Api, Buyers, Credentials } from './rehearse-http.js';
import { eachLimit } from './rehearse-http.js';
import { activeMs, runLoad, type Ledger, type PhaseLog, type RequestSpec, type StepLog } from './rehearse-load.js';
import { describeShape, stepsOf, type FlowPhase, type Identity, type Phase, type QueuePhase, type ReservePhase, type SelloutPhase } from './rehearse-scenario.js';
import { fmt, latencyHistogram, latencySummary, recordUs } from './report-kit.js';

type Obj = Record<string, unknown>;

export interface Hold {
  sku: string;
  qty: number;
  /** The buyer's token, kept only when neither a shop nor a payments token (which may cancel any hold) is at hand. */
  token: string | null;
}

export interface RunContext {
  api: Api;
  ledger: Ledger;
  creds: Credentials;
  buyers: Buyers;
  prefix: string;
  timeoutSeconds: number;
  signal?: AbortSignal;
  /** Holds this run made that are still held as far as it knows: reservationId -> hold. */
  holds: Map<string, Hold>;
  /** Units this run paid, per SKU. */
  paidUnits: Map<string, number>;
  /** A token that may cancel any hold (payments, else shop), for the cleanup; null: each buyer's own. */
  cancelToken: string | null;
  /** Called when a step starts (the live progress line). */
  onStep(phase: PhaseLog, step: StepLog): void;
}

/** Who a phase's buyers are: buyer tokens when the shop's secret is at hand, else the shop's token. */
export function identityOf(ctx: { buyers: Buyers }, phase: Phase): Identity {
  return phase.as ?? (ctx.buyers.canMint ? 'buyer' : 'shop');
}

const reservationIdOf = (body: string): string | null => /"reservationId"\s*:\s*"([^"\\]+)"/.exec(body)?.[1] ?? null;

/** Buyer n of a phase: its id and the token its requests carry. */
class PhaseBuyers {
  private readonly tokens: string[] = [];

  constructor(private readonly ctx: RunContext, private readonly phase: Phase, readonly as: Identity) {}

  id(n: number): string {
    return `${this.ctx.prefix}${this.phase.name}-${n.toString(36)}`;
  }

  /** Mints buyer tokens for buyers up to `count` ahead of the load, so minting is not measured. */
  ahead(count: number): void {
    if (this.as !== 'buyer') return;
    for (let n = this.tokens.length; n < count; n++) this.tokens.push(this.ctx.buyers.token(this.id(n)));
  }

  token(n: number): string {
    if (this.as === 'shop') return this.ctx.creds.shop!.value;
    while (this.tokens.length <= n) this.tokens.push(this.ctx.buyers.token(this.id(this.tokens.length)));
    return this.tokens[n]!;
  }
}

/** POST /v1/reservations for buyer n (a new one per request), SKUs in turn. */
function reserveSpec(ctx: RunContext, phase: Phase, who: PhaseBuyers, skuOf: (n: number) => string, counter: { n: number }, onHeld?: (id: string, sku: string, context: Obj) => void): RequestSpec {
  const qty = phase.qty;
  return {
    route: 'reservation.create',
    method: 'POST',
    build(context) {
      const n = counter.n++;
      const sku = skuOf(n);
      const token = who.token(n);
      context.n = n;
      context.sku = sku;
      context.token = token;
      const buyer = who.as === 'shop' ? `,"buyerId":"${who.id(n)}"` : '';
      return {
        path: '/v1/reservations',
        headers: { 'content-type': 'application/json', authorization: `Bearer ${token}` },
        body: `{"sku":"${sku}"${buyer},"qty":${qty},"idempotencyKey":"${phase.name}-${n.toString(36)}"}`,
      };
    },
    onAnswer(status, body, context) {
      // 201 a new hold; 200 the same hold again (a gateway that retried the call to its shard).
      if (status !== 201 && status !== 200) return;
      const id = reservationIdOf(body);
      if (id === null) return;
      context.id = id;
      ctx.holds.set(id, { sku: String(context.sku), qty, token: ctx.cancelToken === null ? String(context.token) : null });
      onHeld?.(id, String(context.sku), context);
    },
  };
}

interface SkuView {
  sku: string;
  onHand: number;
  available: number;
  reserved: number;
  sold: number;
}

export async function skuView(api: Api, token: string | null, sku: string): Promise<SkuView> {
  const r = await api.expect(`GET /v1/skus/${sku}`, 'sku.get', 'GET', `/v1/skus/${seg(sku)}`, { token });
  return r.body as SkuView;
}

/** Pays the holds, a few at a time (the payments token); returns the units paid. */
async function payAll(ctx: RunContext, log: PhaseLog, ids: readonly string[], label: string): Promise<{ paid: number; refused: Record<string, number> }> {
  const step = log.step(label, 'calls', null, 32);
  step.intended = ids.length;
  ctx.onStep(log, step);
  let paid = 0;
  const refused: Record<string, number> = {};
  await eachLimit(ids, 32, async (id, i) => {
    const hold = ctx.holds.get(id);
    step.sent++;
    const r = await ctx.api.tryCall('reservation.pay', 'POST', `/v1/reservations/${seg(id)}/pay`, {
      token: ctx.creds.payments!.value, body: { paymentRef: `${ctx.prefix}${log.name}-pay-${i}` }, filing: { phase: log, step },
    });
    if (r.status === 200 && hold !== undefined) {
      paid += hold.qty;
      ctx.holds.delete(id);
      ctx.paidUnits.set(hold.sku, (ctx.paidUnits.get(hold.sku) ?? 0) + hold.qty);
    } else {
      const k = r.code ?? String(r.status);
      refused[k] = (refused[k] ?? 0) + 1;
    }
  }, ctx.signal);
  log.endStep(step);
  return { paid, refused };
}

// ---------------------------------------------------------------------------------------

export async function runSellout(ctx: RunContext, phase: SelloutPhase): Promise<PhaseLog> {
  const as = identityOf(ctx, phase);
  const log = ctx.ledger.phase(phase.name, 'sellout', `sell-out of ${phase.sku}: ${phase.buyers} buyers, qty ${phase.qty} each, ${describeShape(phase.load)}${phase.pay ? ', then every hold paid' : ''}; ${as === 'buyer' ? 'buyer tokens' : 'shop token'}`);
  const before = await skuView(ctx.api, ctx.creds.operator?.value ?? null, phase.sku);
  const who = new PhaseBuyers(ctx, phase, as);
  who.ahead(phase.buyers);
  const granted: string[] = [];
  const rps = phase.load.shape === 'constant' ? phase.load.rps : null;
  const step = log.step(rps === null ? 'reserve (max)' : `reserve ${rps}/s`, rps === null ? 'closed loop' : 'constant rate', rps, phase.connections);
  step.intended = phase.buyers;
  ctx.onStep(log, step);
  await runLoad(ctx.ledger, {
    url: ctx.api.url, connections: phase.connections, rps, seconds: 1, amount: phase.buyers, timeoutSeconds: ctx.timeoutSeconds,
    requests: [reserveSpec(ctx, phase, who, () => phase.sku, { n: 0 }, (id) => granted.push(id))],
    phase: log, step, signal: ctx.signal, maxSeconds: Math.ceil(rps === null ? 120 + phase.buyers / 100 : (phase.buyers / rps) * 3 + ctx.timeoutSeconds + 10),
  });
  log.endStep(step);
  let paid: { paid: number; refused: Record<string, number> } | null = null;
  if (phase.pay) paid = await payAll(ctx, log, granted, 'pay every hold');
  const after = await skuView(ctx.api, ctx.creds.operator?.value ?? null, phase.sku);
  log.endMs = ctx.ledger.now();
  Object.assign(log.extra, {
    sku: phase.sku, buyers: phase.buyers, qty: phase.qty,
    stockAtStart: before.available, soldAtStart: before.sold, reservedAtStart: before.reserved,
    grantedUnits: granted.length * phase.qty, paidUnits: paid?.paid ?? null, payRefusals: paid?.refused ?? null,
    after: { onHand: after.onHand, available: after.available, reserved: after.reserved, sold: after.sold },
  });
  return log;
}

/** The rate of a closed-loop step: answers per second over its time. */
const rateOf = (s: StepLog): number => (activeMs(s) > 0 ? (s.answered * 1000) / activeMs(s) : 0);

/** reserve and flow phases: the steps of the load shape, one autocannon run each. */
export async function runShaped(ctx: RunContext, phase: ReservePhase | FlowPhase): Promise<PhaseLog> {
  const as = identityOf(ctx, phase);
  const what = phase.kind === 'reserve'
    ? `holds on ${phase.skus.length === 1 ? phase.skus[0] : `${phase.skus.length} SKUs`}, a new buyer each`
    : `flows on ${phase.skus.length === 1 ? phase.skus[0] : `${phase.skus.length} SKUs`}: reserve, then pay ${phase.mix.pay} : cancel ${phase.mix.cancel} : abandon ${phase.mix.abandon}`;
  const log = ctx.ledger.phase(phase.name, phase.kind, `${what}; ${describeShape(phase.load)}; ${as === 'buyer' ? 'buyer tokens' : 'shop token'}`);
  const who = new PhaseBuyers(ctx, phase, as);
  const counter = { n: 0 };
  const skus = phase.skus;
  const skuOf = (n: number): string => skus[n % skus.length]!;
  const requests: RequestSpec[] = [reserveSpec(ctx, phase, who, skuOf, counter)];
  const flows = { pay: 0, payOk: 0, cancel: 0, cancelOk: 0, abandon: 0, noHold: 0 };
  if (phase.kind === 'flow') {
    // Smooth weighted round robin: the fates of consecutive flows follow the mix closely.
    const weights = [phase.mix.pay, phase.mix.cancel, phase.mix.abandon];
    const total = weights.reduce((a, b) => a + b, 0);
    const current = [0, 0, 0];
    const fates = ['pay', 'cancel', 'abandon'] as const;
    const pick = (): (typeof fates)[number] => {
      let best = 0;
      for (let i = 0; i < 3; i++) {
        current[i]! += weights[i]!;
        if (current[i]! > current[best]!) best = i;
      }
      current[best]! -= total;
      return fates[best]!;
    };
    const reserve = requests[0]!;
    requests[0] = { ...reserve, build: (context) => ((context.fate = pick()), reserve.build(context)) };
    requests.push({
      route: 'reservation.pay',
      method: 'POST',
      build(context) {
        const id = context.id as string | undefined;
        if (id === undefined) {
          flows.noHold++;
          return null;
        }
        if (context.fate === 'abandon') {
          flows.abandon++;
          return null;
        }
        if (context.fate === 'pay') {
          flows.pay++;
          return {
            route: 'reservation.pay', path: `/v1/reservations/${seg(id)}/pay`,
            headers: { 'content-type': 'application/json', authorization: `Bearer ${ctx.creds.payments!.value}` },
            body: `{"paymentRef":"${phase.name}-${String(context.n)}"}`,
          };
        }
        flows.cancel++;
        return {
          route: 'reservation.cancel', path: `/v1/reservations/${seg(id)}/cancel`,
          headers: { 'content-type': 'application/json', authorization: `Bearer ${String(context.token)}` }, body: '{}',
        };
      },
      onAnswer(status, _body, context) {
        if (status !== 200) return;
        const id = String(context.id);
        const hold = ctx.holds.get(id);
        ctx.holds.delete(id);
        if (context.fate === 'pay') {
          flows.payOk++;
          if (hold !== undefined) ctx.paidUnits.set(hold.sku, (ctx.paidUnits.get(hold.sku) ?? 0) + hold.qty);
        } else flows.cancelOk++;
      },
    });
  }
  const capacity: number[] = [];
  for (const plan of stepsOf(phase.load)) {
    if (ctx.signal?.aborted) break;
    let rps = plan.rps;
    if (plan.timesCapacity !== undefined) {
      const measured = capacity[capacity.length - 1] ?? 0;
      if (measured <= 0) {
        log.notes.push('the probe measured no capacity (no answer): the overload step was skipped');
        continue;
      }
      rps = Math.max(1, Math.round(measured * plan.timesCapacity));
    }
    const label = plan.timesCapacity !== undefined ? `${plan.timesCapacity} x capacity: ${fmt(rps ?? 0)}/s` : plan.label;
    const step = log.step(label, rps === null ? 'closed loop' : 'constant rate', rps, phase.connections);
    const amount = rps === null ? null : rps * plan.seconds;
    step.intended = amount;
    // Buyer tokens are minted before the step, so that minting is not in its figures.
    who.ahead(counter.n + (amount ?? Math.min(100_000, plan.seconds * 10_000)) + phase.connections);
    ctx.onStep(log, step);
    await runLoad(ctx.ledger, {
      url: ctx.api.url, connections: phase.connections, rps, seconds: plan.seconds, amount, timeoutSeconds: ctx.timeoutSeconds,
      requests, phase: log, step, signal: ctx.signal, maxSeconds: plan.seconds * 3 + ctx.timeoutSeconds + 5,
    });
    log.endStep(step);
    if (rps === null) capacity.push(rateOf(step));
    if (plan.timesCapacity !== undefined && step.intended !== null && step.late > step.intended * 0.01) {
      const shed = step.outcomes.get('503 overloaded') ?? 0;
      log.notes.push(`at ${plan.timesCapacity} x capacity (${fmt(rps ?? 0)}/s planned) the target answered ${fmt(rateOf(step))}/s: ${fmt(step.late)} of ${fmt(step.intended)} requests went out late, ` +
        `behind answers their connection waited for, and ${fmt(shed)} were shed with 503 overloaded; the engine sheds past FLASH_HTTP_INFLIGHT_MAX requests in progress (or a full shard mailbox), and these ${fmt(step.connections)} connections never had more than ${fmt(step.connections)} in flight`);
    }
  }
  log.endMs = ctx.ledger.now();
  if (capacity.length > 0) log.extra.capacityPerSecond = Math.round(capacity[capacity.length - 1]!);
  if (phase.kind === 'flow') log.extra.flows = flows;
  log.extra.buyers = counter.n;
  return log;
}

// ---------------------------------------------------------------------------------------

interface Entry {
  state?: string;
  joinedAt?: number;
  admittedAt?: number;
}

export async function runQueue(ctx: RunContext, phase: QueuePhase): Promise<PhaseLog> {
  const as = identityOf(ctx, phase);
  const log = ctx.ledger.phase(phase.name, 'queue', `queue of drop ${phase.drop}: ${phase.buyers} buyers join (${describeShape(phase.load)}), poll every ${phase.pollMs} ms, reserve ${phase.sku} once admitted (up to ${phase.seconds} s); ${as === 'buyer' ? 'buyer tokens' : 'shop token'}`);
  const dropView = await ctx.api.expect(`GET /v1/drops/${phase.drop}`, 'drop.get', 'GET', `/v1/drops/${seg(phase.drop)}`);
  const queue = ((dropView.body as Obj).queue ?? null) as Obj | null;
  if (queue === null) throw new CliError(Exit.usage, `phase ${phase.name}: drop ${phase.drop} has no queue; give it one (queue: {mode: fifo, ...})`);
  const who = new PhaseBuyers(ctx, phase, as);
  who.ahead(phase.buyers);
  const joined: number[] = [];
  const rps = phase.load.shape === 'constant' ? phase.load.rps : null;
  const join = log.step(rps === null ? 'join (max)' : `join ${rps}/s`, rps === null ? 'closed loop' : 'constant rate', rps, phase.connections);
  join.intended = phase.buyers;
  ctx.onStep(log, join);
  let n = 0;
  await runLoad(ctx.ledger, {
    url: ctx.api.url, connections: phase.connections, rps, seconds: 1, amount: phase.buyers, timeoutSeconds: ctx.timeoutSeconds,
    requests: [{
      route: 'drop.join',
      method: 'POST',
      build(context) {
        const k = n++;
        context.n = k;
        return {
          path: `/v1/drops/${seg(phase.drop)}/queue`,
          headers: { 'content-type': 'application/json', authorization: `Bearer ${who.token(k)}` },
          body: as === 'shop' ? `{"buyerId":"${who.id(k)}"}` : '{}',
        };
      },
      onAnswer(status, _body, context) {
        if (status === 200 || status === 201) joined.push(Number(context.n));
      },
    }],
    phase: log, step: join, signal: ctx.signal, maxSeconds: Math.ceil(rps === null ? 120 + phase.buyers / 100 : (phase.buyers / rps) * 3 + ctx.timeoutSeconds + 10),
  });
  log.endStep(join);

  // Poll each joined buyer's place; reserve as soon as it reads admitted.
  const step = log.step('poll and reserve', 'calls', null, phase.pollers);
  ctx.onStep(log, step);
  const deadline = ctx.ledger.now() + phase.seconds * 1000;
  const pending = joined.map((k) => ({ k, dueMs: 0 }));
  const states: Record<string, number> = {};
  const reserves: Record<string, number> = {};
  const admittedAt: number[] = [];
  const waitToAdmit = latencyHistogram(3);
  const done = (state: string): void => {
    states[state] = (states[state] ?? 0) + 1;
  };
  const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));
  let active = 0;
  const worker = async (): Promise<void> => {
    for (;;) {
      if (ctx.signal?.aborted || ctx.ledger.now() > deadline) return;
      const e = pending.shift();
      if (e === undefined) {
        if (active === 0) return;
        await sleep(5);
        continue;
      }
      active++;
      try {
        const wait = e.dueMs - ctx.ledger.now();
        if (wait > 0) await sleep(wait);
        step.sent++;
        const token = who.token(e.k);
        const r = await ctx.api.tryCall('drop.entry', 'GET', `/v1/drops/${seg(phase.drop)}/queue/${seg(who.id(e.k))}`, { token, filing: { phase: log, step } });
        const entry = (r.body ?? {}) as Entry;
        if (r.status !== 200) {
          done(`poll ${r.code ?? r.status}`);
          continue;
        }
        if (entry.state === 'waiting') {
          pending.push({ k: e.k, dueMs: ctx.ledger.now() + phase.pollMs });
          continue;
        }
        if (entry.state !== 'admitted') {
          done(entry.state ?? 'unknown');
          continue;
        }
        if (typeof entry.admittedAt === 'number') {
          admittedAt.push(entry.admittedAt);
          if (typeof entry.joinedAt === 'number') recordUs(waitToAdmit, (entry.admittedAt - entry.joinedAt) * 1000);
        }
        // Buyer e.k's own reserve: its id (a shop names it), its token, its key.
        const body: Obj = { sku: phase.sku, qty: phase.qty, idempotencyKey: `${phase.name}-${e.k.toString(36)}` };
        if (as === 'shop') body.buyerId = who.id(e.k);
        step.sent++;
        const rr = await ctx.api.tryCall('reservation.create', 'POST', '/v1/reservations', { token, body, filing: { phase: log, step } });
        const code = rr.status === 201 || rr.status === 200 ? 'reserved' : `reserve ${rr.code ?? rr.status}`;
        reserves[code] = (reserves[code] ?? 0) + 1;
        done('admitted');
        const id = rr.status === 201 || rr.status === 200 ? reservationIdOf(rr.text) : null;
        if (id !== null) ctx.holds.set(id, { sku: phase.sku, qty: phase.qty, token: ctx.cancelToken === null ? token : null });
      } finally {
        active--;
      }
    }
  };
  await Promise.all(Array.from({ length: Math.max(1, Math.min(phase.pollers, pending.length)) }, worker));
  log.endStep(step);
  log.endMs = ctx.ledger.now();
  admittedAt.sort((a, b) => a - b);
  let perSecondMax = 0;
  for (let i = 0, j = 0; i < admittedAt.length; i++) {
    while (admittedAt[i]! - admittedAt[j]! >= 1000) j++;
    perSecondMax = Math.max(perSecondMax, i - j + 1);
  }
  const w = latencySummary(waitToAdmit);
  Object.assign(log.extra, {
    drop: phase.drop, sku: phase.sku, mode: queue.mode, admitPerSecond: queue.admitPerSecond ?? null, buyers: phase.buyers, joined: joined.length,
    states, reserves, stillWaiting: pending.length, admittedSeenPerSecondMax: perSecondMax,
    joinToAdmittedMs: w === null ? null : { p50: w.p50, p99: w.p99, max: w.max },
  });
  return log;
}

export async function runPhase(ctx: RunContext, phase: Phase): Promise<PhaseLog> {
  switch (phase.kind) {
    case 'sellout':
      return runSellout(ctx, phase);
    case 'reserve':
    case 'flow':
      return runShaped(ctx, phase);
    case 'queue':
      return runQueue(ctx, phase);
  }
}
