// Faults in a NATS deployment, over real processes: a gateway and shard nodes
// (dist/src/main.js in FLASH_ROLE=gateway / shards) on a nats-server of our own. Client
// loops reserve (and pay) with idempotency keys while a shard node is killed with SIGKILL or
// stopped with SIGTERM, while a standby waits for an owner to die, and while the NATS
// server itself restarts.
// The time bounds here (503 within 1 s, takeover within TTL + 1 s) are correctness bounds
// of the NATS issue, not benchmarks. DEBUG_NATS=1 prints the measured times of every test,
// DEBUG_NATS=logs also the output of the NATS restart's processes.
// Authentication is on (shared/API.md v2): the gateways have the test callers' credentials,
// the client loops reserve with the shop's token and pay with the payment side's, and the
// shard nodes, which serve no API, are given no credential at all (nats-deployment.ts).

import { readdirSync, statSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { shardForSku } from '../src/domain/routing.js';
import { managementTimeoutMs } from '../src/nats/shard-log.js';
import { NO_TOKEN, api, sleep, stopAllEngines } from './support/engine-process.js';
import { createSku, expectError, uniq, uniqWhere } from './support/http-kit.js';
import { Ledger, runLoops, stopAllLoads, verifyLedger, waitUntil, type Attempt, type LoopOptions } from './support/nats-load.js';
import { startNatsDeployment, startNatsServer, stopAllNatsServers, type NatsDeployment } from './support/nats-deployment.js';

afterAll(async () => {
  await stopAllEngines();
  await stopAllNatsServers();
});

const leaseTtlMs = 1500;
const env = { FLASH_BUYER_RPS: '0' };

const skuOnShard = (prefix: string, shard: number): string => uniqWhere(prefix, (s) => shardForSku(s, null, 2) === shard);
const fmtMs = (ms: number): string => `${Math.round(ms)} ms`;

function summary(attempts: Attempt[]): string {
  const by = new Map<string, number>();
  for (const a of attempts) {
    const label = `${a.kind} ${a.status}${a.code ? ` ${a.code}` : ''}${a.error ? ` (${a.error.slice(0, 60)})` : ''}`;
    by.set(label, (by.get(label) ?? 0) + 1);
  }
  return JSON.stringify(Object.fromEntries(by));
}

async function withDeployment<T>(d: NatsDeployment, body: () => Promise<T>): Promise<T> {
  try {
    return await body();
  } catch (e) {
    // The processes' output is the first thing one needs when a fault test fails.
    (e as Error).message += `\n--- deployment output (tail) ---\n${d.logs().slice(-6000)}`;
    throw e;
  } finally {
    await stopAllLoads();
    await d.stopAll();
  }
}

describe('a shard node killed with SIGKILL under load', () => {
  it('answers 503 shard_unavailable for its SKUs within 1 s while the other node keeps answering 201, and a restart on the same data dir has every acknowledged change', async () => {
    const d = await startNatsDeployment({ shards: 2, nodes: [[0], [1]], leaseTtlMs, env });
    await withDeployment(d, async () => {
      const a = api(d.url);
      const skus = [skuOnShard('kill-a', 0), skuOnShard('kill-b', 0), skuOnShard('kill-c', 1), skuOnShard('kill-d', 1)];
      const stock = Object.fromEntries(skus.map((s) => [s, 1_000_000]));
      for (const sku of skus) await createSku(a, sku, { stock: stock[sku] });
      // The gateway is closed to callers without a token; a shard node serves no API at all.
      expectError(await a.post('/v1/reservations', { sku: skus[0], buyerId: 'no-token' }, NO_TOKEN), 401, 'unauthorized');
      expectError(await api(d.nodes[0]!.engine.url).post('/v1/reservations', { sku: skus[0], buyerId: 'at-a-node' }), 404, 'not_found');
      const ledger = new Ledger();
      const loops: LoopOptions[] = skus.flatMap((sku, i) => [0, 1].map((j) => ({
        skus: [{ sku, shard: i < 2 ? 0 : 1 }], tag: `${uniq('kl')}-${i}-${j}`, payShare: 0.3, on503: 'move-on' as const, pauseAfter503Ms: 5,
      })));
      // The loops wait for each answer, so a loop whose call was in flight at the kill is stuck
      // until the gateway's 1 s timeout; the probes send a new call every 20 ms regardless,
      // which is what shows how soon the dead node's SKUs are answered.
      const probes = [{ sku: skus[0]!, shard: 0, tag: uniq('kp0'), everyMs: 20 }, { sku: skus[2]!, shard: 1, tag: uniq('kp1'), everyMs: 20 }];
      const load = runLoops(d.gateway.port, ledger, loops, probes);
      await sleep(800);
      const victim = d.nodes[0]!;
      const killAt = performance.now();
      await victim.engine.kill9();
      const deadAt = performance.now();
      await sleep(1500);
      await load.stop();

      const shard0After = ledger.attempts.filter((x) => x.shard === 0 && x.endMs >= killAt);
      // Measured from the moment the process is gone: how long the kernel takes to tear down a
      // killed process of several threads (some at nice 19) is the machine's, not the engine's
      // (on a CI machine kept full by other suites: 362 ms, and the first 503 came 18 ms past
      // a bound then counted from the signal).
      const first503 = shard0After.filter((x) => x.status === 503).reduce((m, x) => Math.min(m, x.endMs), Infinity) - deadAt;
      const lastOther = shard0After.filter((x) => x.status !== 503).reduce((m, x) => Math.max(m, x.endMs), -Infinity) - deadAt;
      const steady503 = Math.max(first503, lastOther);
      const context = `SIGKILL at ${fmtMs(killAt)} (process gone ${fmtMs(deadAt - killAt)} later): first 503 ${fmtMs(first503)} after it was gone, steady 503 after ${fmtMs(steady503)}; shard 0 after the kill: ${summary(shard0After)}`;
      if (process.env.DEBUG_NATS) console.log(context);
      expect(first503, context).toBeLessThan(1000);
      expect(steady503, context).toBeLessThan(1000);
      for (const x of shard0After.filter((y) => y.status === 503)) expect(x.code, context).toBe('shard_unavailable');
      // Once the process is gone, every new call on its SKUs is answered 503 within 1 s.
      const afterDeath = shard0After.filter((x) => x.startMs > deadAt + 50);
      expect(afterDeath.filter((x) => x.status !== 503 || x.endMs - x.startMs >= 1000).map((x) => `${x.kind} ${x.status} ${x.code ?? x.error ?? ''} in ${fmtMs(x.endMs - x.startMs)}`), context).toEqual([]);
      expect(afterDeath.length, context).toBeGreaterThan(30);
      // A call in flight at the kill ends with the gateway's 1 s timeout: none hangs.
      const slowest = Math.max(...ledger.attempts.map((x) => x.endMs - x.startMs));
      expect(slowest, context).toBeLessThan(1500);

      const shard1 = ledger.attempts.filter((x) => x.shard === 1);
      const shard1After = shard1.filter((x) => x.startMs > killAt);
      expect(shard1.filter((x) => !(x.status === 201 || (x.kind === 'pay' && x.status === 200))).map((x) => `${x.kind} ${x.status} ${x.code ?? x.error ?? ''} at ${fmtMs(x.startMs - killAt)}`), 'shard 1 answers').toEqual([]);
      expect(shard1After.filter((x) => x.kind === 'reserve').length, 'shard 1 reserves after the kill').toBeGreaterThan(20);

      const restarted = await d.startNode([0], { dataDir: d.nodes[0]!.dataDir });
      await restarted.waitServing([0], 10_000);
      expect(ledger.known.size).toBeGreaterThan(50);
      await verifyLedger(d.gateway.port, ledger, stock, `after restarting the killed node (${ledger.known.size} acknowledged reservations)`);
    });
  });
});

describe('a standby shard node', () => {
  it('stays in standby and does not serve a shard another node owns, then takes the lease within TTL + 1 s of the owner dying and serves every acknowledged change', async () => {
    const d = await startNatsDeployment({ shards: 2, nodes: [[0, 1]], leaseTtlMs, env });
    await withDeployment(d, async () => {
      const a = api(d.url);
      const skus = [skuOnShard('standby-a', 0), skuOnShard('standby-b', 0)];
      const stock = Object.fromEntries(skus.map((s) => [s, 1_000_000]));
      for (const sku of skus) await createSku(a, sku, { stock: stock[sku] });
      const owner = d.nodes[0]!;
      const ledger = new Ledger();
      const loops: LoopOptions[] = skus.flatMap((sku, i) => [0, 1].map((j) => ({
        skus: [{ sku, shard: 0 }], tag: `${uniq('sb')}-${i}-${j}`, payShare: 0.3, on503: 'move-on' as const, pauseAfter503Ms: 5,
      })));
      const load = runLoops(d.gateway.port, ledger, loops);

      // A second node for shard 0, on a disk of its own: for two lease lifetimes it must only
      // stand by (following the log), and the owner must keep serving.
      const standby = await d.startNode([0], { waitServing: false });
      const watchUntil = performance.now() + 2 * leaseTtlMs;
      let probes = 0;
      while (performance.now() < watchUntil) {
        expect(await standby.health(), 'the standby node').toEqual({ serving: [], standby: [0] });
        expect(await owner.health(), 'the owner node').toEqual({ serving: [0, 1], standby: [] });
        probes++;
        await sleep(100);
      }
      expect(probes).toBeGreaterThan(10);
      // No shared volume: the standby follows the replicated log into its own disk meanwhile.
      const standbyLog = readdirSync(join(standby.dataDir, 'shard-0')).filter((f) => f.startsWith('wal-'));
      expect(standbyLog.reduce((bytes, f) => bytes + statSync(join(standby.dataDir, 'shard-0', f)).size, 0), 'the standby\'s own copy of shard 0').toBeGreaterThan(0);
      const beforeKill = ledger.attempts.filter((x) => x.shard === 0);
      expect(beforeKill.filter((x) => x.status !== 201 && x.status !== 200).map((x) => `${x.kind} ${x.status} ${x.code ?? x.error ?? ''}`), 'answers while both nodes run').toEqual([]);
      expect(beforeKill.length).toBeGreaterThan(20);

      const killAt = performance.now();
      await owner.engine.kill9();
      await waitUntil(() => ledger.attempts.some((x) => x.kind === 'reserve' && x.status === 201 && x.startMs > killAt), leaseTtlMs + 5000,
        () => `no 201 on shard 0 since the kill; answers: ${summary(ledger.attempts.filter((x) => x.startMs > killAt))}`);
      const firstServed = ledger.attempts.filter((x) => x.kind === 'reserve' && x.status === 201 && x.startMs > killAt).reduce((m, x) => Math.min(m, x.endMs), Infinity);
      const takeoverMs = firstServed - killAt;
      const context = `the standby served shard 0 again ${fmtMs(takeoverMs)} after the owner's SIGKILL (lease TTL ${leaseTtlMs} ms); answers since the kill: ${summary(ledger.attempts.filter((x) => x.startMs > killAt))}`;
      if (process.env.DEBUG_NATS) console.log(context);
      expect(takeoverMs, context).toBeLessThan(leaseTtlMs + 1000);
      expect(await standby.health()).toEqual({ serving: [0], standby: [] });
      // Meanwhile every answer was a 2xx or a quick 503 shard_unavailable, never a hang.
      for (const x of ledger.attempts.filter((y) => y.startMs > killAt)) {
        expect([200, 201, 503], context).toContain(x.status);
        if (x.status === 503) expect(x.code, context).toBe('shard_unavailable');
      }
      await sleep(300);
      await load.stop();
      expect(Math.max(...ledger.attempts.map((x) => x.endMs - x.startMs)), context).toBeLessThan(1500);
      await verifyLedger(d.gateway.port, ledger, stock, `after the standby took over (${ledger.known.size} acknowledged reservations)`);
    });
  });
});

describe('a shard node stopped with SIGTERM', () => {
  it('exits 0 and hands its shard to a standby at once, without waiting for the lease to expire, with every acknowledged change', async () => {
    // A long TTL tells the two ways apart: a released lease is taken at the standby's next
    // attempt (every TTL / 6 = 1 s), an abandoned one only when it expires, at least 5 s after
    // the stop (its last renewal was at most TTL / 6 before it). Hence the 4 s bound.
    const longTtlMs = 6000;
    const d = await startNatsDeployment({ shards: 2, nodes: [[0]], leaseTtlMs: longTtlMs, env });
    await withDeployment(d, async () => {
      const a = api(d.url);
      const sku = skuOnShard('term', 0);
      const stock = { [sku]: 1_000_000 };
      await createSku(a, sku, { stock: stock[sku] });
      const owner = d.nodes[0]!;
      const standby = await d.startNode([0], { waitServing: false });
      await waitUntil(async () => (await standby.health()).standby.includes(0), 5000, () => 'the standby never reported shard 0 in standby');
      const ledger = new Ledger();
      const load = runLoops(d.gateway.port, ledger, [0, 1, 2].map((j) => ({ skus: [{ sku, shard: 0 }], tag: `${uniq('term')}-${j}`, payShare: 0.3, on503: 'move-on' as const, pauseAfter503Ms: 5 })));
      await sleep(500);
      const stopAt = performance.now();
      const exitCode = await owner.engine.stop('SIGTERM');
      const stoppedMs = performance.now() - stopAt;
      await standby.waitServing([0], longTtlMs + 5000);
      const servingMs = performance.now() - stopAt;
      await waitUntil(() => ledger.attempts.some((x) => x.status === 201 && x.startMs > stopAt + servingMs), 5000, () => 'no 201 after the standby took over');
      await load.stop();
      const context = `owner exited ${exitCode} ${fmtMs(stoppedMs)} after SIGTERM; the standby served ${fmtMs(servingMs)} after it (lease TTL ${longTtlMs} ms); answers since the SIGTERM: ${summary(ledger.attempts.filter((x) => x.startMs > stopAt))}`;
      if (process.env.DEBUG_NATS) console.log(context);
      expect(exitCode, `${context}\n${owner.engine.logs().slice(-2000)}`).toBe(0);
      expect(servingMs, context).toBeLessThan(4000);
      for (const x of ledger.attempts) {
        expect([200, 201, 503], context).toContain(x.status);
        if (x.status === 503) expect(x.code, context).toBe('shard_unavailable');
      }
      await verifyLedger(d.gateway.port, ledger, stock, `after the SIGTERM hand-over (${ledger.known.size} acknowledged reservations)`);
    });
  });
});

describe('a NATS server restart', () => {
  it('serves every shard again within lease TTL + one JetStream request timeout + 2 s of the restarted server accepting connections', async () => {
    // The leases lapse during a 1 s outage (a node trusts its lease for TTL / 2 after the last
    // renewal), so each node stops serving; once NATS is back the old keys have expired and
    // nothing but the node itself stands between it and its shards again.
    const nats = await startNatsServer({ own: true });
    const d = await startNatsDeployment({ shards: 2, nodes: [[0], [1]], leaseTtlMs, env, nats });
    await withDeployment(d, async () => {
      const a = api(d.url);
      const skus = [skuOnShard('nr-back-a', 0), skuOnShard('nr-back-b', 1)];
      for (const sku of skus) await createSku(a, sku, { stock: 1000 });
      const timeline: string[] = [];
      const t0 = performance.now();
      const stopWatch = { now: false };
      const watch = (async () => {
        let last = '';
        while (!stopWatch.now) {
          const states = await Promise.all(d.nodes.map((n) => n.health().then((h) => `${n.name.split('-').pop()} serving [${h.serving}]`, () => `${n.name} ?`)));
          if (states.join(', ') !== last) timeline.push(`${fmtMs(performance.now() - t0)}: ${(last = states.join(', '))}`);
          await sleep(20);
        }
      })();
      await nats.stop();
      timeline.push(`${fmtMs(performance.now() - t0)}: NATS stopped`);
      await sleep(1000);
      await nats.start();
      const upAt = performance.now();
      timeline.push(`${fmtMs(upAt - t0)}: NATS accepts connections again`);
      const servedAt: (number | null)[] = [null, null];
      const deadline = upAt + 15_000;
      for (let n = 0; servedAt.some((t) => t === null) && performance.now() < deadline; n++) {
        await Promise.all(skus.map(async (sku, shard) => {
          if (servedAt[shard] !== null) return;
          const r = await a.post('/v1/reservations', { sku, buyerId: `back-${shard}-${n}`, idempotencyKey: `back-${n}` });
          if (r.status === 201) servedAt[shard] = performance.now();
          else expect(r.status, r.text).toBe(503);
        }));
        await sleep(25);
      }
      stopWatch.now = true;
      await watch;
      const backMs = servedAt.map((t) => (t === null ? Infinity : t - upAt));
      const context = `reserves answered 201 again ${backMs.map(fmtMs).join(' (shard 0) and ')} (shard 1) after NATS came back; lease TTL ${leaseTtlMs} ms; node states:\n  ${timeline.join('\n  ')}`;
      if (process.env.DEBUG_NATS) console.log(context);
      // A JetStream request a node sent while the server was down can be lost with it, and
      // waits out its timeout before the node retries: that, the lease TTL and 2 s of slack.
      expect(Math.max(...backMs), context).toBeLessThan(leaseTtlMs + managementTimeoutMs + 2000);
    });
  });
});

describe('a NATS server restart under load', () => {
  it('hangs no request, recovers, applies no reserve twice and oversells nothing on a SKU that sells out meanwhile', async () => {
    // This test restarts the server, so it always starts its own (never FLASH_NATS_URL's).
    const nats = await startNatsServer({ own: true });
    const d = await startNatsDeployment({ shards: 2, nodes: [[0], [1]], leaseTtlMs, env, nats });
    await withDeployment(d, async () => {
      const a = api(d.url);
      const big = [skuOnShard('nr-big-a', 0), skuOnShard('nr-big-b', 1)];
      const limitedShard = Math.random() < 0.5 ? 0 : 1;
      const limited = skuOnShard('nr-limited', limitedShard);
      const stock: Record<string, number> = { [big[0]!]: 1_000_000, [big[1]!]: 1_000_000, [limited]: 250 };
      for (const sku of Object.keys(stock)) await createSku(a, sku, { stock: stock[sku], maxPerBuyer: 1 });
      const ledger = new Ledger();
      // Every loop retries a 503 with the same key until it gets a definitive answer, as a
      // careful shop would; the limited SKU's loops are paced so it sells out after the restart.
      const loops: LoopOptions[] = [
        ...big.flatMap((sku, i) => [0, 1].map((j) => ({ skus: [{ sku, shard: i }], tag: `${uniq('nb')}-${i}-${j}`, payShare: 0.2, on503: 'retry' as const, pauseAfter503Ms: 20 }))),
        ...[0, 1].map((j) => ({ skus: [{ sku: limited, shard: limitedShard }], tag: `${uniq('nl')}-${j}`, on503: 'retry' as const, pauseAfter503Ms: 20, pauseMs: 15, stopOnSoldOut: true })),
      ];
      const load = runLoops(d.gateway.port, ledger, loops);
      await sleep(700);
      const downAt = performance.now();
      await nats.stop();
      await sleep(1000);
      await nats.start();
      const upAt = performance.now();
      await waitUntil(() => [0, 1].every((s) => ledger.attempts.some((x) => x.shard === s && x.status === 201 && x.startMs > upAt)), 20_000,
        () => `no 201 on both shards since the NATS restart; answers since: ${summary(ledger.attempts.filter((x) => x.startMs > upAt))}`);
      const recoveredMs = performance.now() - upAt;
      await sleep(700);
      const soldOutWait = waitUntil(() => ledger.attempts.some((x) => x.sku === limited && x.code === 'sold_out'), 20_000, () => `${limited} never sold out`);
      await soldOutWait;
      await load.stop();

      const during = ledger.attempts.filter((x) => x.startMs >= downAt - 1000);
      const context = `NATS down at ${fmtMs(downAt)}, up ${fmtMs(upAt - downAt)} later, serving again ${fmtMs(recoveredMs)} after that; answers around the outage: ${summary(during)}`;
      if (process.env.DEBUG_NATS) console.log(context, process.env.DEBUG_NATS === 'logs' ? d.logs() : '');
      // The outage was felt (503s), and nothing hung: every call ended within a few seconds,
      // with a 2xx, a 503, or (the limited SKU only) 409 sold_out.
      expect(ledger.attempts.filter((x) => x.status === 503).length, context).toBeGreaterThan(0);
      const slowest = ledger.attempts.reduce((m, x) => (x.endMs - x.startMs > m.endMs - m.startMs ? x : m));
      expect(slowest.endMs - slowest.startMs, `slowest call ${JSON.stringify(slowest)}; ${context}`).toBeLessThan(3000);
      const odd = ledger.attempts.filter((x) => !(x.status === 201 || x.status === 200 || x.status === 503 || (x.sku === limited && x.status === 409 && x.code === 'sold_out')));
      expect(odd.slice(0, 10), context).toEqual([]);
      expect(ledger.retriedKeys.size, context).toBeGreaterThan(0);

      await verifyLedger(d.gateway.port, ledger, stock, `after the NATS restart (${ledger.known.size} acknowledged reservations, ${ledger.retriedKeys.size} keys retried after a 503)`);
      // Zero oversell on the SKU that sold out: exactly its stock was held, each by one key.
      const sold = ledger.units(limited);
      expect(sold.reserved + sold.sold).toBe(stock[limited]);
      expect(sold.holds).toBe(stock[limited]);
      const view = (await a.get(`/v1/skus/${limited}`)).body;
      expect({ available: view.available, units: view.reserved + view.sold }).toEqual({ available: 0, units: stock[limited] });
    });
  });
});
