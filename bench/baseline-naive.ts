// The naive durable baseline: what one developer writes in an afternoon when told "one
// process, never lose an acknowledged reserve". The state lives in Maps on the one Node
// thread, so every decision is atomic for free; each accepted change is appended to a log
// file as one JSON line, and no answer leaves before an fdatasync covers it (and every
// change before it). fdatasyncs are grouped and pipelined: changes made while one sync
// runs are written at once and answered after the next sync. A refusal or a read changes
// nothing, but it may have seen a change that is not on disk yet, so it waits for the
// group that change is in (not at all when the log is idle). It sits behind the same
// front as the Redis and PostgreSQL baselines; the audit replays the log from the file.

import { closeSync, fdatasync, openSync, readFileSync, write } from 'node:fs';
import {
  checkSkuAgainstRecords, report, type ReservationRecord, type ReservationStore, type ReserveInput, type ReserveResult,
  type SettleResult, type SkuCounters, type SkuPolicy, type StoreAudit,
} from './baseline-store.js';

/** One log line. `hold` creates a held reservation; `settle` ends one (paid, cancelled or expired). */
type Change =
  | { t: 'sku'; sku: string; stock?: number; maxPerBuyer?: number; holdMs?: number }
  | { t: 'hold'; id: string; sku: string; buyer: string; qty: number; at: number; exp: number; idem?: string }
  | { t: 'settle'; id: string; status: 'paid' | 'cancelled' | 'expired'; at: number; ref?: string };

interface Sku {
  onHand: number;
  reserved: number;
  sold: number;
  maxPerBuyer: number;
  holdMs: number;
}

const defaultHoldMs = 600_000;

/** The Maps, changed only by `apply`, so that replaying the log rebuilds them exactly. */
class NaiveState {
  readonly skus = new Map<string, Sku>();
  readonly reservations = new Map<string, ReservationRecord>();
  /** `sku \0 buyer` -> units held or bought (released on cancel and expiry). */
  readonly quota = new Map<string, number>();
  readonly idem = new Map<string, string>();
  /**
   * Held ids per hold duration, in creation order: within one duration that is expiry
   * order, so a sweep pops due ids off the front instead of scanning every hold.
   */
  readonly dueQueues = new Map<number, { ids: string[]; head: number }>();

  apply(c: Change): void {
    if (c.t === 'sku') {
      const s = this.skus.get(c.sku) ?? { onHand: c.stock ?? 0, reserved: 0, sold: 0, maxPerBuyer: 0, holdMs: defaultHoldMs };
      if (c.maxPerBuyer !== undefined) s.maxPerBuyer = c.maxPerBuyer;
      if (c.holdMs !== undefined) s.holdMs = c.holdMs;
      this.skus.set(c.sku, s);
    } else if (c.t === 'hold') {
      this.skus.get(c.sku)!.reserved += c.qty;
      this.bumpQuota(c.sku, c.buyer, c.qty);
      this.reservations.set(c.id, { id: c.id, sku: c.sku, buyerId: c.buyer, qty: c.qty, status: 'held', createdAtMs: c.at, expiresAtMs: c.exp, settledAtMs: null, paymentRef: null });
      if (c.idem !== undefined) this.idem.set(c.idem, c.id);
      const holdMs = c.exp - c.at;
      const q = this.dueQueues.get(holdMs) ?? { ids: [], head: 0 };
      q.ids.push(c.id);
      this.dueQueues.set(holdMs, q);
    } else {
      const r = this.reservations.get(c.id)!;
      const s = this.skus.get(r.sku)!;
      s.reserved -= r.qty;
      if (c.status === 'paid') s.sold += r.qty;
      else this.bumpQuota(r.sku, r.buyerId, -r.qty);
      r.status = c.status;
      r.settledAtMs = c.at;
      if (c.ref !== undefined) r.paymentRef = c.ref;
    }
  }

  private bumpQuota(sku: string, buyer: string, qty: number): void {
    const k = `${sku}\u0000${buyer}`;
    const used = (this.quota.get(k) ?? 0) + qty;
    if (used > 0) this.quota.set(k, used);
    else this.quota.delete(k);
  }
}

interface Waiter {
  resolve(): void;
  reject(e: Error): void;
}

/**
 * An append-only file with pipelined group fdatasync. A group moves queued -> being
 * written -> written -> being synced; at most one write and one fdatasync run at a time
 * (both on libuv's thread pool), and a sync covers only groups whose write had returned
 * before it started. After a failed write or sync the log refuses everything: the Maps
 * are then ahead of the file, and a restart from the log is the only honest state.
 */
class GroupLog {
  private queuedLines: string[] = [];
  private queued: Waiter[] = [];
  private writing: Waiter[] | null = null;
  private written: Waiter[] = [];
  private syncing: Waiter[] | null = null;
  private failure: Error | null = null;

  constructor(private readonly fd: number) {}

  /** Resolves once `line` and every line appended before it are on disk. */
  append(line: string): Promise<void> {
    return this.join((w) => {
      this.queuedLines.push(line);
      this.queued.push(w);
      if (this.writing === null) this.writeQueued();
    });
  }

  /** Resolves once every line appended so far is on disk (at once when nothing is pending). */
  settled(): Promise<void> {
    const latest = [this.queued, this.writing, this.written, this.syncing].find((g) => g !== null && g.length > 0);
    if (latest === undefined && this.failure === null) return Promise.resolve();
    return this.join((w) => latest!.push(w));
  }

  get idle(): boolean {
    return this.queued.length === 0 && this.writing === null && this.written.length === 0 && this.syncing === null;
  }

  private join(enqueue: (w: Waiter) => void): Promise<void> {
    if (this.failure !== null) return Promise.reject(this.failure);
    return new Promise((resolve, reject) => enqueue({ resolve, reject }));
  }

  private writeQueued(): void {
    const group = this.queued;
    const bytes = Buffer.from(this.queuedLines.join(''));
    this.queued = [];
    this.queuedLines = [];
    this.writing = group;
    this.writeFrom(bytes, 0, () => {
      this.writing = null;
      this.written.push(...group);
      if (this.queued.length > 0) this.writeQueued();
      this.syncWritten();
    });
  }

  /** fs.write may write less than asked; the rest follows before the group counts as written. */
  private writeFrom(bytes: Buffer, offset: number, done: () => void): void {
    write(this.fd, bytes, offset, bytes.length - offset, null, (err, n) => {
      if (err !== null) return this.fail(err);
      if (offset + n < bytes.length) this.writeFrom(bytes, offset + n, done);
      else done();
    });
  }

  private syncWritten(): void {
    if (this.syncing !== null || this.written.length === 0) return;
    const group = this.written;
    this.written = [];
    this.syncing = group;
    fdatasync(this.fd, (err) => {
      if (err !== null) return this.fail(err);
      this.syncing = null;
      for (const w of group) w.resolve();
      this.syncWritten();
    });
  }

  private fail(e: Error): void {
    this.failure = e;
    for (const g of [this.queued, this.writing ?? [], this.written, this.syncing ?? []]) for (const w of g) w.reject(e);
    this.queued = [];
    this.queuedLines = [];
    this.writing = null;
    this.written = [];
    this.syncing = null;
  }
}

function counters(sku: string, s: Sku): SkuCounters {
  return {
    sku, onHand: s.onHand, reserved: s.reserved, sold: s.sold, available: s.onHand - s.reserved - s.sold,
    mode: 'pre_deduct', holdSeconds: s.holdMs / 1000, maxPerBuyer: s.maxPerBuyer,
  };
}

export class NaiveStore implements ReservationStore {
  readonly name = 'naive';
  private readonly state = new NaiveState();
  private readonly log: GroupLog;
  private readonly fd: number;

  /** `logPath` must be a new file (a fresh data dir per run): the store never replays on open. */
  constructor(private readonly logPath: string) {
    this.fd = openSync(logPath, 'wx');
    this.log = new GroupLog(this.fd);
  }

  async durability(): Promise<string> {
    return 'a JSON line per change in a log file, answered once a group fdatasync covers it';
  }

  /**
   * Applies the change now (the next request sees it), takes `view` of the result at once
   * (later changes must not leak into this answer) and returns it once the change is on disk.
   */
  private async commit<T>(c: Change, view: () => T): Promise<T> {
    this.state.apply(c);
    const answer = view();
    await this.log.append(`${JSON.stringify(c)}\n`);
    return answer;
  }

  /** An answer that changes nothing, given once every change it may have seen is on disk. */
  private async unchanged<T>(answer: T): Promise<T> {
    await this.log.settled();
    return answer;
  }

  upsertSku(sku: string, policy: Partial<SkuPolicy>, nowMs: number): Promise<{ created: boolean; counters: SkuCounters }> {
    void nowMs;
    const created = !this.state.skus.has(sku);
    const change: Change = {
      t: 'sku', sku, ...(created ? { stock: policy.stock ?? 0 } : {}),
      ...(policy.maxPerBuyer === undefined ? {} : { maxPerBuyer: policy.maxPerBuyer }),
      ...(policy.holdSeconds === undefined ? {} : { holdMs: policy.holdSeconds * 1000 }),
    };
    return this.commit(change, () => ({ created, counters: counters(sku, this.state.skus.get(sku)!) }));
  }

  getSku(sku: string): Promise<SkuCounters | null> {
    const s = this.state.skus.get(sku);
    return this.unchanged(s === undefined ? null : counters(sku, s));
  }

  /** The engine's order: unknown SKU, idempotent replay, quota, stock. Decided in one synchronous step. */
  reserve(input: ReserveInput, nowMs: number): Promise<ReserveResult> {
    const s = this.state.skus.get(input.sku);
    if (s === undefined) return this.unchanged({ ok: false, code: 'unknown_sku', message: `no sku ${input.sku}` });
    const idem = input.idemKey === undefined ? undefined : `${input.sku}\u0000${input.buyerId}\u0000${input.idemKey}`;
    const prev = idem === undefined ? undefined : this.state.reservations.get(this.state.idem.get(idem) ?? '');
    // A used key answers its first reservation, whatever this request's qty (API.md).
    if (prev !== undefined) return this.unchanged({ ok: true, replayed: true, record: { ...prev } });
    const used = this.state.quota.get(`${input.sku}\u0000${input.buyerId}`) ?? 0;
    if (s.maxPerBuyer > 0 && used + input.qty > s.maxPerBuyer) {
      return this.unchanged({ ok: false, code: 'quota_exceeded', message: `buyer may hold or buy at most ${s.maxPerBuyer} units (has ${used})` });
    }
    const available = s.onHand - s.reserved - s.sold;
    if (available < input.qty) return this.unchanged({ ok: false, code: 'sold_out', message: `sku ${input.sku} has ${available} units available` });
    const hold: Change = { t: 'hold', id: input.id, sku: input.sku, buyer: input.buyerId, qty: input.qty, at: nowMs, exp: nowMs + s.holdMs, ...(idem === undefined ? {} : { idem }) };
    return this.commit(hold, () => ({ ok: true, replayed: false, record: { ...this.state.reservations.get(input.id)! } }));
  }

  settle(id: string, action: 'pay' | 'cancel', paymentRef: string | null, nowMs: number): Promise<SettleResult> {
    const r = this.state.reservations.get(id);
    if (r === undefined) return this.unchanged(null);
    if (r.status !== 'held') return this.unchanged({ kind: 'unchanged', record: { ...r } });
    // A due hold expires instead of being paid or cancelled late.
    const status = nowMs >= r.expiresAtMs ? 'expired' : action === 'pay' ? 'paid' : 'cancelled';
    const change: Change = { t: 'settle', id, status, at: nowMs, ...(status === 'paid' && paymentRef !== null ? { ref: paymentRef } : {}) };
    return this.commit(change, () => ({ kind: status === 'expired' ? 'expired_now' : 'settled', record: { ...r } }));
  }

  getReservation(id: string): Promise<ReservationRecord | null> {
    const r = this.state.reservations.get(id);
    return this.unchanged(r === undefined ? null : { ...r });
  }

  async sweep(nowMs: number, limit: number): Promise<number> {
    const expiring: Promise<void>[] = [];
    for (const q of this.state.dueQueues.values()) {
      while (expiring.length < limit && q.head < q.ids.length) {
        const r = this.state.reservations.get(q.ids[q.head]!)!;
        if (r.status === 'held' && r.expiresAtMs > nowMs) break;
        q.head++;
        if (r.status === 'held') expiring.push(this.commit({ t: 'settle', id: r.id, status: 'expired', at: nowMs }, () => undefined));
      }
      // Drops the popped ids now and then, so a long run does not keep every id twice.
      if (q.head > 4096 && q.head * 2 > q.ids.length) {
        q.ids.splice(0, q.head);
        q.head = 0;
      }
    }
    await Promise.all(expiring);
    return expiring.length;
  }

  /**
   * Replays the log file into fresh Maps and compares them with the live ones (so every
   * acknowledged change must be on disk), then checks the live counters against the
   * records. It reads the file only when no group is in flight, in one synchronous step.
   */
  async audit(focusSku?: string): Promise<StoreAudit> {
    while (!this.log.idle) await this.log.settled();
    const replayed = new NaiveState();
    for (const line of readFileSync(this.logPath, 'utf8').split('\n')) if (line !== '') replayed.apply(JSON.parse(line) as Change);
    const a: StoreAudit = { skus: 0, reservations: 0, held: 0, paid: 0, expired: 0, cancelled: 0, violations: [] };
    const held = new Map<string, number>();
    const paid = new Map<string, number>();
    const add = (m: Map<string, number>, k: string, n: number): void => void m.set(k, (m.get(k) ?? 0) + n);
    const focus = { held: 0, paid: 0 };
    for (const r of this.state.reservations.values()) {
      a.reservations++;
      a[r.status]++;
      if (r.status === 'held') add(held, r.sku, r.qty);
      if (r.status === 'paid') add(paid, r.sku, r.qty);
      if (r.sku === focusSku && (r.status === 'held' || r.status === 'paid')) focus[r.status]++;
      const onDisk = replayed.reservations.get(r.id);
      if (onDisk?.status !== r.status) report(a.violations, `reservation ${r.id} is ${r.status} in memory but ${onDisk?.status ?? 'absent'} in the log`);
    }
    if (replayed.reservations.size !== this.state.reservations.size) report(a.violations, `the log holds ${replayed.reservations.size} reservations, memory ${this.state.reservations.size}`);
    for (const [sku, s] of this.state.skus) {
      a.skus++;
      checkSkuAgainstRecords(a.violations, { sku, ...s }, held.get(sku) ?? 0, paid.get(sku) ?? 0);
      const d = replayed.skus.get(sku);
      if (d?.reserved !== s.reserved || d.sold !== s.sold || d.onHand !== s.onHand) report(a.violations, `${sku}: the log replays to ${JSON.stringify(d ?? null)}, memory has ${JSON.stringify(s)}`);
    }
    for (const [k, used] of this.state.quota) {
      const [sku, buyer] = k.split('\u0000') as [string, string];
      const max = this.state.skus.get(sku)?.maxPerBuyer ?? 0;
      if (max > 0 && used > max) report(a.violations, `buyer ${buyer} holds or bought ${used} units of ${sku}, over maxPerBuyer ${max}`);
    }
    if (focusSku !== undefined) a.focus = { sku: focusSku, ...focus, heldUnits: held.get(focusSku) ?? 0, paidUnits: paid.get(focusSku) ?? 0 };
    return a;
  }

  async close(): Promise<void> {
    while (!this.log.idle) await this.log.settled();
    closeSync(this.fd);
  }
}
