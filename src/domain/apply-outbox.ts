// The shard's outbox of paid orders for the ERP: a pay appends an event, the deliverer
// reads pending events and acknowledges delivered ones cumulatively with a logged command.
// Because the outbox, its on/off mode (erp.mode) and the per-SKU delivered counts are shard
// state (logged and snapshotted), replay reproduces them exactly whatever the replaying
// process is configured with; only calls in flight at a crash can repeat.

import { assert } from './assert.js';
import type { Applied, PaidEvent, ReconcileRow, ReconcileUnits } from './commands.js';
import type { Reservation, ShardState } from './shard-state.js';
import { answered, refused } from './views.js';

/** Whether a pay now enters the outbox: the logged mode, or for a log from before erp.mode, the legacy setting. */
export function outboxOn(state: ShardState): boolean {
  return state.outboxEnabled ?? state.config.legacyOutboxEnabled;
}

export function recordPaid(state: ShardState, r: Reservation): void {
  if (!outboxOn(state)) {
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
 * Sets the mode. Turning it off keeps every queued order (still owed, delivered when a
 * deliverer runs); only later pays stay out. The first erp.mode of a log is always logged,
 * even when it matches the legacy setting: from then on the log alone decides.
 */
export function applyErpMode(state: ShardState, enabled: boolean): Applied {
  const previous = state.outboxEnabled;
  state.outboxEnabled = enabled;
  return answered({ ok: true, status: 'ok', erpMode: { enabled, previous }, outboxLastSeq: state.outboxLastSeq }, previous !== enabled);
}

export function applyPending(state: ShardState, afterSeq: number, max: number): Applied {
  const paid: PaidEvent[] = [];
  const firstSeq = state.outboxLastSeq - state.outbox.length + 1;
  let skip = Math.max(0, afterSeq - firstSeq + 1);
  for (const e of state.outbox) {
    if (skip > 0) {
      skip--;
      continue;
    }
    if (paid.length >= max) break;
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
    assert(s !== undefined, `outbox event ${e.eventId} names unknown sku ${e.sku}`);
    s.erpDeliveredUnits += e.qty;
    removed++;
  }
  return answered({ ok: true, status: 'ok', outboxLastSeq: state.outboxLastSeq }, removed > 0);
}

/** Most SKU rows one shard answers in a reconciliation (the rest is flagged truncated; totals cover all). */
export const reconcileRowsMax = 10_000;

export function applyReconcile(state: ShardState): Applied {
  const waiting = new Map<string, { units: number; orders: number }>();
  for (const e of state.outbox) {
    const w = waiting.get(e.sku) ?? { units: 0, orders: 0 };
    w.units += e.qty;
    w.orders++;
    waiting.set(e.sku, w);
  }
  const totals: ReconcileUnits = { sold: 0, deliveredUnits: 0, undeliveredUnits: 0, undeliveredOrders: 0, notQueuedUnits: 0, uncountedUnits: 0 };
  const rows: ReconcileRow[] = [];
  for (const s of state.skus.values()) {
    const w = waiting.get(s.sku);
    const row: ReconcileRow = {
      sku: s.sku, sold: s.sold, deliveredUnits: s.erpDeliveredUnits, undeliveredUnits: w?.units ?? 0, undeliveredOrders: w?.orders ?? 0,
      notQueuedUnits: s.erpNotQueuedUnits, uncountedUnits: s.erpUncountedUnits,
    };
    for (const k of Object.keys(totals) as (keyof ReconcileUnits)[]) totals[k] += row[k];
    if (rows.length < reconcileRowsMax) rows.push(row);
  }
  const reconcile = { rows, totals, outboxLength: state.outbox.length, truncated: state.skus.size > rows.length, outboxEnabled: state.outboxEnabled };
  return answered({ ok: true, status: 'ok', reconcile, outboxLastSeq: state.outboxLastSeq }, false);
}
