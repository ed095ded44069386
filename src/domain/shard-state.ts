// The whole state of one shard: its SKUs, reservations, per-buyer quota usage and
// idempotency keys, plus the indexes that keep expiry and retention O(log n). Only the
// shard's apply functions mutate it, one command at a time; nothing here does I/O or
// reads a clock.

import { QuotaTable } from './quota-table.js';
import type { Mode, Status } from './codes.js';
import type { OutboxEvent, StockEvent } from './commands.js';
import { assert } from './assert.js';
import { ExpiryHeap } from './expiry-heap.js';
import type { DropState } from './drop-state.js';
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
  /**
   * Cap on settled reservations a shard keeps, whatever their age (at least 1). Retention
   * by time alone let a reserve+cancel loop grow a shard until its snapshot passed the
   * 1 GiB frame limit (about 291 snapshot bytes per reservation), after which every snapshot
   * threw and the worker restarted forever. A settle that makes one too many drops the
   * oldest settled reservation (by settle order) exactly as retention does: it leaves the
   * table with any idempotency key still naming it, and its id answers unknown_reservation.
   * Quota use and `sold` are not touched: a dropped paid reservation stays counted. The
   * drop happens inside the settle, so it is logged with (and replayed by) the command that
   * settled; the reservation just settled is the newest, so that command still answers it.
   * At the default, settled reservations take at most about 300 MB of a snapshot.
   */
  settledReservationsMax: number;
  /** Cap on live (held) reservations; past it reserve answers `shard_full`. */
  liveReservationsMax: number;
  /**
   * Seed of the quota tables' hash (quota-table.ts). It decides where a buyer's entry sits,
   * never what a command does or the order of anything (never logged or snapshotted): a
   * runtime draws one at random, so buyer ids chosen to collide cannot be chosen ahead.
   */
  quotaHashSeed: number;
  /** Cap on holds expired by one res.expire command, to keep a turn short. */
  expireBatchMax: number;
  /** Stock events kept for the events webhook; past it the oldest are dropped (and counted). */
  stockEventsMax: number;
  /**
   * Only for log records written before `erp.mode` existed: whether their pays were queued
   * for the ERP, which the process's FLASH_ERP_* settings decided then. It is read only
   * while the state has no logged mode (ShardState.outboxEnabled === null); the adapter logs
   * an erp.mode at every start where that is so, so no record this version writes depends
   * on it. Whether paid orders enter the outbox is otherwise shard state, never configuration.
   */
  legacyOutboxEnabled: boolean;
}

export const defaultShardConfig: Omit<ShardConfig, 'shardId' | 'shardCount'> = {
  idempotencyWindowMs: 60 * 60 * 1000,
  idempotencyKeysMax: 2_000_000,
  settledRetentionMs: 7 * 24 * 60 * 60 * 1000,
  settledReservationsMax: 1_000_000,
  liveReservationsMax: 5_000_000,
  expireBatchMax: 20_000,
  stockEventsMax: 100_000,
  legacyOutboxEnabled: false,
  quotaHashSeed: 0x9e3779b9,
};

/**
 * The shard's log of stock events for the events webhook (shared/API.md "Operators"): on only
 * while a logged erp.mode says so, consecutive seqs, the oldest dropped past `max` (counted),
 * so a receiver that is down for days cannot grow a shard without bound. Every SKU of the
 * shard records into it (stock-events.ts) at the time of the command being applied (`nowMs`,
 * set by apply before each command, also on replay).
 */
export class StockEventLog {
  enabled: boolean | null = null;
  lastSeq = 0;
  dropped = 0;
  nowMs = 0;
  readonly queue = new FifoQueue<StockEvent>();

  constructor(readonly shardId: number, readonly max: number) {}

  record(kind: 'low_stock' | 'sold_out' | 'restocked', s: SkuState): void {
    if (this.enabled !== true) return;
    const eventSeq = ++this.lastSeq;
    const type = `sku.${kind}` as const;
    this.queue.push({
      type, eventId: `${type}:${this.shardId}.${eventSeq}`, shardId: this.shardId, eventSeq,
      sku: s.sku, dropId: s.dropId, available: s.available, onHand: s.onHand, at: this.nowMs,
    });
    while (this.queue.length > this.max) {
      this.queue.shift();
      this.dropped++;
    }
  }
}

export type AuditAction = 'create' | 'update' | 'stock';

/** One change of a SKU's policy or stock (audit.ts). */
export interface AuditEntry {
  /** Per SKU, from 1; the cursor of the audit listing. */
  seq: number;
  atMs: number;
  actor: string;
  action: AuditAction;
  /** The fields that changed, as the SKU view names them (null: the SKU did not exist). */
  before: Record<string, unknown> | null;
  after: Record<string, unknown>;
  reason: string | null;
}

export class SkuState {
  onHand = 0;
  reserved = 0;
  sold = 0;
  /** Units of refunded reservations: they left `sold` (and went back to available or out of onHand). */
  refunded = 0;
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
  /**
   * The ERP's share of `sold` (apply-outbox.ts): units acknowledged as delivered, units paid
   * while the outbox was off (never queued), and units sold before this was counted (from a
   * v1/v2 snapshot; neither known delivered nor known not queued). With the units still in
   * the outbox they add up to `sold`.
   */
  erpDeliveredUnits = 0;
  erpNotQueuedUnits = 0;
  erpUncountedUnits = 0;
  /**
   * The ERP's share of `refunded`: order.refunded units acknowledged as delivered, and units
   * whose refund was never queued. With the refunds still in the outbox they add up to it.
   */
  erpRefundsDeliveredUnits = 0;
  erpRefundsNotQueuedUnits = 0;
  updatedAtMs: number;
  /** Where its stock crossings are recorded for the events webhook (set when it joins a shard). */
  eventLog: StockEventLog | null = null;
  /** Changes of its policy and stock, oldest first (audit.ts): the newest auditEntriesPerSkuMax. */
  audit: AuditEntry[] = [];
  /** The seq of the newest entry dropped from `audit` (0: none). */
  auditSeqBase = 0;
  /** The entries' size as JSON (audit.ts auditEntryBytes), kept under auditBytesPerSkuMax. */
  auditBytes = 0;

  /** Name of the quota scope: the drop's when there is one, else the SKU's. */
  readonly quotaScope: string;

  constructor(
    readonly sku: string,
    readonly dropId: string | null,
    readonly createdAtMs: number,
    /** Units held or bought per buyer in this SKU's scope; shared by the SKUs of a drop. */
    readonly quota: QuotaTable,
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

/** What a refund recorded (only refunded reservations carry one). */
export interface Refund {
  readonly atMs: number;
  readonly restock: boolean;
  readonly reason: string | null;
}

export class Reservation {
  status: Status = 'held';
  /** When it left `held`; a refund keeps it (it is the pay time), so the settled queue stays in this order. */
  settledAtMs = 0;
  paymentRef: string | null = null;
  /**
   * Whether its pay entered the ERP outbox, so its refund follows it there (and only then).
   * null: unknown, paid before this was recorded (a v3 snapshot): its refund is queued if
   * the outbox is on at the refund.
   */
  erpQueued: boolean | null = false;
  refund: Refund | null = null;

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
  /** SKU names in order, for listing (an index: built at the first listing, then kept up to date by addSku). */
  sortedSkuNames: string[] | null = null;
  /** Drops created here (drop.put), with their queues. */
  readonly drops = new Map<string, DropState>();
  /** The SKUs of each drop, in creation order (an index: rebuilt from the SKUs on restore). */
  readonly dropSkus = new Map<string, SkuState[]>();
  /** Per-buyer quota use of each drop, shared by its SKUs (a SKU without a drop has its own). */
  readonly dropQuotas = new Map<string, QuotaTable>();
  readonly idempotency = new Map<string, IdempotencyEntry>();
  readonly idempotencyQueue = new FifoQueue<IdempotencyEntry>();
  readonly expiry = new ExpiryHeap<Reservation>();
  /** Settled reservations in the order they settled (so in settledAtMs order). */
  readonly settled = new FifoQueue<Reservation>();
  /** Paid and refunded orders not yet acknowledged by the ERP, in eventSeq order (consecutive). */
  readonly outbox = new FifoQueue<OutboxEvent>();
  /** The last event seq assigned; the outbox holds (outboxLastSeq - outbox.length, outboxLastSeq]. */
  outboxLastSeq = 0;
  /**
   * Whether pays enter the outbox, changed only by a logged erp.mode, so replay reproduces
   * exactly when orders started or stopped entering it. null: no erp.mode logged yet (a log
   * from before erp.mode; config.legacyOutboxEnabled decides for its records).
   */
  outboxEnabled: boolean | null = null;
  /** Stock events for the events webhook. */
  readonly stockEvents: StockEventLog;

  constructor(readonly config: ShardConfig) {
    const settledMax = config.settledReservationsMax;
    assert(Number.isSafeInteger(settledMax) && settledMax >= 1, `settledReservationsMax must be an integer >= 1, not ${settledMax}`);
    this.idPrefix = reservationIdPrefix(config.shardId);
    this.stockEvents = new StockEventLog(config.shardId, config.stockEventsMax);
  }
}

export function createShardState(
  shardId: number,
  shardCount: number,
  overrides: Partial<ShardConfig> = {},
): ShardState {
  return new ShardState({ ...defaultShardConfig, ...overrides, shardId, shardCount });
}

/** Adds a new SKU to the state (and to its drop's list). */
export function addSku(state: ShardState, s: SkuState): void {
  state.skus.set(s.sku, s);
  s.eventLog = state.stockEvents;
  // The listing's sorted index, once built, takes each new name in its place (a binary search
  // and one splice), so a listing during an import never sorts the whole shard again.
  const names = state.sortedSkuNames;
  if (names !== null) {
    let lo = 0;
    let hi = names.length;
    while (lo < hi) {
      const mid = (lo + hi) >>> 1;
      if (names[mid]! < s.sku) lo = mid + 1;
      else hi = mid;
    }
    names.splice(lo, 0, s.sku);
  }
  if (s.dropId === null) return;
  let list = state.dropSkus.get(s.dropId);
  if (list === undefined) state.dropSkus.set(s.dropId, (list = []));
  list.push(s);
}

/** The quota map a new SKU uses: its drop's (created on first use) or a fresh one. */
export function quotaFor(state: ShardState, dropId: string | null): QuotaTable {
  if (dropId === null) return new QuotaTable(state.config.quotaHashSeed);
  let quota = state.dropQuotas.get(dropId);
  if (quota === undefined) {
    quota = new QuotaTable(state.config.quotaHashSeed);
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
