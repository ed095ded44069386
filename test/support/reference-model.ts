// A deliberately naive reference model of one shard, written from shared/API.md (v1, v2's
// "Channels" and "After the sale: refunds and returns") and the shard contract (commands.ts, codes.ts, fields.ts, routing.ts), not
// from the implementation: plain objects, linear scans, and counters (the SKU's and each
// channel's) that are derived from the reservations instead of being maintained. The
// property tests drive it side by side with the real core and compare every answer, every
// view, every event and the shard clock.
//
// The contract it follows, beyond shared/API.md:
// - A malformed command is refused invalid_request and changes nothing, whatever the state:
//   a field of the wrong type or out of range (pastOrders up to 1e9, minPastOrders up to
//   1e6); sku.adjust by 0; a nonce over 8 characters or not of [0-9a-z]; a reservation id
//   that is not a string of at most 64 characters; a sku or dropId that is not 1..64 of
//   [A-Za-z0-9._:-]; a buyerId (also on res.get and res.cancel), idemKey or paymentRef
//   that is not 1..128 code points or holds a control, format or lone surrogate character
//   (Cc, Cf, Cs); a channel that is not 1..32 of [a-z0-9_-]; a sku.upsert whose own
//   startsAt and endsAt are both set and ends at or before it starts; a channel policy
//   that is not null nor a list of 1..64 [name, maxUnits | null] pairs with unique names
//   and maxUnits an integer in 0..1e9.
// - Channels: a reserve's channel is its `channel`, else "default". A SKU's policy is null
//   (any channel) or an ordered list of [name, cap]; sku.upsert sets it on create, replaces
//   it whole when `channels` is given (null clears it) and keeps it when absent. A SKU
//   counts every channel a reservation of it was ever created on (pruned ones too), in
//   first-use order, and never forgets one; with no policy it counts at most 256, so a
//   reserve naming a 257th is channel_not_allowed. A channel's units are derived like the
//   SKU's: reserved = held reservations in a holding mode, sold = paid ones.
// - Reserve checks, in order: unknown_sku / moved, idempotent replay (before anything
//   else, whatever the channel), channel_not_allowed (a policy that does not list it),
//   not_on_sale, buyer_blocked, quota_exceeded, channel_sold_out (its reserved + sold + qty
//   over its cap), sold_out, shard_full. Paying an on_payment hold checks its channel's cap
//   (if the policy still caps it) and then the stock. A cap lowered under a channel's use
//   is accepted; it only refuses new units.
// - The SKU view's `channels` (an object without a prototype): every policy channel in
//   policy order, then each other counted channel with reserved + sold > 0 in first-use
//   order, with maxUnits null. The reservation view carries its channel.
// - Ownership: res.get and res.cancel with a buyerId answer unknown_reservation for another
//   buyer's reservation and change nothing (a due hold is not expired by it).
// - Placement: a SKU is created only on the shard its routing key (its drop, else its name)
//   hashes to. sku.link is written at the SKU's home shard (where its name hashes); a link
//   to a drop that lives on this same shard records nothing (the SKU itself will live here).
// - Reservation ids are `<shard>.<seq base 36><nonce zero-padded to 8>`; seq counts the
//   reservations created, from 1.
// - Stock events: creating a SKU emits none, but counts as signalled when created at or
//   under its low-stock threshold; a threshold changed by sku.upsert is judged afresh
//   (signalled = threshold > 0 and available <= threshold), with no event.
// - Idempotency keys: each key sits in a review queue. A res.expire reviews every entry
//   that has waited a window: a key whose hold is live, or settled less than a window ago,
//   is reviewed again a window later; any other is forgotten. A settled reservation dropped
//   by retention takes its key with it (its queue entry stays until it is reviewed, and
//   dropping that stale entry is not a change). A res.expire that expires, drops or
//   reviews a live key is mutating.
// - Settled reservations (paid, cancelled, expired) are kept settledRetentionMs after they
//   settle (dropped by the res.expire that finds them that old), and never more than
//   settledReservationsMax of them (at least 1): a settle that makes one too many drops the
//   one settled earliest (by settle order, whatever its creation order or status) in the
//   same command, so the command that settled a reservation always answers it. A dropped
//   reservation answers unknown_reservation to every command, takes its key with it (as
//   above), and stays counted in sold and quotas: dropping it changes no counter or view.
//   Which index entries an engine keeps for dropped or settled reservations (key-queue
//   entries skipped at review, lazily deleted holds) is never observable; the engine sheds
//   them in bulk only past 1024 of them, which no property run here reaches, so the review
//   queue below is compared entry for entry.
// - Refunds (shared/API.md "After the sale"): res.refund of a paid reservation makes it
//   refunded, at the command's time, with its restock and reason: it no longer counts in
//   sold (the SKU's or its channel's) nor in its buyer's quota; its units count in the SKU's
//   `refunded`; without restock onHand goes down by its qty (available is unchanged), with
//   it available goes up. Again: the same answer (replayed), no change. A held, cancelled
//   or expired one: not_paid, no change (a held one past its expiry is not expired by it).
//   A refund keeps the reservation's settle time and settle order (its pay's): retention
//   counts from the pay. A refund of a dropped reservation is unknown_reservation. The view
//   of a refunded reservation keeps paidAt and adds refundedAt, restock and refundReason
//   (when a reason was given). Paying a refunded reservation answers its view, replayed,
//   with no change (as paying again does); cancelling one is already_paid. A malformed refund: an id as above, restock not a boolean,
//   or a reason that is not 1..200 printable code points.
// The per-shard cap on stored keys (idempotencyKeysMax) is not modelled: the property tests
// run with a cap no run reaches.

import {
  modes, shardForSku, type Command, type Mode, type ReservationView, type SkuView, type Status,
} from '../../src/domain/index.js';

/** shared/API.md and fields.ts: onHand never exceeds this. */
export const STOCK_MAX = 1_000_000_000;
const QTY_MAX = 1000;
const HOLD_SECONDS_MAX = 86_400;
const MAX_PER_BUYER_MAX = 1_000_000;
const MIN_ACCOUNT_AGE_SECONDS_MAX = 10 * 365 * 86_400;
const MIN_PAST_ORDERS_MAX = 1_000_000;
const PAST_ORDERS_MAX = 1_000_000_000;
const NONCE_LENGTH = 8;
const TIME_MAX = 8_640_000_000_000_000;
const TEXT_LENGTH_MAX = 128;
const REASON_LENGTH_MAX = 200;
const ID_LENGTH_MAX = 64;
const POLICY_CHANNELS_MAX = 64;
/** Channels a SKU without a policy counts; a reserve naming one more is refused. */
export const COUNTED_CHANNELS_MAX = 256;
export const DEFAULT_CHANNEL = 'default';

export interface ModelConfig {
  shardId: number;
  shardCount: number;
  idempotencyWindowMs: number;
  settledRetentionMs: number;
  /** Settled reservations kept at most (>= 1); past it the earliest settled is dropped. */
  settledReservationsMax: number;
  liveReservationsMax: number;
  expireBatchMax: number;
}

export interface ModelSku {
  sku: string;
  dropId: string | null;
  onHand: number;
  mode: Mode;
  holdSeconds: number;
  maxPerBuyer: number;
  startsAtMs: number;
  endsAtMs: number;
  lowStockThreshold: number;
  minAccountAgeSeconds: number;
  minPastOrders: number;
  /** null: any channel may reserve; else the channels that may, in order, with their caps. */
  channels: [name: string, maxUnits: number | null][] | null;
  createdAtMs: number;
  updatedAtMs: number;
  /** A low_stock event fired (or the SKU was created or re-judged at or under the threshold). */
  lowStockSignaled: boolean;
}

export interface ModelReservation {
  /** Position in creation order; the engine's seq is index + 1. */
  index: number;
  sku: string;
  buyerId: string;
  qty: number;
  channel: string;
  mode: Mode;
  nonce: string;
  createdAtMs: number;
  expiresAtMs: number;
  status: Status;
  settledAtMs: number;
  /** The how-manieth settle of the shard settled it (0 while held): the order drops by count follow. */
  settleOrder: number;
  paymentRef: string | null;
  /** Set when refunded: when, whether its units went back to available, and why. */
  refund: { atMs: number; restock: boolean; reason: string | null } | null;
  /** Dropped from the shard (by age or by count); still counted in sold, refunded and quotas. */
  pruned: boolean;
}

/** An idempotency key in the review queue. */
export interface ModelKey {
  key: string;
  /** The reservation the key names. */
  index: number;
  reviewAtMs: number;
}

export type ModelEvent =
  | { type: 'low_stock'; sku: string; available: number; threshold: number }
  | { type: 'sold_out'; sku: string }
  | { type: 'restocked'; sku: string }
  /** The reservation (by index) that this command paid. */
  | { type: 'paid'; reservation: number };

type Answer =
  | {
      ok: true;
      status: 'created' | 'ok';
      mutated: boolean;
      replayed: boolean;
      /** Index of the reservation the answer shows. */
      reservation?: number;
      sku?: string;
      expired?: number;
    }
  | {
      ok: false;
      code: string;
      mutated: boolean;
      dropId?: string;
    };

export type ModelAnswer = Answer & { events: ModelEvent[] };

const defaults = { mode: 'pre_deduct' as Mode, holdSeconds: 600 };

function refuse(code: string, mutated = false, dropId?: string): Answer {
  return dropId === undefined ? { ok: false, code, mutated } : { ok: false, code, mutated, dropId };
}

function isCount(n: unknown, min: number, max: number): boolean {
  return typeof n === 'number' && Number.isInteger(n) && n >= min && n <= max;
}

/** A SKU or drop name. */
function isName(v: unknown): boolean {
  return typeof v === 'string' && /^[A-Za-z0-9._:-]{1,64}$/.test(v);
}

function isChannel(v: unknown): boolean {
  return typeof v === 'string' && /^[a-z0-9_-]{1,32}$/.test(v);
}

/** Printable text: 1..max code points, none a control, format or lone surrogate. */
function isText(v: unknown, max: number): boolean {
  if (typeof v !== 'string') return false;
  const codePoints = [...v];
  return codePoints.length >= 1 && codePoints.length <= max && !/[\p{Cc}\p{Cf}\p{Cs}]/u.test(v);
}

function isPolicy(v: unknown): boolean {
  if (v === null) return true;
  if (!Array.isArray(v) || v.length < 1 || v.length > POLICY_CHANNELS_MAX) return false;
  const names: unknown[] = [];
  for (const pair of v as unknown[]) {
    if (!Array.isArray(pair) || pair.length !== 2) return false;
    const [name, cap] = pair as unknown[];
    if (!isChannel(name) || names.includes(name)) return false;
    if (cap !== null && !isCount(cap, 0, STOCK_MAX)) return false;
    names.push(name);
  }
  return true;
}

function optional(v: unknown, ok: (v: unknown) => boolean): boolean {
  return v === undefined || ok(v);
}

/** A reservation id as sent (absent: the model command names a reservation by index, so it is well formed). */
function isId(v: unknown): boolean {
  return v === undefined || (typeof v === 'string' && v.length <= ID_LENGTH_MAX);
}

/** Whether a command is malformed: the core refuses it invalid_request before anything else. */
export function malformed(c: ModelCommand): boolean {
  switch (c.t) {
    case 'res.reserve':
      return !(isName(c.sku) && isText(c.buyerId, TEXT_LENGTH_MAX) && isCount(c.qty, 1, QTY_MAX)
        && typeof c.nonce === 'string' && c.nonce.length <= NONCE_LENGTH && /^[0-9a-z]*$/.test(c.nonce)
        && optional(c.idemKey, (v) => isText(v, TEXT_LENGTH_MAX))
        && optional(c.accountCreatedAtMs, (v) => isCount(v, 0, TIME_MAX))
        && optional(c.pastOrders, (v) => isCount(v, 0, PAST_ORDERS_MAX))
        && optional(c.channel, isChannel));
    case 'sku.upsert': {
      const wellTyped = isName(c.sku) && optional(c.stock, (v) => isCount(v, 0, STOCK_MAX))
        && optional(c.mode, (v) => modes.includes(v as Mode))
        && optional(c.holdSeconds, (v) => isCount(v, 1, HOLD_SECONDS_MAX))
        && optional(c.maxPerBuyer, (v) => isCount(v, 0, MAX_PER_BUYER_MAX))
        && optional(c.startsAtMs, (v) => isCount(v, 0, TIME_MAX))
        && optional(c.endsAtMs, (v) => isCount(v, 0, TIME_MAX))
        && optional(c.lowStockThreshold, (v) => isCount(v, 0, STOCK_MAX))
        && optional(c.minAccountAgeSeconds, (v) => isCount(v, 0, MIN_ACCOUNT_AGE_SECONDS_MAX))
        && optional(c.minPastOrders, (v) => isCount(v, 0, MIN_PAST_ORDERS_MAX))
        && (c.dropId === undefined || c.dropId === null || isName(c.dropId))
        && optional(c.channels, isPolicy);
      if (!wellTyped) return true;
      // A window the command itself gets wrong is malformed whatever the SKU's state.
      return c.startsAtMs !== undefined && c.endsAtMs !== undefined && c.startsAtMs > 0 && c.endsAtMs > 0 && c.endsAtMs <= c.startsAtMs;
    }
    case 'sku.adjust': return !(isName(c.sku) && isCount(c.delta, -STOCK_MAX, STOCK_MAX) && c.delta !== 0);
    case 'sku.link': return !(isName(c.sku) && isName(c.dropId));
    case 'sku.get': return typeof c.sku !== 'string';
    case 'res.pay': return !(isId(c.id) && optional(c.paymentRef, (v) => isText(v, TEXT_LENGTH_MAX)));
    case 'res.refund': return !(isId(c.id) && typeof c.restock === 'boolean' && optional(c.reason, (v) => isText(v, REASON_LENGTH_MAX)));
    case 'erp.pending':
      return !(isCount(c.afterSeq, 0, Number.MAX_SAFE_INTEGER) && isCount(c.max, 1, 10_000) && optional(c.refunds, (v) => typeof v === 'boolean'));
    case 'erp.ack': return !isCount(c.upToSeq, 0, Number.MAX_SAFE_INTEGER);
    case 'erp.mode': return typeof c.enabled !== 'boolean';
    case 'res.cancel':
    case 'res.get':
      return !(isId(c.id) && optional(c.buyerId, (v) => isText(v, TEXT_LENGTH_MAX)));
    case 'erp.reconcile':
    case 'res.expire':
      return false;
  }
}

export class ReferenceShard {
  lastNowMs = 0;
  readonly skus = new Map<string, ModelSku>();
  readonly links = new Map<string, string>();
  /** Every reservation ever created, pruned ones included. */
  readonly reservations: ModelReservation[] = [];
  /** `${buyerId}\n${quota scope}\n${key}` to its entry: keys are per SKU, or per drop. */
  readonly keys = new Map<string, ModelKey>();
  /** Entries waiting for review, including those whose key retention has since dropped. */
  queue: ModelKey[] = [];
  /** Settles so far: the last settle order handed out. */
  settles = 0;
  /** Reservations dropped because more than settledReservationsMax were settled. */
  droppedByCount = 0;

  constructor(readonly config: ModelConfig) {}

  // ---- derived counters -------------------------------------------------------------

  reservedOf(sku: string): number {
    let n = 0;
    for (const r of this.reservations) if (r.sku === sku && r.status === 'held' && r.mode !== 'on_payment') n += r.qty;
    return n;
  }

  soldOf(sku: string): number {
    let n = 0;
    for (const r of this.reservations) if (r.sku === sku && r.status === 'paid') n += r.qty;
    return n;
  }

  /** Units of refunded reservations of a SKU (dropped ones too). */
  refundedOf(sku: string): number {
    let n = 0;
    for (const r of this.reservations) if (r.sku === sku && r.status === 'refunded') n += r.qty;
    return n;
  }

  /** Units of held reservations (in a holding mode) and of paid ones, of one channel of a SKU. */
  channelUnitsOf(sku: string, channel: string): { reserved: number; sold: number } {
    let reserved = 0;
    let sold = 0;
    for (const r of this.reservations) {
      if (r.sku !== sku || r.channel !== channel) continue;
      if (r.status === 'held' && r.mode !== 'on_payment') reserved += r.qty;
      if (r.status === 'paid') sold += r.qty;
    }
    return { reserved, sold };
  }

  /** Every channel a reservation of the SKU was ever created on, in first-use order, with its units. */
  countedChannelsOf(sku: string): { name: string; reserved: number; sold: number }[] {
    const rows: { name: string; reserved: number; sold: number }[] = [];
    for (const r of this.reservations) {
      if (r.sku !== sku) continue;
      let row = rows.find((c) => c.name === r.channel);
      if (row === undefined) rows.push(row = { name: r.channel, reserved: 0, sold: 0 });
      if (r.status === 'held' && r.mode !== 'on_payment') row.reserved += r.qty;
      if (r.status === 'paid') row.sold += r.qty;
    }
    return rows;
  }

  /** The cap of a channel under the SKU's policy, or null (no policy, not listed, or uncapped). */
  capOf(sku: string, channel: string): number | null {
    const entry = this.skus.get(sku)?.channels?.find(([name]) => name === channel);
    return entry === undefined ? null : entry[1];
  }

  availableOf(sku: string): number {
    const s = this.skus.get(sku);
    return s === undefined ? 0 : s.onHand - this.reservedOf(sku) - this.soldOf(sku);
  }

  /** Units a buyer holds or bought in the quota scope of `sku` (its drop, or itself). */
  usedBy(buyerId: string, sku: string): number {
    const scope = this.skus.get(sku)?.dropId ?? null;
    let n = 0;
    for (const r of this.reservations) {
      if (r.buyerId !== buyerId || (r.status !== 'held' && r.status !== 'paid')) continue;
      const inScope = scope === null ? r.sku === sku : this.skus.get(r.sku)?.dropId === scope;
      if (inScope) n += r.qty;
    }
    return n;
  }

  liveCount(): number {
    return this.reservations.filter((r) => r.status === 'held').length;
  }

  /** Whether a SKU with this drop (or none) is created on this shard. */
  private routesHere(sku: string, dropId: string | null): boolean {
    return shardForSku(sku, dropId, this.config.shardCount) === this.config.shardId;
  }

  // ---- views --------------------------------------------------------------------------

  skuView(sku: string): SkuView {
    const s = this.skus.get(sku);
    if (s === undefined) throw new Error(`model has no sku ${sku}`);
    const reserved = this.reservedOf(sku);
    const sold = this.soldOf(sku);
    return {
      sku: s.sku, onHand: s.onHand, available: s.onHand - reserved - sold, reserved, sold, refunded: this.refundedOf(sku),
      mode: s.mode, holdSeconds: s.holdSeconds, maxPerBuyer: s.maxPerBuyer,
      startsAt: s.startsAtMs, endsAt: s.endsAtMs, dropId: s.dropId, lowStockThreshold: s.lowStockThreshold,
      minAccountAgeSeconds: s.minAccountAgeSeconds, minPastOrders: s.minPastOrders,
      channels: this.channelsOf(sku), createdAt: s.createdAtMs, updatedAt: s.updatedAtMs,
    };
  }

  /** The policy's channels in its order, then the other counted channels with units, in first-use order. */
  channelsOf(sku: string): SkuView['channels'] {
    const policy = this.skus.get(sku)?.channels ?? null;
    const counted = this.countedChannelsOf(sku);
    const rows: [string, { reserved: number; sold: number; maxUnits: number | null }][] = [];
    for (const [name, maxUnits] of policy ?? []) {
      const units = counted.find((c) => c.name === name);
      rows.push([name, { reserved: units?.reserved ?? 0, sold: units?.sold ?? 0, maxUnits }]);
    }
    for (const { name, reserved, sold } of counted) {
      if (rows.some(([listed]) => listed === name)) continue;
      if (reserved + sold > 0) rows.push([name, { reserved, sold, maxUnits: null }]);
    }
    // Names are data: defined as own properties of an object with no prototype.
    const view = Object.create(null) as SkuView['channels'];
    for (const [name, row] of rows) Object.defineProperty(view, name, { value: row, enumerable: true, writable: true, configurable: true });
    return view;
  }

  reservationId(index: number): string {
    const r = this.reservations[index];
    if (r === undefined) throw new Error(`model has no reservation ${index}`);
    return `${this.config.shardId}.${(index + 1).toString(36)}${r.nonce.padStart(NONCE_LENGTH, '0')}`;
  }

  reservationView(index: number): ReservationView {
    const r = this.reservations[index];
    if (r === undefined) throw new Error(`model has no reservation ${index}`);
    const view: ReservationView = {
      reservationId: this.reservationId(index), sku: r.sku, buyerId: r.buyerId, qty: r.qty, channel: r.channel, status: r.status,
      mode: r.mode, createdAt: r.createdAtMs, expiresAt: r.expiresAtMs,
    };
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

  // ---- commands -----------------------------------------------------------------------

  /**
   * Applies a command. Reservation commands name reservations by model index (the harness
   * maps engine ids to indexes); -1 names a reservation that never existed.
   */
  apply(c: ModelCommand, nowMs: number): ModelAnswer {
    if (malformed(c)) return { ...refuse('invalid_request'), events: [] };
    // Time never runs backwards: an earlier clock reading counts as the latest one seen.
    const now = Math.max(nowMs, this.lastNowMs);
    const before = new Map([...this.skus.keys()].map((sku) => [sku, this.availableOf(sku)]));
    const answer = this.dispatch(c, now);
    if (answer.mutated) this.lastNowMs = now;
    const events: ModelEvent[] = [];
    for (const [sku, was] of before) {
      const s = this.skus.get(sku)!;
      const available = this.availableOf(sku);
      if (available === was) continue;
      if (s.lowStockThreshold > 0) {
        if (available <= s.lowStockThreshold && !s.lowStockSignaled) {
          s.lowStockSignaled = true;
          events.push({ type: 'low_stock', sku, available, threshold: s.lowStockThreshold });
        } else if (available > s.lowStockThreshold) {
          s.lowStockSignaled = false;
        }
      }
      if (available === 0 && was > 0) events.push({ type: 'sold_out', sku });
      else if (was === 0 && available > 0) events.push({ type: 'restocked', sku });
    }
    if (c.t === 'res.pay' && answer.ok && answer.mutated && answer.reservation !== undefined) {
      events.push({ type: 'paid', reservation: answer.reservation });
    }
    return { ...answer, events };
  }

  private dispatch(c: ModelCommand, now: number): Answer {
    switch (c.t) {
      case 'sku.upsert': return this.upsert(c, now);
      case 'sku.adjust': return this.adjust(c.sku, c.delta, now);
      case 'sku.link': return this.link(c.sku, c.dropId);
      case 'sku.get': return this.whereIs(c.sku) ?? { ok: true, status: 'ok', mutated: false, replayed: false, sku: c.sku };
      case 'res.reserve': return this.reserve(c, now);
      case 'res.pay': return this.pay(c.index, c.paymentRef, now);
      case 'res.cancel': return this.cancel(c.index, c.buyerId, now);
      case 'res.refund': return this.refund(c.index, c.restock, c.reason, now);
      case 'res.get': {
        const r = this.visible(c.index, c.buyerId);
        return r === undefined ? refuse('unknown_reservation') : { ok: true, status: 'ok', mutated: false, replayed: false, reservation: r.index };
      }
      case 'res.expire': return this.expire(now);
      // The model runs with the ERP outbox off (the default): nothing is ever queued.
      case 'erp.pending': return { ok: true, status: 'ok', mutated: false, replayed: false };
      case 'erp.reconcile': return { ok: true, status: 'ok', mutated: false, replayed: false };
      case 'erp.ack': return c.upToSeq === 0 ? { ok: true, status: 'ok', mutated: false, replayed: false } : refuse('invalid_request');
      // Not modelled: turning the outbox on would make pays queue (test/domain-erp-mode.test.ts covers it).
      case 'erp.mode': throw new Error('the reference model runs with the ERP outbox off; it does not model erp.mode');
    }
  }

  /** The refusal for a SKU that is not served here, or null when it is. */
  private whereIs(sku: string): Answer | null {
    if (this.skus.has(sku)) return null;
    const dropId = this.links.get(sku);
    return dropId === undefined ? refuse('unknown_sku') : refuse('moved', false, dropId);
  }

  private live(index: number): ModelReservation | undefined {
    const r = this.reservations[index];
    return r === undefined || r.pruned ? undefined : r;
  }

  /** The reservation as `buyerId` sees it: another buyer's does not exist for it. */
  private visible(index: number, buyerId: string | undefined): ModelReservation | undefined {
    const r = this.live(index);
    return r === undefined || (buyerId !== undefined && r.buyerId !== buyerId) ? undefined : r;
  }

  private static signalled(threshold: number, available: number): boolean {
    return threshold > 0 && available <= threshold;
  }

  private upsert(c: Extract<Command, { t: 'sku.upsert' }>, now: number): Answer {
    const s = this.skus.get(c.sku);
    if (s !== undefined) {
      if (c.dropId !== undefined && c.dropId !== s.dropId) return refuse('drop_mismatch');
      const startsAt = c.startsAtMs ?? s.startsAtMs;
      const endsAt = c.endsAtMs ?? s.endsAtMs;
      if (startsAt > 0 && endsAt > 0 && endsAt <= startsAt) return refuse('invalid_request');
      // Policy only: the stock field is for creation.
      if (c.mode !== undefined) s.mode = c.mode;
      if (c.holdSeconds !== undefined) s.holdSeconds = c.holdSeconds;
      if (c.maxPerBuyer !== undefined) s.maxPerBuyer = c.maxPerBuyer;
      s.startsAtMs = startsAt;
      s.endsAtMs = endsAt;
      if (c.lowStockThreshold !== undefined && c.lowStockThreshold !== s.lowStockThreshold) {
        s.lowStockThreshold = c.lowStockThreshold;
        s.lowStockSignaled = ReferenceShard.signalled(s.lowStockThreshold, this.availableOf(c.sku));
      }
      if (c.minAccountAgeSeconds !== undefined) s.minAccountAgeSeconds = c.minAccountAgeSeconds;
      if (c.minPastOrders !== undefined) s.minPastOrders = c.minPastOrders;
      if (c.channels !== undefined) s.channels = c.channels === null ? null : c.channels.map(([name, cap]) => [name, cap]);
      s.updatedAtMs = now;
      return { ok: true, status: 'ok', mutated: true, replayed: false, sku: c.sku };
    }
    const linked = this.links.get(c.sku);
    if (linked !== undefined) {
      // The SKU lives in its drop's shard; naming another drop is a conflict, not a move.
      if (c.dropId !== undefined && c.dropId !== linked) return refuse('drop_mismatch');
      return refuse('moved', false, linked);
    }
    const dropId = c.dropId ?? null;
    if (!this.routesHere(c.sku, dropId)) return refuse('invalid_request');
    const startsAt = c.startsAtMs ?? 0;
    const endsAt = c.endsAtMs ?? 0;
    if (startsAt > 0 && endsAt > 0 && endsAt <= startsAt) return refuse('invalid_request');
    const onHand = c.stock ?? 0;
    const lowStockThreshold = c.lowStockThreshold ?? 0;
    this.skus.set(c.sku, {
      sku: c.sku, dropId, onHand, mode: c.mode ?? defaults.mode,
      holdSeconds: c.holdSeconds ?? defaults.holdSeconds, maxPerBuyer: c.maxPerBuyer ?? 0,
      startsAtMs: startsAt, endsAtMs: endsAt, lowStockThreshold,
      minAccountAgeSeconds: c.minAccountAgeSeconds ?? 0, minPastOrders: c.minPastOrders ?? 0,
      channels: c.channels === undefined || c.channels === null ? null : c.channels.map(([name, cap]) => [name, cap]),
      createdAtMs: now, updatedAtMs: now, lowStockSignaled: ReferenceShard.signalled(lowStockThreshold, onHand),
    });
    return { ok: true, status: 'created', mutated: true, replayed: false, sku: c.sku };
  }

  private adjust(sku: string, delta: number, now: number): Answer {
    const elsewhere = this.whereIs(sku);
    if (elsewhere !== null) return elsewhere;
    const s = this.skus.get(sku)!;
    if (this.availableOf(sku) + delta < 0) return refuse('insufficient_stock');
    if (s.onHand + delta > STOCK_MAX) return refuse('invalid_request');
    s.onHand += delta;
    s.updatedAtMs = now;
    return { ok: true, status: 'ok', mutated: true, replayed: false, sku };
  }

  private link(sku: string, dropId: string): Answer {
    if (!this.routesHere(sku, null)) return refuse('invalid_request'); // links live at the SKU's home
    if (this.routesHere(sku, dropId)) return { ok: true, status: 'ok', mutated: false, replayed: false };
    const s = this.skus.get(sku);
    const current = s !== undefined ? s.dropId : this.links.get(sku);
    if (current === dropId) return { ok: true, status: 'ok', mutated: false, replayed: false };
    if (s !== undefined || current !== undefined) return refuse('drop_mismatch');
    this.links.set(sku, dropId);
    return { ok: true, status: 'ok', mutated: true, replayed: false };
  }

  private reserve(c: ReserveCommand, now: number): Answer {
    const elsewhere = this.whereIs(c.sku);
    if (elsewhere !== null) return elsewhere;
    const s = this.skus.get(c.sku)!;
    const scope = s.dropId === null ? `sku ${s.sku}` : `drop ${s.dropId}`;
    const key = c.idemKey === undefined ? undefined : `${c.buyerId}\n${scope}\n${c.idemKey}`;
    if (key !== undefined) {
      const entry = this.keys.get(key);
      if (entry !== undefined) {
        // Whatever this request's qty or SKU of the drop: the first answer again (API.md).
        return { ok: true, status: 'created', mutated: false, replayed: true, reservation: entry.index };
      }
    }
    const channel = c.channel ?? DEFAULT_CHANNEL;
    if (s.channels !== null) {
      if (!s.channels.some(([name]) => name === channel)) return refuse('channel_not_allowed');
    } else {
      const counted = this.countedChannelsOf(c.sku);
      if (!counted.some((row) => row.name === channel) && counted.length >= COUNTED_CHANNELS_MAX) return refuse('channel_not_allowed');
    }
    if ((s.startsAtMs > 0 && now < s.startsAtMs) || (s.endsAtMs > 0 && now >= s.endsAtMs)) return refuse('not_on_sale');
    if (s.minAccountAgeSeconds > 0 &&
        (c.accountCreatedAtMs === undefined || now - c.accountCreatedAtMs < s.minAccountAgeSeconds * 1000)) {
      return refuse('buyer_blocked');
    }
    if (s.minPastOrders > 0 && (c.pastOrders === undefined || c.pastOrders < s.minPastOrders)) return refuse('buyer_blocked');
    if (s.maxPerBuyer > 0 && this.usedBy(c.buyerId, c.sku) + c.qty > s.maxPerBuyer) return refuse('quota_exceeded');
    if (this.overCap(c.sku, channel, c.qty)) return refuse('channel_sold_out');
    if (this.availableOf(c.sku) < c.qty) return refuse('sold_out');
    if (this.liveCount() >= this.config.liveReservationsMax) return refuse('shard_full');
    const index = this.reservations.length;
    this.reservations.push({
      index, sku: c.sku, buyerId: c.buyerId, qty: c.qty, channel, mode: s.mode, nonce: c.nonce, createdAtMs: now,
      expiresAtMs: now + s.holdSeconds * 1000, status: 'held', settledAtMs: 0, settleOrder: 0, paymentRef: null, refund: null, pruned: false,
    });
    if (key !== undefined) {
      const entry: ModelKey = { key, index, reviewAtMs: now };
      this.keys.set(key, entry);
      this.queue.push(entry);
    }
    return { ok: true, status: 'created', mutated: true, replayed: false, reservation: index };
  }

  /** Whether `qty` more units through `channel` would take its reserved + sold past its cap. */
  private overCap(sku: string, channel: string, qty: number): boolean {
    const cap = this.capOf(sku, channel);
    if (cap === null) return false;
    const { reserved, sold } = this.channelUnitsOf(sku, channel);
    return reserved + sold + qty > cap;
  }

  private settle(r: ModelReservation, status: Status, now: number): void {
    r.status = status;
    r.settledAtMs = now;
    r.settleOrder = ++this.settles;
    for (;;) {
      const kept = this.reservations.filter((x) => x.status !== 'held' && !x.pruned);
      if (kept.length <= this.config.settledReservationsMax) return;
      this.drop(kept.reduce((a, b) => (b.settleOrder < a.settleOrder ? b : a)));
      this.droppedByCount++;
    }
  }

  /** Drops a settled reservation from the shard, with any key naming it; counters keep it. */
  private drop(r: ModelReservation): void {
    r.pruned = true;
    for (const [key, entry] of this.keys) if (entry.index === r.index) this.keys.delete(key);
  }

  private pay(index: number, paymentRef: string | undefined, now: number): Answer {
    const r = this.live(index);
    if (r === undefined) return refuse('unknown_reservation');
    if (r.status === 'held' && now >= r.expiresAtMs) {
      // The hold lapsed: paying late must never turn into a fresh hold.
      this.settle(r, 'expired', now);
      return refuse('reservation_expired', true);
    }
    if (r.status === 'paid' || r.status === 'refunded') return { ok: true, status: 'ok', mutated: false, replayed: true, reservation: index };
    if (r.status === 'cancelled') return refuse('reservation_cancelled');
    if (r.status === 'expired') return refuse('reservation_expired');
    if (r.mode === 'on_payment') {
      // The hold took no units: the channel's cap and the stock are judged now.
      if (this.overCap(r.sku, r.channel, r.qty)) return refuse('channel_sold_out');
      if (this.availableOf(r.sku) < r.qty) return refuse('sold_out');
    }
    this.settle(r, 'paid', now);
    r.paymentRef = paymentRef ?? null;
    return { ok: true, status: 'ok', mutated: true, replayed: false, reservation: index };
  }

  private cancel(index: number, buyerId: string | undefined, now: number): Answer {
    const r = this.visible(index, buyerId);
    if (r === undefined) return refuse('unknown_reservation');
    if (r.status === 'held' && now >= r.expiresAtMs) {
      this.settle(r, 'expired', now);
      return { ok: true, status: 'ok', mutated: true, replayed: false, reservation: index };
    }
    if (r.status === 'paid' || r.status === 'refunded') return refuse('already_paid');
    if (r.status !== 'held') return { ok: true, status: 'ok', mutated: false, replayed: true, reservation: index };
    this.settle(r, 'cancelled', now);
    return { ok: true, status: 'ok', mutated: true, replayed: false, reservation: index };
  }

  private refund(index: number, restock: boolean, reason: string | undefined, now: number): Answer {
    const r = this.live(index);
    if (r === undefined) return refuse('unknown_reservation');
    if (r.status === 'refunded') return { ok: true, status: 'ok', mutated: false, replayed: true, reservation: index };
    if (r.status !== 'paid') return refuse('not_paid');
    // Sold, refunded, quotas and channels are derived from the status; only onHand is kept.
    r.status = 'refunded';
    r.refund = { atMs: now, restock, reason: reason ?? null };
    if (!restock) this.skus.get(r.sku)!.onHand -= r.qty;
    return { ok: true, status: 'ok', mutated: true, replayed: false, reservation: index };
  }

  private expire(now: number): Answer {
    const windowMs = this.config.idempotencyWindowMs;
    const due = this.reservations
      .filter((r) => r.status === 'held' && r.expiresAtMs <= now)
      .sort((a, b) => a.expiresAtMs - b.expiresAtMs || a.index - b.index)
      .slice(0, this.config.expireBatchMax);
    for (const r of due) this.settle(r, 'expired', now);
    let reviewed = 0;
    const waiting: ModelKey[] = [];
    for (const entry of this.queue) {
      if (entry.reviewAtMs + windowMs > now) {
        waiting.push(entry);
        continue;
      }
      // An entry whose key retention already dropped is index garbage: skipped, not a change.
      if (this.keys.get(entry.key) !== entry) continue;
      reviewed++;
      const r = this.reservations[entry.index]!;
      if (r.status === 'held' || now < r.settledAtMs + windowMs) {
        entry.reviewAtMs = now;
        waiting.push(entry);
      } else {
        this.keys.delete(entry.key);
      }
    }
    this.queue = waiting;
    let pruned = 0;
    for (const r of this.reservations) {
      if (!r.pruned && r.status !== 'held' && r.settledAtMs + this.config.settledRetentionMs <= now) {
        this.drop(r);
        pruned++;
      }
    }
    return { ok: true, status: 'ok', mutated: due.length + reviewed + pruned > 0, replayed: false, expired: due.length };
  }
}

type ReserveCommand = Extract<Command, { t: 'res.reserve' }>;

/**
 * The engine's commands, with reservations named by model index instead of id. `id`, when
 * set, is the id exactly as the engine was sent it, for the guard to judge (a harness that
 * sends a malformed one); absent, the id is the well-formed one of reservation `index`.
 */
export type ModelCommand =
  // Drops and queues are not modelled here (test/domain-drops.test.ts checks them).
  | Exclude<Command, { t: 'res.pay' } | { t: 'res.cancel' } | { t: 'res.get' } | { t: 'res.refund' } | { t: `drop.${string}` } | { t: `q.${string}` } | { t: 'sku.audit' } | { t: 'sku.list' } | { t: `ev.${string}` }>
  | { t: 'res.pay'; index: number; id?: unknown; paymentRef?: string }
  | { t: 'res.refund'; index: number; id?: unknown; restock: boolean; reason?: string }
  | { t: 'res.cancel'; index: number; id?: unknown; buyerId?: string }
  | { t: 'res.get'; index: number; id?: unknown; buyerId?: string };
