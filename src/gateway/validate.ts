// Turns untrusted request bodies and path segments into typed commands, or into a 400
// whose message names the field. It reads only the fields it knows, by own-property
// access, so `__proto__` or `constructor` keys can never reach a prototype.

import { Limits, modes, type Command, type Mode, type SkuPolicyInput } from '../domain/index.js';

export class InvalidRequest extends Error {
  constructor(readonly field: string, message: string) {
    super(message);
  }
}

const skuPattern = /^[A-Za-z0-9._:-]{1,64}$/;
// Control (Cc), format (Cf) and lone surrogates (Cs) are refused in ids.
const unprintable = /[\p{Cc}\p{Cf}\p{Cs}]/u;
const timeMsMax = 8_640_000_000_000_000;

type Body = Record<string, unknown>;

export function asObject(value: unknown): Body {
  if (value === null || typeof value !== 'object' || Array.isArray(value)) {
    throw new InvalidRequest('body', 'body must be a JSON object');
  }
  return value as Body;
}

function field(body: Body, name: string): unknown {
  return Object.prototype.hasOwnProperty.call(body, name) ? body[name] : undefined;
}

function required(value: unknown, name: string): void {
  if (value === undefined) throw new InvalidRequest(name, `${name} is required`);
}

export function skuName(value: unknown, name = 'sku'): string {
  required(value, name);
  if (typeof value !== 'string' || !skuPattern.test(value)) {
    throw new InvalidRequest(name, `${name} must be 1..64 characters of [A-Za-z0-9._:-]`);
  }
  return value;
}

function printable(value: unknown, name: string, lengthMax: number): string {
  required(value, name);
  if (typeof value !== 'string') throw new InvalidRequest(name, `${name} must be a string`);
  // Code points, not UTF-16 units; only counted when the cheap bound says it matters.
  const length = value.length <= lengthMax ? value.length : [...value].length;
  if (length < 1 || length > lengthMax) throw new InvalidRequest(name, `${name} must be 1..${lengthMax} characters`);
  if (unprintable.test(value)) throw new InvalidRequest(name, `${name} must not contain control or format characters`);
  return value;
}

function integer(value: unknown, name: string, min: number, max: number): number {
  required(value, name);
  if (typeof value !== 'number' || !Number.isInteger(value) || value < min || value > max) {
    throw new InvalidRequest(name, `${name} must be an integer in ${min}..${max}`);
  }
  return value;
}

function optionalInteger(body: Body, name: string, min: number, max: number): number | undefined {
  const v = field(body, name);
  return v === undefined ? undefined : integer(v, name, min, max);
}

export function reserveCommand(body: Body, nonce: string): Extract<Command, { t: 'res.reserve' }> {
  const sku = skuName(field(body, 'sku'));
  const buyerId = printable(field(body, 'buyerId'), 'buyerId', 128);
  const qty = optionalInteger(body, 'qty', 1, Limits.qtyMax) ?? 1;
  const cmd: Extract<Command, { t: 'res.reserve' }> = { t: 'res.reserve', sku, buyerId, qty, nonce };
  const key = field(body, 'idempotencyKey');
  if (key !== undefined) cmd.idemKey = printable(key, 'idempotencyKey', Limits.idempotencyKeyLengthMax);
  const created = optionalInteger(body, 'accountCreatedAt', 0, timeMsMax);
  if (created !== undefined) cmd.accountCreatedAtMs = created;
  const pastOrders = optionalInteger(body, 'pastOrders', 0, 1_000_000_000);
  if (pastOrders !== undefined) cmd.pastOrders = pastOrders;
  return cmd;
}

export function payCommand(body: Body, id: string): Extract<Command, { t: 'res.pay' }> {
  const ref = field(body, 'paymentRef');
  const cmd: Extract<Command, { t: 'res.pay' }> = { t: 'res.pay', id };
  if (ref !== undefined && ref !== null) cmd.paymentRef = printable(ref, 'paymentRef', Limits.paymentRefLengthMax);
  return cmd;
}

function mode(value: unknown): Mode {
  if (typeof value !== 'string' || !(modes as readonly string[]).includes(value)) {
    throw new InvalidRequest('mode', `mode must be one of ${modes.join(', ')}`);
  }
  return value as Mode;
}

export function upsertCommand(body: Body, sku: string): Extract<Command, { t: 'sku.upsert' }> {
  const policy: SkuPolicyInput = {};
  const m = field(body, 'mode');
  if (m !== undefined) policy.mode = mode(m);
  const hold = optionalInteger(body, 'holdSeconds', 1, Limits.holdSecondsMax);
  if (hold !== undefined) policy.holdSeconds = hold;
  const max = optionalInteger(body, 'maxPerBuyer', 0, Limits.maxPerBuyerMax);
  if (max !== undefined) policy.maxPerBuyer = max;
  const starts = optionalInteger(body, 'startsAt', 0, timeMsMax);
  if (starts !== undefined) policy.startsAtMs = starts;
  const ends = optionalInteger(body, 'endsAt', 0, timeMsMax);
  if (ends !== undefined) policy.endsAtMs = ends;
  if (starts !== undefined && ends !== undefined && starts > 0 && ends > 0 && ends <= starts) {
    throw new InvalidRequest('endsAt', 'endsAt must be after startsAt');
  }
  const low = optionalInteger(body, 'lowStockThreshold', 0, Limits.stockMax);
  if (low !== undefined) policy.lowStockThreshold = low;
  const age = optionalInteger(body, 'minAccountAgeSeconds', 0, 10 * 365 * 86_400);
  if (age !== undefined) policy.minAccountAgeSeconds = age;
  const orders = optionalInteger(body, 'minPastOrders', 0, 1_000_000);
  if (orders !== undefined) policy.minPastOrders = orders;
  const drop = field(body, 'dropId');
  if (drop !== undefined) policy.dropId = drop === null ? null : skuName(drop, 'dropId');
  const stock = optionalInteger(body, 'stock', 0, Limits.stockMax);
  return { t: 'sku.upsert', sku, ...(stock === undefined ? {} : { stock }), ...policy };
}

export function adjustCommand(body: Body, sku: string): Extract<Command, { t: 'sku.adjust' }> {
  const delta = integer(field(body, 'delta'), 'delta', -Limits.stockMax, Limits.stockMax);
  if (delta === 0) throw new InvalidRequest('delta', 'delta must be a non-zero integer');
  return { t: 'sku.adjust', sku, delta };
}
