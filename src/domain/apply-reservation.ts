// Reservation commands: reserve, pay, cancel, read. This is where the three deduction
// modes, per-buyer quotas, sale windows, risk rules and idempotency meet. Every check
// happens before the first mutation, so a refused command changes nothing.

import type { Applied, Command, DomainEvent } from './commands.js';
import { InvariantError } from './assert.js';
import { assertSkuInvariants } from './invariants.js';
import { nonceLength } from './routing.js';
import { findSku } from './apply-sku.js';
import { recordPaid } from './apply-outbox.js';
import { boundSettled } from './retention.js';
import { Limits, defaultChannel } from './fields.js';
import {
  Reservation, SkuState, channelUnitsOf, idempotencyKey, type IdempotencyEntry, type ShardState,
} from './shard-state.js';
import { stockEvents } from './stock-events.js';
import { admissionRefusal, markUsed } from './apply-drop.js';
import { answered, refused, reservationView } from './views.js';

type Reserve = Extract<Command, { t: 'res.reserve' }>;
type Pay = Extract<Command, { t: 'res.pay' }>;

/**
 * A key this buyer already used in the SKU's scope (the SKU, or its drop) answers the
 * reservation it made, whatever this request's qty or SKU of the drop: API.md's "returns the
 * first answer again and holds nothing more" (another qty or SKU was refused 409
 * idempotency_conflict before, a code API.md does not have).
 */
function replayIdempotent(state: ShardState, s: SkuState, c: Reserve): Applied | null {
  if (c.idemKey === undefined) return null;
  const entry = state.idempotency.get(idempotencyKey(c.buyerId, s.quotaScope, c.idemKey));
  if (entry === undefined) return null;
  return answered({ ok: true, status: 'created', reservation: reservationView(entry.reservation), replayed: true }, false);
}

/** Whether the SKU sells through `channel`: its policy lists it, or it has none (and room to count one more). */
function channelRefusal(s: SkuState, channel: string): Applied | null {
  if (s.channelCaps !== null) {
    return s.channelCaps.has(channel) ? null : refused('channel_not_allowed', `sku ${s.sku} is not sold through channel ${channel}`);
  }
  if (s.channelUnits.has(channel) || s.channelUnits.size < Limits.channelsCountedPerSkuMax) return null;
  return refused('channel_not_allowed', `sku ${s.sku} already counts ${Limits.channelsCountedPerSkuMax} channels; give it a channel policy`);
}

/** Whether `qty` more units held or sold through `channel` stay within its cap. */
function channelCapRefusal(s: SkuState, channel: string, qty: number): Applied | null {
  const cap = s.channelCaps?.get(channel) ?? null;
  if (cap === null) return null;
  const units = s.channelUnits.get(channel);
  const used = units === undefined ? 0 : units.reserved + units.sold;
  if (used + qty <= cap) return null;
  return refused('channel_sold_out', `channel ${channel} may hold or sell at most ${cap} units of ${s.sku} (has ${used})`);
}

/** The first reason this buyer may not reserve now, or null (the order of shared/API.md). */
function eligibility(state: ShardState, s: SkuState, c: Reserve, channel: string, nowMs: number): Applied | null {
  const notThrough = channelRefusal(s, channel);
  if (notThrough !== null) return notThrough;
  if (s.dropId !== null) {
    const notAdmitted = admissionRefusal(state, s.dropId, c.buyerId, nowMs);
    if (notAdmitted !== null) return notAdmitted;
  }
  if ((s.startsAtMs > 0 && nowMs < s.startsAtMs) || (s.endsAtMs > 0 && nowMs >= s.endsAtMs)) {
    return refused('not_on_sale', `sku ${s.sku} is not on sale now`);
  }
  if (s.minAccountAgeSeconds > 0) {
    const created = c.accountCreatedAtMs;
    if (created === undefined || nowMs - created < s.minAccountAgeSeconds * 1000) {
      return refused('buyer_blocked', `sku ${s.sku} requires an account older than ${s.minAccountAgeSeconds} s`);
    }
  }
  if (s.minPastOrders > 0 && (c.pastOrders === undefined || c.pastOrders < s.minPastOrders)) {
    return refused('buyer_blocked', `sku ${s.sku} requires at least ${s.minPastOrders} past orders`);
  }
  return null;
}

/** `answer` false (a replay): a created reservation is answered `reservedUnanswered`, no view built. */
export function applyReserve(state: ShardState, c: Reserve, nowMs: number, answer: boolean): Applied {
  const found = findSku(state, c.sku);
  if (!(found instanceof SkuState)) return found;
  const s = found;
  const replay = replayIdempotent(state, s, c);
  if (replay !== null) return replay;
  const channel = c.channel ?? defaultChannel;
  const ineligible = eligibility(state, s, c, channel, nowMs);
  if (ineligible !== null) return ineligible;
  const before = s.available;
  const made = hold(state, s, c.buyerId, c.qty, channel, c.nonce, c.idemKey, nowMs);
  if (!(made instanceof Reservation)) return made;
  if (s.dropId !== null) markUsed(state, s.dropId, c.buyerId, made.id);
  // Computed in a replay too: it re-arms or sets lowStockSignaled, which is state.
  const events = stockEvents(s, before, null);
  if (!answer) return reservedUnanswered;
  return answered({ ok: true, status: 'created', reservation: reservationView(made) }, true, events);
}

/**
 * The quota, channel cap, stock and capacity checks of a hold, then the hold: a reserve's
 * (after its eligibility) and a draw winner's. Changes nothing when it refuses.
 */
function hold(
  state: ShardState, s: SkuState, buyerId: string, qty: number, channel: string, nonce: string, idemKey: string | undefined, nowMs: number, mode = s.mode,
): Reservation | Applied {
  // One lookup: a new buyer (the common case) is then inserted where the lookup ended.
  const quota = s.quota;
  const hash = quota.hashOf(buyerId);
  const slot = quota.slotOf(buyerId, hash);
  const used = slot < 0 ? 0 : quota.unitsAt(slot);
  if (s.maxPerBuyer > 0 && used + qty > s.maxPerBuyer) {
    return refused('quota_exceeded', `buyer may hold or buy at most ${s.maxPerBuyer} units (has ${used})`);
  }
  const overCap = channelCapRefusal(s, channel, qty);
  if (overCap !== null) return overCap;
  if (s.available < qty) return refused('sold_out', `sku ${s.sku} has ${s.available} units available`);
  if (state.liveCount >= state.config.liveReservationsMax) {
    return refused('shard_full', 'this shard holds its maximum number of live reservations; retry later');
  }
  const seq = ++state.seq;
  const holdMs = s.holdSeconds * 1000;
  const padded = nonce.length === nonceLength ? nonce : nonce.padStart(nonceLength, '0');
  const units = channelUnitsOf(s, channel);
  const r = new Reservation(state.idPrefix, seq, padded, s, buyerId, qty, units, mode, nowMs + holdMs, holdMs, idemKey ?? null);
  if (r.holdsUnits) {
    s.reserved += qty;
    units.reserved += qty;
  }
  if (slot < 0) quota.insert(buyerId, hash, qty);
  else quota.setAt(slot, used + qty);
  state.reservations.add(r); // asserts that seqs, and so ids, never repeat
  state.liveCount++;
  state.expiry.push(r);
  if (idemKey !== undefined) rememberIdempotencyKey(state, r, idemKey, nowMs);
  assertSkuInvariants(s);
  return r;
}

/** A draw winner's hold (apply-drop.ts): its id, or null when its quota, its channel or the stock cannot take it. */
export function drawHold(state: ShardState, s: SkuState, buyerId: string, qty: number, channel: string, nonce: string, nowMs: number): { id: string; events: DomainEvent[] | null } | null {
  if (s.channelCaps !== null && !s.channelCaps.has(channel)) return null;
  const before = s.available;
  // A winner's unit is promised by the draw, so its hold always takes it, whatever the SKU's
  // mode: an on_payment hold would take nothing and leave the draw without an end.
  const made = hold(state, s, buyerId, qty, channel, nonce, undefined, nowMs, s.mode === 'on_payment' ? 'pre_deduct' : s.mode);
  if (!(made instanceof Reservation)) return null;
  return { id: made.id, events: stockEvents(s, before, null) };
}

/** What a replayed reserve that created its reservation answers: only that it mutated. */
const reservedUnanswered: Applied = Object.freeze({ outcome: Object.freeze({ ok: true, status: 'created' } as const), mutated: true, events: null });

function rememberIdempotencyKey(state: ShardState, r: Reservation, key: string, nowMs: number): void {
  const entry: IdempotencyEntry = { key: idempotencyKey(r.buyerId, r.sku.quotaScope, key), reservation: r, reviewAtMs: nowMs };
  state.idempotency.set(entry.key, entry);
  state.idempotencyQueue.push(entry);
  // Past the cap, forget the oldest keys first: losing replay protection for a very old
  // key is better than refusing new buyers.
  while (state.idempotency.size > state.config.idempotencyKeysMax) {
    const oldest = state.idempotencyQueue.shift();
    if (oldest === undefined) break;
    if (state.idempotency.get(oldest.key) === oldest) state.idempotency.delete(oldest.key);
  }
}

/**
 * Ends a held reservation: gives back what it held, and its quota unless it was paid. Past
 * settledReservationsMax it drops the oldest settled reservation (never this one).
 */
export function settle(state: ShardState, r: Reservation, status: 'paid' | 'cancelled' | 'expired', nowMs: number): DomainEvent[] | null {
  if (r.status !== 'held') throw new InvariantError(`reservation ${r.id} settles twice`);
  const s = r.sku;
  const before = s.available;
  if (r.holdsUnits) {
    s.reserved -= r.qty;
    r.channel.reserved -= r.qty;
  }
  if (status === 'paid') {
    s.sold += r.qty;
    r.channel.sold += r.qty;
  } else {
    const left = (s.quota.get(r.buyerId) ?? 0) - r.qty;
    if (left < 0) throw new InvariantError(`quota of ${r.buyerId} goes negative`);
    if (left === 0) s.quota.delete(r.buyerId);
    else s.quota.set(r.buyerId, left);
  }
  r.status = status;
  r.settledAtMs = nowMs;
  state.liveCount--;
  state.settled.push(r);
  boundSettled(state);
  assertSkuInvariants(s);
  return stockEvents(s, before, null);
}

/** The reservation `id`, if it exists and `buyerId` (when given) owns it: another buyer's is unknown to it. */
function lookup(state: ShardState, id: string, buyerId: string | undefined): Reservation | undefined {
  const r = state.reservations.get(id);
  return r === undefined || (buyerId !== undefined && r.buyerId !== buyerId) ? undefined : r;
}

function lookupSettlingDue(state: ShardState, id: string, buyerId: string | undefined, nowMs: number): Reservation | Applied {
  const r = lookup(state, id, buyerId);
  if (r === undefined) return refused('unknown_reservation', `no reservation ${id}`);
  if (r.status === 'held' && nowMs >= r.expiresAtMs) {
    // Due but not yet swept: expire it now, so that it can never be paid late.
    const events = settle(state, r, 'expired', nowMs);
    return { ...refused('reservation_expired', `reservation ${id} expired at ${r.expiresAtMs}`, true), events };
  }
  return r;
}

export function applyPay(state: ShardState, c: Pay, nowMs: number): Applied {
  const found = lookupSettlingDue(state, c.id, undefined, nowMs);
  if (!(found instanceof Reservation)) return found;
  const r = found;
  switch (r.status) {
    // Paying again answers the pay as it stands now; after a refund that is the refunded view.
    case 'paid':
    case 'refunded':
      return answered({ ok: true, status: 'ok', reservation: reservationView(r), replayed: true }, false);
    case 'cancelled': return refused('reservation_cancelled', `reservation ${r.id} was cancelled`);
    case 'expired': return refused('reservation_expired', `reservation ${r.id} expired at ${r.expiresAtMs}`);
    case 'held': break;
  }
  if (!r.holdsUnits) {
    // on_payment: the units are taken only now, so the channel's cap and the stock are checked now.
    const overCap = channelCapRefusal(r.sku, r.channel.name, r.qty);
    if (overCap !== null) return overCap;
    if (r.sku.available < r.qty) return refused('sold_out', `sku ${r.sku.sku} has ${r.sku.available} units available`);
  }
  let events = settle(state, r, 'paid', nowMs);
  r.paymentRef = c.paymentRef ?? null;
  recordPaid(state, r);
  const view = reservationView(r);
  (events ??= []).push({ type: 'paid', reservation: view });
  return answered({ ok: true, status: 'ok', reservation: view }, true, events);
}

export function applyCancel(state: ShardState, id: string, buyerId: string | undefined, nowMs: number): Applied {
  const found = lookupSettlingDue(state, id, buyerId, nowMs);
  if (!(found instanceof Reservation)) {
    // Cancelling a hold that has just expired is not an error: its units are released.
    const r = lookup(state, id, buyerId);
    if (r !== undefined && r.status === 'expired') {
      return { ...answered({ ok: true, status: 'ok', reservation: reservationView(r) }, found.mutated), events: found.events };
    }
    return found;
  }
  const r = found;
  switch (r.status) {
    case 'paid': return refused('already_paid', `reservation ${r.id} is paid; it cannot be cancelled (refund it instead)`);
    case 'refunded': return refused('already_paid', `reservation ${r.id} was paid and is refunded; it cannot be cancelled`);
    case 'cancelled':
    case 'expired':
      return answered({ ok: true, status: 'ok', reservation: reservationView(r), replayed: true }, false);
    case 'held': break;
  }
  const events = settle(state, r, 'cancelled', nowMs);
  return answered({ ok: true, status: 'ok', reservation: reservationView(r) }, true, events);
}

export function applyGetReservation(state: ShardState, id: string, buyerId: string | undefined): Applied {
  const r = lookup(state, id, buyerId);
  if (r === undefined) return refused('unknown_reservation', `no reservation ${id}`);
  return answered({ ok: true, status: 'ok', reservation: reservationView(r) }, false);
}
