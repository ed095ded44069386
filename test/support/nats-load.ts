// Client loops for the NATS fault suites, and the ledger of what they were told. Every
// reserve carries an idempotency key and every attempt is recorded with its start and end
// (performance.now() of this process), so a test can say when a shard went away, when it
// came back, and check afterwards that every acknowledged change is still there.
// Calls carry the token of the caller that makes them in a real shop: the shop's backend
// reserves and reads reservations, the payment side pays, and SKU views are public.

import { expect } from 'vitest';
import { NO_TOKEN, TOKENS, sleep } from './engine-process.js';
import { LoadClient } from './http-raw.js';

/** LoadClient headers that present `token` (NO_TOKEN: none). */
const authAs = (token: string): Record<string, string> => ({ authorization: token === NO_TOKEN ? NO_TOKEN : `Bearer ${token}` });
const asShop = authAs(TOKENS.shop);
const asPayments = authAs(TOKENS.payments);
const asPublic = authAs(NO_TOKEN);

export type Status = 'held' | 'paid' | 'cancelled' | 'expired';
const laterOrSame: Record<Status, Status[]> = {
  held: ['held', 'paid', 'cancelled', 'expired'],
  paid: ['paid'],
  cancelled: ['cancelled'],
  expired: ['expired'],
};

export interface ReserveAsk {
  sku: string;
  buyerId: string;
  qty: number;
  idempotencyKey: string;
}

export interface Attempt {
  kind: 'reserve' | 'pay';
  sku: string;
  /** The shard the SKU lives on. */
  shard: number;
  /** buyerId/idempotencyKey of the reserve (or the reservation id for a pay). */
  key: string;
  startMs: number;
  endMs: number;
  /** HTTP status, or 0 when no answer came (timeout, connection error). */
  status: number;
  code?: string;
  reservationId?: string;
  error?: string;
}

export interface Known {
  id: string;
  sku: string;
  buyerId: string;
  qty: number;
  status: Status;
  /** A pay was sent and its answer was not a 2xx: the status may have moved on. */
  settleInDoubt: boolean;
}

/** Everything the clients were told, and everything they sent without a definitive answer. */
export class Ledger {
  readonly attempts: Attempt[] = [];
  readonly known = new Map<string, Known>();
  /** reservation ids ever answered for one buyer + key (must be exactly one). */
  readonly idsByKey = new Map<string, Set<string>>();
  /** Reserves whose last answer was a 503 or nothing: applied or not, we do not know yet. */
  readonly inDoubt = new Map<string, ReserveAsk>();
  /** Reserves answered 503 (or nothing) at least once before a definitive answer. */
  readonly retriedKeys = new Set<string>();
  readonly unexpected: string[] = [];

  static keyOf(ask: ReserveAsk): string {
    return `${ask.buyerId}/${ask.idempotencyKey}`;
  }

  learn(ask: ReserveAsk, view: any): void {
    const key = Ledger.keyOf(ask);
    this.inDoubt.delete(key);
    let ids = this.idsByKey.get(key);
    if (ids === undefined) this.idsByKey.set(key, (ids = new Set()));
    ids.add(view.reservationId);
    const prior = this.known.get(view.reservationId);
    if (prior !== undefined && (prior.buyerId !== ask.buyerId || prior.sku !== ask.sku)) {
      this.unexpected.push(`reservation id ${view.reservationId} was issued twice (${prior.buyerId} and ${ask.buyerId})`);
    }
    if (view.sku !== ask.sku || view.buyerId !== ask.buyerId || view.qty !== ask.qty) {
      this.unexpected.push(`reserve ${JSON.stringify(ask)} answered ${JSON.stringify(view)}`);
    }
    if (prior === undefined) this.known.set(view.reservationId, { id: view.reservationId, sku: ask.sku, buyerId: ask.buyerId, qty: ask.qty, status: view.status, settleInDoubt: false });
  }

  /** Units the ledger says a SKU holds and sold (after verify() resolved every doubt). */
  units(sku: string): { reserved: number; sold: number; holds: number } {
    const mine = [...this.known.values()].filter((k) => k.sku === sku);
    return {
      reserved: mine.filter((k) => k.status === 'held').reduce((n, k) => n + k.qty, 0),
      sold: mine.filter((k) => k.status === 'paid').reduce((n, k) => n + k.qty, 0),
      holds: mine.length,
    };
  }
}

export interface LoopOptions {
  /** The SKUs this loop reserves on, in turn, with the shard each lives on. */
  skus: { sku: string; shard: number }[];
  tag: string;
  /** Share of held reservations that are then paid (0..1). */
  payShare?: number;
  /**
   * After a 503 or no answer: `retry` sends the same reserve again (same key) until it is
   * answered 201 or 409 sold_out; `move-on` leaves it in doubt for verify().
   */
  on503: 'retry' | 'move-on';
  /** Pause after a 503 or no answer, so a dead shard does not turn the loop into a spin. */
  pauseAfter503Ms?: number;
  /** Pause after every answered reserve (paces a loop). */
  pauseMs?: number;
  /** Stop this loop for good once its SKU answers sold_out. */
  stopOnSoldOut?: boolean;
  requestTimeoutMs?: number;
}

export interface StopSignal {
  now: boolean;
}

const now = (): number => performance.now();

async function timed(
  ledger: Ledger, client: LoadClient, a: Omit<Attempt, 'startMs' | 'endMs' | 'status'>, method: string, path: string, body: unknown, timeoutMs: number,
  headers: Record<string, string>,
): Promise<{ status: number; body: any }> {
  const startMs = now();
  try {
    const r = await client.call(method, path, body, headers, timeoutMs);
    ledger.attempts.push({ ...a, startMs, endMs: now(), status: r.status, code: r.body?.error?.code, reservationId: r.body?.reservationId });
    return { status: r.status, body: r.body };
  } catch (e) {
    ledger.attempts.push({ ...a, startMs, endMs: now(), status: 0, error: (e as Error).message });
    return { status: 0, body: undefined };
  }
}

/** One client loop: reserve (new buyer and key each time), sometimes pay, until stopped. */
export async function reserveLoop(client: LoadClient, ledger: Ledger, o: LoopOptions, stop: StopSignal): Promise<void> {
  const timeoutMs = o.requestTimeoutMs ?? 10_000;
  for (let n = 0; !stop.now; n++) {
    const { sku, shard } = o.skus[n % o.skus.length]!;
    const buyerId = `${o.tag}-${n}`;
    const ask: ReserveAsk = { sku, buyerId, qty: 1, idempotencyKey: `idem-${buyerId}` };
    const key = Ledger.keyOf(ask);
    let r: { status: number; body: any };
    for (;;) {
      r = await timed(ledger, client, { kind: 'reserve', sku, shard, key }, 'POST', '/v1/reservations', ask, timeoutMs, asShop);
      if (r.status === 503 || r.status === 0) {
        ledger.inDoubt.set(key, ask);
        ledger.retriedKeys.add(key);
        await sleep(o.pauseAfter503Ms ?? 10);
        if (o.on503 === 'retry' && !stop.now) continue;
      }
      break;
    }
    if (r.status === 409 && r.body?.error?.code === 'sold_out') {
      ledger.inDoubt.delete(key);
      if (o.stopOnSoldOut) return;
      continue;
    }
    if (r.status !== 201) {
      if (r.status !== 503 && r.status !== 0) ledger.unexpected.push(`reserve ${JSON.stringify(ask)} -> ${r.status} ${JSON.stringify(r.body)}`);
      continue;
    }
    ledger.learn(ask, r.body);
    if (o.pauseMs) await sleep(o.pauseMs);
    if (Math.random() >= (o.payShare ?? 0)) continue;
    const k = ledger.known.get(r.body.reservationId)!;
    k.settleInDoubt = true;
    const p = await timed(ledger, client, { kind: 'pay', sku, shard, key: k.id }, 'POST', `/v1/reservations/${k.id}/pay`, {}, timeoutMs, asPayments);
    if (p.status === 200) {
      k.status = p.body.status;
      k.settleInDoubt = false;
    } else if (p.status !== 503 && p.status !== 0) {
      ledger.unexpected.push(`pay ${k.id} -> ${p.status} ${JSON.stringify(p.body)}`);
    }
  }
}

/**
 * Sends one reserve on `sku` every `everyMs`, without waiting for earlier answers: unlike a
 * client loop, it is never stuck behind a call that waits for the gateway's timeout, so it
 * shows how soon a new request is answered. Answers go to the ledger as a loop's do.
 */
export async function probeLoop(client: LoadClient, ledger: Ledger, o: { sku: string; shard: number; tag: string; everyMs: number }, stop: StopSignal): Promise<void> {
  const outstanding = new Set<Promise<void>>();
  for (let n = 0; !stop.now; n++) {
    const ask: ReserveAsk = { sku: o.sku, buyerId: `${o.tag}-${n}`, qty: 1, idempotencyKey: `idem-${o.tag}-${n}` };
    const key = Ledger.keyOf(ask);
    const p = timed(ledger, client, { kind: 'reserve', sku: o.sku, shard: o.shard, key }, 'POST', '/v1/reservations', ask, 10_000, asShop).then((r) => {
      if (r.status === 201) ledger.learn(ask, r.body);
      else if (r.status === 503 || r.status === 0) {
        ledger.inDoubt.set(key, ask);
        ledger.retriedKeys.add(key);
      } else ledger.unexpected.push(`probe reserve ${JSON.stringify(ask)} -> ${r.status} ${JSON.stringify(r.body)}`);
    });
    outstanding.add(p);
    void p.then(() => outstanding.delete(p));
    await sleep(o.everyMs);
  }
  await Promise.all(outstanding);
}

const activeLoads = new Set<() => Promise<void>>();

/** Stops every load still running (a test that failed half-way must not leave loops behind). */
export async function stopAllLoads(): Promise<void> {
  await Promise.all([...activeLoads].map((stop) => stop()));
}

/** Starts `loops` and returns a function that stops them and waits for their last call. */
export function runLoops(
  port: number, ledger: Ledger, loops: LoopOptions[], probes: { sku: string; shard: number; tag: string; everyMs: number }[] = [],
): { stop: () => Promise<void>; done: Promise<void>; client: LoadClient } {
  // A probe may have up to a gateway timeout's worth of calls outstanding.
  const client = new LoadClient(port, loops.length + 4 + probes.reduce((n, p) => n + Math.ceil(1500 / p.everyMs), 0));
  const signal: StopSignal = { now: false };
  const done = Promise.all([
    ...loops.map((o) => reserveLoop(client, ledger, o, signal)),
    ...probes.map((p) => probeLoop(client, ledger, p, signal)),
  ]).then(() => undefined);
  const stop = async (): Promise<void> => {
    signal.now = true;
    activeLoads.delete(stop);
    await done;
    client.close();
  };
  activeLoads.add(stop);
  return { client, done, stop };
}

/**
 * Resolves every doubt and checks every acknowledgement: each reserve in doubt is sent again
 * with its key until it is answered 201 or sold_out (a durable one is answered again, a lost
 * one is made now); then every known reservation must be readable, in the status it was
 * acknowledged in (or a later one when a pay was in doubt), every key must name exactly one
 * reservation, and every SKU's counters must equal what the ledger holds, exactly.
 */
export async function verifyLedger(port: number, ledger: Ledger, stock: Record<string, number>, context: string): Promise<void> {
  const client = new LoadClient(port, 32);
  try {
    const deadline = Date.now() + 20_000;
    for (const [key, ask] of [...ledger.inDoubt]) {
      for (;;) {
        const r = await client.call('POST', '/v1/reservations', ask, asShop, 10_000);
        if (r.status === 201) ledger.learn(ask, r.body);
        else if (r.status === 409 && r.body?.error?.code === 'sold_out') ledger.inDoubt.delete(key);
        else if (r.status === 503 && Date.now() < deadline) {
          await sleep(50);
          continue;
        } else ledger.unexpected.push(`${context}: retry of ${JSON.stringify(ask)} -> ${r.status} ${JSON.stringify(r.body)}`);
        break;
      }
    }
    expect(ledger.inDoubt.size, `${context}: reserves still in doubt`).toBe(0);

    const all = [...ledger.known.values()];
    const problems: string[] = [];
    for (let i = 0; i < all.length; i += 64) {
      const slice = all.slice(i, i + 64);
      const views = await Promise.all(slice.map((k) => client.call('GET', `/v1/reservations/${k.id}`, undefined, asShop)));
      slice.forEach((k, j) => {
        const v = views[j]!;
        if (v.status !== 200) return void problems.push(`${k.id} (acknowledged ${k.status}) -> ${v.status} ${JSON.stringify(v.body)}`);
        const status = v.body.status as Status;
        const allowed = k.settleInDoubt ? laterOrSame[k.status] : [k.status];
        if (!allowed.includes(status)) problems.push(`${k.id} was acknowledged ${k.status}${k.settleInDoubt ? ' (a pay was in doubt)' : ''} but is now ${status}`);
        if (v.body.qty !== k.qty || v.body.sku !== k.sku || v.body.buyerId !== k.buyerId) problems.push(`${k.id} changed: ${JSON.stringify(v.body)}`);
        k.status = status;
        k.settleInDoubt = false;
      });
    }
    expect(problems.slice(0, 20), `${context}: acknowledged reservations (${problems.length} problems of ${all.length})`).toEqual([]);

    const doubled = [...ledger.idsByKey].filter(([, ids]) => ids.size !== 1).map(([key, ids]) => `${key}: ${[...ids].join(', ')}`);
    expect(doubled, `${context}: idempotency keys answered with more than one reservation`).toEqual([]);

    for (const [sku, onHand] of Object.entries(stock)) {
      const view = (await client.call('GET', `/v1/skus/${sku}`, undefined, asPublic)).body;
      const { reserved, sold } = ledger.units(sku);
      expect({ onHand: view.onHand, reserved: view.reserved, sold: view.sold, available: view.available }, `${context}: counters of ${sku}`)
        .toEqual({ onHand, reserved, sold, available: onHand - reserved - sold });
      expect(view.reserved + view.sold, `${context}: ${sku} reserved + sold <= onHand`).toBeLessThanOrEqual(view.onHand);
    }
    expect(ledger.unexpected.slice(0, 20), `${context}: unexpected answers`).toEqual([]);
  } finally {
    client.close();
  }
}

/** Polls until `check()` holds; throws with `describe()` after timeoutMs. */
export async function waitUntil(check: () => boolean | Promise<boolean>, timeoutMs: number, describe: () => string, everyMs = 20): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!(await check())) {
    if (Date.now() > deadline) throw new Error(`not within ${timeoutMs} ms: ${describe()}`);
    await sleep(everyMs);
  }
}
