// A deliberately naive reference model of one shard, written from shared/API.md and the
// shard contract (commands.ts, codes.ts, routing.ts), not from the implementation: plain
// objects, linear scans, and counters that are derived from the reservations instead of
// being maintained. The property tests drive it side by side with the real core and compare
// every answer, every event and the shard clock.
//
// The contract it follows, beyond shared/API.md:
// - A malformed command (a field of the wrong type or out of range, sku.adjust by 0, a
//   nonce over 8 characters or not of [0-9a-z]) is refused invalid_request and changes
//   nothing, whatever the state.
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
// The per-shard cap on stored keys (idempotencyKeysMax) is not modelled: the property tests
// run with a cap no run reaches.

import {
  modes, shardForSku, type Command, type Mode, type ReservationView, type SkuView, type Status,
} from '../../src/domain/index.js';

/** shared/API.md and codes.ts: onHand never exceeds this. */
export const STOCK_MAX = 1_000_000_000;
const QTY_MAX = 1000;
const HOLD_SECONDS_MAX = 86_400;
const MAX_PER_BUYER_MAX = 1_000_000;
const NONCE_LENGTH = 8;
const TIME_MAX = 8_640_000_000_000_000;

export interface ModelConfig {
  shardId: number;
  shardCount: number;
  idempotencyWindowMs: number;
  settledRetentionMs: number;
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
  mode: Mode;
  nonce: string;
  createdAtMs: number;
  expiresAtMs: number;
  status: Status;
  settledAtMs: number;
  paymentRef: string | null;
  /** Dropped from the shard after its retention; still counted in sold and quotas. */
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

function isText(v: unknown, max: number): boolean {
  return typeof v === 'string' && v.length >= 1 && v.length <= max;
}

function optional(v: unknown, ok: (v: unknown) => boolean): boolean {
  return v === undefined || ok(v);
}

/** Whether a command is malformed: the core refuses it invalid_request before anything else. */
export function malformed(c: ModelCommand): boolean {
  switch (c.t) {
    case 'res.reserve':
      return !(isText(c.sku, 64) && isText(c.buyerId, 512) && isCount(c.qty, 1, QTY_MAX)
        && typeof c.nonce === 'string' && c.nonce.length <= NONCE_LENGTH && /^[0-9a-z]*$/.test(c.nonce)
        && optional(c.idemKey, (v) => isText(v, 512))
        && optional(c.accountCreatedAtMs, (v) => isCount(v, 0, TIME_MAX))
        && optional(c.pastOrders, (v) => isCount(v, 0, Number.MAX_SAFE_INTEGER)));
    case 'sku.upsert':
      return !(isText(c.sku, 64) && optional(c.stock, (v) => isCount(v, 0, STOCK_MAX))
        && optional(c.mode, (v) => modes.includes(v as Mode))
        && optional(c.holdSeconds, (v) => isCount(v, 1, HOLD_SECONDS_MAX))
        && optional(c.maxPerBuyer, (v) => isCount(v, 0, MAX_PER_BUYER_MAX))
        && optional(c.startsAtMs, (v) => isCount(v, 0, TIME_MAX))
        && optional(c.endsAtMs, (v) => isCount(v, 0, TIME_MAX))
        && optional(c.lowStockThreshold, (v) => isCount(v, 0, STOCK_MAX))
        && optional(c.minAccountAgeSeconds, (v) => isCount(v, 0, 10 * 365 * 86_400))
        && optional(c.minPastOrders, (v) => isCount(v, 0, MAX_PER_BUYER_MAX))
        && (c.dropId === undefined || c.dropId === null || isText(c.dropId, 64)));
    case 'sku.adjust': return !(isText(c.sku, 64) && isCount(c.delta, -STOCK_MAX, STOCK_MAX) && c.delta !== 0);
    case 'sku.link': return !(isText(c.sku, 64) && isText(c.dropId, 64));
    case 'sku.get': return typeof c.sku !== 'string';
    case 'res.pay': return !optional(c.paymentRef, (v) => isText(v, 512));
    case 'erp.pending': return !(isCount(c.afterSeq, 0, Number.MAX_SAFE_INTEGER) && isCount(c.max, 1, 10_000));
    case 'erp.ack': return !isCount(c.upToSeq, 0, Number.MAX_SAFE_INTEGER);
    case 'res.cancel':
    case 'res.get':
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
    return {
      sku: s.sku, onHand: s.onHand, available: this.availableOf(sku), reserved: this.reservedOf(sku),
      sold: this.soldOf(sku), mode: s.mode, holdSeconds: s.holdSeconds, maxPerBuyer: s.maxPerBuyer,
      startsAt: s.startsAtMs, endsAt: s.endsAtMs, dropId: s.dropId, lowStockThreshold: s.lowStockThreshold,
      minAccountAgeSeconds: s.minAccountAgeSeconds, minPastOrders: s.minPastOrders,
      createdAt: s.createdAtMs, updatedAt: s.updatedAtMs,
    };
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
      reservationId: this.reservationId(index), sku: r.sku, buyerId: r.buyerId, qty: r.qty, status: r.status,
      mode: r.mode, createdAt: r.createdAtMs, expiresAt: r.expiresAtMs,
    };
    if (r.status === 'paid') view.paidAt = r.settledAtMs;
    if (r.status === 'cancelled') view.cancelledAt = r.settledAtMs;
    if (r.status === 'expired') view.expiredAt = r.settledAtMs;
    if (r.paymentRef !== null) view.paymentRef = r.paymentRef;
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
      case 'res.cancel': return this.cancel(c.index, now);
      case 'res.get': {
        const r = this.live(c.index);
        return r === undefined ? refuse('unknown_reservation') : { ok: true, status: 'ok', mutated: false, replayed: false, reservation: r.index };
      }
      case 'res.expire': return this.expire(now);
      // The model runs with the ERP outbox off (the default): nothing is ever queued.
      case 'erp.pending': return { ok: true, status: 'ok', mutated: false, replayed: false };
      case 'erp.reconcile': return { ok: true, status: 'ok', mutated: false, replayed: false };
      case 'erp.ack': return c.upToSeq === 0 ? { ok: true, status: 'ok', mutated: false, replayed: false } : refuse('invalid_request');
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
        const first = this.reservations[entry.index]!;
        if (first.sku !== c.sku || first.qty !== c.qty) return refuse('idempotency_conflict');
        return { ok: true, status: 'created', mutated: false, replayed: true, reservation: entry.index };
      }
    }
    if ((s.startsAtMs > 0 && now < s.startsAtMs) || (s.endsAtMs > 0 && now >= s.endsAtMs)) return refuse('not_on_sale');
    if (s.minAccountAgeSeconds > 0 &&
        (c.accountCreatedAtMs === undefined || now - c.accountCreatedAtMs < s.minAccountAgeSeconds * 1000)) {
      return refuse('buyer_blocked');
    }
    if (s.minPastOrders > 0 && (c.pastOrders === undefined || c.pastOrders < s.minPastOrders)) return refuse('buyer_blocked');
    if (s.maxPerBuyer > 0 && this.usedBy(c.buyerId, c.sku) + c.qty > s.maxPerBuyer) return refuse('quota_exceeded');
    if (this.availableOf(c.sku) < c.qty) return refuse('sold_out');
    if (this.liveCount() >= this.config.liveReservationsMax) return refuse('shard_full');
    const index = this.reservations.length;
    this.reservations.push({
      index, sku: c.sku, buyerId: c.buyerId, qty: c.qty, mode: s.mode, nonce: c.nonce, createdAtMs: now,
      expiresAtMs: now + s.holdSeconds * 1000, status: 'held', settledAtMs: 0, paymentRef: null, pruned: false,
    });
    if (key !== undefined) {
      const entry: ModelKey = { key, index, reviewAtMs: now };
      this.keys.set(key, entry);
      this.queue.push(entry);
    }
    return { ok: true, status: 'created', mutated: true, replayed: false, reservation: index };
  }

  private settle(r: ModelReservation, status: Status, now: number): void {
    r.status = status;
    r.settledAtMs = now;
  }

  private pay(index: number, paymentRef: string | undefined, now: number): Answer {
    const r = this.live(index);
    if (r === undefined) return refuse('unknown_reservation');
    if (r.status === 'held' && now >= r.expiresAtMs) {
      // The hold lapsed: paying late must never turn into a fresh hold.
      this.settle(r, 'expired', now);
      return refuse('reservation_expired', true);
    }
    if (r.status === 'paid') return { ok: true, status: 'ok', mutated: false, replayed: true, reservation: index };
    if (r.status === 'cancelled') return refuse('reservation_cancelled');
    if (r.status === 'expired') return refuse('reservation_expired');
    if (r.mode === 'on_payment' && this.availableOf(r.sku) < r.qty) return refuse('sold_out');
    this.settle(r, 'paid', now);
    r.paymentRef = paymentRef ?? null;
    return { ok: true, status: 'ok', mutated: true, replayed: false, reservation: index };
  }

  private cancel(index: number, now: number): Answer {
    const r = this.live(index);
    if (r === undefined) return refuse('unknown_reservation');
    if (r.status === 'held' && now >= r.expiresAtMs) {
      this.settle(r, 'expired', now);
      return { ok: true, status: 'ok', mutated: true, replayed: false, reservation: index };
    }
    if (r.status === 'paid') return refuse('already_paid');
    if (r.status !== 'held') return { ok: true, status: 'ok', mutated: false, replayed: true, reservation: index };
    this.settle(r, 'cancelled', now);
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
        r.pruned = true;
        pruned++;
        for (const [key, entry] of this.keys) if (entry.index === r.index) this.keys.delete(key);
      }
    }
    return { ok: true, status: 'ok', mutated: due.length + reviewed + pruned > 0, replayed: false, expired: due.length };
  }
}

type ReserveCommand = Extract<Command, { t: 'res.reserve' }>;

/** The engine's commands, with reservations named by model index instead of id. */
export type ModelCommand =
  | Exclude<Command, { t: 'res.pay' } | { t: 'res.cancel' } | { t: 'res.get' }>
  | { t: 'res.pay'; index: number; paymentRef?: string }
  | { t: 'res.cancel'; index: number }
  | { t: 'res.get'; index: number };
