// The exact bytes the ERP receives for a paid or refunded order, and their signature
// (shared/API.md, "ERP hand-off" and "After the sale"). Key order is fixed here and nowhere
// else; the signature is an HMAC of these very bytes, so a body must never be re-serialised
// after signing.

import { createHmac } from 'node:crypto';
import type { OutboxEvent, PaidEvent, RefundedEvent, StockEvent } from './outbox-source.js';
import { defaultChannel } from '../domain/index.js';

/** `{"type":"order.paid","eventId","reservationId","sku","buyerId","qty","paidAt","paymentRef","channel"}` as JSON text. */
export function orderPaidBody(e: PaidEvent): string {
  return JSON.stringify({
    type: 'order.paid',
    eventId: e.eventId,
    reservationId: e.reservationId,
    sku: e.sku,
    buyerId: e.buyerId,
    qty: e.qty,
    paidAt: e.paidAt,
    // An absent reference is sent as null, never dropped: the body always has every key.
    paymentRef: e.paymentRef ?? null,
    // v2: the storefront it was sold through; last, so v1 readers see their keys where they were.
    channel: e.channel ?? defaultChannel,
  });
}

/**
 * `{"type":"order.refunded","eventId","reservationId","sku","buyerId","qty","paidAt","paymentRef","channel","refundedAt","restock","reason"}`:
 * the order's own keys in order.paid's order (so one reader parses both), then the refund's.
 * `restock` false means the units left stock (a damaged return); `reason` is null when none was given.
 */
export function orderRefundedBody(e: RefundedEvent): string {
  return JSON.stringify({
    type: 'order.refunded',
    eventId: e.eventId,
    reservationId: e.reservationId,
    sku: e.sku,
    buyerId: e.buyerId,
    qty: e.qty,
    paidAt: e.paidAt,
    paymentRef: e.paymentRef ?? null,
    channel: e.channel,
    refundedAt: e.refundedAt,
    restock: e.restock,
    reason: e.reason ?? null,
  });
}

/** `{"type","eventId","sku","dropId","available","onHand","at"}` (shared/API.md "Operators"). */
export function stockEventBody(e: StockEvent): string {
  return JSON.stringify({ type: e.type, eventId: e.eventId, sku: e.sku, dropId: e.dropId, available: e.available, onHand: e.onHand, at: e.at });
}

/** The body of any outbox event. */
export function eventBody(e: OutboxEvent): string {
  if (e.type === 'order.refunded') return orderRefundedBody(e);
  if (e.type === undefined) return orderPaidBody(e);
  return stockEventBody(e);
}

/** The value of header `x-flash-signature`: `sha256=<hex HMAC-SHA256 of the raw body>`. */
export function signatureHeader(secret: string, rawBody: string | Buffer): string {
  return `sha256=${createHmac('sha256', secret).update(rawBody).digest('hex')}`;
}
