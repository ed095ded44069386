// A history recorder and a load driver for the history checker (test/support/linearizability.ts).
// Every call a client makes is recorded as one operation: its invocation and completion
// times on one monotonic clock (performance.now(), in ms), its arguments, and its outcome.
//
// What an answer tells, and so which outcome an operation gets (shared/API.md and the code
// paths in src/gateway/http-gateway.ts, src/engine/worker-transport.ts):
// - `ok`: any 2xx, with the answer. The change is durable (the shard answers after fsync).
// - `fail`, checked: a 4xx the sequential model predicts (sold_out, quota_exceeded,
//   unknown_reservation, reservation_cancelled, already_paid, ...).
//   By contract a 4xx changed nothing (bad input is refused before anything reaches a shard;
//   a shard answers a refusal without a log write). The one refusal that changes state,
//   410 reservation_expired (it expires a due hold), cannot happen here: holds last an hour.
// - `fail`, unchecked: a definite refusal that changed nothing but that the model of one SKU
//   cannot predict, so its answer is not compared: 429 rate_limited (a gateway or shard
//   limiter, before the core is asked), 503 `overloaded` (the HTTP in-flight bound answers
//   before reading the body; a full shard mailbox answers before the command is queued: in
//   both cases nothing was sent to a shard), 503 `shutting_down` (a draining gateway answers
//   before reading the body), and a connection that was refused (ECONNREFUSED: the request
//   never left this process). Such an operation is a no-op that constrains nothing.
// - `unknown`: anything else, which may or may not have taken effect: 503
//   `shard_unavailable` (the same code answers the in-flight calls of a crashed worker, whose
//   batch may already be durable, and NATS calls that got no reply; also some that were never
//   sent, but the code cannot tell them apart), 500, any other status, a reset or hung-up
//   connection, a timeout. An unknown operation may take effect at any moment after its
//   invocation, or never. Each records the engine process (`epoch`) it was sent to: once that
//   process is dead (kill -9) it can no longer take effect, so its deadline is the moment the
//   process was seen dead (Infinity while the process still runs).
// Unknown reads (getSku, getReservation) tell nothing and are ignored by the checker.

import { performance } from 'node:perf_hooks';
import { LoadClient, type LoadReply } from './http-raw.js';

export type OpName = 'reserve' | 'pay' | 'cancel' | 'getReservation' | 'getSku';

export interface ReserveArgs { sku: string; buyerId: string; qty: number; idempotencyKey?: string }
export interface IdArgs { reservationId: string }
export interface SkuArgs { sku: string }
export type OpArgs = ReserveArgs | IdArgs | SkuArgs;

/** The fields of a reservation answer the checker compares. */
export interface ReservationAnswer {
  reservationId: string;
  sku: string;
  buyerId: string;
  qty: number;
  status: string;
  /** The `idempotent-replayed: true` header was present. */
  replayed: boolean;
}
/** The counters of a SKU view. */
export interface SkuAnswer { sku: string; onHand: number; reserved: number; sold: number; available: number }
export type Answer = ReservationAnswer | SkuAnswer;

export type Outcome =
  | { type: 'ok'; status: number; answer: Answer }
  | { type: 'fail'; status: number; code: string; checked: boolean }
  | { type: 'unknown'; reason: string };

export interface Operation {
  id: number;
  client: string;
  op: OpName;
  args: OpArgs;
  invokeMs: number;
  completeMs: number;
  outcome: Outcome;
  /** The engine process the call was sent to (0 for hand-written histories). */
  epoch: number;
  /** Unknown outcomes only: after this moment the operation can no longer take effect. */
  deadlineMs: number;
}

/** Definite refusals that changed nothing but that the model of one SKU cannot predict. */
const uncheckedRefusals = new Set(['rate_limited', 'overloaded', 'shutting_down', 'connection_refused']);

/**
 * The outcome of one HTTP exchange: `reply` when an answer arrived, else the error the
 * client raised. See the header comment for why each case is definite or unknown.
 */
export function classify(op: OpName, reply: LoadReply | null, error: unknown): Outcome {
  if (reply === null) {
    const code = (error as NodeJS.ErrnoException | undefined)?.code;
    if (code === 'ECONNREFUSED') return { type: 'fail', status: 0, code: 'connection_refused', checked: false };
    return { type: 'unknown', reason: `${code ?? 'error'}: ${(error as Error | undefined)?.message ?? String(error)}` };
  }
  const { status, body } = reply;
  const code: unknown = body?.error?.code;
  if (status >= 200 && status < 300) {
    if (op === 'getSku') {
      return { type: 'ok', status, answer: { sku: body.sku, onHand: body.onHand, reserved: body.reserved, sold: body.sold, available: body.available } };
    }
    const replayed = reply.headers['idempotent-replayed'] === 'true';
    return {
      type: 'ok', status,
      answer: { reservationId: body.reservationId, sku: body.sku, buyerId: body.buyerId, qty: body.qty, status: body.status, replayed },
    };
  }
  if (status === 429 || (status === 503 && (code === 'overloaded' || code === 'shutting_down'))) {
    return { type: 'fail', status, code: String(code ?? status), checked: false };
  }
  if (status >= 400 && status < 500) return { type: 'fail', status, code: typeof code === 'string' ? code : `http_${status}`, checked: !uncheckedRefusals.has(String(code)) };
  return { type: 'unknown', reason: `${status} ${typeof code === 'string' ? code : ''}`.trim() };
}

/** The recorder: operations in invocation order, and the engine processes they went to. */
export class History {
  private readonly ops: Operation[] = [];
  private nextId = 1;
  /** The engine process that calls go to now. */
  epoch = 1;
  private readonly epochEnds = new Map<number, number>();

  now(): number {
    return performance.now();
  }

  /** The current engine process is dead (seen exited): its unknown calls cannot take effect later. */
  endEpoch(): void {
    this.epochEnds.set(this.epoch, this.now());
  }

  /** Calls from now on go to a new engine process. */
  newEpoch(): void {
    this.epoch++;
  }

  /** Runs one call and records it. Never throws: a failure becomes the outcome. */
  async run(client: string, op: OpName, args: OpArgs, send: () => Promise<LoadReply>): Promise<Operation> {
    const epoch = this.epoch;
    const invokeMs = this.now();
    let reply: LoadReply | null = null;
    let error: unknown = null;
    try {
      reply = await send();
    } catch (e) {
      error = e;
    }
    const completeMs = this.now();
    const record: Operation = {
      id: this.nextId++, client, op, args, invokeMs, completeMs, outcome: classify(op, reply, error), epoch, deadlineMs: Infinity,
    };
    this.ops.push(record);
    return record;
  }

  /** Every operation, with the deadlines of unknown ones filled in from the epochs' ends. */
  operations(): Operation[] {
    return this.ops.map((o) => (o.outcome.type === 'unknown' ? { ...o, deadlineMs: this.epochEnds.get(o.epoch) ?? Infinity } : o));
  }
}

// ---------------------------------------------------------------------------------------
// The load driver.

export interface LoadOptions {
  skus: string[];
  /** A small pool, so that per-buyer quotas are reached. */
  buyers: string[];
  clients: number;
  /** Pause between one client's calls, drawn uniformly from [min, max] ms. */
  thinkMs?: [number, number];
  /** How long one call may take before it is abandoned as unknown. */
  timeoutMs?: number;
}

type Target = { client: LoadClient } | null;

/** A key retried after an unknown answer, until a definite one. */
interface Pending { args: ReserveArgs }

/**
 * N clients doing random calls over a few SKUs: reserve (a fresh idempotency key mostly,
 * sometimes one used before, for the same or another qty), pay, cancel and read the
 * reservations any client was given, and read the SKUs. A reserve whose outcome is unknown
 * is retried with the same key (and arguments) until a definite answer comes back. While the
 * engine is down (`pause`) the clients wait; `resume` points them at the restarted engine.
 */
export class LoadDriver {
  private target: Target = null;
  private readonly clients: LoadClient[] = [];
  private waiters: (() => void)[] = [];
  private stopped = false;
  private running: Promise<void>[] = [];
  /** Reservation ids some ok answer named. */
  readonly knownIds: string[] = [];
  private readonly knownSet = new Set<string>();
  /** Unknown reserves whose key has not had a definite answer yet. */
  private readonly unresolved = new Map<string, Pending>();
  private newHoldWaiters: ((seen: boolean) => void)[] = [];

  constructor(readonly history: History, readonly opts: LoadOptions) {}

  /** Adds a SKU (created already) to those the clients pick from. */
  addSku(sku: string): void {
    this.opts.skus.push(sku);
  }

  /**
   * Resolves true as soon as some client is answered a new hold (201, not a replay), or
   * false after `timeoutMs`. A kill right then finds that hold's turn just answered.
   */
  nextNewHold(timeoutMs: number): Promise<boolean> {
    return new Promise((resolve) => {
      const timer = setTimeout(() => {
        this.newHoldWaiters = this.newHoldWaiters.filter((w) => w !== done);
        resolve(false);
      }, timeoutMs);
      const done = (seen: boolean): void => {
        clearTimeout(timer);
        resolve(seen);
      };
      this.newHoldWaiters.push(done);
    });
  }

  /** Points the clients at an engine (a new LoadClient per engine process). */
  resume(port: number): void {
    this.target = { client: new LoadClient(port, this.opts.clients + 2) };
    this.clients.push(this.target.client);
    for (const w of this.waiters.splice(0)) w();
  }

  /** New calls wait; calls in flight go on (and fail when the engine dies). */
  pause(): void {
    this.target = null;
  }

  /** The engine to call, once there is one; null once stopped with none. */
  private async ready(): Promise<LoadClient | null> {
    while (this.target === null && !this.stopped) await new Promise<void>((res) => this.waiters.push(res));
    return this.target?.client ?? null;
  }

  start(): void {
    this.stopped = false;
    for (let c = 0; c < this.opts.clients; c++) this.running.push(this.clientLoop(`c${c}`));
  }

  async stop(): Promise<void> {
    this.stopped = true;
    for (const w of this.waiters.splice(0)) w();
    await Promise.all(this.running);
    this.running = [];
  }

  close(): void {
    for (const c of this.clients) c.close();
  }

  private learn(o: Operation): void {
    if (o.outcome.type !== 'ok' || o.op !== 'reserve') return;
    const id = (o.outcome.answer as ReservationAnswer).reservationId;
    if (!this.knownSet.has(id)) {
      this.knownSet.add(id);
      this.knownIds.push(id);
    }
  }

  /** One call, recorded; reserves keep the unresolved set of keys up to date. */
  async call(client: string, op: OpName, args: OpArgs, lc: LoadClient): Promise<Operation> {
    const timeoutMs = this.opts.timeoutMs ?? 5000;
    const send = (): Promise<LoadReply> => {
      switch (op) {
        case 'reserve': return lc.call('POST', '/v1/reservations', args, {}, timeoutMs);
        case 'pay': return lc.call('POST', `/v1/reservations/${(args as IdArgs).reservationId}/pay`, {}, {}, timeoutMs);
        case 'cancel': return lc.call('POST', `/v1/reservations/${(args as IdArgs).reservationId}/cancel`, {}, {}, timeoutMs);
        case 'getReservation': return lc.call('GET', `/v1/reservations/${(args as IdArgs).reservationId}`, undefined, {}, timeoutMs);
        case 'getSku': return lc.call('GET', `/v1/skus/${(args as SkuArgs).sku}`, undefined, {}, timeoutMs);
      }
    };
    const o = await this.history.run(client, op, args, send);
    this.learn(o);
    if (o.op === 'reserve' && o.outcome.type === 'ok' && !(o.outcome.answer as ReservationAnswer).replayed) {
      for (const w of this.newHoldWaiters.splice(0)) w(true);
    }
    if (op === 'reserve') {
      const a = args as ReserveArgs;
      const k = `${a.sku}\u0000${a.buyerId}\u0000${a.idempotencyKey}`;
      if (o.outcome.type === 'unknown') this.unresolved.set(k, { args: a });
      else if (o.outcome.type === 'ok' || o.outcome.checked) this.unresolved.delete(k);
    }
    return o;
  }

  private async clientLoop(client: string): Promise<void> {
    const { skus, buyers } = this.opts;
    const [thinkMin, thinkMax] = this.opts.thinkMs ?? [0, 4];
    const pick = <T>(xs: readonly T[]): T => xs[Math.floor(Math.random() * xs.length)]!;
    const mine: ReserveArgs[] = [];
    let retry: ReserveArgs | null = null;
    let n = 0;
    while (!this.stopped) {
      const lc = await this.ready();
      if (lc === null || this.stopped) break;
      if (retry !== null) {
        const o = await this.call(client, 'reserve', retry, lc);
        if (o.outcome.type === 'ok' || (o.outcome.type === 'fail' && o.outcome.checked)) retry = null;
        else await sleep(5);
        continue;
      }
      const dice = Math.random();
      if (dice < 0.4 || this.knownIds.length === 0) {
        let args: ReserveArgs;
        if (mine.length > 0 && Math.random() < 0.15) {
          const before = pick(mine);
          args = Math.random() < 0.8 ? before : { ...before, qty: before.qty === 1 ? 2 : 1 };
        } else {
          args = { sku: pick(skus), buyerId: pick(buyers), qty: Math.random() < 0.75 ? 1 : 2, idempotencyKey: `${client}-k${n++}` };
          mine.push(args);
        }
        const o = await this.call(client, 'reserve', args, lc);
        if (o.outcome.type === 'unknown') retry = args;
      } else if (dice < 0.55) {
        await this.call(client, 'pay', { reservationId: pick(this.knownIds) }, lc);
      } else if (dice < 0.67) {
        await this.call(client, 'cancel', { reservationId: pick(this.knownIds) }, lc);
      } else if (dice < 0.82) {
        await this.call(client, 'getReservation', { reservationId: pick(this.knownIds) }, lc);
      } else {
        await this.call(client, 'getSku', { sku: pick(skus) }, lc);
      }
      const think = thinkMin + Math.random() * (thinkMax - thinkMin);
      if (think >= 1) await sleep(think);
    }
  }

  /**
   * After the load (clients stopped, engine up): retries every reserve whose outcome is
   * still unknown until it gets a definite answer (a refusal then proves it never took
   * effect: an idempotent replay is answered before any other check), then reads every
   * reservation an answer named and every SKU. All of it is recorded in the history too
   * (client "final"). Returns what the reads answered, for the final-state check.
   */
  async finalReads(attemptsMax = 50): Promise<FinalReads> {
    const lc = await this.ready();
    if (lc === null) throw new Error('finalReads: no engine to read from (resume first)');
    for (let attempt = 0; this.unresolved.size > 0 && attempt < attemptsMax; attempt++) {
      if (attempt > 0) await sleep(20);
      await Promise.all([...this.unresolved.values()].map((p) => this.call('final', 'reserve', p.args, lc)));
    }
    const reservations = new Map<string, Operation>();
    await Promise.all(this.knownIds.map(async (id) => {
      reservations.set(id, await this.call('final', 'getReservation', { reservationId: id }, lc));
    }));
    const skus = new Map<string, Operation>();
    for (const sku of this.opts.skus) skus.set(sku, await this.call('final', 'getSku', { sku }, lc));
    return { reservations, skus, unresolvedReserves: [...this.unresolved.values()].map((p) => p.args) };
  }
}

/** The final reads (as recorded operations), and any reserve whose outcome stayed unknown. */
export interface FinalReads {
  reservations: Map<string, Operation>;
  skus: Map<string, Operation>;
  unresolvedReserves: ReserveArgs[];
}

export const sleep = (ms: number): Promise<void> => new Promise((res) => setTimeout(res, ms));

/** One line for an operation, for explanations: `#12 c3 reserve(sku-a, b2, qty 1, key k5) -> 201 1.2xx held [103.2 .. 109.8 ms]`. */
export function describeOp(o: Operation): string {
  let call: string;
  switch (o.op) {
    case 'reserve': {
      const a = o.args as ReserveArgs;
      call = `reserve(${a.sku}, ${a.buyerId}, qty ${a.qty}${a.idempotencyKey === undefined ? '' : `, key ${a.idempotencyKey}`})`;
      break;
    }
    case 'getSku': call = `getSku(${(o.args as SkuArgs).sku})`; break;
    default: call = `${o.op}(${(o.args as IdArgs).reservationId})`;
  }
  let result: string;
  const out = o.outcome;
  if (out.type === 'ok') {
    const a = out.answer;
    result = 'reservationId' in a
      ? `${out.status} ${a.reservationId} ${a.status}${a.replayed ? ' (replayed)' : ''}`
      : `${out.status} onHand ${a.onHand} reserved ${a.reserved} sold ${a.sold} available ${a.available}`;
  } else if (out.type === 'fail') result = `${out.status} ${out.code}${out.checked ? '' : ' (changed nothing)'}`;
  else result = `unknown (${out.reason})${Number.isFinite(o.deadlineMs) ? `, dead by ${o.deadlineMs.toFixed(1)} ms` : ''}`;
  const span = `[${o.invokeMs.toFixed(1)} .. ${o.outcome.type === 'unknown' ? '?' : o.completeMs.toFixed(1)} ms]`;
  return `#${o.id} ${o.client} ${call} -> ${result} ${span}`;
}
