// The shard's outbox of paid orders for the ERP: a pay appends an event, the deliverer
// reads pending events and acknowledges delivered ones cumulatively with a logged command.
// Because the outbox is shard state (logged and snapshotted), delivery resumes exactly
// where it was after a crash; only calls in flight at the crash can repeat.

import type { Applied, PaidEvent } from './commands.js';
import type { Reservation, ShardState } from './shard-state.js';
import { answered, refused } from './views.js';

export function recordPaid(state: ShardState, r: Reservation): void {
  if (!state.config.outboxEnabled) return;
  const eventSeq = ++state.outboxLastSeq;
  state.outbox.push({
    eventId: `order.paid:${r.id}`, shardId: state.config.shardId, eventSeq, reservationId: r.id,
    sku: r.sku.sku, buyerId: r.buyerId, qty: r.qty, paidAt: r.settledAtMs, paymentRef: r.paymentRef,
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
