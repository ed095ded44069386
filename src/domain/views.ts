// Read-only projections of state into the JSON shapes of shared/API.md. The only place
// that knows how an internal field is named on the wire (expiresAtMs -> expiresAt).

import type { Refusal } from './codes.js';
import type { Applied, DomainEvent, Outcome, ReservationView, SkuView } from './commands.js';
import type { Reservation, SkuState } from './shard-state.js';

export function skuView(s: SkuState): SkuView {
  return {
    sku: s.sku,
    onHand: s.onHand,
    available: s.available,
    reserved: s.reserved,
    sold: s.sold,
    refunded: s.refunded,
    mode: s.mode,
    holdSeconds: s.holdSeconds,
    maxPerBuyer: s.maxPerBuyer,
    startsAt: s.startsAtMs,
    endsAt: s.endsAtMs,
    dropId: s.dropId,
    lowStockThreshold: s.lowStockThreshold,
    minAccountAgeSeconds: s.minAccountAgeSeconds,
    minPastOrders: s.minPastOrders,
    channels: channelsView(s),
    createdAt: s.createdAtMs,
    updatedAt: s.updatedAtMs,
  };
}

/** The policy's channels (in policy order), then any other channel with units (in first-use order). */
function channelsView(s: SkuState): SkuView['channels'] {
  // A null-prototype object: channel names are data, so `__proto__` is just a name.
  const view = Object.create(null) as SkuView['channels'];
  if (s.channelCaps !== null) {
    for (const [name, maxUnits] of s.channelCaps) {
      const u = s.channelUnits.get(name);
      view[name] = { reserved: u?.reserved ?? 0, sold: u?.sold ?? 0, maxUnits };
    }
  }
  for (const u of s.channelUnits.values()) {
    if (Object.prototype.hasOwnProperty.call(view, u.name) || u.reserved + u.sold === 0) continue;
    view[u.name] = { reserved: u.reserved, sold: u.sold, maxUnits: null };
  }
  return view;
}

export function reservationView(r: Reservation): ReservationView {
  const view: ReservationView = {
    reservationId: r.id,
    sku: r.sku.sku,
    buyerId: r.buyerId,
    qty: r.qty,
    channel: r.channel.name,
    status: r.status,
    mode: r.mode,
    createdAt: r.createdAtMs,
    expiresAt: r.expiresAtMs,
  };
  // A refund keeps settledAtMs: a refunded reservation was paid then.
  if (r.status === 'paid' || r.status === 'refunded') view.paidAt = r.settledAtMs;
  if (r.status === 'cancelled') view.cancelledAt = r.settledAtMs;
  if (r.status === 'expired') view.expiredAt = r.settledAtMs;
  if (r.paymentRef !== null) view.paymentRef = r.paymentRef;
  if (r.refund !== null) {
    view.refundedAt = r.refund.atMs;
    view.restock = r.refund.restock;
    if (r.refund.reason !== null) view.refundReason = r.refund.reason;
  }
  return view;
}

const noEvents = null;

export function refused(code: Refusal, message: string, mutated = false): Applied {
  return { outcome: { ok: false, code, message }, mutated, events: noEvents };
}

export function answered(outcome: Outcome, mutated: boolean, events: DomainEvent[] | null = noEvents): Applied {
  return { outcome, mutated, events };
}
