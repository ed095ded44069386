// The contract between a shard's durable outbox of orders and the ERP deliverer.
// This file owns only types (and one type guard): the shards implement OutboxSource, the
// deliverer consumes it. It must never grow behaviour; the events are the shard's own types.

import type { OutboxEvent as OrderEvent, PaidEvent, RefundedEvent, StockEvent } from '../domain/index.js';

/**
 * One event waiting in a shard's outbox: a paid or refunded order (the ERP's outbox), or a
 * stock event (the events webhook's log, delivered by a deliverer of its own). The shard's
 * own types, so the two never drift.
 */
export type OutboxEvent = OrderEvent | StockEvent;
export type { OrderEvent, PaidEvent, RefundedEvent, StockEvent };

/** Whether an event is a stock event (sku.*), not an order. */
export function isStockEvent(e: OutboxEvent): e is StockEvent {
  return e.type !== undefined && e.type.startsWith('sku.');
}

export interface OutboxSource {
  readonly shardIds: readonly number[];
  /**
   * Undelivered events of a shard with eventSeq > afterSeq, oldest first, at most max
   * (order.refunded events included: this deliverer knows them).
   */
  pending(shardId: number, afterSeq: number, max: number): Promise<OutboxEvent[]>;
  /** Durably marks every event of the shard with eventSeq <= upToSeq as delivered (acks are cumulative; they survive kill -9 once this resolves). */
  ack(shardId: number, upToSeq: number): Promise<void>;
  /**
   * Resolves when a shard may have new events (or after a poll interval); used to wake the
   * deliverer. Optional: without it the deliverer polls every `pollMs`. The signal is
   * aborted when the deliverer stops, so an implementation can drop its waiter.
   */
  waitForEvents?(signal: AbortSignal): Promise<void>;
}
