// `flash rehearse SCENARIO`: load-test your own deployment before the big day. It sets up the
// scenario's SKUs and drops (named `rehearsal-<runid>-...`, or uses existing ones; it never
// changes one it did not create), runs its phases (a hot-SKU sell-out, many SKUs, full flows,
// queue joins, an overload at a multiple of the measured capacity) with its own paced sender,
// shows a live progress line on stderr, checks what matters (every SKU conserved, none
// oversold by the run's own count, exactly the stock sold, the phases answered 2xx, no
// credential refused, no redirect, no 5xx but 503 overloaded, the ERP backlog drained, the
// stated targets), holds its counts beside the engine's own /metrics, and writes report.md,
// report.json and chart.svg to --out. Exit 0 when every check and target passed, 1 when one
// failed (so a release can be gated on it), 2 usage (nothing sent, or nothing changed when
// the engine already has a SKU or drop the run would create; a target that is not this
// machine is refused unless named with --target-is or --allow-remote), 3 the engine cannot be
// reached, redirects elsewhere, or stopped answering mid-run (the report then holds what the
// run got).

import { randomBytes } from 'node:crypto';
import { join, resolve } from 'node:path';
import { Limits } from '../domain/index.js';
import { CliError, Exit, connection, defaultUrl, seg, type ExitCode, type FlashIo, type GlobalOptions } from './flash-client.js';
import { duration } from './flash-format.js';
import { renderRehearsalChart } from './rehearse-chart.js';
import {
  conservationCheck, describeTarget, erpCheck, paidCheck, readSkus, selloutCheck, serverErrorChecks, targetCheck,
  type CheckResult, type TargetResult,
} from './rehearse-checks.js';
import {
  answersCheck, credentialsCheck, flowsCheck, redirectCheck, stockCheck, type SkuFigures,
} from './rehearse-checks.js';
import { Api, Buyers, eachLimit, scrapeMetrics, type Credentials } from './rehearse-http.js';
import { Ledger, activeMs, type PhaseLog, type StepLog } from './rehearse-load.js';
import { identityOf, runPhase, type CreatedSku, type RunContext } from './rehearse-phases.js';
import { buildReport, deploymentOf, engineComparison, machineLine, writeReport, type RehearsalReport } from './rehearse-report.js';
import { describeShape, prefixMax, readScenario, requestsMax, stepsOf, type Scenario } from './rehearse-scenario.js';
import { fmt, latencySummary } from './report-kit.js';

export interface RehearseOptions {
  operatorToken?: string;
  shopToken?: string;
  paymentsToken?: string;
  out?: string;
  targetIs?: string;
  allowRemote?: string[];
  cleanup: boolean;
  prefix?: string;
  dryRun: boolean;
  json: boolean;
}

const loopbackName = new Set(['localhost', '::1', '[::1]']);

/** 127.0.0.0/8, ::1 and localhost: this machine. */
export function isLoopback(hostname: string): boolean {
  return loopbackName.has(hostname.toLowerCase()) || /^127\.\d{1,3}\.\d{1,3}\.\d{1,3}$/.test(hostname);
}

/**
 * Refuses (exit 2, before anything is sent) a target that is not this machine unless the
 * command line names it: --target-is host:port equal to the URL's, or --allow-remote host.
 */
export function checkTarget(rawUrl: string, opts: { targetIs?: string; allowRemote?: string[] }): void {
  const url = new URL(rawUrl);
  const host = url.hostname;
  const port = url.port === '' ? (url.protocol === 'https:' ? '443' : '80') : url.port;
  const hostPort = `${url.hostname}:${port}`;
  if (opts.targetIs !== undefined && opts.targetIs.toLowerCase() !== hostPort.toLowerCase()) {
    throw new CliError(Exit.usage, `--target-is ${opts.targetIs} does not name the target: --url is ${url.origin}, so it would be --target-is ${hostPort}; nothing was sent`);
  }
  if (isLoopback(host)) return;
  if (opts.targetIs !== undefined) return;
  if ((opts.allowRemote ?? []).some((h) => h.toLowerCase() === host.toLowerCase())) return;
  throw new CliError(Exit.usage, `refusing to load ${url.origin}: it is not this machine, and a rehearsal sends thousands of requests. If it is yours to load, say so on the command line: --target-is ${hostPort} (or --allow-remote ${host}); nothing was sent`);
}

/**
 * Refuses (exit 2, nothing sent) a URL with a user or password in it (never printed: the
 * run's tokens are the credentials), a query or a fragment. A path is the engine's base path:
 * every call of the run, the load's included, goes under it.
 */
export function checkUrl(rawUrl: string): void {
  let url: URL;
  try {
    url = new URL(rawUrl);
  } catch {
    throw new CliError(Exit.usage, '--url is not a URL; give one like http://127.0.0.1:8080');
  }
  if (url.username !== '' || url.password !== '') {
    throw new CliError(Exit.usage, `--url must not carry a user or password (${url.protocol}//<user:password>@${url.host}${url.pathname === '/' ? '' : url.pathname}): give the operator's token with --operator-token or FLASH_OPERATOR_TOKEN; nothing was sent`);
  }
  if (url.search !== '' || url.hash !== '') {
    throw new CliError(Exit.usage, `--url must be the engine's address and base path only (${url.origin}${url.pathname}), without a query or fragment; nothing was sent`);
  }
}

/** KEY=value pairs of the tokens.env a first `npm start` wrote (only for an engine on this machine). */
function firstRunSecrets(io: FlashIo, loopback: boolean): Map<string, { value: string; source: string }> {
  const out = new Map<string, { value: string; source: string }>();
  if (!loopback) return out;
  const file = join(io.env.FLASH_DATA_DIR ?? 'data', 'credentials', 'tokens.env');
  let text: string;
  try {
    text = io.readFile(file);
  } catch {
    return out;
  }
  for (const line of text.split(/\r?\n/)) {
    const m = /^\s*([A-Z_]+)=(.*)$/.exec(line);
    const value = m?.[2]?.trim().replace(/^(['"])(.*)\1$/, '$2');
    if (m !== null && value) out.set(m[1]!, { value, source: `${m[1]} of ${file}` });
  }
  return out;
}

/** Who the run is, for each role: flags, else environment, else (this machine) a first start's tokens.env. */
export function credentialsOf(io: FlashIo, opts: RehearseOptions, conn: { url: string; token: { value: string; source: string } | null }): Credentials {
  const local = firstRunSecrets(io, isLoopback(new URL(conn.url).hostname));
  const pick = (flag: string | undefined, flagName: string, envName: string, localName: string | null): { value: string; source: string } | null => {
    if (flag !== undefined && flag !== '') return { value: flag, source: flagName };
    const env = io.env[envName];
    if (env !== undefined && env !== '') return { value: env, source: envName };
    return localName === null ? null : local.get(localName) ?? null;
  };
  // The operator: its own flag or variable, else the tool's --token (FLASH_TOKEN, FLASH_ADMIN_TOKEN, a first start's).
  const operator = pick(opts.operatorToken, '--operator-token', 'FLASH_OPERATOR_TOKEN', null) ?? conn.token;
  const secret = pick(undefined, '', 'FLASH_BUYER_TOKEN_SECRET', 'BUYER_TOKEN_SECRET');
  if (secret !== null && Buffer.byteLength(secret.value) < 32) {
    throw new CliError(Exit.usage, `the buyer-token secret of ${secret.source} is shorter than 32 bytes; give the engine's FLASH_BUYER_TOKEN_SECRET`);
  }
  const audience = io.env.FLASH_BUYER_TOKEN_AUDIENCE;
  const c: Credentials = {
    operator,
    shop: pick(opts.shopToken, '--shop-token', 'FLASH_SHOP_TOKEN', 'SHOP_TOKEN'),
    payments: pick(opts.paymentsToken, '--payments-token', 'FLASH_PAYMENTS_TOKEN', 'PAYMENTS_TOKEN'),
    buyerSecret: secret,
    audience: audience === undefined || audience === '' ? null : audience,
  };
  // A token goes into an authorization header: visible ASCII only (never printed).
  for (const t of [c.operator, c.shop, c.payments]) {
    if (t !== null && !/^[\x21-\x7e]+$/.test(t.value)) throw new CliError(Exit.usage, `the token of ${t.source} holds a character an HTTP header cannot carry (a space or line break?); nothing was sent`);
  }
  return c;
}

/** Every credential the scenario needs is at hand, or a usage error naming the flag (nothing sent). */
function requireCredentials(s: Scenario, c: Credentials, cleanup: boolean): void {
  const missing: string[] = [];
  const creates = s.skus.some((x) => !x.existing) || s.drops.some((x) => !x.existing);
  if (c.operator === null && (creates || cleanup || s.checks.erpDrainedWithinSeconds !== null)) {
    missing.push(`an operator token (to ${creates ? 'create the SKUs and drops' : cleanup ? 'clean up' : 'read the ERP report'}): --operator-token, FLASH_OPERATOR_TOKEN or --token`);
  }
  const buyers = new Buyers(c.buyerSecret?.value ?? null, c.audience);
  for (const p of s.phases) {
    const as = identityOf({ buyers }, p);
    if (as === 'buyer' && c.buyerSecret === null) missing.push(`phase ${p.name} reserves as buyers: the shop's buyer-token secret in FLASH_BUYER_TOKEN_SECRET`);
    if (as === 'shop' && c.shop === null) missing.push(`phase ${p.name} needs buyers: FLASH_BUYER_TOKEN_SECRET (buyer tokens) or a shop token (--shop-token, FLASH_SHOP_TOKEN)`);
    const pays = (p.kind === 'sellout' && p.pay) || (p.kind === 'flow' && p.mix.pay > 0);
    if (pays && c.payments === null) missing.push(`phase ${p.name} pays: a payments token (--payments-token, FLASH_PAYMENTS_TOKEN)${p.kind === 'sellout' ? ', or pay: false' : ''}`);
  }
  if (missing.length > 0) throw new CliError(Exit.usage, `missing credentials; nothing was sent\n  ${[...new Set(missing)].join('\n  ')}`);
}

function planLines(s: Scenario): string[] {
  const lines = [`scenario ${s.name} (${s.file}), names prefixed ${s.prefix}`];
  for (const d of s.drops) lines.push(`  drop ${d.dropId}${d.existing ? ' (existing)' : `: create${d.body.queue ? ` with queue ${JSON.stringify(d.body.queue)}` : ''}`}`);
  for (const k of s.skus) {
    const names = k.skus.length === 1 ? k.skus[0] : `${k.skus[0]} .. ${k.skus[k.skus.length - 1]} (${k.skus.length})`;
    lines.push(`  sku ${names}${k.existing ? ' (existing)' : `: create with ${JSON.stringify(k.body)}`}`);
  }
  s.phases.forEach((p, i) => {
    const load = p.kind === 'sellout' || p.kind === 'queue' ? describeShape(p.load) : stepsOf(p.load).map((st) => `${st.label} ${st.seconds} s`).join(', ');
    lines.push(`  phase ${i + 1} ${p.name} (${p.kind}): ${load}, ${p.connections} connections`);
  });
  for (const t of s.targets) lines.push(`  target ${describeTarget(t)}`);
  if (s.checks.erpDrainedWithinSeconds !== null) lines.push(`  check ERP backlog drained within ${s.checks.erpDrainedWithinSeconds} s`);
  return lines;
}

// ---------------------------------------------------------------------------------------
// The live progress line

class Progress {
  private timer: NodeJS.Timeout | null = null;
  private phase: PhaseLog | null = null;
  private step: StepLog | null = null;
  private index = 0;
  private readonly tty: NodeJS.WritableStream | null;

  constructor(private readonly io: FlashIo, private readonly ledger: Ledger, private readonly total: number) {
    this.tty = io.progress;
  }

  start(): void {
    this.timer = setInterval(() => this.draw(false), this.tty === null ? 1000 : 250);
    this.timer.unref();
  }

  stop(): void {
    if (this.timer !== null) clearInterval(this.timer);
    this.timer = null;
    this.clear();
  }

  onPhase(index: number): void {
    this.index = index;
  }

  onStep(phase: PhaseLog, step: StepLog): void {
    this.phase = phase;
    this.step = step;
    this.draw(false);
  }

  private clear(): void {
    if (this.tty !== null) this.tty.write('\r\x1b[2K');
  }

  /** A line for the log: the phase as it ended. */
  phaseDone(p: PhaseLog): void {
    this.clear();
    const answers = p.steps.reduce((a, s) => a + s.answered, 0);
    const secs = (p.endMs - p.startMs) / 1000;
    const active = p.steps.reduce((a, s) => a + activeMs(s), 0) / 1000;
    const l = latencySummary(p.hist);
    this.io.stderr(`rehearse: phase ${p.name} done in ${secs.toFixed(1)} s: ${fmt(answers)} answers (${fmt(active > 0 ? answers / active : 0)}/s); ${outcomesText(p.outcomes)}${l === null ? '' : `; p50 ${l.p50} ms, p99 ${l.p99} ms, p99.9 ${l.p99_9} ms`}\n`);
    this.phase = null;
    this.step = null;
  }

  private draw(final: boolean): void {
    const p = this.phase;
    const s = this.step;
    if (p === null || s === null) return;
    const now = this.ledger.now();
    const sec = Math.floor(now / 1000) - 1;
    const last = p.seconds.get(sec);
    const rate = last?.answers ?? 0;
    const l = last === undefined ? null : latencySummary(last.hist);
    const plan = s.mode === 'constant rate' ? '' : s.mode === 'closed loop' ? ' · as fast as answered' : ` · ${s.connections} at once`;
    const line = `rehearse [${this.index}/${this.total}] ${p.name} · ${s.label}${plan} · ${((now - s.startMs) / 1000).toFixed(0)} s · ${fmt(rate)}/s${l === null ? '' : ` · p99 ${l.p99} ms`} · ${outcomesText(p.outcomes)}`;
    if (this.tty !== null) this.tty.write(`\r\x1b[2K${line.slice(0, 200)}`);
    else if (!final) this.io.stderr(`${line}\n`);
  }
}

function outcomesText(m: ReadonlyMap<string, number>): string {
  const list = [...m].sort((a, b) => b[1] - a[1]);
  return list.length === 0 ? 'no answer yet' : list.slice(0, 6).map(([k, v]) => `${k} ${fmt(v)}`).join(', ') + (list.length > 6 ? ', ...' : '');
}

// ---------------------------------------------------------------------------------------

interface Setup {
  /** SKUs of the run with whether this run created them (201). */
  skus: { sku: string; created: boolean }[];
  dropsCreated: string[];
  /** The SKUs the run created, with the scenario's stock and hold time. */
  created: Map<string, CreatedSku>;
}

/** The engine's hold time when a SKU states none (src/domain/fields.ts: holdSeconds, default 600). */
const engineDefaultHoldSeconds = 600;

/**
 * Before anything is written: GET every SKU and drop the run means to create (none may exist:
 * PUT is an upsert, and would change a SKU or drop the run does not own) and every one it
 * means to use as it is (each must exist, and a queue phase's drop must have a queue).
 * Anything amiss is a usage error naming each (exit 2), with nothing changed.
 */
async function preflight(api: Api, s: Scenario, c: Credentials): Promise<void> {
  const token = c.operator?.value ?? null;
  const problems: string[] = [];
  const queued = new Set(s.phases.flatMap((p) => (p.kind === 'queue' ? [p.drop] : [])));
  const look = async (what: string, route: string, path: string, existing: boolean, check?: (body: unknown) => string | null): Promise<void> => {
    const r = await api.expect(`GET ${path}`, route, 'GET', path, { token, accept: [404] });
    if (r.status === 404) {
      if (existing) problems.push(`${what} is marked existing: true but the engine has none of that name`);
      return;
    }
    if (!existing) problems.push(`${what} exists already on the engine: the run would change it (PUT is an upsert); give another --prefix, or mark it existing: true to use it as it is`);
    else {
      const p = check?.(r.body) ?? null;
      if (p !== null) problems.push(p);
    }
  };
  for (const d of s.drops) {
    await look(`drop ${d.dropId}`, 'drop.get', `/v1/drops/${seg(d.dropId)}`, d.existing, (body) =>
      queued.has(d.dropId) && ((body as { queue?: unknown } | undefined)?.queue ?? null) === null ? `drop ${d.dropId} has no queue, and a queue phase joins it` : null);
  }
  const work = s.skus.flatMap((spec) => spec.skus.map((sku) => ({ sku, spec })));
  await eachLimit(work, 8, async ({ sku, spec }) => look(`sku ${sku}`, 'sku.get', `/v1/skus/${seg(sku)}`, spec.existing));
  if (problems.length > 0) {
    problems.sort();
    throw new CliError(Exit.usage, `the engine does not match the scenario; nothing was changed\n  ${problems.slice(0, 20).join('\n  ')}${problems.length > 20 ? `\n  ... and ${problems.length - 20} more` : ''}`);
  }
}

async function setUp(api: Api, s: Scenario, c: Credentials, runId: string): Promise<Setup> {
  const token = c.operator?.value ?? null;
  const dropsCreated: string[] = [];
  const changed: string[] = [];
  for (const d of s.drops) {
    if (d.existing) continue;
    const r = await api.expect(`PUT /v1/drops/${d.dropId}`, 'drop.put', 'PUT', `/v1/drops/${seg(d.dropId)}`, { token, body: d.body, tokenSource: c.operator?.source });
    if (r.status === 201) dropsCreated.push(d.dropId);
    else changed.push(`drop ${d.dropId}`);
  }
  const skus: Setup['skus'] = [];
  const work = s.skus.flatMap((spec) => spec.skus.map((sku) => ({ sku, spec })));
  const created = new Map<string, CreatedSku>();
  await eachLimit(work, 8, async ({ sku, spec }) => {
    if (spec.existing) return;
    const body = { reason: `flash rehearse ${runId}`, ...spec.body };
    const r = await api.expect(`PUT /v1/skus/${sku}`, 'sku.put', 'PUT', `/v1/skus/${seg(sku)}`, { token, body, tokenSource: c.operator?.source });
    if (r.status !== 201) {
      changed.push(`sku ${sku}`);
      return;
    }
    const answered = (r.body as { holdSeconds?: unknown } | undefined)?.holdSeconds;
    const holdSeconds = typeof spec.body.holdSeconds === 'number' ? spec.body.holdSeconds : typeof answered === 'number' ? answered : engineDefaultHoldSeconds;
    created.set(sku, { stock: spec.body.stock as number, holdSeconds });
  });
  if (changed.length > 0) {
    // Made between the look before and the PUT: the run changed what it does not own; it stops here.
    throw new CliError(Exit.refused, `the engine already had ${changed.slice(0, 5).join(', ')}${changed.length > 5 ? ` and ${changed.length - 5} more` : ''} when the run created it (made meanwhile by someone else?): the PUT updated it; the run stopped before any load`);
  }
  for (const { sku } of work) skus.push({ sku, created: created.has(sku) });
  return { skus, dropsCreated, created };
}

async function cleanUp(ctx: RunContext, setup: Setup, runId: string): Promise<Record<string, unknown>> {
  const { api } = ctx;
  let holdsCancelled = 0;
  let holdsNotCancelled = 0;
  await eachLimit([...ctx.holds], 16, async ([id, hold]) => {
    const r = await api.tryCall('reservation.cancel', 'POST', `/v1/reservations/${seg(id)}/cancel`, { token: ctx.cancelToken ?? hold.owner?.token(hold.n) ?? null, body: {} });
    if (r.status === 200) {
      holdsCancelled++;
      ctx.holds.delete(id);
    } else holdsNotCancelled++;
  });
  const token = ctx.creds.operator?.value ?? null;
  let unitsWrittenOff = 0;
  let skusZeroed = 0;
  let unitsLeftSold = 0;
  const problems: string[] = [];
  await eachLimit(setup.skus.filter((x) => x.created), 8, async ({ sku }) => {
    for (let attempt = 0; attempt < 3; attempt++) {
      const v = await api.tryCall('sku.get', 'GET', `/v1/skus/${seg(sku)}`, { token });
      if (v.status !== 200) {
        problems.push(`${sku}: GET ${v.status}`);
        return;
      }
      const view = v.body as { available: number; sold: number };
      if (view.available <= 0) {
        skusZeroed++;
        unitsLeftSold += view.sold;
        return;
      }
      const delta = -Math.min(view.available, Limits.stockMax);
      const r = await api.tryCall('sku.stock', 'POST', `/v1/skus/${seg(sku)}/stock`, { token, body: { delta, reason: `flash rehearse ${runId} cleanup` } });
      if (r.status === 200) unitsWrittenOff += -delta;
      else if (r.code !== 'insufficient_stock') {
        problems.push(`${sku}: write-off ${r.status} ${r.code ?? ''}`);
        return;
      }
    }
    problems.push(`${sku}: still available after 3 write-offs`);
  });
  return {
    holdsCancelled, holdsNotCancelled, unitsWrittenOff, skusZeroed, skusNotZeroed: problems.length, unitsLeftSold,
    problems: problems.slice(0, 10).join('; '), dropsCreated: setup.dropsCreated,
  };
}

function timestamp(d = new Date()): string {
  return d.toISOString().slice(0, 19).replace(/[-:]/g, '').replace('T', '-');
}

export async function runRehearse(global: GlobalOptions, io: FlashIo, file: string, opts: RehearseOptions): Promise<ExitCode> {
  checkUrl(global.url ?? io.env.FLASH_URL ?? defaultUrl);
  const conn = connection(global, io);
  checkTarget(conn.url, opts);
  if (opts.prefix !== undefined && (opts.prefix.length > prefixMax || !/^[A-Za-z0-9._:-]+$/.test(opts.prefix))) {
    throw new CliError(Exit.usage, `--prefix ${opts.prefix} must be 1..${prefixMax} characters of A-Z a-z 0-9 . _ : -`);
  }
  let text: string;
  try {
    text = io.readFile(file);
  } catch (e) {
    throw new CliError(Exit.usage, `cannot read ${file}: ${(e as Error).message}`);
  }
  const runId = `${Date.now().toString(36)}${randomBytes(2).toString('hex')}`;
  const scenario = readScenario(text, file, opts.prefix ?? null, `rehearsal-${runId}-`);
  const creds = credentialsOf(io, opts, conn);
  requireCredentials(scenario, creds, opts.cleanup);
  if (opts.dryRun) {
    io.stdout(`${planLines(scenario).join('\n')}\ndry run: nothing was sent\n`);
    return Exit.ok;
  }
  const outDir = resolve(opts.out ?? `rehearsal-${timestamp()}`);

  const ledger = new Ledger(requestsMax);
  const api = new Api(conn, ledger);
  const health = await api.call('healthz', 'GET', '/healthz');
  if (health.status !== 200) throw new CliError(Exit.unreachable, `the engine at ${conn.url} is not serving: GET /healthz answered ${health.status}; try again once it is up`);
  const before = await scrapeMetrics(api);
  const deployment = deploymentOf(before?.role ?? null);
  io.stderr(`rehearse: ${scenario.name} against ${conn.url} (${deployment}), run ${runId}, names prefixed ${scenario.prefix}\n`);

  await preflight(api, scenario, creds);
  const setup = await setUp(api, scenario, creds, runId);
  const createdCount = setup.skus.filter((x) => x.created).length;
  io.stderr(`rehearse: set up ${setup.dropsCreated.length} drop${setup.dropsCreated.length === 1 ? '' : 's'} and ${createdCount} SKU${createdCount === 1 ? '' : 's'}${setup.skus.length > createdCount ? ` (${setup.skus.length - createdCount} existing)` : ''}\n`);

  const progress = new Progress(io, ledger, scenario.phases.length);
  const ctx: RunContext = {
    api, ledger, creds, buyers: new Buyers(creds.buyerSecret?.value ?? null, creds.audience), prefix: scenario.prefix,
    timeoutSeconds: scenario.timeoutSeconds, signal: io.signal, holds: new Map(), tallies: new Map(), created: setup.created,
    cancelToken: creds.payments?.value ?? creds.shop?.value ?? null,
    onStep: (phase, step) => progress.onStep(phase, step),
  };
  progress.start();
  let interrupted = false;
  // The engine stopped answering mid-run: the run ends with exit 3, and a partial report.
  let gone: CliError | null = null;
  let cleanup: Record<string, unknown> | null = null;
  try {
    for (const [i, phase] of scenario.phases.entries()) {
      if (io.signal?.aborted) {
        interrupted = true;
        break;
      }
      progress.onPhase(i + 1);
      const log = await runPhase(ctx, phase);
      progress.phaseDone(log);
    }
    if (io.signal?.aborted) interrupted = true;
  } catch (e) {
    progress.stop();
    if (!(e instanceof CliError && e.exitCode === Exit.unreachable)) {
      if (opts.cleanup) await cleanUp(ctx, setup, runId).catch(() => undefined);
      throw e;
    }
    gone = e;
    const open = ledger.phases[ledger.phases.length - 1];
    if (open !== undefined && open.endMs === 0) open.endMs = ledger.now();
  }
  progress.stop();

  // The checks.
  const token = creds.operator?.value ?? null;
  let skus: SkuFigures[] = [];
  const checks: CheckResult[] = [];
  if (gone !== null) checks.push({ name: 'the engine answered to the end of the run', ok: false, detail: gone.message });
  try {
    skus = await readSkus(api, token, setup.skus, ctx);
  } catch (e) {
    if (!(e instanceof CliError && e.exitCode === Exit.unreachable)) throw e;
    if (gone === null) {
      gone = e;
      checks.push({ name: 'the engine answered to the end of the run', ok: false, detail: e.message });
    }
  }
  if (skus.length > 0 || gone === null) {
    checks.push(conservationCheck(skus));
    const stock = stockCheck(skus);
    if (stock !== null) checks.push(stock);
    const paid = paidCheck(skus);
    if (paid !== null) checks.push(paid);
  }
  for (const p of ledger.phases) {
    if (p.kind === 'sellout' && p.extra.after !== undefined) checks.push(selloutCheck(p));
    if (p.kind === 'flow' && p.extra.flows !== undefined) checks.push(flowsCheck(p));
  }
  checks.push(answersCheck(ledger, scenario.checks.minOkShare), credentialsCheck(ledger), redirectCheck(ledger));
  checks.push(...serverErrorChecks(ledger, scenario.checks.shardUnavailableMax));
  let erp: Record<string, unknown> | null = null;
  if (scenario.checks.erpDrainedWithinSeconds !== null && gone === null) {
    io.stderr(`rehearse: waiting up to ${scenario.checks.erpDrainedWithinSeconds} s for the ERP backlog to drain\n`);
    const r = await erpCheck(api, token, scenario.checks.erpDrainedWithinSeconds, io.signal);
    checks.push(r.check);
    erp = r.report;
  }
  const targets: TargetResult[] = scenario.targets.map((t) => targetCheck(ledger, t));
  if (opts.cleanup) {
    io.stderr('rehearse: cleaning up: cancelling holds, writing off stock\n');
    if (gone === null) cleanup = await cleanUp(ctx, setup, runId);
    else cleanup = await cleanUp(ctx, setup, runId).catch(() => null);
  }
  const after = gone === null ? await scrapeMetrics(api) : null;

  const ok = !interrupted && gone === null && checks.every((c) => c.ok) && targets.every((t) => t.ok);
  const exitCode: ExitCode = gone !== null ? Exit.unreachable : ok ? Exit.ok : Exit.refused;
  const report: RehearsalReport = buildReport({
    ledger,
    scenario: { file, name: scenario.name },
    target: { url: conn.url, deployment: deploymentOf(after?.role ?? before?.role ?? null) },
    runId, prefix: scenario.prefix, startedAt: new Date(ledger.startedAt).toISOString(), machine: machineLine(),
    verdict: gone !== null ? 'unreachable' : interrupted ? 'interrupted' : ok ? 'pass' : 'fail', exitCode,
    checks, targets, skus, engine: engineComparison(ledger, before, after), erp, cleanup,
  });
  const paths = writeReport(outDir, report, renderRehearsalChart(report));
  if (opts.json) io.stdout(`${JSON.stringify(report)}\n`);
  else io.stdout(summary(report, paths.md));
  if (gone !== null) io.stderr(`flash: ${gone.message}\n`);
  return exitCode;
}

export function verdictWord(v: RehearsalReport['verdict']): string {
  return v === 'pass' ? 'PASSED' : v === 'interrupted' ? 'INTERRUPTED' : v === 'unreachable' ? 'STOPPED (the engine stopped answering)' : 'FAILED';
}

/** What stdout shows at the end: the verdict, each check and target, the phases, where the report is. */
function summary(r: RehearsalReport, md: string): string {
  const lines: string[] = [];
  lines.push(`${verdictWord(r.verdict)}: ${r.scenario.name} against ${r.target.url} (${r.target.deployment}) in ${duration(r.seconds * 1000)}`);
  for (const c of r.checks) lines.push(`  ${c.ok ? 'pass' : 'FAIL'}  ${c.name}: ${c.detail}`);
  for (const t of r.targets) lines.push(`  ${t.ok ? 'pass' : 'FAIL'}  target ${describeTarget(t.target)}: ${t.detail}`);
  for (const p of r.phases) {
    const l = p.latencyMs;
    lines.push(`  phase ${p.name}: ${fmt(p.answers)} answers, ${fmt(p.achievedRps)}/s${l === null ? '' : `, p50 ${l.p50} / p99 ${l.p99} / p99.9 ${l.p99_9} ms`}; ${Object.entries(p.outcomes).sort((a, b) => b[1] - a[1]).map(([k, v]) => `${k} ${fmt(v)}`).join(', ')}`);
  }
  lines.push(`report: ${md} (with report.json and chart.svg)`);
  return `${lines.join('\n')}\n`;
}
