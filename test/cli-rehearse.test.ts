// `flash rehearse` against real deployments, in-process through runFlash: an embedded engine
// (with an ERP that accepts every order, so the backlog check can drain) and a gateway with two
// shard nodes over a real nats-server. Phases are 1-3 s on loopback. The report's figures are
// held against the engine's own counters, read here independently: flash_http_requests_total
// by route and status, flash_refusals_total by code, and every SKU's view. Timings are never
// asserted at the receiver; a target no engine can meet (p99 under 0.001 ms) must fail the run
// (exit 1), and a target that is not this machine must be refused before anything is sent
// (exit 2) unless the command line names it.

import { existsSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { createServer, type Server } from 'node:http';
import { networkInterfaces, tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { runFlash, type FlashIo } from '../src/cli/flash.js';
import { BUYER_TOKEN_SECRET, TOKENS, freePort, startEngine, stopAllEngines, type Engine } from './support/engine-process.js';
import { startNatsDeployment, stopAllNatsServers } from './support/nats-deployment.js';

let work: string;
let engine: Engine;
let erp: Server;

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
  await stopAllEngines();
  await stopAllNatsServers();
  await new Promise((r) => erp?.close(r));
  if (work !== undefined) rmSync(work, { recursive: true, force: true });
});

interface Ran {
  code: number;
  out: string;
  err: string;
}

/** Every credential a rehearsal may use, as the environment of a CI job would give them. */
const credentials = (url: string): Record<string, string> => ({
  FLASH_URL: url, FLASH_TOKEN: TOKENS.operator, FLASH_SHOP_TOKEN: TOKENS.shop, FLASH_PAYMENTS_TOKEN: TOKENS.payments,
  FLASH_BUYER_TOKEN_SECRET: BUYER_TOKEN_SECRET,
});

async function rehearse(args: string[], env: Record<string, string | undefined>): Promise<Ran> {
  let out = '';
  let err = '';
  const io: FlashIo = {
    stdout: (t) => (out += t),
    stderr: (t) => (err += t),
    readFile: (p) => readFileSync(p, 'utf8'),
    // An empty data directory: no tokens.env of a developer's engine is ever read.
    env: { FLASH_DATA_DIR: join(work, 'no-data'), ...env },
    progress: null,
  };
  const code = await runFlash(['rehearse', ...args], io);
  return { code, out, err };
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
  phases: { name: string; outcomes: Record<string, number>; steps: { label: string; mode: string; sent: number; answered: number; cutOff: number; late: number }[]; extra: Record<string, unknown> }[];
  skus: { sku: string; onHand: number; available: number; reserved: number; sold: number; conserved: boolean }[];
  requests: Record<string, Record<string, number>>;
  unanswered: Record<string, number>;
  engine: { rows: { route: string; status: number; rehearsal: number; engine: number }[] } | null;
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
    const ip = Object.values(networkInterfaces()).flat().find((a) => a !== undefined && a.family === 'IPv4' && !a.internal)?.address ?? '192.0.2.1';
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
  - { phase: many, p99Ms: 60000, atRps: 200 }
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
      ['sold = units this run paid (SKUs it created)', true],
      ['sell-out hot: exactly the stock sold', true],
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
    expect(phase('flows').steps.map((s) => s.sent)).toEqual([100, 200]);
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
    // Refusals by code: the run's load against flash_refusals_total.
    const refusalsOurs: Counts = new Map();
    for (const p of report.phases) for (const [k, v] of Object.entries(p.outcomes)) if (/^4/.test(k)) refusalsOurs.set(k.split(' ')[1]!, (refusalsOurs.get(k.split(' ')[1]!) ?? 0) + v);
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
