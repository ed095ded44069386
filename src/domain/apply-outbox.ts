// The shard's outbox of orders for the ERP: a pay appends an order.paid event, a refund an
// order.refunded after it, and the deliverer reads pending events and acknowledges delivered
// ones cumulatively with a logged command. Because the outbox, its on/off mode (erp.mode) and
// the per-SKU delivered counts are shard state (logged and snapshotted), replay reproduces
// them exactly whatever the replaying process is configured with; only calls in flight at a
// crash can repeat.

import { InvariantError } from './assert.js';
import type { Applied, OutboxEvent, ReconcileRow, ReconcileUnits, StockEvent } from './commands.js';
import type { Reservation, ShardState } from './shard-state.js';
import { answered, refused } from './views.js';

/** Whether a pay now enters the outbox: the logged mode, or for a log from before erp.mode, the legacy setting. */
export function outboxOn(state: ShardState): boolean {
  return state.outboxEnabled ?? state.config.legacyOutboxEnabled;
}

export function recordPaid(state: ShardState, r: Reservation): void {
  r.erpQueued = outboxOn(state);
  if (!r.erpQueued) {
    r.sku.erpNotQueuedUnits += r.qty;
    return;
  }
  const eventSeq = ++state.outboxLastSeq;
  state.outbox.push({
    eventId: `order.paid:${r.id}`, shardId: state.config.shardId, eventSeq, reservationId: r.id,
    sku: r.sku.sku, buyerId: r.buyerId, qty: r.qty, paidAt: r.settledAtMs, paymentRef: r.paymentRef, channel: r.channel.name,
  });
}

/**
 * Queues the order.refunded of a refunded reservation, after its order.paid: only when its
 * pay was queued (the ERP never hears of a refund of an order it was never sent) and the
 * outbox is on now (like pays, refunds made while it is off are not queued).
 */
export function recordRefunded(state: ShardState, r: Reservation): void {
  const refund = r.refund;
  if (r.status !== 'refunded' || refund === null) throw new InvariantError(`reservation ${r.id} is not refunded`);
  // A refund follows its order: queued exactly when the order's order.paid was, whatever the
  // mode now (an order owed to the ERP has its refund owed too). An order whose queueing is
  // unknown (restored from a v3 snapshot) gets none: a refund the ERP cannot match to an
  // order would be retried forever and hold back every later event of the shard.
  if (r.erpQueued !== true) {
    r.sku.erpRefundsNotQueuedUnits += r.qty;
    return;
  }
  const eventSeq = ++state.outboxLastSeq;
  state.outbox.push({
    type: 'order.refunded', eventId: `order.refunded:${r.id}`, shardId: state.config.shardId, eventSeq, reservationId: r.id,
    sku: r.sku.sku, buyerId: r.buyerId, qty: r.qty, paidAt: r.settledAtMs, paymentRef: r.paymentRef, channel: r.channel.name,
    refundedAt: refund.atMs, restock: refund.restock, reason: refund.reason,
  });
}

/**
 * Sets the mode. Turning it off keeps every queued order (still owed, delivered when a
 * deliverer runs); only later pays stay out. The first erp.mode of a log is always logged,
 * even when it matches the legacy setting: from then on the log alone decides.
 */
export function applyErpMode(state: ShardState, enabled: boolean, events: boolean | undefined): Applied {
  const previous = state.outboxEnabled;
  state.outboxEnabled = enabled;
  const log = state.stockEvents;
  const eventsPrevious = log.enabled;
  if (events !== undefined) log.enabled = events;
  const changed = previous !== enabled || (events !== undefined && eventsPrevious !== events);
  const erpMode = events === undefined ? { enabled, previous } : { enabled, previous, events, eventsPrevious };
  return answered({ ok: true, status: 'ok', erpMode, outboxLastSeq: state.outboxLastSeq }, changed);
}

/** Stock events after `afterSeq`, at most `max`; outboxLastSeq is the stock log's last seq. */
export function applyStockPending(state: ShardState, afterSeq: number, max: number): Applied {
  const log = state.stockEvents;
  const out: StockEvent[] = [];
  for (const e of log.queue) {
    if (e.eventSeq <= afterSeq) continue;
    if (out.length >= max) break;
    out.push(e);
  }
  return answered({ ok: true, status: 'ok', stockEvents: out, outboxLastSeq: log.lastSeq }, false);
}

/** Drops every stock event up to `upToSeq` (cumulative; an ack past the last seq is refused). */
export function applyStockAck(state: ShardState, upToSeq: number): Applied {
  const log = state.stockEvents;
  if (upToSeq > log.lastSeq) return refused('invalid_request', `upToSeq ${upToSeq} is past the last stock event ${log.lastSeq}`);
  let removed = 0;
  for (let e = log.queue.peek(); e !== undefined && e.eventSeq <= upToSeq; e = log.queue.peek()) {
    log.queue.shift();
    removed++;
  }
  return answered({ ok: true, status: 'ok', outboxLastSeq: log.lastSeq }, removed > 0);
}

/** Events after `afterSeq`, at most `max`; without `refunds`, only those before the first refund. */
export function applyPending(state: ShardState, afterSeq: number, max: number, refunds: boolean): Applied {
  const paid: OutboxEvent[] = [];
  const firstSeq = state.outboxLastSeq - state.outbox.length + 1;
  let skip = Math.max(0, afterSeq - firstSeq + 1);
  for (const e of state.outbox) {
    if (skip > 0) {
      skip--;
      continue;
    }
    if (paid.length >= max || (e.type === 'order.refunded' && !refunds)) break;
    paid.push(e);
  }
  return answered({ ok: true, status: 'ok', paid, outboxLastSeq: state.outboxLastSeq }, false);
}

/**
 * Removes the delivered prefix and counts its units as delivered. An ack past the last
 * event is refused and an ack of nothing new changes nothing: neither is logged, so no
 * logged ack can find a different outbox on replay.
 */
export function applyAck(state: ShardState, upToSeq: number): Applied {
  if (upToSeq > state.outboxLastSeq) {
    return refused('invalid_request', `upToSeq ${upToSeq} is past the last event ${state.outboxLastSeq}`);
  }
  let removed = 0;
  for (let e = state.outbox.peek(); e !== undefined && e.eventSeq <= upToSeq; e = state.outbox.peek()) {
    state.outbox.shift();
    const s = state.skus.get(e.sku);
    if (s === undefined) throw new InvariantError(`outbox event ${e.eventId} names unknown sku ${e.sku}`);
    if (e.type === 'order.refunded') s.erpRefundsDeliveredUnits += e.qty;
    else s.erpDeliveredUnits += e.qty;
    removed++;
  }
  return answered({ ok: true, status: 'ok', outboxLastSeq: state.outboxLastSeq }, removed > 0);
}

/** Most SKU rows one shard answers in a reconciliation (the rest is flagged truncated; totals cover all). */
export const reconcileRowsMax = 10_000;

interface Waiting {
  units: number;
  orders: number;
  refundUnits: number;
  refunds: number;
}

/** The outbox's undelivered units and orders per SKU, paid and refunded apart. */
function waitingBySku(state: ShardState): Map<string, Waiting> {
  const waiting = new Map<string, Waiting>();
  for (const e of state.outbox) {
    let w = waiting.get(e.sku);
    if (w === undefined) waiting.set(e.sku, (w = { units: 0, orders: 0, refundUnits: 0, refunds: 0 }));
    if (e.type === 'order.refunded') {
      w.refundUnits += e.qty;
      w.refunds++;
    } else {
      w.units += e.qty;
      w.orders++;
    }
  }
  return waiting;
}

export function applyReconcile(state: ShardState): Applied {
  const waiting = waitingBySku(state);
  const totals: ReconcileUnits = {
    sold: 0, deliveredUnits: 0, undeliveredUnits: 0, undeliveredOrders: 0, notQueuedUnits: 0, uncountedUnits: 0,
    refundedUnits: 0, refundsDeliveredUnits: 0, refundsUndeliveredUnits: 0, refundsUndeliveredOrders: 0, refundsNotQueuedUnits: 0,
  };
  const rows: ReconcileRow[] = [];
  for (const s of state.skus.values()) {
    const w = waiting.get(s.sku);
    const row: ReconcileRow = {
      sku: s.sku, sold: s.sold, deliveredUnits: s.erpDeliveredUnits, undeliveredUnits: w?.units ?? 0, undeliveredOrders: w?.orders ?? 0,
      notQueuedUnits: s.erpNotQueuedUnits, uncountedUnits: s.erpUncountedUnits,
      refundedUnits: s.refunded, refundsDeliveredUnits: s.erpRefundsDeliveredUnits, refundsUndeliveredUnits: w?.refundUnits ?? 0,
      refundsUndeliveredOrders: w?.refunds ?? 0, refundsNotQueuedUnits: s.erpRefundsNotQueuedUnits,
    };
    for (const k of Object.keys(totals) as (keyof ReconcileUnits)[]) totals[k] += row[k];
    if (rows.length < reconcileRowsMax) rows.push(row);
  }
  const reconcile = { rows, totals, outboxLength: state.outbox.length, truncated: state.skus.size > rows.length, outboxEnabled: state.outboxEnabled };
  return answered({ ok: true, status: 'ok', reconcile, outboxLastSeq: state.outboxLastSeq }, false);
}
