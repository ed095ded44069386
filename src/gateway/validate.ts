// Turns untrusted request bodies and path segments into typed commands, or into a 400
// whose message names the field, with the limits of the domain's one field table
// (src/domain/fields.ts). It reads only the fields it knows, by own-property access, so
// `__proto__` or `constructor` keys can never reach a prototype.

import {
  nameError, reserveLimits, buyerIdError, skuFields, windowError, intError, Limits, queueInputError,
  type Command, type QueueInput, type SkuPolicyInput,
} from '../domain/index.js';

export class InvalidRequest extends Error {
  constructor(readonly field: string, message: string) {
    super(message);
  }
}

type Body = Record<string, unknown>;
type Reserve = Extract<Command, { t: 'res.reserve' }>;

export function asObject(value: unknown): Body {
  if (value === null || typeof value !== 'object' || Array.isArray(value)) {
    throw new InvalidRequest('body', 'body must be a JSON object');
  }
  return value as Body;
}

export function field(body: Body, name: string): unknown {
  return Object.prototype.hasOwnProperty.call(body, name) ? body[name] : undefined;
}

/** Throws the check's message as a 400 naming `name`. */
function ensure(error: string | null, name: string): void {
  if (error !== null) throw new InvalidRequest(name, error);
}

export function skuName(value: unknown, name = 'sku'): string {
  ensure(nameError(value, name), name);
  return value as string;
}

/** Who a reserve is for, as the caller's token says (shared/API.md "Callers"). */
export interface ReserveIdentity {
  /** A buyer token's `sub`: the reserve is for it (body buyerId optional). null: the body names the buyer. */
  buyerId: string | null;
  channel: string | null;
  /** Signed risk signals of a buyer token; null: the body's fields are the signals (shop, admin). */
  signals: { accountCreatedAtMs?: number; pastOrders?: number } | null;
}

export function reserveCommand(body: Body, nonce: string, who: ReserveIdentity): Reserve {
  const sku = skuName(field(body, 'sku'));
  const buyerId = who.buyerId ?? field(body, 'buyerId');
  ensure(buyerIdError(buyerId), 'buyerId');
  const qtyRaw = field(body, 'qty');
  if (qtyRaw !== undefined) ensure(reserveLimits.qty(qtyRaw), 'qty');
  const cmd: Reserve = { t: 'res.reserve', sku, buyerId: buyerId as string, qty: (qtyRaw as number | undefined) ?? 1, nonce };
  const key = field(body, 'idempotencyKey');
  if (key !== undefined) {
    ensure(reserveLimits.idempotencyKey(key), 'idempotencyKey');
    cmd.idemKey = key as string;
  }
  if (who.signals === null) {
    const created = field(body, 'accountCreatedAt');
    if (created !== undefined) {
      ensure(reserveLimits.accountCreatedAt(created), 'accountCreatedAt');
      cmd.accountCreatedAtMs = created as number;
    }
    const pastOrders = field(body, 'pastOrders');
    if (pastOrders !== undefined) {
      ensure(reserveLimits.pastOrders(pastOrders), 'pastOrders');
      cmd.pastOrders = pastOrders as number;
    }
  } else {
    // Signed claims only: a buyer cannot vouch for itself by adding body fields.
    if (who.signals.accountCreatedAtMs !== undefined) cmd.accountCreatedAtMs = who.signals.accountCreatedAtMs;
    if (who.signals.pastOrders !== undefined) cmd.pastOrders = who.signals.pastOrders;
  }
  if (who.channel !== null) cmd.channel = who.channel;
  return cmd;
}

export function payCommand(body: Body, id: string): Extract<Command, { t: 'res.pay' }> {
  const ref = field(body, 'paymentRef');
  const cmd: Extract<Command, { t: 'res.pay' }> = { t: 'res.pay', id };
  if (ref !== undefined && ref !== null) {
    ensure(reserveLimits.paymentRef(ref), 'paymentRef');
    cmd.paymentRef = ref as string;
  }
  return cmd;
}

/** `{"restock": true, "reason": "optional"}`: restock is true when absent; reason is kept on the reservation and in the ERP event. */
export function refundCommand(body: Body, id: string, actor?: string): Extract<Command, { t: 'res.refund' }> {
  const restock = field(body, 'restock');
  if (restock !== undefined && typeof restock !== 'boolean') throw new InvalidRequest('restock', 'restock must be true or false');
  const cmd: Extract<Command, { t: 'res.refund' }> = { t: 'res.refund', id, restock: restock ?? true };
  if (actor !== undefined) cmd.actor = actor;
  const why = reason(body);
  if (why !== undefined) cmd.reason = why;
  return cmd;
}

/** The optional `reason` of an operator's change (kept for the audit trail) or of a refund. */
export function reason(body: Body): string | undefined {
  const r = field(body, 'reason');
  if (r === undefined || r === null) return undefined;
  ensure(reserveLimits.reason(r), 'reason');
  return r as string;
}

/** `actor`: the caller token's name, for the SKU's audit trail (a stock import sets it when it applies). */
export function upsertCommand(body: Body, sku: string, actor?: string): Extract<Command, { t: 'sku.upsert' }> {
  const cmd: Record<string, unknown> = { t: 'sku.upsert', sku };
  for (const f of skuFields) {
    const wire = field(body, f.wire);
    if (wire === undefined) continue;
    const value = f.fromWire === undefined ? wire : f.fromWire(wire);
    if (typeof value === 'string' && f.fromWire !== undefined) throw new InvalidRequest(f.wire, value);
    ensure(f.check(value), f.wire);
    cmd[f.key] = value;
  }
  const policy = cmd as SkuPolicyInput;
  if (policy.startsAtMs !== undefined && policy.endsAtMs !== undefined) ensure(windowError(policy.startsAtMs, policy.endsAtMs), 'endsAt');
  const why = reason(body);
  if (why !== undefined) cmd.reason = why;
  if (actor !== undefined) cmd.actor = actor;
  return cmd as unknown as Extract<Command, { t: 'sku.upsert' }>;
}

/** `actor`: the caller token's name, for the SKU's audit trail. */
export function adjustCommand(body: Body, sku: string, actor: string): Extract<Command, { t: 'sku.adjust' }> {
  const delta = field(body, 'delta');
  ensure(intError(delta, 'delta', -Limits.stockMax, Limits.stockMax), 'delta');
  if (delta === 0) throw new InvalidRequest('delta', 'delta must be a non-zero integer');
  const cmd: Extract<Command, { t: 'sku.adjust' }> = { t: 'sku.adjust', sku, delta: delta as number, actor };
  const why = reason(body);
  if (why !== undefined) cmd.reason = why;
  return cmd;
}

/** `?cursor=&limit=` of a listing: limit 1..1000 (default 100); the cursor as the listing wrote it. */
export function pageQuery(url: string): { cursor: string | null; limit: number } {
  const query = new URLSearchParams(url.split('?')[1] ?? '');
  const raw = query.get('limit');
  let limit = 100;
  // An empty `limit=` is absent, as an empty `cursor=` is (the routes are written `?cursor=&limit=`).
  if (raw !== null && raw !== '') {
    limit = Number(raw);
    if (!/^\d+$/.test(raw) || limit < 1 || limit > 1000) throw new InvalidRequest('limit', 'limit must be an integer in 1..1000');
  }
  const cursor = query.get('cursor');
  return { cursor: cursor === null || cursor === '' ? null : cursor, limit };
}

const queueFields = ['mode', 'opensAt', 'randomizeSeconds', 'admitPerSecond', 'admitSeconds', 'closesAt', 'qtyPerWinner'] as const;

/**
 * `PUT /v1/drops/{dropId}`: `{"queue": {...} | null}`. Unknown queue fields are ignored, as
 * API.md says of every body's unknown fields (they were refused before, which broke a client
 * sending a field of a later version); only the queue fields are copied, so `__proto__` and
 * `constructor` never reach the command.
 */
export function dropPutCommand(body: Body, dropId: string, seed: string, secret: string): Extract<Command, { t: 'drop.put' }> {
  const cmd: Extract<Command, { t: 'drop.put' }> = { t: 'drop.put', dropId: skuName(dropId, 'dropId'), seed, secret };
  const raw = field(body, 'queue');
  if (raw === undefined) return cmd;
  if (raw === null) {
    cmd.queue = null;
    return cmd;
  }
  if (typeof raw !== 'object' || Array.isArray(raw)) throw new InvalidRequest('queue', 'queue must be an object or null');
  const q: Record<string, unknown> = {};
  for (const name of queueFields) {
    if (Object.hasOwn(raw, name)) q[name] = (raw as Record<string, unknown>)[name];
  }
  ensure(queueInputError(q as QueueInput), 'queue');
  cmd.queue = q as QueueInput;
  return cmd;
}

/** `POST /v1/drops/{dropId}/queue`: the buyer (a buyer token's sub, else the body's buyerId) and its risk signals. */
export function joinCommand(body: Body, dropId: string, who: ReserveIdentity): Extract<Command, { t: 'q.join' }> {
  const buyerId = who.buyerId ?? field(body, 'buyerId');
  ensure(buyerIdError(buyerId), 'buyerId');
  const cmd: Extract<Command, { t: 'q.join' }> = { t: 'q.join', dropId: skuName(dropId, 'dropId'), buyerId: buyerId as string };
  const signals = who.signals ?? {
    accountCreatedAtMs: field(body, 'accountCreatedAt') as number | undefined,
    pastOrders: field(body, 'pastOrders') as number | undefined,
  };
  if (signals.accountCreatedAtMs !== undefined) {
    ensure(reserveLimits.accountCreatedAt(signals.accountCreatedAtMs), 'accountCreatedAt');
    cmd.accountCreatedAtMs = signals.accountCreatedAtMs;
  }
  if (signals.pastOrders !== undefined) {
    ensure(reserveLimits.pastOrders(signals.pastOrders), 'pastOrders');
    cmd.pastOrders = signals.pastOrders;
  }
  if (who.channel !== null) cmd.channel = who.channel;
  return cmd;
}
