// The one table of command fields and their limits. The gateway's validation of request
// bodies, the core's guard of commands, the stock import's columns and the command line
// tool all read it, so a limit is written once and a new SKU field is one row here.
// Checks return the message naming the field (or null); callers decide what a bad value means.

import { modes, type Mode } from './codes.js';

/**
 * Bytes (as UTF-8) of a page of a listing or of a published order, after which the page ends
 * (with at least one item): an answer must fit in one NATS message (1 MiB by default), and a
 * gateway sends such reads alone, one per message (nats-transport.ts).
 */
export const pageBytesMax = 384 * 1024;

/** The length of `s` in UTF-8 (as Buffer.byteLength counts it), without encoding it. */
export function utf8Length(s: string): number {
  let n = s.length;
  for (let i = 0; i < s.length; i++) {
    const c = s.charCodeAt(i);
    if (c < 0x80) continue;
    if (c < 0x800) n += 1;
    else if (c >= 0xd800 && c <= 0xdbff && i + 1 < s.length && (s.charCodeAt(i + 1) & 0xfc00) === 0xdc00) {
      n += 2; // a surrogate pair: 4 bytes for its two units
      i++;
    } else n += 2; // 3 bytes (a lone surrogate too: it is written as U+FFFD)
  }
  return n;
}

/** Upper bounds on numbers and lengths; units are in the names where there is one. */
export const Limits = {
  stockMax: 1_000_000_000,
  qtyMax: 1000,
  holdSecondsMax: 86_400,
  maxPerBuyerMax: 1_000_000,
  skuLengthMax: 64,
  buyerIdLengthMax: 128,
  idempotencyKeyLengthMax: 128,
  paymentRefLengthMax: 128,
  reasonLengthMax: 200,
  channelNameLengthMax: 32,
  /** Channels named in one SKU's policy. */
  channelsPerSkuMax: 64,
  /** Channels one SKU counts units for (named in its policy or not). */
  channelsCountedPerSkuMax: 256,
  /** Epoch milliseconds: the largest time a JavaScript Date can hold. */
  timeMsMax: 8_640_000_000_000_000,
  minAccountAgeSecondsMax: 10 * 365 * 86_400,
  minPastOrdersMax: 1_000_000,
  pastOrdersMax: 1_000_000_000,
} as const;

/** The channel of a reservation whose caller names none. */
export const defaultChannel = 'default';

const skuNamePattern = /^[A-Za-z0-9._:-]{1,64}$/;
const channelNamePattern = /^[a-z0-9_-]{1,32}$/;
/** Control (Cc), format (Cf) and lone surrogates (Cs) are refused in ids and free text. */
const unprintable = /[\p{Cc}\p{Cf}\p{Cs}]/u;

export function missing(name: string): string {
  return `${name} is required`;
}

/** A SKU or drop name: 1..64 characters of [A-Za-z0-9._:-]. */
export function nameError(value: unknown, name: string): string | null {
  if (value === undefined) return missing(name);
  return typeof value === 'string' && skuNamePattern.test(value) ? null : `${name} must be 1..64 characters of [A-Za-z0-9._:-]`;
}

/** A channel name: 1..32 characters of [a-z0-9_-]. */
export function channelNameError(value: unknown, name = 'channel'): string | null {
  if (value === undefined) return missing(name);
  return typeof value === 'string' && channelNamePattern.test(value) ? null : `${name} must be 1..32 characters of [a-z0-9_-]`;
}

/** Printable text (ids, keys, references): 1..lengthMax code points, no Cc, Cf or Cs. */
export function textError(value: unknown, name: string, lengthMax: number): string | null {
  if (value === undefined) return missing(name);
  if (typeof value !== 'string') return `${name} must be a string`;
  // Code points, not UTF-16 units; only counted when the cheap bound says it matters.
  const length = value.length <= lengthMax ? value.length : [...value].length;
  if (length < 1 || length > lengthMax) return `${name} must be 1..${lengthMax} characters`;
  if (unprintable.test(value)) return `${name} must not contain control or format characters`;
  return null;
}

/** Controls other than tab and line breaks, and lone surrogates: what free text may not hold. */
const unwritable = /[\u0000-\u0008\u000b\u000c\u000e-\u001f\u007f-\u009f\p{Cs}]/u;

/**
 * Free text a person wrote (a refund's or a change's reason): 1..lengthMax code points,
 * anything but control characters (tab and line breaks allowed) and lone surrogates (and, in
 * a new command, a leading byte order mark: leadingBomError). Format characters stay: a
 * zero-width joiner in an emoji or a Persian word is part of the text.
 */
export function freeTextError(value: unknown, name: string, lengthMax: number): string | null {
  if (value === undefined) return missing(name);
  if (typeof value !== 'string') return `${name} must be a string`;
  const length = value.length <= lengthMax ? value.length : [...value].length;
  if (length < 1 || length > lengthMax) return `${name} must be 1..${lengthMax} characters`;
  if (unwritable.test(value)) return `${name} must not contain control characters or lone surrogates`;
  return null;
}

/**
 * Free text may not begin with a byte order mark: the log's decoder (msgpackr, through
 * TextDecoder for strings over 64 bytes) drops one, so such a text would replay as another
 * (found by review). A rule for new commands only (see newCommandError): logs written before
 * it hold such texts, and short ones replay as written.
 */
export function leadingBomError(value: unknown, name: string): string | null {
  return typeof value === 'string' && value.charCodeAt(0) === 0xfeff ? `${name} must not begin with a byte order mark (U+FEFF)` : null;
}

export function intError(value: unknown, name: string, min: number, max: number): string | null {
  if (value === undefined) return missing(name);
  if (typeof value !== 'number' || !Number.isInteger(value) || value < min || value > max) {
    return `${name} must be an integer in ${min}..${max}`;
  }
  return null;
}

export const buyerIdError = (v: unknown, name = 'buyerId'): string | null => textError(v, name, Limits.buyerIdLengthMax);
export const timeError = (v: unknown, name: string): string | null => intError(v, name, 0, Limits.timeMsMax);

/** A SKU's channel policy in a command: [name, maxUnits or null for no cap], in order. */
export type ChannelCaps = [name: string, maxUnits: number | null][];

/** A channel policy in command form: unique valid names, each cap a stock count or null. */
export function channelCapsError(value: unknown, name = 'channels'): string | null {
  if (value === null) return null;
  if (!Array.isArray(value)) return `${name} must be a list of [name, maxUnits] pairs or null`;
  if (value.length < 1 || value.length > Limits.channelsPerSkuMax) return `${name} must name 1..${Limits.channelsPerSkuMax} channels, or be null`;
  const seen = new Set<string>();
  for (const pair of value as unknown[]) {
    if (!Array.isArray(pair) || pair.length !== 2) return `${name} must be a list of [name, maxUnits] pairs`;
    const [channel, cap] = pair as [unknown, unknown];
    const bad = channelNameError(channel, `${name} name`);
    if (bad !== null) return bad;
    if (seen.has(channel as string)) return `${name} names ${channel as string} twice`;
    seen.add(channel as string);
    if (cap !== null && intError(cap, 'maxUnits', 0, Limits.stockMax) !== null) return `${name}.${channel as string}.maxUnits must be an integer in 0..${Limits.stockMax} or null`;
  }
  return null;
}

/**
 * The wire form of a channel policy, `{"<name>": {"maxUnits": n}, ...}` or null, turned into
 * the command form. Names are read as own keys, so `__proto__` is just a name.
 */
export function channelCapsFromWire(value: unknown, name = 'channels'): ChannelCaps | null | string {
  if (value === null) return null;
  if (typeof value !== 'object' || Array.isArray(value)) return `${name} must be an object like {"web": {"maxUnits": 100}}, or null`;
  const caps: ChannelCaps = [];
  for (const channel of Object.keys(value)) {
    const bad = channelNameError(channel, `${name} name ${JSON.stringify(channel).slice(0, 40)}`);
    if (bad !== null) return bad;
    const entry = (value as Record<string, unknown>)[channel];
    if (entry === null || typeof entry !== 'object' || Array.isArray(entry)) return `${name}.${channel} must be an object like {"maxUnits": 100}`;
    const cap = Object.prototype.hasOwnProperty.call(entry, 'maxUnits') ? (entry as Record<string, unknown>).maxUnits : undefined;
    if (cap !== undefined && cap !== null && intError(cap, 'maxUnits', 0, Limits.stockMax) !== null) {
      return `${name}.${channel}.maxUnits must be an integer in 0..${Limits.stockMax}, or absent for no cap`;
    }
    caps.push([channel, cap === undefined || cap === null ? null : (cap as number)]);
  }
  return channelCapsError(caps, name) ?? caps;
}

/** The policy fields of a SKU, as commands carry them (times in ms, channels as pairs). */
export interface SkuPolicyInput {
  mode?: Mode;
  holdSeconds?: number;
  maxPerBuyer?: number;
  startsAtMs?: number;
  endsAtMs?: number;
  /** null or absent: no drop. Immutable once the SKU exists. */
  dropId?: string | null;
  lowStockThreshold?: number;
  /** Risk rules: 0 = off. A reserve without the signal is refused when the rule is on. */
  minAccountAgeSeconds?: number;
  minPastOrders?: number;
  /** null: any channel may reserve. Replaces the whole policy on update. */
  channels?: ChannelCaps | null;
}

/** One field of PUT /v1/skus/{sku}: its name on the wire, in the command, and its check. */
export interface SkuField {
  wire: string;
  key: keyof SkuPolicyInput | 'stock';
  /** Checks the command form; the message names the wire field. */
  check(value: unknown): string | null;
  /** The wire form turned into the command form (or a message naming the field). */
  fromWire?(value: unknown): unknown;
  /** As a column of the stock import's CSV: a number, text, or not importable (JSON imports take the same names). */
  csv: 'int' | 'text' | null;
  /** What the field means, for the README and the CLI's help. */
  doc: string;
}

const modeError = (v: unknown): string | null =>
  typeof v === 'string' && (modes as readonly string[]).includes(v) ? null : `mode must be one of ${modes.join(', ')}`;

export const skuFields: readonly SkuField[] = [
  { wire: 'stock', key: 'stock', check: (v) => intError(v, 'stock', 0, Limits.stockMax), csv: 'int', doc: 'on-hand units; used on create only' },
  { wire: 'mode', key: 'mode', check: modeError, csv: 'text', doc: 'pre_deduct (default), on_order or on_payment' },
  { wire: 'holdSeconds', key: 'holdSeconds', check: (v) => intError(v, 'holdSeconds', 1, Limits.holdSecondsMax), csv: 'int', doc: 'hold time of a reservation (default 600)' },
  { wire: 'maxPerBuyer', key: 'maxPerBuyer', check: (v) => intError(v, 'maxPerBuyer', 0, Limits.maxPerBuyerMax), csv: 'int', doc: 'units one buyer may hold and buy (0 = no limit)' },
  { wire: 'dropId', key: 'dropId', check: (v) => (v === null ? null : nameError(v, 'dropId')), csv: 'text', doc: 'the drop whose per-buyer quota the SKU shares; fixed once set' },
  { wire: 'startsAt', key: 'startsAtMs', check: (v) => timeError(v, 'startsAt'), csv: 'int', doc: 'sale window start, epoch ms (0 = open)' },
  { wire: 'endsAt', key: 'endsAtMs', check: (v) => timeError(v, 'endsAt'), csv: 'int', doc: 'sale window end, epoch ms (0 = open)' },
  { wire: 'lowStockThreshold', key: 'lowStockThreshold', check: (v) => intError(v, 'lowStockThreshold', 0, Limits.stockMax), csv: 'int', doc: 'available units at which low stock is signalled (0 = off)' },
  { wire: 'minAccountAgeSeconds', key: 'minAccountAgeSeconds', check: (v) => intError(v, 'minAccountAgeSeconds', 0, Limits.minAccountAgeSecondsMax), csv: 'int', doc: 'risk rule: youngest account that may reserve (0 = off)' },
  { wire: 'minPastOrders', key: 'minPastOrders', check: (v) => intError(v, 'minPastOrders', 0, Limits.minPastOrdersMax), csv: 'int', doc: 'risk rule: fewest past orders a buyer needs (0 = off)' },
  { wire: 'channels', key: 'channels', check: (v) => channelCapsError(v), fromWire: (v) => channelCapsFromWire(v), csv: null, doc: 'storefronts that may reserve, each with an optional maxUnits' },
];

/** Rules across fields of one policy (applied to the merged policy on update, too). */
export function windowError(startsAtMs: number, endsAtMs: number): string | null {
  if (startsAtMs > 0 && endsAtMs > 0 && endsAtMs <= startsAtMs) return 'endsAt must be after startsAt';
  return null;
}

/** The first problem with the fields of a sku.upsert command, or null. */
export function skuPolicyError(c: Record<string, unknown>): string | null {
  for (const f of skuFields) {
    const v = c[f.key];
    if (v === undefined) continue;
    const bad = f.check(v);
    if (bad !== null) return bad;
  }
  const starts = c.startsAtMs;
  const ends = c.endsAtMs;
  return typeof starts === 'number' && typeof ends === 'number' ? windowError(starts, ends) : null;
}

/** The fields of a reserve (the caller's signals are body fields only for shop and admin callers). */
export const reserveLimits = {
  idempotencyKey: (v: unknown): string | null => textError(v, 'idempotencyKey', Limits.idempotencyKeyLengthMax),
  qty: (v: unknown): string | null => intError(v, 'qty', 1, Limits.qtyMax),
  accountCreatedAt: (v: unknown): string | null => timeError(v, 'accountCreatedAt'),
  pastOrders: (v: unknown): string | null => intError(v, 'pastOrders', 0, Limits.pastOrdersMax),
  paymentRef: (v: unknown): string | null => textError(v, 'paymentRef', Limits.paymentRefLengthMax),
  reason: (v: unknown): string | null => freeTextError(v, 'reason', Limits.reasonLengthMax),
} as const;
