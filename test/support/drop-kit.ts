// Helpers for the drop and queue suites (shared/API.md v2 "Drops and fair admission"):
// calls with the caller each route names, polling with large deadlines (never timing at the
// receiver), the seeded order recomputed from a revealed seed exactly as API.md defines it
// (HMAC-SHA256 keyed by the seed bytes over the UTF-8 buyerId, compared as bytes), a
// sliding-window pace check, a chi-square p-value, and a loose reader of per-drop queue
// gauges in /metrics.

import { createHash, createHmac } from 'node:crypto';
import { expect } from 'vitest';
import type { QueueInput } from '../../src/domain/index.js';
import { NO_TOKEN, TOKENS, buyerToken, sleep, type Api, type Reply } from './engine-process.js';

/** A queue as `PUT /v1/drops/{dropId}` takes it: the core's QueueInput, field for field. */
export type QueueBody = QueueInput;

export const HEX64 = /^[0-9a-f]{64}$/;

/** PUT /v1/drops/{dropId}, by the operator unless told otherwise. */
export function putDrop(a: Api, dropId: string, body: unknown, token: string = TOKENS.operator): Promise<Reply> {
  return a.put(`/v1/drops/${encodeURIComponent(dropId)}`, body, token);
}

/** Creates a drop with this queue and asserts 201; returns the drop view. */
export async function createDrop(a: Api, dropId: string, queue: QueueBody): Promise<any> {
  const r = await putDrop(a, dropId, { queue });
  expect(r.status, `creating drop ${dropId}: ${r.text}`).toBe(201);
  return r.body;
}

/** GET /v1/drops/{dropId}: public, sent with no token. */
export function dropView(a: Api, dropId: string): Promise<Reply> {
  return a.get(`/v1/drops/${encodeURIComponent(dropId)}`, NO_TOKEN);
}

/** The drop view, asserting 200. */
export async function getDrop(a: Api, dropId: string): Promise<any> {
  const r = await dropView(a, dropId);
  expect(r.status, `GET drop ${dropId}: ${r.text}`).toBe(200);
  return r.body;
}

/** GET /v1/drops/{dropId}/order: public, sent with no token. */
export function getOrder(a: Api, dropId: string): Promise<Reply> {
  return a.get(`/v1/drops/${encodeURIComponent(dropId)}/order`, NO_TOKEN);
}

/** The buyer joins with its own buyer token (no body buyerId). */
export function joinAsBuyer(a: Api, dropId: string, buyerId: string, claims: Record<string, unknown> = {}): Promise<Reply> {
  return a.post(`/v1/drops/${encodeURIComponent(dropId)}/queue`, {}, buyerToken(buyerId, claims));
}

/** The shop joins for a buyer (body buyerId), with any extra body fields (risk signals). */
export function joinAsShop(a: Api, dropId: string, buyerId: string, extra: Record<string, unknown> = {}): Promise<Reply> {
  return a.post(`/v1/drops/${encodeURIComponent(dropId)}/queue`, { buyerId, ...extra }, TOKENS.shop);
}

/** Joins with the buyer's token and asserts 201; returns the entry. */
export async function joinOk(a: Api, dropId: string, buyerId: string): Promise<any> {
  const r = await joinAsBuyer(a, dropId, buyerId);
  expect(r.status, `${buyerId} joining ${dropId}: ${r.text}`).toBe(201);
  return r.body;
}

/** GET /v1/drops/{dropId}/queue/{buyerId}, by the viewer unless told otherwise. */
export function entryOf(a: Api, dropId: string, buyerId: string, token: string = TOKENS.viewer): Promise<Reply> {
  return a.get(`/v1/drops/${encodeURIComponent(dropId)}/queue/${encodeURIComponent(buyerId)}`, token);
}

/** The entry, asserting 200. */
export async function getEntry(a: Api, dropId: string, buyerId: string, token: string = TOKENS.viewer): Promise<any> {
  const r = await entryOf(a, dropId, buyerId, token);
  expect(r.status, `entry of ${buyerId} in ${dropId}: ${r.text}`).toBe(200);
  return r.body;
}

export { waitFor } from './http-kit.js';

export { inParallel } from './http-kit.js';

export const sha256Hex = (data: string | Buffer): string => createHash('sha256').update(data).digest('hex');

/** The HMAC-SHA256 sort key of a buyer: key = the seed's 32 bytes, message = UTF-8 buyerId. */
export function drawKey(seedHex: string, buyerId: string): Buffer {
  return createHmac('sha256', Buffer.from(seedHex, 'hex')).update(Buffer.from(buyerId, 'utf8')).digest();
}

/** Buyer ids in the order API.md defines for a revealed seed: HMAC keys ascending, compared as bytes. */
export function seededOrder(seedHex: string, buyerIds: readonly string[]): string[] {
  return buyerIds
    .map((b) => ({ b, k: drawKey(seedHex, b) }))
    .sort((x, y) => Buffer.compare(x.k, y.k))
    .map((x) => x.b);
}

/**
 * When the entry was admitted (ms): `admittedAt` (an extension the engine adds), else what
 * `admittedUntil` implies (admitSeconds after admission).
 */
export function admittedAtOf(entry: any, admitSeconds: number): number {
  if (typeof entry.admittedAt === 'number') return entry.admittedAt;
  expect(entry.admittedUntil, `an admitted entry without admittedAt carries admittedUntil: ${JSON.stringify(entry)}`).toBeTypeOf('number');
  return entry.admittedUntil - admitSeconds * 1000;
}

/** The largest number of instants in any half-open window [t, t + widthMs). */
export function maxInWindow(times: readonly number[], widthMs: number): { count: number; from: number } {
  const sorted = [...times].sort((x, y) => x - y);
  let best = { count: 0, from: Number.NaN };
  let hi = 0;
  for (let lo = 0; lo < sorted.length; lo++) {
    if (hi < lo) hi = lo;
    while (hi < sorted.length && sorted[hi]! < sorted[lo]! + widthMs) hi++;
    if (hi - lo > best.count) best = { count: hi - lo, from: sorted[lo]! };
  }
  return best;
}

// --- chi-square -------------------------------------------------------------------------

function lnGamma(z: number): number {
  // Lanczos approximation (g = 7, n = 9), accurate to ~1e-15 for z > 0.
  const c = [0.99999999999980993, 676.5203681218851, -1259.1392167224028, 771.32342877765313, -176.61502916214059,
    12.507343278686905, -0.13857109526572012, 9.9843695780195716e-6, 1.5056327351493116e-7];
  if (z < 0.5) return Math.log(Math.PI / Math.sin(Math.PI * z)) - lnGamma(1 - z);
  const x = z - 1;
  let sum = c[0]!;
  for (let i = 1; i < 9; i++) sum += c[i]! / (x + i);
  const t = x + 7.5;
  return 0.5 * Math.log(2 * Math.PI) + (x + 0.5) * Math.log(t) - t + Math.log(sum);
}

/** Regularized upper incomplete gamma Q(s, x) (Numerical Recipes: series below s + 1, continued fraction above). */
function gammaQ(s: number, x: number): number {
  if (x <= 0) return 1;
  const lnPre = -x + s * Math.log(x) - lnGamma(s);
  if (x < s + 1) {
    let term = 1 / s;
    let sum = term;
    for (let n = 1; n < 1000; n++) {
      term *= x / (s + n);
      sum += term;
      if (Math.abs(term) < Math.abs(sum) * 1e-15) break;
    }
    return 1 - sum * Math.exp(lnPre);
  }
  const tiny = 1e-300;
  let b = x + 1 - s;
  let c = 1 / tiny;
  let d = 1 / b;
  let h = d;
  for (let i = 1; i < 1000; i++) {
    const an = -i * (i - s);
    b += 2;
    d = an * d + b;
    if (Math.abs(d) < tiny) d = tiny;
    c = b + an / c;
    if (Math.abs(c) < tiny) c = tiny;
    d = 1 / d;
    const delta = d * c;
    h *= delta;
    if (Math.abs(delta - 1) < 1e-15) break;
  }
  return Math.exp(lnPre) * h;
}

/** P(X >= statistic) for X chi-square distributed with `df` degrees of freedom. */
export function chiSquarePValue(statistic: number, df: number): number {
  return gammaQ(df / 2, statistic / 2);
}

// --- /metrics ---------------------------------------------------------------------------

/**
 * The value of a per-drop queue gauge for `kind` ("waiting" or "admitted"), read loosely
 * because API.md names no metric: a sample whose name mentions a drop or a queue, with a
 * label whose value is the drop id, and `kind` in its name or as a label value (for
 * example `flash_queue_entries{drop="d1",state="waiting"} 3` or
 * `flash_drop_waiting{dropId="d1"} 3`). Adjust DROP_GAUGE_NAME if the engine's names differ.
 */
export const DROP_GAUGE_NAME = /^flash_\w*(drop|queue)\w*$/;

export function dropGauge(text: string, dropId: string, kind: 'waiting' | 'admitted'): number | undefined {
  for (const line of text.split('\n')) {
    if (line.startsWith('#') || line.trim() === '') continue;
    const m = /^([a-zA-Z_:][a-zA-Z0-9_:]*)(\{(.*)\})?\s+(\S+)/.exec(line);
    if (m === null || !DROP_GAUGE_NAME.test(m[1]!)) continue;
    const values: string[] = [];
    for (const pair of (m[3] ?? '').matchAll(/([a-zA-Z_][a-zA-Z0-9_]*)="((?:[^"\\]|\\.)*)"/g)) values.push(pair[2]!);
    if (!values.includes(dropId)) continue;
    if (!m[1]!.includes(kind) && !values.includes(kind)) continue;
    return Number(m[4]);
  }
  return undefined;
}
