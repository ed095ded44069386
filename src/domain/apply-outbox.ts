// The shard's outbox of paid orders for the ERP: a pay appends an event, the deliverer
// reads pending events and acknowledges delivered ones cumulatively with a logged command.
// Because the outbox is shard state (logged and snapshotted), delivery resumes exactly
// where it was after a crash; only calls in flight at the crash can repeat.

import type { Applied, PaidEvent, ReconcileRow } from './commands.js';
import type { Reservation, ShardState } from './shard-state.js';
import { answered, refused } from './views.js';

export function recordPaid(state: ShardState, r: Reservation): void {
  if (!state.config.outboxEnabled) return;
  const eventSeq = ++state.outboxLastSeq;
  state.outbox.push({
    eventId: `order.paid:${r.id}`, shardId: state.config.shardId, eventSeq, reservationId: r.id,
    sku: r.sku.sku, buyerId: r.buyerId, qty: r.qty, paidAt: r.settledAtMs, paymentRef: r.paymentRef, channel: r.channel.name,
  });
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

export function applyAck(state: ShardState, upToSeq: number): Applied {
  if (upToSeq > state.outboxLastSeq) {
    return refused('invalid_request', `upToSeq ${upToSeq} is past the last event ${state.outboxLastSeq}`);
  }
  let removed = 0;
  for (let e = state.outbox.peek(); e !== undefined && e.eventSeq <= upToSeq; e = state.outbox.peek()) {
    state.outbox.shift();
    removed++;
  }
  return answered({ ok: true, status: 'ok', outboxLastSeq: state.outboxLastSeq }, removed > 0);
}

/** Most SKU rows one shard answers in a reconciliation (the rest is flagged truncated). */
export const reconcileRowsMax = 10_000;

export function applyReconcile(state: ShardState): Applied {
  const waiting = new Map<string, { units: number; orders: number }>();
  for (const e of state.outbox) {
    const w = waiting.get(e.sku) ?? { units: 0, orders: 0 };
    w.units += e.qty;
    w.orders++;
    waiting.set(e.sku, w);
  }
  const rows: ReconcileRow[] = [];
  for (const s of state.skus.values()) {
    if (rows.length >= reconcileRowsMax) break;
    const w = waiting.get(s.sku);
    rows.push({ sku: s.sku, sold: s.sold, undeliveredUnits: w?.units ?? 0, undeliveredOrders: w?.orders ?? 0 });
  }
  const reconcile = { rows, outboxLength: state.outbox.length, truncated: state.skus.size > rows.length };
  return answered({ ok: true, status: 'ok', reconcile, outboxLastSeq: state.outboxLastSeq }, false);
}
