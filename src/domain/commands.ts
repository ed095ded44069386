// The commands a shard applies and the outcomes it answers. Commands are plain data
// (they are written to the write-ahead log with msgpackr and replayed), so every field
// is a primitive; anything random (the id nonce) is chosen by an adapter and carried in.

import type { Mode, Refusal, Status } from './codes.js';
import type { SkuPolicyInput } from './fields.js';

export type Command =
  /** `actor` (the caller token's name) and `reason` go to the SKU's audit trail. */
  | ({ t: 'sku.upsert'; sku: string; stock?: number; actor?: string; reason?: string } & SkuPolicyInput)
  | { t: 'sku.adjust'; sku: string; delta: number; actor?: string; reason?: string }
  /** The SKU's audit trail, newest first, from before `cursor` (a seq). */
  | { t: 'sku.audit'; sku: string; cursor?: number; limit: number }
  /** SKU views in sku order, after `after`, at most `limit` (a read; the gateway merges shards). */
  | { t: 'sku.list'; after?: string; limit: number }
  /** Records that `sku` lives in the shard of `dropId` (written at the sku's home shard). */
  | { t: 'sku.link'; sku: string; dropId: string }
  | {
      t: 'res.reserve';
      sku: string;
      buyerId: string;
      qty: number;
      idemKey?: string;
      /** Chosen at random by the adapter; makes ids unguessable. 0..8 chars of [0-9a-z], zero-padded to 8. */
      nonce: string;
      accountCreatedAtMs?: number;
      pastOrders?: number;
      /** The storefront it is sold through (the caller's token says); absent: "default". */
      channel?: string;
    }
  | { t: 'res.pay'; id: string; paymentRef?: string }
  /**
   * A paid reservation becomes refunded: its units go back to available (`restock`) or leave
   * stock (onHand down: a damaged return); sold goes down and the buyer's quota is given back.
   */
  | { t: 'res.refund'; id: string; restock: boolean; reason?: string; actor?: string }
  /** `buyerId` set: only that buyer's reservation (another's answers unknown_reservation). */
  | { t: 'res.cancel'; id: string; buyerId?: string }
  /** Expires due holds and prunes retention queues; appended by the shard's own timer. */
  | { t: 'res.expire' }
  | { t: 'sku.get'; sku: string }
  | { t: 'res.get'; id: string; buyerId?: string }
  /**
   * Events not yet delivered to the ERP, after `afterSeq`, at most `max` (a read). Refund
   * events are handed only to a deliverer that says it knows them (`refunds`); for an older
   * one the answer stops before the first refund, so it never sends one as an order.paid.
   */
  | { t: 'erp.pending'; afterSeq: number; max: number; refunds?: boolean }
  /**
   * Marks every event up to `upToSeq` as delivered (cumulative), and counts their units as
   * delivered per SKU (paid and refunded apart). Allowed while the outbox is off (what was
   * queued is still owed).
   */
  | { t: 'erp.ack'; upToSeq: number }
  /**
   * Turns queueing of paid orders for the ERP on or off. Logged, so replay (on any node,
   * whatever its settings) reproduces exactly which pays entered the outbox. Off keeps what
   * is queued; pays while off are counted as not queued and are never delivered.
   */
  | { t: 'erp.mode'; enabled: boolean; events?: boolean }
  /** Stock events not yet delivered to the events webhook, after `afterSeq`, at most `max` (a read). */
  | { t: 'ev.pending'; afterSeq: number; max: number }
  /** Marks every stock event up to `upToSeq` as delivered (cumulative). */
  | { t: 'ev.ack'; upToSeq: number }
  /** Per SKU: units sold, delivered, waiting for the ERP and never queued (a read). */
  | { t: 'erp.reconcile' }
  /**
   * Creates or updates a drop. `queue` null removes a queue that has not opened; absent
   * keeps it. `seed` (32 bytes) and `secret` (16 bytes), hex, are chosen at random by the
   * adapter and used only when this creates the queue: the seed orders a random queue or a
   * draw (revealed with the order), the secret makes a draw's hold ids (never revealed).
   */
  | { t: 'drop.put'; dropId: string; queue?: QueueInput | null; seed: string; secret: string }
  | { t: 'drop.get'; dropId: string }
  /** Joins the drop's queue; the risk signals as for a reserve. */
  | { t: 'q.join'; dropId: string; buyerId: string; accountCreatedAtMs?: number; pastOrders?: number; channel?: string }
  | { t: 'q.entry'; dropId: string; buyerId: string }
  /** The fixed order's buyer ids from `offset`, at most `limit` (a read). */
  | { t: 'drop.order'; dropId: string; offset: number; limit: number };

/** A drop's queue as a PUT body gives it (times in epoch ms). */
export interface QueueInput {
  mode?: 'fifo' | 'random' | 'draw';
  opensAt?: number;
  randomizeSeconds?: number;
  admitPerSecond?: number;
  admitSeconds?: number;
  closesAt?: number;
  qtyPerWinner?: number;
}

/** One change of a SKU's policy or stock, as GET /v1/skus/{sku}/audit shows it. */
export interface AuditView {
  at: number;
  actor: string;
  action: 'create' | 'update' | 'stock';
  /** The fields that changed, as the SKU view names them (null: the SKU did not exist). */
  before: Record<string, unknown> | null;
  after: Record<string, unknown>;
  reason: string | null;
}

export interface DropView {
  dropId: string;
  skus: string[];
  queue: null | {
    mode: 'fifo' | 'random' | 'draw';
    opensAt: number;
    randomizeSeconds: number;
    admitPerSecond: number;
    admitSeconds: number;
    closesAt?: number;
    qtyPerWinner?: number;
    entries: number;
    waiting: number;
    admitted: number;
    used: number;
    lapsed: number;
    won?: number;
    lost?: number;
    seedSha256: string;
    seed?: string;
  };
  createdAt: number;
  updatedAt: number;
}

export interface EntryView {
  dropId: string;
  buyerId: string;
  state: 'waiting' | 'admitted' | 'used' | 'lapsed' | 'entered' | 'won' | 'lost' | 'sold_out';
  joinedAt: number;
  position?: number;
  etaSeconds?: number;
  admittedAt?: number;
  admittedUntil?: number;
  reservationId?: string;
}

export type CommandType = Command['t'];

/**
 * One SKU's line of the ERP reconciliation (or a shard's totals, without `sku`). The units
 * ever paid are counted by where their order.paid is,
 *   sold + refundedUnits = deliveredUnits + undeliveredUnits + notQueuedUnits + uncountedUnits,
 * and the units refunded by where their order.refunded is,
 *   refundedUnits = refundsDeliveredUnits + refundsUndeliveredUnits + refundsNotQueuedUnits.
 */
export interface ReconcileUnits {
  /** Units in paid reservations now (refunded ones excluded), as the SKU view's `sold`. */
  sold: number;
  /** Acknowledged by the deliverer after the ERP accepted them (counted at erp.ack). */
  deliveredUnits: number;
  /** In the outbox: owed to the ERP. */
  undeliveredUnits: number;
  undeliveredOrders: number;
  /** Paid while the outbox was off: never queued, never delivered. */
  notQueuedUnits: number;
  /** Sold before delivery was counted (state from a v1/v2 snapshot): unknown. */
  uncountedUnits: number;
  /** Units of refunded reservations, as the SKU view's `refunded`. */
  refundedUnits: number;
  /** order.refunded events the deliverer acknowledged after the ERP accepted them. */
  refundsDeliveredUnits: number;
  /** order.refunded events in the outbox. */
  refundsUndeliveredUnits: number;
  refundsUndeliveredOrders: number;
  /** Refunds never queued: the outbox was off at the refund, or the order's order.paid was never queued. */
  refundsNotQueuedUnits: number;
}

export interface ReconcileRow extends ReconcileUnits {
  sku: string;
}

/** One paid order waiting in the shard's outbox for the ERP. */
export interface PaidEvent {
  /** Never set: an event without a type is an order.paid (as every event before refunds was). */
  type?: undefined;
  /** Stable across retries and restarts: the ERP's idempotency key (`order.paid:<reservationId>`). */
  eventId: string;
  shardId: number;
  /** Consecutive per shard from 1. */
  eventSeq: number;
  reservationId: string;
  sku: string;
  buyerId: string;
  qty: number;
  paidAt: number;
  paymentRef: string | null;
  /** Absent in events logged before channels existed (read as "default"). */
  channel?: string;
}

/**
 * A refund of a paid order, queued after the order's order.paid in the same outbox (so it
 * has a later eventSeq); the deliverer hands it to the ERP only once that order.paid is
 * delivered. It repeats the order's fields, so the ERP can apply it on its own.
 */
export interface RefundedEvent extends Omit<PaidEvent, 'type' | 'channel'> {
  type: 'order.refunded';
  /** `order.refunded:<reservationId>`: a reservation is refunded at most once. */
  eventId: string;
  channel: string;
  refundedAt: number;
  /** true: the units went back to available; false: they left stock (onHand went down). */
  restock: boolean;
  reason: string | null;
}

/** What the shard's outbox holds, in eventSeq order. */
export type OutboxEvent = PaidEvent | RefundedEvent;

/**
 * A stock level crossing of a SKU (shared/API.md "Operators"), queued in the shard's stock
 * event log when the events webhook is on, and delivered like orders (its own log, so a slow
 * events receiver never holds back the ERP's orders).
 */
export interface StockEvent {
  type: 'sku.low_stock' | 'sku.sold_out' | 'sku.restocked';
  /** `<type>:<shardId>.<eventSeq>`: stable across retries, restarts and replays. */
  eventId: string;
  shardId: number;
  /** Consecutive per shard from 1 (a sequence of its own, apart from the orders'). */
  eventSeq: number;
  sku: string;
  dropId: string | null;
  /** The SKU's units right after the crossing. */
  available: number;
  onHand: number;
  at: number;
}

export interface SkuView {
  sku: string;
  onHand: number;
  available: number;
  reserved: number;
  sold: number;
  /** Units of refunded reservations (restocked or not); they are no longer in `sold`. */
  refunded: number;
  mode: Mode;
  holdSeconds: number;
  maxPerBuyer: number;
  startsAt: number;
  endsAt: number;
  dropId: string | null;
  lowStockThreshold: number;
  minAccountAgeSeconds: number;
  minPastOrders: number;
  /** Per channel: units held and sold, and the cap (null: none). Policy channels and any with units. */
  channels: Record<string, { reserved: number; sold: number; maxUnits: number | null }>;
  createdAt: number;
  updatedAt: number;
}

export interface ReservationView {
  reservationId: string;
  sku: string;
  buyerId: string;
  qty: number;
  channel: string;
  status: Status;
  mode: Mode;
  createdAt: number;
  expiresAt: number;
  paidAt?: number;
  cancelledAt?: number;
  expiredAt?: number;
  paymentRef?: string;
  /** Refunded reservations: when, whether the units went back to available, and the reason given. */
  refundedAt?: number;
  restock?: boolean;
  refundReason?: string;
}

export type DomainEvent =
  | { type: 'low_stock'; sku: string; available: number; threshold: number }
  | { type: 'sold_out'; sku: string }
  /** Available went from 0 to more (a restock, a cancel, an expiry, a refund). */
  | { type: 'restocked'; sku: string }
  | { type: 'paid'; reservation: ReservationView };

export type Outcome =
  | {
      ok: true;
      /** created: a new SKU or reservation (HTTP 201); ok: anything else (HTTP 200). */
      status: 'created' | 'ok';
      sku?: SkuView;
      reservation?: ReservationView;
      drop?: DropView;
      /** sku.audit: a page of the trail. */
      audit?: { items: AuditView[]; next: string | null };
      /** sku.list: a page of SKU views, and whether this shard has more after it. */
      skus?: { items: SkuView[]; more: boolean };
      entry?: EntryView;
      /** drop.order: buyer ids in order (the gateway publishes their sha256). */
      order?: { dropId: string; seed: string; total: number; offset: number; buyers: string[] };
      /** The answer of an earlier command with the same idempotency key. */
      replayed?: boolean;
      /** res.expire: holds expired by this command. */
      expired?: number;
      /**
       * The sku or reservation view already serialized as JSON. Shard adapters send this
       * instead of the view objects (a string crosses threads and NATS far more cheaply, and
       * the shard thread, not the busy gateway, pays for serializing); `dropId` travels
       * beside it for the gateway's routing cache.
       */
      json?: string;
      dropId?: string | null;
      /** erp.pending: the events (paid and refunded: the name is the wire's); and the last event seq the shard has assigned. */
      paid?: OutboxEvent[];
      outboxLastSeq?: number;
      /**
       * erp.reconcile: per-SKU rows (at most reconcileRowsMax), the shard's totals over every
       * SKU, the outbox length, truncation, and whether pays enter the outbox now.
       */
      reconcile?: { rows: ReconcileRow[]; totals: ReconcileUnits; outboxLength: number; truncated: boolean; outboxEnabled: boolean | null };
      /** erp.mode: the mode now, and the mode before (null: none logged yet); the same for stock events. */
      erpMode?: { enabled: boolean; previous: boolean | null; events?: boolean; eventsPrevious?: boolean | null };
      /** ev.pending: stock events (and the last seq assigned is in outboxLastSeq). */
      stockEvents?: StockEvent[];
    }
  | {
      ok: false;
      code: Refusal;
      /** A short sentence for humans; codes are what clients match on. */
      message: string;
      /** Set with code `moved`: the drop whose shard owns the SKU. */
      dropId?: string;
      /** Set with code `rate_limited`: how long until the buyer may reserve again. */
      retryAfterMs?: number;
    };

export interface Applied {
  outcome: Outcome;
  /** True when the command changed state and so must be logged before it is answered. */
  mutated: boolean;
  events: DomainEvent[] | null;
}
