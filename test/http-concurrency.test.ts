// Races over real HTTP: thousands of requests in flight at once against one engine. The
// engine must never sell a unit twice, never let one buyer past maxPerBuyer, and answer
// every loser with the exact code, whatever order the requests arrive in.
// The racers are the shop's backend (shared/API.md v2): LoadClient sends the shop token to
// reserve, get and cancel, the payment side's to pay; SKUs are created with the admin token.

import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { shardForSku } from '../src/domain/routing.js';
import { api, startEngine, stopAllEngines, type Api, type Engine } from './support/engine-process.js';
import { LoadClient, type LoadReply } from './support/http-raw.js';
import { createSku, expectCounters, getSku, uniq, uniqWhere } from './support/http-kit.js';

let engine: Engine;
let a: Api;
let load: LoadClient;

beforeAll(async () => {
  engine = await startEngine({ env: { FLASH_BUYER_RPS: '0', FLASH_IP_RPS: '0' } });
  a = api(engine.url);
  load = new LoadClient(engine.port, 1500);
});

afterAll(async () => {
  load?.close();
  await stopAllEngines();
});

function tally(replies: LoadReply[]): Record<string, number> {
  const out: Record<string, number> = {};
  for (const r of replies) {
    const key = r.status >= 400 ? `${r.status} ${r.body?.error?.code}` : String(r.status);
    out[key] = (out[key] ?? 0) + 1;
  }
  return out;
}

const reserveAll = (bodies: Record<string, unknown>[]): Promise<LoadReply[]> =>
  Promise.all(bodies.map((b) => load.call('POST', '/v1/reservations', b)));

describe('many buyers racing for few units', () => {
  it('gives exactly 100 of 1,500 racing buyers a unit and answers the other 1,400 sold_out', async () => {
    const sku = uniq('race');
    await createSku(a, sku, { stock: 100, maxPerBuyer: 1 });
    const replies = await reserveAll(Array.from({ length: 1500 }, (_, i) => ({ sku, buyerId: `racer-${i}` })));
    expect(tally(replies)).toEqual({ '201': 100, '409 sold_out': 1400 });
    const won = replies.filter((r) => r.status === 201).map((r) => r.body);
    expect(new Set(won.map((r) => r.reservationId)).size).toBe(100);
    expect(new Set(won.map((r) => r.buyerId)).size).toBe(100);
    for (const r of won) expect(r).toMatchObject({ sku, qty: 1, status: 'held' });
    expectCounters(await getSku(a, sku), { onHand: 100, reserved: 100, sold: 0 });

    // Pay half and cancel the other half, all at once.
    const [toPay, toCancel] = [won.slice(0, 50), won.slice(50)];
    const settled = await Promise.all([
      ...toPay.map((r) => load.call('POST', `/v1/reservations/${r.reservationId}/pay`, {})),
      ...toCancel.map((r) => load.call('POST', `/v1/reservations/${r.reservationId}/cancel`, {})),
    ]);
    expect(tally(settled)).toEqual({ '200': 100 });
    expect(settled.slice(0, 50).every((r) => r.body.status === 'paid')).toBe(true);
    expect(settled.slice(50).every((r) => r.body.status === 'cancelled')).toBe(true);
    expectCounters(await getSku(a, sku), { onHand: 100, reserved: 0, sold: 50 });

    // The 50 freed units go to exactly 50 of the next 400 buyers; payers stay at their quota.
    const second = await reserveAll([
      ...Array.from({ length: 400 }, (_, i) => ({ sku, buyerId: `late-${i}` })),
      ...toPay.map((r) => ({ sku, buyerId: r.buyerId })),
    ]);
    expect(tally(second.slice(0, 400))).toEqual({ '201': 50, '409 sold_out': 350 });
    for (const r of second.slice(400)) expect(['409 quota_exceeded', '409 sold_out']).toContain(`${r.status} ${r.body?.error?.code}`);
    expectCounters(await getSku(a, sku), { onHand: 100, reserved: 50, sold: 50 });
  });

  it('never oversells any of several SKUs on both shards under one mixed burst', async () => {
    // Four SKUs on each shard (names are picked by the engine's routing function).
    const skus = Array.from({ length: 8 }, (_, i) => uniqWhere('mix', (s) => shardForSku(s, null, 2) === i % 2));
    for (const sku of skus) await createSku(a, sku, { stock: 25, maxPerBuyer: 2 });
    const bodies = Array.from({ length: 1200 }, (_, i) => ({ sku: skus[i % skus.length]!, buyerId: `mixer-${i % 300}`, qty: 1 + (i % 2) }));
    const replies = await reserveAll(bodies);
    const statuses = new Set(replies.map((r) => r.status));
    for (const s of statuses) expect([201, 409]).toContain(s);
    const shards = new Set<string>();
    for (const sku of skus) {
      const view = await getSku(a, sku);
      const granted = replies.filter((r, i) => r.status === 201 && bodies[i]!.sku === sku).reduce((n, r) => n + r.body.qty, 0);
      expect(view.reserved, sku).toBe(granted);
      expect(view.reserved + view.sold).toBeLessThanOrEqual(view.onHand);
      expect(view.available).toBe(view.onHand - view.reserved - view.sold);
      // 150 requests for 25 units: a SKU is left with at most one unit (a qty-2 ask can fail on the last one).
      expect(view.available, sku).toBeLessThanOrEqual(1);
      for (const r of replies) if (r.status === 201 && r.body.sku === sku) shards.add(r.body.reservationId.split('.')[0]);
    }
    expect(shards.size).toBe(2);
    // Per buyer and SKU, never more than maxPerBuyer.
    const perBuyer = new Map<string, number>();
    for (const r of replies) if (r.status === 201) perBuyer.set(`${r.body.sku}|${r.body.buyerId}`, (perBuyer.get(`${r.body.sku}|${r.body.buyerId}`) ?? 0) + r.body.qty);
    for (const [key, n] of perBuyer) expect(n, key).toBeLessThanOrEqual(2);
  });
});

describe('one buyer firing in parallel', () => {
  it('gives a buyer firing 50 parallel requests exactly maxPerBuyer 2 units', async () => {
    const sku = uniq('greedy');
    await createSku(a, sku, { stock: 100, maxPerBuyer: 2 });
    const replies = await reserveAll(Array.from({ length: 50 }, () => ({ sku, buyerId: 'greedy-buyer' })));
    expect(tally(replies)).toEqual({ '201': 2, '409 quota_exceeded': 48 });
    expectCounters(await getSku(a, sku), { onHand: 100, reserved: 2, sold: 0 });
  });

  it('holds a buyer to one quota across the SKUs of a drop, whatever the interleaving', async () => {
    const drop = uniq('pdrop');
    const skuA = uniq('pdropA');
    const skuB = uniq('pdropB');
    await createSku(a, skuA, { stock: 100, maxPerBuyer: 3, dropId: drop });
    await createSku(a, skuB, { stock: 100, maxPerBuyer: 3, dropId: drop });
    const replies = await reserveAll(Array.from({ length: 50 }, (_, i) => ({ sku: i % 2 ? skuA : skuB, buyerId: 'drop-greedy' })));
    expect(tally(replies)).toEqual({ '201': 3, '409 quota_exceeded': 47 });
    const a1 = await getSku(a, skuA);
    const b1 = await getSku(a, skuB);
    expect(a1.reserved + b1.reserved).toBe(3);
  });

  it('answers 50 parallel requests with one idempotencyKey with one reservation', async () => {
    const sku = uniq('idem-race');
    await createSku(a, sku, { stock: 100 });
    const replies = await reserveAll(Array.from({ length: 50 }, () => ({ sku, buyerId: 'idem-buyer', qty: 3, idempotencyKey: 'checkout-1' })));
    expect(tally(replies)).toEqual({ '201': 50 });
    expect(new Set(replies.map((r) => r.body.reservationId)).size).toBe(1);
    expect(replies.filter((r) => r.headers['idempotent-replayed'] === 'true').length).toBe(49);
    expectCounters(await getSku(a, sku), { onHand: 100, reserved: 3, sold: 0 });
  });
});

describe('pay and cancel racing on the same reservation', () => {
  it('settles each reservation exactly once, and the loser gets already_paid or reservation_cancelled', async () => {
    const sku = uniq('settle-race');
    await createSku(a, sku, { stock: 40 });
    const held = await reserveAll(Array.from({ length: 40 }, (_, i) => ({ sku, buyerId: `sr-${i}` })));
    expect(tally(held)).toEqual({ '201': 40 });
    const ids = held.map((r) => r.body.reservationId as string);
    const calls = await Promise.all(ids.flatMap((id, i) => {
      const pay = load.call('POST', `/v1/reservations/${id}/pay`, {});
      const cancel = load.call('POST', `/v1/reservations/${id}/cancel`, {});
      return i % 2 ? [pay, cancel] : [cancel, pay];
    }));
    let paid = 0;
    for (let i = 0; i < ids.length; i++) {
      const [first, second] = [calls[2 * i]!, calls[2 * i + 1]!];
      const [pay, cancel] = i % 2 ? [first, second] : [second, first];
      const state = (await load.call('GET', `/v1/reservations/${ids[i]}`)).body.status;
      if (state === 'paid') {
        paid++;
        expect(pay.status).toBe(200);
        expect([cancel.status, cancel.body?.error?.code]).toEqual([409, 'already_paid']);
      } else {
        expect(state).toBe('cancelled');
        expect(cancel.status).toBe(200);
        expect([pay.status, pay.body?.error?.code]).toEqual([409, 'reservation_cancelled']);
      }
    }
    expectCounters(await getSku(a, sku), { onHand: 40, reserved: 0, sold: paid });
  });
});
