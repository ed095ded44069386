// The phases of a rehearsal, each a kind of traffic a drop day brings:
//   sellout  one hot SKU, N distinct buyers, one reserve each, as fast as answered (or at a
//            rate), until it is sold out; then every hold is paid (payments token), so the
//            SKU's sold must equal its stock exactly;
//   reserve  holds at a load shape (constant, ramp, spike, overload, max), a new buyer per
//            request, spread over one SKU or many;
//   flow     reserve, then pay, cancel or abandon (the hold expires) in the scenario's mix; a
//            step's rate x seconds requests carry whole flows only, so each one started ends;
//   queue    N buyers join a drop's queue, poll their place, and reserve once admitted.
// Buyers are `<prefix><phase>-<n>`; each phase's requests carry buyer tokens minted with the
// shop's secret (sub = buyerId; a bounded chunk ahead of each step, the rest when needed) or
// the shop's token with the buyerId in the body. Every hold, payment and cancel is tallied
// per SKU by the run itself, for the checks to hold against the scenario's stock.

import { CliError, Exit, seg } from './flash-client.js';
import type { Api, Buyers, Credentials } from './rehearse-http.js';
import { eachLimit } from './rehearse-http.js';
import { activeMs, deadAfter, runLoad, type LoadEnd, type Ledger, type PhaseLog, type RequestSpec, type StepLog, type Timing } from './rehearse-load.js';
import { describeShape, stepsOf, type FlowPhase, type Identity, type Phase, type QueuePhase, type ReservePhase, type SelloutPhase } from './rehearse-scenario.js';
import { fmt, latencyHistogram, latencySummary, recordUs } from './report-kit.js';

type Obj = Record<string, unknown>;

/** Whose token may cancel a hold when neither a shop nor a payments token is at hand: buyer n's. */
export interface TokenOwner {
  token(n: number): string;
}

export interface Hold {
  sku: string;
  qty: number;
  /** The buyer's tokens and number, used only when neither a shop nor a payments token (which may cancel any hold) is at hand. */
  owner: TokenOwner | null;
  n: number;
  /** When its reserve was sent and answered (whole ms, run clock): from the answer until sent + holdSeconds it is certainly held. */
  sentMs: number;
  atMs: number;
}

/** What this run did to one SKU, by its own count (not the engine's view). */
export interface SkuTally {
  /** Units of holds granted (201, or 200 for a hold not seen before). */
  held: number;
  /** Units of holds still held as far as the run knows (not paid, cancelled or lost). */
  open: number;
  paid: number;
  cancelled: number;
  /** Units of holds whose pay or cancel got no answer: the run cannot tell what became of them. */
  uncertain: number;
  /** When the first hold was sent (ms, run clock). */
  firstSentMs: number | null;
  /** Paid units by when their hold was certainly granted (its answer, ms, run clock): held or sold ever since. */
  paidFromMs: Map<number, number>;
}

/** A SKU the run created: the scenario's stock and hold time, what it is judged against. */
export interface CreatedSku {
  stock: number;
  holdSeconds: number;
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
  /** Per SKU: what this run held, paid and cancelled. */
  tallies: Map<string, SkuTally>;
  /** The SKUs this run created, with the scenario's stock and hold time. */
  created: Map<string, CreatedSku>;
  /** A token that may cancel any hold (payments, else shop), for the cleanup; null: each buyer's own. */
  cancelToken: string | null;
  /** Called when a step starts (the live progress line). */
  onStep(phase: PhaseLog, step: StepLog): void;
}

export function tallyOf(ctx: { tallies: Map<string, SkuTally> }, sku: string): SkuTally {
  let t = ctx.tallies.get(sku);
  if (t === undefined) ctx.tallies.set(sku, (t = { held: 0, open: 0, paid: 0, cancelled: 0, uncertain: 0, firstSentMs: null, paidFromMs: new Map() }));
  return t;
}

/** A hold the engine granted (its answer seen); a hold already known (an idempotent replay) is counted once. */
export function noteHeld(ctx: RunContext, id: string, hold: Hold): void {
  if (ctx.holds.has(id)) return;
  ctx.holds.set(id, hold);
  const t = tallyOf(ctx, hold.sku);
  t.held += hold.qty;
  t.open += hold.qty;
  t.firstSentMs ??= hold.sentMs;
}

/** The end of a hold the run knew: paid (200), cancelled (200), or its pay or cancel got no answer. */
export function noteHoldEnd(ctx: RunContext, id: string, how: 'paid' | 'cancelled' | 'uncertain'): Hold | null {
  const hold = ctx.holds.get(id);
  if (hold === undefined) return null;
  ctx.holds.delete(id);
  const t = tallyOf(ctx, hold.sku);
  t.open -= hold.qty;
  if (how === 'paid') {
    t.paid += hold.qty;
    t.paidFromMs.set(hold.atMs, (t.paidFromMs.get(hold.atMs) ?? 0) + hold.qty);
  } else if (how === 'cancelled') t.cancelled += hold.qty;
  else t.uncertain += hold.qty;
  return hold;
}

/** Who a phase's buyers are: buyer tokens when the shop's secret is at hand, else the shop's token. */
export function identityOf(ctx: { buyers: Buyers }, phase: Phase): Identity {
  return phase.as ?? (ctx.buyers.canMint ? 'buyer' : 'shop');
}

const reservationIdOf = (body: string): string | null => /"reservationId"\s*:\s*"([^"\\]+)"/.exec(body)?.[1] ?? null;

/** Tokens minted ahead of a step, at most this many (the rest are minted as they are needed). */
const mintChunk = 10_000;

/** Buyer n of a phase: its id and the token its requests carry (minted ahead in a bounded chunk, else when needed). */
class PhaseBuyers implements TokenOwner {
  private readonly ahead = new Map<number, string>();

  constructor(private readonly ctx: RunContext, private readonly phase: Phase, readonly as: Identity) {}

  id(n: number): string {
    return `${this.ctx.prefix}${this.phase.name}-${n.toString(36)}`;
  }

  /** Mints the tokens of buyers from..from+count-1 (at most a chunk) before a step, so that minting is not in its figures. */
  mintAhead(from: number, count: number): void {
    if (this.as !== 'buyer') return;
    this.ahead.clear();
    for (let n = from; n < from + Math.min(count, mintChunk); n++) this.ahead.set(n, this.ctx.buyers.token(this.id(n)));
  }

  token(n: number): string {
    if (this.as === 'shop') return this.ctx.creds.shop!.value;
    const t = this.ahead.get(n);
    if (t !== undefined) {
      this.ahead.delete(n);
      return t;
    }
    return this.ctx.buyers.token(this.id(n));
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
    onAnswer(status, body, context, timing: Timing) {
      // 201 a new hold; 200 the same hold again (a gateway that retried the call to its shard).
      if (status !== 201 && status !== 200) return;
      const id = reservationIdOf(body);
      if (id === null) return;
      context.id = id;
      const n = Number(context.n);
      noteHeld(ctx, id, { sku: String(context.sku), qty, owner: ctx.cancelToken === null ? who : null, n, sentMs: Math.floor(timing.sentMs), atMs: Math.ceil(timing.atMs) });
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

/** The engine stopped answering during a load step: the run ends (exit 3), with a partial report. */
export class EngineGone extends CliError {
  constructor(readonly phase: string, detail: string) {
    super(Exit.unreachable, `phase ${phase}: ${detail}; the run stopped there (the report holds what it got)`);
  }
}

function afterLoad(log: PhaseLog, step: StepLog, end: LoadEnd): void {
  log.endStep(step);
  if (end.stopped === 'engine gone') {
    log.endMs = log.ledger.now();
    log.notes.push(`step ${step.label}: ${end.detail ?? 'the engine stopped answering'}`);
    throw new EngineGone(log.name, end.detail ?? 'the engine stopped answering');
  }
}

/** Calls outside the load's sender in a row without an answer: past deadAfter, the engine is gone (no dead port is hammered). */
class NoAnswers {
  private inRow = 0;

  constructor(private readonly log: PhaseLog, private readonly limit = deadAfter(32)) {}

  /** After each call: 0 is no answer. */
  saw(status: number): void {
    if (status !== 0) {
      this.inRow = 0;
      return;
    }
    if (++this.inRow < this.limit) return;
    const detail = `${this.inRow} calls in a row got no answer: the engine stopped answering`;
    this.log.notes.push(detail);
    this.log.endMs = this.log.ledger.now();
    throw new EngineGone(this.log.name, detail);
  }
}

/** Pays the holds, a few at a time (the payments token); returns the units paid. */
async function payAll(ctx: RunContext, log: PhaseLog, ids: readonly string[], label: string): Promise<{ paid: number; refused: Record<string, number> }> {
  const step = log.step(label, 'calls', null, 32);
  step.intended = ids.length;
  ctx.onStep(log, step);
  let paid = 0;
  const refused: Record<string, number> = {};
  const answers = new NoAnswers(log);
  await eachLimit(ids, 32, async (id, i) => {
    step.sent++;
    const r = await ctx.api.tryCall('reservation.pay', 'POST', `/v1/reservations/${seg(id)}/pay`, {
      token: ctx.creds.payments!.value, body: { paymentRef: `${ctx.prefix}${log.name}-pay-${i}` }, filing: { phase: log, step },
    });
    answers.saw(r.status);
    if (r.status === 200) {
      const hold = noteHoldEnd(ctx, id, 'paid');
      if (hold !== null) paid += hold.qty;
    } else {
      if (r.status === 0) noteHoldEnd(ctx, id, 'uncertain');
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
  // What is there to sell: for a SKU the run created, the scenario's stock less what this run
  // holds and paid (the engine's view must agree); for an existing one, the engine's view.
  let stockAtStart = before.available;
  let stockProblem: string | null = null;
  const created = ctx.created.get(phase.sku);
  if (created !== undefined) {
    const t = tallyOf(ctx, phase.sku);
    const mayHaveExpired = t.open > 0 && t.firstSentMs !== null && ctx.ledger.now() - t.firstSentMs >= created.holdSeconds * 1000;
    const lower = created.stock - t.paid - t.open - t.uncertain;
    const upper = created.stock - t.paid - (mayHaveExpired ? 0 : t.open);
    if (before.available < lower || before.available > upper) {
      stockAtStart = Math.max(0, upper);
      stockProblem = `the engine showed ${fmt(before.available)} available at the start, where the scenario's stock ${fmt(created.stock)} less what this run held and paid leaves ${lower === upper ? fmt(upper) : `${fmt(lower)} to ${fmt(upper)}`}`;
    }
  }
  const who = new PhaseBuyers(ctx, phase, as);
  who.mintAhead(0, phase.buyers);
  const granted: string[] = [];
  const rps = phase.load.shape === 'constant' ? phase.load.rps : null;
  const step = log.step(rps === null ? 'reserve (max)' : `reserve ${rps}/s`, rps === null ? 'closed loop' : 'constant rate', rps, phase.connections);
  step.intended = phase.buyers;
  ctx.onStep(log, step);
  const end = await runLoad(ctx.ledger, {
    url: ctx.api.url, connections: phase.connections, rate: rps, count: phase.buyers, seconds: rps === null ? 0 : phase.buyers / rps, timeoutSeconds: ctx.timeoutSeconds,
    requests: [reserveSpec(ctx, phase, who, () => phase.sku, { n: 0 }, (id) => granted.push(id))],
    phase: log, step, signal: ctx.signal, maxSeconds: Math.ceil(rps === null ? 120 + phase.buyers / 100 : (phase.buyers / rps) * 3 + ctx.timeoutSeconds + 10),
  });
  afterLoad(log, step, end);
  let paid: { paid: number; refused: Record<string, number> } | null = null;
  if (phase.pay) paid = await payAll(ctx, log, granted, 'pay every hold');
  const after = await skuView(ctx.api, ctx.creds.operator?.value ?? null, phase.sku);
  log.endMs = ctx.ledger.now();
  Object.assign(log.extra, {
    sku: phase.sku, buyers: phase.buyers, qty: phase.qty, created: created !== undefined, scenarioStock: created?.stock ?? null,
    stockAtStart, engineAvailableAtStart: before.available, stockProblem, soldAtStart: before.sold, reservedAtStart: before.reserved,
    grantedUnits: granted.length * phase.qty, paidUnits: paid?.paid ?? null, payRefusals: paid?.refused ?? null,
    after: { onHand: after.onHand, available: after.available, reserved: after.reserved, sold: after.sold },
  });
  return log;
}

/** The rate of a closed-loop step: answers per second over its time. */
const rateOf = (s: StepLog): number => (activeMs(s) > 0 ? (s.answered * 1000) / activeMs(s) : 0);

type Fate = 'pay' | 'cancel' | 'abandon';

/**
 * The fates of flows 0, 1, 2, ... in the mix, by smooth weighted round robin: consecutive
 * flows follow the mix closely, and flow n's fate is known before it starts (one cycle of
 * pay + cancel + abandon flows, repeated).
 */
export function fateCycle(mix: { pay: number; cancel: number; abandon: number }): Fate[] {
  const fates: Fate[] = ['pay', 'cancel', 'abandon'];
  const weights = [mix.pay, mix.cancel, mix.abandon];
  const total = weights.reduce((a, b) => a + b, 0);
  const current = [0, 0, 0];
  const out: Fate[] = [];
  for (let k = 0; k < total; k++) {
    let best = 0;
    for (let i = 0; i < 3; i++) {
      current[i]! += weights[i]!;
      if (current[i]! > current[best]!) best = i;
    }
    current[best]! -= total;
    out.push(fates[best]!);
  }
  return out;
}

/**
 * The flows from flow `first` on that `requests` requests carry, each whole: a flow is a
 * reserve, and a pay or cancel unless it is abandoned, so a flow is never started that the
 * budget cannot finish.
 */
export function flowsWithin(fateOf: (n: number) => Fate, first: number, requests: number): { flows: number; requests: number } {
  let flows = 0;
  let used = 0;
  for (;;) {
    const need = fateOf(first + flows) === 'abandon' ? 1 : 2;
    if (used + need > requests) return { flows, requests: used };
    used += need;
    flows++;
  }
}

/** reserve and flow phases: the steps of the load shape, one run of the sender each. */
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
  const flows = {
    planned: 0, started: 0, assigned: { pay: 0, cancel: 0, abandon: 0 }, noHold: 0,
    pay: 0, payOk: 0, cancel: 0, cancelOk: 0, abandon: 0, followUpRefused: 0, followUpLost: 0,
  };
  let fateOf: ((n: number) => Fate) | null = null;
  if (phase.kind === 'flow') {
    const cycle = fateCycle(phase.mix);
    const fate = (n: number): Fate => cycle[n % cycle.length]!;
    fateOf = fate;
    const reserve = requests[0]!;
    requests[0] = {
      ...reserve,
      build: (context) => {
        const f = fate(counter.n);
        context.fate = f;
        flows.started++;
        flows.assigned[f]++;
        return reserve.build(context);
      },
    };
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
        if (status !== 200) {
          flows.followUpRefused++;
          return;
        }
        const id = String(context.id);
        if (context.fate === 'pay') {
          flows.payOk++;
          noteHoldEnd(ctx, id, 'paid');
        } else {
          flows.cancelOk++;
          noteHoldEnd(ctx, id, 'cancelled');
        }
      },
      onLost(context) {
        flows.followUpLost++;
        noteHoldEnd(ctx, String(context.id), 'uncertain');
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
    // At a rate: rate x seconds requests, within what the scenario's cap leaves; a flow phase
    // starts only the flows those requests finish, spread evenly over the step's seconds.
    let count: number | null = null;
    let rate: number | null = null;
    if (rps !== null) {
      let amount = rps * plan.seconds;
      if (amount > ctx.ledger.budget.remaining) {
        log.notes.push(`step ${label} was cut to ${fmt(Math.max(0, ctx.ledger.budget.remaining))} requests: the scenario's cap of ${fmt(ctx.ledger.budget.max)} requests`);
        amount = Math.max(0, ctx.ledger.budget.remaining);
      }
      if (fateOf !== null) {
        const f = flowsWithin(fateOf, counter.n, amount);
        count = f.flows;
        step.intended = f.requests;
        flows.planned += f.flows;
      } else {
        count = amount;
        step.intended = amount;
      }
      rate = count / plan.seconds;
    }
    // Buyer tokens (a bounded chunk) are minted before the step, so that minting is not in its figures.
    who.mintAhead(counter.n, count ?? Math.min(100_000, plan.seconds * 10_000));
    ctx.onStep(log, step);
    const end = await runLoad(ctx.ledger, {
      url: ctx.api.url, connections: phase.connections, rate, count, seconds: plan.seconds, timeoutSeconds: ctx.timeoutSeconds,
      requests, phase: log, step, signal: ctx.signal, maxSeconds: plan.seconds * 3 + ctx.timeoutSeconds + 5,
    });
    afterLoad(log, step, end);
    if (rps === null) capacity.push(rateOf(step));
    if (plan.timesCapacity !== undefined && step.intended !== null && step.late > step.intended * 0.01) {
      const shed = step.outcomes.get('503 overloaded') ?? 0;
      log.notes.push(`at ${plan.timesCapacity} x capacity (${fmt(rps ?? 0)}/s planned) the target answered ${fmt(rateOf(step))}/s: ${fmt(step.late)} of ${fmt(step.intended)} requests went out late, ` +
        `waiting for a free connection, and ${fmt(shed)} were shed with 503 overloaded; the engine sheds past FLASH_HTTP_INFLIGHT_MAX requests in progress (or a full shard mailbox), and these ${fmt(step.connections)} connections never had more than ${fmt(step.connections)} in flight`);
    }
    if (end.stopped === 'cap') break;
  }
  log.endMs = ctx.ledger.now();
  if (capacity.length > 0) log.extra.capacityPerSecond = Math.round(capacity[capacity.length - 1]!);
  if (phase.kind === 'flow') {
    log.extra.flows = flows;
    log.extra.mix = phase.mix;
  }
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
  const dropView = await ctx.api.expect(`GET /v1/drops/${phase.drop}`, 'drop.get', 'GET', `/v1/drops/${seg(phase.drop)}`, { token: ctx.creds.operator?.value ?? null });
  const queue = ((dropView.body as Obj).queue ?? null) as Obj | null;
  // The scenario and the setup made sure of a queue; one gone since is the engine's doing.
  if (queue === null) throw new CliError(Exit.refused, `phase ${phase.name}: drop ${phase.drop} has no queue any more (it had one when the run began)`);
  const who = new PhaseBuyers(ctx, phase, as);
  who.mintAhead(0, phase.buyers);
  const joined: number[] = [];
  const rps = phase.load.shape === 'constant' ? phase.load.rps : null;
  const join = log.step(rps === null ? 'join (max)' : `join ${rps}/s`, rps === null ? 'closed loop' : 'constant rate', rps, phase.connections);
  join.intended = phase.buyers;
  ctx.onStep(log, join);
  let n = 0;
  const joinEnd = await runLoad(ctx.ledger, {
    url: ctx.api.url, connections: phase.connections, rate: rps, count: phase.buyers, seconds: rps === null ? 0 : phase.buyers / rps, timeoutSeconds: ctx.timeoutSeconds,
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
  afterLoad(log, join, joinEnd);

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
  const answers = new NoAnswers(log);
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
        answers.saw(r.status);
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
        const sentMs = ctx.ledger.now();
        const rr = await ctx.api.tryCall('reservation.create', 'POST', '/v1/reservations', { token, body, filing: { phase: log, step } });
        answers.saw(rr.status);
        const code = rr.status === 201 || rr.status === 200 ? 'reserved' : `reserve ${rr.code ?? rr.status}`;
        reserves[code] = (reserves[code] ?? 0) + 1;
        done('admitted');
        const id = rr.status === 201 || rr.status === 200 ? reservationIdOf(rr.text) : null;
        if (id !== null) noteHeld(ctx, id, { sku: phase.sku, qty: phase.qty, owner: ctx.cancelToken === null ? who : null, n: e.k, sentMs: Math.floor(sentMs), atMs: Math.ceil(ctx.ledger.now()) });
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
