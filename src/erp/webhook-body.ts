// The exact bytes the ERP receives for a paid order, and their signature (shared/API.md,
// "ERP hand-off"). Key order is fixed here and nowhere else; the signature is an HMAC of
// these very bytes, so the body must never be re-serialised after signing.

import { createHmac } from 'node:crypto';
import type { PaidEvent } from './outbox-source.js';
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

/** The value of header `x-flash-signature`: `sha256=<hex HMAC-SHA256 of the raw body>`. */
export function signatureHeader(secret: string, rawBody: string | Buffer): string {
  return `sha256=${createHmac('sha256', secret).update(rawBody).digest('hex')}`;
}
