// The ERP protected across nodes (issue #10, item 5), over real processes: a nats-server,
// two shard nodes that each own one shard and a standby for both, all with the same ERP
// settings, delivering to the slow, flaky ERP stand-in. One deliverer serves the whole
// deployment (the holder of the `erp-deliverer` lease), so FLASH_ERP_MAX_RPS and
// FLASH_ERP_CONCURRENCY hold for the deployment: checked at the sender, from every node's
// /healthz, never at the receiver (arrivals bunch on a busy machine; printed only). Killing
// the holder moves the lease: delivery resumes, no order is lost, a repeat carries the same
// eventId and bytes, and the two holders' calls never share a second. GET /v1/admin/erp
// never counts as delivered an order the ERP has not accepted.

import { afterAll, describe, expect, it } from 'vitest';
import { shardForSku } from '../src/domain/routing.js';
import { TOKENS, api, sleep, stopAllEngines, type Api } from './support/engine-process.js';
import { startStandInProcess, type StandInProcess } from './support/erp-standin-process.js';
import { createSku, uniqWhere } from './support/http-kit.js';
import { startNatsDeployment, stopAllNatsServers, type NatsDeployment, type ShardNode } from './support/nats-deployment.js';

const SECRET = 'erp-nats-secret-0123456789';
const maxRps = 40;
const concurrency = 3;
const leaseTtlMs = 1500;

let erp: StandInProcess | null = null;
afterAll(async () => {
  await stopAllEngines();
  await stopAllNatsServers();
  await erp?.close();
});

interface SenderFigures {
  callsStarted: number;
  maxStartsPerSecond: number;
  maxCallsInFlight: number;
  maxRps: number;
  concurrency: number;
  firstCallAtMs: number | null;
  lastCallAtMs: number | null;
  deliveredTotal: number;
}

interface ErpHealth {
  role: 'standby' | 'starting' | 'delivering' | 'stopping';
  deliveringSinceMs: number | null;
  deliverer: SenderFigures | null;
}

async function erpHealth(node: ShardNode): Promise<ErpHealth | null> {
  try {
    const body = (await (await fetch(`${node.engine.url}/healthz`)).json()) as { erp?: ErpHealth };
    return body.erp ?? null;
  } catch {
    return null; // a killed node
  }
}

/** Pays `count` orders over `skus` through the gateway; returns eventId -> qty. */
async function payOrders(a: Api, skus: string[], count: number, tag: string): Promise<Map<string, number>> {
  const paid = new Map<string, number>();
  await Promise.all(Array.from({ length: 8 }, async (_, worker) => {
    for (let i = worker; i < count; i += 8) {
      const qty = 1 + (i % 3);
      const r = await a.post('/v1/reservations', { sku: skus[i % skus.length], buyerId: `${tag}-${i}`, qty }, TOKENS.shop);
      expect(r.status, r.text).toBe(201);
      const p = await a.post(`/v1/reservations/${r.body.reservationId}/pay`, { paymentRef: `${tag}-${i}` }, TOKENS.payments);
      expect(p.status, p.text).toBe(200);
      paid.set(`order.paid:${r.body.reservationId}`, qty);
    }
  }));
  return paid;
}

/**
 * Watches the deployment until `done`: at every look, at most one node delivers, and the
 * report's delivered units never exceed the units of orders the ERP has accepted.
 */
async function watch(d: NatsDeployment, a: Api, qtyOf: Map<string, number>, done: (report: any) => boolean, timeoutMs: number): Promise<{ report: any; leaders: Set<string> }> {
  const leaders = new Set<string>();
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const roles = await Promise.all(d.nodes.map(async (n) => [n.name, (await erpHealth(n))?.role] as const));
    const delivering = roles.filter(([, role]) => role === 'delivering').map(([name]) => name);
    expect(delivering.length, `nodes delivering at once: ${JSON.stringify(roles)}`).toBeLessThanOrEqual(1);
    for (const name of delivering) leaders.add(name);
    const r = await a.get('/v1/admin/erp', TOKENS.viewer);
    expect(r.status, r.text).toBe(200);
    const accepted = await erp!.deliveries();
    let acceptedUnits = 0;
    for (const id of accepted.keys()) acceptedUnits += qtyOf.get(id) ?? 0;
    expect(r.body.totals.deliveredUnits, 'reported delivered units the ERP has accepted').toBeLessThanOrEqual(acceptedUnits);
    if (done(r.body)) return { report: r.body, leaders };
    if (Date.now() > deadline) throw new Error(`timed out after ${timeoutMs} ms; report: ${JSON.stringify(r.body.totals)}, roles: ${JSON.stringify(roles)}`);
    await sleep(100);
  }
}

describe('one ERP deliverer for a NATS deployment', () => {
  it('holds the caps for the deployment, and moves with its lease when the holder is killed, losing nothing', async () => {
    erp = await startStandInProcess({ secret: SECRET, latencyMs: 40, jitterMs: 10, errorRate: 0.2, seed: 5 });
    const erpEnv = {
      FLASH_ERP_WEBHOOK_URL: erp.url, FLASH_ERP_SECRET: SECRET, FLASH_ERP_MAX_RPS: String(maxRps), FLASH_ERP_CONCURRENCY: String(concurrency),
      FLASH_ERP_POLL_MS: '50', FLASH_ERP_RETRY_BASE_MS: '20', FLASH_ERP_RETRY_MAX_MS: '300',
    };
    const d = await startNatsDeployment({ shards: 2, nodes: [[0], [1]], leaseTtlMs, env: { FLASH_BUYER_RPS: '0', ...erpEnv } });
    try {
      // A standby for both shards, with the same settings: it may take the deliverer's lease too.
      await d.startNode([0, 1], { waitServing: false });
      const a = api(d.url);
      const skus = [0, 1].map((shard) => uniqWhere('erp-nats', (name) => shardForSku(name, null, 2) === shard));
      for (const sku of skus) await createSku(a, sku, { stock: 100_000, maxPerBuyer: 5 });

      // 1. Both shards sell; one node delivers for both, within the caps.
      const first = await payOrders(a, skus, 120, 'n1');
      const qtyOf = new Map(first);
      const firstUnits = [...first.values()].reduce((x, y) => x + y, 0);
      const one = await watch(d, a, qtyOf, (r) => r.totals.deliveredUnits === firstUnits, 30_000);
      expect(one.report.totals).toMatchObject({ sold: firstUnits, deliveredUnits: firstUnits, undeliveredOrders: 0, notQueuedUnits: 0 });
      expect(one.report.complete).toBe(true);
      expect(one.report.shards.map((s: any) => s.outboxEnabled)).toEqual([true, true]);
      const health = await Promise.all(d.nodes.map(erpHealth));
      const leaderIndex = health.findIndex((h) => h?.role === 'delivering');
      expect(leaderIndex, JSON.stringify(health)).toBeGreaterThanOrEqual(0);
      const leader = d.nodes[leaderIndex]!;
      const lead = health[leaderIndex]!.deliverer!;
      const seenBefore = await erp.stats();
      // Every call of the deployment was started by the holder: the others started none.
      expect(health.filter((h, i) => i !== leaderIndex).map((h) => h?.deliverer?.callsStarted ?? 0)).toEqual([0, 0]);
      expect(lead.callsStarted).toBe(seenBefore.received);
      expect(lead).toMatchObject({ maxRps, concurrency });
      expect(lead.maxStartsPerSecond, 'calls started in any 1 s, deployment-wide, at the sender').toBeLessThanOrEqual(maxRps);
      expect(lead.maxCallsInFlight, 'calls in flight, deployment-wide, at the sender').toBeLessThanOrEqual(concurrency);
      console.log(`[erp-nats] ${first.size} orders over 2 shards on 2 nodes: ${leader.name} delivered them all in ${lead.callsStarted} calls, `
        + `max ${lead.maxStartsPerSecond} started in 1 s (cap ${maxRps}), max ${lead.maxCallsInFlight} in flight (cap ${concurrency}); `
        + `the ERP saw max ${seenBefore.maxStartsPerSecond} arrivals in 1 s, ${seenBefore.maxConcurrency} in flight (information only)`);

      // 2. Kill the holder mid-delivery: the lease moves, delivery resumes, nothing is lost.
      const second = await payOrders(a, skus, 160, 'n2');
      for (const [id, q] of second) qtyOf.set(id, q);
      const acceptedOf = async (): Promise<number> => [...(await erp!.deliveries()).keys()].filter((id) => second.has(id)).length;
      for (let n = await acceptedOf(); n < 30; n = await acceptedOf()) {
        expect(n, 'the holder is still delivering the second batch when killed').toBeLessThan(second.size);
        await sleep(20);
      }
      const killedAtMs = Date.now();
      await leader.engine.kill9();
      const allUnits = [...qtyOf.values()].reduce((x, y) => x + y, 0);
      const two = await watch(d, a, qtyOf, (r) => r.totals.deliveredUnits === allUnits && r.shardsAnswered, 30_000);
      expect(two.report.totals).toMatchObject({ sold: allUnits, deliveredUnits: allUnits, undeliveredOrders: 0, notQueuedUnits: 0 });
      expect(two.report.complete).toBe(true);
      const after = await Promise.all(d.nodes.map(async (n) => [n, await erpHealth(n)] as const));
      const next = after.find(([, h]) => h?.role === 'delivering');
      expect(next, JSON.stringify(after.map(([n, h]) => [n.name, h?.role]))).toBeDefined();
      const [nextNode, nextHealth] = next!;
      expect(nextNode.name).not.toBe(leader.name);
      const nextFigures = nextHealth!.deliverer!;
      expect(nextFigures.maxStartsPerSecond).toBeLessThanOrEqual(maxRps);
      expect(nextFigures.maxCallsInFlight).toBeLessThanOrEqual(concurrency);
      // The dead holder started nothing after the kill; the new one waited a whole rate window
      // after taking the lease: no second holds calls of both.
      expect(nextFigures.firstCallAtMs, 'the new holder delivered the rest').not.toBeNull();
      expect(nextFigures.firstCallAtMs! - killedAtMs).toBeGreaterThanOrEqual(1000);

      const deliveries = await erp.deliveries();
      expect([...deliveries.keys()].sort()).toEqual([...qtyOf.keys()].sort());
      const stats = await erp.stats();
      expect(stats.bodyMismatches, 'a repeat always carries the same body').toBe(0);
      expect(stats.badRequests, 'idempotency-key always equals the eventId').toBe(0);
      expect(stats.badSignatures).toBe(0);
      const repeated = [...deliveries.values()].filter((x) => x.count > 1).length;
      // Only what was in the dead holder's windows (2 shards x FLASH_ERP_WINDOW) may repeat.
      expect(repeated).toBeLessThanOrEqual(2 * 256);
      console.log(`[erp-nats] killed ${leader.name} mid-delivery; ${nextNode.name} took the lease and delivered from `
        + `${nextFigures.firstCallAtMs! - killedAtMs} ms after the kill; ${qtyOf.size} orders delivered, ${repeated} repeated with the same eventId and body; `
        + `new holder max ${nextFigures.maxStartsPerSecond} starts in 1 s, ${nextFigures.maxCallsInFlight} in flight`);
    } catch (e) {
      (e as Error).message += `\n--- deployment output (tail) ---\n${d.logs().slice(-6000)}`;
      throw e;
    } finally {
      await d.stopAll();
    }
  });
});
