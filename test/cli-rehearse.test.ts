// `flash rehearse` against real deployments, in-process through runFlash: an embedded engine
// (with an ERP that accepts every order, so the backlog check can drain) and a gateway with two
// shard nodes over a real nats-server. Phases are 1-3 s on loopback. The report's figures are
// held against the engine's own counters, read here independently: flash_http_requests_total
// by route and status, flash_refusals_total by code, and every SKU's view. Timings are never
// asserted at the receiver; a target no engine can meet (p99 under 0.001 ms) must fail the run
// (exit 1), and a target that is not this machine must be refused before anything is sent
// (exit 2) unless the command line names it.

import { spawn, type ChildProcess } from 'node:child_process';
import { existsSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { createServer, type Server } from 'node:http';
import { networkInterfaces, tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { heldAtOnce } from '../src/cli/rehearse-checks.js';
import { BUYER_TOKEN_SECRET, TOKENS, freePort, startEngine, stopAllEngines, type Engine } from './support/engine-process.js';
import { runFlashCaptured, type Ran } from './support/flash-run.js';
import { startNatsDeployment, stopAllNatsServers } from './support/nats-deployment.js';

let work: string;
let engine: Engine;
let erp: Server;
const fakes: ChildProcess[] = [];

/** A fake engine (test/support/fake-engine.mjs) that misbehaves on cue: MODE and BASE as it documents. */
async function fake(mode: string, base = ''): Promise<{ url: string; child: ChildProcess }> {
  const child = spawn(process.execPath, [fileURLToPath(new URL('./support/fake-engine.mjs', import.meta.url))], {
    env: { ...process.env, PORT: '0', MODE: mode, BASE: base }, stdio: ['ignore', 'pipe', 'inherit'],
  });
  fakes.push(child);
  const port = await new Promise<number>((resolve, reject) => {
    child.once('exit', () => reject(new Error('the fake engine exited before listening')));
    child.stdout!.once('data', (c) => resolve(Number(/LISTENING (\d+)/.exec(String(c))?.[1])));
  });
  return { url: `http://127.0.0.1:${port}${base}`, child };
}

/** This machine's own non-loopback IPv4 address, if it has one. */
const ownIp = (): string | undefined => Object.values(networkInterfaces()).flat().find((a) => a !== undefined && a.family === 'IPv4' && !a.internal)?.address;

beforeAll(async () => {
  work = mkdtempSync(join(tmpdir(), 'flash-rehearse-'));
  erp = createServer((req, res) => {
    req.resume();
    req.on('end', () => res.writeHead(200).end('{}'));
  });
  await new Promise<void>((r) => erp.listen(0, '127.0.0.1', r));
  const port = (erp.address() as { port: number }).port;
  engine = await startEngine({
    env: { FLASH_ERP_WEBHOOK_URL: `http://127.0.0.1:${port}/erp`, FLASH_ERP_SECRET: 'rehearse-test-secret-0123', FLASH_ERP_POLL_MS: '20' },
  });
});

afterAll(async () => {
  for (const f of fakes) f.kill('SIGTERM');
  await stopAllEngines();
  await stopAllNatsServers();
  await new Promise((r) => erp?.close(r));
  if (work !== undefined) rmSync(work, { recursive: true, force: true });
});

/** Every credential a rehearsal may use, as the environment of a CI job would give them. */
const credentials = (url: string): Record<string, string> => ({
  FLASH_URL: url, FLASH_TOKEN: TOKENS.operator, FLASH_SHOP_TOKEN: TOKENS.shop, FLASH_PAYMENTS_TOKEN: TOKENS.payments,
  FLASH_BUYER_TOKEN_SECRET: BUYER_TOKEN_SECRET,
});

function rehearse(args: string[], env: Record<string, string | undefined>): Promise<Ran> {
  // An empty data directory: no tokens.env of a developer's engine is ever read.
  return runFlashCaptured(['rehearse', ...args], { FLASH_DATA_DIR: join(work, 'no-data'), ...env });
}

function file(name: string, text: string): string {
  const path = join(work, name);
  writeFileSync(path, text);
  return path;
}

type Counts = Map<string, number>;

/** flash_http_requests_total ("route status" -> count) and flash_refusals_total summed by code ("code" -> count). */
async function engineCounters(url: string): Promise<{ requests: Counts; refusals: Counts }> {
  const text = await (await fetch(`${url}/metrics`)).text();
  const requests: Counts = new Map();
  const refusals: Counts = new Map();
  for (const m of text.matchAll(/^flash_http_requests_total\{route="([^"]+)",status="(\d+)"\} (\d+)/gm)) requests.set(`${m[1]} ${m[2]}`, Number(m[3]));
  for (const m of text.matchAll(/^flash_refusals_total\{route="[^"]*",code="([^"]+)"\} (\d+)/gm)) refusals.set(m[1]!, (refusals.get(m[1]!) ?? 0) + Number(m[2]));
  return { requests, refusals };
}

function delta(before: Counts, after: Counts): Counts {
  const d: Counts = new Map();
  for (const [k, v] of after) if (v - (before.get(k) ?? 0) !== 0) d.set(k, v - (before.get(k) ?? 0));
  return d;
}

interface Report {
  verdict: string;
  exitCode: number;
  target: { deployment: string };
  prefix: string;
  checks: { name: string; ok: boolean; detail: string }[];
  targets: { ok: boolean; detail: string }[];
  phases: {
    name: string; outcomes: Record<string, number>; extra: Record<string, unknown>; notes: string[];
    latencyMs: { p50: number; p90: number; p99: number } | null;
    steps: { label: string; mode: string; intended: number | null; sent: number; answered: number; cutOff: number; late: number; errors: number }[];
  }[];
  skus: { sku: string; onHand: number; available: number; reserved: number; sold: number; conserved: boolean }[];
  requests: Record<string, Record<string, number>>;
  unanswered: Record<string, number>;
  engine: { rows: { route: string; status: number; rehearsal: number; engine: number }[]; refusals: { code: string; rehearsal: number; engine: number }[] } | null;
  cleanup: Record<string, unknown> | null;
}

const readReport = (dir: string): Report => JSON.parse(readFileSync(join(dir, 'report.json'), 'utf8')) as Report;

/** The report's answers by "route status", without its scrapes of /metrics. */
function reportCounts(r: Report): Counts {
  const m: Counts = new Map();
  for (const [route, statuses] of Object.entries(r.requests)) {
    if (route === 'metrics') continue;
    for (const [status, n] of Object.entries(statuses)) m.set(`${route} ${status}`, n);
  }
  return m;
}

/** Every SKU of the report as the engine shows it now. */
async function expectSkuViews(url: string, r: Report): Promise<void> {
  for (const s of r.skus) {
    const v = await (await fetch(`${url}/v1/skus/${s.sku}`)).json() as Record<string, unknown>;
    expect({ sku: s.sku, onHand: v.onHand, available: v.available, reserved: v.reserved, sold: v.sold })
      .toEqual({ sku: s.sku, onHand: s.onHand, available: s.available, reserved: s.reserved, sold: s.sold });
    expect(s.onHand).toBe(s.available + s.reserved + s.sold);
  }
}

describe('flash rehearse: safe by default', () => {
  it('refuses a target that is not this machine unless the command line names it (exit 2, nothing sent)', async () => {
    const scenario = file('safe.yaml', 'skus: [{sku: a, stock: 5}]\nphases: [{name: p, kind: reserve, sku: a, load: {shape: constant, rps: 5, seconds: 1}}]\n');
    // A server on every interface, reached by this machine's own non-loopback address: it counts what arrives.
    let hits = 0;
    const srv = createServer((req, res) => {
      hits++;
      req.resume();
      res.writeHead(404, { 'content-type': 'application/json' }).end('{"error":{"code":"not_found","message":"no"}}');
    });
    await new Promise<void>((r) => srv.listen(0, '0.0.0.0', r));
    const port = (srv.address() as { port: number }).port;
    const ip = ownIp() ?? '192.0.2.1';
    try {
      const url = `http://${ip}:${port}`;
      const refused = await rehearse([scenario, '--url', url, '--out', join(work, 'refused')], credentials(url));
      expect(refused.code).toBe(2);
      expect(refused.err).toMatch(new RegExp(`refusing to load http://${ip.replace(/\./g, '\\.')}:${port}: it is not this machine.*--target-is ${ip.replace(/\./g, '\\.')}:${port}`));
      const wrong = await rehearse([scenario, '--url', url, '--target-is', `db.internal:${port}`, '--out', join(work, 'refused')], credentials(url));
      expect(wrong.code).toBe(2);
      expect(wrong.err).toMatch(/--target-is db\.internal:\d+ does not name the target/);
      expect(hits).toBe(0);
      expect(existsSync(join(work, 'refused'))).toBe(false);
      if (ip !== '192.0.2.1') {
        // Named on the command line, it is loaded: the stand-in is no engine (404 on /healthz), so exit 3.
        for (const flag of [['--target-is', `${ip}:${port}`], ['--allow-remote', ip]]) {
          const named = await rehearse([scenario, '--url', url, ...flag, '--out', join(work, 'named')], credentials(url));
          expect(named.code).toBe(3);
          expect(named.err).toMatch(/not serving: GET \/healthz answered 404/);
        }
        expect(hits).toBe(2);
      }
    } finally {
      await new Promise((r) => srv.close(r));
    }
  });

  it('checks the whole scenario and the credentials first: exit 2 naming each problem; a dry run prints the plan; no engine: exit 3', async () => {
    const before = await engineCounters(engine.url);
    const bad = file('bad.yaml', [
      'skus:',
      '  - {sku: hot, stok: 10}',
      'phases:',
      '  - {name: hot, kind: selout, sku: hot, buyers: 10}',
      '  - {name: many, kind: reserve, sku: nope, load: {shape: constant, rps: 0, seconds: 1}}',
      'targets: [{phase: missing, p99Ms: 5}]',
      '',
    ].join('\n'));
    const r = await rehearse([bad, '--out', join(work, 'bad')], credentials(engine.url));
    expect(r.code).toBe(2);
    expect(r.err).toMatch(/bad\.yaml: \d+ errors; nothing was sent/);
    expect(r.err).toMatch(/bad\.yaml:2: skus\[0\]\.stok: unknown field stok/);
    expect(r.err).toMatch(/bad\.yaml:4: phases\[0\]\.kind: kind must be sellout/);
    expect(r.err).toMatch(/bad\.yaml:5: phases\[1\]\.sku: nope is not a SKU of this scenario/);
    expect(r.err).toMatch(/phases\[1\]\.load\.rps: rps must be an integer/);
    expect(r.err).toMatch(/targets\[0\]\.phase: missing is not a phase/);

    const good = file('good.yaml', 'skus: [{sku: hot, stock: 10}]\nphases: [{name: hot, kind: sellout, sku: hot, buyers: 20}]\n');
    const noPayments = await rehearse([good], { ...credentials(engine.url), FLASH_PAYMENTS_TOKEN: undefined });
    expect(noPayments.code).toBe(2);
    expect(noPayments.err).toMatch(/missing credentials; nothing was sent\n {2}phase hot pays: a payments token \(--payments-token, FLASH_PAYMENTS_TOKEN\), or pay: false/);
    const dry = await rehearse([good, '--dry-run'], credentials(engine.url));
    expect(dry.code).toBe(0);
    expect(dry.out).toMatch(/sku rehearsal-\w+-hot: create with \{"stock":10\}\n {2}phase 1 hot \(sellout\): closed loop, as fast as answered, 64 connections\ndry run: nothing was sent/);
    const seen = delta(before.requests, (await engineCounters(engine.url)).requests);
    seen.delete('metrics 200'); // this test's own scrape
    expect(Object.fromEntries(seen), 'nothing reached the engine').toEqual({});

    const closed = `http://127.0.0.1:${await freePort()}`;
    const away = await rehearse([good, '--out', join(work, 'away')], credentials(closed));
    expect(away.code).toBe(3);
    expect(away.err).toMatch(/cannot reach the engine at http:\/\/127\.0\.0\.1:\d+ \(ECONNREFUSED\)/);
  });
});

describe('flash rehearse against an embedded engine', () => {
  it('runs every kind of phase, passes its checks, and its figures are the engine\'s own', async () => {
    const scenario = file('embedded.yaml', `
name: embedded test rehearsal
connections: 16
skus:
  - { sku: hot, stock: 150, maxPerBuyer: 1 }
  - { sku: tee, count: 4, stock: 100000, holdSeconds: 600 }
  - { sku: line, stock: 40, maxPerBuyer: 1, dropId: q }
drops:
  - { dropId: q, queue: { mode: fifo, admitPerSecond: 100, admitSeconds: 30 } }
phases:
  - { name: hot, kind: sellout, sku: hot, buyers: 400 }
  - { name: many, kind: reserve, sku: tee, as: shop, load: { shape: constant, rps: 200, seconds: 2 } }
  - { name: flows, kind: flow, sku: tee, mix: { pay: 2, cancel: 1, abandon: 1 }, load: { shape: ramp, from: 100, to: 200, steps: 2, stepSeconds: 1 } }
  - { name: line, kind: queue, drop: q, buyers: 40, pollMs: 100, seconds: 20 }
  - { name: overload, kind: reserve, sku: tee, load: { shape: overload, times: 2, probeSeconds: 1, seconds: 1 } }
targets:
  - { phase: many, p99Ms: 60000 }
checks:
  erpDrainedWithinSeconds: 30
`);
    const out = join(work, 'embedded');
    const before = await engineCounters(engine.url);
    const r = await rehearse([scenario, '--out', out], credentials(engine.url));
    const after = await engineCounters(engine.url);
    expect(r.code, r.out + r.err).toBe(0);
    expect(r.out).toMatch(/^PASSED: embedded test rehearsal against http:\/\/127\.0\.0\.1:\d+ \(embedded engine/);
    expect(r.err).toMatch(/^rehearse \[1\/5\] hot · reserve \(max\)/m);
    expect(r.err).toMatch(/^rehearse: phase overload done in/m);

    const report = readReport(out);
    expect(report.verdict).toBe('pass');
    expect(report.target.deployment).toMatch(/^embedded engine/);
    expect(report.checks.map((c) => [c.name, c.ok])).toEqual([
      ['every SKU conserved (onHand = available + reserved + sold)', true],
      ['no SKU oversold (the run\'s own holds and sales against the scenario\'s stock)', true],
      ['sold = units this run paid (SKUs it created)', true],
      ['sell-out hot: exactly the stock sold', true],
      ['flows flows: every started flow finished, in the mix', true],
      ['every phase answered 2xx (at least 50 % of its answers; sold_out of a sell-out or queue, and 503 overloaded, left out)', true],
      ['every credential accepted (no 401, no 403 forbidden)', true],
      ['answered by the engine itself (no redirect)', true],
      ['no 5xx but 503 overloaded', true],
      ['503 shard_unavailable at most 0', true],
      ['every request answered', true],
      ['ERP backlog drained within 30 s', true],
    ]);
    expect(report.targets.map((t) => t.ok)).toEqual([true]);
    const phase = (name: string): Report['phases'][number] => report.phases.find((p) => p.name === name)!;
    // The sell-out: 150 units to 400 buyers, each hold paid.
    expect(phase('hot').outcomes).toEqual({ 201: 150, '409 sold_out': 250, 200: 150 });
    expect(phase('hot').extra).toMatchObject({ stockAtStart: 150, grantedUnits: 150, paidUnits: 150, after: { available: 0, reserved: 0, sold: 150 } });
    // At a rate, exactly rate x seconds requests are sent and answered.
    expect(phase('many').steps.map((s) => [s.mode, s.sent, s.answered])).toEqual([['constant rate', 400, 400]]);
    // A flow phase's rate x seconds requests carry whole flows: a reserve, then a pay or cancel
    // (2 : 1 : 1 with abandon, so 7 requests per 4 flows); every flow started finished.
    const flowSteps = phase('flows').steps as (Report['phases'][number]['steps'][number] & { intended: number })[];
    expect(flowSteps.map((s) => s.sent)).toEqual(flowSteps.map((s) => s.intended));
    expect(flowSteps.map((s) => s.intended >= s.sent && s.intended > [100, 200][flowSteps.indexOf(s)]! - 2 && s.intended <= [100, 200][flowSteps.indexOf(s)]!)).toEqual([true, true]);
    const f = phase('flows').extra.flows as Record<string, number>;
    expect(f.started).toBe(f.planned);
    expect(f).toMatchObject({ noHold: 0, payOk: f.pay, cancelOk: f.cancel });
    expect(f.pay! + f.cancel! + f.abandon!).toBe(f.started);
    expect(f.pay! + f.cancel! + f.started!).toBe(flowSteps.reduce((a, s) => a + s.sent, 0));
    expect(Math.abs(f.pay! - 2 * f.cancel!)).toBeLessThanOrEqual(2);
    expect(phase('line').extra).toMatchObject({ joined: 40, reserves: { reserved: 40 }, stillWaiting: 0 });

    // Every call the run made is what the engine counted, route by route and status by status;
    // a timed step (the overload's probe) may cut off a few reserves the engine still answered.
    const counted = delta(before.requests, after.requests);
    counted.delete('metrics 200');
    const ours = reportCounts(report);
    const cut = report.unanswered['reservation.create'] ?? 0;
    expect(cut).toBe(report.phases.flatMap((p) => p.steps).reduce((a, s) => a + s.cutOff, 0));
    for (const key of new Set([...counted.keys(), ...ours.keys()])) {
      if (key.startsWith('reservation.create ')) continue;
      expect([key, ours.get(key) ?? 0]).toEqual([key, counted.get(key) ?? 0]);
    }
    const creates = (m: Counts): number => [...m].filter(([k]) => k.startsWith('reservation.create ')).reduce((a, [, v]) => a + v, 0);
    expect(creates(counted) - creates(ours)).toBeGreaterThanOrEqual(0);
    expect(creates(counted) - creates(ours)).toBeLessThanOrEqual(cut);
    expect((counted.get('reservation.create 409') ?? 0)).toBe(ours.get('reservation.create 409') ?? 0);
    // The report's own comparison says the same.
    for (const row of report.engine!.rows) if (!row.route.startsWith('reservation.create')) expect(row.rehearsal, `${row.route} ${row.status}`).toBe(row.engine);
    for (const x of report.engine!.refusals) expect(x.rehearsal, x.code).toBe(x.engine);
    // Refusals by code: the run's load against flash_refusals_total.
    const refusalsOurs: Counts = new Map();
    for (const p of report.phases) for (const [k, v] of Object.entries(p.outcomes)) if (/^4/.test(k)) refusalsOurs.set(k.split(' ')[1]!, (refusalsOurs.get(k.split(' ')[1]!) ?? 0) + v);
    // Before creating anything the run looked for each name (404: none of that name yet).
    refusalsOurs.set('unknown_sku', report.requests['sku.get']!['404']!);
    refusalsOurs.set('unknown_drop', report.requests['drop.get']!['404']!);
    expect(refusalsOurs.get('unknown_sku')).toBe(6);
    expect(Object.fromEntries(delta(before.refusals, after.refusals))).toEqual(Object.fromEntries(refusalsOurs));
    // And every SKU as the engine shows it.
    expect(report.skus).toHaveLength(6);
    await expectSkuViews(engine.url, report);

    const md = readFileSync(join(out, 'report.md'), 'utf8');
    expect(md).toMatch(/^# Drop rehearsal: embedded test rehearsal: PASSED/);
    expect(md).toContain('![throughput, latency and answers per phase](chart.svg)');
    expect(md).toContain('## Beside the engine\'s own counters');
    const svg = readFileSync(join(out, 'chart.svg'), 'utf8');
    expect(svg).toMatch(/^<svg xmlns="http:\/\/www\.w3\.org\/2000\/svg"/);
    for (const name of ['hot', 'many', 'flows', 'line', 'overload', '409 sold_out', 'PASSED']) expect(svg).toContain(`>${name}<`);
  });

  it('exits 1 when a stated target is missed (p99 under 0.001 ms), and --cleanup leaves nothing held or available', async () => {
    const scenario = file('impossible.yaml', `
name: impossible target
connections: 8
skus:
  - { sku: tee, count: 2, stock: 1000, holdSeconds: 600 }
phases:
  - { name: flows, kind: flow, sku: tee, mix: { pay: 1, cancel: 1, abandon: 2 }, load: { shape: constant, rps: 100, seconds: 1 } }
targets:
  - { phase: flows, p99Ms: 0.001 }
`);
    const out = join(work, 'impossible');
    const r = await rehearse([scenario, '--out', out, '--cleanup', '--prefix', 'rh-impossible-'], credentials(engine.url));
    expect(r.code).toBe(1);
    expect(r.out).toMatch(/^FAILED: impossible target/);
    expect(r.out).toMatch(/FAIL {2}target flows: p99 ≤ 0\.001 ms: missed: p99 [\d.]+ ms > 0\.001 ms/);
    const report = readReport(out);
    expect(report).toMatchObject({ verdict: 'fail', exitCode: 1, prefix: 'rh-impossible-' });
    expect(report.checks.every((c) => c.ok)).toBe(true);
    expect(readFileSync(join(out, 'report.md'), 'utf8')).toMatch(/\*\*FAIL\*\* \| flows: p99 ≤ 0\.001 ms/);
    // The abandoned holds were cancelled and the stock written off: nothing held, nothing available.
    expect(report.cleanup).toMatchObject({ holdsNotCancelled: 0, skusZeroed: 2, skusNotZeroed: 0 });
    expect(Number(report.cleanup!.holdsCancelled)).toBeGreaterThan(0);
    for (const sku of ['rh-impossible-tee-000', 'rh-impossible-tee-001']) {
      const v = await (await fetch(`${engine.url}/v1/skus/${sku}`)).json() as Record<string, number>;
      expect(v).toMatchObject({ available: 0, reserved: 0 });
      expect(v.onHand).toBe(v.sold);
    }
  });
});

describe('flash rehearse against a gateway with shard nodes over NATS', () => {
  it('passes its checks, and its figures are the gateway\'s own', async () => {
    const d = await startNatsDeployment({ shards: 2, nodes: [[0], [1]] });
    try {
      const scenario = file('nats.yaml', `
name: nats test rehearsal
connections: 16
skus:
  - { sku: hot, stock: 100, maxPerBuyer: 1 }
  - { sku: tee, count: 4, stock: 100000 }
phases:
  - { name: hot, kind: sellout, sku: hot, buyers: 250 }
  - { name: many, kind: reserve, sku: tee, load: { shape: constant, rps: 150, seconds: 2 } }
  - { name: flows, kind: flow, sku: tee, as: shop, load: { shape: spike, rps: 50, spikeRps: 150, seconds: 1, spikeSeconds: 1, afterSeconds: 1 } }
`);
      const out = join(work, 'nats');
      const before = await engineCounters(d.url);
      const r = await rehearse([scenario, '--out', out], credentials(d.url));
      const after = await engineCounters(d.url);
      expect(r.code, r.out + r.err).toBe(0);
      const report = readReport(out);
      expect(report.target.deployment).toBe('gateway, shards over NATS');
      expect(report.checks.every((c) => c.ok)).toBe(true);
      const hot = report.phases.find((p) => p.name === 'hot')!;
      expect(hot.extra).toMatchObject({ stockAtStart: 100, grantedUnits: 100, paidUnits: 100, after: { available: 0, reserved: 0, sold: 100 } });
      expect(hot.outcomes['409 sold_out']).toBe(150);
      // No timed step: every request was answered, and the gateway counted exactly the same.
      expect(report.unanswered).toEqual({});
      const counted = delta(before.requests, after.requests);
      counted.delete('metrics 200');
      expect(Object.fromEntries(reportCounts(report))).toEqual(Object.fromEntries(counted));
      await expectSkuViews(d.url, report);
    } finally {
      await d.stopAll();
    }
  });
});

// Each case an adversarial review found (review14), with the fake engine where a real one
// cannot misbehave on cue. Never a timing at the engine: only what the run reports.
describe('flash rehearse, after an adversarial review', () => {
  /** The tokens the fake takes (it checks none). */
  const fakeCreds = (url: string): Record<string, string> => ({ FLASH_URL: url, FLASH_TOKEN: 'op-token', FLASH_SHOP_TOKEN: 'shop-token', FLASH_PAYMENTS_TOKEN: 'pay-token' });
  const check = (r: Report, prefix: string): { name: string; ok: boolean; detail: string } => r.checks.find((c) => c.name.startsWith(prefix))!;

  it('follows no redirect: a loopback target answering 307 to another host sends nothing there (exit 3), and a 3xx in the load is a failure', async () => {
    const ip = ownIp();
    const got: string[] = [];
    const remote = createServer((req, res) => {
      got.push(`${req.method} ${req.url}`);
      req.resume();
      res.writeHead(200, { 'content-type': 'application/json' }).end('{"onHand":0,"available":0,"reserved":0,"sold":0}');
    });
    await new Promise<void>((r) => remote.listen(0, ip ?? '127.0.0.1', r));
    const away = `http://${ip ?? '127.0.0.1'}:${(remote.address() as { port: number }).port}`;
    try {
      const scenario = file('redirect.yaml', 'skus: [{sku: hot, stock: 10}]\nphases: [{name: hot, kind: sellout, sku: hot, buyers: 20, pay: false}]\n');
      const f = await fake(`redirect=${away}`);
      const r = await rehearse([scenario, '--out', join(work, 'redirect')], fakeCreds(f.url));
      expect(r.code).toBe(3);
      expect(r.err).toMatch(/answered 307, a redirect to http:\/\/[\d.]+:\d+: flash rehearse follows no redirect/);
      // Only reserves redirect: the setup passes, and every reserve's 307 is a failed request.
      const g = await fake(`redirectreserve=${away}`);
      const out = join(work, 'redirect-load');
      const l = await rehearse([scenario, '--out', out], fakeCreds(g.url));
      expect(l.code).toBe(1);
      const report = readReport(out);
      expect(report.phases[0]!.outcomes).toEqual({ '307 redirect': 20 });
      expect(check(report, 'answered by the engine itself')).toMatchObject({ ok: false, detail: expect.stringMatching(/^20 × 307 redirect/) });
      expect(got).toEqual([]);
    } finally {
      await new Promise((r) => remote.close(r));
    }
  });

  it('fails a run in which the engine granted more than the scenario\'s stock, though its views add up (oversold)', async () => {
    const f = await fake('oversell');
    const out = join(work, 'oversell');
    const scenario = file('oversell.yaml', 'skus: [{sku: tee, stock: 10}]\nphases: [{name: many, kind: reserve, sku: tee, as: shop, load: {shape: constant, rps: 50, seconds: 1}}]\n');
    const r = await rehearse([scenario, '--out', out], fakeCreds(f.url));
    expect(r.code).toBe(1);
    const report = readReport(out);
    expect(report.phases[0]!.outcomes).toEqual({ 201: 50 });
    expect(check(report, 'every SKU conserved').ok).toBe(true); // the fake's views add up
    expect(check(report, 'no SKU oversold')).toMatchObject({
      ok: false, detail: expect.stringMatching(/rehearsal-\w+-tee: onHand 50, the scenario's stock 10; 50 units held or sold to this run at once .* of a stock of 10: oversold/),
    });
  });

  it('fails a phase whose every request was refused (a wrong shop token: 401), and a target is never met on refusals', async () => {
    const out = join(work, 'refused-all');
    const scenario = file('refused-all.yaml', 'skus: [{sku: tee, stock: 1000}]\nphases: [{name: r, kind: reserve, sku: tee, as: shop, load: {shape: constant, rps: 50, seconds: 1}}]\ntargets: [{phase: r, p99Ms: 50, atRps: 50}]\n');
    const r = await rehearse([scenario, '--out', out], { ...credentials(engine.url), FLASH_SHOP_TOKEN: 'not-the-shop-token' });
    expect(r.code).toBe(1);
    const report = readReport(out);
    expect(report.phases[0]!.outcomes).toEqual({ '401 unauthorized': 50 });
    expect(check(report, 'every credential accepted')).toMatchObject({ ok: false, detail: expect.stringMatching(/^50 × r: 401 unauthorized/) });
    expect(check(report, 'every phase answered 2xx')).toMatchObject({ ok: false, detail: 'r: no 2xx answer (401 unauthorized 50)' });
    expect(report.targets[0]).toMatchObject({ ok: false, detail: expect.stringMatching(/missed: no 2xx answer to measure p99 on \(50 answers, all refused\)/) });
  });

  it('changes no SKU it did not create: a name that exists already is refused before anything is written (exit 2)', async () => {
    const h = { authorization: `Bearer ${TOKENS.operator}`, 'content-type': 'application/json' };
    const put = await fetch(`${engine.url}/v1/skus/r14-tee`, { method: 'PUT', headers: h, body: JSON.stringify({ stock: 5000, maxPerBuyer: 2, holdSeconds: 600, reason: 'production' }) });
    expect(put.status).toBe(201);
    const before = await engineCounters(engine.url);
    const scenario = file('collide.yaml', 'skus: [{sku: tee, stock: 10, maxPerBuyer: 100, holdSeconds: 5}, {sku: other, stock: 5}]\nphases: [{name: r, kind: reserve, sku: tee, as: shop, load: {shape: constant, rps: 10, seconds: 1}}]\n');
    const r = await rehearse([scenario, '--prefix', 'r14-', '--cleanup', '--out', join(work, 'collide')], credentials(engine.url));
    expect(r.code).toBe(2);
    expect(r.err).toMatch(/the engine does not match the scenario; nothing was changed\n {2}sku r14-tee exists already on the engine: the run would change it \(PUT is an upsert\)/);
    const v = await (await fetch(`${engine.url}/v1/skus/r14-tee`, { headers: h })).json() as Record<string, unknown>;
    expect(v).toMatchObject({ onHand: 5000, maxPerBuyer: 2, holdSeconds: 600, reserved: 0 });
    const seen = delta(before.requests, (await engineCounters(engine.url)).requests);
    seen.delete('metrics 200');
    expect([...seen.keys()].filter((k) => !/^(healthz|sku\.get) /.test(k)), 'nothing but reads').toEqual([]);
  });

  it('counts a hold that may have expired apart from the holds after it, and a paid one for good', () => {
    const hold = (sentMs: number, atMs: number, qty = 1): Parameters<typeof heldAtOnce>[1][number] => ({ sku: 's', qty, owner: null, n: 0, sentMs, atMs });
    // Holds of 1 s, one sent every 400 ms: at most 3 are certainly held at once.
    expect(heldAtOnce(undefined, [0, 400, 800, 1200, 1600].map((t) => hold(t, t + 5)), 1)).toEqual({ max: 3, atMs: 805 });
    // One answered only after it may have expired is never certainly held.
    expect(heldAtOnce(undefined, [hold(0, 1500)], 1).max).toBe(0);
    // Paid units stay taken: 4 paid early, then 3 holds of 1 s at a time.
    const tally = { held: 7, open: 3, paid: 4, cancelled: 0, uncertain: 0, firstSentMs: 0, paidFromMs: new Map([[10, 4]]) };
    expect(heldAtOnce(tally, [hold(5000, 5010), hold(5100, 5110), hold(7000, 7010)], 1)).toEqual({ max: 6, atMs: 5110 });
  });

  it('files a timeout against the request that timed out, not the one sent after it on a new connection', async () => {
    const f = await fake('hangfirst=5');
    const out = join(work, 'timeouts');
    const scenario = file('timeouts.yaml', 'timeoutSeconds: 1\nskus: [{sku: tee, stock: 1000000}]\nphases: [{name: c, kind: reserve, sku: tee, as: shop, connections: 5, load: {shape: constant, rps: 10, seconds: 3}}]\n');
    await rehearse([scenario, '--out', out], fakeCreds(f.url));
    expect(readReport(out).phases[0]!.steps[0]).toMatchObject({ sent: 30, answered: 25, outcomes: { 201: 25, timeout: 5 } });
  });

  it('as fast as answered: a timeout and a closed connection are filed against their own requests, and exactly the planned buyers are sent', async () => {
    const hung = await fake('hangfirst=3');
    const out1 = join(work, 'max-timeouts');
    const s1 = file('max-timeouts.yaml', 'timeoutSeconds: 1\nskus: [{sku: hot, stock: 30}]\nphases: [{name: hot, kind: sellout, sku: hot, buyers: 40, connections: 4, as: shop, pay: false}]\n');
    const r1 = await rehearse([s1, '--out', out1], fakeCreds(hung.url));
    expect(r1.code, r1.out + r1.err).toBe(1);
    const t = readReport(out1).phases[0]!.steps[0]!;
    expect(t).toMatchObject({ mode: 'closed loop', intended: 40, sent: 40, answered: 37, cutOff: 0, outcomes: { 201: 30, '409 sold_out': 7, timeout: 3 } });
    const closing = await fake('closefirst=5');
    const out2 = join(work, 'max-closed');
    const s2 = file('max-closed.yaml', 'skus: [{sku: hot, stock: 50}]\nphases: [{name: hot, kind: sellout, sku: hot, buyers: 60, connections: 3, as: shop, pay: false}]\n');
    const r2 = await rehearse([s2, '--out', out2], fakeCreds(closing.url));
    const c = readReport(out2).phases[0]!.steps[0]!;
    expect(c).toMatchObject({ sent: 60, answered: 55, cutOff: 0, outcomes: { 201: 50, '409 sold_out': 5, 'connection closed': 5 } });
    expect(r2.code).toBe(1); // 'every request answered' fails, and says so
  });

  it('an answer that closes its connection (the engine sheds with 503 overloaded and connection: close) costs no other request', async () => {
    // autocannon's client writes the next request on such a connection and loses it: measured
    // with the real engine shedding, 2,261 of 5,000 requests never reached it. Why the
    // rehearsal runs on node:http.
    const f = await fake('overloadclose=30');
    const out = join(work, 'shed-close');
    const scenario = file('shed-close.yaml', 'skus: [{sku: hot, stock: 100}]\nphases: [{name: hot, kind: sellout, sku: hot, buyers: 200, connections: 8, as: shop, pay: false}]\n');
    const r = await rehearse([scenario, '--out', out], fakeCreds(f.url));
    const step = readReport(out).phases[0]!.steps[0]!;
    expect(step).toMatchObject({ sent: 200, answered: 200, errors: 0, cutOff: 0, outcomes: { '503 overloaded': 30, 201: 100, '409 sold_out': 70 } });
    expect(r.code, r.out + r.err).toBe(0);
  });

  it('reaches an engine at an IPv6 loopback address', async () => {
    const child = spawn(process.execPath, [fileURLToPath(new URL('./support/fake-engine.mjs', import.meta.url))], {
      env: { ...process.env, PORT: '0', MODE: '', HOST: '::1' }, stdio: ['ignore', 'pipe', 'inherit'],
    });
    fakes.push(child);
    const port = await new Promise<number>((resolve, reject) => {
      child.once('exit', () => reject(new Error('the fake engine exited before listening')));
      child.stdout!.once('data', (c) => resolve(Number(/LISTENING (\d+)/.exec(String(c))?.[1])));
    });
    const out = join(work, 'ipv6');
    const scenario = file('ipv6.yaml', 'skus: [{sku: hot, stock: 10}, {sku: tee, stock: 100}]\nphases: [{name: hot, kind: sellout, sku: hot, buyers: 20, as: shop, pay: false}, {name: many, kind: reserve, sku: tee, as: shop, load: {shape: constant, rps: 20, seconds: 1}}]\n');
    const r = await rehearse([scenario, '--out', out], fakeCreds(`http://[::1]:${port}`));
    expect(r.code, r.out + r.err).toBe(0);
    expect(readReport(out).phases.map((p) => p.steps[0]!.answered)).toEqual([20, 20]);
  });

  it('as fast as answered, a flow phase runs whole flows: every started flow is finished when the step ends', async () => {
    const f = await fake('');
    const out = join(work, 'max-flows');
    const scenario = file('max-flows.yaml', 'skus: [{sku: tee, stock: 1000000}]\nphases: [{name: flows, kind: flow, sku: tee, as: shop, connections: 6, mix: {pay: 2, cancel: 1, abandon: 1}, load: {shape: max, seconds: 1}}]\n');
    const r = await rehearse([scenario, '--out', out], fakeCreds(f.url));
    expect(r.code, r.out + r.err).toBe(0);
    const report = readReport(out);
    const step = report.phases[0]!.steps[0]!;
    const flows = report.phases[0]!.extra.flows as { started: number; pay: number; payOk: number; cancel: number; cancelOk: number; abandon: number };
    expect(step).toMatchObject({ mode: 'closed loop', cutOff: 0 });
    expect(flows.started).toBeGreaterThan(10);
    // Every flow: its reserve, then its pay or cancel unless abandoned; nothing cut off at the end.
    expect(flows.pay + flows.cancel + flows.abandon).toBe(flows.started);
    expect(flows.payOk).toBe(flows.pay);
    expect(flows.cancelOk).toBe(flows.cancel);
    expect(step.sent).toBe(flows.started + flows.pay + flows.cancel);
    expect(step.answered).toBe(step.sent);
    expect(check(report, 'flows flows').ok).toBe(true);
  });

  it('at a constant rate a stall counts the wait of every request due during it (coordinated omission, as wrk2)', async () => {
    const f = await fake('stall=1000@2');
    const out = join(work, 'stall');
    const scenario = file('stall.yaml', 'skus: [{sku: tee, stock: 1000000}]\nphases: [{name: many, kind: reserve, sku: tee, as: shop, load: {shape: constant, rps: 200, seconds: 5}}]\ntargets: [{phase: many, p99Ms: 850}]\n');
    const r = await rehearse([scenario, '--out', out], fakeCreds(f.url));
    // 200 of the 1,000 requests were due in the stalled second: their waits spread over 0..1000 ms.
    const l = readReport(out).phases[0]!.latencyMs!;
    expect(l.p90).toBeGreaterThan(150);
    expect(l.p99).toBeGreaterThan(850);
    expect(r.code).toBe(1);
  });

  it('a flow phase runs whole flows in the mix, also when there are fewer requests than connections', async () => {
    const f = await fake('');
    const out = join(work, 'flows');
    const scenario = file('flows.yaml', 'skus: [{sku: tee, stock: 1000}]\nphases: [{name: flows, kind: flow, sku: tee, as: shop, mix: {pay: 60, cancel: 20, abandon: 20}, load: {shape: constant, rps: 50, seconds: 1}}]\n');
    const r = await rehearse([scenario, '--out', out], fakeCreds(f.url));
    expect(r.code, r.out + r.err).toBe(0);
    const report = readReport(out);
    // 50 requests carry 27 whole flows (16 pay, 6 cancel, 5 abandon): 27 reserves, 22 pays and cancels.
    expect(report.phases[0]!.extra.flows).toMatchObject({ planned: 27, started: 27, noHold: 0, pay: 16, payOk: 16, cancel: 6, cancelOk: 6, abandon: 5 });
    expect(report.phases[0]!.steps[0]).toMatchObject({ sent: 49, answered: 49 });
    expect(check(report, 'flows flows').ok).toBe(true);
  });

  it('fails a sell-out with no stock at the start, and flows that fall well short of the mix', async () => {
    const f = await fake('');
    const out = join(work, 'short');
    const scenario = file('short.yaml', 'skus: [{sku: none, stock: 0}, {sku: few, stock: 5}]\nphases: [{name: hot, kind: sellout, sku: none, buyers: 5, pay: false}, {name: flows, kind: flow, sku: few, as: shop, mix: {pay: 60, cancel: 20, abandon: 20}, load: {shape: constant, rps: 50, seconds: 1}}]\n');
    const r = await rehearse([scenario, '--out', out], fakeCreds(f.url));
    expect(r.code).toBe(1);
    const report = readReport(out);
    expect(check(report, 'sell-out hot')).toMatchObject({ ok: false, detail: expect.stringMatching(/no stock at the start: there was nothing to sell out/) });
    // 5 units (and those cancelled back) for 27 flows: most got no hold, so few of the 16 meant to pay did.
    expect(check(report, 'flows flows')).toMatchObject({ ok: false, detail: expect.stringMatching(/^\d of 16 flows meant to pay did; .*, no hold 2\d\)$/) });
  });

  it('checks a queue phase\'s drop in the scenario, before anything is sent (exit 2)', async () => {
    const closed = `http://127.0.0.1:${await freePort()}`;
    const r = await rehearse([file('noqueue.yaml', 'skus: [{sku: hot, stock: 10, dropId: d}]\ndrops: [{dropId: d}]\nphases: [{name: q, kind: queue, drop: d, buyers: 5}]\n')], fakeCreds(closed));
    expect(r.code).toBe(2);
    expect(r.err).toMatch(/phases\[0\]\.drop: drop d has no queue, so buyers cannot join it/);
  });

  it('refuses a URL with a user and password without printing them, or with a query (exit 2)', async () => {
    const closed = `http://127.0.0.1:${await freePort()}`;
    const scenario = file('url.yaml', 'skus: [{sku: hot, stock: 10}]\nphases: [{name: h, kind: sellout, sku: hot, buyers: 11, pay: false}]\n');
    const userinfo = await rehearse([scenario, '--url', 'http://admin:PASSWORD-LEAK@127.0.0.1:1'], fakeCreds(closed));
    expect(userinfo.code).toBe(2);
    expect(userinfo.err).toMatch(/--url must not carry a user or password/);
    expect(userinfo.err + userinfo.out).not.toContain('PASSWORD-LEAK');
    const query = await rehearse([scenario, '--url', `${closed}/?debug=1`], fakeCreds(closed));
    expect(query.code).toBe(2);
    expect(query.err).toMatch(/without a query or fragment/);
  });

  it('caps the requests and seconds a scenario plans (a million a second for a minute would exhaust memory): exit 2', async () => {
    const closed = `http://127.0.0.1:${await freePort()}`;
    const huge = await rehearse([file('huge.yaml', 'skus: [{sku: tee, stock: 1000000}]\nphases: [{name: c, kind: reserve, sku: tee, load: {shape: constant, rps: 1000000, seconds: 60}}]\n')], { ...fakeCreds(closed), FLASH_BUYER_TOKEN_SECRET: BUYER_TOKEN_SECRET });
    expect(huge.code).toBe(2);
    expect(huge.err).toMatch(/the phases plan 60,000,000 requests .*; a scenario plans at most 2,000,000/);
    const long = await rehearse([file('long.yaml', 'skus: [{sku: tee, stock: 1000000}]\nphases: [{name: c, kind: reserve, sku: tee, load: {shape: constant, rps: 1, seconds: 3600}}, {name: d, kind: reserve, sku: tee, load: {shape: max, seconds: 60}}]\n')], fakeCreds(closed));
    expect(long.code).toBe(2);
    expect(long.err).toMatch(/the phases plan 3,660 s of load; a scenario plans at most 3,600 s/);
  });

  it('serves the load under the base path of --url', async () => {
    const f = await fake('', '/flash');
    const out = join(work, 'base');
    const scenario = file('base.yaml', 'skus: [{sku: hot, stock: 5}, {sku: tee, stock: 100}]\nphases: [{name: hot, kind: sellout, sku: hot, buyers: 10}, {name: many, kind: reserve, sku: tee, as: shop, load: {shape: constant, rps: 20, seconds: 1}}]\n');
    const r = await rehearse([scenario, '--out', out], fakeCreds(f.url));
    expect(r.code, r.out + r.err).toBe(0);
    expect(readReport(out).phases.map((p) => p.outcomes)).toEqual([{ 201: 5, '409 sold_out': 5, 200: 5 }, { 201: 20 }]);
  });

  it('stops hammering an engine that died mid-run, and writes a partial report (exit 3)', async () => {
    const f = await fake('die=1');
    const out = join(work, 'died');
    const scenario = file('died.yaml', 'skus: [{sku: tee, stock: 1000000}]\nphases: [{name: max, kind: reserve, sku: tee, as: shop, connections: 8, load: {shape: max, seconds: 30}}, {name: after, kind: reserve, sku: tee, as: shop, load: {shape: constant, rps: 10, seconds: 1}}]\n');
    const r = await rehearse([scenario, '--out', out], fakeCreds(f.url));
    expect(r.code).toBe(3);
    expect(r.err).toMatch(/flash: phase max: \d+ connection errors in a row \(connection (error|closed)\): the engine at 127\.0\.0\.1:\d+ stopped answering; the run stopped there/);
    const report = readReport(out);
    expect(report).toMatchObject({ verdict: 'unreachable', exitCode: 3 });
    expect(report.checks[0]).toMatchObject({ name: 'the engine answered to the end of the run', ok: false });
    expect(report.phases.map((p) => p.name)).toEqual(['max']);
    const step = report.phases[0]!.steps[0]!;
    expect(step.answered).toBeGreaterThan(0);
    // It gave up after 50 connection errors in a row (8 more were in flight), not after 30 s of them.
    expect(step.errors + step.cutOff).toBeLessThanOrEqual(50 + 8 + 8);
  });
});
