// Stable names shared by the core and every adapter: deduction modes, reservation
// statuses and outcome codes. Codes are snake_case and map 1:1 to the HTTP errors of
// shared/API.md; renaming one is a breaking change for clients.

export const Mode = {
  preDeduct: 'pre_deduct',
  onOrder: 'on_order',
  onPayment: 'on_payment',
} as const;
export type Mode = (typeof Mode)[keyof typeof Mode];
export const modes: readonly Mode[] = Object.values(Mode);

export const Status = {
  held: 'held',
  paid: 'paid',
  cancelled: 'cancelled',
  expired: 'expired',
  /** Was paid, then refunded (apply-refund.ts): no longer sold, its quota given back. */
  refunded: 'refunded',
} as const;
export type Status = (typeof Status)[keyof typeof Status];

/** Outcome codes of refused commands. */
export const Refusal = {
  unknownSku: 'unknown_sku',
  soldOut: 'sold_out',
  quotaExceeded: 'quota_exceeded',
  notOnSale: 'not_on_sale',
  buyerBlocked: 'buyer_blocked',
  insufficientStock: 'insufficient_stock',
  unknownReservation: 'unknown_reservation',
  reservationExpired: 'reservation_expired',
  reservationCancelled: 'reservation_cancelled',
  alreadyPaid: 'already_paid',
  /** A refund of a reservation that is not paid (held, cancelled or expired). */
  notPaid: 'not_paid',
  dropMismatch: 'drop_mismatch',
  /** The SKU's channel policy does not list the reservation's channel. */
  channelNotAllowed: 'channel_not_allowed',
  /** The channel's held + sold units would pass its maxUnits. */
  channelSoldOut: 'channel_sold_out',
  invalidRequest: 'invalid_request',
  /** The shard is at a hard capacity bound (live reservations); retry later. */
  capacity: 'shard_full',
  /** The SKU lives in the shard of its drop; the answer carries the dropId to route by. */
  moved: 'moved',
  /** No drop with that id (drop.get, joining, reading an entry or the order). */
  unknownDrop: 'unknown_drop',
  /** A reserve on a drop with a queue by a buyer who is not admitted now (or any reserve on a draw). */
  notAdmitted: 'not_admitted',
  /** Joining before the queue's opensAt (or a drop without a queue). */
  queueNotOpen: 'queue_not_open',
  /** Joining a draw after its closesAt. */
  queueClosed: 'queue_closed',
  /** A change of mode, opensAt, randomizeSeconds or closesAt once the queue opened. */
  queueLocked: 'queue_locked',
  /** No entry of this buyer in the drop's queue (or one this caller may not read). */
  unknownEntry: 'unknown_entry',
  /** The drop's order is not published (yet): before the reveal, or a fifo queue. */
  orderNotFixed: 'order_not_fixed',
  /** Never answered by apply: the shard's adapter refuses a reserve past its buyer's rate. */
  rateLimited: 'rate_limited',
} as const;
export type Refusal = (typeof Refusal)[keyof typeof Refusal];
