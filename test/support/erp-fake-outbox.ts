// An in-memory OutboxSource that behaves like the shards' durable outbox: events per shard
// with consecutive eventSeq from 1, cumulative acks that become "durable" only when ack()
// resolves, and a crash() that loses acks still in progress, so a restarted deliverer sees
// every unacknowledged event again. It also polices the deliverer: an ack that goes
// backwards, past the last event, or over an event the ERP never accepted is recorded.

import type { OrderEvent as OutboxEvent, OutboxSource, PaidEvent, RefundedEvent } from '../../src/erp/outbox-source.js';

export interface FakeOutboxOptions {
  shardIds: readonly number[];
  /** Upper bound of a random delay on pending() and ack(), like a round trip to a shard. */
  delayMsMax?: number;
  /** Called at every ack with the events it newly covers: a message if one was never delivered, else null. */
  ackCheck?: (shardId: number, upToSeq: number, events: readonly OutboxEvent[]) => string | null | Promise<string | null>;
}

export class FakeOutbox implements OutboxSource {
  readonly shardIds: readonly number[];
  private readonly events = new Map<number, OutboxEvent[]>();
  private readonly durableAckedSeq = new Map<number, number>();
  private readonly waiters = new Set<() => void>();
  /** Every ack that became durable, in order. */
  readonly ackLog: { shardId: number; upToSeq: number }[] = [];
  /** Broken promises of the deliverer; a correct one leaves this empty. */
  readonly violations: string[] = [];
  /** Acks still in progress are lost when the epoch changes (a crash). */
  private epoch = 0;
  private nextNonce = 1;
  pendingCalls = 0;

  constructor(private readonly opts: FakeOutboxOptions) {
    this.shardIds = [...opts.shardIds];
    for (const id of this.shardIds) {
      this.events.set(id, []);
      this.durableAckedSeq.set(id, 0);
    }
  }

  /** A new paid event at the end of a shard's outbox. */
  append(shardId: number, overrides: Partial<Pick<PaidEvent, 'sku' | 'buyerId' | 'qty' | 'paymentRef' | 'paidAt'>> = {}): PaidEvent {
    const list = this.events.get(shardId);
    if (list === undefined) throw new Error(`no shard ${shardId}`);
    const eventSeq = list.length + 1;
    const reservationId = `${shardId}.${eventSeq.toString(36)}${(this.nextNonce++).toString(36).padStart(8, '0')}`;
    const e: PaidEvent = {
      eventId: `order.paid:${reservationId}`, shardId, eventSeq, reservationId,
      sku: overrides.sku ?? `sku-${eventSeq % 7}`, buyerId: overrides.buyerId ?? `buyer-${eventSeq}`,
      qty: overrides.qty ?? 1 + (eventSeq % 3), paidAt: overrides.paidAt ?? Date.now(),
      paymentRef: overrides.paymentRef === undefined ? (eventSeq % 4 === 0 ? null : `pay-${reservationId}`) : overrides.paymentRef,
    };
    list.push(e);
    for (const w of [...this.waiters]) w();
    return e;
  }

  /** The order.refunded of an order appended earlier, at the end of its shard's outbox (as a shard queues it). */
  appendRefund(paid: PaidEvent, overrides: Partial<Pick<RefundedEvent, 'restock' | 'reason' | 'refundedAt'>> = {}): RefundedEvent {
    const list = this.events.get(paid.shardId);
    if (list === undefined) throw new Error(`no shard ${paid.shardId}`);
    const e: RefundedEvent = {
      ...paid, type: 'order.refunded', eventId: `order.refunded:${paid.reservationId}`, eventSeq: list.length + 1,
      channel: paid.channel ?? 'default', refundedAt: overrides.refundedAt ?? Date.now(),
      restock: overrides.restock ?? list.length % 2 === 0, reason: overrides.reason === undefined ? (list.length % 3 === 0 ? null : 'damaged') : overrides.reason,
    };
    list.push(e);
    for (const w of [...this.waiters]) w();
    return e;
  }

  /** Appends `count` events round robin over the shards. */
  appendMany(count: number): PaidEvent[] {
    const out: PaidEvent[] = [];
    for (let i = 0; i < count; i++) out.push(this.append(this.shardIds[i % this.shardIds.length] as number));
    return out;
  }

  allEvents(): OutboxEvent[] {
    return [...this.events.values()].flat();
  }

  ackedSeq(shardId: number): number {
    return this.durableAckedSeq.get(shardId) ?? 0;
  }

  /** Events not yet durably acknowledged, across shards. */
  undeliveredCount(): number {
    let n = 0;
    for (const [id, list] of this.events) n += list.length - this.ackedSeq(id);
    return n;
  }

  /** A kill -9 of the process that runs the deliverer: acks not yet durable are lost. */
  crash(): void {
    this.epoch++;
  }

  private delay(): Promise<void> {
    const ms = Math.random() * (this.opts.delayMsMax ?? 0);
    return ms < 1 ? Promise.resolve() : new Promise((resolve) => setTimeout(resolve, ms));
  }

  async pending(shardId: number, afterSeq: number, max: number): Promise<OutboxEvent[]> {
    this.pendingCalls++;
    await this.delay();
    const list = this.events.get(shardId);
    if (list === undefined) throw new Error(`no shard ${shardId}`);
    if (!Number.isInteger(max) || max < 1) this.violations.push(`pending(${shardId}, ${afterSeq}, ${max}): max must be a positive integer`);
    const from = Math.max(afterSeq, this.ackedSeq(shardId));
    return list.slice(from, from + max).map((e) => ({ ...e }));
  }

  async ack(shardId: number, upToSeq: number): Promise<void> {
    const epoch = this.epoch;
    await this.delay();
    const list = this.events.get(shardId) ?? [];
    if (upToSeq > list.length) {
      this.violations.push(`ack(${shardId}, ${upToSeq}) is past the last event ${list.length}`);
      throw new Error(`upToSeq ${upToSeq} is past the last event ${list.length}`);
    }
    const problem = await this.opts.ackCheck?.(shardId, upToSeq, list.slice(this.ackedSeq(shardId), upToSeq));
    if (problem) this.violations.push(problem);
    if (epoch !== this.epoch) return; // the process died before this ack was durable
    const acked = this.ackedSeq(shardId);
    if (upToSeq <= acked) this.violations.push(`ack(${shardId}, ${upToSeq}) does not move past ${acked}`);
    this.durableAckedSeq.set(shardId, upToSeq);
    this.ackLog.push({ shardId, upToSeq });
  }

  waitForEvents(signal: AbortSignal): Promise<void> {
    return new Promise((resolve) => {
      const done = (): void => {
        this.waiters.delete(done);
        signal.removeEventListener('abort', done);
        resolve();
      };
      this.waiters.add(done);
      signal.addEventListener('abort', done, { once: true });
    });
  }
}
