// The log decides whether paid orders enter the ERP outbox, not the settings of whoever
// replays it (issue #10, item 4). The built engine, as its own process, on one data
// directory: started with an ERP, it sells and delivers some orders and is killed; started
// again WITHOUT any FLASH_ERP_* setting it starts (it used to refuse: "replay of record 4
// diverged"), keeps every order still owed, and does not queue what it sells; started with
// the ERP once more, it delivers exactly the orders that were owed: none lost, none of those
// paid while it was off, and repeats only with the same eventId and bytes.

import { afterAll, describe, expect, it } from 'vitest';
import { shardForSku } from '../src/domain/routing.js';
import { TOKENS, api, makeDataDir, startEngine, stopAllEngines, type Api } from './support/engine-process.js';
import { startStandInProcess, type StandInProcess } from './support/erp-standin-process.js';
import { createSku, noRefundUnits, uniqWhere, waitFor } from './support/http-kit.js';

const SECRET = 'erp-mode-secret-0123456789';
let erp: StandInProcess | null = null;

afterAll(async () => {
  await stopAllEngines();
  await erp?.close();
});


/** Pays `count` orders over `skus` (qty 1..3); returns reservation id -> qty. */
async function payOrders(a: Api, skus: string[], count: number, tag: string): Promise<Map<string, number>> {
  const paid = new Map<string, number>();
  for (let i = 0; i < count; i++) {
    const qty = 1 + (i % 3);
    const r = await a.post('/v1/reservations', { sku: skus[i % skus.length], buyerId: `${tag}-${i}`, qty }, TOKENS.shop);
    expect(r.status, r.text).toBe(201);
    const p = await a.post(`/v1/reservations/${r.body.reservationId}/pay`, { paymentRef: `${tag}-${i}` }, TOKENS.payments);
    expect(p.status, p.text).toBe(200);
    paid.set(r.body.reservationId as string, qty);
  }
  return paid;
}

const units = (m: Map<string, number>): number => [...m.values()].reduce((a, b) => a + b, 0);

async function report(a: Api): Promise<any> {
  const r = await a.get('/v1/admin/erp', TOKENS.viewer);
  expect(r.status, r.text).toBe(200);
  return r.body;
}

describe('the ERP outbox across restarts with different settings', () => {
  it('is decided by the log: a restart without ERP settings keeps what is owed, and the ERP later gets exactly that', async () => {
    erp = await startStandInProcess({ secret: SECRET, latencyMs: 60, jitterMs: 10, errorRate: 0, seed: 3 });
    const withErp = {
      FLASH_ERP_WEBHOOK_URL: erp.url, FLASH_ERP_SECRET: SECRET, FLASH_ERP_MAX_RPS: '20', FLASH_ERP_CONCURRENCY: '2',
      FLASH_ERP_POLL_MS: '50', FLASH_BUYER_RPS: '0',
    };
    const dataDir = makeDataDir();
    const skus = [0, 1].map((shard) => uniqWhere('erp-mode', (name) => shardForSku(name, null, 2) === shard));

    // 1. With the ERP: sell, let some be delivered and acknowledged, then kill -9.
    const first = await startEngine({ dataDir, env: withErp });
    const a = api(first.url);
    for (const sku of skus) await createSku(a, sku, { stock: 10_000, maxPerBuyer: 5 });
    const owed = await payOrders(a, skus, 60, 'on');
    await waitFor('some orders are delivered and acknowledged', () => report(a), (b) => b.totals.deliveredUnits >= 10, 15_000);
    await first.kill9();

    // 2. Without any ERP setting: it starts, keeps the outbox, and does not queue new pays.
    const second = await startEngine({ dataDir, env: { FLASH_BUYER_RPS: '0' } });
    const b = api(second.url);
    const off = await report(b);
    expect(off.shards.map((s: any) => s.outboxEnabled)).toEqual([false, false]);
    expect(off.deliverer).toBeNull();
    expect(off.totals.deliveredUnits).toBeGreaterThanOrEqual(10);
    expect(off.totals.deliveredUnits + off.totals.undeliveredUnits).toBe(units(owed));
    expect(off.totals.undeliveredOrders).toBeGreaterThan(0);
    const paidWhileOff = await payOrders(b, skus, 10, 'off');
    const afterOff = await report(b);
    expect(afterOff.totals).toMatchObject({ sold: units(owed) + units(paidWhileOff), notQueuedUnits: units(paidWhileOff), undeliveredOrders: off.totals.undeliveredOrders });
    expect(await second.stop()).toBe(0);
    const receivedWhileOff = (await erp.stats()).received;

    // 3. With the ERP again: exactly what was owed arrives; nothing paid while off.
    const third = await startEngine({ dataDir, env: withErp });
    const c = api(third.url);
    const done = await waitFor('everything owed is delivered', () => report(c), (r) => r.totals.undeliveredOrders === 0, 20_000);
    expect(done.shards.map((s: any) => s.outboxEnabled)).toEqual([true, true]);
    expect(done.totals).toEqual({
      sold: units(owed) + units(paidWhileOff), deliveredUnits: units(owed), undeliveredUnits: 0, undeliveredOrders: 0,
      notQueuedUnits: units(paidWhileOff), uncountedUnits: 0, ...noRefundUnits,
    });
    expect(done.complete).toBe(false); // what was sold while off never reaches the ERP
    const deliveries = await erp.deliveries();
    expect([...deliveries.keys()].sort()).toEqual([...owed.keys()].map((id) => `order.paid:${id}`).sort());
    const stats = await erp.stats();
    expect(stats.received).toBeGreaterThan(receivedWhileOff);
    expect(stats.bodyMismatches).toBe(0);
    expect(stats.badRequests).toBe(0);
    expect(await third.stop()).toBe(0);
    console.log(`[erp-mode] ${owed.size} orders owed: ${off.totals.undeliveredOrders} still owed after the kill, kept by the engine without ERP settings; `
      + `${paidWhileOff.size} paid while off, never queued; all ${owed.size} owed delivered after the ERP came back (${stats.duplicates} repeat(s), same eventId and body)`);
  });
});

describe('a data directory from before erp.mode', () => {
  it('starts without ERP settings although its old log acknowledged deliveries, and keeps its owed orders queued', async () => {
    // A log as the previous version wrote it: pays and an erp.ack with no erp.mode, which
    // that version's replay took from FLASH_ERP_* (an engine started without them used to
    // refuse: "replay of record N diverged: erp.ack changed nothing").
    const { ShardRuntime } = await import('../src/engine/shard-runtime.js');
    const { join } = await import('node:path');
    const dataDir = makeDataDir();
    const rt = ShardRuntime.open({ dir: join(dataDir, 'shard-0'), shardId: 0, shardCount: 1, config: { legacyOutboxEnabled: true } });
    const T = Date.now();
    rt.execute([{ t: 'sku.upsert', sku: 'legacy', stock: 10, holdSeconds: 3600 }], T);
    const ids = rt.execute([0, 1, 2].map((i) => ({ t: 'res.reserve' as const, sku: 'legacy', buyerId: `old-${i}`, qty: 1, nonce: `n${i}` })), T)
      .map((a) => (a.outcome.ok ? JSON.parse(JSON.stringify(a.outcome.reservation)).reservationId as string : ''));
    rt.execute(ids.map((id) => ({ t: 'res.pay' as const, id })), T + 1);
    rt.execute([{ t: 'erp.ack', upToSeq: 1 }], T + 2);
    rt.close(); // no snapshot: everything is replayed from the old records
    const { writeFileSync } = await import('node:fs');
    writeFileSync(join(dataDir, 'engine.json'), JSON.stringify({ format: 1, shardCount: 1 }));
    const engine = await startEngine({ dataDir, env: { FLASH_SHARDS: '1' } });
    const report = await api(engine.url).get('/v1/admin/erp', TOKENS.viewer);
    expect(report.status, report.text).toBe(200);
    const row = (report.body.skus as { sku: string; undeliveredUnits: number; deliveredUnits: number }[]).find((r) => r.sku === 'legacy');
    expect(row).toMatchObject({ undeliveredUnits: 2 });
    expect((await api(engine.url).get(`/v1/reservations/${ids[2]}`)).body.status).toBe('paid');
  });
});
