// The whole state of one shard: its SKUs, reservations, per-buyer quota usage and
// idempotency keys, plus the indexes that keep expiry and retention O(log n). Only the
// shard's apply functions mutate it, one command at a time; nothing here does I/O or
// reads a clock.

import type { Mode, Status } from './codes.js';
import { ExpiryHeap } from './expiry-heap.js';
import { FifoQueue } from './fifo-queue.js';

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
}

export const defaultShardConfig: Omit<ShardConfig, 'shardId' | 'shardCount'> = {
  idempotencyWindowMs: 60 * 60 * 1000,
  idempotencyKeysMax: 2_000_000,
  settledRetentionMs: 7 * 24 * 60 * 60 * 1000,
  liveReservationsMax: 5_000_000,
  expireBatchMax: 20_000,
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
  /** True once a low_stock event fired; re-armed when available rises above the threshold. */
  lowStockSignaled = false;
  updatedAtMs: number;

  constructor(
    readonly sku: string,
    readonly dropId: string | null,
    readonly createdAtMs: number,
  ) {
    this.updatedAtMs = createdAtMs;
  }

  get available(): number {
    return this.onHand - this.reserved - this.sold;
  }

  /** Key of the per-buyer quota bucket: the drop's when there is one, else the SKU's. */
  get quotaScope(): string {
    return this.dropId === null ? `s\u0001${this.sku}` : `d\u0001${this.dropId}`;
  }
}

export class Reservation {
  status: Status = 'held';
  settledAtMs = 0;
  paymentRef: string | null = null;

  constructor(
    readonly id: string,
    readonly seq: number,
    readonly sku: SkuState,
    readonly buyerId: string,
    readonly qty: number,
    readonly mode: Mode,
    readonly createdAtMs: number,
    readonly expiresAtMs: number,
    readonly idemKey: string | null,
  ) {}

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
  lastNowMs = 0;
  liveCount = 0;
  readonly skus = new Map<string, SkuState>();
  /** SKUs whose home shard is this one but which live in the shard of their drop. */
  readonly links = new Map<string, string>();
  readonly reservations = new Map<string, Reservation>();
  /** Units held or bought per (quota scope, buyer); entries at zero are deleted. */
  readonly quotas = new Map<string, number>();
  readonly idempotency = new Map<string, IdempotencyEntry>();
  readonly idempotencyQueue = new FifoQueue<IdempotencyEntry>();
  readonly expiry = new ExpiryHeap<Reservation>();
  /** Settled reservations in the order they settled (so in settledAtMs order). */
  readonly settled = new FifoQueue<Reservation>();

  constructor(readonly config: ShardConfig) {}
}

export function createShardState(
  shardId: number,
  shardCount: number,
  overrides: Partial<ShardConfig> = {},
): ShardState {
  return new ShardState({ ...defaultShardConfig, ...overrides, shardId, shardCount });
}

export function quotaKey(scope: string, buyerId: string): string {
  return `${scope}\u0000${buyerId}`;
}

/**
 * A key names one reserve request of one buyer within one quota scope (a SKU, or a whole
 * drop). Scoping by SKU or drop makes the answer the same on every deployment: a key reused
 * for a SKU of another scope is a separate request, wherever the two SKUs are hosted.
 */
export function idempotencyKey(buyerId: string, scope: string, key: string): string {
  return `${buyerId}\u0000${scope}\u0000${key}`;
}
