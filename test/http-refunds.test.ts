// Refunds over real HTTP against the built engine (shared/API.md "After the sale: refunds and
// returns"): a refund with restock puts the units back on sale at once (another buyer buys
// them), without restock they leave stock; counters are exact; a second refund answers the
// same 200; refunding before pay is 409 not_paid; buyers and shops are refused (403); a refund
// racing reserves for the last unit never lets more than onHand be sold; kill -9 right after
// refunds loses none; and through a slow, flaky ERP stand-in (its own process) every
// refunded order arrives as order.paid then order.refunded, with stable keys, across a
// kill -9 and a restart; the PostgreSQL sink records refunds as rows of their own.
// Callers as in a real shop: the shop's backend reserves, the payment side pays and refunds.

import pg from 'pg';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { shardForSku } from '../src/domain/routing.js';
import {
  ADMIN_TOKEN, TOKENS, api, buyerToken, makeDataDir, sleep, startEngine, stopAllEngines, type Api, type Engine,
} from './support/engine-process.js';
import { startStandInProcess, type StandInProcess } from './support/erp-standin-process.js';
import { createSku, expectError, getSku, inParallel, metricValue, reserve, reserveOk, uniq, uniqWhere, waitFor } from './support/http-kit.js';

const SHARDS = 2;
const SECRET = 'refund-erp-secret-0123456789';
const pgUrl = process.env.FLASH_TEST_PG_URL ?? 'postgres://postgres@127.0.0.1:5432/test';

const standIns: StandInProcess[] = [];
afterAll(async () => {
  await stopAllEngines();
  await Promise.all(standIns.map((s) => s.close()));
});



/** Reserves (shop) and pays (payments); returns the paid reservation. */
async function buy(a: Api, sku: string, buyerId: string, qty = 1, paymentRef = `pi-${buyerId}`): Promise<any> {
  const held = await reserveOk(a, { sku, buyerId, qty });
  const paid = await a.post(`/v1/reservations/${held.reservationId}/pay`, { paymentRef });
  expect(paid.status, paid.text).toBe(200);
  return paid.body;
}

const counters = async (a: Api, sku: string) => {
  const v = await getSku(a, sku);
  return { onHand: v.onHand, available: v.available, reserved: v.reserved, sold: v.sold, refunded: v.refunded };
};

describe('POST /v1/reservations/{id}/refund', () => {
  let engine: Engine;
  let a: Api;
  beforeAll(async () => {
    engine = await startEngine({ env: { FLASH_BUYER_RPS: '0' } });
    a = api(engine.url);
  });

  it('with restock (the default): 200 refunded, sold down, the unit back on sale at once and bought by another buyer', async () => {
    const sku = uniq('refund-restock');
    await createSku(a, sku, { stock: 1, maxPerBuyer: 1 });
    const order = await buy(a, sku, 'ann');
    expectError(await reserve(a, { sku, buyerId: 'bob' }), 409, 'sold_out');
    const r = await a.post(`/v1/reservations/${order.reservationId}/refund`, { reason: 'changed mind' });
    expect(r.status, r.text).toBe(200);
    expect(r.body).toEqual({
      ...order, status: 'refunded', refundedAt: r.body.refundedAt, restock: true, refundReason: 'changed mind',
    });
    expect(r.body.refundedAt).toBeGreaterThanOrEqual(order.paidAt);
    expect(await counters(a, sku)).toEqual({ onHand: 1, available: 1, reserved: 0, sold: 0, refunded: 1 });
    // Resold at once to another buyer; and ann's quota is back too.
    const bob = await buy(a, sku, 'bob');
    expect(bob.status).toBe('paid');
    expect(await counters(a, sku)).toEqual({ onHand: 1, available: 0, reserved: 0, sold: 1, refunded: 1 });
    expectError(await reserve(a, { sku, buyerId: 'ann' }), 409, 'sold_out'); // not quota_exceeded: her quota was given back
    expect((await a.get(`/v1/reservations/${order.reservationId}`)).body).toEqual(r.body);
  });

  it('without restock: the units leave stock (onHand down), available unchanged, sold down, the quota given back', async () => {
    const sku = uniq('refund-damaged');
    await createSku(a, sku, { stock: 5, maxPerBuyer: 2 });
    const order = await buy(a, sku, 'cy', 2);
    expectError(await reserve(a, { sku, buyerId: 'cy' }), 409, 'quota_exceeded');
    const r = await a.post(`/v1/reservations/${order.reservationId}/refund`, { restock: false, reason: 'arrived broken' });
    expect(r.status, r.text).toBe(200);
    expect(r.body).toMatchObject({ status: 'refunded', restock: false, refundReason: 'arrived broken', paidAt: order.paidAt, qty: 2 });
    expect(await counters(a, sku)).toEqual({ onHand: 3, available: 3, reserved: 0, sold: 0, refunded: 2 });
    await buy(a, sku, 'cy', 2);
    expect(await counters(a, sku)).toEqual({ onHand: 3, available: 1, reserved: 0, sold: 2, refunded: 2 });
  });

  it('twice: the same 200, and nothing changes (the second asks for no restock: it still changes nothing)', async () => {
    const sku = uniq('refund-twice');
    await createSku(a, sku, { stock: 4 });
    const order = await buy(a, sku, 'dee');
    const first = await a.post(`/v1/reservations/${order.reservationId}/refund`, {});
    expect(first.status, first.text).toBe(200);
    const before = await counters(a, sku);
    for (const body of [{}, { restock: false, reason: 'other' }]) {
      const again = await a.post(`/v1/reservations/${order.reservationId}/refund`, body);
      expect(again.status, again.text).toBe(200);
      expect(again.body).toEqual(first.body);
    }
    expect(await counters(a, sku)).toEqual(before);
    expect(before).toEqual({ onHand: 4, available: 4, reserved: 0, sold: 0, refunded: 1 });
    // Paying it again answers its view as it is (refunded); cancelling it is already_paid.
    const pay = await a.post(`/v1/reservations/${order.reservationId}/pay`, {});
    expect(pay.status).toBe(200);
    expect(pay.body.status).toBe('refunded');
    expectError(await a.post(`/v1/reservations/${order.reservationId}/cancel`, {}), 409, 'already_paid');
  });

  it('before pay, or after cancel or expiry: 409 not_paid; an unknown id 404; bad bodies 400; nothing changes', async () => {
    const sku = uniq('refund-unpaid');
    const short = uniq('refund-short');
    await createSku(a, sku, { stock: 5 });
    await createSku(a, short, { stock: 5, holdSeconds: 1 });
    const expiring = await reserveOk(a, { sku: short, buyerId: 'gus' });
    const held = await reserveOk(a, { sku, buyerId: 'eve' });
    const cancelled = await reserveOk(a, { sku, buyerId: 'fay' });
    expect((await a.post(`/v1/reservations/${cancelled.reservationId}/cancel`, {})).status).toBe(200);
    await waitFor('the 1 s hold expired', () => a.get(`/v1/reservations/${expiring.reservationId}`), (r) => r.body?.status === 'expired', 5000, 100);
    const before = await counters(a, sku);
    for (const id of [held.reservationId, cancelled.reservationId, expiring.reservationId]) {
      expectError(await a.post(`/v1/reservations/${id}/refund`, {}), 409, 'not_paid');
    }
    expect((await a.get(`/v1/reservations/${held.reservationId}`)).body.status).toBe('held');
    expectError(await a.post('/v1/reservations/0.1zzzzzzzz/refund', {}), 404, 'unknown_reservation');
    expectError(await a.post('/v1/reservations/not-an-id/refund', {}), 404, 'unknown_reservation');
    expect(await counters(a, sku)).toEqual(before);
    const paid = await buy(a, sku, 'ivy');
    for (const body of [{ restock: 'yes' }, { restock: 1 }, { reason: '' }, { reason: 'x'.repeat(201) }, { reason: 'a\u0000b' }, { reason: 42 }]) {
      const r = await a.post(`/v1/reservations/${paid.reservationId}/refund`, body);
      expectError(r, 400, 'invalid_request');
      expect(r.body.error.message, JSON.stringify(body)).toMatch(/restock|reason/);
    }
    expectError(await a.raw('POST', `/v1/reservations/${paid.reservationId}/refund`, { body: '[]' }), 400, 'invalid_request');
    expect(await counters(a, sku)).toEqual({ ...before, available: before.available - 1, sold: 1 });
    expect((await a.get(`/v1/reservations/${paid.reservationId}`)).body.status).toBe('paid');
    // A reason of 200 characters is fine.
    const ok = await a.post(`/v1/reservations/${paid.reservationId}/refund`, { reason: 'r'.repeat(200) });
    expect(ok.status, ok.text).toBe(200);
    expect(ok.body.refundReason).toBe('r'.repeat(200));
  });

  it('by a buyer token (even the order\'s own buyer) or a shop token: 403 forbidden, nothing changes; admin and payments may', async () => {
    const sku = uniq('refund-who');
    await createSku(a, sku, { stock: 5 });
    const order = await buy(a, sku, 'jo');
    const before = await counters(a, sku);
    for (const token of [buyerToken('jo'), buyerToken('someone-else'), TOKENS.shop, TOKENS.shopWeb, TOKENS.operator, TOKENS.viewer]) {
      expectError(await a.post(`/v1/reservations/${order.reservationId}/refund`, {}, token), 403, 'forbidden');
    }
    expectError(await a.post(`/v1/reservations/${order.reservationId}/refund`, {}, 'not-a-token-anyone-issued'), 401, 'unauthorized');
    expect(await counters(a, sku)).toEqual(before);
    expect((await a.get(`/v1/reservations/${order.reservationId}`)).body.status).toBe('paid');
    // The buyer still reads its refunded order; admin may refund too.
    const other = await buy(a, sku, 'jo', 1, 'pi-2');
    expect((await a.post(`/v1/reservations/${other.reservationId}/refund`, {}, ADMIN_TOKEN)).status).toBe(200);
    const mine = await a.get(`/v1/reservations/${other.reservationId}`, buyerToken('jo'));
    expect(mine.status, mine.text).toBe(200);
    expect(mine.body.status).toBe('refunded');
  });

  it('counts refunds in /metrics (flash_sku_refunded) and in GET /v1/admin/erp (refundedUnits, never queued without an ERP)', async () => {
    const sku = uniq('refund-metrics');
    await createSku(a, sku, { stock: 9 });
    const orders = [await buy(a, sku, 'k1', 2), await buy(a, sku, 'k2', 3), await buy(a, sku, 'k3', 1)];
    for (const [i, o] of orders.slice(0, 2).entries()) {
      expect((await a.post(`/v1/reservations/${o.reservationId}/refund`, { restock: i === 0 })).status).toBe(200);
    }
    const m = await a.get('/metrics');
    expect(metricValue(m.text, 'flash_sku_refunded', { sku })).toBe(5);
    expect(metricValue(m.text, 'flash_sku_sold', { sku })).toBe(1);
    expect(metricValue(m.text, 'flash_sku_on_hand', { sku })).toBe(6);
    const report = await a.get('/v1/admin/erp', TOKENS.viewer);
    expect(report.status).toBe(200);
    const row = report.body.skus.find((r: { sku: string }) => r.sku === sku);
    expect(row).toEqual({
      sku, sold: 1, deliveredUnits: 0, undeliveredUnits: 0, undeliveredOrders: 0, notQueuedUnits: 6, uncountedUnits: 0,
      refundedUnits: 5, refundsDeliveredUnits: 0, refundsUndeliveredUnits: 0, refundsUndeliveredOrders: 0, refundsNotQueuedUnits: 5,
    });
  });

  it('a refund racing reserves for the last unit never lets more than onHand be sold, and every restocked unit can be sold once more', async () => {
    const sku = uniq('refund-race');
    const stock = 10;
    await createSku(a, sku, { stock, maxPerBuyer: 1 });
    const first = await inParallel(Array.from({ length: stock }, (_, i) => i), 10, (i) => buy(a, sku, `first-${i}`));
    expect(await counters(a, sku)).toEqual({ onHand: stock, available: 0, reserved: 0, sold: stock, refunded: 0 });
    let stop = false;
    const samples: { onHand: number; reserved: number; sold: number }[] = [];
    const sampler = (async () => {
      while (!stop) {
        const v = await getSku(a, sku);
        samples.push({ onHand: v.onHand, reserved: v.reserved, sold: v.sold });
        await sleep(2);
      }
    })();
    let granted = 0;
    const restocked = first.filter((_, i) => i % 2 === 0).length;
    for (const [round, order] of first.entries()) {
      // One refund (restock on even rounds) against 25 buyers reserving and paying at once.
      const refund = a.post(`/v1/reservations/${order.reservationId}/refund`, { restock: round % 2 === 0 });
      const racers = inParallel(Array.from({ length: 25 }, (_, i) => i), 25, async (i) => {
        const r = await reserve(a, { sku, buyerId: `racer-${round}-${i}` });
        if (r.status !== 201) {
          expectError(r, 409, 'sold_out');
          return 0;
        }
        const p = await a.post(`/v1/reservations/${r.body.reservationId}/pay`, {});
        expect(p.status, p.text).toBe(200);
        return 1;
      });
      // One read of the counters in the middle of each round, besides the sampler's: every
      // round is observed while it races, however busy the machine.
      const during = getSku(a, sku).then((v) => samples.push({ onHand: v.onHand, reserved: v.reserved, sold: v.sold }));
      const [refunded, wins] = await Promise.all([refund, racers, during]);
      expect(refunded.status, refunded.text).toBe(200);
      granted += wins.filter((w) => w === 1).length;
    }
    stop = true;
    await sampler;
    expect(samples.length).toBeGreaterThanOrEqual(first.length);
    for (const s of samples) expect(s.reserved + s.sold, JSON.stringify(s)).toBeLessThanOrEqual(s.onHand);
    expect(granted).toBeLessThanOrEqual(restocked);
    const onHand = stock - (stock - restocked);
    expect(await counters(a, sku)).toEqual({ onHand, available: restocked - granted, reserved: 0, sold: granted, refunded: stock });
    // What is left is sold once, and not a unit more.
    let sweep = 0;
    for (let i = 0; i < restocked + 3; i++) {
      const r = await reserve(a, { sku, buyerId: `sweep-${i}` });
      if (r.status === 201) sweep++;
      else expectError(r, 409, 'sold_out');
    }
    expect(granted + sweep).toBe(restocked);
    console.log(`[http-refunds] race: ${stock} refunds (${restocked} restocked) against ${stock * 25} reserves: ${granted} units resold during the race, `
      + `${sweep} after; ${samples.length} views sampled, none with reserved + sold over onHand`);
    expect((await counters(a, sku)).reserved + (await counters(a, sku)).sold).toBe(onHand);
  });
});

describe('refunds and kill -9', () => {
  it('every refund answered 200 before a kill -9 is there after the restart, with its counters; refunding again answers the same 200', async () => {
    const dataDir = makeDataDir();
    const engine = await startEngine({ dataDir, env: { FLASH_BUYER_RPS: '0' } });
    const a = api(engine.url);
    const skus = Array.from({ length: SHARDS }, (_, shard) => uniqWhere('refund-crash', (n) => shardForSku(n, null, SHARDS) === shard));
    for (const sku of skus) await createSku(a, sku, { stock: 20, maxPerBuyer: 3 });
    const orders = await inParallel(Array.from({ length: 16 }, (_, i) => i), 8, (i) => buy(a, skus[i % SHARDS]!, `crash-${i}`, 1 + (i % 2)));
    const answers = await inParallel(orders.slice(0, 12), 12, async (o, i) => {
      const r = await a.post(`/v1/reservations/${o.reservationId}/refund`, { restock: i % 3 !== 0, ...(i % 2 === 0 ? { reason: `reason ${i}` } : {}) });
      expect(r.status, r.text).toBe(200);
      return r.body;
    });
    const views = await Promise.all(skus.map((sku) => counters(a, sku)));
    await engine.kill9();

    const again = await startEngine({ dataDir, env: { FLASH_BUYER_RPS: '0' } });
    const b = api(again.url);
    expect(await Promise.all(skus.map((sku) => counters(b, sku)))).toEqual(views);
    for (const r of answers) {
      expect((await b.get(`/v1/reservations/${r.reservationId}`)).body).toEqual(r);
      const repeat = await b.post(`/v1/reservations/${r.reservationId}/refund`, { restock: true });
      expect(repeat.status).toBe(200);
      expect(repeat.body).toEqual(r);
    }
    for (const o of orders.slice(12)) expect((await b.get(`/v1/reservations/${o.reservationId}`)).body.status).toBe('paid');
    expect(await Promise.all(skus.map((sku) => counters(b, sku)))).toEqual(views);
    // Quota given back survives too: a refunded buyer may buy its full quota again.
    const refundedBuyer = answers[1]!;
    await buy(b, refundedBuyer.sku, refundedBuyer.buyerId, 3, 'pi-after-restart');
  });
});

describe('refunds to the ERP', () => {
  interface Paid {
    reservationId: string;
    sku: string;
    buyerId: string;
    qty: number;
    paidAt: number;
    paymentRef: string;
    channel: string;
  }

  /** The exact order.paid body of API.md (with v2's channel). */
  const paidBody = (o: Paid) => ({
    type: 'order.paid', eventId: `order.paid:${o.reservationId}`, reservationId: o.reservationId, sku: o.sku, buyerId: o.buyerId,
    qty: o.qty, paidAt: o.paidAt, paymentRef: o.paymentRef, channel: o.channel,
  });
  /** The order.refunded body: order.paid's keys in order, then refundedAt, restock, reason. */
  const refundedBody = (o: Paid, r: { refundedAt: number; restock: boolean; refundReason?: string }) => ({
    ...paidBody(o), type: 'order.refunded', eventId: `order.refunded:${o.reservationId}`,
    refundedAt: r.refundedAt, restock: r.restock, reason: r.refundReason ?? null,
  });

  async function payMany(a: Api, skus: string[], count: number, tag: string): Promise<Paid[]> {
    return inParallel(Array.from({ length: count }, (_, i) => i), 8, async (i) => {
      const [token, channel] = i % 4 === 3 ? [TOKENS.shopWeb, 'web'] : [TOKENS.shop, 'default'];
      const held = await a.post('/v1/reservations', { sku: skus[i % skus.length], buyerId: `${tag}-${i}`, qty: 1 + (i % 3) }, token);
      expect(held.status, held.text).toBe(201);
      const p = await a.post(`/v1/reservations/${held.body.reservationId}/pay`, { paymentRef: `pi-${tag}-${i}` });
      expect(p.status, p.text).toBe(200);
      return { reservationId: p.body.reservationId, sku: p.body.sku, buyerId: p.body.buyerId, qty: p.body.qty, paidAt: p.body.paidAt, paymentRef: `pi-${tag}-${i}`, channel };
    });
  }

  async function refundSome(a: Api, orders: Paid[], every: number): Promise<Map<string, any>> {
    const done = new Map<string, any>();
    await inParallel(orders.filter((_, i) => i % every === 0), 8, async (o, i) => {
      const r = await a.post(`/v1/reservations/${o.reservationId}/refund`, { restock: i % 2 === 0, ...(i % 3 === 0 ? {} : { reason: `return ${i}` }) });
      expect(r.status, r.text).toBe(200);
      done.set(o.reservationId, r.body);
    });
    return done;
  }

  it('the slow, flaky ERP gets order.paid then order.refunded for every refunded order, with stable keys, across a kill -9 and a restart', async () => {
    const erp = await startStandInProcess({ secret: SECRET, latencyMs: 15, jitterMs: 5, errorRate: 0.3, seed: 16 });
    standIns.push(erp);
    const env = {
      FLASH_ERP_WEBHOOK_URL: erp.url, FLASH_ERP_SECRET: SECRET, FLASH_BUYER_RPS: '0', FLASH_ERP_MAX_RPS: '60', FLASH_ERP_CONCURRENCY: '4',
      FLASH_ERP_POLL_MS: '50', FLASH_ERP_RETRY_BASE_MS: '20', FLASH_ERP_RETRY_MAX_MS: '300',
    };
    const dataDir = makeDataDir();
    const first = await startEngine({ dataDir, env });
    const a = api(first.url);
    const skus = Array.from({ length: SHARDS }, (_, shard) => uniqWhere('refund-erp', (n) => shardForSku(n, null, SHARDS) === shard));
    for (const sku of skus) await createSku(a, sku, { stock: 1000, maxPerBuyer: 5 });
    // Refunds right behind their pays, while the ERP is still far behind: most order.paid are undelivered.
    const early = await payMany(a, skus, 60, 'early');
    const refundedEarly = await refundSome(a, early, 3);
    await waitFor('delivery is under way', () => erp.stats(), (s) => s.uniqueEvents >= 15, 15_000);
    await first.kill9();

    const second = await startEngine({ dataDir, env });
    const b = api(second.url);
    for (const [id, r] of refundedEarly) expect((await b.get(`/v1/reservations/${id}`)).body).toEqual(r);
    // More after the restart: refunds of orders the first process delivered, and new orders refunded at once.
    const late = await payMany(b, skus, 20, 'late');
    const refundedLate = await refundSome(b, [...early.filter((o) => !refundedEarly.has(o.reservationId)).slice(0, 8), ...late], 2);
    const orders = [...early, ...late];
    const refunded = new Map([...refundedEarly, ...refundedLate]);
    const events = orders.length + refunded.size;
    await waitFor('the ERP has every order.paid and order.refunded', () => erp.stats(), (s) => s.uniqueEvents >= events, 25_000, 50);
    await sleep(200);

    const deliveries = await erp.deliveries();
    const byId = new Map(orders.map((o) => [o.reservationId, o]));
    const want = new Map<string, unknown>();
    for (const o of orders) want.set(`order.paid:${o.reservationId}`, paidBody(o));
    for (const [id, r] of refunded) want.set(`order.refunded:${id}`, refundedBody(byId.get(id)!, r));
    expect([...deliveries.keys()].sort()).toEqual([...want.keys()].sort());
    for (const [eventId, d] of deliveries) {
      expect(JSON.parse(d.body), eventId).toEqual(want.get(eventId));
      expect(Object.keys(JSON.parse(d.body)).join(','), eventId).toBe(Object.keys(want.get(eventId) as object).join(','));
    }
    for (const id of refunded.keys()) {
      const paidAt = deliveries.get(`order.paid:${id}`)!.firstAtMs;
      expect(deliveries.get(`order.refunded:${id}`)!.firstAtMs, `order.refunded:${id} came before its order.paid`).toBeGreaterThanOrEqual(paidAt);
    }
    const stats = await erp.stats();
    expect(stats.refundsBeforePaid, 'refunds the ERP had to refuse because their order.paid had not come').toBe(0);
    expect(stats.badRequests, `last bad request: ${stats.lastBadRequest}`).toBe(0);
    expect(stats.badSignatures).toBe(0);
    // Repeats after the kill carry the same key and the same bytes.
    expect(stats.bodyMismatches).toBe(0);
    expect(stats.failuresInjected['500'] + stats.failuresInjected['503'] + stats.failuresInjected.drop).toBeGreaterThan(10);

    const report = await waitFor('the report shows everything delivered', () => b.get('/v1/admin/erp', TOKENS.viewer), (r) => r.body?.complete === true, 5000, 50);
    const refundedUnits = [...refunded.values()].reduce((n, r) => n + r.qty, 0);
    const paidUnits = orders.reduce((n, o) => n + o.qty, 0);
    expect(report.body.totals).toMatchObject({
      sold: paidUnits - refundedUnits, deliveredUnits: paidUnits, refundedUnits, refundsDeliveredUnits: refundedUnits,
      refundsUndeliveredUnits: 0, refundsNotQueuedUnits: 0, notQueuedUnits: 0,
    });
    console.log(`[http-refunds] ERP: ${orders.length} orders, ${refunded.size} refunded (${refundedEarly.size} before the kill -9), `
      + `${stats.received} calls, ${stats.duplicates} repeat(s), ${JSON.stringify(stats.failuresInjected)} injected failures, 0 refunds before their order`);
  }, 60_000);

  it('into PostgreSQL: orders in the table, one row per paid order as before refunds; refunds in <table>_refunds, one row each', async () => {
    const table = `refunds_e2e_${process.pid}_${Math.floor(Math.random() * 1e9).toString(36)}`;
    const refundsTable = `${table}_refunds`;
    const db = new pg.Client({ connectionString: pgUrl, connectionTimeoutMillis: 5000 });
    await db.connect().catch((e: unknown) => {
      throw new Error(`this test needs PostgreSQL at ${pgUrl} (set FLASH_TEST_PG_URL): ${String(e)}`);
    });
    try {
      const engine = await startEngine({
        env: {
          FLASH_ERP_PG_URL: pgUrl, FLASH_ERP_PG_TABLE: table, FLASH_ERP_PG_BATCH: '4', FLASH_ERP_MAX_RPS: '50', FLASH_ERP_CONCURRENCY: '2',
          FLASH_ERP_POLL_MS: '50', FLASH_BUYER_RPS: '0',
        },
      });
      const a = api(engine.url);
      const skus = Array.from({ length: SHARDS }, (_, shard) => uniqWhere('refund-pg', (n) => shardForSku(n, null, SHARDS) === shard));
      for (const sku of skus) await createSku(a, sku, { stock: 100, maxPerBuyer: 5 });
      const orders = await payMany(a, skus, 12, 'pg');
      const refunded = await refundSome(a, orders, 2);
      const count = async (t: string): Promise<number> => {
        try {
          return Number((await db.query<{ n: string }>(`SELECT count(*) AS n FROM ${t}`)).rows[0]!.n);
        } catch (e) {
          if ((e as { code?: string }).code === '42P01') return 0;
          throw e;
        }
      };
      const both = async (): Promise<[number, number]> => [await count(table), await count(refundsTable)];
      await waitFor('every event has its row', both, ([o, r]) => o >= orders.length && r >= refunded.size, 20_000, 50);
      await sleep(200);
      const byEventId = (x: { event_id: string }, y: { event_id: string }): number => (x.event_id < y.event_id ? -1 : 1);
      // The orders table: exactly the paid orders (a refunded one too, once), with the columns it always had.
      const { rows: orderRows, fields } = await db.query<Record<string, unknown> & { event_id: string }>(`SELECT * FROM ${table} ORDER BY event_id`);
      expect(fields.map((f) => f.name)).toEqual(['event_id', 'reservation_id', 'sku', 'buyer_id', 'qty', 'paid_at', 'payment_ref', 'delivered_at', 'channel']);
      expect(orderRows.map(({ delivered_at: _, ...row }) => row)).toEqual(orders.map((o) => ({
        event_id: `order.paid:${o.reservationId}`, reservation_id: o.reservationId, sku: o.sku, buyer_id: o.buyerId, qty: o.qty,
        paid_at: String(o.paidAt), payment_ref: o.paymentRef, channel: o.channel,
      })).sort(byEventId));
      // The refunds table: one row per refund, its order's columns then the refund's.
      const byId = new Map(orders.map((o) => [o.reservationId, o]));
      const { rows: refundRows } = await db.query<{ event_id: string }>(
        `SELECT event_id, reservation_id, sku, buyer_id, qty, paid_at, payment_ref, channel, refunded_at, restock, reason FROM ${refundsTable} ORDER BY event_id`);
      expect(refundRows).toEqual([...refunded.values()].map((r) => {
        const o = byId.get(r.reservationId)!;
        return {
          event_id: `order.refunded:${r.reservationId}`, reservation_id: r.reservationId, sku: o.sku, buyer_id: o.buyerId, qty: r.qty,
          paid_at: String(o.paidAt), payment_ref: o.paymentRef, channel: o.channel,
          refunded_at: String(r.refundedAt), restock: r.restock, reason: r.refundReason ?? null,
        };
      }).sort(byEventId));
      expect(await both()).toEqual([orders.length, refunded.size]);
    } finally {
      await stopAllEngines();
      await db.query(`DROP TABLE IF EXISTS ${table}, ${refundsTable}`);
      await db.end();
    }
  });
});
