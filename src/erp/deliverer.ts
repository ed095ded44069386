// Drains every shard of an OutboxSource into an ERP sink at the pace the ERP can take: at
// most `maxRps` calls started in any second and `concurrency` calls in flight (one deliverer
// runs per deployment, so they hold for the deployment), each failure retried forever with
// capped, fully jittered backoff. It holds at most `windowEventsPerShard` events per shard
// and acknowledges only each shard's contiguous delivered prefix, so after a crash only
// events started but not yet acknowledged repeat, always with their own eventId. It never
// delivers anything the outbox did not hand it, and never an order.refunded before its
// order's order.paid was delivered (the window holds the refund back until then).

import { setMaxListeners } from 'node:events';
import { setTimeout as sleep } from 'node:timers/promises';
import { DeliveryWindow, EntryState, type WindowEntry } from './delivery-window.js';
import { failureKind, type ErpSink } from './erp-sink.js';
import type { OutboxSource, OutboxEvent } from './outbox-source.js';
import { backoffDelayMs, type BackoffPolicy } from './retry-backoff.js';
import { StartLimiter } from './start-limiter.js';

export interface DelivererOptions {
  source: OutboxSource;
  sink: ErpSink;
  /** Calls started in any 1 s window by this deliverer, the only one of its deployment (retries count). */
  maxRps: number;
  /** Calls in flight, by this deliverer. */
  concurrency: number;
  /** Events fetched but not yet acknowledged, per shard. */
  windowEventsPerShard: number;
  backoff: BackoffPolicy;
  /** How often to look for new events when the source has no waitForEvents, or as a safety net. */
  pollMs: number;
  /** Added to the 1 s rate window so network jitter never shows the ERP one call too many. */
  rateGuardMs?: number;
  /**
   * Start no call during the first rate window after start(). A deliverer that follows
   * another (a restart, a lease hand-over) cannot know when the other's last calls started;
   * waiting one window keeps `maxRps` across the two. Outbox reads go on meanwhile.
   */
  quietFirstWindow?: boolean;
  /**
   * Checked before every call start: false starts nothing (the deployment's deliverer lease
   * has lapsed, say, after this process stood still). Calls already started go on.
   */
  mayStart?: () => boolean;
  observer?: DelivererObserver;
  /** Uniform in [0, 1); Math.random by default. */
  random?: () => number;
}

export interface DelivererObserver {
  onDelivered?(events: readonly OutboxEvent[]): void;
  /** A failed call (kind `outbox_read` / `outbox_ack` for the outbox itself); `events` is empty for those. */
  onFailure?(kind: string, error: unknown, events: readonly OutboxEvent[]): void;
  onAcknowledged?(shardId: number, upToSeq: number): void;
}

export interface LastError {
  kind: string;
  message: string;
  eventId: string | null;
  atMs: number;
}

export interface DelivererStats {
  /** Undelivered events the deliverer knows of (fetched into its windows). */
  backlogEvents: number;
  /** Some shard's last read filled its window: the outbox may hold more than backlogEvents. */
  backlogMayHaveMore: boolean;
  /** now - paidAt of the oldest undelivered event known; 0 when none. */
  oldestUndeliveredAgeMs: number;
  deliveredTotal: number;
  callsStarted: number;
  callsInFlight: number;
  failuresTotal: number;
  failuresByKind: Record<string, number>;
  lastError: LastError | null;
  shards: { shardId: number; fetchedSeq: number; ackedSeq: number; windowEvents: number }[];
  /** The caps this deliverer holds. */
  maxRps: number;
  concurrency: number;
  /**
   * Measured here, at the sender, where the promise is made: the most calls this deliverer
   * started within any 1 s (more than maxRps would be a broken cap; it saturates at
   * maxRps + 1), and the most it had in flight at once.
   */
  maxStartsPerSecond: number;
  maxCallsInFlight: number;
  /** Wall-clock ms of its first and last call start (null: none yet), to compare with another process's. */
  firstCallAtMs: number | null;
  lastCallAtMs: number | null;
}

/** Distinct failure kinds counted by name; past this, they count as `other` (bounded labels). */
const failureKindsMax = 64;
/** Floor between two wake-ups, so a source that resolves at once cannot spin the loop. */
const wakeIntervalMinMs = 10;
/** Longest wait for calls that ignore an abort (e.g. a running SQL statement) at stop. */
const abortWaitMs = 2000;

export class Deliverer {
  private readonly windows: DeliveryWindow[];
  private readonly windowByShard: Map<number, DeliveryWindow>;
  private readonly limiter: StartLimiter;
  private readonly random: () => number;
  private readonly timers = new Set<NodeJS.Timeout>();
  private readonly calls = new AbortController();
  private wakeCall: AbortController | null = null;
  private limiterTimer: NodeJS.Timeout | null = null;
  private waiters: (() => void)[] = [];
  private nextWindow = 0;
  private state: 'new' | 'running' | 'stopping' | 'stopped' | 'halted' = 'new';
  private inFlight = 0;
  private deliveredTotal = 0;
  private callsStarted = 0;
  private failuresTotal = 0;
  private readonly failuresByKind = new Map<string, number>();
  private lastError: LastError | null = null;
  /** Start times (monotonic ms) of the calls of the last second, oldest first, at most maxRps + 1. */
  private readonly recentStarts: Float64Array;
  private recentHead = 0;
  private recentCount = 0;
  private maxStartsPerSecond = 0;
  private maxCallsInFlight = 0;
  private firstCallAtMs: number | null = null;
  private lastCallAtMs: number | null = null;

  constructor(private readonly opts: DelivererOptions) {
    for (const [name, v] of [['maxRps', opts.maxRps], ['concurrency', opts.concurrency], ['windowEventsPerShard', opts.windowEventsPerShard]] as const) {
      if (!Number.isInteger(v) || v < 1) throw new RangeError(`${name} must be a positive integer`);
    }
    this.windows = [...new Set(opts.source.shardIds)].map((id) => new DeliveryWindow(id, opts.windowEventsPerShard));
    this.windowByShard = new Map(this.windows.map((w) => [w.shardId, w]));
    this.limiter = new StartLimiter(opts.maxRps, 1000 + (opts.rateGuardMs ?? 20));
    this.random = opts.random ?? Math.random;
    this.recentStarts = new Float64Array(opts.maxRps + 1);
    // A sink may listen for the abort once per call in flight.
    setMaxListeners(opts.concurrency + 10, this.calls.signal);
  }

  start(): void {
    if (this.state !== 'new') throw new Error('a Deliverer starts once; make a new one to start again');
    this.state = 'running';
    if (this.opts.quietFirstWindow === true) this.limiter.spendAll(performance.now());
    for (const w of this.windows) this.refill(w);
    void this.wakeLoop();
  }

  // ---- scheduling -------------------------------------------------------------------

  /** Starts calls while a slot, a start token and a ready event are all available. */
  private pump(): void {
    while (this.state === 'running' && this.inFlight < this.opts.concurrency) {
      const first = this.nextReadyWindow();
      if (first === null) return;
      if (this.opts.mayStart !== undefined && !this.opts.mayStart()) return;
      const now = performance.now();
      const waitMs = this.limiter.waitMs(now);
      if (waitMs > 0) return this.armLimiterTimer(waitMs);
      this.startCall(this.takeBatch(first), this.limiter.take(now) as number);
    }
  }

  /** Round robin over shards, so one busy shard never starves the others. */
  private nextReadyWindow(): DeliveryWindow | null {
    const n = this.windows.length;
    for (let i = 0; i < n; i++) {
      const w = this.windows[(this.nextWindow + i) % n] as DeliveryWindow;
      if (w.readyCount() > 0) {
        this.nextWindow = (this.nextWindow + i + 1) % n;
        return w;
      }
    }
    return null;
  }

  /** One call's events: from `first`, then topped up from other shards when the sink batches. */
  private takeBatch(first: DeliveryWindow): WindowEntry[] {
    const max = this.opts.sink.batchEventsMax;
    const batch = first.take(max, true);
    if (batch.length === 1 && batch[0]!.solo) return batch;
    for (let i = 0; i < this.windows.length && batch.length < max; i++) {
      const w = this.windows[i] as DeliveryWindow;
      if (w !== first) batch.push(...w.take(max - batch.length, false));
    }
    return batch;
  }

  private armLimiterTimer(waitMs: number): void {
    if (this.limiterTimer !== null) return;
    this.limiterTimer = this.timer(Math.ceil(waitMs), () => {
      this.limiterTimer = null;
      this.pump();
    });
  }

  private timer(ms: number, fn: () => void): NodeJS.Timeout {
    const t = setTimeout(() => {
      this.timers.delete(t);
      fn();
    }, ms);
    this.timers.add(t);
    return t;
  }

  // ---- calls --------------------------------------------------------------------------

  private startCall(batch: WindowEntry[], ticket: number): void {
    this.inFlight++;
    this.callsStarted++;
    this.maxCallsInFlight = Math.max(this.maxCallsInFlight, this.inFlight);
    const events = batch.map((e) => e.event);
    const sent = (): void => this.limiter.markSent(ticket, performance.now());
    // Through a then(): a sink that throws synchronously still ends as a failed call. The
    // call starts when the sink is handed it: its token counts from then (not from take()),
    // and that is the start the sender-side figures record.
    Promise.resolve().then(() => {
      const startedMs = performance.now();
      this.limiter.markSent(ticket, startedMs);
      this.noteStart(startedMs);
      return this.opts.sink.deliver(events, this.calls.signal, sent);
    }).then(
      () => this.onDelivered(batch, events),
      (e: unknown) => this.onCallFailed(batch, events, e),
    );
  }

  private onDelivered(batch: WindowEntry[], events: OutboxEvent[]): void {
    if (this.state === 'halted') return;
    this.inFlight--;
    this.deliveredTotal += batch.length;
    for (const entry of batch) this.windowOf(entry.event.shardId).markDelivered(entry);
    this.observe((o) => o.onDelivered?.(events));
    for (const w of this.windowsOf(batch)) this.acknowledge(w);
    this.pump();
    this.notify();
  }

  private onCallFailed(batch: WindowEntry[], events: OutboxEvent[], e: unknown): void {
    if (this.state === 'halted') return;
    this.inFlight--;
    this.countFailure(failureKind(e), e, events[0]?.eventId ?? null);
    this.observe((o) => o.onFailure?.(failureKind(e), e, events));
    for (const entry of batch) {
      entry.failures++;
      if (batch.length > 1) entry.solo = true;
      entry.state = EntryState.backoff;
      if (this.state !== 'running') continue;
      const window = this.windowOf(entry.event.shardId);
      this.timer(backoffDelayMs(this.opts.backoff, entry.failures, this.random()), () => {
        window.markReady(entry);
        this.pump();
      });
    }
    this.pump();
    this.notify();
  }

  /** Counts a call start in the sliding second; the most ever counted is maxStartsPerSecond. */
  private noteStart(atMs: number): void {
    const ring = this.recentStarts;
    while (this.recentCount > 0 && (ring[this.recentHead] as number) <= atMs - 1000) {
      this.recentHead = (this.recentHead + 1) % ring.length;
      this.recentCount--;
    }
    if (this.recentCount === ring.length) {
      // More than maxRps in one second: a broken cap; the count saturates at maxRps + 1.
      this.recentHead = (this.recentHead + 1) % ring.length;
      this.recentCount--;
    }
    ring[(this.recentHead + this.recentCount) % ring.length] = atMs;
    this.recentCount++;
    this.maxStartsPerSecond = Math.max(this.maxStartsPerSecond, this.recentCount);
    this.lastCallAtMs = Date.now();
    this.firstCallAtMs ??= this.lastCallAtMs;
  }

  /** Observers are for metrics and logs: one that throws must never stall delivery. */
  private observe(call: (o: DelivererObserver) => void): void {
    const o = this.opts.observer;
    if (o === undefined) return;
    try {
      call(o);
    } catch {
      // ignored on purpose: delivery state is already updated
    }
  }

  private windowOf(shardId: number): DeliveryWindow {
    const w = this.windowByShard.get(shardId);
    if (w === undefined) throw new Error(`event of shard ${shardId}, which this deliverer does not drain`);
    return w;
  }

  private windowsOf(batch: WindowEntry[]): Set<DeliveryWindow> {
    return new Set(batch.map((e) => this.windowOf(e.event.shardId)));
  }

  private countFailure(kind: string, e: unknown, eventId: string | null): void {
    this.failuresTotal++;
    const key = this.failuresByKind.has(kind) || this.failuresByKind.size < failureKindsMax ? kind : 'other';
    this.failuresByKind.set(key, (this.failuresByKind.get(key) ?? 0) + 1);
    this.lastError = { kind, message: e instanceof Error ? e.message : String(e), eventId, atMs: Date.now() };
  }

  // ---- the outbox: reads and acknowledgements -------------------------------------------

  /** Fetches more events into a shard's window when it has room and the outbox may have some. */
  private refill(w: DeliveryWindow): void {
    const roomMin = Math.max(1, Math.floor(w.eventsMax / 4));
    if (this.state !== 'running' || w.fetching || !w.mayHaveMore || w.room() < roomMin) return;
    w.fetching = true;
    const asked = w.room();
    this.opts.source.pending(w.shardId, w.fetchedSeq, asked).then((events) => {
      if (this.state === 'halted') return;
      w.fetching = false;
      w.add(events);
      w.readFailures = 0;
      w.mayHaveMore = events.length >= asked;
      this.pump();
      this.refill(w);
    }).catch((e: unknown) => {
      if (this.state === 'halted') return;
      w.fetching = false;
      w.readFailures++;
      this.countFailure('outbox_read', e, null);
      this.observe((o) => o.onFailure?.('outbox_read', e, []));
      this.timer(backoffDelayMs(this.opts.backoff, w.readFailures, this.random()), () => this.refill(w));
    });
  }

  /** Acknowledges a shard's contiguous delivered prefix; one ack in flight per shard, in order. */
  private acknowledge(w: DeliveryWindow): void {
    if (this.state === 'halted' || w.acking) return;
    const { count, upToSeq } = w.deliveredPrefix();
    if (count === 0) return;
    w.acking = true;
    this.opts.source.ack(w.shardId, upToSeq).then(() => {
      if (this.state === 'halted') return;
      w.acking = false;
      w.ackFailures = 0;
      w.dropAcknowledged(count, upToSeq);
      this.observe((o) => o.onAcknowledged?.(w.shardId, upToSeq));
      this.acknowledge(w);
      this.refill(w);
      this.notify();
    }, (e: unknown) => {
      if (this.state === 'halted') return;
      w.acking = false;
      w.ackFailures++;
      this.countFailure('outbox_ack', e, null);
      this.observe((o) => o.onFailure?.('outbox_ack', e, []));
      const retry = (): void => this.acknowledge(w);
      if (this.state === 'running') this.timer(backoffDelayMs(this.opts.backoff, w.ackFailures, this.random()), retry);
      this.notify();
    });
  }

  /** Wakes every shard when the source says (or the poll interval says) there may be new events. */
  private async wakeLoop(): Promise<void> {
    while (this.state === 'running') {
      const startedMs = performance.now();
      const call = new AbortController();
      this.wakeCall = call;
      // Every waiter gets its own catch: the loser of the race rejects (aborted) later.
      const waits: Promise<unknown>[] = [sleep(this.opts.pollMs, undefined, { signal: call.signal }).catch(() => undefined)];
      const source = this.opts.source;
      if (source.waitForEvents !== undefined) {
        waits.push(Promise.resolve().then(() => source.waitForEvents!(call.signal)).catch(() => undefined));
      }
      await Promise.race(waits);
      call.abort();
      if (this.state !== 'running') return;
      for (const w of this.windows) {
        w.mayHaveMore = true;
        this.refill(w);
      }
      const elapsedMs = performance.now() - startedMs;
      if (elapsedMs < wakeIntervalMinMs) await sleep(wakeIntervalMinMs - elapsedMs);
    }
  }

  // ---- stopping -----------------------------------------------------------------------

  private notify(): void {
    for (const w of this.waiters.splice(0)) w();
  }

  /** Resolves when `done()` holds, re-checked after every call and ack; false after timeoutMs. */
  private async waitUntil(done: () => boolean, timeoutMs: number): Promise<boolean> {
    const deadline = performance.now() + timeoutMs;
    while (!done()) {
      const leftMs = deadline - performance.now();
      if (leftMs <= 0) return false;
      await new Promise<void>((resolve) => {
        const t = setTimeout(resolve, Math.min(leftMs, 100));
        this.waiters.push(() => {
          clearTimeout(t);
          resolve();
        });
      });
    }
    return true;
  }

  private clearTimers(): void {
    for (const t of this.timers) clearTimeout(t);
    this.timers.clear();
    this.limiterTimer = null;
    this.wakeCall?.abort();
  }

  /**
   * Graceful stop: starts nothing new, lets calls in flight finish for up to graceMs (then
   * aborts them), and acknowledges every delivered prefix before it resolves.
   */
  async stop(graceMs: number): Promise<void> {
    if (this.state !== 'running') return;
    this.state = 'stopping';
    this.clearTimers();
    if (!(await this.waitUntil(() => this.inFlight === 0, graceMs))) {
      this.calls.abort();
      await this.waitUntil(() => this.inFlight === 0, abortWaitMs);
    }
    for (const w of this.windows) this.acknowledge(w);
    await this.waitUntil(() => this.windows.every((w) => !w.acking), graceMs + abortWaitMs);
    this.state = 'stopped';
  }

  /**
   * Stops dead, as a crash would: aborts calls in flight, acknowledges nothing more, and
   * ignores every answer still to come. For tests and for a lost shard lease.
   */
  halt(): void {
    this.state = 'halted';
    this.clearTimers();
    this.calls.abort();
    this.notify();
  }

  stats(): DelivererStats {
    let backlogEvents = 0;
    let oldestPaidAt: number | null = null;
    for (const w of this.windows) {
      backlogEvents += w.undeliveredCount();
      const p = w.oldestUndeliveredPaidAt();
      if (p !== null && (oldestPaidAt === null || p < oldestPaidAt)) oldestPaidAt = p;
    }
    return {
      backlogEvents,
      backlogMayHaveMore: this.windows.some((w) => w.mayHaveMore && w.room() === 0),
      oldestUndeliveredAgeMs: oldestPaidAt === null ? 0 : Math.max(0, Date.now() - oldestPaidAt),
      deliveredTotal: this.deliveredTotal,
      callsStarted: this.callsStarted,
      callsInFlight: this.inFlight,
      failuresTotal: this.failuresTotal,
      failuresByKind: Object.fromEntries(this.failuresByKind),
      lastError: this.lastError,
      shards: this.windows.map((w) => ({ shardId: w.shardId, fetchedSeq: w.fetchedSeq, ackedSeq: w.ackedSeq, windowEvents: w.size })),
      maxRps: this.opts.maxRps,
      concurrency: this.opts.concurrency,
      maxStartsPerSecond: this.maxStartsPerSecond,
      maxCallsInFlight: this.maxCallsInFlight,
      firstCallAtMs: this.firstCallAtMs,
      lastCallAtMs: this.lastCallAtMs,
    };
  }
}
