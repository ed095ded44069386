// Refunds and returns after the sale (shared/API.md "After the sale"): a paid reservation
// becomes refunded in one command. Its units leave `sold` and go back to available (restock)
// or out of stock (onHand down: a damaged return), its buyer's quota is given back, and its
// order.refunded follows its order.paid in the ERP outbox. It never touches a reservation
// that is not paid, and a second refund changes nothing.

import type { Applied, Command } from './commands.js';
import { InvariantError } from './assert.js';
import { assertSkuInvariants } from './invariants.js';
import { recordRefunded } from './apply-outbox.js';
import type { Reservation, ShardState } from './shard-state.js';
import { stockEvents } from './stock-events.js';
import { recordAudit } from './audit.js';
import { answered, refused, reservationView } from './views.js';

type Refund = Extract<Command, { t: 'res.refund' }>;

/**
 * Takes a paid reservation's units out of the SKU's and its channel's `sold`, and out of
 * onHand too without restock, and gives the buyer's quota back. A refunded reservation keeps
 * its place in the settled queue (settledAtMs is its pay time), so retention is unchanged.
 */
function unsell(r: Reservation, restock: boolean): void {
  const s = r.sku;
  s.sold -= r.qty;
  r.channel.sold -= r.qty;
  s.refunded += r.qty;
  if (!restock) s.onHand -= r.qty;
  const left = (s.quota.get(r.buyerId) ?? 0) - r.qty;
  if (left < 0) throw new InvariantError(`quota of ${r.buyerId} goes negative`);
  if (left === 0) s.quota.delete(r.buyerId);
  else s.quota.set(r.buyerId, left);
}

export function applyRefund(state: ShardState, c: Refund, nowMs: number): Applied {
  const r = state.reservations.get(c.id);
  if (r === undefined) return refused('unknown_reservation', `no reservation ${c.id}`);
  switch (r.status) {
    // Again: the first refund's answer, whatever this one asks (it changes nothing, so it is not logged).
    case 'refunded': return answered({ ok: true, status: 'ok', reservation: reservationView(r), replayed: true }, false);
    case 'held':
    case 'cancelled':
    case 'expired':
      return refused('not_paid', `reservation ${r.id} is ${r.status}, not paid; only a paid reservation can be refunded`);
    case 'paid': break;
  }
  const before = r.sku.available;
  const onHandBefore = r.sku.onHand;
  unsell(r, c.restock);
  r.status = 'refunded';
  r.refund = { atMs: nowMs, restock: c.restock, reason: c.reason ?? null };
  recordRefunded(state, r);
  assertSkuInvariants(r.sku);
  // A return that is not restocked takes units out of stock: a stock change for the audit trail.
  if (!c.restock) {
    recordAudit(r.sku, {
      atMs: nowMs, actor: c.actor ?? 'unknown', action: 'stock', reason: c.reason ?? `refund of ${r.id}, not restocked`,
      before: { onHand: onHandBefore, available: before }, after: { onHand: r.sku.onHand, available: r.sku.available },
    });
  }
  // A restock raises available: it may re-arm the low-stock signal like any other change.
  const events = stockEvents(r.sku, before, null);
  return answered({ ok: true, status: 'ok', reservation: reservationView(r) }, true, events);
}
