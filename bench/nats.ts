// `npm run bench:nats`: what replication costs per durable reserve, side by side in one run on
// one machine with the same autocannon settings (64 connections, pipelining 1, a unique buyer
// per request, 1000 SKUs, the shop token on every reserve), in alternating rounds:
//   (a) the embedded engine: every turn's record in the local WAL (fdatasync), nothing more;
//   (b) a gateway + 2 shard nodes over ONE nats-server: each turn's record also appended to
//       the shard's JetStream log stream (R1) before the turn is answered;
//   (c) the same over a 3-node nats-server cluster on loopback, log streams and leases R3:
//       a majority of the three servers stores each append before it is acknowledged.
// The cost is reported as the ratio of reserves/s and the difference in mean latency, (b)/(a)
// and (c)/(b), with the reserves each append carried (201s over the streams' growth). Then
// (d) reserve commands in batches straight to (b)'s shard subjects over NATS, without HTTP.
// It ends by checking that nothing was oversold: the units held on the bench SKUs of (a), (b)
// and (c) match their acknowledged reserves, and sell-outs through (b)'s gateway, through
// direct batches and through (c)'s gateway each sell exactly their stock. Every child is
// stopped and every temp dir removed, also on Ctrl-C.

import { mkdtempSync, rmSync } from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { shardForSku } from '../src/domain/routing.js';
import type { Command } from '../src/domain/index.js';
import { shardSubject } from '../src/nats/nats-connect.js';
import { cpuBusyPct, finish, fmt, machineLine, markdownTable, progress, runInfo, type RunInfo, envInt } from './bench-report.js';
import type { ChildServer } from './child-server.js';
import { reserveRequest, runPlan, type LatencyMs, type LoadResult } from './compare-load.js';
import { commitCounters, commitFigures, engineEnvDescription, shopToken, skuName, skuTotals, startEngine, type CommitCounters, type Engine } from './engine-under-test.js';
import { runLoad, type LoadSettings } from './http-load.js';
import { connectBench, runBatchLoad, sendBatch, type BatchFigures } from './nats-batch-client.js';
import { createSkusThrough, gatewayCall, startNatsCluster, type NatsCluster } from './nats-cluster.js';
import { appendFigures, openLogStreams, type LogStreams, type LogStreamState } from './nats-log-streams.js';

const seconds = envInt('BENCH_SECONDS', 10, 1, 3600);
const settings = {
  load: { connections: 64, pipelining: 1, durationSeconds: seconds, timeoutSeconds: 10 } satisfies LoadSettings,
  warmUpSeconds: envInt('BENCH_WARMUP_SECONDS', 3, 0, 600),
  /** (a), (b) and (c) are measured one after the other this many times, so drift on a shared machine hits all three. */
  rounds: envInt('BENCH_ROUNDS', 1, 1, 20),
  /** Every deployment runs this many shards (the embedded engine's default would be cores - 1). */
  shardCount: envInt('FLASH_SHARDS', 2, 1, 64),
  skus: { count: 1000, stock: 1_000_000_000, maxPerBuyerOnOddSkus: 2 },
  batch: { seconds, batchSize: envInt('BENCH_NATS_BATCH', 256, 1, 1024), inFlightPerShard: envInt('BENCH_NATS_INFLIGHT', 4, 1, 256) },
  hotHttp: { sku: 'hot-sku-nats', stock: 5_000, maxPerBuyer: 1, requests: 10_000 },
  hotHttpR3: { sku: 'hot-sku-nats-r3', stock: 5_000, maxPerBuyer: 1, requests: 10_000 },
  hotDirect: { sku: 'hot-sku-direct', stock: 20_000, commands: 40_000, batchSize: 256, inFlight: 8 },
  /** (b) / (a) in reserves/s. */
  ratioGoal: 0.6,
  batchGoalCommandsPerSec: 200_000,
};

type Key = 'a' | 'b' | 'c';
const keys: Key[] = ['a', 'b', 'c'];
const labels: Record<Key, string> = {
  a: '(a) embedded engine',
  b: '(b) NATS, 1 server, log R1',
  c: '(c) NATS, 3-node cluster, log R3',
};

/** What a system's turns wrote during a run: WAL records of the embedded engine, JetStream appends of a NATS deployment. */
interface RecordFigures {
  kind: 'WAL records (fdatasyncs)' | 'JetStream appends';
  records: number;
  reservesPerRecord: number;
  /** Mean of flash_wal_commit_duration_seconds (the embedded engine only): a turn's apply + write + fdatasync. */
  meanTurnMs?: number;
}

interface System {
  key: Key;
  url: string;
  port: number;
  pids(): number[];
  /** Reads the counters a run's records are counted from, then (after the run) the figures. */
  records(): Promise<(created: number) => Promise<RecordFigures>>;
}

function embeddedSystem(engine: Engine): System {
  return {
    key: 'a', url: `http://127.0.0.1:${engine.port}`, port: engine.port,
    pids: () => (engine.child.pid === undefined ? [] : [engine.child.pid]),
    async records() {
      const before: CommitCounters = await commitCounters(engine);
      return async (created) => {
        const f = commitFigures(before, await commitCounters(engine), created);
        return { kind: 'WAL records (fdatasyncs)', records: f.walRecords, reservesPerRecord: f.reservesPerRecord, meanTurnMs: f.meanTurnMs };
      };
    },
  };
}

function natsSystem(key: Key, cluster: NatsCluster, streams: LogStreams): System {
  return {
    key, url: `http://127.0.0.1:${cluster.gateway.port}`, port: cluster.gateway.port,
    pids: () => cluster.pids(),
    async records() {
      const before = await streams.lastSeqs();
      return async (created) => {
        const f = appendFigures(before, await streams.lastSeqs(), created);
        return { kind: 'JetStream appends', records: f.appends, reservesPerRecord: f.reservesPerAppend };
      };
    },
  };
}

const created201 = (r: LoadResult | null): number => r?.statuses['201'] ?? 0;
/** Latency of the acknowledged reserves (2xx); every response's when there was none. */
const latencyOf = (r: LoadResult): LatencyMs => r.latency2xxMs ?? r.latencyMs;

async function reserves(title: string, sys: System, buyerPrefix: string, durationSeconds: number): Promise<LoadResult> {
  return runPlan({
    title, url: sys.url, connections: settings.load.connections, durationSeconds, timeoutSeconds: settings.load.timeoutSeconds,
    requests: [reserveRequest((n) => skuName(n % settings.skus.count), buyerPrefix)], pids: sys.pids(),
  });
}

async function warmUp(sys: System): Promise<LoadResult | null> {
  if (settings.warmUpSeconds === 0) return null;
  progress(`${labels[sys.key]}: warm-up ${settings.warmUpSeconds} s`);
  return reserves(`${labels[sys.key]} warm-up`, sys, `${sys.key}w-`, settings.warmUpSeconds);
}

interface SystemRun {
  load: LoadResult;
  records: RecordFigures;
}

interface Cost {
  /** reserves/s of the one over reserves/s of the other. */
  throughputRatio: number;
  /** Mean latency of an acknowledged reserve, the one minus the other, ms. */
  meanLatencyDiffMs: number;
}

interface Round {
  round: number;
  machine: string;
  /** CPU in use by other processes just before the round (this bench idle). */
  machineBusyBeforePct: number;
  runs: Record<Key, SystemRun>;
  cost: { bOverA: Cost; cOverB: Cost };
}

const reservesPerSec = (r: LoadResult): number => r.admittedPerSec;

function cost(of: { reservesPerSec: number; meanLatencyMs: number }, over: { reservesPerSec: number; meanLatencyMs: number }): Cost {
  return { throughputRatio: of.reservesPerSec / over.reservesPerSec, meanLatencyDiffMs: of.meanLatencyMs - over.meanLatencyMs };
}

const runSummary = (r: SystemRun) => ({ reservesPerSec: reservesPerSec(r.load), meanLatencyMs: latencyOf(r.load).mean });

async function round(k: number, run: RunInfo, systems: System[]): Promise<Round> {
  const machineBusyBeforePct = await cpuBusyPct();
  progress(`round ${k + 1}/${settings.rounds} on ${machineLine(run)}: machine ${machineBusyBeforePct}% busy before it${machineBusyBeforePct > 10 ? ' (other processes are running: figures will be low and noisy)' : ''}`);
  const runs = {} as Record<Key, SystemRun>;
  for (const sys of systems) {
    const label = labels[sys.key];
    progress(`${label}: measuring ${settings.load.durationSeconds} s, ${settings.load.connections} connections`);
    const done = await sys.records();
    const load = await reserves(label, sys, `${sys.key}${k}-`, settings.load.durationSeconds);
    const records = await done(created201(load));
    const l = latencyOf(load);
    progress(`${label}: ${fmt(reservesPerSec(load))} reserves/s, latency mean ${fmt(l.mean, 2)} ms, p50 ${fmt(l.p50, 2)}, p99 ${fmt(l.p99, 2)}, p99.9 ${fmt(l.p99_9, 2)} ms; non-2xx ${load.responses - created201(load)}, errors ${load.errors}, timeouts ${load.timeouts}; ${fmt(records.records)} ${records.kind}, ${fmt(records.reservesPerRecord, 1)} reserves each`);
    runs[sys.key] = { load, records };
  }
  return {
    round: k + 1, machine: machineLine(run), machineBusyBeforePct, runs,
    cost: { bOverA: cost(runSummary(runs.b), runSummary(runs.a)), cOverB: cost(runSummary(runs.c), runSummary(runs.b)) },
  };
}

interface UnitsCheck {
  held: number;
  acknowledged: number;
  /** Requests cut off at the end of timed runs (sent, maybe applied, never counted), and unanswered batches. */
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

async function sellOutThroughGateway(port: number, h: typeof settings.hotHttp, what: string): Promise<SellOut> {
  const put = await gatewayCall(port, 'PUT', `/v1/skus/${h.sku}`, { stock: h.stock, maxPerBuyer: h.maxPerBuyer });
  if (put.status !== 201) throw new Error(`PUT ${h.sku} answered ${put.status}`);
  const f = await runLoad(`sell-out through ${what}`, `http://127.0.0.1:${port}`, { ...settings.load, amount: h.requests }, { skuOf: () => h.sku, buyerPrefix: `h-${h.sku}-`, token: shopToken }, true);
  const { json } = await gatewayCall(port, 'GET', `/v1/skus/${h.sku}`);
  const refusals = { ...(f.errorCodes ?? {}) };
  if (f.errors > 0 || f.timeouts > 0) refusals['(client errors or timeouts)'] = f.errors + f.timeouts;
  return sellOutResult(`HTTP via ${what}`, h.stock, f.requests, f.statuses['201'] ?? 0, refusals, json);
}

async function sellOutDirect(cluster: NatsCluster, what: string): Promise<SellOut> {
  const h = settings.hotDirect;
  const put = await gatewayCall(cluster.gateway.port, 'PUT', `/v1/skus/${h.sku}`, { stock: h.stock, maxPerBuyer: 1 });
  if (put.status !== 201) throw new Error(`PUT ${h.sku} answered ${put.status}`);
  const shard = shardForSku(h.sku, null, cluster.shardCount);
  const nc = await connectBench(cluster.natsUrl);
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
  return sellOutResult(`direct NATS batches to ${what}`, h.stock, h.commands, created, refusals, json);
}

/** The batched client (d) on (b)'s shard subjects. */
async function batchRuns(cluster: NatsCluster): Promise<{ warmUp: BatchFigures | null; measured: BatchFigures }> {
  const skusByShard: string[][] = Array.from({ length: settings.shardCount }, () => []);
  for (let i = 0; i < settings.skus.count; i++) skusByShard[shardForSku(skuName(i), null, settings.shardCount)]!.push(skuName(i));
  const nc = await connectBench(cluster.natsUrl);
  try {
    let warm: BatchFigures | null = null;
    if (settings.warmUpSeconds > 0) {
      progress(`(d) batched NATS client: warm-up ${settings.warmUpSeconds} s`);
      warm = await runBatchLoad(nc, cluster.prefix, skusByShard, 'dw', { ...settings.batch, seconds: settings.warmUpSeconds });
    }
    progress(`(d) batched NATS client: machine ${await cpuBusyPct()}% busy before the run; measuring ${settings.batch.seconds} s, batches of ${settings.batch.batchSize}, ${settings.batch.inFlightPerShard} in flight per shard`);
    const measured = await runBatchLoad(nc, cluster.prefix, skusByShard, 'dm', settings.batch);
    progress(`(d) batched NATS client: ${fmt(measured.commandsPerSec)} commands/s (${fmt(measured.createdPerSec)} created/s), batch p50 ${fmt(measured.batchLatencyMs.p50, 1)} ms, p99 ${fmt(measured.batchLatencyMs.p99, 1)} ms, failed batches ${measured.failedBatches}`);
    return { warmUp: warm, measured };
  } finally {
    await nc.close();
  }
}

const mean = (xs: number[]): number => xs.reduce((a, b) => a + b, 0) / Math.max(1, xs.length);

interface Summary {
  /** Means over the rounds. */
  systems: Record<Key, { reservesPerSec: number; meanLatencyMs: number; reservesPerRecord: number; recordKind: string }>;
  cost: { bOverA: Cost & { goal: number; met: boolean }; cOverB: Cost };
}

function summarize(rounds: Round[]): Summary {
  const systems = {} as Summary['systems'];
  for (const k of keys) {
    const runs = rounds.map((r) => r.runs[k]);
    systems[k] = {
      reservesPerSec: mean(runs.map((r) => reservesPerSec(r.load))),
      meanLatencyMs: mean(runs.map((r) => latencyOf(r.load).mean)),
      reservesPerRecord: runs.reduce((a, r) => a + created201(r.load), 0) / Math.max(1, runs.reduce((a, r) => a + r.records.records, 0)),
      recordKind: runs[0]!.records.kind,
    };
  }
  const bOverA = cost(systems.b, systems.a);
  return { systems, cost: { bOverA: { ...bOverA, goal: settings.ratioGoal, met: bOverA.throughputRatio >= settings.ratioGoal }, cOverB: cost(systems.c, systems.b) } };
}

function tables(r: {
  rounds: Round[]; summary: Summary; batch: BatchFigures; units: Record<Key, UnitsCheck>; sellOuts: SellOut[]; streams: Record<'b' | 'c', LogStreamState[]>;
}): string {
  const ms = (x: number): string => fmt(x, 2);
  const rows: string[][] = [];
  for (const rd of r.rounds) {
    const tag = r.rounds.length > 1 ? `, round ${rd.round}` : '';
    const cells = (f: (run: SystemRun) => string): string[] => keys.map((k) => f(rd.runs[k]));
    rows.push(
      [`reserves/s (201s per second)${tag}`, ...cells((x) => fmt(reservesPerSec(x.load)))],
      [`latency mean / p50 / p99 / p99.9 ms${tag}`, ...cells((x) => { const l = latencyOf(x.load); return `${ms(l.mean)} / ${ms(l.p50)} / ${ms(l.p99)} / ${ms(l.p99_9)}`; })],
      [`responses / non-2xx / errors / timeouts${tag}`, ...cells((x) => `${x.load.responses} / ${x.load.responses - created201(x.load)} / ${x.load.errors} / ${x.load.timeouts}`)],
      [`records written / reserves per record${tag}`, ...cells((x) => `${fmt(x.records.records)} ${x.records.kind} / ${fmt(x.records.reservesPerRecord, 1)}`)],
      [`peak RSS of its processes${tag}`, ...cells((x) => (x.load.rss.peakMiB === null ? '-' : `${fmt(x.load.rss.peakMiB)} MiB (${x.load.rss.pids.length} process${x.load.rss.pids.length === 1 ? '' : 'es'})`))],
      [`machine busy before the round${tag}`, `${rd.machineBusyBeforePct}%`, '', ''],
    );
  }
  const side = markdownTable([`POST /v1/reservations, ${settings.load.connections} connections, shop token`, '(a) embedded engine: local WAL only', '(b) gateway + shard nodes, 1 nats-server, log streams R1', '(c) gateway + shard nodes, 3-node nats-server cluster, log streams and leases R3'], rows);

  const s = r.summary;
  const perRound = (f: (rd: Round) => Cost): string => (r.rounds.length > 1 ? r.rounds.map((rd) => `${fmt(f(rd).throughputRatio, 2)}, ${f(rd).meanLatencyDiffMs >= 0 ? '+' : ''}${ms(f(rd).meanLatencyDiffMs)} ms`).join('; ') : '-');
  const diff = (c: Cost, of: Key, over: Key): string => `**${c.meanLatencyDiffMs >= 0 ? '+' : ''}${ms(c.meanLatencyDiffMs)} ms** (${ms(s.systems[over].meanLatencyMs)} -> ${ms(s.systems[of].meanLatencyMs)})`;
  const perRecord = (of: Key, over: Key): string => {
    const unit = (k: Key): string => (k === 'a' ? 'per WAL record' : 'per append');
    return `${fmt(s.systems[of].reservesPerRecord, 1)} ${unit(of)} vs ${fmt(s.systems[over].reservesPerRecord, 1)} ${unit(over)}`;
  };
  const costTable = markdownTable(['replication cost per reserve (means over the rounds)', 'reserves/s ratio', 'mean latency difference', 'reserves per record (per turn)', 'per round: ratio, difference'], [
    ['(b) / (a): a NATS hop to the shard node + an R1 stream append per turn', `**${fmt(s.cost.bOverA.throughputRatio, 2)}** (${fmt(s.systems.b.reservesPerSec)} / ${fmt(s.systems.a.reservesPerSec)}; goal >= ${settings.ratioGoal}: ${s.cost.bOverA.met ? 'met' : 'NOT met'})`, diff(s.cost.bOverA, 'b', 'a'), perRecord('b', 'a'), perRound((rd) => rd.cost.bOverA)],
    ['(c) / (b): R3 on a 3-node cluster instead of R1 on one server', `**${fmt(s.cost.cOverB.throughputRatio, 2)}** (${fmt(s.systems.c.reservesPerSec)} / ${fmt(s.systems.b.reservesPerSec)})`, diff(s.cost.cOverB, 'c', 'b'), perRecord('c', 'b'), perRound((rd) => rd.cost.cOverB)],
  ]);

  const streamRows = (['b', 'c'] as const).flatMap((k) => r.streams[k].map((st) => [
    `${k === 'b' ? '(b)' : '(c)'} ${st.stream}`, `R${st.replicas}`, fmt(st.lastSeq), fmt(st.messages), `${fmt(st.bytes / 2 ** 20, 1)} MiB`,
    st.leader === null ? '-' : `${st.leader}; replicas ${st.peers.map((p) => `${p.name}${p.current ? '' : ' (behind)'}`).join(', ') || '-'}`,
  ]));
  const streams = markdownTable(['log stream at the end', 'replicas', 'last sequence (appends ever)', 'messages kept', 'bytes', 'leader'], streamRows);

  const b = r.batch;
  const batch = markdownTable(['(d) batched NATS client to (b)\'s shard subjects, no HTTP', 'value'], [
    ['reserve commands/s', `**${fmt(b.commandsPerSec)}** (goal >= ${fmt(settings.batchGoalCommandsPerSec)}: ${b.commandsPerSec >= settings.batchGoalCommandsPerSec ? 'met' : 'NOT met'})`],
    ['of which created (201-equivalent)/s', fmt(b.createdPerSec)],
    ['batch size / batches in flight per shard / shards', `${b.settings.batchSize} / ${b.settings.inFlightPerShard} / ${settings.shardCount}`],
    ['batches / failed batches', `${fmt(b.batches)} / ${b.failedBatches}`],
    ['batch round trip p50 / p99 / max ms', `${fmt(b.batchLatencyMs.p50, 1)} / ${fmt(b.batchLatencyMs.p99, 1)} / ${fmt(b.batchLatencyMs.max, 1)}`],
    ['refusals', JSON.stringify(b.refusals)],
  ]);
  const unitNames: Record<Key, string> = { a: '(a) embedded', b: '(b) NATS R1 (HTTP + (d) direct)', c: '(c) NATS R3' };
  const checks = markdownTable(['no oversell', 'result'], [
    ...keys.map((k) => {
      const u = r.units[k];
      return [`units held on the bench SKUs, ${unitNames[k]}`, `${u.held} for ${u.acknowledged} acknowledged (+ up to ${u.slack} cut off): ${u.ok ? 'match' : '**MISMATCH**'}${u.broken.length ? `; broken: ${u.broken.slice(0, 3).join('; ')}` : ''}`];
    }),
    ...r.sellOuts.map((x) => [`sell-out, ${x.path}`, `${x.created} created for ${x.stock} units of ${x.attempts} attempts; after: onHand ${x.after.onHand}, reserved ${x.after.reserved}, sold ${x.after.sold}, available ${x.after.available}; oversold: ${x.oversold ? '**YES**' : 'no'}${x.ok ? '' : ' (**not exact**)'}`]),
  ]);
  return `${side}\n\n${costTable}\n\n${streams}\n\n${batch}\n\n${checks}`;
}

// Everything started, stopped in reverse by cleanup() (also on Ctrl-C).
const started: { stop(): Promise<unknown> }[] = [];
let tmp: string | null = null;
let cleaning: Promise<void> | null = null;

function cleanup(): Promise<void> {
  cleaning ??= (async () => {
    for (const s of started.splice(0).reverse()) await s.stop().catch((e: unknown) => progress(`cleanup: ${String(e)}`));
    if (tmp !== null) rmSync(tmp, { recursive: true, force: true });
  })();
  return cleaning;
}

async function main(): Promise<void> {
  const run = runInfo();
  progress(`bench:nats on ${machineLine(run)}`);
  progress(`command: ${run.command}`);
  const dir = mkdtempSync(path.join(os.tmpdir(), 'flash-bench-nats-'));
  tmp = dir;
  // engine-under-test passes FLASH_SHARDS on to the embedded engine: every deployment gets the same count.
  process.env.FLASH_SHARDS = String(settings.shardCount);
  try {
    // Shard nodes: [0, 2, ...] and [1, 3, ...]; no standbys, so (b) and (c) differ only in NATS.
    const nodes = settings.shardCount === 1 ? [[0]] : [0, 1].map((j) => Array.from({ length: settings.shardCount }, (_, k) => k).filter((k) => k % 2 === j));

    const embedded = await startEngine(dir, 'embedded', settings.skus);
    started.push(embedded);
    const r1 = await startNatsCluster(path.join(dir, 'b'), { shardCount: settings.shardCount, nodes, prefix: 'flash', natsServers: 1, logReplicas: 1, leaseReplicas: 1, label: '(b)' });
    started.push({ stop: () => r1.stopAll() });
    await createSkusThrough(r1.gateway.port, settings.skus);
    const r3 = await startNatsCluster(path.join(dir, 'c'), { shardCount: settings.shardCount, nodes, prefix: 'flash', natsServers: 3, logReplicas: 3, leaseReplicas: 3, label: '(c)' });
    started.push({ stop: () => r3.stopAll() });
    await createSkusThrough(r3.gateway.port, settings.skus);
    const r1Streams = await openLogStreams(r1.natsUrl, r1.prefix, settings.shardCount);
    started.push({ stop: () => r1Streams.close() });
    const r3Streams = await openLogStreams(r3.natsUrl, r3.prefix, settings.shardCount);
    started.push({ stop: () => r3Streams.close() });

    const systems = [embeddedSystem(embedded), natsSystem('b', r1, r1Streams), natsSystem('c', r3, r3Streams)];
    const warmUps = {} as Record<Key, LoadResult | null>;
    for (const sys of systems) warmUps[sys.key] = await warmUp(sys);
    const rounds: Round[] = [];
    for (let k = 0; k < settings.rounds; k++) rounds.push(await round(k, run, systems));
    const summary = summarize(rounds);
    progress(`replication cost: (b)/(a) ${fmt(summary.cost.bOverA.throughputRatio, 2)} x reserves/s, ${fmt(summary.cost.bOverA.meanLatencyDiffMs, 2)} ms mean latency; (c)/(b) ${fmt(summary.cost.cOverB.throughputRatio, 2)} x, ${fmt(summary.cost.cOverB.meanLatencyDiffMs, 2)} ms`);

    const batch = await batchRuns(r1);

    const ackedHttp = (k: Key): number => created201(warmUps[k]) + rounds.reduce((a, rd) => a + created201(rd.runs[k].load), 0);
    const httpSlack = settings.load.connections * ((settings.warmUpSeconds > 0 ? 1 : 0) + settings.rounds);
    const batchSlack = ((batch.warmUp?.failedBatches ?? 0) + batch.measured.failedBatches) * settings.batch.batchSize;
    const units: Record<Key, UnitsCheck> = {
      a: await unitsCheck('(a) embedded', embedded.port, ackedHttp('a'), httpSlack),
      b: await unitsCheck('(b) NATS R1, HTTP + (d) direct', r1.gateway.port, ackedHttp('b') + (batch.warmUp?.created ?? 0) + batch.measured.created, httpSlack + batchSlack),
      c: await unitsCheck('(c) NATS R3', r3.gateway.port, ackedHttp('c'), httpSlack),
    };
    const sellOuts = [
      await sellOutThroughGateway(r1.gateway.port, settings.hotHttp, '(b)\'s gateway (R1)'),
      await sellOutDirect(r1, '(b)\'s shard (R1)'),
      await sellOutThroughGateway(r3.gateway.port, settings.hotHttpR3, '(c)\'s gateway (R3)'),
    ];
    const streams = { b: await r1Streams.states(), c: await r3Streams.states() };

    await r3Streams.close();
    await r1Streams.close();
    const exitCodes = { embedded: await embedded.stop(), natsR1: await r1.stopAll(), natsR3: await r3.stopAll() };
    progress(`stopped: embedded exit code ${exitCodes.embedded}; (b) gateway / shard nodes / nats-server ${exitCodes.natsR1.join(' / ')}; (c) gateway / shard nodes / 3 nats-servers ${exitCodes.natsR3.join(' / ')}`);

    const ok = keys.every((k) => units[k].ok) && sellOuts.every((s) => s.ok && !s.oversold);
    const result = {
      bench: 'nats', ...run,
      settings: { ...settings, dataDir: os.tmpdir(), nodes, embeddedEnv: engineEnvDescription, natsR1Env: r1.env, natsR3Env: r3.env },
      systems: labels,
      summary,
      rounds,
      warmUps,
      batch: { ...batch, goal: settings.batchGoalCommandsPerSec, met: batch.measured.commandsPerSec >= settings.batchGoalCommandsPerSec },
      units,
      sellOuts,
      streams,
      exitCodes,
      ok,
    };
    const l = settings.load;
    const header = [
      `bench:nats: ${machineLine(run)}`,
      `command: ${run.command}`,
      `autocannon: ${l.connections} connections, pipelining ${l.pipelining}, ${l.durationSeconds} s per run, warm-up ${settings.warmUpSeconds} s, ${settings.rounds} round(s) of (a), (b), (c) in turn; ${settings.skus.count} SKUs, a unique buyer per request, the shop token on every reserve; latency of every 2xx by the bench in hdr-histogram-js (us)`,
      `${settings.shardCount} shards everywhere; (b) and (c): shard nodes ${nodes.map((n) => `[${n}]`).join(' ')} (each its own data dir, FLASH_BUYER_RPS=0) and one gateway; everything on this machine, the idle deployments running beside the measured one`,
      `(b): ${r1.env}`,
      `(c): ${r3.env}`,
    ].join('\n');
    finish('nats', result, `${header}\n\n${tables({ rounds, summary, batch: batch.measured, units, sellOuts, streams })}`);
    if (!ok) {
      progress('FAILED: oversell or a mismatch between acknowledged reserves and units held (see the table)');
      process.exitCode = 1;
    }
  } finally {
    await cleanup();
  }
}

for (const signal of ['SIGINT', 'SIGTERM'] as const) {
  process.once(signal, () => {
    progress(`${signal}: stopping every process this bench started and removing its temp dir`);
    void cleanup().finally(() => process.exit(130));
  });
}

main().catch((e: unknown) => {
  process.stderr.write(`bench:nats failed: ${e instanceof Error ? e.stack : String(e)}\n`);
  process.exitCode = 1;
});
