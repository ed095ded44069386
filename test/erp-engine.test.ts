// The ERP hand-off end to end: the built engine as its own process, driven over HTTP, with
// the stand-in ERP (bench/erp-standin.ts) as another process and a real PostgreSQL.
// Exactly the paid reservations reach the ERP (signed, with their own eventId, at most the
// configured pace and concurrency as the deliverer started them: the caps are promised at
// the sender, so that is where they are checked; what the ERP saw is printed); a kill -9 mid-delivery and a
// restart lose nothing and repeat only with the same eventId and the same bytes; the
// PostgreSQL sink ends with one row per paid order; and the admin stock import applies a
// good CSV and refuses a bad one naming its lines, applying nothing.
// Callers as in a real shop (shared/API.md v2): the shop's backend reserves and cancels
// (some orders through the shop token of channel "web"), the payment side pays, an admin
// creates SKUs; the ERP event carries the order's channel.

import pg from 'pg';
import { afterAll, describe, expect, it } from 'vitest';
import { shardForSku } from '../src/domain/routing.js';
import {
  ADMIN_TOKEN, NO_TOKEN, TOKENS, api, buyerToken, makeDataDir, sleep, startEngine, stopAllEngines, type Api, type Engine,
} from './support/engine-process.js';
import { startStandInProcess, type StandInProcess } from './support/erp-standin-process.js';
import { createSku, expectError, getSku, inParallel, metricValue, waitFor, reserveOk, uniq, uniqWhere } from './support/http-kit.js';

const SECRET = 'e2e-erp-secret-0123456789abcdef';
const SHARDS = 2;
const pgUrl = process.env.FLASH_TEST_PG_URL ?? 'postgres://postgres@127.0.0.1:5432/test';

const standIns: StandInProcess[] = [];
afterAll(async () => {
  await stopAllEngines();
  await Promise.all(standIns.map((s) => s.close()));
});

async function standIn(opts: { latencyMs: number; jitterMs: number; errorRate: number; seed: number }): Promise<StandInProcess> {
  const s = await startStandInProcess({ secret: SECRET, ...opts });
  standIns.push(s);
  return s;
}



/** Two SKU names, one owned by each shard, so that both shards' outboxes are drained. */
function skusOnEveryShard(prefix: string): string[] {
  return Array.from({ length: SHARDS }, (_, shard) => uniqWhere(prefix, (name) => shardForSku(name, null, SHARDS) === shard));
}

interface PaidOrder {
  reservationId: string;
  sku: string;
  buyerId: string;
  qty: number;
  paidAt: number;
  paymentRef: string;
  /** The reservation's channel: its shop token's, else "default". */
  channel: string;
}

/** Reserves and pays `count` orders spread over `skus`, with varied qty; returns what the engine answered. */
async function payOrders(a: Api, skus: readonly string[], count: number, tag: string): Promise<PaidOrder[]> {
  return inParallel(Array.from({ length: count }, (_, i) => i), 16, async (i) => {
    const sku = skus[i % skus.length] as string;
    const buyerId = `buyer-${tag}-${i}`;
    const qty = 1 + (i % 3);
    // One order in four comes through the web storefront's shop token (channel "web").
    const [shopToken, channel] = i % 4 === 3 ? [TOKENS.shopWeb, 'web'] : [TOKENS.shop, 'default'];
    const reserved = await a.post('/v1/reservations', { sku, buyerId, qty, idempotencyKey: `k-${tag}-${i}` }, shopToken);
    expect(reserved.status, `reserve ${buyerId}: ${reserved.text}`).toBe(201);
    const r = reserved.body;
    expect(r.channel, `reserve ${buyerId}: ${reserved.text}`).toBe(channel);
    const paymentRef = `pay-${tag}-${i}`;
    const p = await a.post(`/v1/reservations/${r.reservationId}/pay`, { paymentRef }, TOKENS.payments);
    expect(p.status, `pay ${r.reservationId}: ${p.text}`).toBe(200);
    expect(p.body.status).toBe('paid');
    expect(typeof p.body.paidAt).toBe('number');
    return { reservationId: r.reservationId as string, sku, buyerId, qty, paidAt: p.body.paidAt as number, paymentRef, channel };
  });
}

/** Reserves `count` holds (not paid); returns their ids. */
async function holdOrders(a: Api, skus: readonly string[], count: number, tag: string): Promise<string[]> {
  return inParallel(Array.from({ length: count }, (_, i) => i), 16, async (i) => {
    const r = await reserveOk(a, { sku: skus[i % skus.length], buyerId: `buyer-${tag}-${i}`, qty: 1 });
    return r.reservationId as string;
  });
}

/** The exact body shared/API.md promises for a paid order (v2 adds `channel`). */
function expectedBody(o: PaidOrder): Record<string, unknown> {
  return {
    type: 'order.paid', eventId: `order.paid:${o.reservationId}`, reservationId: o.reservationId,
    sku: o.sku, buyerId: o.buyerId, qty: o.qty, paidAt: o.paidAt, paymentRef: o.paymentRef, channel: o.channel,
  };
}

async function metrics(e: Engine): Promise<string> {
  const r = await api(e.url).get('/metrics');
  expect(r.status).toBe(200);
  return r.text;
}

/** The deliverer's own figures, from GET /v1/admin/erp: measured at the sender. */
async function delivererOf(e: Engine): Promise<{ maxStartsPerSecond: number; maxCallsInFlight: number; maxRps: number; concurrency: number; firstCallAtMs: number | null; callsStarted: number }> {
  const r = await api(e.url).get('/v1/admin/erp', TOKENS.viewer);
  expect(r.status, r.text).toBe(200);
  return r.body.deliverer;
}

function webhookEnv(s: StandInProcess, extra: Record<string, string>): Record<string, string> {
  return {
    FLASH_ERP_WEBHOOK_URL: s.url, FLASH_ERP_SECRET: SECRET, FLASH_BUYER_RPS: '0',
    FLASH_ERP_RETRY_BASE_MS: '20', FLASH_ERP_RETRY_MAX_MS: '400', ...extra,
  };
}

describe('ERP hand-off through the engine process', () => {
  it('delivers exactly the paid orders, signed, within the rate and concurrency caps, through a slow and flaky ERP', async () => {
    const erp = await standIn({ latencyMs: 20, jitterMs: 5, errorRate: 0.3, seed: 7 });
    const maxRps = 200;
    const concurrency = 8;
    const engine = await startEngine({ env: webhookEnv(erp, { FLASH_ERP_MAX_RPS: String(maxRps), FLASH_ERP_CONCURRENCY: String(concurrency), FLASH_ERP_POLL_MS: '50' }) });
    const a = api(engine.url);
    const skus = skusOnEveryShard('erp-e2e');
    for (const sku of skus) await createSku(a, sku, { stock: 10_000, holdSeconds: 600, maxPerBuyer: 5 });
    const shortSku = uniq('erp-e2e-short');
    await createSku(a, shortSku, { stock: 1000, holdSeconds: 1, maxPerBuyer: 5 });

    // 30 holds that will expire, taken first so that they are due while the rest goes on.
    const expiring = await holdOrders(a, [shortSku], 30, 'exp');
    const startedMs = performance.now();
    const paid = await payOrders(a, skus, 200, 'paid');
    const paidAllMs = performance.now();
    const cancelled = await holdOrders(a, skus, 40, 'cancel');
    await inParallel(cancelled, 16, async (id) => {
      const c = await a.post(`/v1/reservations/${id}/cancel`, {});
      expect(c.status, c.text).toBe(200);
      expect(c.body.status).toBe('cancelled');
    });
    const held = await holdOrders(a, skus, 30, 'held');

    // Things that must not produce (or repeat) an ERP event: paying a paid order again,
    // cancelling a paid one, paying a cancelled one, paying an expired one.
    for (const o of paid.slice(0, 10)) {
      const again = await a.post(`/v1/reservations/${o.reservationId}/pay`, { paymentRef: o.paymentRef });
      expect(again.status, again.text).toBe(200);
      expect(again.body.paidAt).toBe(o.paidAt);
      expectError(await a.post(`/v1/reservations/${o.reservationId}/cancel`, {}), 409, 'already_paid');
    }
    for (const id of cancelled.slice(0, 5)) expectError(await a.post(`/v1/reservations/${id}/pay`, {}), 409, 'reservation_cancelled');
    await waitFor('the 1 s holds have expired', () => a.get(`/v1/reservations/${expiring[expiring.length - 1]}`), (r) => r.body?.status === 'expired', 5000, 100);
    for (const id of expiring) {
      const r = await a.get(`/v1/reservations/${id}`);
      expect(r.body.status, r.text).toBe('expired');
    }
    for (const id of expiring.slice(0, 5)) expectError(await a.post(`/v1/reservations/${id}/pay`, {}), 410, 'reservation_expired');

    const all = await waitFor('the ERP has every paid order', () => erp.stats(), (s) => s.uniqueEvents >= paid.length, 30_000, 20);
    const deliveredAllMs = performance.now();
    // Give the deliverer a few more polls: anything unpaid would show up now.
    await sleep(400);
    const stats = await erp.stats();
    const deliveries = await erp.deliveries();

    const want = new Map(paid.map((o) => [`order.paid:${o.reservationId}`, o]));
    expect([...deliveries.keys()].sort()).toEqual([...want.keys()].sort());
    for (const [eventId, d] of deliveries) {
      const o = want.get(eventId)!;
      expect(JSON.parse(d.body), eventId).toEqual(expectedBody(o));
      // No crash here and injected failures come before the ERP commits: one acceptance each,
      // including the ten orders that were paid twice.
      expect(d.count, `${eventId} accepted ${d.count} times`).toBe(1);
    }
    const unpaid = new Set([...expiring, ...cancelled, ...held].map((id) => `order.paid:${id}`));
    expect([...deliveries.keys()].filter((id) => unpaid.has(id))).toEqual([]);

    expect(stats.badSignatures, `bad signatures (last bad request: ${stats.lastBadRequest})`).toBe(0);
    expect(stats.badRequests, `bad requests (last: ${stats.lastBadRequest})`).toBe(0);
    expect(stats.bodyMismatches).toBe(0);
    expect(stats.duplicates).toBe(0);
    expect(stats.accepted).toBe(paid.length);
    const injected = stats.failuresInjected['500'] + stats.failuresInjected['503'] + stats.failuresInjected.drop;
    expect(injected, 'the ERP failed some calls, so retries were exercised').toBeGreaterThan(20);
    expect(stats.received).toBe(stats.accepted + injected);
    const sender = await delivererOf(engine);
    expect(sender).toMatchObject({ maxRps, concurrency, callsStarted: stats.received });
    expect(sender.maxStartsPerSecond, 'calls started in any 1 s, at the sender').toBeLessThanOrEqual(maxRps);
    expect(sender.maxCallsInFlight, 'calls in flight, at the sender').toBeLessThanOrEqual(concurrency);

    const m = await waitFor('metrics show everything delivered and acknowledged', () => metrics(engine),
      (t) => metricValue(t, 'flash_erp_backlog_events') === 0 && metricValue(t, 'flash_erp_delivered_total') === paid.length, 5000, 50);
    expect(metricValue(m, 'flash_erp_calls_started_total')).toBe(stats.received);
    expect(metricValue(m, 'flash_erp_calls_in_flight')).toBe(0);
    expect(metricValue(m, 'flash_erp_oldest_undelivered_seconds')).toBe(0);

    // The instrument is live: a forged signature is refused and counted.
    const forged = await fetch(erp.url, {
      method: 'POST', body: deliveries.values().next().value!.body,
      headers: { 'content-type': 'application/json', 'x-flash-signature': `sha256=${'0'.repeat(64)}`, 'idempotency-key': 'x' },
    });
    expect(forged.status).toBe(401);
    expect((await erp.stats()).badSignatures).toBe(1);
    expect(await engine.stop(), 'SIGTERM with the hand-off running exits 0').toBe(0);

    const seconds = (deliveredAllMs - startedMs) / 1000;
    console.log(`[erp-e2e] webhook: ${paid.length} paid orders (paying took ${((paidAllMs - startedMs) / 1000).toFixed(2)} s) all delivered ${seconds.toFixed(2)} s after the first pay `
      + `(${(paid.length / seconds).toFixed(0)} orders/s); ERP saw ${all.received} calls, ${injected} injected failures `
      + `(${JSON.stringify(stats.failuresInjected)}); at the sender max ${sender.maxCallsInFlight} in flight (cap ${concurrency}) and `
      + `max ${sender.maxStartsPerSecond} starts in 1 s (cap ${maxRps}); the ERP saw max ${stats.maxConcurrency} in flight and `
      + `max ${stats.maxStartsPerSecond} arrivals in 1 s (information only), 0 duplicates`);
  });

  it('after kill -9 mid-delivery and a restart, delivers every paid order; repeats carry the same eventId and bytes', async () => {
    const erp = await standIn({ latencyMs: 100, jitterMs: 10, errorRate: 0, seed: 11 });
    const env = webhookEnv(erp, { FLASH_ERP_MAX_RPS: '50', FLASH_ERP_CONCURRENCY: '4', FLASH_ERP_POLL_MS: '50' });
    const dataDir = makeDataDir();
    const first = await startEngine({ dataDir, env });
    const a = api(first.url);
    const skus = skusOnEveryShard('erp-crash');
    for (const sku of skus) await createSku(a, sku, { stock: 10_000, holdSeconds: 600, maxPerBuyer: 5 });
    const startedMs = performance.now();
    const paid = await payOrders(a, skus, 300, 'crash');
    const held = await holdOrders(a, skus, 20, 'crash-held');
    const cancelled = await holdOrders(a, skus, 20, 'crash-cancel');
    for (const id of cancelled) expect((await a.post(`/v1/reservations/${id}/cancel`, {})).status).toBe(200);

    const before = await waitFor('about a quarter is delivered', () => erp.stats(), (s) => s.uniqueEvents >= 75, 20_000, 10);
    const firstSender = await delivererOf(first);
    const killMs = performance.now();
    const killedAtMs = Date.now();
    await first.kill9();
    // Calls in flight at the kill are still committed by the ERP (it commits before answering).
    await sleep(250);
    const atCrash = await erp.stats();
    expect(atCrash.uniqueEvents, 'the kill came mid-delivery').toBeLessThan(paid.length);
    expect(atCrash.inFlight).toBe(0);

    const second = await startEngine({ dataDir, env });
    const b = api(second.url);
    const restartedMs = performance.now();
    await waitFor('the ERP has every paid order after the restart', () => erp.stats(), (s) => s.uniqueEvents >= paid.length, 30_000, 20);
    const doneMs = performance.now();
    await sleep(300);
    const stats = await erp.stats();
    const deliveries = await erp.deliveries();

    const want = new Map(paid.map((o) => [`order.paid:${o.reservationId}`, o]));
    expect([...deliveries.keys()].sort()).toEqual([...want.keys()].sort());
    const unpaid = new Set([...held, ...cancelled].map((id) => `order.paid:${id}`));
    expect([...deliveries.keys()].filter((id) => unpaid.has(id))).toEqual([]);
    // Every repeat was accepted by the stand-in, which refuses (400) an idempotency-key that
    // differs from the body's eventId, and counts a repeat whose bytes differ from the first.
    expect(stats.badRequests, `last bad request: ${stats.lastBadRequest}`).toBe(0);
    expect(stats.badSignatures).toBe(0);
    expect(stats.bodyMismatches).toBe(0);
    for (const [eventId, d] of deliveries) expect(JSON.parse(d.body), eventId).toEqual(expectedBody(want.get(eventId)!));
    const repeated = [...deliveries.values()].filter((d) => d.count > 1);
    const duplicates = repeated.reduce((n, d) => n + d.count - 1, 0);
    expect(duplicates).toBe(stats.duplicates);
    // Only events started (or delivered) and not yet acknowledged at the kill may repeat:
    // a handful, never the whole delivered prefix.
    expect(duplicates).toBeLessThan(atCrash.uniqueEvents / 2);
    // The caps at the sender, in each process; and the restarted one began a full rate
    // window after it started (so after the kill), so no second holds calls of both.
    const secondSender = await delivererOf(second);
    for (const s of [firstSender, secondSender]) {
      expect(s.maxStartsPerSecond).toBeLessThanOrEqual(50);
      expect(s.maxCallsInFlight).toBeLessThanOrEqual(4);
    }
    expect(secondSender.firstCallAtMs! - killedAtMs).toBeGreaterThanOrEqual(1000);

    // The paid orders are still paid after the crash, and the new process ends with no backlog,
    // having delivered at least every order the ERP did not have at the kill (not "every one
    // it lacked when a quarter was in": more can be delivered and acknowledged between that
    // look and the kill, which made this bound one too high on a slow CI run).
    for (const o of paid.slice(0, 20)) expect((await b.get(`/v1/reservations/${o.reservationId}`)).body.status).toBe('paid');
    await waitFor('the restarted engine reports no backlog', () => metrics(second),
      (t) => metricValue(t, 'flash_erp_backlog_events') === 0 && (metricValue(t, 'flash_erp_delivered_total') ?? 0) >= paid.length - atCrash.uniqueEvents, 5000, 50);

    const beforeKillS = (killMs - startedMs) / 1000;
    console.log(`[erp-e2e] kill -9: ${before.uniqueEvents}/${paid.length} delivered ${beforeKillS.toFixed(2)} s after the first pay `
      + `(${(before.uniqueEvents / beforeKillS).toFixed(0)} orders/s), ${atCrash.uniqueEvents} at the ERP after the kill; restart to all delivered `
      + `${((doneMs - restartedMs) / 1000).toFixed(2)} s; ${duplicates} duplicate(s) over ${repeated.length} event(s), all with the same eventId and body; `
      + `at the sender max ${secondSender.maxCallsInFlight} in flight and ${secondSender.maxStartsPerSecond} starts in 1 s after the restart `
      + `(${firstSender.maxStartsPerSecond} before); the ERP saw max ${stats.maxConcurrency} in flight, ${stats.maxStartsPerSecond} arrivals in 1 s (information only)`);
  });

  it('into PostgreSQL: after kill -9 mid-delivery and a restart, one row per paid order, equal to it', async () => {
    const table = `erp_e2e_${process.pid}_${Math.floor(Math.random() * 1e9).toString(36)}`;
    const db = new pg.Client({ connectionString: pgUrl, connectionTimeoutMillis: 5000 });
    await db.connect().catch((e: unknown) => {
      throw new Error(`this test needs PostgreSQL at ${pgUrl} (set FLASH_TEST_PG_URL): ${String(e)}`);
    });
    try {
      const count = async (): Promise<number> => {
        try {
          return Number((await db.query<{ n: string }>(`SELECT count(*) AS n FROM ${table}`)).rows[0]!.n);
        } catch (e) {
          if ((e as { code?: string }).code === '42P01') return 0; // not created yet
          throw e;
        }
      };
      const env = {
        FLASH_ERP_PG_URL: pgUrl, FLASH_ERP_PG_TABLE: table, FLASH_ERP_PG_BATCH: '5',
        FLASH_ERP_MAX_RPS: '20', FLASH_ERP_CONCURRENCY: '2', FLASH_ERP_POLL_MS: '50', FLASH_BUYER_RPS: '0',
        FLASH_ERP_RETRY_BASE_MS: '20', FLASH_ERP_RETRY_MAX_MS: '400',
      };
      const dataDir = makeDataDir();
      const first = await startEngine({ dataDir, env });
      const a = api(first.url);
      const skus = skusOnEveryShard('erp-pg');
      for (const sku of skus) await createSku(a, sku, { stock: 10_000, holdSeconds: 600, maxPerBuyer: 5 });
      const paid = await payOrders(a, skus, 200, 'pg');
      const held = await holdOrders(a, skus, 10, 'pg-held');
      const before = await waitFor('some rows are in', count, (n) => n >= 40, 20_000, 10);
      await first.kill9();
      const atCrash = await count();
      expect(atCrash, 'the kill came mid-delivery').toBeLessThan(paid.length);

      const second = await startEngine({ dataDir, env });
      await waitFor('every paid order has its row', count, (n) => n >= paid.length, 30_000, 25);
      await waitFor('the restarted engine reports no backlog', () => metrics(second), (t) => metricValue(t, 'flash_erp_backlog_events') === 0, 5000, 50);
      await sleep(200);
      const { rows } = await db.query<{ event_id: string; reservation_id: string; sku: string; buyer_id: string; qty: number; paid_at: string; payment_ref: string | null; channel: string }>(
        `SELECT event_id, reservation_id, sku, buyer_id, qty, paid_at, payment_ref, channel FROM ${table} ORDER BY event_id`);
      expect(rows.length).toBe(paid.length);
      const expected = paid.map((o) => ({
        event_id: `order.paid:${o.reservationId}`, reservation_id: o.reservationId, sku: o.sku, buyer_id: o.buyerId,
        qty: o.qty, paid_at: String(o.paidAt), payment_ref: o.paymentRef, channel: o.channel,
      })).sort((x, y) => (x.event_id < y.event_id ? -1 : x.event_id > y.event_id ? 1 : 0));
      expect(rows).toEqual(expected);
      const heldIds = new Set(held);
      expect(rows.filter((r) => heldIds.has(r.reservation_id))).toEqual([]);
      const m = await metrics(second);
      console.log(`[erp-e2e] postgres: ${before} rows when killed (${atCrash} after), ${rows.length} rows for ${paid.length} paid orders after the restart; `
        + `restarted engine inserted ${metricValue(m, 'flash_erp_delivered_total')} events in ${metricValue(m, 'flash_erp_calls_started_total')} calls`);
    } finally {
      await stopAllEngines();
      await db.query(`DROP TABLE IF EXISTS ${table}, ${table}_refunds`);
      await db.end();
    }
  });
});

describe('POST /v1/admin/stock-import through the engine process', () => {
  it('applies a good CSV, refuses a bad one naming its lines with nothing created, and is open to admin and operator only', async () => {
    const engine = await startEngine();
    const a = api(engine.url);
    const [s1, s2, s3] = [uniq('imp-a'), uniq('imp-b'), uniq('imp-c')];
    const csv = `sku,stock,maxPerBuyer,holdSeconds\n${s1},100,2,900\n${s2},50,,\n"${s3}",0,1,30\n`;
    const send = (text: string, token?: string) => a.raw('POST', '/v1/admin/stock-import', { body: text, headers: { 'content-type': 'text/csv' }, ...(token === undefined ? {} : { token }) });

    const ok = await send(csv, ADMIN_TOKEN);
    expect(ok.status, ok.text).toBe(200);
    expect(ok.body).toEqual({ skus: 3, created: 3, updated: 0, failed: 0 });
    for (const [sku, stock, maxPerBuyer, holdSeconds] of [[s1, 100, 2, 900], [s2, 50, 0, 600], [s3, 0, 1, 30]] as const) {
      const v = await getSku(a, sku);
      expect({ onHand: v.onHand, available: v.available, reserved: v.reserved, sold: v.sold, maxPerBuyer: v.maxPerBuyer, holdSeconds: v.holdSeconds }, sku)
        .toEqual({ onHand: stock, available: stock, reserved: 0, sold: 0, maxPerBuyer, holdSeconds });
    }
    // The same file again updates (stock is used on create only): nothing doubles.
    const again = await send(csv, ADMIN_TOKEN);
    expect(again.body).toMatchObject({ skus: 3, created: 0, updated: 3, failed: 0, stockKept: 3 });
    expect(again.body.note).toMatch(/^stock applies when a SKU is created: 3 existing SKU\(s\) kept their stock/);
    expect((await getSku(a, s1)).onHand).toBe(100);

    const [b1, b2, b3] = [uniq('bad-a'), uniq('bad-b'), uniq('bad-c')];
    const bad = `sku,stock\n${b1},10\n${b2},-5\n${b1},4\n${b3},7\n`;
    const refused = await send(bad, ADMIN_TOKEN);
    expect(refused.status, refused.text).toBe(400);
    expect(refused.body.error.code).toBe('invalid_request');
    expect(refused.body.error.message).toMatch(/line 3, stock/);
    expect(refused.body.error.message).toMatch(/line 4, sku/);
    expect(refused.body.error.message).toMatch(/nothing was applied/);
    expect(refused.body.errorCount).toBe(2);
    expect(refused.body.errors.map((e: { line: number; field: string | null }) => [e.line, e.field])).toEqual([[3, 'stock'], [4, 'sku']]);
    for (const sku of [b1, b2, b3]) expectError(await a.get(`/v1/skus/${sku}`), 404, 'unknown_sku');

    // Who may import (v2): admin and operator; every other role and buyers get 403, a call
    // without a valid token 401; a refused import creates nothing.
    const g = uniq('noauth');
    const noToken = await send(`sku,stock\n${g},5\n`, NO_TOKEN);
    expectError(noToken, 401, 'unauthorized');
    expect(noToken.headers.get('www-authenticate')).toMatch(/^Bearer\b/);
    expectError(await send(`sku,stock\n${g},5\n`, 'not-the-admin-token'), 401, 'unauthorized');
    for (const [who, token] of [['viewer', TOKENS.viewer], ['shop', TOKENS.shop], ['payments', TOKENS.payments], ['a buyer', buyerToken('importer')]] as const) {
      const r = await send(`sku,stock\n${g},5\n`, token);
      expect(r.status, `${who}: ${r.text}`).toBe(403);
      expectError(r, 403, 'forbidden');
    }
    expectError(await a.get(`/v1/skus/${g}`), 404, 'unknown_sku');
    const byOperator = await send(`sku,stock,maxPerBuyer\n${g},5,1\n${s1},999,3\n`, TOKENS.operator);
    expect(byOperator.status, byOperator.text).toBe(200);
    expect(byOperator.body).toMatchObject({ skus: 2, created: 1, updated: 1, failed: 0, stockKept: 1 });
    expect(byOperator.body.note).toContain(s1);
    expect(await getSku(a, g)).toMatchObject({ onHand: 5, available: 5, maxPerBuyer: 1 });
    expect(await getSku(a, s1)).toMatchObject({ onHand: 100, maxPerBuyer: 3 });
  });
});
