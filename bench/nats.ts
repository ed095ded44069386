// `npm run bench:nats`: the durable reserve call in one run, same machine, same autocannon
// settings (64 connections, a unique buyer per request, 1000 SKUs), against (a) the embedded
// engine and (b) a gateway + 2 shard nodes over a nats-server this bench starts; then (c)
// reserve commands in batches straight to the shard subjects over NATS, without HTTP. It ends
// by checking that nothing was oversold: the units held on the bench SKUs match the
// acknowledged reserves, and a sell-out through the gateway and one through direct batches
// each sell exactly their stock. Every child is stopped and every temp dir removed.

import { mkdtempSync, rmSync } from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { shardForSku } from '../src/domain/routing.js';
import type { Command } from '../src/domain/index.js';
import { shardSubject } from '../src/nats/nats-connect.js';
import { cpuBusyPct, finish, fmt, machineLine, markdownTable, progress, runInfo } from './bench-report.js';
import type { ChildServer } from './child-server.js';
import { engineEnvDescription, shopToken, skuName, skuTotals, startEngine } from './engine-under-test.js';
import { runLoad, type LoadFigures, type LoadSettings } from './http-load.js';
import { connectBench, runBatchLoad, sendBatch, type BatchFigures } from './nats-batch-client.js';
import { createSkusThrough, gatewayCall, startNatsCluster, type NatsCluster } from './nats-cluster.js';

function envInt(name: string, fallback: number, min: number, max: number): number {
  const raw = process.env[name];
  if (raw === undefined || raw.trim() === '') return fallback;
  const n = Number(raw);
  if (!Number.isInteger(n) || n < min || n > max) throw new Error(`${name}=${raw} must be an integer in ${min}..${max}`);
  return n;
}

const seconds = envInt('BENCH_SECONDS', 10, 1, 3600);
const settings = {
  load: { connections: 64, pipelining: 1, durationSeconds: seconds, timeoutSeconds: 10 } satisfies LoadSettings,
  warmUpSeconds: envInt('BENCH_WARMUP_SECONDS', 3, 0, 600),
  /** Both deployments run this many shards (the embedded engine's default would be cores - 1). */
  shardCount: envInt('FLASH_SHARDS', 2, 1, 64),
  skus: { count: 1000, stock: 1_000_000_000, maxPerBuyerOnOddSkus: 2 },
  batch: { seconds, batchSize: envInt('BENCH_NATS_BATCH', 256, 1, 1024), inFlightPerShard: envInt('BENCH_NATS_INFLIGHT', 4, 1, 256) },
  hotHttp: { sku: 'hot-sku-nats', stock: 5_000, maxPerBuyer: 1, requests: 10_000 },
  hotDirect: { sku: 'hot-sku-direct', stock: 20_000, commands: 40_000, batchSize: 256, inFlight: 8 },
  ratioGoal: 0.6,
  batchGoalCommandsPerSec: 200_000,
};

const load = (prefix: string) => ({ skuOf: (n: number) => skuName(n % settings.skus.count), buyerPrefix: prefix, token: shopToken });

async function measureHttp(name: string, url: string, prefix: string): Promise<{ warmUp: LoadFigures | null; measured: LoadFigures; machineBusyBeforePct: number }> {
  let warmUp: LoadFigures | null = null;
  if (settings.warmUpSeconds > 0) {
    progress(`${name}: warm-up ${settings.warmUpSeconds} s`);
    warmUp = await runLoad(`${name} warm-up`, url, { ...settings.load, durationSeconds: settings.warmUpSeconds }, load(`${prefix}w`));
  }
  const machineBusyBeforePct = await cpuBusyPct();
  progress(`${name}: machine ${machineBusyBeforePct}% busy before the run; measuring ${settings.load.durationSeconds} s, ${settings.load.connections} connections`);
  const measured = await runLoad(name, url, settings.load, load(`${prefix}m`));
  progress(`${name}: ${fmt(measured.requestsPerSecMean)} req/s, p50 ${measured.latencyMs.p50} ms, p99 ${measured.latencyMs.p99} ms, non-2xx ${measured.non2xx}, errors ${measured.errors}`);
  return { warmUp, measured, machineBusyBeforePct };
}

interface UnitsCheck {
  held: number;
  acknowledged: number;
  /** Requests cut off at the end of a timed autocannon run: sent, maybe applied, never counted. */
  slack: number;
  ok: boolean;
  broken: string[];
}

async function unitsCheck(name: string, port: number, acknowledged: number, slack: number): Promise<UnitsCheck> {
  const totals = await skuTotals(port, settings.skus);
  const ok = totals.broken.length === 0 && totals.units >= acknowledged && totals.units <= acknowledged + slack;
  progress(`${name}: ${totals.units} units held on ${settings.skus.count} SKUs for ${acknowledged} acknowledged reserves (+ up to ${slack} cut off)${ok ? '' : ': MISMATCH'}`);
  return { held: totals.units, acknowledged, slack, ok, broken: totals.broken };
}

const created201 = (...runs: (LoadFigures | null)[]): number => runs.reduce((a, r) => a + (r?.statuses['201'] ?? 0), 0);

interface SellOut {
  path: string;
  stock: number;
  attempts: number;
  created: number;
  refusals: Record<string, number>;
  after: { onHand: number; reserved: number; sold: number; available: number };
  oversold: boolean;
  ok: boolean;
}

function sellOutResult(p: string, stock: number, attempts: number, created: number, refusals: Record<string, number>, v: Record<string, unknown>): SellOut {
  const after = { onHand: v.onHand as number, reserved: v.reserved as number, sold: v.sold as number, available: v.available as number };
  const oversold = created > stock || after.reserved + after.sold > after.onHand || after.available < 0;
  const onlySoldOut = Object.keys(refusals).every((c) => c === 'sold_out');
  const ok = !oversold && created === stock && after.reserved + after.sold === stock && after.available === 0 && onlySoldOut;
  progress(`sell-out ${p}: ${created} created of ${attempts} attempts for ${stock} units, refusals ${JSON.stringify(refusals)}, after ${JSON.stringify(after)}${ok ? ': exact' : ': PROBLEM'}`);
  return { path: p, stock, attempts, created, refusals, after, oversold, ok };
}

async function sellOutThroughGateway(port: number): Promise<SellOut> {
  const h = settings.hotHttp;
  const put = await gatewayCall(port, 'PUT', `/v1/skus/${h.sku}`, { stock: h.stock, maxPerBuyer: h.maxPerBuyer });
  if (put.status !== 201) throw new Error(`PUT ${h.sku} answered ${put.status}`);
  const f = await runLoad('sell-out through the NATS gateway', `http://127.0.0.1:${port}`, { ...settings.load, amount: h.requests }, { skuOf: () => h.sku, buyerPrefix: 'hn', token: shopToken }, true);
  const { json } = await gatewayCall(port, 'GET', `/v1/skus/${h.sku}`);
  const refusals = { ...(f.errorCodes ?? {}) };
  if (f.errors > 0 || f.timeouts > 0) refusals['(client errors or timeouts)'] = f.errors + f.timeouts;
  return sellOutResult('HTTP via NATS gateway', h.stock, f.requests, f.statuses['201'] ?? 0, refusals, json);
}

async function sellOutDirect(cluster: NatsCluster): Promise<SellOut> {
  const h = settings.hotDirect;
  const put = await gatewayCall(cluster.gateway.port, 'PUT', `/v1/skus/${h.sku}`, { stock: h.stock, maxPerBuyer: 1 });
  if (put.status !== 201) throw new Error(`PUT ${h.sku} answered ${put.status}`);
  const shard = shardForSku(h.sku, null, cluster.shardCount);
  const nc = await connectBench(cluster.nats.url);
  let next = 0;
  let created = 0;
  const refusals: Record<string, number> = {};
  try {
    await Promise.all(Array.from({ length: h.inFlight }, async () => {
      while (next < h.commands) {
        const cmds: Command[] = [];
        for (let i = 0; i < h.batchSize && next < h.commands; i++) {
          const n = next++;
          cmds.push({ t: 'res.reserve', sku: h.sku, buyerId: `hd${n}`, qty: 1, nonce: Math.floor(Math.random() * 36 ** 8).toString(36).padStart(8, '0') });
        }
        const outcomes = await sendBatch(nc, shardSubject(cluster.prefix, shard), cmds);
        if (outcomes === null) refusals['(batch not answered)'] = (refusals['(batch not answered)'] ?? 0) + cmds.length;
        else for (const o of outcomes) if (o.ok) created++; else refusals[o.code] = (refusals[o.code] ?? 0) + 1;
      }
    }));
  } finally {
    await nc.close();
  }
  const { json } = await gatewayCall(cluster.gateway.port, 'GET', `/v1/skus/${h.sku}`);
  return sellOutResult('direct NATS batches', h.stock, h.commands, created, refusals, json);
}

function table(r: {
  embedded: Awaited<ReturnType<typeof measureHttp>>; nats: Awaited<ReturnType<typeof measureHttp>>; ratio: number;
  batch: BatchFigures; units: UnitsCheck[]; sellOuts: SellOut[];
}): string {
  const lat = (f: LoadFigures): string => [f.latencyMs.p50, f.latencyMs.p99, f.latencyMs.p99_9].map((x) => fmt(x, 1)).join(' / ');
  const e = r.embedded.measured;
  const n = r.nats.measured;
  const side = markdownTable(['POST /v1/reservations (autocannon)', '(a) embedded engine', '(b) gateway + 2 shard nodes over NATS', 'NATS / embedded'], [
    ['requests/s, mean', fmt(e.requestsPerSecMean), fmt(n.requestsPerSecMean), `**${fmt(r.ratio, 2)}** (goal >= ${settings.ratioGoal}: ${r.ratio >= settings.ratioGoal ? 'met' : 'NOT met'})`],
    ['latency p50 / p99 / p99.9 ms', lat(e), lat(n), ''],
    ['responses / non-2xx / errors / timeouts', `${e.requests} / ${e.non2xx} / ${e.errors} / ${e.timeouts}`, `${n.requests} / ${n.non2xx} / ${n.errors} / ${n.timeouts}`, ''],
    ['machine busy before the run', `${r.embedded.machineBusyBeforePct}%`, `${r.nats.machineBusyBeforePct}%`, ''],
  ]);
  const b = r.batch;
  const batch = markdownTable(['(c) batched NATS client, no HTTP', 'value'], [
    ['reserve commands/s', `**${fmt(b.commandsPerSec)}** (goal >= ${fmt(settings.batchGoalCommandsPerSec)}: ${b.commandsPerSec >= settings.batchGoalCommandsPerSec ? 'met' : 'NOT met'})`],
    ['of which created (201-equivalent)/s', fmt(b.createdPerSec)],
    ['batch size / batches in flight per shard / shards', `${b.settings.batchSize} / ${b.settings.inFlightPerShard} / ${settings.shardCount}`],
    ['batches / failed batches', `${fmt(b.batches)} / ${b.failedBatches}`],
    ['batch round trip p50 / p99 / max ms', `${fmt(b.batchLatencyMs.p50, 1)} / ${fmt(b.batchLatencyMs.p99, 1)} / ${fmt(b.batchLatencyMs.max, 1)}`],
    ['refusals', JSON.stringify(b.refusals)],
  ]);
  const checks = markdownTable(['no oversell', 'result'], [
    ...r.units.map((u, i) => [`units held on the bench SKUs, ${i === 0 ? 'embedded' : 'NATS (HTTP + direct)'}`, `${u.held} for ${u.acknowledged} acknowledged (+ up to ${u.slack} cut off): ${u.ok ? 'match' : '**MISMATCH**'}${u.broken.length ? `; broken: ${u.broken.slice(0, 3).join('; ')}` : ''}`]),
    ...r.sellOuts.map((s) => [`sell-out, ${s.path}`, `${s.created} created for ${s.stock} units of ${s.attempts} attempts; after: onHand ${s.after.onHand}, reserved ${s.after.reserved}, sold ${s.after.sold}, available ${s.after.available}; oversold: ${s.oversold ? '**YES**' : 'no'}${s.ok ? '' : ' (**not exact**)'}`]),
  ]);
  return `${side}\n\n${batch}\n\n${checks}`;
}

async function main(): Promise<void> {
  const run = runInfo();
  progress(`bench:nats on ${machineLine(run)}`);
  progress(`command: ${run.command}`);
  const tmp = mkdtempSync(path.join(os.tmpdir(), 'flash-bench-nats-'));
  const children: ChildServer[] = [];
  let cluster: NatsCluster | null = null;
  // engine-under-test passes FLASH_SHARDS on to the embedded engine: both get the same count.
  process.env.FLASH_SHARDS = String(settings.shardCount);
  try {
    // (a) The embedded engine, alone on the machine.
    const embedded = await startEngine(tmp, 'embedded', settings.skus);
    children.push(embedded);
    const a = await measureHttp('(a) embedded', `http://127.0.0.1:${embedded.port}`, 'a');
    const embeddedUnits = await unitsCheck('(a) embedded', embedded.port, created201(a.warmUp, a.measured), settings.load.connections * 2);
    const embeddedExit = await embedded.stop();

    // (b) Gateway + shard nodes over NATS.
    const nodes = settings.shardCount === 1 ? [[0]] : [0, 1].map((j) => Array.from({ length: settings.shardCount }, (_, k) => k).filter((k) => k % 2 === j));
    cluster = await startNatsCluster(tmp, { shardCount: settings.shardCount, nodes, prefix: 'flash' });
    await createSkusThrough(cluster.gateway.port, settings.skus);
    const b = await measureHttp('(b) NATS gateway', `http://127.0.0.1:${cluster.gateway.port}`, 'b');
    const ratio = b.measured.requestsPerSecMean / a.measured.requestsPerSecMean;
    const natsEnvDescription = cluster.env;

    // (c) Batches straight to the shard subjects.
    const skusByShard: string[][] = Array.from({ length: settings.shardCount }, () => []);
    for (let i = 0; i < settings.skus.count; i++) skusByShard[shardForSku(skuName(i), null, settings.shardCount)]!.push(skuName(i));
    const nc = await connectBench(cluster.nats.url);
    let batchWarm: BatchFigures | null = null;
    let batch: BatchFigures;
    try {
      if (settings.warmUpSeconds > 0) {
        progress(`(c) batched NATS client: warm-up ${settings.warmUpSeconds} s`);
        batchWarm = await runBatchLoad(nc, cluster.prefix, skusByShard, 'cw', { ...settings.batch, seconds: settings.warmUpSeconds });
      }
      progress(`(c) batched NATS client: machine ${await cpuBusyPct()}% busy before the run; measuring ${settings.batch.seconds} s, batches of ${settings.batch.batchSize}, ${settings.batch.inFlightPerShard} in flight per shard`);
      batch = await runBatchLoad(nc, cluster.prefix, skusByShard, 'cm', settings.batch);
      progress(`(c) batched NATS client: ${fmt(batch.commandsPerSec)} commands/s (${fmt(batch.createdPerSec)} created/s), batch p50 ${fmt(batch.batchLatencyMs.p50, 1)} ms, p99 ${fmt(batch.batchLatencyMs.p99, 1)} ms, failed batches ${batch.failedBatches}`);
    } finally {
      await nc.close();
    }

    const natsUnits = await unitsCheck('(b)+(c) NATS', cluster.gateway.port, created201(b.warmUp, b.measured) + (batchWarm?.created ?? 0) + batch.created, settings.load.connections * 2);
    const sellOuts = [await sellOutThroughGateway(cluster.gateway.port), await sellOutDirect(cluster)];
    const clusterExits = await cluster.stopAll();
    cluster = null;
    progress(`stopped: embedded exit code ${embeddedExit}, NATS gateway / shard nodes / nats-server exit codes ${clusterExits.join(' / ')}`);

    const units = [embeddedUnits, natsUnits];
    const ok = units.every((u) => u.ok) && sellOuts.every((s) => s.ok && !s.oversold);
    const result = {
      bench: 'nats', ...run,
      settings: { ...settings, dataDir: os.tmpdir(), embeddedEnv: engineEnvDescription, natsEnv: natsEnvDescription, nodes },
      embedded: { ...a, units: embeddedUnits, exitCode: embeddedExit },
      nats: { ...b, units: natsUnits },
      ratio: { natsOverEmbedded: ratio, goal: settings.ratioGoal, met: ratio >= settings.ratioGoal },
      batch: { warmUp: batchWarm, measured: batch, goal: settings.batchGoalCommandsPerSec, met: batch.commandsPerSec >= settings.batchGoalCommandsPerSec },
      sellOuts,
      exitCodes: { embedded: embeddedExit, natsCluster: clusterExits },
      ok,
    };
    const l = settings.load;
    const header = `bench:nats: ${machineLine(run)}\ncommand: ${run.command}\nautocannon: ${l.connections} connections, pipelining ${l.pipelining}, ${l.durationSeconds} s per run, warm-up ${settings.warmUpSeconds} s; ${settings.skus.count} SKUs, a unique buyer per request; ${settings.shardCount} shards in both deployments (NATS: shard nodes ${nodes.map((n) => `[${n}]`).join(' ')}, one nats-server with JetStream, all on this machine)\n`;
    finish('nats', result, `${header}\n${table({ embedded: a, nats: b, ratio, batch, units, sellOuts })}`);
    if (!ok) {
      progress('FAILED: oversell or a mismatch between acknowledged reserves and units held (see the table)');
      process.exitCode = 1;
    }
  } finally {
    if (cluster !== null) await cluster.stopAll();
    for (const c of children) await c.stop();
    rmSync(tmp, { recursive: true, force: true });
  }
}

main().catch((e: unknown) => {
  process.stderr.write(`bench:nats failed: ${e instanceof Error ? e.stack : String(e)}\n`);
  process.exitCode = 1;
});
