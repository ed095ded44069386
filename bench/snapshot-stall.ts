// `npm run bench:snapshots`: does a snapshot stop a shard? One shard is loaded with
// BENCH_PRELOAD (default 1,000,000) held reservations, then stopped; its data dir is copied
// for each configuration, and each copy is served at a fixed rate (half the peak measured on
// the preloaded shard) for long enough to take at least three snapshots of that size:
//   - checkpointer: snapshots by the shard's checkpointer thread (the default: at nice 19,
//     without rests), then at normal priority paced at 25 % of a core (the default before),
//     and at normal priority without rests,
//   - none:         no snapshot due during the run (FLASH_SNAPSHOT_EVERY past the run),
//   - on the shard thread: FLASH_CHECKPOINTER=0, snapshots taken by the shard itself,
//   - none, and no checkpointer: what the checkpointer's copy costs when nothing is due.
// BENCH_SNAPSHOT_CONFIGS picks some of them (default, paced, normal, none, shard, bare) and
// BENCH_SNAPSHOT_RATE fixes the rate instead of half the peak.
// The load is evenly paced (each request due at its own time, latency from then: a stall
// counts every request due during it); the worst answer is the figure a stall shows in. Memory: the engine's resident size once recovered, with and without the
// checkpointer's copy of the state. Ends by checking every preloaded hold is still held.

import { cpSync, mkdtempSync, readFileSync, rmSync } from 'node:fs';
import * as http from 'node:http';
import * as os from 'node:os';
import * as path from 'node:path';
import autocannon from 'autocannon';
import { cpuBusyPct, finish, fmt, machineLine, markdownTable, progress, repoDir, runInfo, envInt } from './bench-report.js';
import { freePort, startServer, type ChildServer } from './child-server.js';
import { call, engineEnv, inParallel, shopToken } from './engine-under-test.js';
import { Ledger, runLoad as runPaced, type StepLog } from '../src/cli/rehearse-load.js';
import { emptyLatency, latencySummary } from '../src/cli/report-kit.js';
import { runLoad } from './http-load.js';
import { startRssSampler } from './rss-sampler.js';
import { wakeupFloor } from './wakeup-floor.js';

/** The configurations of the fixed-rate part, by the key BENCH_SNAPSHOT_CONFIGS names them with. */
const configKeys = ['default', 'paced', 'normal', 'none', 'shard', 'bare'] as const;
type ConfigKey = (typeof configKeys)[number];

const settings = {
  preload: envInt('BENCH_PRELOAD', 1_000_000, 10_000, 20_000_000),
  skus: 100,
  /** Seconds of fixed-rate load per configuration. */
  seconds: envInt('BENCH_SECONDS', 60, 5, 3600),
  /** Snapshots wanted during each run (the interval is set from the rate to get them). */
  snapshotsWanted: 4,
  connections: 128,
  peakSeconds: 5,
  /** Seconds at the fixed rate before each measured run (not measured). */
  warmupSeconds: 3,
  /** Restarts under load: seconds measured from the first answer, and rounds of each configuration. */
  restartSeconds: envInt('BENCH_RESTART_SECONDS', 15, 5, 600),
  restartRounds: envInt('BENCH_RESTART_ROUNDS', 2, 0, 10),
  /** BENCH_SNAPSHOT_PARTS: `steady` (the configurations at a fixed rate), `restarts`, or both (default). */
  parts: snapshotParts(process.env.BENCH_SNAPSHOT_PARTS),
  /** BENCH_SNAPSHOT_CONFIGS: which configurations of the fixed-rate part run (their keys, comma-separated; default all). */
  configs: snapshotConfigs(process.env.BENCH_SNAPSHOT_CONFIGS),
  /** BENCH_SNAPSHOT_RATE: a fixed rate in reserves/s instead of half the measured peak (0: half the peak). */
  rate: envInt('BENCH_SNAPSHOT_RATE', 0, 0, 1_000_000),
  goal: { worstRatioMax: 2, p99MsMax: 10 },
};

const sku = (i: number): string => `snap-${i}`;

function snapshotParts(raw: string | undefined): { steady: boolean; restarts: boolean } {
  const parts = (raw ?? '').trim() === '' ? ['steady', 'restarts'] : raw!.split(',').map((p) => p.trim());
  const unknown = parts.filter((p) => p !== 'steady' && p !== 'restarts');
  if (unknown.length > 0 || parts.length === 0) throw new Error(`BENCH_SNAPSHOT_PARTS=${raw}: use steady, restarts or both (comma-separated)`);
  return { steady: parts.includes('steady'), restarts: parts.includes('restarts') };
}

function snapshotConfigs(raw: string | undefined): ConfigKey[] {
  if ((raw ?? '').trim() === '') return [...configKeys];
  const keys = raw!.split(',').map((k) => k.trim());
  const unknown = keys.filter((k) => !(configKeys as readonly string[]).includes(k));
  if (unknown.length > 0) throw new Error(`BENCH_SNAPSHOT_CONFIGS=${raw}: use any of ${configKeys.join(', ')} (comma-separated)`);
  return keys as ConfigKey[];
}

async function startOn(dataDir: string, name: string, extra: Record<string, string>): Promise<ChildServer> {
  const port = await freePort();
  const env = engineEnv(port, dataDir, { FLASH_SHARDS: '1', LOG_LEVEL: 'info', ...extra });
  return startServer({ name, args: [path.join(repoDir, 'dist/src/main.js')], env, port, readyPath: '/healthz', keepOutput: true });
}

/** Until the engine logs that its checkpointer has loaded its copy (at most 120 s). */
async function checkpointerReady(engine: ChildServer): Promise<void> {
  for (let waited = 0; !(engine.output?.() ?? '').includes('"checkpointer ready"') && waited < 1200; waited++) await new Promise((r) => setTimeout(r, 100));
}

function rssMiB(pid: number | undefined): number | null {
  if (pid === undefined) return null;
  try {
    const status = readFileSync(`/proc/${pid}/status`, 'utf8');
    const kib = Number(/VmRSS:\s+(\d+)/.exec(status)?.[1]);
    return Number.isFinite(kib) ? kib / 1024 : null;
  } catch {
    return null;
  }
}

interface RunFigures {
  /** The configuration's key (BENCH_SNAPSHOT_CONFIGS). */
  key: ConfigKey;
  config: string;
  rate: number;
  requests: number;
  non2xx: number;
  errors: number;
  latencyMs: { p50: number; p99: number; p99_9: number; max: number };
  snapshotsDuringRun: number;
  snapshotMsMean: number | null;
  rssMiBAfterRecovery: number | null;
  /** The engine's peak resident memory while the load ran (sampled every 100 ms). */
  rssMiBPeak: number | null;
}

interface RestartFigures {
  config: string;
  round: number;
  requests: number;
  non2xx: number;
  errors: number;
  latencyMs: { p50: number; p99: number; p99_9: number; max: number };
  /** From the checkpointer thread's start to its copy loaded (its log line). */
  checkpointerReadyMs: number | null;
}

interface FixedRateResult {
  requests: number;
  non2xx: number;
  errors: number;
  latency: { p50: number; p99: number; p99_9: number; max: number };
}

/**
 * Fixed-rate reserves, each a new buyer over the bench's SKUs, evenly paced: request k is due
 * at k / rate and its latency is measured from then (the paced sender of `flash rehearse`), so
 * a stall counts the wait of every request due during it. autocannon's overallRate sends each
 * connection's quota in a burst at the start of every second, which queues the burst in the
 * engine (p99 is then the burst's, not the engine's) and answers the requests due later in a
 * second before any stall in it (BENCH_SNAPSHOT_SENDER=autocannon measures that way).
 */
async function fixedRate(url: string, rate: number, seconds: number, prefix: string, warmupSeconds = settings.warmupSeconds): Promise<FixedRateResult> {
  let n = 0;
  const headers = { 'content-type': 'application/json', authorization: `Bearer ${shopToken}` };
  if (process.env.BENCH_SNAPSHOT_SENDER === 'autocannon') {
    const res = await new Promise<autocannon.Result>((resolve, reject) => {
      autocannon({
        url, connections: settings.connections, pipelining: 1, duration: seconds, overallRate: rate, timeout: 30,
        requests: [{
          method: 'POST', path: '/v1/reservations',
          setupRequest: (req) => ({ ...req, headers, body: `{"sku":"${sku(n % settings.skus)}","buyerId":"${prefix}${n++}","qty":1}` }),
        }],
      }, (err: unknown, r: autocannon.Result) => (err ? reject(err instanceof Error ? err : new Error(String(err))) : resolve(r)));
    });
    return { requests: res.requests.total, non2xx: res.non2xx, errors: res.errors, latency: { p50: res.latency.p50, p99: res.latency.p99, p99_9: res.latency.p99_9, max: res.latency.max } };
  }
  // One set of connections for the warm-up and the measured run: a run that opened all of
  // them at its start would measure that, not the engine.
  const agent = new http.Agent({ keepAlive: true, maxSockets: settings.connections, maxFreeSockets: settings.connections, scheduling: 'lifo' });
  const paced = async (secs: number): Promise<StepLog> => {
    const ledger = new Ledger();
    const phase = ledger.phase('fixed', 'reserve', '');
    const step = phase.step(`${rate}/s`, 'constant rate', rate, settings.connections);
    await runPaced(ledger, {
      url, connections: settings.connections, rate, count: rate * secs, seconds: secs, timeoutSeconds: 30, agent,
      requests: [{ route: 'reservation.create', method: 'POST', build: () => ({ path: '/v1/reservations', headers, body: `{"sku":"${sku(n % settings.skus)}","buyerId":"${prefix}${n++}","qty":1}` }) }],
      phase, step,
    });
    phase.endStep(step);
    return step;
  };
  // A warm-up at the same rate, not measured: a freshly recovered engine has not yet compiled
  // its HTTP path, and the first second's answers would measure that, not snapshots.
  if (warmupSeconds > 0) await paced(warmupSeconds);
  const step = await paced(seconds);
  agent.destroy();
  const l = latencySummary(step.hist) ?? emptyLatency;
  const non2xx = [...step.outcomes].filter(([k]) => !/^2\d\d$/.test(k) && !/^(timeout|connection)/.test(k)).reduce((a, [, v]) => a + v, 0);
  return { requests: step.answered, non2xx, errors: step.errors, latency: { p50: l.p50, p99: l.p99, p99_9: l.p99_9, max: l.max } };
}

async function main(): Promise<void> {
  const run = runInfo();
  progress(`bench:snapshots on ${machineLine(run)}`);
  const tmp = mkdtempSync(path.join(os.tmpdir(), 'flash-bench-snap-'));
  const children: ChildServer[] = [];
  try {
    // 0. The floor this machine puts under any answer that crosses threads (bench:floor).
    progress('the machine\'s wake-up floor: two threads, 800 MiB held, 10 s');
    const floor = await wakeupFloor(10, 800);

    // 1. The preloaded shard: holds that last a day, so none expires during the bench.
    const base = path.join(tmp, 'preloaded');
    const loader = await startOn(base, 'engine-preload', { FLASH_SNAPSHOT_EVERY: '1000000000' });
    children.push(loader);
    for (let i = 0; i < settings.skus; i++) {
      const r = await call(loader.port, 'PUT', `/v1/skus/${sku(i)}`, { stock: 1_000_000_000, holdSeconds: 86_400 });
      if (r.status !== 201) throw new Error(`PUT ${sku(i)} answered ${r.status}`);
    }
    progress(`preloading ${fmt(settings.preload)} held reservations`);
    const preload = await runLoad('preload', `http://127.0.0.1:${loader.port}`, { connections: 64, pipelining: 1, durationSeconds: 0, amount: settings.preload, timeoutSeconds: 30 },
      { skuOf: (n) => sku(n % settings.skus), buyerPrefix: 'pre-', token: shopToken });
    const preloaded = preload.statuses['201'] ?? 0;
    progress(`preloaded ${fmt(preloaded)} holds at ${fmt(preload.requestsPerSecMean)}/s; stopping (a snapshot at close)`);
    await loader.stop(120_000);

    // 2. Peak on a copy, then the rate for every configuration: half of it.
    const copy = (name: string): string => {
      const dir = path.join(tmp, name);
      cpSync(base, dir, { recursive: true });
      return dir;
    };
    const peakEngine = await startOn(copy('peak'), 'engine-peak', { FLASH_SNAPSHOT_EVERY: '1000000000' });
    children.push(peakEngine);
    // A warm-up first, not measured: right after recovering a million holds the engine
    // answered about half what it answers a few seconds later (2,133 then 4,177 reserves/s
    // in two 5 s rounds here), and half of a cold peak is not half of the peak.
    await runLoad('peak warm-up', `http://127.0.0.1:${peakEngine.port}`, { connections: 64, pipelining: 1, durationSeconds: settings.peakSeconds, timeoutSeconds: 30 },
      { skuOf: (n) => sku(n % settings.skus), buyerPrefix: 'peak-warm-', token: shopToken });
    const peak = await runLoad('peak', `http://127.0.0.1:${peakEngine.port}`, { connections: 64, pipelining: 1, durationSeconds: settings.peakSeconds, timeoutSeconds: 30 },
      { skuOf: (n) => sku(n % settings.skus), buyerPrefix: 'peak-', token: shopToken });
    await peakEngine.stop(120_000);
    const rate = settings.rate > 0 ? settings.rate : Math.max(100, Math.floor(peak.requestsPerSecMean / 2));
    const every = Math.max(1000, Math.floor((rate * settings.seconds) / (settings.snapshotsWanted + 0.5)));
    progress(`peak ${fmt(peak.requestsPerSecMean)} reserves/s: runs at ${fmt(rate)}/s for ${settings.seconds} s, a snapshot due every ${fmt(every)} commands`);

    // 3. Each configuration on its own copy of the preloaded shard.
    const configs: { key: ConfigKey; name: string; env: Record<string, string> }[] = [
      { key: 'default', name: 'checkpointer thread at nice 19, without rests (the default)', env: { FLASH_SNAPSHOT_EVERY: String(every) } },
      { key: 'paced', name: 'checkpointer thread at normal priority, at most 25 % of a core (FLASH_CHECKPOINT_NICE=0; the default before)', env: { FLASH_SNAPSHOT_EVERY: String(every), FLASH_CHECKPOINT_NICE: '0' } },
      { key: 'normal', name: 'checkpointer thread at normal priority without rests (FLASH_CHECKPOINT_NICE=0 FLASH_CHECKPOINT_CPU_PERCENT=100)', env: { FLASH_SNAPSHOT_EVERY: String(every), FLASH_CHECKPOINT_NICE: '0', FLASH_CHECKPOINT_CPU_PERCENT: '100' } },
      { key: 'none', name: 'no snapshot in the run', env: { FLASH_SNAPSHOT_EVERY: '1000000000' } },
      { key: 'shard', name: 'on the shard thread (FLASH_CHECKPOINTER=0)', env: { FLASH_SNAPSHOT_EVERY: String(every), FLASH_CHECKPOINTER: '0' } },
      // What the checkpointer's copy costs the shard when no snapshot is due: the same as "none"
      // without the second thread.
      { key: 'bare', name: 'none, and no checkpointer', env: { FLASH_SNAPSHOT_EVERY: '1000000000', FLASH_CHECKPOINTER: '0' } },
    ];
    const runs: RunFigures[] = [];
    for (const [k, c] of configs.entries()) {
      if (!settings.parts.steady) break;
      if (!settings.configs.includes(c.key)) continue;
      const busy = await cpuBusyPct();
      const dir = copy(`run-${k}`);
      const engine = await startOn(dir, `engine-${k}`, c.env);
      children.push(engine);
      // Steady state: the checkpointer's own recovery (loading the snapshot of the preloaded
      // shard) is over before the load starts.
      const checkpointed = c.env.FLASH_CHECKPOINTER !== '0';
      if (checkpointed) await checkpointerReady(engine);
      await new Promise((r) => setTimeout(r, 2000));
      const rss = rssMiB(engine.child.pid);
      progress(`${c.name}: machine ${busy}% busy before; engine RSS ${fmt(rss ?? NaN)} MiB after recovery`);
      const logStart = (engine.output?.() ?? '').length;
      const sampler = startRssSampler(engine.child.pid === undefined ? [] : [engine.child.pid]);
      const res = await fixedRate(`http://127.0.0.1:${engine.port}`, rate, settings.seconds, `r${k}-`);
      const rssRun = sampler.stop();
      const written = (engine.output?.() ?? '').slice(logStart).split('\n').filter((l) => l.includes('"wal snapshot written"'));
      // Where each checkpoint's time went (its log line), for reading a run's tail against.
      for (const l of (engine.output?.() ?? '').slice(logStart).split('\n').filter((x) => x.includes('"checkpoint stages"'))) {
        const st = JSON.parse(l) as Record<string, number>;
        progress(`  checkpoint at lsn ${fmt(st.lsn ?? NaN)}: writing ${fmt(st.writeMs ?? NaN)} ms (${st.writeSyncs} syncs, ${fmt(st.writeSyncMs ?? NaN)} ms), verifying ${fmt(st.verifyMs ?? NaN)} ms, its GC pauses ${fmt(st.gcMs ?? NaN)} ms (${st.gcMajor} major), adopting on the shard thread ${fmt(st.adoptMs ?? NaN)} ms`);
      }
      const ms = written.map((l) => Number((JSON.parse(l) as { ms?: number }).ms ?? NaN)).filter(Number.isFinite);
      const f: RunFigures = {
        key: c.key, config: c.name, rate, requests: res.requests, non2xx: res.non2xx, errors: res.errors,
        latencyMs: { p50: res.latency.p50, p99: res.latency.p99, p99_9: res.latency.p99_9, max: res.latency.max },
        snapshotsDuringRun: written.length, snapshotMsMean: ms.length > 0 ? ms.reduce((a, b) => a + b, 0) / ms.length : null,
        rssMiBAfterRecovery: rss, rssMiBPeak: rssRun.peakMiB,
      };
      progress(`${c.name}: p50 ${f.latencyMs.p50} ms, p99 ${f.latencyMs.p99} ms, p99.9 ${f.latencyMs.p99_9} ms, worst ${f.latencyMs.max} ms; ${f.snapshotsDuringRun} snapshots; non-2xx ${f.non2xx}, errors ${f.errors}`);
      runs.push(f);
      // Every preloaded hold is still there (spot check across SKUs: counters add up).
      let reserved = 0;
      await inParallel(settings.skus, 16, async (i) => {
        const r = await call(engine.port, 'GET', `/v1/skus/${sku(i)}`);
        reserved += Number(r.json.reserved ?? 0);
      });
      if (reserved < preloaded) throw new Error(`${c.name}: ${reserved} units held, fewer than the ${preloaded} preloaded`);
      await engine.stop(120_000);
      rmSync(dir, { recursive: true, force: true });
    }

    // 4. Restarts under load (a kill -9 on drop day): the engine recovers the preloaded shard
    // and the load starts with its first answer, no warm-up, while the checkpointer loads its
    // copy beside the shard, paced at its default share or not at all; rounds alternate.
    const restarts: RestartFigures[] = [];
    const restartConfigs: { name: string; env: Record<string, string> }[] = [
      { name: 'restart: the checkpointer loads its copy at 25 % of a core, then runs at nice 19 (the default)', env: { FLASH_SNAPSHOT_EVERY: '1000000000' } },
      { name: 'restart: the checkpointer loads its copy at 25 % of a core, and stays at normal priority (FLASH_CHECKPOINT_NICE=0)', env: { FLASH_SNAPSHOT_EVERY: '1000000000', FLASH_CHECKPOINT_NICE: '0' } },
    ];
    for (let round = 1; settings.parts.restarts && round <= settings.restartRounds; round++) {
      for (const [k, c] of restartConfigs.entries()) {
        const dir = copy(`restart-${round}-${k}`);
        const engine = await startOn(dir, `engine-restart-${round}-${k}`, c.env);
        children.push(engine);
        const res = await fixedRate(`http://127.0.0.1:${engine.port}`, rate, settings.restartSeconds, `rs${round}-${k}-`, 0);
        await checkpointerReady(engine);
        const ready = (engine.output?.() ?? '').split('\n').find((l) => l.includes('"checkpointer ready"'));
        const readyMs = ready === undefined ? null : Number((JSON.parse(ready.slice(ready.indexOf('{'))) as { ms?: number }).ms ?? NaN);
        const f: RestartFigures = { config: c.name, round, requests: res.requests, non2xx: res.non2xx, errors: res.errors, latencyMs: res.latency, checkpointerReadyMs: readyMs };
        progress(`${c.name}, round ${round}: p50 ${f.latencyMs.p50} ms, p99 ${f.latencyMs.p99} ms, p99.9 ${f.latencyMs.p99_9} ms, worst ${f.latencyMs.max} ms; checkpointer ready ${readyMs ?? '-'} ms after it started`);
        restarts.push(f);
        await engine.stop(120_000);
        rmSync(dir, { recursive: true, force: true });
      }
    }

    // "Without snapshots" is the engine with no snapshot work at all: no checkpointer either.
    const ckpt = runs.find((r) => r.key === 'default');
    const idle = runs.find((r) => r.key === 'none');
    const bare = runs.find((r) => r.key === 'bare');
    const worstRatio = ckpt === undefined || bare === undefined ? null : ckpt.latencyMs.max / Math.max(1, bare.latencyMs.max);
    const metWorst = worstRatio !== null && worstRatio <= settings.goal.worstRatioMax;
    const metP99 = ckpt !== undefined && ckpt.latencyMs.p99 < settings.goal.p99MsMax;
    const enough = ckpt !== undefined && ckpt.snapshotsDuringRun >= 3;
    const rows = runs.map((r) => [r.config, fmt(r.latencyMs.p50, 1), fmt(r.latencyMs.p99, 1), fmt(r.latencyMs.p99_9, 1), fmt(r.latencyMs.max, 1),
      String(r.snapshotsDuringRun), r.snapshotMsMean === null ? '-' : fmt(r.snapshotMsMean), `${fmt(r.requests)} / ${r.non2xx} / ${r.errors}`, fmt(r.rssMiBAfterRecovery ?? NaN), fmt(r.rssMiBPeak ?? NaN)]);
    const table = markdownTable(['snapshots', 'p50 ms', 'p99 ms', 'p99.9 ms', 'worst ms', 'snapshots in the run', 'mean ms per snapshot (write)', 'answers / non-2xx / errors', 'RSS MiB after recovery', 'peak RSS MiB during the run'], rows);
    const goals = ckpt === undefined || idle === undefined || bare === undefined || worstRatio === null ? '(the goals need the configurations default, none and bare at a fixed rate: BENCH_SNAPSHOT_PARTS, BENCH_SNAPSHOT_CONFIGS)' : markdownTable(['goal', 'reached', 'met'], [
      [`worst answer with the checkpointer <= ${settings.goal.worstRatioMax} x the worst with no snapshot work at all (no checkpointer)`, `${fmt(worstRatio, 2)} x (${ckpt.latencyMs.max} ms vs ${bare.latencyMs.max} ms)`, metWorst ? 'met' : 'NOT met'],
      [`p99 with the checkpointer < ${settings.goal.p99MsMax} ms`, `${ckpt.latencyMs.p99} ms`, metP99 ? 'met' : 'NOT met'],
      ['at least 3 snapshots of the preloaded shard during the run', String(ckpt.snapshotsDuringRun), enough ? 'met' : 'NOT met'],
      ['memory of the checkpointer\'s copy (RSS with it minus without, no snapshot due)', `${fmt((idle.rssMiBAfterRecovery ?? NaN) - (bare.rssMiBAfterRecovery ?? NaN))} MiB for ${fmt(preloaded)} holds`, '-'],
    ]);
    const restartTable = restarts.length === 0 ? '' : `\n\nRestarts under load: the engine recovers the ${fmt(preloaded)} holds and answers ${fmt(rate)} reserves/s from its first answer for ${settings.restartSeconds} s (no warm-up), while its checkpointer loads its copy\n\n${markdownTable(
      ['restart', 'round', 'p50 ms', 'p99 ms', 'p99.9 ms', 'worst ms', 'checkpointer ready after (ms)', 'answers / non-2xx / errors'],
      restarts.map((r) => [r.config, String(r.round), fmt(r.latencyMs.p50, 1), fmt(r.latencyMs.p99, 1), fmt(r.latencyMs.p99_9, 1), fmt(r.latencyMs.max, 1), r.checkpointerReadyMs === null ? '-' : fmt(r.checkpointerReadyMs), `${fmt(r.requests)} / ${r.non2xx} / ${r.errors}`]),
    )}`;
    const header = `bench:snapshots: ${machineLine(run)}\ncommand: ${run.command}\none shard, ${fmt(preloaded)} held reservations preloaded; fixed rate ${fmt(rate)}/s (${settings.rate > 0 ? 'BENCH_SNAPSHOT_RATE; the measured peak' : 'half the measured peak'} ${fmt(peak.requestsPerSecMean)}/s), ${settings.seconds} s per configuration, ${settings.connections} connections, snapshot every ${fmt(every)} commands\nthe machine's floor (bench:floor, no engine: a message between two threads of a process holding ${fmt(floor.heldMiB)} MiB, ${fmt(floor.roundTrips)} round trips): p99 ${fmt(floor.p99Ms, 2)} ms, worst ${fmt(floor.worstMs, 1)} ms, ${floor.stalls} stalls over 10 ms${run.machine.kernelMonitor === null ? '' : ` (${run.machine.kernelMonitor})`}\n`;
    finish('snapshots', { bench: 'snapshots', ...run, settings, preloaded, peak: peak.requestsPerSecMean, rate, every, runs, restarts, floor, worstRatio, met: { worst: metWorst, p99: metP99, snapshots: enough } }, `${header}\n${table}\n\n${goals}${restartTable}`);
  } finally {
    for (const c of children) await c.stop(120_000).catch(() => undefined);
    rmSync(tmp, { recursive: true, force: true });
  }
}

main().catch((e: unknown) => {
  process.stderr.write(`bench:snapshots failed: ${e instanceof Error ? e.stack : String(e)}\n`);
  process.exitCode = 1;
});
