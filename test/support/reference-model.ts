// A deliberately naive reference model of one shard, written from shared/API.md and the
// shard contract (commands.ts), not from the implementation: plain objects, linear scans,
// and counters that are derived from the reservations instead of being maintained. The
// property tests drive it side by side with the real core and compare every answer.
//
// Where the contract leaves the implementation a choice (when exactly an idempotency key
// is forgotten after its window), the model accepts either answer and follows the engine.

import type { Command, Mode, ReservationView, SkuView, Status } from '../../src/domain/index.js';

/** shared/API.md and codes.ts: onHand never exceeds this. */
export const STOCK_MAX = 1_000_000_000;

export interface ModelConfig {
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
}

export interface ModelReservation {
  /** Position in creation order; the engine's seq order is the same order. */
  index: number;
  sku: string;
  buyerId: string;
  qty: number;
  mode: Mode;
  createdAtMs: number;
  expiresAtMs: number;
  status: Status;
  settledAtMs: number;
  paymentRef: string | null;
  /** Dropped from the shard after its retention; still counted in sold and quotas. */
  pruned: boolean;
}

export type ModelAnswer =
  | {
      ok: true;
      status: 'created' | 'ok';
      mutated: boolean;
      replayed: boolean;
      /** Index of the reservation the answer shows. */
      reservation?: number;
      sku?: string;
      expired?: number;
      /** res.expire only: settled reservations dropped after their retention. */
      pruned?: number;
    }
  | {
      ok: false;
      code: string;
      mutated: boolean;
      dropId?: string;
    };

/** What the engine answered, for the choices the contract leaves open. */
export interface EngineHint {
  /** The engine answered a reserve as a replay or an idempotency conflict. */
  rememberedKey?: boolean;
  /** The engine said its res.expire changed state (it may prune idempotency keys). */
  expireMutated?: boolean;
}

const defaults = { mode: 'pre_deduct' as Mode, holdSeconds: 600 };

function refuse(code: string, mutated = false, dropId?: string): ModelAnswer {
  return dropId === undefined ? { ok: false, code, mutated } : { ok: false, code, mutated, dropId };
}

export class ReferenceShard {
  lastNowMs = 0;
  readonly skus = new Map<string, ModelSku>();
  readonly links = new Map<string, string>();
  /** Every reservation ever created, pruned ones included. */
  readonly reservations: ModelReservation[] = [];
  /** `${buyerId}\n${quota scope}\n${key}` to the reservation's index: keys are per SKU, or per drop. */
  readonly keys = new Map<string, number>();

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

  // ---- views --------------------------------------------------------------------------

  skuView(sku: string): Omit<SkuView, 'lowStockThreshold' | 'minAccountAgeSeconds' | 'minPastOrders'> {
    const s = this.skus.get(sku);
    if (s === undefined) throw new Error(`model has no sku ${sku}`);
    return {
      sku: s.sku, onHand: s.onHand, available: this.availableOf(sku), reserved: this.reservedOf(sku),
      sold: this.soldOf(sku), mode: s.mode, holdSeconds: s.holdSeconds, maxPerBuyer: s.maxPerBuyer,
      startsAt: s.startsAtMs, endsAt: s.endsAtMs, dropId: s.dropId, createdAt: s.createdAtMs, updatedAt: s.updatedAtMs,
    };
  }

  reservationView(index: number): Omit<ReservationView, 'reservationId'> {
    const r = this.reservations[index];
    if (r === undefined) throw new Error(`model has no reservation ${index}`);
    const view: Omit<ReservationView, 'reservationId'> = {
      sku: r.sku, buyerId: r.buyerId, qty: r.qty, status: r.status, mode: r.mode,
      createdAt: r.createdAtMs, expiresAt: r.expiresAtMs,
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
  apply(c: ModelCommand, nowMs: number, hint: EngineHint = {}): ModelAnswer {
    // Time never runs backwards: an earlier clock reading counts as the latest one seen.
    const now = Math.max(nowMs, this.lastNowMs);
    const answer = this.dispatch(c, now, hint);
    const mutated = c.t === 'res.expire' ? answer.mutated || hint.expireMutated === true : answer.mutated;
    if (mutated) this.lastNowMs = now;
    return answer;
  }

  private dispatch(c: ModelCommand, now: number, hint: EngineHint): ModelAnswer {
    switch (c.t) {
      case 'sku.upsert': return this.upsert(c, now);
      case 'sku.adjust': return this.adjust(c.sku, c.delta, now);
      case 'sku.link': return this.link(c.sku, c.dropId);
      case 'sku.get': return this.whereIs(c.sku) ?? { ok: true, status: 'ok', mutated: false, replayed: false, sku: c.sku };
      case 'res.reserve': return this.reserve(c, now, hint);
      case 'res.pay': return this.pay(c.index, c.paymentRef, now);
      case 'res.cancel': return this.cancel(c.index, now);
      case 'res.get': {
        const r = this.live(c.index);
        return r === undefined ? refuse('unknown_reservation') : { ok: true, status: 'ok', mutated: false, replayed: false, reservation: r.index };
      }
      case 'res.expire': return this.expire(now);
    }
  }

  /** The refusal for a SKU that is not served here, or null when it is. */
  private whereIs(sku: string): ModelAnswer | null {
    if (this.skus.has(sku)) return null;
    const dropId = this.links.get(sku);
    return dropId === undefined ? refuse('unknown_sku') : refuse('moved', false, dropId);
  }

  private live(index: number): ModelReservation | undefined {
    const r = this.reservations[index];
    return r === undefined || r.pruned ? undefined : r;
  }

  private upsert(c: Extract<Command, { t: 'sku.upsert' }>, now: number): ModelAnswer {
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
      if (c.lowStockThreshold !== undefined) s.lowStockThreshold = c.lowStockThreshold;
      if (c.minAccountAgeSeconds !== undefined) s.minAccountAgeSeconds = c.minAccountAgeSeconds;
      if (c.minPastOrders !== undefined) s.minPastOrders = c.minPastOrders;
      s.updatedAtMs = now;
      return { ok: true, status: 'ok', mutated: true, replayed: false, sku: c.sku };
    }
    const dropId = this.links.get(c.sku);
    if (dropId !== undefined) {
      // The SKU lives in its drop's shard; naming another drop is a conflict, not a move.
      if (c.dropId !== undefined && c.dropId !== dropId) return refuse('drop_mismatch');
      return refuse('moved', false, dropId);
    }
    const startsAt = c.startsAtMs ?? 0;
    const endsAt = c.endsAtMs ?? 0;
    if (startsAt > 0 && endsAt > 0 && endsAt <= startsAt) return refuse('invalid_request');
    this.skus.set(c.sku, {
      sku: c.sku, dropId: c.dropId ?? null, onHand: c.stock ?? 0, mode: c.mode ?? defaults.mode,
      holdSeconds: c.holdSeconds ?? defaults.holdSeconds, maxPerBuyer: c.maxPerBuyer ?? 0,
      startsAtMs: startsAt, endsAtMs: endsAt, lowStockThreshold: c.lowStockThreshold ?? 0,
      minAccountAgeSeconds: c.minAccountAgeSeconds ?? 0, minPastOrders: c.minPastOrders ?? 0,
      createdAtMs: now, updatedAtMs: now,
    });
    return { ok: true, status: 'created', mutated: true, replayed: false, sku: c.sku };
  }

  private adjust(sku: string, delta: number, now: number): ModelAnswer {
    const elsewhere = this.whereIs(sku);
    if (elsewhere !== null) return elsewhere;
    const s = this.skus.get(sku)!;
    if (this.availableOf(sku) + delta < 0) return refuse('insufficient_stock');
    if (s.onHand + delta > STOCK_MAX) return refuse('invalid_request');
    s.onHand += delta;
    s.updatedAtMs = now;
    return { ok: true, status: 'ok', mutated: true, replayed: false, sku };
  }

  private link(sku: string, dropId: string): ModelAnswer {
    const s = this.skus.get(sku);
    const current = s !== undefined ? s.dropId : this.links.get(sku);
    if (current === dropId) return { ok: true, status: 'ok', mutated: false, replayed: false };
    if (s !== undefined || current !== undefined) return refuse('drop_mismatch');
    this.links.set(sku, dropId);
    return { ok: true, status: 'ok', mutated: true, replayed: false };
  }

  /** Whether the contract promises the key is still remembered at `now`. */
  private keyCertainlyKept(r: ModelReservation, now: number): boolean {
    return r.status === 'held' || now < r.settledAtMs + this.config.idempotencyWindowMs;
  }

  private reserve(c: ReserveCommand, now: number, hint: EngineHint): ModelAnswer {
    const elsewhere = this.whereIs(c.sku);
    if (elsewhere !== null) return elsewhere;
    const s = this.skus.get(c.sku)!;
    const scope = s.dropId === null ? `sku ${s.sku}` : `drop ${s.dropId}`;
    const key = c.idemKey === undefined ? undefined : `${c.buyerId}\n${scope}\n${c.idemKey}`;
    if (key !== undefined) {
      const index = this.keys.get(key);
      if (index !== undefined) {
        const first = this.reservations[index]!;
        if (this.keyCertainlyKept(first, now) || hint.rememberedKey === true) {
          if (first.sku !== c.sku || first.qty !== c.qty) return refuse('idempotency_conflict');
          return { ok: true, status: 'created', mutated: false, replayed: true, reservation: index };
        }
        this.keys.delete(key); // past its window, and the engine has forgotten it
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
      index, sku: c.sku, buyerId: c.buyerId, qty: c.qty, mode: s.mode, createdAtMs: now,
      expiresAtMs: now + s.holdSeconds * 1000, status: 'held', settledAtMs: 0, paymentRef: null, pruned: false,
    });
    if (key !== undefined) this.keys.set(key, index);
    return { ok: true, status: 'created', mutated: true, replayed: false, reservation: index };
  }

  private settle(r: ModelReservation, status: Status, now: number): void {
    r.status = status;
    r.settledAtMs = now;
  }

  private pay(index: number, paymentRef: string | undefined, now: number): ModelAnswer {
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

  private cancel(index: number, now: number): ModelAnswer {
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

  private expire(now: number): ModelAnswer {
    const due = this.reservations
      .filter((r) => r.status === 'held' && r.expiresAtMs <= now)
      .sort((a, b) => a.expiresAtMs - b.expiresAtMs || a.index - b.index)
      .slice(0, this.config.expireBatchMax);
    for (const r of due) this.settle(r, 'expired', now);
    let pruned = 0;
    for (const r of this.reservations) {
      if (!r.pruned && r.status !== 'held' && r.settledAtMs + this.config.settledRetentionMs <= now) {
        r.pruned = true;
        pruned++;
      }
    }
    return { ok: true, status: 'ok', mutated: due.length + pruned > 0, replayed: false, expired: due.length, pruned };
  }
}

type ReserveCommand = Extract<Command, { t: 'res.reserve' }>;

/** The engine's commands, with reservations named by model index instead of id. */
export type ModelCommand =
  | Exclude<Command, { t: 'res.pay' } | { t: 'res.cancel' } | { t: 'res.get' }>
  | { t: 'res.pay'; index: number; paymentRef?: string }
  | { t: 'res.cancel'; index: number }
  | { t: 'res.get'; index: number };
