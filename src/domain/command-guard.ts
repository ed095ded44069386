// The core's own check of command fields, with the limits of fields.ts (the same table the
// gateway validates client input with). Gateways validate first; this is the last line for
// any other sender (a NATS client, a replayed old log, a bug), so that a malformed command
// is refused with invalid_request before it can touch state.

import type { Command } from './commands.js';
import {
  Limits, buyerIdError, channelNameError, intError, leadingBomError, nameError, reserveLimits, skuPolicyError, textError,
} from './fields.js';
import { nonceLength } from './routing.js';
import { queueInputError } from './apply-drop.js';

const noncePattern = /^[0-9a-z]*$/;

const optional = (value: unknown, check: (v: unknown) => string | null): string | null => (value === undefined ? null : check(value));
const idError = (id: unknown): string | null => (typeof id === 'string' && id.length <= 64 ? null : 'id must be a string of at most 64 characters');

// Each check returns its message or null; `??` runs the next only while none failed (and,
// unlike a helper taking the messages as arguments, allocates nothing per command).
function reserveError(c: Extract<Command, { t: 'res.reserve' }>): string | null {
  return nameError(c.sku, 'sku')
    ?? buyerIdError(c.buyerId)
    ?? reserveLimits.qty(c.qty)
    ?? (typeof c.nonce === 'string' && noncePattern.test(c.nonce) && c.nonce.length <= nonceLength ? null : `nonce must be 0..${nonceLength} characters of [0-9a-z]`)
    ?? optional(c.idemKey, reserveLimits.idempotencyKey)
    ?? optional(c.accountCreatedAtMs, reserveLimits.accountCreatedAt)
    ?? optional(c.pastOrders, reserveLimits.pastOrders)
    ?? optional(c.channel, channelNameError);
}

const auditError = (c: { actor?: unknown; reason?: unknown }): string | null =>
  optional(c.actor, (v) => textError(v, 'actor', 128)) ?? optional(c.reason, reserveLimits.reason);

/** The first problem with a command's fields, or null when it is well formed. */
export function commandError(c: Command): string | null {
  if (typeof c !== 'object' || c === null || typeof c.t !== 'string') return 'a command is a map with a string t';
  switch (c.t) {
    case 'res.reserve':
      return reserveError(c);
    case 'sku.upsert':
      return nameError(c.sku, 'sku') ?? skuPolicyError(c as unknown as Record<string, unknown>) ?? auditError(c);
    case 'sku.adjust':
      return nameError(c.sku, 'sku') ?? intError(c.delta, 'delta', -Limits.stockMax, Limits.stockMax) ?? (c.delta === 0 ? 'delta must be a non-zero integer' : null)
        ?? auditError(c);
    case 'sku.audit':
      return nameError(c.sku, 'sku') ?? optional(c.cursor, (v) => intError(v, 'cursor', 0, Number.MAX_SAFE_INTEGER)) ?? intError(c.limit, 'limit', 1, 1000);
    case 'sku.list':
      return optional(c.after, (v) => (typeof v === 'string' && v.length <= Limits.skuLengthMax ? null : 'after must be a sku name')) ?? intError(c.limit, 'limit', 1, 1000);
    case 'sku.link':
      return nameError(c.sku, 'sku') ?? nameError(c.dropId, 'dropId');
    case 'res.pay':
      return idError(c.id) ?? (c.paymentRef === null ? null : optional(c.paymentRef, reserveLimits.paymentRef));
    case 'res.refund':
      return idError(c.id) ?? (typeof c.restock === 'boolean' ? null : 'restock must be a boolean') ?? optional(c.reason, reserveLimits.reason) ?? auditError(c);
    case 'res.cancel':
    case 'res.get':
      return idError(c.id) ?? optional(c.buyerId, buyerIdError);
    case 'sku.get':
      return typeof c.sku === 'string' ? null : 'sku must be a string';
    case 'res.expire':
    case 'erp.reconcile':
      return null;
    case 'erp.pending':
      return intError(c.afterSeq, 'afterSeq', 0, Number.MAX_SAFE_INTEGER)
        ?? intError(c.max, 'max', 1, 10_000)
        ?? (c.refunds === undefined || typeof c.refunds === 'boolean' ? null : 'refunds must be a boolean');
    case 'erp.ack':
      return intError(c.upToSeq, 'upToSeq', 0, Number.MAX_SAFE_INTEGER);
    case 'erp.mode':
      return typeof c.enabled === 'boolean' && (c.events === undefined || typeof c.events === 'boolean') ? null : 'enabled (and events) must be booleans';
    case 'ev.pending':
      return intError(c.afterSeq, 'afterSeq', 0, Number.MAX_SAFE_INTEGER) ?? intError(c.max, 'max', 1, 10_000);
    case 'ev.ack':
      return intError(c.upToSeq, 'upToSeq', 0, Number.MAX_SAFE_INTEGER);
    case 'drop.put':
      return nameError(c.dropId, 'dropId') ?? queueInputError(c.queue)
        ?? (typeof c.seed === 'string' && typeof c.secret === 'string' ? null : 'seed and secret must be hex strings');
    case 'drop.get':
      return nameError(c.dropId, 'dropId');
    case 'q.join':
      return nameError(c.dropId, 'dropId') ?? buyerIdError(c.buyerId)
        ?? optional(c.accountCreatedAtMs, reserveLimits.accountCreatedAt)
        ?? optional(c.pastOrders, reserveLimits.pastOrders)
        ?? optional(c.channel, channelNameError);
    case 'q.entry':
      return nameError(c.dropId, 'dropId') ?? buyerIdError(c.buyerId);
    case 'drop.order':
      return nameError(c.dropId, 'dropId') ?? intError(c.offset, 'offset', 0, Number.MAX_SAFE_INTEGER) ?? intError(c.limit, 'limit', 1, Number.MAX_SAFE_INTEGER);
    default:
      return `unknown command ${(c as { t: unknown }).t as string}`;
  }
}

/**
 * Rules a command must pass to be applied (and logged) from now on that a log written by an
 * earlier version may break. A replay checks commandError but not these: a rule added to
 * commandError would stop recovery at a record an earlier version accepted and acknowledged
 * (found by review), so commandError may never get stricter; a new rule goes here.
 */
export function newCommandError(c: Command): string | null {
  return leadingBomError((c as { reason?: unknown }).reason, 'reason');
}
