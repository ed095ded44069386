// The HTTP contract of shared/API.md, route by route and code by code, as one suite that
// runs against every deployment shape (hono's runTest pattern): the embedded engine
// (test/http-contract.test.ts) and a gateway with two shard nodes over a real nats-server
// (test/nats-contract.test.ts). Outside clients test against API.md exactly as written, so
// these tests read it literally; the engine's documented extensions (risk rules,
// drop_mismatch, ...) are tested too.
//
// Tests that need an engine with other settings (no admin token, FLASH_DEV, a short token,
// FLASH_BUYER_RPS, FLASH_IP_RPS, FLASH_MAILBOX_MAX) ask the target for a variant: the
// embedded target starts a separate engine with its own data directory, the NATS target a
// second gateway on the same shard nodes (those settings all live in the gateway). So
// no test is embedded-only.

import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { shardForSku } from '../../src/domain/routing.js';
import { ADMIN_TOKEN, NO_TOKEN, TOKENS, api, sleep, type Api } from './engine-process.js';
import { createSku, expectCounters, expectError, getSku, metricValue, reserve, reserveOk, uniq, uniqWhere } from './http-kit.js';
import { SseClient } from './sse-client.js';

/** A running deployment the contract is checked against. */
export interface ContractTarget {
  /** Base URL of the HTTP API. */
  url: string;
  /**
   * /metrics of every process of the deployment. Counters are per process (a shard node
   * counts the stock events of the shards it hosts), so a deployment's count is the sum.
   */
  metricsUrls: string[];
  /** Everything every process of the deployment printed. */
  logs(): string;
  /** A front end with `env` on top of the suite's settings; `stop()` answers its exit code. */
  startVariant(env: Record<string, string>): Promise<{ url: string; stop(): Promise<number | null> }>;
  /** Runs a front end with `env` that is expected to refuse to start. */
  runVariantToExit(env: Record<string, string>): Promise<{ code: number | null; logs: string }>;
  stop(): Promise<void>;
}

/** Sum of one sample over every process's /metrics (undefined when no process has it). */
async function deploymentMetric(target: ContractTarget, name: string, labels: Record<string, string>): Promise<number | undefined> {
  let total: number | undefined;
  for (const url of target.metricsUrls) {
    const v = metricValue(await (await fetch(`${url}/metrics`)).text(), name, labels);
    if (v !== undefined) total = (total ?? 0) + v;
  }
  return total;
}

/**
 * Defines the whole contract suite under `describe(title)`. `start` runs in beforeAll with
 * FLASH_BUYER_RPS=1000 (the per-buyer limit has its own test); the target is stopped in afterAll.
 */
export function contractSuite(title: string, start: () => Promise<ContractTarget>): void {
  describe(title, () => {
    let target: ContractTarget;
    let a: Api;

    beforeAll(async () => {
      target = await start();
      a = api(target.url);
    });

    afterAll(async () => {
      await target?.stop();
    });

    /** The shard a reservation id names (ids are `<shard>.<rest>`). */
    const shardOfId = (id: string): number => Number(id.split('.')[0]);

    describe('PUT /v1/skus/{sku}', () => {
      it('creates a SKU with 201 and answers its view with available = onHand - reserved - sold', async () => {
        const sku = uniq('put-create');
        const r = await a.put(`/v1/skus/${sku}`, { stock: 1000, mode: 'pre_deduct', holdSeconds: 600, maxPerBuyer: 2 }, ADMIN_TOKEN);
        expect(r.status).toBe(201);
        expect(r.headers.get('content-type')).toMatch(/^application\/json/);
        expect(r.body).toMatchObject({ sku, onHand: 1000, available: 1000, reserved: 0, sold: 0, mode: 'pre_deduct', holdSeconds: 600, maxPerBuyer: 2 });
      });

      it('applies the defaults of API.md when the body gives only the stock', async () => {
        const sku = uniq('put-defaults');
        const view = await createSku(a, sku, { stock: 3 });
        expect(view).toMatchObject({ sku, onHand: 3, available: 3, mode: 'pre_deduct', holdSeconds: 600, maxPerBuyer: 0 });
      });

      it('updates an existing SKU with 200, changes its policy, and ignores stock on update', async () => {
        const sku = uniq('put-update');
        await createSku(a, sku, { stock: 10, maxPerBuyer: 1 });
        await reserveOk(a, { sku, buyerId: 'u1' });
        const r = await a.put(`/v1/skus/${sku}`, { stock: 99, maxPerBuyer: 5, holdSeconds: 30, mode: 'on_order' }, ADMIN_TOKEN);
        expect(r.status).toBe(200);
        expect(r.body).toMatchObject({ sku, maxPerBuyer: 5, holdSeconds: 30, mode: 'on_order' });
        expectCounters(r.body, { onHand: 10, reserved: 1, sold: 0 });
        expectCounters(await getSku(a, sku), { onHand: 10, reserved: 1, sold: 0 });
      });

      it('reports the lowStockThreshold, minAccountAgeSeconds and minPastOrders policy fields in the view', async () => {
        const sku = uniq('put-ext');
        const view = await createSku(a, sku, { stock: 5, lowStockThreshold: 2, minAccountAgeSeconds: 60, minPastOrders: 1 });
        expect(view).toMatchObject({ lowStockThreshold: 2, minAccountAgeSeconds: 60, minPastOrders: 1 });
      });

      it('refuses to change the dropId of an existing SKU with 409 drop_mismatch', async () => {
        const plain = uniq('dm-plain');
        await createSku(a, plain, { stock: 1 });
        expectError(await a.put(`/v1/skus/${plain}`, { dropId: uniq('drop') }, ADMIN_TOKEN), 409, 'drop_mismatch');
        const dropped = uniq('dm-drop');
        await createSku(a, dropped, { stock: 1, dropId: 'dm-drop-one' });
        expectError(await a.put(`/v1/skus/${dropped}`, { dropId: 'dm-drop-two' }, ADMIN_TOKEN), 409, 'drop_mismatch');
        expectError(await a.put(`/v1/skus/${dropped}`, { dropId: null }, ADMIN_TOKEN), 409, 'drop_mismatch');
        expect((await getSku(a, dropped)).dropId).toBe('dm-drop-one');
        expect((await getSku(a, plain)).dropId).toBeNull();
        // The same dropId again is an ordinary update.
        expect((await a.put(`/v1/skus/${dropped}`, { dropId: 'dm-drop-one', maxPerBuyer: 3 }, ADMIN_TOKEN)).status).toBe(200);
      });

      it('answers 409 drop_mismatch for every placement of the SKU, its old drop and its new drop on the shards', async () => {
        // Every combination of (home shard of the SKU, shard of the old drop, shard of the new
        // drop) on 2 shards, so that each routing path of an upsert with a new dropId is used.
        const seen = new Set<string>();
        const cases: { sku: string; from: string; to: string; shape: string }[] = [];
        for (let i = 0; i < 400 && seen.size < 4; i++) {
          const sku = uniqWhere('dmr', () => true);
          const from = uniqWhere('dmr-from', () => true);
          const to = uniqWhere('dmr-to', () => true);
          const home = shardForSku(sku, null, 2);
          const where = (drop: string): string => (shardForSku(sku, drop, 2) === home ? 'home shard' : 'other shard');
          const shape = `old drop on ${where(from)}, new drop on ${where(to)}`;
          if (seen.has(shape)) continue;
          seen.add(shape);
          cases.push({ sku, from, to, shape });
        }
        expect(cases.length).toBe(4);
        const failures: string[] = [];
        for (const c of cases) {
          await createSku(a, c.sku, { stock: 1, dropId: c.from });
          const r = await a.put(`/v1/skus/${c.sku}`, { dropId: c.to }, ADMIN_TOKEN);
          if (r.status !== 409 || r.body?.error?.code !== 'drop_mismatch') failures.push(`${c.shape}: got ${r.status} ${r.text}`);
          expect((await getSku(a, c.sku)).dropId).toBe(c.from);
        }
        expect(failures).toEqual([]);
      });
    });

    describe('POST /v1/skus/{sku}/stock', () => {
      it('restocks with a positive delta and writes off with a negative one, answering 200 with the view', async () => {
        const sku = uniq('stock');
        await createSku(a, sku, { stock: 10 });
        const up = await a.post(`/v1/skus/${sku}/stock`, { delta: 50 }, ADMIN_TOKEN);
        expect(up.status).toBe(200);
        expectCounters(up.body, { onHand: 60, reserved: 0, sold: 0 });
        const down = await a.post(`/v1/skus/${sku}/stock`, { delta: -20 }, ADMIN_TOKEN);
        expect(down.status).toBe(200);
        expectCounters(down.body, { onHand: 40, reserved: 0, sold: 0 });
      });

      it('answers 409 insufficient_stock when a write-off would take available below zero, and changes nothing', async () => {
        const sku = uniq('stock-short');
        await createSku(a, sku, { stock: 5 });
        await reserveOk(a, { sku, buyerId: 'w1', qty: 2 });
        const before = await getSku(a, sku);
        expectError(await a.post(`/v1/skus/${sku}/stock`, { delta: -4 }, ADMIN_TOKEN), 409, 'insufficient_stock');
        expect(await getSku(a, sku)).toEqual(before);
        const ok = await a.post(`/v1/skus/${sku}/stock`, { delta: -3 }, ADMIN_TOKEN);
        expect(ok.status).toBe(200);
        expectCounters(ok.body, { onHand: 2, reserved: 2, sold: 0 });
      });

      it('answers 404 unknown_sku for stock of a SKU that does not exist', async () => {
        expectError(await a.post(`/v1/skus/${uniq('nope')}/stock`, { delta: 5 }, ADMIN_TOKEN), 404, 'unknown_sku');
      });
    });

    describe('GET /v1/skus/{sku}', () => {
      it('answers 200 with the view without any token', async () => {
        const sku = uniq('get');
        await createSku(a, sku, { stock: 4, maxPerBuyer: 3 });
        const r = await a.get(`/v1/skus/${sku}`);
        expect(r.status).toBe(200);
        expect(r.body).toMatchObject({ sku, onHand: 4, available: 4, reserved: 0, sold: 0, mode: 'pre_deduct', holdSeconds: 600, maxPerBuyer: 3 });
      });

      it('answers 404 unknown_sku for a SKU that does not exist', async () => {
        expectError(await a.get(`/v1/skus/${uniq('missing')}`), 404, 'unknown_sku');
      });

      it('keeps available = onHand - reserved - sold through reserve, pay and cancel', async () => {
        const sku = uniq('identity');
        await createSku(a, sku, { stock: 10 });
        const r1 = await reserveOk(a, { sku, buyerId: 'i1', qty: 3 });
        const r2 = await reserveOk(a, { sku, buyerId: 'i2', qty: 2 });
        await reserveOk(a, { sku, buyerId: 'i3', qty: 1 });
        expectCounters(await getSku(a, sku), { onHand: 10, reserved: 6, sold: 0 });
        expect((await a.post(`/v1/reservations/${r1.reservationId}/pay`, {})).status).toBe(200);
        expectCounters(await getSku(a, sku), { onHand: 10, reserved: 3, sold: 3 });
        expect((await a.post(`/v1/reservations/${r2.reservationId}/cancel`, {})).status).toBe(200);
        expectCounters(await getSku(a, sku), { onHand: 10, reserved: 1, sold: 3 });
      });
    });

    describe('POST /v1/reservations', () => {
      it('answers 201 with {reservationId, sku, buyerId, qty, status: held, expiresAt}', async () => {
        const sku = uniq('res');
        await createSku(a, sku, { stock: 5, holdSeconds: 120 });
        const before = Date.now();
        const r = await reserve(a, { sku, buyerId: 'buyer-1', qty: 2 });
        expect(r.status).toBe(201);
        expect(r.headers.get('content-type')).toMatch(/^application\/json/);
        expect(r.body).toMatchObject({ sku, buyerId: 'buyer-1', qty: 2, status: 'held' });
        expect(r.body.reservationId).toBeTypeOf('string');
        expect(r.body.reservationId.length).toBeGreaterThan(0);
        expect(r.body.expiresAt).toBeGreaterThanOrEqual(before + 120_000 - 1000);
        expect(r.body.expiresAt).toBeLessThanOrEqual(Date.now() + 120_000 + 1000);
        expect(r.headers.get('idempotent-replayed')).toBeNull();
      });

      it('reserves qty 1 when qty is absent', async () => {
        const sku = uniq('res-qty');
        await createSku(a, sku, { stock: 5 });
        expect((await reserveOk(a, { sku, buyerId: 'q' })).qty).toBe(1);
        expectCounters(await getSku(a, sku), { onHand: 5, reserved: 1, sold: 0 });
      });

      it('ignores unknown body fields', async () => {
        const sku = uniq('res-extra');
        await createSku(a, sku, { stock: 5 });
        expect((await reserveOk(a, { sku, buyerId: 'x', qty: 1, color: 'red', nested: { a: [1, 2] } })).qty).toBe(1);
      });

      it('answers 409 sold_out when fewer units are available than asked, and holds nothing', async () => {
        const sku = uniq('soldout');
        await createSku(a, sku, { stock: 3 });
        await reserveOk(a, { sku, buyerId: 's1', qty: 2 });
        expectError(await reserve(a, { sku, buyerId: 's2', qty: 2 }), 409, 'sold_out');
        await reserveOk(a, { sku, buyerId: 's2', qty: 1 });
        expectError(await reserve(a, { sku, buyerId: 's3', qty: 1 }), 409, 'sold_out');
        expectCounters(await getSku(a, sku), { onHand: 3, reserved: 3, sold: 0 });
      });

      it('answers 409 quota_exceeded when a buyer would pass maxPerBuyer, counting held and bought units', async () => {
        const sku = uniq('quota');
        await createSku(a, sku, { stock: 100, maxPerBuyer: 2 });
        expectError(await reserve(a, { sku, buyerId: 'qb', qty: 3 }), 409, 'quota_exceeded');
        const first = await reserveOk(a, { sku, buyerId: 'qb', qty: 1 });
        expect((await a.post(`/v1/reservations/${first.reservationId}/pay`, {})).status).toBe(200);
        const second = await reserveOk(a, { sku, buyerId: 'qb', qty: 1 });
        expectError(await reserve(a, { sku, buyerId: 'qb', qty: 1 }), 409, 'quota_exceeded');
        // Another buyer is not affected; a cancelled hold gives the quota back, a paid one does not.
        await reserveOk(a, { sku, buyerId: 'qb-other', qty: 2 });
        expect((await a.post(`/v1/reservations/${second.reservationId}/cancel`, {})).status).toBe(200);
        await reserveOk(a, { sku, buyerId: 'qb', qty: 1 });
        expectError(await reserve(a, { sku, buyerId: 'qb', qty: 1 }), 409, 'quota_exceeded');
        expectCounters(await getSku(a, sku), { onHand: 100, reserved: 3, sold: 1 });
      });

      it('places no per-buyer limit when maxPerBuyer is 0', async () => {
        const sku = uniq('noquota');
        await createSku(a, sku, { stock: 2000, maxPerBuyer: 0 });
        await reserveOk(a, { sku, buyerId: 'whale', qty: 1000 });
        await reserveOk(a, { sku, buyerId: 'whale', qty: 1000 });
        expectError(await reserve(a, { sku, buyerId: 'whale', qty: 1 }), 409, 'sold_out');
      });

      it('shares one per-buyer quota across the SKUs of one drop', async () => {
        const drop = uniq('drop');
        const skuA = uniq('dropA');
        const skuB = uniq('dropB');
        await createSku(a, skuA, { stock: 50, maxPerBuyer: 2, dropId: drop });
        await createSku(a, skuB, { stock: 50, maxPerBuyer: 2, dropId: drop });
        expect((await getSku(a, skuA)).dropId).toBe(drop);
        const held = await reserveOk(a, { sku: skuA, buyerId: 'dq', qty: 1 });
        await reserveOk(a, { sku: skuB, buyerId: 'dq', qty: 1 });
        expectError(await reserve(a, { sku: skuA, buyerId: 'dq', qty: 1 }), 409, 'quota_exceeded');
        expectError(await reserve(a, { sku: skuB, buyerId: 'dq', qty: 1 }), 409, 'quota_exceeded');
        await reserveOk(a, { sku: skuB, buyerId: 'dq-other', qty: 2 });
        expect((await a.post(`/v1/reservations/${held.reservationId}/cancel`, {})).status).toBe(200);
        await reserveOk(a, { sku: skuB, buyerId: 'dq', qty: 1 });
        expectCounters(await getSku(a, skuA), { onHand: 50, reserved: 0, sold: 0 });
        expectCounters(await getSku(a, skuB), { onHand: 50, reserved: 4, sold: 0 });
      });

      it('answers 409 not_on_sale before startsAt and from endsAt on, and sells inside the window', async () => {
        const now = Date.now();
        const future = uniq('win-future');
        const past = uniq('win-past');
        const opening = uniq('win-opening');
        const closing = uniq('win-closing');
        await createSku(a, future, { stock: 5, startsAt: now + 3_600_000 });
        await createSku(a, past, { stock: 5, startsAt: now - 3_600_000, endsAt: now - 1000 });
        await createSku(a, opening, { stock: 5, startsAt: now + 1500 });
        await createSku(a, closing, { stock: 5, endsAt: now + 1500 });
        expectError(await reserve(a, { sku: future, buyerId: 'w' }), 409, 'not_on_sale');
        expectError(await reserve(a, { sku: past, buyerId: 'w' }), 409, 'not_on_sale');
        expectError(await reserve(a, { sku: opening, buyerId: 'w' }), 409, 'not_on_sale');
        await reserveOk(a, { sku: closing, buyerId: 'w' });
        await sleep(Math.max(0, now + 1600 - Date.now()));
        await reserveOk(a, { sku: opening, buyerId: 'w' });
        expectError(await reserve(a, { sku: closing, buyerId: 'w2' }), 409, 'not_on_sale');
        for (const sku of [future, past]) expectCounters(await getSku(a, sku), { onHand: 5, reserved: 0, sold: 0 });
      });

      it('answers 404 unknown_sku for a SKU that does not exist', async () => {
        expectError(await reserve(a, { sku: uniq('ghost'), buyerId: 'g' }), 404, 'unknown_sku');
      });

      it('answers 403 buyer_blocked when the account is younger than minAccountAgeSeconds or its age is unknown', async () => {
        const sku = uniq('risk-age');
        await createSku(a, sku, { stock: 10, minAccountAgeSeconds: 86_400 });
        expectError(await reserve(a, { sku, buyerId: 'r1' }), 403, 'buyer_blocked');
        expectError(await reserve(a, { sku, buyerId: 'r1', accountCreatedAt: Date.now() - 3_600_000 }), 403, 'buyer_blocked');
        await reserveOk(a, { sku, buyerId: 'r1', accountCreatedAt: Date.now() - 2 * 86_400_000 });
        expectCounters(await getSku(a, sku), { onHand: 10, reserved: 1, sold: 0 });
      });

      it('answers 403 buyer_blocked when the buyer has fewer pastOrders than minPastOrders', async () => {
        const sku = uniq('risk-orders');
        await createSku(a, sku, { stock: 10, minPastOrders: 3 });
        expectError(await reserve(a, { sku, buyerId: 'p1' }), 403, 'buyer_blocked');
        expectError(await reserve(a, { sku, buyerId: 'p1', pastOrders: 2 }), 403, 'buyer_blocked');
        await reserveOk(a, { sku, buyerId: 'p1', pastOrders: 3 });
        expectCounters(await getSku(a, sku), { onHand: 10, reserved: 1, sold: 0 });
      });
    });

    describe('idempotency of POST /v1/reservations', () => {
      it('answers the first reservation again for the same buyer and key, holds nothing more, and marks the replay', async () => {
        const sku = uniq('idem');
        await createSku(a, sku, { stock: 10 });
        const body = { sku, buyerId: 'ib', qty: 2, idempotencyKey: 'order-1' };
        const first = await reserve(a, body);
        expect(first.status).toBe(201);
        const again = await reserve(a, body);
        expect(again.status).toBe(201);
        expect(again.body).toEqual(first.body);
        expect(again.headers.get('idempotent-replayed')).toBe('true');
        expectCounters(await getSku(a, sku), { onHand: 10, reserved: 2, sold: 0 });
      });

      it('treats the same key from another buyer as a new reservation', async () => {
        const sku = uniq('idem-buyers');
        await createSku(a, sku, { stock: 10 });
        const one = await reserveOk(a, { sku, buyerId: 'ia', idempotencyKey: 'k' });
        const two = await reserveOk(a, { sku, buyerId: 'ib', idempotencyKey: 'k' });
        expect(two.reservationId).not.toBe(one.reservationId);
        expectCounters(await getSku(a, sku), { onHand: 10, reserved: 2, sold: 0 });
      });

      it('answers the first reservation again when a buyer reuses a key for another qty, holding nothing more (API.md)', async () => {
        const sku = uniq('idem-qty');
        await createSku(a, sku, { stock: 10 });
        const first = await reserve(a, { sku, buyerId: 'ic', qty: 1, idempotencyKey: 'k1' });
        expect(first.status).toBe(201);
        const again = await reserve(a, { sku, buyerId: 'ic', qty: 2, idempotencyKey: 'k1' });
        expect(again.status).toBe(201);
        expect(again.body).toEqual(first.body);
        expect(again.headers.get('idempotent-replayed')).toBe('true');
        expectCounters(await getSku(a, sku), { onHand: 10, reserved: 1, sold: 0 });
      });

      it('treats a key reused for a SKU outside the drop as a separate request, the same on every shard', async () => {
        // A key names one request per SKU (or per drop). Find SKUs on both shards to show the
        // answer does not depend on where a SKU is hosted.
        const byShard = new Map<number, string>();
        for (let i = 0; i < 40 && byShard.size < 2; i++) {
          const sku = uniq(`idem-shard${i}`);
          await createSku(a, sku, { stock: 10 });
          const probe = await reserveOk(a, { sku, buyerId: 'probe' });
          if (!byShard.has(shardOfId(probe.reservationId))) byShard.set(shardOfId(probe.reservationId), sku);
        }
        expect(byShard.size).toBe(2);
        const first = byShard.get(0)!;
        const other = byShard.get(1)!;
        const sibling = uniqWhere('idem-same', (s) => shardForSku(s, null, 2) === 0);
        await createSku(a, sibling, { stock: 10 });

        const original = await reserveOk(a, { sku: first, buyerId: 'ix', idempotencyKey: 'cart-7' });
        const local = await reserve(a, { sku: sibling, buyerId: 'ix', idempotencyKey: 'cart-7' });
        const remote = await reserve(a, { sku: other, buyerId: 'ix', idempotencyKey: 'cart-7' });
        expect([local.status, remote.status]).toEqual([201, 201]);
        expect(new Set([original.reservationId, local.body.reservationId, remote.body.reservationId]).size).toBe(3);
        // Each request holds once, and repeating any of them holds nothing more.
        const again = await reserve(a, { sku: other, buyerId: 'ix', idempotencyKey: 'cart-7' });
        expect(again.body.reservationId).toBe(remote.body.reservationId);
        expectCounters(await getSku(a, other), { onHand: 10, reserved: 2, sold: 0 });
      });

      it('answers the first reservation again when a buyer reuses a key for another SKU of the same drop, holding nothing more', async () => {
        const drop = uniq('idem-drop');
        const x = uniq('idem-dx');
        const y = uniq('idem-dy');
        await createSku(a, x, { stock: 10, dropId: drop });
        await createSku(a, y, { stock: 10, dropId: drop });
        const first = await reserveOk(a, { sku: x, buyerId: 'iy', idempotencyKey: 'cart-8' });
        const again = await reserve(a, { sku: y, buyerId: 'iy', idempotencyKey: 'cart-8' });
        expect(again.status).toBe(201);
        expect(again.body).toMatchObject({ reservationId: first.reservationId, sku: x });
        expectCounters(await getSku(a, y), { onHand: 10, reserved: 0, sold: 0 });
        expectCounters(await getSku(a, x), { onHand: 10, reserved: 1, sold: 0 });
      });
    });

    describe('POST /v1/reservations/{id}/pay', () => {
      it('answers 200 paid, and the same 200 when paid again, selling the units once', async () => {
        const sku = uniq('pay');
        await createSku(a, sku, { stock: 5 });
        const r = await reserveOk(a, { sku, buyerId: 'pb', qty: 2 });
        const paid = await a.post(`/v1/reservations/${r.reservationId}/pay`, { paymentRef: 'psp-123' });
        expect(paid.status).toBe(200);
        expect(paid.body).toMatchObject({ reservationId: r.reservationId, status: 'paid', sku, buyerId: 'pb', qty: 2 });
        const again = await a.post(`/v1/reservations/${r.reservationId}/pay`, { paymentRef: 'psp-123' });
        expect(again.status).toBe(200);
        expect(again.body).toEqual(paid.body);
        expectCounters(await getSku(a, sku), { onHand: 5, reserved: 0, sold: 2 });
      });

      it('accepts a pay call with no body at all', async () => {
        const sku = uniq('pay-nobody');
        await createSku(a, sku, { stock: 5 });
        const r = await reserveOk(a, { sku, buyerId: 'pn' });
        const paid = await a.raw('POST', `/v1/reservations/${r.reservationId}/pay`);
        expect(paid.status).toBe(200);
        expect(paid.body.status).toBe('paid');
      });

      it('answers 409 reservation_cancelled for a cancelled reservation', async () => {
        const sku = uniq('pay-cancelled');
        await createSku(a, sku, { stock: 5 });
        const r = await reserveOk(a, { sku, buyerId: 'pc' });
        expect((await a.post(`/v1/reservations/${r.reservationId}/cancel`, {})).status).toBe(200);
        expectError(await a.post(`/v1/reservations/${r.reservationId}/pay`, {}), 409, 'reservation_cancelled');
        expectCounters(await getSku(a, sku), { onHand: 5, reserved: 0, sold: 0 });
      });

      it('answers 404 unknown_reservation for an id that was never issued', async () => {
        expectError(await a.post('/v1/reservations/0.zzzzzzzzzz/pay', {}), 404, 'unknown_reservation');
        expectError(await a.post('/v1/reservations/1.abc/pay', {}), 404, 'unknown_reservation');
        expectError(await a.post('/v1/reservations/not-an-id/pay', {}), 404, 'unknown_reservation');
      });

      it('answers 410 reservation_expired after the hold ran out, and 200 expired to a cancel', async () => {
        const sku = uniq('pay-expired');
        await createSku(a, sku, { stock: 5, holdSeconds: 1 });
        const r = await reserveOk(a, { sku, buyerId: 'pe' });
        await sleep(Math.max(0, r.expiresAt - Date.now()) + 150);
        expectError(await a.post(`/v1/reservations/${r.reservationId}/pay`, {}), 410, 'reservation_expired');
        expectError(await a.post(`/v1/reservations/${r.reservationId}/pay`, {}), 410, 'reservation_expired');
        const cancel = await a.post(`/v1/reservations/${r.reservationId}/cancel`, {});
        expect(cancel.status).toBe(200);
        expect(cancel.body.status).toBe('expired');
        expect((await a.get(`/v1/reservations/${r.reservationId}`)).body.status).toBe('expired');
        expectCounters(await getSku(a, sku), { onHand: 5, reserved: 0, sold: 0 });
      });
    });

    describe('POST /v1/reservations/{id}/cancel', () => {
      it('answers 200 cancelled, gives the units back, and is idempotent', async () => {
        const sku = uniq('cancel');
        await createSku(a, sku, { stock: 5 });
        const r = await reserveOk(a, { sku, buyerId: 'cb', qty: 3 });
        const c1 = await a.post(`/v1/reservations/${r.reservationId}/cancel`, {});
        expect(c1.status).toBe(200);
        expect(c1.body.status).toBe('cancelled');
        const c2 = await a.post(`/v1/reservations/${r.reservationId}/cancel`, {});
        expect(c2.status).toBe(200);
        expect(c2.body.status).toBe('cancelled');
        expectCounters(await getSku(a, sku), { onHand: 5, reserved: 0, sold: 0 });
      });

      it('answers 409 already_paid for a paid reservation and keeps the sale', async () => {
        const sku = uniq('cancel-paid');
        await createSku(a, sku, { stock: 5 });
        const r = await reserveOk(a, { sku, buyerId: 'cp' });
        expect((await a.post(`/v1/reservations/${r.reservationId}/pay`, {})).status).toBe(200);
        expectError(await a.post(`/v1/reservations/${r.reservationId}/cancel`, {}), 409, 'already_paid');
        expect((await a.get(`/v1/reservations/${r.reservationId}`)).body.status).toBe('paid');
        expectCounters(await getSku(a, sku), { onHand: 5, reserved: 0, sold: 1 });
      });

      it('answers 404 unknown_reservation for an id that was never issued', async () => {
        expectError(await a.post('/v1/reservations/0.zzzzzzzzzz/cancel', {}), 404, 'unknown_reservation');
        expectError(await a.post('/v1/reservations/whatever/cancel', {}), 404, 'unknown_reservation');
      });
    });

    describe('POST /v1/reservations/{id}/refund', () => {
      it('refunds a paid order: with restock its units are available again, without they leave stock; again the same 200', async () => {
        const sku = uniq('refund');
        await createSku(a, sku, { stock: 5, maxPerBuyer: 2 });
        const paid: any[] = [];
        for (const buyerId of ['ra', 'rb']) {
          const r = await reserveOk(a, { sku, buyerId, qty: 2 });
          const p = await a.post(`/v1/reservations/${r.reservationId}/pay`, {});
          expect(p.status).toBe(200);
          paid.push(p.body);
        }
        expectCounters(await getSku(a, sku), { onHand: 5, reserved: 0, sold: 4 });
        const restocked = await a.post(`/v1/reservations/${paid[0].reservationId}/refund`, {});
        expect(restocked.status, restocked.text).toBe(200);
        expect(restocked.body).toMatchObject({ reservationId: paid[0].reservationId, status: 'refunded', restock: true, paidAt: paid[0].paidAt });
        expectCounters(await getSku(a, sku), { onHand: 5, reserved: 0, sold: 2 });
        const damaged = await a.post(`/v1/reservations/${paid[1].reservationId}/refund`, { restock: false, reason: 'damaged' });
        expect(damaged.status, damaged.text).toBe(200);
        expect(damaged.body).toMatchObject({ status: 'refunded', restock: false, refundReason: 'damaged' });
        expectCounters(await getSku(a, sku), { onHand: 3, reserved: 0, sold: 0 });
        expect((await getSku(a, sku)).refunded).toBe(4);
        const again = await a.post(`/v1/reservations/${paid[1].reservationId}/refund`, {});
        expect(again.status).toBe(200);
        expect(again.body).toEqual(damaged.body);
        // Both buyers' quotas are back.
        await reserveOk(a, { sku, buyerId: 'ra', qty: 2 });
        expect((await a.get(`/v1/reservations/${paid[0].reservationId}`)).body).toEqual(restocked.body);
      });

      it('answers 409 not_paid for a held or cancelled reservation and 404 for an unknown one, changing nothing', async () => {
        const sku = uniq('refund-unpaid');
        await createSku(a, sku, { stock: 5 });
        const held = await reserveOk(a, { sku, buyerId: 'rc' });
        const cancelled = await reserveOk(a, { sku, buyerId: 'rd' });
        expect((await a.post(`/v1/reservations/${cancelled.reservationId}/cancel`, {})).status).toBe(200);
        expectError(await a.post(`/v1/reservations/${held.reservationId}/refund`, {}), 409, 'not_paid');
        expectError(await a.post(`/v1/reservations/${cancelled.reservationId}/refund`, {}), 409, 'not_paid');
        expectError(await a.post('/v1/reservations/0.zzzzzzzzzz/refund', {}), 404, 'unknown_reservation');
        expectCounters(await getSku(a, sku), { onHand: 5, reserved: 1, sold: 0 });
      });
    });

    describe('GET /v1/reservations/{id}', () => {
      it('answers 200 with status held, paid or cancelled as the reservation moves', async () => {
        const sku = uniq('get-res');
        await createSku(a, sku, { stock: 5 });
        const toPay = await reserveOk(a, { sku, buyerId: 'g1' });
        const toCancel = await reserveOk(a, { sku, buyerId: 'g2' });
        const held = await a.get(`/v1/reservations/${toPay.reservationId}`);
        expect(held.status).toBe(200);
        expect(held.body).toMatchObject({ reservationId: toPay.reservationId, sku, buyerId: 'g1', qty: 1, status: 'held', expiresAt: toPay.expiresAt });
        await a.post(`/v1/reservations/${toPay.reservationId}/pay`, {});
        await a.post(`/v1/reservations/${toCancel.reservationId}/cancel`, {});
        expect((await a.get(`/v1/reservations/${toPay.reservationId}`)).body.status).toBe('paid');
        expect((await a.get(`/v1/reservations/${toCancel.reservationId}`)).body.status).toBe('cancelled');
      });

      it('answers 404 unknown_reservation for an id that was never issued', async () => {
        expectError(await a.get('/v1/reservations/0.zzzzzzzzzz'), 404, 'unknown_reservation');
        expectError(await a.get('/v1/reservations/abc'), 404, 'unknown_reservation');
      });
    });

    describe('expiry', () => {
      it('expires a held reservation and frees its units within one second of expiresAt, with no call from anyone, in every mode', async () => {
        // Progress is watched through /metrics only: its gauges read shard stats, which never
        // run a shard turn, so a sweep can only come from the engine's own timer (a GET of the
        // SKU or reservation would itself trigger the sweep and hide a missing timer).
        const skus = { pre_deduct: uniq('exp-pre'), on_order: uniq('exp-order'), on_payment: uniq('exp-pay') } as const;
        const holds: { mode: keyof typeof skus; sku: string; id: string; expiresAt: number }[] = [];
        for (const [mode, sku] of Object.entries(skus) as [keyof typeof skus, string][]) {
          await createSku(a, sku, { stock: 4, mode, holdSeconds: 1, maxPerBuyer: 2 });
          const r = await reserveOk(a, { sku, buyerId: 'ex', qty: 2 });
          holds.push({ mode, sku, id: r.reservationId, expiresAt: r.expiresAt });
        }
        expectCounters(await getSku(a, skus.pre_deduct), { onHand: 4, reserved: 2, sold: 0 });
        expectCounters(await getSku(a, skus.on_order), { onHand: 4, reserved: 2, sold: 0 });
        const freedAt = new Map<string, number>();
        const deadline = Math.max(...holds.map((h) => h.expiresAt)) + 3000;
        while (freedAt.size < 2 && Date.now() < deadline) {
          const text = (await a.get('/metrics')).text;
          for (const h of holds) {
            if (h.mode === 'on_payment' || freedAt.has(h.sku)) continue;
            if (metricValue(text, 'flash_sku_available', { sku: h.sku }) === 4) freedAt.set(h.sku, Date.now());
          }
          await sleep(40);
        }
        for (const h of holds) {
          if (h.mode === 'on_payment') continue;
          const at = freedAt.get(h.sku);
          expect(at, `${h.mode}: units never came back`).toBeDefined();
          expect(at!, `${h.mode}: units came back before expiresAt`).toBeGreaterThanOrEqual(h.expiresAt);
          expect(at! - h.expiresAt, `${h.mode}: units came back ${at! - h.expiresAt} ms after expiresAt`).toBeLessThanOrEqual(1500);
        }
        for (const h of holds) {
          const r = await a.get(`/v1/reservations/${h.id}`);
          expect(r.body.status, h.mode).toBe('expired');
          expectCounters(await getSku(a, h.sku), { onHand: 4, reserved: 0, sold: 0 });
          // The quota came back too.
          await reserveOk(a, { sku: h.sku, buyerId: 'ex', qty: 2 });
        }
      });
    });

    describe('modes', () => {
      it('pre_deduct holds the units until paid or cancelled', async () => {
        const sku = uniq('mode-pre');
        await createSku(a, sku, { stock: 4, mode: 'pre_deduct' });
        const r1 = await reserveOk(a, { sku, buyerId: 'm1', qty: 2 });
        const r2 = await reserveOk(a, { sku, buyerId: 'm2', qty: 2 });
        expectCounters(await getSku(a, sku), { onHand: 4, reserved: 4, sold: 0 });
        expectError(await reserve(a, { sku, buyerId: 'm3' }), 409, 'sold_out');
        await a.post(`/v1/reservations/${r1.reservationId}/pay`, {});
        await a.post(`/v1/reservations/${r2.reservationId}/cancel`, {});
        expectCounters(await getSku(a, sku), { onHand: 4, reserved: 0, sold: 2 });
        await reserveOk(a, { sku, buyerId: 'm3', qty: 2 });
      });

      it('on_order deducts the units at once and a cancel gives them back', async () => {
        const sku = uniq('mode-order');
        await createSku(a, sku, { stock: 4, mode: 'on_order' });
        const r1 = await reserveOk(a, { sku, buyerId: 'o1', qty: 3 });
        expect((await getSku(a, sku)).available).toBe(1);
        expectError(await reserve(a, { sku, buyerId: 'o2', qty: 2 }), 409, 'sold_out');
        const r2 = await reserveOk(a, { sku, buyerId: 'o2', qty: 1 });
        expect((await getSku(a, sku)).available).toBe(0);
        expect((await a.post(`/v1/reservations/${r1.reservationId}/cancel`, {})).status).toBe(200);
        expect((await getSku(a, sku)).available).toBe(3);
        expect((await a.post(`/v1/reservations/${r2.reservationId}/pay`, {})).status).toBe(200);
        const view = await getSku(a, sku);
        expect(view).toMatchObject({ onHand: 4, sold: 1, available: 3 });
        expect(view.available).toBe(view.onHand - view.reserved - view.sold);
      });

      it('on_payment holds nothing at reserve, takes the units at pay, and answers 409 sold_out to a pay when they are gone', async () => {
        const sku = uniq('mode-pay');
        await createSku(a, sku, { stock: 1, mode: 'on_payment', maxPerBuyer: 1 });
        const r1 = await reserveOk(a, { sku, buyerId: 'op1' });
        const r2 = await reserveOk(a, { sku, buyerId: 'op2' });
        expectCounters(await getSku(a, sku), { onHand: 1, reserved: 0, sold: 0 });
        // The quota is checked at reserve even though nothing is held.
        expectError(await reserve(a, { sku, buyerId: 'op1' }), 409, 'quota_exceeded');
        expect((await a.post(`/v1/reservations/${r1.reservationId}/pay`, {})).status).toBe(200);
        expectCounters(await getSku(a, sku), { onHand: 1, reserved: 0, sold: 1 });
        expectError(await a.post(`/v1/reservations/${r2.reservationId}/pay`, {}), 409, 'sold_out');
        expectCounters(await getSku(a, sku), { onHand: 1, reserved: 0, sold: 1 });
        // Availability is checked at reserve too.
        expectError(await reserve(a, { sku, buyerId: 'op3' }), 409, 'sold_out');
      });

      it('keeps the mode a reservation was made in when the SKU policy changes', async () => {
        const sku = uniq('mode-change');
        await createSku(a, sku, { stock: 3, mode: 'pre_deduct' });
        const held = await reserveOk(a, { sku, buyerId: 'mc' });
        expect((await a.put(`/v1/skus/${sku}`, { mode: 'on_payment' }, ADMIN_TOKEN)).status).toBe(200);
        expectCounters(await getSku(a, sku), { onHand: 3, reserved: 1, sold: 0 });
        expect((await a.post(`/v1/reservations/${held.reservationId}/pay`, {})).status).toBe(200);
        expectCounters(await getSku(a, sku), { onHand: 3, reserved: 0, sold: 1 });
      });
    });

    describe('admin authorization', () => {
      it('answers 401 unauthorized to admin calls without a token, with a wrong token or another scheme, and changes nothing', async () => {
        const sku = uniq('auth');
        await createSku(a, sku, { stock: 5 });
        const before = await getSku(a, sku);
        const attempts: [string, Record<string, string>][] = [
          ['no header', {}],
          ['wrong token', { authorization: 'Bearer not-the-token' }],
          ['token prefix', { authorization: `Bearer ${ADMIN_TOKEN.slice(0, -1)}` }],
          ['token with suffix', { authorization: `Bearer ${ADMIN_TOKEN}x` }],
          ['basic scheme', { authorization: `Basic ${Buffer.from(`admin:${ADMIN_TOKEN}`).toString('base64')}` }],
          ['bare token', { authorization: ADMIN_TOKEN }],
          ['empty bearer', { authorization: 'Bearer ' }],
        ];
        for (const [label, headers] of attempts) {
          const put = await a.raw('PUT', `/v1/skus/${sku}`, { body: JSON.stringify({ maxPerBuyer: 9 }), headers, token: NO_TOKEN });
          expect(put.status, label).toBe(401);
          expectError(put, 401, 'unauthorized');
          expect(put.headers.get('www-authenticate'), label).toMatch(/^Bearer\b/);
          expectError(await a.raw('POST', `/v1/skus/${sku}/stock`, { body: JSON.stringify({ delta: 5 }), headers, token: NO_TOKEN }), 401, 'unauthorized');
          expectError(await a.raw('PUT', `/v1/skus/${uniq('auth-new')}`, { body: JSON.stringify({ stock: 5 }), headers, token: NO_TOKEN }), 401, 'unauthorized');
        }
        expect(await getSku(a, sku)).toEqual(before);
      });

      it('refuses admin calls with 401 when no token is configured and FLASH_DEV is off', async () => {
        const bare = await target.startVariant({ FLASH_ADMIN_TOKEN: '' });
        try {
          const b = api(bare.url);
          const sku = uniq('notoken');
          expectError(await b.put(`/v1/skus/${sku}`, { stock: 5 }), 401, 'unauthorized');
          expectError(await b.put(`/v1/skus/${sku}`, { stock: 5 }, ADMIN_TOKEN), 401, 'unauthorized');
          expectError(await b.raw('PUT', `/v1/skus/${sku}`, { body: '{"stock":5}', headers: { authorization: 'Bearer ' } }), 401, 'unauthorized');
          expectError(await b.post(`/v1/skus/${sku}/stock`, { delta: 5 }), 401, 'unauthorized');
          expectError(await b.get(`/v1/skus/${sku}`), 404, 'unknown_sku');
        } finally {
          expect(await bare.stop()).toBe(0);
        }
      });

      it('allows every call without a token only in the explicit development mode FLASH_DEV=1', async () => {
        const dev = await target.startVariant({ FLASH_ADMIN_TOKEN: '', FLASH_TOKENS_FILE: '', FLASH_BUYER_TOKEN_SECRET: '', FLASH_DEV: '1' });
        try {
          const d = api(dev.url);
          const sku = uniq('dev');
          expect((await d.put(`/v1/skus/${sku}`, { stock: 5 }, NO_TOKEN)).status).toBe(201);
          expect((await d.post(`/v1/skus/${sku}/stock`, { delta: 1 }, NO_TOKEN)).status).toBe(200);
          const held = await d.post('/v1/reservations', { sku, buyerId: 'laptop-user' }, NO_TOKEN);
          expect(held.status, held.text).toBe(201);
          expect((await d.post(`/v1/reservations/${held.body.reservationId}/pay`, {}, NO_TOKEN)).status).toBe(200);
        } finally {
          expect(await dev.stop()).toBe(0);
        }
      });

      it('refuses to start with an admin token shorter than 8 characters, naming the variable', async () => {
        const { code, logs } = await target.runVariantToExit({ FLASH_ADMIN_TOKEN: 'short' });
        expect(code).not.toBe(0);
        expect(logs).toContain('FLASH_ADMIN_TOKEN');
      });

      it('refuses a LOG_LEVEL that is not a level with the same clean error as any setting (exit 2, no stack trace)', async () => {
        const { code, logs } = await target.runVariantToExit({ LOG_LEVEL: 'verbose' });
        expect(code).toBe(2);
        expect(logs).toContain('LOG_LEVEL=verbose is not a log level');
        expect(logs).not.toMatch(/\n\s+at /);
      });
    });

    describe('rate limits', () => {
      it('answers 429 rate_limited with retry-after past FLASH_BUYER_RPS for one buyer, without touching other buyers or stock', async () => {
        const limited = await target.startVariant({ FLASH_BUYER_RPS: '1' });
        try {
          const b = api(limited.url);
          const sku = uniq('rl-buyer');
          await createSku(b, sku, { stock: 100 });
          const burst = await Promise.all(Array.from({ length: 5 }, () => reserve(b, { sku, buyerId: 'hot' })));
          const ok = burst.filter((r) => r.status === 201).length;
          const refused = burst.filter((r) => r.status === 429);
          expect(ok).toBeGreaterThanOrEqual(1);
          expect(ok).toBeLessThanOrEqual(2);
          expect(refused.length).toBe(5 - ok);
          for (const r of refused) {
            expectError(r, 429, 'rate_limited');
            expect(r.headers.get('retry-after')).toMatch(/^[1-9]\d*$/);
          }
          await reserveOk(b, { sku, buyerId: 'cold' });
          expectCounters(await getSku(b, sku), { onHand: 100, reserved: ok + 1, sold: 0 });
          // After waiting as told, the buyer is served again.
          await sleep(Number(refused[0]!.headers.get('retry-after')) * 1000 + 50);
          await reserveOk(b, { sku, buyerId: 'hot' });
        } finally {
          expect(await limited.stop()).toBe(0);
        }
      });

      it('answers 429 rate_limited with retry-after past FLASH_IP_RPS for one client IP', async () => {
        const limited = await target.startVariant({ FLASH_IP_RPS: '1', FLASH_BUYER_RPS: '0', FLASH_TRUST_PROXY: '1' });
        try {
          const b = api(limited.url);
          const sku = uniq('rl-ip');
          await createSku(b, sku, { stock: 100 });
          const fromIp = (ip: string, buyerId: string) => reserve(b, { sku, buyerId }, { 'x-forwarded-for': ip, 'content-type': 'application/json' });
          const burst = await Promise.all(Array.from({ length: 5 }, (_, i) => fromIp('10.1.1.1', `ip-buyer-${i}`)));
          const ok = burst.filter((r) => r.status === 201).length;
          const refused = burst.filter((r) => r.status === 429);
          expect(ok).toBeGreaterThanOrEqual(1);
          expect(ok).toBeLessThanOrEqual(2);
          expect(refused.length).toBe(5 - ok);
          for (const r of refused) {
            expectError(r, 429, 'rate_limited');
            expect(r.headers.get('retry-after')).toMatch(/^[1-9]\d*$/);
          }
          // Another client is not limited; a spoofed left-most entry does not escape the limit.
          expect((await fromIp('10.2.2.2', 'ip-other')).status).toBe(201);
          expectError(await fromIp('10.9.9.9, 10.1.1.1', 'ip-spoof'), 429, 'rate_limited');
          expectCounters(await getSku(b, sku), { onHand: 100, reserved: ok + 1, sold: 0 });
        } finally {
          expect(await limited.stop()).toBe(0);
        }
      });
    });

    describe('503 answers', () => {
      it('answers 503 overloaded at once when a shard mailbox is full, never a hung request', async () => {
        const tight = await target.startVariant({ FLASH_MAILBOX_MAX: '1' });
        try {
          const b = api(tight.url);
          const sku = uniq('overload');
          await createSku(b, sku, { stock: 10 });
          const replies = await Promise.all(Array.from({ length: 60 }, () => b.get(`/v1/skus/${sku}`)));
          const overloaded = replies.filter((r) => r.status === 503);
          expect(overloaded.length).toBeGreaterThan(0);
          for (const r of overloaded) expectError(r, 503, 'overloaded');
          for (const r of replies) expect([200, 503]).toContain(r.status);
          // Every 5xx is counted by its code, so overload is told apart from an unavailable shard.
          const text = (await b.get('/metrics')).text;
          expect(metricValue(text, 'flash_errors_total', { route: 'GET /v1/skus/{sku}', code: 'overloaded' })).toBe(overloaded.length);
        } finally {
          expect(await tight.stop()).toBe(0);
        }
      });
    });

    describe('GET /v1/skus and the audit trail', () => {
      it('lists every SKU of every shard once, in sku order, page after page', async () => {
        const prefix = uniq('list');
        const mine = ['b', 'a', 'e', 'c', 'd'].map((x) => `${prefix}-${x}`);
        for (const sku of mine) await createSku(a, sku, { stock: 3 });
        const all: string[] = [];
        let cursor: string | null = null;
        do {
          const r = await a.get(`/v1/skus?limit=1000${cursor === null ? '' : `&cursor=${cursor}`}`, TOKENS.viewer);
          expect(r.status, r.text).toBe(200);
          expect(r.body.items.length).toBeLessThanOrEqual(1000);
          all.push(...r.body.items.map((v: { sku: string }) => v.sku));
          cursor = r.body.next;
        } while (cursor !== null);
        expect(all).toEqual([...new Set(all)].sort((x, y) => Buffer.compare(Buffer.from(x), Buffer.from(y))));
        const at = all.indexOf(`${prefix}-a`);
        expect(all.slice(at, at + 5)).toEqual([...mine].sort());
        // Small pages walk the same list: each continues where the last stopped.
        const paged: string[] = [];
        cursor = null;
        for (let i = 0; i < 3; i++) {
          const r = await a.get(`/v1/skus?limit=2${cursor === null ? '' : `&cursor=${cursor}`}`, TOKENS.viewer);
          expect(r.body.items).toHaveLength(2);
          expect(r.body.items[0]).toMatchObject({ sku: expect.any(String), onHand: expect.any(Number), available: expect.any(Number) });
          paged.push(...r.body.items.map((v: { sku: string }) => v.sku));
          cursor = r.body.next;
        }
        expect(paged).toEqual(all.slice(0, 6));
        // An empty `limit=` reads as absent (the default, 100), as an empty `cursor=` does.
        const emptyLimit = await a.get('/v1/skus?limit=&cursor=', TOKENS.viewer);
        expect(emptyLimit.status).toBe(200);
        expect(emptyLimit.body.items.map((v: { sku: string }) => v.sku)).toEqual(all.slice(0, Math.min(100, all.length)));
        expectError(await a.get('/v1/skus?limit=0', TOKENS.viewer), 400, 'invalid_request');
        expectError(await a.get('/v1/skus?limit=1001', TOKENS.viewer), 400, 'invalid_request');
        expectError(await a.get('/v1/skus?cursor=%%%', TOKENS.viewer), 400, 'invalid_request');
      });

      it('records who changed a SKU, when, what before and after, and why: newest first, paged', async () => {
        const sku = uniq('audit');
        const started = Date.now();
        expect((await a.put(`/v1/skus/${sku}`, { stock: 10, maxPerBuyer: 1, reason: 'new season' }, TOKENS.operator)).status).toBe(201);
        expect((await a.put(`/v1/skus/${sku}`, { maxPerBuyer: 2, reason: 'two per buyer' }, ADMIN_TOKEN)).status).toBe(200);
        expect((await a.post(`/v1/skus/${sku}/stock`, { delta: 5, reason: 'found a pallet' }, TOKENS.operator)).status).toBe(200);
        const r = await a.get(`/v1/skus/${sku}/audit`, TOKENS.viewer);
        expect(r.status, r.text).toBe(200);
        expect(r.body.next).toBeNull();
        expect(r.body.items).toMatchObject([
          { actor: 'ops-ann', action: 'stock', before: { onHand: 10, available: 10 }, after: { onHand: 15, available: 15 }, reason: 'found a pallet' },
          { actor: 'admin', action: 'update', before: { maxPerBuyer: 1 }, after: { maxPerBuyer: 2 }, reason: 'two per buyer' },
          { actor: 'ops-ann', action: 'create', before: null, after: { onHand: 10, maxPerBuyer: 1, mode: 'pre_deduct' }, reason: 'new season' },
        ]);
        for (const e of r.body.items) expect(e.at).toBeGreaterThanOrEqual(started - 1000);
        // Holds are not policy or stock changes: nothing more is recorded.
        await reserveOk(a, { sku, buyerId: 'audit-buyer' });
        expect((await a.get(`/v1/skus/${sku}/audit`, TOKENS.viewer)).body.items).toHaveLength(3);
        const first = await a.get(`/v1/skus/${sku}/audit?limit=2`, TOKENS.viewer);
        expect(first.body.items.map((e: { action: string }) => e.action)).toEqual(['stock', 'update']);
        const second = await a.get(`/v1/skus/${sku}/audit?limit=2&cursor=${first.body.next}`, TOKENS.viewer);
        expect([second.body.items.map((e: { action: string }) => e.action), second.body.next]).toEqual([['create'], null]);
        expectError(await a.get(`/v1/skus/${uniq('no-such')}/audit`, TOKENS.viewer), 404, 'unknown_sku');
        expectError(await a.get(`/v1/skus/${sku}/audit?cursor=abc`, TOKENS.viewer), 400, 'invalid_request');
      });

      it('records a stock import with the importing caller as the actor', async () => {
        const sku = uniq('audit-imp');
        const r = await a.raw('POST', '/v1/admin/stock-import', { body: `sku,stock,maxPerBuyer\n${sku},7,3\n`, headers: { 'content-type': 'text/csv' }, token: TOKENS.operator });
        expect(r.status, r.text).toBe(200);
        expect((await a.get(`/v1/skus/${sku}/audit`, TOKENS.viewer)).body.items).toMatchObject([
          { actor: 'ops-ann', action: 'create', before: null, after: { onHand: 7, maxPerBuyer: 3 }, reason: 'stock import' },
        ]);
      });
    });

    describe('the live console stream', () => {
      it('carries the stock events of every shard to the console, whichever node hosts it', async () => {
        const stream = await SseClient.open(`${target.url}/v1/console/stream`, TOKENS.viewer);
        try {
          expect(stream.status).toBe(200);
          // Two SKUs, most likely on different shards (and, over NATS, nodes): both sell out.
          const skus = [uniq('console-a'), uniq('console-b')];
          for (const sku of skus) {
            await createSku(a, sku, { stock: 1 });
            await reserveOk(a, { sku, buyerId: 'console-buyer' });
          }
          for (const sku of skus) {
            const e = await stream.waitFor((ev) => ev.event === 'stock' && (JSON.parse(ev.data) as { sku: string }).sku === sku, 30_000, `sold_out of ${sku}`);
            expect(JSON.parse(e.data)).toMatchObject({ type: 'sold_out', sku });
          }
        } finally {
          stream.close();
        }
      });
    });

    describe('stock import meeting existing SKUs', () => {
      it('keeps an existing SKU\'s stock and says so: stock applies on create only', async () => {
        const sku = uniq('imp-again');
        const send = (stock: number) => a.raw('POST', '/v1/admin/stock-import', { body: `sku,stock,maxPerBuyer\n${sku},${stock},2\n`, headers: { 'content-type': 'text/csv' }, token: TOKENS.operator });
        const first = await send(5);
        expect(first.body).toEqual({ skus: 1, created: 1, updated: 0, failed: 0 });
        const again = await send(50);
        expect(again.status, again.text).toBe(200);
        expect(again.body).toMatchObject({ skus: 1, created: 0, updated: 1, failed: 0, stockKept: 1 });
        expect(again.body.note).toContain('stock applies when a SKU is created');
        expect(again.body.note).toContain(sku);
        expect((await getSku(a, sku)).onHand).toBe(5);
      });
    });

    describe('drops and fair admission', () => {
      /** Polls a buyer's entry until `done` holds (the shard's clock admits, reveals and draws). */
      const entryWhen = async (dropId: string, buyerId: string, done: (e: any) => boolean): Promise<any> => {
        for (let i = 0; i < 400; i++) {
          const r = await a.get(`/v1/drops/${dropId}/queue/${buyerId}`, TOKENS.shop);
          expect(r.status, r.text).toBe(200);
          if (done(r.body)) return r.body;
          await sleep(25);
        }
        throw new Error(`entry of ${buyerId} in ${dropId} never reached the state waited for`);
      };

      it('a fifo queue admits in joining order, and only the admitted buyer reserves, once, in the shard of the drop', async () => {
        const dropId = uniq('c-fifo');
        const sku = uniq('c-fifo-sku');
        await createSku(a, sku, { stock: 10, dropId });
        const put = await a.put(`/v1/drops/${dropId}`, { queue: { mode: 'fifo', admitPerSecond: 2, admitSeconds: 600 } }, TOKENS.operator);
        expect(put.status, put.text).toBe(201);
        expect(put.body.queue.seedSha256).toMatch(/^[0-9a-f]{64}$/);
        const buyers = ['c-ann', 'c-bob', 'c-cy'];
        for (const b of buyers) expect((await a.post(`/v1/drops/${dropId}/queue`, { buyerId: b }, TOKENS.shop)).status).toBe(201);
        expectError(await reserve(a, { sku, buyerId: 'c-nobody' }), 403, 'not_admitted');
        const first = await entryWhen(dropId, 'c-ann', (e) => e.state === 'admitted');
        expect(first.admittedUntil).toBeGreaterThan(Date.now());
        const held = await reserveOk(a, { sku, buyerId: 'c-ann', idempotencyKey: 'c-k1' });
        expect((await a.get(`/v1/drops/${dropId}/queue/c-ann`, TOKENS.viewer)).body).toMatchObject({ state: 'used', reservationId: held.reservationId });
        expectError(await reserve(a, { sku, buyerId: 'c-ann', idempotencyKey: 'c-k2' }), 403, 'not_admitted');
        const last = await entryWhen(dropId, 'c-cy', (e) => e.state === 'admitted');
        const bob = (await a.get(`/v1/drops/${dropId}/queue/c-bob`, TOKENS.shop)).body;
        expect(bob.admittedAt).toBeLessThanOrEqual(last.admittedAt);
        expect(first.admittedAt).toBeLessThanOrEqual(bob.admittedAt);
        const view = (await a.get(`/v1/drops/${dropId}`, NO_TOKEN)).body;
        expect(view).toMatchObject({ dropId, skus: [sku], queue: { mode: 'fifo', entries: 3, used: 1, admitted: 2, waiting: 0 } });
      });

      it('a random order is published with its seed, and follows from it', async () => {
        const { createHash, createHmac } = await import('node:crypto');
        const dropId = uniq('c-random');
        await createSku(a, uniq('c-random-sku'), { stock: 5, dropId });
        expect((await a.put(`/v1/drops/${dropId}`, { queue: { mode: 'random', randomizeSeconds: 2, admitPerSecond: 1 } }, TOKENS.operator)).status).toBe(201);
        const buyers = Array.from({ length: 8 }, (_, i) => `c-r${i}`);
        for (const b of buyers) expect((await a.post(`/v1/drops/${dropId}/queue`, { buyerId: b }, TOKENS.shop)).status).toBe(201);
        let order = await a.get(`/v1/drops/${dropId}/order`, NO_TOKEN);
        for (let i = 0; i < 400 && order.status === 409; i++) {
          expect(order.body.error.code).toBe('order_not_fixed');
          await sleep(25);
          order = await a.get(`/v1/drops/${dropId}/order`, NO_TOKEN);
        }
        expect(order.status, order.text).toBe(200);
        const seed = Buffer.from(order.body.seed, 'hex');
        const view = (await a.get(`/v1/drops/${dropId}`, NO_TOKEN)).body;
        expect(createHash('sha256').update(seed).digest('hex')).toBe(view.queue.seedSha256);
        const expected = [...buyers]
          .sort((x, y) => Buffer.compare(createHmac('sha256', seed).update(x).digest(), createHmac('sha256', seed).update(y).digest()))
          .map((b) => createHash('sha256').update(b).digest('hex'));
        expect(order.body.order).toEqual(expected);
      });

      it('a draw holds the stock for the first winners of its seeded order, and refuses every reserve', async () => {
        const dropId = uniq('c-draw');
        const sku = uniq('c-draw-sku');
        await createSku(a, sku, { stock: 2, dropId, maxPerBuyer: 1, holdSeconds: 3600 });
        const closesAt = Date.now() + 1500;
        expect((await a.put(`/v1/drops/${dropId}`, { queue: { mode: 'draw', closesAt, qtyPerWinner: 1 } }, TOKENS.operator)).status).toBe(201);
        const buyers = Array.from({ length: 6 }, (_, i) => `c-d${i}`);
        for (const b of buyers) expect((await a.post(`/v1/drops/${dropId}/queue`, { buyerId: b }, TOKENS.shop)).body.state).toBe('entered');
        expectError(await reserve(a, { sku, buyerId: 'c-d0' }), 403, 'not_admitted');
        const states = [];
        for (const b of buyers) states.push(await entryWhen(dropId, b, (e) => e.state === 'won' || e.state === 'lost'));
        expect(states.filter((e) => e.state === 'won')).toHaveLength(2);
        expectCounters(await getSku(a, sku), { onHand: 2, reserved: 2, sold: 0 });
        const order = (await a.get(`/v1/drops/${dropId}/order`, NO_TOKEN)).body.order as string[];
        const { createHash } = await import('node:crypto');
        const winners = states.filter((e) => e.state === 'won').map((e) => createHash('sha256').update(e.buyerId).digest('hex'));
        expect(order.slice(0, 2).sort()).toEqual(winners.sort());
        expectError(await a.post(`/v1/drops/${dropId}/queue`, { buyerId: 'c-late' }, TOKENS.shop), 409, 'queue_closed');
      });
    });

    describe('operations', () => {
      it('answers GET /healthz with 200 {"status":"ok"}', async () => {
        const r = await a.get('/healthz');
        expect(r.status).toBe(200);
        expect(r.body).toMatchObject({ status: 'ok' });
      });

      it('serves Prometheus text on GET /metrics with request counters and per-SKU availability', async () => {
        const sku = uniq('metrics');
        await createSku(a, sku, { stock: 7 });
        await reserveOk(a, { sku, buyerId: 'mx', qty: 2 });
        const r = await a.get('/metrics');
        expect(r.status).toBe(200);
        expect(r.headers.get('content-type')).toMatch(/^text\/plain/);
        expect(r.text).toContain('# TYPE flash_http_requests_total counter');
        expect(metricValue(r.text, 'flash_http_requests_total', { status: '201' })).toBeGreaterThan(0);
        expect(metricValue(r.text, 'flash_sku_available', { sku })).toBe(5);
      });

      it('counts a low-stock crossing of lowStockThreshold in the metrics', async () => {
        const sku = uniq('lowstock');
        await createSku(a, sku, { stock: 5, lowStockThreshold: 2 });
        await reserveOk(a, { sku, buyerId: 'ls', qty: 3 });
        expect(await deploymentMetric(target, 'flash_stock_events_total', { type: 'low_stock', sku })).toBe(1);
      });

      it('serves GET /healthz and GET /metrics on every process to a scraper with or without a viewer token, and 401 to a bad token only where tokens are known', async () => {
        // Last of these tests: the per-SKU gauges read the shards' figures at most every 250 ms,
        // so a scrape just before the Prometheus test above would show it stale figures.
        // API.md: every role serves both probes; a shard node holds no credential to check a
        // token against, so there the header is not read (before: 401 to any token at all).
        for (const url of target.metricsUrls) {
          for (const path of ['/healthz', '/metrics']) {
            expect((await fetch(`${url}${path}`)).status, `${url}${path} without a token`).toBe(200);
            expect((await fetch(`${url}${path}`, { headers: { authorization: `Bearer ${TOKENS.viewer}` } })).status, `${url}${path} with a viewer token`).toBe(200);
          }
        }
        expectError(await a.get('/metrics', 'not-a-token-anyone-issued-43'), 401, 'unauthorized');
      });
    });

    describe('after the whole contract', () => {
      it('is still serving and logged no internal error', async () => {
        expect((await a.get('/healthz')).status).toBe(200);
        expect(target.logs().split('\n').filter((l) => /"level":(50|60)/.test(l))).toEqual([]);
      });
    });
  });
}
