// `npm run bench:http`: the engine's durable reserve call against a bare node:http server,
// side by side in one run with the same autocannon settings, then a hot-SKU sell-out that
// must sell exactly the stock. Both servers run as child processes with fresh temp dirs,
// which are always stopped (SIGTERM) and deleted. Exits 1 on any oversell or lost unit.

import { cpSync, mkdirSync, mkdtempSync, readdirSync, rmSync } from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { cpuBusyPct, finish, fmt, machineLine, markdownTable, progress, repoDir, resultsDir, runInfo, envInt } from './bench-report.js';
import { freePort, startServer, type ChildServer } from './child-server.js';
import { formatSummary, summarizeProfile, type ProfileSummary } from './cpu-profile-summary.js';
import {
  buyerTokenSecret, commitCounters, commitFigures, engineEnvDescription, shopToken, skuName, skuTotals, startEngine, type CommitFigures, type Engine,
} from './engine-under-test.js';
import { hotSellOut, type HotSellOut } from './hot-sku.js';
import { runLoad, type LoadFigures, type LoadSettings, type ReserveBodySource } from './http-load.js';
import { processCpuSeconds } from './process-cpu.js';
import { measureBuyerTokenCosts } from './buyer-token-bench.js';
import { mintBuyerToken } from '../src/gateway/buyer-token.js';

const settings = {
  load: { connections: 64, pipelining: 1, durationSeconds: envInt('BENCH_SECONDS', 10, 1, 3600), timeoutSeconds: 10 } satisfies LoadSettings,
  warmUpSeconds: envInt('BENCH_WARMUP_SECONDS', 3, 0, 600),
  /** Bare and engine runs alternate this many times, so drift on a shared machine hits both. */
  rounds: envInt('BENCH_ROUNDS', 1, 1, 20),
  skus: { count: 1000, stock: 1_000_000_000, maxPerBuyerOnOddSkus: 2 },
  hot: { sku: 'hot-sku', stock: 20_000, maxPerBuyer: 1, requests: 40_000 },
  /** auto: profile the engine only when it misses the ratio goal; 1: always; 0: never. */
  profile: (process.env.BENCH_PROFILE ?? 'auto') as 'auto' | '1' | '0',
  ratioGoal: 0.8,
  /** Buyer tokens on (HS256, a distinct buyer per request) against no token: at least this ratio. */
  tokensRatioGoal: 0.9,
  /** Buyer tokens minted before the token runs: more than the engine's verified-token cache, so every request misses it. */
  buyerTokenPool: envInt('BENCH_BUYER_TOKENS', 300_000, 1000, 5_000_000),
};

const load = (prefix: string): ReserveBodySource => ({ skuOf: (n: number) => skuName(n % settings.skus.count), buyerPrefix: prefix, token: shopToken });

async function warmUp(name: string, url: string, prefix: string, extra: Partial<ReserveBodySource> = {}): Promise<LoadFigures | null> {
  if (settings.warmUpSeconds === 0) return null;
  progress(`${name}: warm-up ${settings.warmUpSeconds} s`);
  return runLoad(`${name} warm-up`, url, { ...settings.load, durationSeconds: settings.warmUpSeconds }, { ...load(prefix), ...extra });
}

async function measure(name: string, url: string, prefix: string): Promise<LoadFigures> {
  progress(`${name}: measuring ${settings.load.durationSeconds} s, ${settings.load.connections} connections`);
  const f = await runLoad(name, url, settings.load, load(prefix));
  progress(`${name}: ${fmt(f.requestsPerSecMean)} req/s, p50 ${f.latencyMs.p50} ms, p99 ${f.latencyMs.p99} ms, non-2xx ${f.non2xx}, errors ${f.errors}`);
  return f;
}

interface Round {
  /** CPU in use by other processes just before the round (this bench idle). */
  machineBusyBeforePct: number;
  bare: LoadFigures;
  engine: LoadFigures;
  /** Group commit in the engine's run: with N connections a turn can carry at most N reserves. */
  engineWal: CommitFigures;
  ratio: number;
  /** CPU seconds each server process used (all threads) during its measured run; null without /proc. */
  cpuSeconds: { bare: number | null; engine: number | null };
  /** 2xx answers per CPU-second of the whole server process: what a core buys. */
  perCpuSecond: { bare: number | null; engine: number | null };
}

/** CPU seconds `pid` used while `run` ran (null without /proc). */
async function cpuOf<T>(pid: number | undefined, run: () => Promise<T>): Promise<{ result: T; cpuSeconds: number | null }> {
  const before = processCpuSeconds(pid);
  const result = await run();
  const after = processCpuSeconds(pid);
  return { result, cpuSeconds: before === null || after === null ? null : after - before };
}

const per = (answers: number, cpuSeconds: number | null): number | null => (cpuSeconds === null || cpuSeconds <= 0 ? null : answers / cpuSeconds);

async function round(k: number, bare: ChildServer, engine: Engine): Promise<Round> {
  const bareUrl = `http://127.0.0.1:${bare.port}`;
  const machineBusyBeforePct = await cpuBusyPct();
  progress(`round ${k + 1}/${settings.rounds}: machine ${machineBusyBeforePct}% busy before it${machineBusyBeforePct > 10 ? ' (other processes are running: figures will be low and noisy)' : ''}`);
  const bareRun = await cpuOf(bare.child.pid, () => measure('bare node:http', bareUrl, `b${k}-`));
  const before = await commitCounters(engine);
  const engineRun = await cpuOf(engine.child.pid, () => measure('engine', `http://127.0.0.1:${engine.port}`, `e${k}-`));
  const measured = engineRun.result;
  const engineWal = commitFigures(before, await commitCounters(engine), measured.statuses['201'] ?? 0);
  progress(`engine: ${engineWal.walRecords} fdatasync'ed WAL records, ${fmt(engineWal.reservesPerRecord, 1)} reserves per record, ${fmt(engineWal.meanTurnMs, 2)} ms per turn`);
  const cpuSeconds = { bare: bareRun.cpuSeconds, engine: engineRun.cpuSeconds };
  const perCpuSecond = { bare: per(bareRun.result.statuses['201'] ?? 0, cpuSeconds.bare), engine: per(measured.statuses['201'] ?? 0, cpuSeconds.engine) };
  progress(`CPU: bare ${fmt(cpuSeconds.bare ?? NaN, 1)} s (${fmt(perCpuSecond.bare ?? NaN)} answers per CPU-second), engine ${fmt(cpuSeconds.engine ?? NaN, 1)} s (${fmt(perCpuSecond.engine ?? NaN)} durable reserves per CPU-second)`);
  return { machineBusyBeforePct, bare: bareRun.result, engine: measured, engineWal, ratio: measured.requestsPerSecMean / bareRun.result.requestsPerSecMean, cpuSeconds, perCpuSecond };
}

/** The cost of authentication: one engine (FLASH_DEV, so no token is also allowed), three kinds of caller. */
interface TokenRound {
  noToken: LoadFigures;
  shopToken: LoadFigures;
  buyerTokens: LoadFigures;
  ratio: number;
}

interface TokenFigures {
  rounds: TokenRound[];
  /** Mean of buyer-token runs over mean of no-token runs. */
  ratio: number;
  met: boolean;
  /** In-process cost of one verification, µs (bench/buyer-token-bench.ts). */
  verifyMicros: Record<string, number>;
}

async function tokenRuns(tmp: string, children: ChildServer[]): Promise<TokenFigures> {
  const verifyMicros = await measureBuyerTokenCosts();
  progress(`buyer token verify (in process): ${Object.entries(verifyMicros).map(([k, v]) => `${k} ${fmt(v, 2)} µs`).join(', ')}`);
  const engine = await startEngine(tmp, 'engine-tokens', settings.skus, [], { FLASH_DEV: '1' });
  children.push(engine);
  const url = `http://127.0.0.1:${engine.port}`;
  const expS = Math.floor(Date.now() / 1000) + 3600;
  progress(`minting ${fmt(settings.buyerTokenPool)} buyer tokens (HS256, one per buyer)`);
  const pool = Array.from({ length: settings.buyerTokenPool }, (_, i) => mintBuyerToken(buyerTokenSecret, { sub: `tk-${i.toString(36)}`, exp: expS }));
  const source = (prefix: string, extra: Partial<ReserveBodySource>): ReserveBodySource => ({ skuOf: (n) => skuName(n % settings.skus.count), buyerPrefix: prefix, ...extra });
  await warmUp('engine, buyer tokens', url, 'tw', { buyerTokens: pool.slice(0, 50_000) });
  const rounds: TokenRound[] = [];
  for (let k = 0; k < settings.rounds; k++) {
    const noToken = await runLoad('engine, no token (FLASH_DEV)', url, settings.load, source(`t${k}n-`, {}));
    const buyerTokens = await runLoad('engine, buyer tokens (HS256, distinct)', url, settings.load, source(`t${k}b-`, { buyerTokens: pool }));
    const shop = await runLoad('engine, shop token', url, settings.load, source(`t${k}s-`, { token: shopToken }));
    for (const f of [noToken, buyerTokens, shop]) progress(`${f.title}: ${fmt(f.requestsPerSecMean)} req/s, p99 ${f.latencyMs.p99} ms, 201 ${f.statuses['201'] ?? 0}, non-2xx ${f.non2xx}`);
    rounds.push({ noToken, shopToken: shop, buyerTokens, ratio: buyerTokens.requestsPerSecMean / noToken.requestsPerSecMean });
  }
  await engine.stop();
  const mean = (xs: number[]): number => xs.reduce((a, b) => a + b, 0) / xs.length;
  const ratio = mean(rounds.map((r) => r.buyerTokens.requestsPerSecMean)) / mean(rounds.map((r) => r.noToken.requestsPerSecMean));
  return { rounds, ratio, met: ratio >= settings.tokensRatioGoal, verifyMicros };
}

function tokenTable(t: TokenFigures): string {
  const rows: string[][] = [];
  for (const [k, r] of t.rounds.entries()) {
    const tag = t.rounds.length > 1 ? ` (round ${k + 1})` : '';
    const cell = (f: LoadFigures): string => `${fmt(f.requestsPerSecMean)} (p99 ${fmt(f.latencyMs.p99, 1)} ms, ${f.statuses['201'] ?? 0} x 201)`;
    rows.push([`reserves/s${tag}`, cell(r.noToken), cell(r.shopToken), cell(r.buyerTokens)]);
  }
  rows.push(['**buyer tokens / no token**', '', '', `**${fmt(t.ratio, 2)}** (goal >= ${settings.tokensRatioGoal}: ${t.met ? 'met' : 'NOT met'})`]);
  const verify = Object.entries(t.verifyMicros).map(([k, v]) => [k, `${fmt(v, 2)} µs`]);
  return `${markdownTable(['authentication', 'no token (FLASH_DEV)', 'shop token', 'buyer tokens, HS256, every request a new buyer'], rows)}\n\n${markdownTable(['one token check, in process', 'cost'], verify)}`;
}

interface UnitsCheck {
  held: number;
  acked201: number;
  inFlightAtStopMax: number;
  ok: boolean;
  broken: string[];
}

/** Units held on the bench SKUs must match the 201s the client saw, give or take the requests cut off at the end of each timed run. */
async function unitsCheck(engine: Engine, runs: (LoadFigures | null)[]): Promise<UnitsCheck> {
  const totals = await skuTotals(engine.port, settings.skus);
  const done = runs.filter((r): r is LoadFigures => r !== null);
  const acked201 = done.reduce((a, r) => a + (r.statuses['201'] ?? 0), 0);
  const inFlightAtStopMax = settings.load.connections * done.length;
  const ok = totals.broken.length === 0 && totals.units >= acked201 && totals.units <= acked201 + inFlightAtStopMax;
  progress(`engine: ${totals.units} units held on ${settings.skus.count} SKUs for ${acked201} acknowledged reserves${ok ? '' : ': MISMATCH'}`);
  return { held: totals.units, acked201, inFlightAtStopMax, ok, broken: totals.broken };
}

/** Runs a fresh engine under the same load with --cpu-prof and sums self time per function and thread. */
interface EngineProfile {
  dir: string;
  threads: ProfileSummary[];
  /** Records in the profiled engine's logs over its whole life (SKU setup, warm-up, run). */
  walRecords: number;
  /** Self time of fdatasync over all threads, divided by walRecords: the mean blocking time of one fsync. */
  fdatasyncMsPerRecord: number;
}

async function profileEngine(tmp: string, children: ChildServer[]): Promise<EngineProfile> {
  const profDir = path.join(tmp, 'cpu-profiles');
  mkdirSync(profDir);
  const engine = await startEngine(tmp, 'engine-profiled', settings.skus, ['--cpu-prof', `--cpu-prof-dir=${profDir}`]);
  children.push(engine);
  const url = `http://127.0.0.1:${engine.port}`;
  await warmUp('engine (profiled)', url, 'pw');
  await measure('engine (profiled)', url, 'pm');
  const { walRecords } = await commitCounters(engine);
  await engine.stop();
  const keep = path.join(resultsDir, `http-cpu-profiles-${new Date().toISOString().replace(/[:.]/g, '-')}`);
  cpSync(profDir, keep, { recursive: true });
  const threads = readdirSync(profDir).filter((f) => f.endsWith('.cpuprofile')).sort()
    .map((f) => ({ ...summarizeProfile(path.join(profDir, f), 20), file: path.relative(repoDir, path.join(keep, f)) }));
  for (const t of threads) process.stderr.write(`\n${formatSummary(t)}\n`);
  const fdatasyncMs = threads.reduce((a, t) => a + (t.top.find((f) => f.fn === 'fdatasync')?.selfMs ?? 0), 0);
  const fdatasyncMsPerRecord = fdatasyncMs / Math.max(1, walRecords);
  progress(`profiled engine: ${walRecords} WAL records, fdatasync blocked ${fmt(fdatasyncMs)} ms in all: ${fmt(fdatasyncMsPerRecord, 2)} ms per record`);
  return { dir: path.relative(repoDir, keep), threads, walRecords, fdatasyncMsPerRecord };
}

const cpuCell = (cpuSeconds: number | null, perSecond: number | null): string =>
  (cpuSeconds === null || perSecond === null ? 'n/a' : `${fmt(cpuSeconds, 1)} / ${fmt(perSecond)}`);

function tables(rounds: Round[], hot: HotSellOut, ratio: number): string {
  const rows: string[][] = [];
  for (const [k, r] of rounds.entries()) {
    const tag = rounds.length > 1 ? ` (round ${k + 1})` : '';
    const lat = (f: LoadFigures): string => [f.latencyMs.p50, f.latencyMs.p99, f.latencyMs.p99_9].map((x) => fmt(x, 1)).join(' / ');
    rows.push(
      [`requests/s, mean${tag}`, fmt(r.bare.requestsPerSecMean), fmt(r.engine.requestsPerSecMean), fmt(r.ratio, 2)],
      [`latency p50 / p99 / p99.9 ms${tag}`, lat(r.bare), lat(r.engine), ''],
      [`responses / non-2xx / errors / timeouts${tag}`, `${r.bare.requests} / ${r.bare.non2xx} / ${r.bare.errors} / ${r.bare.timeouts}`, `${r.engine.requests} / ${r.engine.non2xx} / ${r.engine.errors} / ${r.engine.timeouts}`, ''],
      [`WAL records (fdatasyncs) / reserves per record / ms per turn${tag}`, '-', `${r.engineWal.walRecords} / ${fmt(r.engineWal.reservesPerRecord, 1)} / ${fmt(r.engineWal.meanTurnMs, 2)}`, ''],
      [`CPU seconds of the server process (all threads) / 2xx per CPU-second${tag}`, cpuCell(r.cpuSeconds.bare, r.perCpuSecond.bare), cpuCell(r.cpuSeconds.engine, r.perCpuSecond.engine),
        r.perCpuSecond.bare !== null && r.perCpuSecond.engine !== null ? fmt(r.perCpuSecond.engine / r.perCpuSecond.bare, 2) : ''],
      [`machine busy before the round${tag}`, `${r.machineBusyBeforePct}%`, '', ''],
    );
  }
  rows.push(['**engine / bare, requests/s**', '', '', `**${fmt(ratio, 2)}** (goal >= ${settings.ratioGoal}: ${ratio >= settings.ratioGoal ? 'met' : 'NOT met'})`]);
  const side = markdownTable(['', 'bare node:http', 'engine (durable reserve)', 'engine / bare'], rows);
  const hotTable = markdownTable(['hot-SKU sell-out', 'value'], [
    ['reserve calls (distinct buyers)', fmt(hot.load.requests)],
    ['201 created', fmt(hot.created201)],
    ['refusals by code', JSON.stringify(hot.load.errorCodes ?? {})],
    ['requests/s mean, p99 ms', `${fmt(hot.load.requestsPerSecMean)}, ${fmt(hot.load.latencyMs.p99, 1)}`],
    ['after: onHand / reserved / sold / available', `${hot.after.onHand} / ${hot.after.reserved} / ${hot.after.sold} / ${hot.after.available}`],
    ['oversold', hot.oversold ? '**YES**' : 'no'],
  ]);
  return `${side}\n\n${hotTable}`;
}

async function main(): Promise<void> {
  const run = runInfo();
  progress(`bench:http on ${machineLine(run)}`);
  progress(`command: ${run.command}`);
  const tmp = mkdtempSync(path.join(os.tmpdir(), 'flash-bench-http-'));
  const children: ChildServer[] = [];
  try {
    const barePort = await freePort();
    const bare = await startServer({ name: 'bare', args: [path.join(repoDir, 'dist/bench/bare-server.js')], env: { PORT: String(barePort) }, port: barePort, readyPath: '/' });
    children.push(bare);
    const engine = await startEngine(tmp, 'engine', settings.skus);
    children.push(engine);
    const bareUrl = `http://127.0.0.1:${barePort}`;
    await warmUp('bare node:http', bareUrl, 'bw');
    const engineWarmUp = await warmUp('engine', `http://127.0.0.1:${engine.port}`, 'ew');
    const rounds: Round[] = [];
    for (let k = 0; k < settings.rounds; k++) rounds.push(await round(k, bare, engine));
    const units = await unitsCheck(engine, [engineWarmUp, ...rounds.map((r) => r.engine)]);
    const hot = await hotSellOut(engine.port, settings.hot, settings.load);
    const bareExit = await bare.stop();
    const engineExit = await engine.stop();
    const tokens = await tokenRuns(tmp, children);
    progress(`stopped: bare exit code ${bareExit}, engine exit code ${engineExit}`);

    const mean = (xs: number[]): number => xs.reduce((a, b) => a + b, 0) / xs.length;
    const ratio = mean(rounds.map((r) => r.engine.requestsPerSecMean)) / mean(rounds.map((r) => r.bare.requestsPerSecMean));
    const wantProfile = settings.profile === '1' || (settings.profile === 'auto' && ratio < settings.ratioGoal);
    if (wantProfile) progress(`engine / bare = ${fmt(ratio, 2)}${ratio < settings.ratioGoal ? `, under the ${settings.ratioGoal} goal` : ''}: profiling a fresh engine under the same load`);
    const profile = wantProfile ? await profileEngine(tmp, children) : null;
    const ok = hot.ok && !hot.oversold && units.ok;
    const result = {
      bench: 'http', ...run,
      settings: { ...settings, dataDir: os.tmpdir(), engineShards: engine.shardCount, engineEnv: engineEnvDescription },
      rounds,
      ratio: { engineOverBare: ratio, goal: settings.ratioGoal, met: ratio >= settings.ratioGoal },
      engine: { warmUp: engineWarmUp, units, hot, exitCode: engineExit },
      tokens,
      bareExitCode: bareExit,
      profile,
      ok,
    };
    const l = settings.load;
    const header = `bench:http: ${machineLine(run)}\ncommand: ${run.command}\nautocannon: ${l.connections} connections, pipelining ${l.pipelining}, ${l.durationSeconds} s per run, warm-up ${settings.warmUpSeconds} s, ${settings.rounds} round(s); engine shards: ${engine.shardCount}\n`;
    finish('http', result, `${header}\n${tables(rounds, hot, ratio)}\n\n${tokenTable(tokens)}`);
    if (!ok) {
      progress(`FAILED: ${[...hot.problems, ...(units.ok ? [] : ['units held on the bench SKUs do not match the acknowledged reserves']), ...units.broken].join('; ')}`);
      process.exitCode = 1;
    }
  } finally {
    for (const c of children) await c.stop();
    rmSync(tmp, { recursive: true, force: true });
  }
}

main().catch((e: unknown) => {
  process.stderr.write(`bench:http failed: ${e instanceof Error ? e.stack : String(e)}\n`);
  process.exitCode = 1;
});
