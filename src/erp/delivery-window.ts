// One shard's window of events between the outbox and the ERP: at most `eventsMax` events
// that are fetched but not yet acknowledged, in eventSeq order. Events in it may be delivered
// in any order but one: an order.refunded waits until its order's order.paid (an earlier
// event, when still in the window) is delivered. Only the contiguous delivered prefix may be
// acknowledged, so an acknowledgement never covers an undelivered event. It does no I/O and
// keeps no timers.

import type { OutboxEvent } from './outbox-source.js';

export const EntryState = {
  ready: 'ready', inFlight: 'in_flight', backoff: 'backoff', delivered: 'delivered',
  /** An order.refunded whose order's order.paid is not delivered yet. */
  waiting: 'waiting',
} as const;
export type EntryState = (typeof EntryState)[keyof typeof EntryState];

export interface WindowEntry {
  readonly event: OutboxEvent;
  state: EntryState;
  /** Failed attempts so far; drives the backoff. */
  failures: number;
  /** Deliver alone from now on: it failed inside a batch of several, and may be the cause. */
  solo: boolean;
}

export class DeliveryWindow {
  /** Fetched, not yet acknowledged; ascending eventSeq. */
  private readonly entries: WindowEntry[] = [];
  /** Entries waiting for a call; ascending eventSeq so the oldest go first. */
  private readonly ready: WindowEntry[] = [];
  /** Undelivered order.paid entries by reservation id, so that a refund can wait for its order's. */
  private readonly paidUndelivered = new Map<string, WindowEntry>();
  /** Refund entries waiting, by the order.paid entry they wait for (one per order; a list, so no bug can strand one). */
  private readonly refundsAfter = new Map<WindowEntry, WindowEntry[]>();
  /** Highest eventSeq fetched into the window (the next fetch asks for events after it). */
  fetchedSeq = 0;
  /** Highest eventSeq whose acknowledgement has resolved in this process (0: none yet). */
  ackedSeq = 0;
  fetching = false;
  acking = false;
  /** The last fetch filled the room it had, so the outbox may hold more right now. */
  mayHaveMore = true;
  /** Consecutive failed outbox reads / acks: drives their own backoff. */
  readFailures = 0;
  ackFailures = 0;

  constructor(readonly shardId: number, readonly eventsMax: number) {}

  get size(): number {
    return this.entries.length;
  }

  room(): number {
    return this.eventsMax - this.entries.length;
  }

  readyCount(): number {
    return this.ready.length;
  }

  /** Appends freshly fetched events; throws if the outbox broke its contract (order, shard, count). */
  add(events: readonly OutboxEvent[]): void {
    if (events.length > this.room()) throw new Error(`outbox of shard ${this.shardId} returned ${events.length} events for ${this.room()} asked`);
    let last = this.fetchedSeq;
    for (const e of events) {
      if (e.shardId !== this.shardId || !Number.isInteger(e.eventSeq) || e.eventSeq <= last) {
        throw new Error(`outbox of shard ${this.shardId} returned event ${e.eventId} (shard ${e.shardId}, seq ${e.eventSeq}) after seq ${last}`);
      }
      last = e.eventSeq;
    }
    for (const event of events) {
      const entry: WindowEntry = { event, state: EntryState.ready, failures: 0, solo: false };
      this.entries.push(entry);
      // Stock events have no order: each is ready as it comes.
      const paid = event.type === 'order.refunded' ? this.paidUndelivered.get(event.reservationId) : undefined;
      if (paid !== undefined) {
        entry.state = EntryState.waiting;
        const waiting = this.refundsAfter.get(paid);
        if (waiting === undefined) this.refundsAfter.set(paid, [entry]);
        else waiting.push(entry);
        continue;
      }
      if (event.type === undefined) this.paidUndelivered.set(event.reservationId, entry);
      this.ready.push(entry);
    }
    this.fetchedSeq = last;
  }

  /** Marks an entry delivered; a refund that waited for it (its order's order.paid) becomes ready. */
  markDelivered(entry: WindowEntry): void {
    entry.state = EntryState.delivered;
    const e = entry.event;
    if (e.type === undefined && this.paidUndelivered.get(e.reservationId) === entry) this.paidUndelivered.delete(e.reservationId);
    const refunds = this.refundsAfter.get(entry);
    if (refunds === undefined) return;
    this.refundsAfter.delete(entry);
    for (const refund of refunds) this.markReady(refund);
  }

  /**
   * Takes up to `max` ready entries, oldest first, and marks them in flight. A solo entry is
   * taken only alone, and only when `aloneAllowed` (the batch is still empty).
   */
  take(max: number, aloneAllowed: boolean): WindowEntry[] {
    const taken: WindowEntry[] = [];
    while (taken.length < max && this.ready.length > 0) {
      const head = this.ready[0] as WindowEntry;
      if (head.solo && (taken.length > 0 || !aloneAllowed)) break;
      this.ready.shift();
      head.state = EntryState.inFlight;
      taken.push(head);
      if (head.solo) break;
    }
    return taken;
  }

  /** Puts an entry back in line after its backoff, in eventSeq order. */
  markReady(entry: WindowEntry): void {
    entry.state = EntryState.ready;
    const seq = entry.event.eventSeq;
    let lo = 0;
    let hi = this.ready.length;
    while (lo < hi) {
      const mid = (lo + hi) >>> 1;
      if ((this.ready[mid] as WindowEntry).event.eventSeq < seq) lo = mid + 1;
      else hi = mid;
    }
    this.ready.splice(lo, 0, entry);
  }

  /** The contiguous delivered prefix: how many entries, and the seq to acknowledge (0 = none). */
  deliveredPrefix(): { count: number; upToSeq: number } {
    let count = 0;
    while (count < this.entries.length && (this.entries[count] as WindowEntry).state === EntryState.delivered) count++;
    return { count, upToSeq: count === 0 ? 0 : (this.entries[count - 1] as WindowEntry).event.eventSeq };
  }

  /** Drops the first `count` entries once their acknowledgement has resolved. */
  dropAcknowledged(count: number, upToSeq: number): void {
    const last = this.entries[count - 1];
    if (last === undefined || last.event.eventSeq !== upToSeq) throw new Error(`window of shard ${this.shardId} changed under an ack to ${upToSeq}`);
    this.entries.splice(0, count);
    this.ackedSeq = upToSeq;
  }

  /** Entries of the window not yet delivered. */
  undeliveredCount(): number {
    let n = 0;
    for (const e of this.entries) if (e.state !== EntryState.delivered) n++;
    return n;
  }

  /** When the oldest undelivered event of the window entered the outbox (paid or refunded), or null. */
  oldestUndeliveredPaidAt(): number | null {
    for (const e of this.entries) {
      if (e.state !== EntryState.delivered) return e.event.type === 'order.refunded' ? e.event.refundedAt : e.event.type === undefined ? e.event.paidAt : e.event.at;
    }
    return null;
  }

  /** Every entry, oldest first (for stop/halt bookkeeping and tests). */
  all(): readonly WindowEntry[] {
    return this.entries;
  }
}
