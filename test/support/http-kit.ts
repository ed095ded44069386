// Shared assertions and small builders for the HTTP suites: the one error shape of
// shared/API.md, unique names so tests never collide on one engine, and a Prometheus
// text reader for gauges.

import { expect } from 'vitest';
import { ADMIN_TOKEN, sleep, type Api, type Reply } from './engine-process.js';

let counter = 0;
/** A SKU-safe name unique within this test process. */
export function uniq(prefix: string): string {
  counter++;
  return `${prefix}-${process.pid.toString(36)}-${counter.toString(36)}`;
}

/** Asserts the exact status and the `{"error":{"code","message"}}` body, nothing else. */
export function expectError(reply: { status: number; body: any; text?: string }, status: number, code: string): void {
  const context = `answer was ${reply.status} ${reply.text ?? JSON.stringify(reply.body)}`;
  expect(reply.status, context).toBe(status);
  expect(reply.body, context).toBeTypeOf('object');
  expect(Object.keys(reply.body ?? {}), context).toEqual(['error']);
  expect(Object.keys(reply.body.error).sort(), context).toEqual(['code', 'message']);
  expect(reply.body.error.code, context).toBe(code);
  expect(reply.body.error.message, context).toBeTypeOf('string');
  expect(reply.body.error.message.length, context).toBeGreaterThan(0);
}

export interface SkuPolicy {
  stock?: number;
  mode?: 'pre_deduct' | 'on_order' | 'on_payment';
  holdSeconds?: number;
  maxPerBuyer?: number;
  startsAt?: number;
  endsAt?: number;
  dropId?: string | null;
  lowStockThreshold?: number;
  minAccountAgeSeconds?: number;
  minPastOrders?: number;
}

export async function createSku(a: Api, sku: string, policy: SkuPolicy): Promise<any> {
  const r = await a.put(`/v1/skus/${sku}`, policy, ADMIN_TOKEN);
  expect(r.status, `creating ${sku}: ${r.text}`).toBe(201);
  return r.body;
}

export async function getSku(a: Api, sku: string): Promise<any> {
  const r = await a.get(`/v1/skus/${encodeURIComponent(sku)}`);
  expect(r.status, `GET sku ${sku}: ${r.text}`).toBe(200);
  return r.body;
}

export function reserve(a: Api, body: Record<string, unknown>, headers?: Record<string, string>): Promise<Reply> {
  return headers === undefined ? a.post('/v1/reservations', body) : a.raw('POST', '/v1/reservations', { body: JSON.stringify(body), headers });
}

/** Reserves and asserts 201; returns the reservation. */
export async function reserveOk(a: Api, body: Record<string, unknown>): Promise<any> {
  const r = await reserve(a, body);
  expect(r.status, `reserve ${JSON.stringify(body)}: ${r.text}`).toBe(201);
  return r.body;
}

/** The refund columns of an ERP reconciliation (GET /v1/admin/erp) where nothing was refunded. */
export const noRefundUnits = { refundedUnits: 0, refundsDeliveredUnits: 0, refundsUndeliveredUnits: 0, refundsUndeliveredOrders: 0, refundsNotQueuedUnits: 0 } as const;

/** The counters of a SKU view, plus the API.md identity they must satisfy. */
export function expectCounters(view: any, want: { onHand: number; reserved: number; sold: number }): void {
  expect({ onHand: view.onHand, reserved: view.reserved, sold: view.sold, available: view.available }).toEqual({
    ...want,
    available: want.onHand - want.reserved - want.sold,
  });
}

/** Value of one sample of a Prometheus text exposition, or undefined. */
export function metricValue(text: string, name: string, labels: Record<string, string> = {}): number | undefined {
  for (const line of text.split('\n')) {
    if (line.startsWith('#') || !line.startsWith(name)) continue;
    const m = /^([a-zA-Z_:][a-zA-Z0-9_:]*)(\{(.*)\})?\s+(\S+)/.exec(line);
    if (m === null || m[1] !== name) continue;
    const got: Record<string, string> = {};
    for (const pair of (m[3] ?? '').matchAll(/([a-zA-Z_][a-zA-Z0-9_]*)="((?:[^"\\]|\\.)*)"/g)) got[pair[1]!] = pair[2]!;
    if (Object.entries(labels).every(([k, v]) => got[k] === v)) return Number(m[4]);
  }
  return undefined;
}

/**
 * A unique name for which `accept(name)` holds (e.g. "routes to shard 1"). Names carry a
 * random suffix: sequential suffixes can keep a weak hash on one side forever.
 */
export function uniqWhere(prefix: string, accept: (name: string) => boolean): string {
  for (let attempt = 0; attempt < 10_000; attempt++) {
    const name = `${uniq(prefix)}-${Math.random().toString(36).slice(2, 8)}`;
    if (accept(name)) return name;
  }
  throw new Error(`no name with prefix ${prefix} satisfied the condition in 10,000 attempts`);
}

/** Runs `fn` over `items` with at most `n` at a time; results in item order. */
export async function inParallel<T, R>(items: readonly T[], n: number, fn: (item: T, i: number) => Promise<R>): Promise<R[]> {
  const out: R[] = new Array(items.length);
  let next = 0;
  const worker = async (): Promise<void> => {
    while (next < items.length) {
      const i = next++;
      out[i] = await fn(items[i] as T, i);
    }
  };
  await Promise.all(Array.from({ length: Math.min(n, items.length) }, worker));
  return out;
}

/** Polls `probe` until `done` holds; fails with the last value after `timeoutMs`. */
export async function waitFor<T>(what: string, probe: () => Promise<T>, done: (v: T) => boolean, timeoutMs = 60_000, everyMs = 25): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const v = await probe();
    if (done(v)) return v;
    if (Date.now() > deadline) throw new Error(`timed out after ${timeoutMs} ms waiting until ${what}; last: ${JSON.stringify(v)}`);
    await sleep(everyMs);
  }
}
