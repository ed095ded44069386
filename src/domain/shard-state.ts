// The whole state of one shard: its SKUs, reservations, per-buyer quota usage and
// idempotency keys, plus the indexes that keep expiry and retention O(log n). Only the
// shard's apply functions mutate it, one command at a time; nothing here does I/O or
// reads a clock.

import type { Mode, Status } from './codes.js';
import type { PaidEvent } from './commands.js';
import { ExpiryHeap } from './expiry-heap.js';
import { FifoQueue } from './fifo-queue.js';
import { ReservationTable } from './reservation-table.js';
import { reservationIdPrefix, spellReservationId } from './routing.js';

export interface ShardConfig {
  shardId: number;
  shardCount: number;
  /** Idempotency keys are kept while their hold is live and this long after it settles. */
  idempotencyWindowMs: number;
  /** Hard cap on stored idempotency keys; past it the oldest are forgotten first. */
  idempotencyKeysMax: number;
  /** Settled (paid, cancelled, expired) reservations stay readable this long. */
  settledRetentionMs: number;
  /** Cap on live (held) reservations; past it reserve answers `shard_full`. */
  liveReservationsMax: number;
  /** Cap on holds expired by one res.expire command, to keep a turn short. */
  expireBatchMax: number;
  /**
   * Whether paid orders are queued for the ERP. Off when no ERP sink is configured, so an
   * engine without an ERP keeps no outbox; orders paid while it is off are never delivered.
   */
  outboxEnabled: boolean;
}

export const defaultShardConfig: Omit<ShardConfig, 'shardId' | 'shardCount'> = {
  idempotencyWindowMs: 60 * 60 * 1000,
  idempotencyKeysMax: 2_000_000,
  settledRetentionMs: 7 * 24 * 60 * 60 * 1000,
  liveReservationsMax: 5_000_000,
  expireBatchMax: 20_000,
  outboxEnabled: false,
};

export class SkuState {
  onHand = 0;
  reserved = 0;
  sold = 0;
  mode: Mode = 'pre_deduct';
  holdSeconds = 600;
  maxPerBuyer = 0;
  startsAtMs = 0;
  endsAtMs = 0;
  lowStockThreshold = 0;
  minAccountAgeSeconds = 0;
  minPastOrders = 0;
  /** The channel policy: name -> maxUnits (null: no cap). null: any channel may reserve. */
  channelCaps: Map<string, number | null> | null = null;
  /** Units held and sold per channel, for every channel that ever had a reservation here. */
  readonly channelUnits = new Map<string, ChannelUnits>();
  /** True once a low_stock event fired; re-armed when available rises above the threshold. */
  lowStockSignaled = false;
  updatedAtMs: number;

  /** Name of the quota scope: the drop's when there is one, else the SKU's. */
  readonly quotaScope: string;

  constructor(
    readonly sku: string,
    readonly dropId: string | null,
    readonly createdAtMs: number,
    /** Units held or bought per buyer in this SKU's scope; shared by the SKUs of a drop. */
    readonly quota: Map<string, number>,
  ) {
    this.updatedAtMs = createdAtMs;
    this.quotaScope = dropId === null ? `s\u0001${sku}` : `d\u0001${dropId}`;
  }

  get available(): number {
    return this.onHand - this.reserved - this.sold;
  }
}

/** One channel's share of a SKU: held and sold units (their sums are the SKU's). */
export class ChannelUnits {
  reserved = 0;
  sold = 0;

  constructor(readonly name: string) {}
}

/** The SKU's counters of `channel`, created on first use. */
export function channelUnitsOf(s: SkuState, channel: string): ChannelUnits {
  let units = s.channelUnits.get(channel);
  if (units === undefined) {
    units = new ChannelUnits(channel);
    s.channelUnits.set(channel, units);
  }
  return units;
}

export class Reservation {
  status: Status = 'held';
  settledAtMs = 0;
  paymentRef: string | null = null;

  /**
   * The id is not stored: it is spelled from the shard's prefix (shared by all reservations
   * of the shard), the seq and the nonce when a view needs it. With the creation time kept
   * as a hold length, this saves two heap objects per live reservation.
   */
  constructor(
    /** `<shardId>.`, one string per shard. */
    readonly idPrefix: string,
    readonly seq: number,
    /** The random part of the id, exactly `nonceLength` base-36 digits. */
    readonly nonce: string,
    readonly sku: SkuState,
    readonly buyerId: string,
    readonly qty: number,
    /** The SKU's counters of the channel it was sold through (shared, so no per-hold string). */
    readonly channel: ChannelUnits,
    readonly mode: Mode,
    readonly expiresAtMs: number,
    readonly holdMs: number,
    readonly idemKey: string | null,
  ) {}

  get id(): string {
    return spellReservationId(this.idPrefix, this.seq, this.nonce);
  }

  get createdAtMs(): number {
    return this.expiresAtMs - this.holdMs;
  }

  /** Whether `id` names this reservation (its seq is already known to match). */
  named(id: string): boolean {
    return id.startsWith(this.idPrefix) && id.endsWith(this.nonce) && id.length === this.idPrefix.length + this.seq.toString(36).length + this.nonce.length;
  }

  /** Whether this reservation takes units out of `available` while held. */
  get holdsUnits(): boolean {
    return this.mode !== 'on_payment';
  }
}

export interface IdempotencyEntry {
  readonly key: string;
  readonly reservation: Reservation;
  /** When the entry may next be considered for removal. */
  reviewAtMs: number;
}

export class ShardState {
  seq = 0;
  /** The shard's reservation id prefix, shared by every reservation object. */
  readonly idPrefix: string;
  lastNowMs = 0;
  liveCount = 0;
  readonly skus = new Map<string, SkuState>();
  /** SKUs whose home shard is this one but which live in the shard of their drop. */
  readonly links = new Map<string, string>();
  readonly reservations = new ReservationTable<Reservation>();
  /** Per-buyer quota use of each drop, shared by its SKUs (a SKU without a drop has its own). */
  readonly dropQuotas = new Map<string, Map<string, number>>();
  readonly idempotency = new Map<string, IdempotencyEntry>();
  readonly idempotencyQueue = new FifoQueue<IdempotencyEntry>();
  readonly expiry = new ExpiryHeap<Reservation>();
  /** Settled reservations in the order they settled (so in settledAtMs order). */
  readonly settled = new FifoQueue<Reservation>();
  /** Paid orders not yet acknowledged by the ERP, in eventSeq order (consecutive). */
  readonly outbox = new FifoQueue<PaidEvent>();
  /** The last event seq assigned; the outbox holds (outboxLastSeq - outbox.length, outboxLastSeq]. */
  outboxLastSeq = 0;

  constructor(readonly config: ShardConfig) {
    this.idPrefix = reservationIdPrefix(config.shardId);
  }
}

export function createShardState(
  shardId: number,
  shardCount: number,
  overrides: Partial<ShardConfig> = {},
): ShardState {
  return new ShardState({ ...defaultShardConfig, ...overrides, shardId, shardCount });
}

/** The quota map a new SKU uses: its drop's (created on first use) or a fresh one. */
export function quotaFor(state: ShardState, dropId: string | null): Map<string, number> {
  if (dropId === null) return new Map();
  let quota = state.dropQuotas.get(dropId);
  if (quota === undefined) {
    quota = new Map();
    state.dropQuotas.set(dropId, quota);
  }
  return quota;
}

/**
 * A key names one reserve request of one buyer within one quota scope (a SKU, or a whole
 * drop). Scoping by SKU or drop makes the answer the same on every deployment: a key reused
 * for a SKU of another scope is a separate request, wherever the two SKUs are hosted.
 */
export function idempotencyKey(buyerId: string, scope: string, key: string): string {
  return `${buyerId}\u0000${scope}\u0000${key}`;
}
