// GET /v1/admin/erp: the ERP hand-off at a glance, through a real engine delivering to a
// flaky ERP stand-in. Per SKU, sold must equal delivered + undelivered + not queued units,
// where delivered counts only what the ERP accepted (never an order paid with no ERP set,
// or before it was set); the backlog drains to zero; the deliverer's last error and its
// sender-side figures are visible. Who may read it (shared/API.md v2): admin, operator and
// viewer ("ERP status" is a read); shop, payments and buyers get 403; a call without a
// valid token gets 401.

import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { ADMIN_TOKEN, NO_TOKEN, TOKENS, api, buyerToken, makeDataDir, sleep, startEngine, stopAllEngines, type Api } from './support/engine-process.js';
import { expectError, noRefundUnits } from './support/http-kit.js';
import { startStandInProcess, type StandInProcess } from './support/erp-standin-process.js';

const secret = 'admin-erp-test-secret-0123';
let erp: StandInProcess;
let a: Api;

beforeAll(async () => {
  erp = await startStandInProcess({ secret, latencyMs: 5, jitterMs: 2, errorRate: 0.3, seed: 7 });
  const engine = await startEngine({
    env: {
      FLASH_ERP_WEBHOOK_URL: erp.url, FLASH_ERP_SECRET: secret, FLASH_ERP_POLL_MS: '20',
      FLASH_ERP_RETRY_BASE_MS: '10', FLASH_ERP_RETRY_MAX_MS: '200', FLASH_BUYER_RPS: '0',
    },
  });
  a = api(engine.url);
});

afterAll(async () => {
  await stopAllEngines();
  await erp?.close();
});

/** The report as an operations dashboard reads it: with a viewer token. */
async function report(): Promise<any> {
  const r = await a.get('/v1/admin/erp', TOKENS.viewer);
  expect(r.status).toBe(200);
  return r.body;
}

describe('GET /v1/admin/erp', () => {
  it('is a read for admin, operator and viewer; shop, payments and buyers get 403, a call without a valid token 401', async () => {
    // v1 allowed only the admin token; v2 opens ERP status to every reading role.
    for (const [who, token] of [['admin', ADMIN_TOKEN], ['operator', TOKENS.operator], ['viewer', TOKENS.viewer]] as const) {
      const r = await a.get('/v1/admin/erp', token);
      expect(r.status, `${who}: ${r.text}`).toBe(200);
      expect(r.body, who).toMatchObject({ complete: true, totals: expect.any(Object), shards: expect.any(Array), skus: expect.any(Array) });
    }
    for (const [who, token] of [['shop', TOKENS.shop], ['shop on channel web', TOKENS.shopWeb], ['payments', TOKENS.payments], ['a buyer', buyerToken('erp-curious')]] as const) {
      const r = await a.get('/v1/admin/erp', token);
      expect(r.status, `${who}: ${r.text}`).toBe(403);
      expectError(r, 403, 'forbidden');
    }
    for (const [who, token] of [['no token', NO_TOKEN], ['an unknown token', 'wrong-token-123'], ['an expired buyer token', buyerToken('erp-curious', { exp: 1 })]] as const) {
      const r = await a.get('/v1/admin/erp', token);
      expectError(r, 401, 'unauthorized');
      expect(r.headers.get('www-authenticate'), who).toMatch(/^Bearer\b/);
    }
  });

  it('reconciles sold against delivered per SKU, and the backlog drains to zero', async () => {
    for (const sku of ['erp-a', 'erp-b']) {
      expect((await a.put(`/v1/skus/${sku}`, { stock: 100 }, ADMIN_TOKEN)).status).toBe(201);
    }
    const paid: Record<string, number> = { 'erp-a': 0, 'erp-b': 0 };
    for (let i = 0; i < 30; i++) {
      const sku = i % 3 === 0 ? 'erp-b' : 'erp-a';
      const r = await a.post('/v1/reservations', { sku, buyerId: `buyer-${i}`, qty: 2 });
      expect(r.status).toBe(201);
      if (i % 5 === 4) continue; // left held: never delivered
      expect((await a.post(`/v1/reservations/${r.body.reservationId}/pay`, { paymentRef: `pay-${i}` })).status).toBe(200);
      paid[sku]! += 2;
    }
    let body = await report();
    for (let i = 0; i < 200 && body.totals.undeliveredOrders > 0; i++) {
      await sleep(50);
      body = await report();
    }
    expect(body.complete).toBe(true);
    expect(body.shardsAnswered).toBe(true);
    expect(body.totals).toEqual({ sold: 48, deliveredUnits: 48, undeliveredUnits: 0, undeliveredOrders: 0, notQueuedUnits: 0, uncountedUnits: 0, ...noRefundUnits });
    const rows = Object.fromEntries(body.skus.map((r: any) => [r.sku, r]));
    for (const sku of ['erp-a', 'erp-b']) {
      expect(rows[sku]).toEqual({ sku, sold: paid[sku], deliveredUnits: paid[sku], undeliveredUnits: 0, undeliveredOrders: 0, notQueuedUnits: 0, uncountedUnits: 0, ...noRefundUnits });
    }
    expect(body.shards.every((s: any) => s.backlogOrders === 0 && s.outboxEnabled === true)).toBe(true);
    expect(body.deliverer.deliveredTotal).toBe(24);
    // The caps as promised, at the sender (what the ERP saw is not asserted: arrivals bunch).
    expect(body.deliverer.maxStartsPerSecond).toBeLessThanOrEqual(body.deliverer.maxRps);
    expect(body.deliverer.maxCallsInFlight).toBeLessThanOrEqual(body.deliverer.concurrency);
    // With 30% injected failures some calls failed and were retried; the last one is shown.
    const seen = await erp.stats();
    if (seen.received > seen.accepted) expect(body.deliverer.lastError).not.toBeNull();
    expect(seen.uniqueEvents).toBe(24);
  });

  it('never reports as delivered what the ERP did not get: orders paid with no ERP set, or before it was set', async () => {
    const dataDir = makeDataDir();
    const env = { FLASH_BUYER_RPS: '0' };
    const plain = await startEngine({ dataDir, env });
    const p = api(plain.url);
    expect((await p.put('/v1/skus/erp-none', { stock: 10 }, ADMIN_TOKEN)).status).toBe(201);
    const r = await p.post('/v1/reservations', { sku: 'erp-none', buyerId: 'early', qty: 1 });
    expect((await p.post(`/v1/reservations/${r.body.reservationId}/pay`, {})).status).toBe(200);
    const none = (await p.get('/v1/admin/erp', TOKENS.viewer)).body;
    // It used to say deliveredUnits: 1, complete: true.
    expect(none.totals).toEqual({ sold: 1, deliveredUnits: 0, undeliveredUnits: 0, undeliveredOrders: 0, notQueuedUnits: 1, uncountedUnits: 0, ...noRefundUnits });
    expect(none.complete).toBe(false);
    expect(none.shardsAnswered).toBe(true);
    expect(none.deliverer).toBeNull();
    expect(await plain.stop()).toBe(0);

    // The same data with an ERP set: the early order is still not delivered, and not claimed.
    const withErp = await startEngine({
      dataDir, env: { ...env, FLASH_ERP_WEBHOOK_URL: erp.url, FLASH_ERP_SECRET: secret, FLASH_ERP_POLL_MS: '20', FLASH_ERP_RETRY_BASE_MS: '10', FLASH_ERP_RETRY_MAX_MS: '200' },
    });
    const w = api(withErp.url);
    const r2 = await w.post('/v1/reservations', { sku: 'erp-none', buyerId: 'later', qty: 2 });
    expect((await w.post(`/v1/reservations/${r2.body.reservationId}/pay`, {})).status).toBe(200);
    let body = (await w.get('/v1/admin/erp', TOKENS.viewer)).body;
    for (let i = 0; i < 200 && body.totals.undeliveredOrders > 0; i++) {
      await sleep(50);
      body = (await w.get('/v1/admin/erp', TOKENS.viewer)).body;
    }
    const row = body.skus.find((x: any) => x.sku === 'erp-none');
    expect(row).toEqual({ sku: 'erp-none', sold: 3, deliveredUnits: 2, undeliveredUnits: 0, undeliveredOrders: 0, notQueuedUnits: 1, uncountedUnits: 0, ...noRefundUnits });
    expect(body.complete).toBe(false);
    const delivered = await erp.deliveries();
    expect(delivered.has(`order.paid:${r2.body.reservationId}`)).toBe(true);
    expect(delivered.has(`order.paid:${r.body.reservationId}`)).toBe(false);
  });
});
