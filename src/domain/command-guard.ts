// The core's own check of command fields. Gateways validate client input first; this is
// the last line for any other sender (a NATS client, a replayed old log, a bug), so that
// a malformed command is refused with invalid_request before it can touch state.

import { Limits, modes } from './codes.js';
import type { Command } from './commands.js';
import { nonceLength } from './routing.js';


function count(n: unknown, min: number, max: number): boolean {
  return typeof n === 'number' && Number.isInteger(n) && n >= min && n <= max;
}

function text(v: unknown, max: number): boolean {
  return typeof v === 'string' && v.length >= 1 && v.length <= max;
}

const timeMsMax = 8_640_000_000_000_000;

/** The first problem with a command's fields, or null when it is well formed. */
export function commandError(c: Command): string | null {
  switch (c.t) {
    case 'res.reserve':
      if (!text(c.sku, 64) || !text(c.buyerId, 512)) return 'sku and buyerId must be non-empty strings';
      if (!count(c.qty, 1, Limits.qtyMax)) return `qty must be an integer in 1..${Limits.qtyMax}`;
      if (typeof c.nonce !== 'string' || !/^[0-9a-z]*$/.test(c.nonce) || c.nonce.length > nonceLength) return `nonce must be 0..${nonceLength} characters of [0-9a-z]`;
      if (c.idemKey !== undefined && !text(c.idemKey, 512)) return 'idemKey must be a non-empty string';
      if (c.accountCreatedAtMs !== undefined && !count(c.accountCreatedAtMs, 0, timeMsMax)) return 'accountCreatedAtMs must be a time';
      if (c.pastOrders !== undefined && !count(c.pastOrders, 0, Number.MAX_SAFE_INTEGER)) return 'pastOrders must be a count';
      return null;
    case 'sku.upsert':
      if (!text(c.sku, 64)) return 'sku must be a non-empty string';
      if (c.stock !== undefined && !count(c.stock, 0, Limits.stockMax)) return `stock must be an integer in 0..${Limits.stockMax}`;
      if (c.mode !== undefined && !modes.includes(c.mode)) return `mode must be one of ${modes.join(', ')}`;
      if (c.holdSeconds !== undefined && !count(c.holdSeconds, 1, Limits.holdSecondsMax)) return 'holdSeconds out of range';
      if (c.maxPerBuyer !== undefined && !count(c.maxPerBuyer, 0, Limits.maxPerBuyerMax)) return 'maxPerBuyer out of range';
      if (c.startsAtMs !== undefined && !count(c.startsAtMs, 0, timeMsMax)) return 'startsAt out of range';
      if (c.endsAtMs !== undefined && !count(c.endsAtMs, 0, timeMsMax)) return 'endsAt out of range';
      if (c.lowStockThreshold !== undefined && !count(c.lowStockThreshold, 0, Limits.stockMax)) return 'lowStockThreshold out of range';
      if (c.minAccountAgeSeconds !== undefined && !count(c.minAccountAgeSeconds, 0, 10 * 365 * 86_400)) return 'minAccountAgeSeconds out of range';
      if (c.minPastOrders !== undefined && !count(c.minPastOrders, 0, Limits.maxPerBuyerMax)) return 'minPastOrders out of range';
      if (c.dropId !== undefined && c.dropId !== null && !text(c.dropId, 64)) return 'dropId must be a non-empty string or null';
      return null;
    case 'sku.adjust':
      return text(c.sku, 64) && count(c.delta, -Limits.stockMax, Limits.stockMax) && c.delta !== 0 ? null : 'delta must be a non-zero integer';
    case 'sku.link':
      return text(c.sku, 64) && text(c.dropId, 64) ? null : 'sku and dropId must be non-empty strings';
    case 'res.pay':
      if (c.paymentRef !== undefined && c.paymentRef !== null && !text(c.paymentRef, 512)) return 'paymentRef must be a non-empty string';
      return typeof c.id === 'string' ? null : 'id must be a string';
    case 'res.cancel':
    case 'res.get':
      return typeof c.id === 'string' ? null : 'id must be a string';
    case 'sku.get':
      return typeof c.sku === 'string' ? null : 'sku must be a string';
    case 'res.expire':
    case 'erp.reconcile':
      return null;
    case 'erp.pending':
      return count(c.afterSeq, 0, Number.MAX_SAFE_INTEGER) && count(c.max, 1, 10_000) ? null : 'afterSeq must be a count and max in 1..10000';
    case 'erp.ack':
      return count(c.upToSeq, 0, Number.MAX_SAFE_INTEGER) ? null : 'upToSeq must be a count';
    default:
      return `unknown command ${(c as { t: unknown }).t as string}`;
  }
}
