// Stock events to a webhook (shared/API.md "Operators"), over a real engine and the slow,
// flaky stand-in the ERP tests use (bench/erp-standin.ts, in its own process): sku.low_stock,
// sku.sold_out and sku.restocked at each crossing whatever the cause, none at creation, each
// delivered with its exact body, signed (the stand-in refuses a bad signature), with a stable
// idempotency key, through 503s, slow answers and dropped connections, and across a kill -9,
// without holding back the ERP's orders (their own log and deliverer).

import { afterAll, describe, expect, it } from 'vitest';
import { api, makeDataDir, sleep, startEngine, stopAllEngines } from './support/engine-process.js';
import { startStandInProcess, type StandInProcess } from './support/erp-standin-process.js';
import { createSku, reserveOk, uniq } from './support/http-kit.js';

const SECRET = 'events-webhook-secret-0123456789';
const standIns: StandInProcess[] = [];

afterAll(async () => {
  await stopAllEngines();
  for (const s of standIns) await s.close();
});

async function standIn(errorRate: number): Promise<StandInProcess> {
  const s = await startStandInProcess({ secret: SECRET, latencyMs: 15, jitterMs: 15, errorRate, seed: 7 });
  standIns.push(s);
  return s;
}

/** What the stand-in accepted, by eventId, with each body parsed. */
async function accepted(s: StandInProcess): Promise<Map<string, { count: number; body: Record<string, unknown> }>> {
  const raw = await s.deliveries();
  return new Map([...raw].map(([id, d]) => [id, { count: d.count, body: JSON.parse(d.body as unknown as string) as Record<string, unknown> }]));
}

/** Waits (generously: the machine may be busy) until the stand-in accepted every id. */
async function delivered(s: StandInProcess, ids: string[]): Promise<void> {
  for (let i = 0; i < 600; i++) {
    if ((await s.missing(ids)).length === 0) return;
    await sleep(100);
  }
  throw new Error(`never delivered: ${(await s.missing(ids)).join(', ')}`);
}

const env = (url: string, extra: Record<string, string> = {}): Record<string, string> => ({
  FLASH_EVENTS_WEBHOOK_URL: url, FLASH_EVENTS_SECRET: SECRET, FLASH_BUYER_RPS: '0',
  FLASH_ERP_RETRY_BASE_MS: '20', FLASH_ERP_RETRY_MAX_MS: '300', FLASH_ERP_POLL_MS: '50', ...extra,
});

describe('stock events to a webhook', () => {
  it('delivers each crossing once accepted, with its exact body and a stable key, through a flaky receiver', async () => {
    const s = await standIn(0.3);
    const engine = await startEngine({ env: env(s.url) });
    const a = api(engine.url);
    const sku = uniq('ev-tee');
    await createSku(a, sku, { stock: 3, lowStockThreshold: 1, maxPerBuyer: 0 });
    const quiet = uniq('ev-quiet');
    await createSku(a, quiet, { stock: 0 }); // created at 0: no event
    await reserveOk(a, { sku, buyerId: 'e1', qty: 2 }); // 3 -> 1: low_stock
    const last = await reserveOk(a, { sku, buyerId: 'e2', qty: 1 }); // 1 -> 0: sold_out
    expect((await a.post(`/v1/reservations/${last.reservationId}/cancel`, {})).status).toBe(200); // 0 -> 1: restocked
    expect((await a.post(`/v1/skus/${sku}/stock`, { delta: 4 })).status).toBe(200); // 1 -> 5: nothing crosses
    // The shard's own ids: <type>:<shard>.<seq>, seq consecutive from 1 on this fresh engine.
    const byId = async () => accepted(s);
    let all = await byId();
    for (let i = 0; i < 600 && [...all.values()].filter((d) => (d.body as { sku: string }).sku === sku).length < 3; i++) {
      await sleep(100);
      all = await byId();
    }
    const mine = [...all.entries()].filter(([, d]) => (d.body as { sku: string }).sku === sku).map(([id, d]) => ({ id, ...d }));
    expect(mine.map((d) => (d.body as { type: string }).type).sort()).toEqual(['sku.low_stock', 'sku.restocked', 'sku.sold_out']);
    const low = mine.find((d) => (d.body as { type: string }).type === 'sku.low_stock')!;
    expect(low.body).toMatchObject({ type: 'sku.low_stock', eventId: low.id, sku, dropId: null, available: 1, onHand: 3 });
    expect(Object.keys(low.body as object)).toEqual(['type', 'eventId', 'sku', 'dropId', 'available', 'onHand', 'at']);
    expect(mine.find((d) => (d.body as { type: string }).type === 'sku.sold_out')!.body).toMatchObject({ available: 0, onHand: 3 });
    expect(mine.find((d) => (d.body as { type: string }).type === 'sku.restocked')!.body).toMatchObject({ available: 1, onHand: 3 });
    for (const d of mine) expect(d.id).toMatch(/^sku\.(low_stock|sold_out|restocked):\d+\.\d+$/);
    expect([...all.values()].filter((d) => (d.body as { sku: string }).sku === quiet)).toEqual([]);
    // The stand-in failed some calls: they were retried until accepted.
    // More crossings, so that the receiver surely fails some calls (it fails 30%): each is
    // retried until accepted, under its own id.
    const more = Array.from({ length: 10 }, () => uniq('ev-more'));
    for (const m of more) {
      await createSku(a, m, { stock: 1 });
      const r = await reserveOk(a, { sku: m, buyerId: 'm', qty: 1 }); // sold_out
      expect((await a.post(`/v1/reservations/${r.reservationId}/cancel`, {})).status).toBe(200); // restocked
    }
    let extra: string[] = [];
    for (let i = 0; i < 600 && extra.length < 20; i++) {
      extra = [...(await accepted(s)).entries()].filter(([, d]) => more.includes(d.body.sku as string)).map(([id]) => id);
      if (extra.length < 20) await sleep(100);
    }
    expect(extra).toHaveLength(20);
    expect(Object.values((await s.stats()).failuresInjected).reduce((x, y) => x + y, 0)).toBeGreaterThan(0);
    expect((await s.stats()).badSignatures).toBe(0);
    // The ERP report shows the stock events deliverer beside the (absent) ERP's.
    const report = await a.get('/v1/admin/erp');
    expect(report.body.deliverer.eventsWebhook.deliveredTotal, report.text).toBeGreaterThanOrEqual(23);
  }, 120_000);

  it('loses no stock event across kill -9: what the shard recorded is delivered after the restart, under the same id', async () => {
    const s = await standIn(0);
    // Far slower than the crossings: most events are still in the log at the kill.
    await fetch(`${s.url}/faults`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify({ latencyMs: 400, jitterMs: 0 }) });
    const dataDir = makeDataDir();
    const first = await startEngine({ dataDir, env: env(s.url, { FLASH_ERP_MAX_RPS: '5', FLASH_ERP_CONCURRENCY: '1' }) });
    const a = api(first.url);
    const skus = Array.from({ length: 6 }, () => uniq('ev-kill'));
    for (const sku of skus) await createSku(a, sku, { stock: 1 });
    for (const sku of skus) await reserveOk(a, { sku, buyerId: 'k', qty: 1 }); // each 1 -> 0: sold_out
    await first.kill9();
    await fetch(`${s.url}/faults`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify({ latencyMs: 5, jitterMs: 0 }) });
    await startEngine({ dataDir, env: env(s.url) });
    let ours: string[] = [];
    for (let i = 0; i < 600 && ours.length < skus.length; i++) {
      ours = [...(await accepted(s)).entries()].filter(([, d]) => skus.includes((d.body as { sku: string }).sku)).map(([id]) => id);
      if (ours.length < skus.length) await sleep(100);
    }
    await delivered(s, ours);
    expect(ours).toHaveLength(skus.length); // one sold_out per SKU: none lost, none made twice under another id
    const deliveries = await accepted(s);
    for (const id of ours) expect((deliveries.get(id)!.body as { type: string }).type).toBe('sku.sold_out');
  }, 120_000);
});
