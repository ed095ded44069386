// The `flash` command line tool against a real engine: the built CLI as a child process for
// what a script sees (exit codes 0/1/2/3, stdout, one-line errors on stderr), and runFlash
// in-process for the rest: apply from YAML and JSON (created, then unchanged, then updated
// with the fields that change; nothing sent from an invalid file), stock adjust whose
// reason shows in the audit trail, the stock import with its progress bar and summary, the
// listing's pages, a drop's status and a buyer's entry, the ERP report, the token from a
// first start's tokens.env, and events tail over the console's Server-Sent Events stream
// (against a stand-in stream, and against the engine's GET /v1/console/stream).

import { spawn } from 'node:child_process';
import { mkdirSync, mkdtempSync, rmSync, writeFileSync, readFileSync } from 'node:fs';
import { createServer, type Server, type ServerResponse } from 'node:http';
import { tmpdir } from 'node:os';
import { dirname, join, resolve } from 'node:path';
import { PassThrough } from 'node:stream';
import { fileURLToPath } from 'node:url';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { runFlash } from '../src/cli/flash.js';
import { SseParser } from '../src/cli/flash-events.js';
import { runFlashCaptured, type Ran } from './support/flash-run.js';
import { ADMIN_TOKEN, TOKENS, api, freePort, sleep, startEngine, stopAllEngines, type Api, type Engine } from './support/engine-process.js';

const repoRoot = resolve(dirname(fileURLToPath(import.meta.url)), '..');
const cliEntry = join(repoRoot, 'dist', 'src', 'cli', 'flash.js');

let engine: Engine;
let a: Api;
let erp: Server;
let erpCalls = 0;
let work: string;

beforeAll(async () => {
  // A willing ERP: every order.paid is accepted at once.
  erp = createServer((req, res) => {
    req.resume();
    req.on('end', () => {
      erpCalls++;
      res.writeHead(200).end('{}');
    });
  });
  await new Promise<void>((r) => erp.listen(0, '127.0.0.1', r));
  const port = (erp.address() as { port: number }).port;
  engine = await startEngine({
    env: { FLASH_ERP_WEBHOOK_URL: `http://127.0.0.1:${port}/erp`, FLASH_ERP_SECRET: 'cli-flash-test-secret-0123', FLASH_ERP_POLL_MS: '20', FLASH_BUYER_RPS: '0' },
  });
  a = api(engine.url);
  work = mkdtempSync(join(tmpdir(), 'flash-cli-'));
});

afterAll(async () => {
  await stopAllEngines();
  await new Promise((r) => erp?.close(r));
  if (work !== undefined) rmSync(work, { recursive: true, force: true });
});

/** runFlash in-process, talking to the test engine with the operator token unless `env` says otherwise. */
function flash(args: string[], opts: { env?: Record<string, string | undefined>; progress?: NodeJS.WritableStream; signal?: AbortSignal; onOut?: (out: string) => void } = {}): Promise<Ran> {
  // An empty data directory: no tokens.env of a developer's engine is ever read.
  return runFlashCaptured(args, { FLASH_URL: engine.url, FLASH_TOKEN: TOKENS.operator, FLASH_DATA_DIR: join(work, 'no-data'), ...opts.env }, opts);
}

/** The built CLI as a script runs it: a child process, in an empty directory, with only the FLASH_* given. */
function flashProcess(args: string[], env: Record<string, string>): Promise<Ran> {
  const childEnv: NodeJS.ProcessEnv = {};
  for (const [k, v] of Object.entries(process.env)) if (!k.startsWith('FLASH_')) childEnv[k] = v;
  Object.assign(childEnv, env);
  return new Promise((res, reject) => {
    const child = spawn(process.execPath, [cliEntry, ...args], { env: childEnv, cwd: work, stdio: ['ignore', 'pipe', 'pipe'] });
    let out = '';
    let err = '';
    child.stdout.on('data', (c: Buffer) => (out += c.toString()));
    child.stderr.on('data', (c: Buffer) => (err += c.toString()));
    const timer = setTimeout(() => child.kill('SIGKILL'), 20_000);
    child.on('error', reject);
    child.on('close', (code) => {
      clearTimeout(timer);
      res({ code: code ?? -1, out, err });
    });
  });
}

function file(name: string, text: string): string {
  const path = join(work, name);
  writeFileSync(path, text);
  return path;
}

const lines = (s: string): string[] => s.split('\n').filter((l) => l !== '');

describe('flash as a process: what a script sees', () => {
  const env = (): Record<string, string> => ({ FLASH_URL: engine.url, FLASH_TOKEN: TOKENS.operator });

  it('reads: exit 0, the API\'s JSON on stdout with --json, nothing on stderr', async () => {
    expect((await a.put('/v1/skus/proc-a', { stock: 7, maxPerBuyer: 1 })).status).toBe(201);
    const r = await flashProcess(['sku', 'get', 'proc-a', '--json'], env());
    expect(r).toMatchObject({ code: 0, err: '' });
    expect(JSON.parse(r.out)).toMatchObject({ sku: 'proc-a', onHand: 7, available: 7, maxPerBuyer: 1 });
    const human = await flashProcess(['sku', 'get', 'proc-a'], env());
    expect(human.code).toBe(0);
    expect(human.out).toMatch(/^available:\s+7$/m);
  });

  it('a usage error exits 2 with one line naming the problem and the usage; nothing is sent', async () => {
    const r = await flashProcess(['stock', 'adjust', 'proc-a', '5'], env());
    expect(r.code).toBe(2);
    expect(r.out).toBe('');
    expect(lines(r.err)).toEqual([expect.stringMatching(/^flash: required option '--reason <text>' not specified \(usage: flash stock adjust .*<sku> <delta>/)]);
    const bad = await flashProcess(['stock', 'adjust', 'proc-a', 'lots', '--reason', 'x'], env());
    expect(bad.code).toBe(2);
    expect(lines(bad.err)).toEqual([expect.stringMatching(/^flash: DELTA lots must be a non-zero integer/)]);
    expect((await a.get('/v1/skus/proc-a')).body.onHand).toBe(7);
  });

  it('a refusal exits 1 with the API\'s code and message and what to do', async () => {
    const r = await flashProcess(['stock', 'adjust', 'proc-a', '-100', '--reason', 'write-off'], env());
    expect(r.code).toBe(1);
    expect(r.out).toBe('');
    expect(lines(r.err)).toEqual([expect.stringMatching(/^flash: stock adjust proc-a -100 refused: 409 insufficient_stock: .*\(a write-off may take at most the available units/)]);
    const badToken = await flashProcess(['sku', 'list'], { FLASH_URL: engine.url, FLASH_TOKEN: 'not-a-token-at-all' });
    expect(badToken.code).toBe(1);
    expect(badToken.err).toMatch(/^flash: sku list refused: 401 unauthorized: .*the token from FLASH_TOKEN was refused/);
  });

  it('an engine that cannot be reached exits 3 and says where it looked', async () => {
    const port = await freePort();
    const r = await flashProcess(['sku', 'get', 'x', '--url', `http://127.0.0.1:${port}`], env());
    expect(r.code).toBe(3);
    expect(lines(r.err)).toEqual([`flash: cannot reach the engine at http://127.0.0.1:${port} (ECONNREFUSED): is it running? Point --url or FLASH_URL at it`]);
  });
});

describe('flash apply', () => {
  const yaml = (maxPerBuyer: number, stock = 100): string => `# spring launch
drops:
  - dropId: cli-spring
    queue: { mode: fifo, admitPerSecond: 50, admitSeconds: 120 }
skus:
  - sku: cli-moutai
    stock: ${stock}
    maxPerBuyer: ${maxPerBuyer}
    dropId: cli-spring
    lowStockThreshold: 10
    channels:
      web: { maxUnits: 40 }
      app: {}
  - sku: "cli-sneaker:42"
    stock: 5
    mode: on_payment
    holdSeconds: 300
`;

  it('creates from YAML (drops first), then reports unchanged, then updated with the fields that change', async () => {
    const path = file('spring.yaml', yaml(2));
    const first = await flash(['apply', path, '--reason', 'spring launch']);
    expect(first.err).toBe('');
    expect(first.code).toBe(0);
    expect(lines(first.out)).toEqual([
      'created  drop cli-spring',
      'created  sku  cli-moutai',
      'created  sku  cli-sneaker:42',
      `${path}: 1 drop, 2 SKUs: 3 created, 0 updated, 0 unchanged, 0 failed`,
    ]);
    const view = (await a.get('/v1/skus/cli-moutai')).body;
    expect(view).toMatchObject({ onHand: 100, maxPerBuyer: 2, dropId: 'cli-spring', lowStockThreshold: 10, channels: { web: { maxUnits: 40 }, app: { maxUnits: null } } });
    expect((await a.get('/v1/skus/cli-sneaker:42')).body).toMatchObject({ onHand: 5, mode: 'on_payment', holdSeconds: 300 });
    expect((await a.get('/v1/drops/cli-spring')).body).toMatchObject({ skus: ['cli-moutai'], queue: { mode: 'fifo', admitPerSecond: 50, admitSeconds: 120 } });
    expect((await a.get('/v1/skus/cli-moutai/audit', TOKENS.viewer)).body.items[0]).toMatchObject({ action: 'create', actor: 'ops-ann', reason: 'spring launch' });

    const again = await flash(['apply', path]);
    expect(again.code).toBe(0);
    expect(lines(again.out)).toEqual([
      'unchanged  drop cli-spring',
      'unchanged  sku  cli-moutai',
      'unchanged  sku  cli-sneaker:42',
      `${path}: 1 drop, 2 SKUs: 0 created, 0 updated, 3 unchanged, 0 failed`,
    ]);
    // Unchanged means not sent: the audit trail has no new entry.
    expect((await a.get('/v1/skus/cli-moutai/audit', TOKENS.viewer)).body.items).toHaveLength(1);

    writeFileSync(path, yaml(3, 500));
    const changed = await flash(['apply', path]);
    expect(changed.code).toBe(0);
    expect(lines(changed.out)).toContain('updated    sku  cli-moutai: maxPerBuyer 2 → 3');
    // stock is used on create only: the tool says so rather than pretending it applied.
    expect(changed.err).toMatch(/^flash: note: sku cli-moutai exists: stock 500 in the file applies on create only \(onHand is 100\); change it with flash stock adjust cli-moutai DELTA/m);
    expect((await a.get('/v1/skus/cli-moutai')).body).toMatchObject({ onHand: 100, maxPerBuyer: 3 });
  });

  it('takes JSON, one SKU alone, and --dry-run sends nothing', async () => {
    const one = file('one.json', JSON.stringify({ sku: 'cli-json-1', stock: 3, maxPerBuyer: 1 }));
    const dry = await flash(['apply', one, '--dry-run']);
    expect(dry.code).toBe(0);
    expect(dry.out).toContain('would create  sku  cli-json-1');
    expect((await a.get('/v1/skus/cli-json-1')).status).toBe(404);
    const r = await flash(['apply', one]);
    expect(r.code).toBe(0);
    expect(lines(r.out)[0]).toBe('created  sku  cli-json-1');
    const both = file('both.json', JSON.stringify({ skus: [{ sku: 'cli-json-1', maxPerBuyer: 4 }], drops: [{ dropId: 'cli-json-drop' }] }));
    const r2 = await flash(['apply', both, '--json']);
    expect(r2.code).toBe(0);
    expect(JSON.parse(r2.out)).toEqual([
      { kind: 'drop', name: 'cli-json-drop', outcome: 'created', detail: null, note: null },
      { kind: 'sku', name: 'cli-json-1', outcome: 'updated', detail: 'maxPerBuyer 1 → 4', note: null },
    ]);
  });

  it('an invalid file exits 2 naming every problem by line and field, and nothing is sent', async () => {
    const path = file('bad.yaml', `skus:
  - sku: cli-bad-1
    stock: 10
    maxperbuyer: 2
  - sku: cli-bad-2
    stock: -1
    mode: pre-deduct
drops:
  - dropId: cli-bad-drop
    queue: { mode: lottery }
`);
    const r = await flash(['apply', path]);
    expect(r.code).toBe(2);
    expect(r.out).toBe('');
    expect(lines(r.err)).toEqual([
      `flash: ${path}: 4 errors; nothing was applied`,
      `  ${path}:4: skus[0].maxperbuyer: unknown field maxperbuyer (did you mean maxPerBuyer?); a SKU has sku, stock, mode, holdSeconds, maxPerBuyer, dropId, startsAt, endsAt, lowStockThreshold, minAccountAgeSeconds, minPastOrders, channels, reason`,
      `  ${path}:6: skus[1].stock: stock must be an integer in 0..1000000000`,
      `  ${path}:7: skus[1].mode: mode must be one of pre_deduct, on_order, on_payment`,
      `  ${path}:10: drops[0].queue: queue.mode must be fifo, random or draw`,
    ]);
    expect((await a.get('/v1/skus/cli-bad-1')).status).toBe(404);

    const broken = await flash(['apply', file('broken.yaml', 'skus:\n  - sku: a\n   stock: 1\n')]);
    expect(broken.code).toBe(2);
    expect(lines(broken.err)).toEqual([expect.stringMatching(/^flash: .*broken\.yaml:3:\d+ is not valid YAML: /)]);
    const notJson = await flash(['apply', file('broken.json', '{"sku": "a",}')]);
    expect(notJson.code).toBe(2);
    expect(notJson.err).toMatch(/^flash: .*broken\.json is not valid JSON: /);
    const missing = await flash(['apply', join(work, 'nope.yaml')]);
    expect(missing.code).toBe(2);
    expect(missing.err).toMatch(/^flash: cannot read .*nope\.yaml: ENOENT/);
  });

  it('exits 1 when the engine refuses an entry, saying which and why; the others are applied', async () => {
    expect((await a.put('/v1/skus/cli-fixed', { stock: 1, dropId: 'cli-drop-x' })).status).toBe(201);
    const path = file('refused.yaml', 'skus:\n  - sku: cli-fixed\n    dropId: cli-drop-y\n  - sku: cli-fine\n    stock: 2\n');
    const r = await flash(['apply', path]);
    expect(r.code).toBe(1);
    expect(lines(r.out)).toEqual(['created  sku  cli-fine', `${path}: 0 drops, 2 SKUs: 1 created, 0 updated, 0 unchanged, 1 failed`]);
    expect(lines(r.err)).toEqual([
      expect.stringMatching(new RegExp(`^flash: apply sku cli-fixed \\(${path.replace(/[.]/g, '\\.')}:2: skus\\[0\\]\\): PUT /v1/skus/cli-fixed refused: 409 drop_mismatch: .*dropId is fixed once set`)),
    ]);
    // A viewer may read but not change: 403, exit 1.
    const viewer = await flash(['apply', path], { env: { FLASH_TOKEN: TOKENS.viewer } });
    expect(viewer.code).toBe(1);
    expect(viewer.err).toContain('403 forbidden');
  });
});

describe('flash stock and sku', () => {
  it('stock adjust with a reason shows up in the audit trail, with the caller\'s name', async () => {
    expect((await a.put('/v1/skus/cli-adjust', { stock: 10 })).status).toBe(201);
    const r = await flash(['stock', 'adjust', 'cli-adjust', '+5', '--reason', 'second pallet arrived']);
    expect(r).toEqual({ code: 0, err: '', out: 'cli-adjust: +5 (second pallet arrived): onHand 10 → 15, available 15\n' });
    const off = await flash(['stock', 'adjust', 'cli-adjust', '-3', '--reason', 'damaged in transit']);
    expect(off.code).toBe(0);
    const audit = await flash(['sku', 'audit', 'cli-adjust']);
    expect(audit.code).toBe(0);
    const [header, newest, older] = lines(audit.out);
    expect(header).toMatch(/^AT\s+ACTOR\s+ACTION\s+CHANGE\s+REASON$/);
    expect(newest).toMatch(/ ops-ann\s+stock\s+onHand 15 → 12, available 15 → 12\s+damaged in transit$/);
    expect(older).toMatch(/ ops-ann\s+stock\s+onHand 10 → 15, available 10 → 15\s+second pallet arrived$/);
    const json = await flash(['sku', 'audit', 'cli-adjust', '--json', '--limit', '1']);
    expect(JSON.parse(json.out)).toMatchObject({ items: [{ actor: 'ops-ann', action: 'stock', reason: 'damaged in transit' }], next: expect.any(String) });
  });

  it('sku list follows the pages; --limit stops early and says more follow', async () => {
    for (let i = 0; i < 5; i++) expect((await a.put(`/v1/skus/cli-list-${i}`, { stock: i })).status).toBe(201);
    const all = await flash(['sku', 'list', '--json']);
    expect(all.code).toBe(0);
    const names = (JSON.parse(all.out).items as { sku: string }[]).map((s) => s.sku);
    expect(names.filter((n) => n.startsWith('cli-list-'))).toEqual(['cli-list-0', 'cli-list-1', 'cli-list-2', 'cli-list-3', 'cli-list-4']);
    expect(names).toEqual([...names].sort());
    const two = await flash(['sku', 'list', '--limit', '2']);
    expect(two.code).toBe(0);
    expect(lines(two.out)).toHaveLength(3);
    expect(lines(two.out)[0]).toMatch(/^SKU\s+ON HAND\s+AVAILABLE\s+RESERVED\s+SOLD\s+MODE\s+MAX\/BUYER\s+DROP$/);
    expect(two.err).toBe('flash: more SKUs follow; raise --limit to list them\n');
    const bad = await flash(['sku', 'list', '--limit', 'ten']);
    expect(bad).toMatchObject({ code: 2, err: 'flash: --limit ten must be a positive integer\n' });
  });

  it('an unknown SKU exits 1 with unknown_sku and a hint', async () => {
    const r = await flash(['sku', 'get', 'cli-nope']);
    expect(r.code).toBe(1);
    expect(r.err).toBe('flash: sku get cli-nope refused: 404 unknown_sku: no sku named cli-nope (check the name: flash sku list shows every SKU)\n');
  });

  it('reads the operator token a first start wrote to tokens.env when none is given (engine on this machine only)', async () => {
    const dataDir = join(work, 'data-first-run');
    mkdirSync(join(dataDir, 'credentials'), { recursive: true });
    writeFileSync(join(dataDir, 'credentials', 'tokens.env'), `# Generated on first start\nADMIN_TOKEN=${ADMIN_TOKEN}\nOPERATOR_TOKEN=${TOKENS.operator}\n`);
    const r = await flash(['stock', 'adjust', 'cli-adjust', '+1', '--reason', 'from tokens.env'], { env: { FLASH_TOKEN: undefined, FLASH_DATA_DIR: dataDir } });
    expect(r.err).toBe('');
    expect(r.code).toBe(0);
    const none = await flash(['sku', 'list'], { env: { FLASH_TOKEN: undefined } });
    expect(none.code).toBe(1);
    expect(none.err).toMatch(/401 unauthorized: .*give a token with --token or FLASH_TOKEN/);
  });
});

describe('flash stock import', () => {
  it('imports a CSV with a progress bar on a terminal and a summary; --dry-run and a bad file send nothing', async () => {
    const rows = Array.from({ length: 40 }, (_, i) => `cli-imp-${String(i).padStart(2, '0')},${i + 1},,1`);
    const csv = file('stock.csv', `sku,stock,mode,maxPerBuyer\n${rows.join('\n')}\n`);
    const dry = await flash(['stock', 'import', csv, '--dry-run']);
    expect(dry).toEqual({ code: 0, err: '', out: `${csv}: 40 SKUs valid; dry run, nothing applied\n` });
    expect((await a.get('/v1/skus/cli-imp-00')).status).toBe(404);

    const tty = Object.assign(new PassThrough(), { isTTY: true, columns: 100 });
    let drawn = '';
    tty.on('data', (c: Buffer) => (drawn += c.toString()));
    const r = await flash(['stock', 'import', csv], { progress: tty });
    expect(r.err).toBe('');
    expect(r.code).toBe(0);
    expect(r.out).toBe(`${csv}: 40 SKUs, 40 created, 0 updated (stock applies on create only; restock with flash stock adjust), 0 failed\n`);
    expect(drawn).toMatch(/import \[.*\] \d+% \| \d+\/40 SKUs/);
    expect((await a.get('/v1/skus/cli-imp-39')).body).toMatchObject({ onHand: 40, maxPerBuyer: 1 });

    const again = await flash(['stock', 'import', csv]);
    expect(again.out).toContain('40 SKUs, 0 created, 40 updated');

    const bad = await flash(['stock', 'import', file('bad.csv', 'sku,stock\ncli-imp-x,-1\ncli-imp-y,2\n')]);
    expect(bad.code).toBe(2);
    expect(lines(bad.err)).toEqual([expect.stringMatching(/bad\.csv: 1 error; nothing was applied$/), '  line 2, stock: stock must be an integer in 0..1000000000']);
    expect((await a.get('/v1/skus/cli-imp-y')).status).toBe(404);
  });
});

describe('flash drop and erp', () => {
  it('drop status shows the queue figures, the seed hash, the revealed seed and the drop\'s SKUs; drop entry a buyer\'s place', async () => {
    const opensAt = Date.now() - 1000;
    expect((await a.put('/v1/drops/cli-random', { queue: { mode: 'random', opensAt, randomizeSeconds: 0, admitPerSecond: 10 } })).status).toBe(201);
    expect((await a.put('/v1/skus/cli-random-sku', { stock: 3, dropId: 'cli-random' })).status).toBe(201);
    expect((await a.post('/v1/drops/cli-random/queue', { buyerId: 'ann' }, TOKENS.shop)).status).toBe(201);
    let json: any;
    for (let i = 0; i < 50; i++) {
      json = JSON.parse((await flash(['drop', 'status', 'cli-random', '--json'])).out);
      if (json.queue.seed !== undefined) break;
      await sleep(100);
    }
    expect(json).toMatchObject({ dropId: 'cli-random', skus: ['cli-random-sku'], queue: { mode: 'random', entries: 1, seedSha256: expect.stringMatching(/^[0-9a-f]{64}$/), seed: expect.stringMatching(/^[0-9a-f]{64}$/) } });
    const r = await flash(['drop', 'status', 'cli-random']);
    expect(r.code).toBe(0);
    expect(r.out).toMatch(/^queue:\s+random$/m);
    expect(r.out).toMatch(/^\s+entries:\s+1$/m);
    expect(r.out).toContain(`seedSha256:`);
    expect(r.out).toContain(json.queue.seedSha256);
    expect(r.out).toContain(`${json.queue.seed} (revealed`);
    expect(r.out).toMatch(/^cli-random-sku\s+3\s+3\s+0\s+0\s+0$/m);

    const entry = await flash(['drop', 'entry', 'cli-random', 'ann']);
    expect(entry.code).toBe(0);
    expect(entry.out).toMatch(/^state:\s+(admitted|waiting)$/m);
    const none = await flash(['drop', 'entry', 'cli-random', 'bob']);
    expect(none.code).toBe(1);
    expect(none.err).toContain('404 unknown_entry');
    const plain = await flash(['drop', 'status', 'cli-json-drop']);
    expect(plain.out).toMatch(/^queue:\s+none \(anyone may reserve\)$/m);
    const unknown = await flash(['drop', 'status', 'cli-nope']);
    expect(unknown.code).toBe(1);
    expect(unknown.err).toMatch(/^flash: drop status cli-nope refused: 404 unknown_drop: /);
  });

  it('erp shows the backlog and, per SKU, sold against delivered', async () => {
    expect((await a.put('/v1/skus/cli-erp', { stock: 5 })).status).toBe(201);
    const held = await a.post('/v1/reservations', { sku: 'cli-erp', buyerId: 'erp-buyer', qty: 2 });
    expect(held.status).toBe(201);
    expect((await a.post(`/v1/reservations/${held.body.reservationId}/pay`, {})).status).toBe(200);
    let report: any;
    for (let i = 0; i < 200; i++) {
      report = JSON.parse((await flash(['erp', '--json'])).out);
      if (report.complete === true && report.totals.sold >= 2) break;
      await sleep(50);
    }
    expect(erpCalls).toBeGreaterThan(0);
    expect(report.skus.find((s: any) => s.sku === 'cli-erp')).toMatchObject({ sold: 2, deliveredUnits: 2, undeliveredUnits: 0 });
    const r = await flash(['erp']);
    expect(r.code).toBe(0);
    expect(r.out).toMatch(/^complete:\s+yes/m);
    expect(r.out).toMatch(/^backlog:\s+0 events/m);
    expect(r.out).toMatch(/^oldest undelivered:\s+none$/m);
    expect(r.out).toMatch(/^SKU\s+SOLD\s+DELIVERED\s+UNDELIVERED\s+NOT QUEUED\s+REFUNDED\s+REFUNDS DELIVERED$/m);
    expect(r.out).toMatch(/^cli-erp\s+2\s+2\s+0\s+0\s+0\s+0$/m);
  });

  it('a failing engine (5xx) exits 3; a refusal that is not a token problem exits 1', async () => {
    const down = createServer((_req, res) => res.writeHead(503, { 'content-type': 'application/json' }).end('{"error":{"code":"overloaded","message":"the engine is overloaded"}}'));
    await new Promise<void>((r) => down.listen(0, '127.0.0.1', r));
    try {
      const r = await flash(['erp'], { env: { FLASH_URL: `http://127.0.0.1:${(down.address() as { port: number }).port}` } });
      expect(r).toMatchObject({ code: 3, out: '' });
      expect(r.err).toBe('flash: erp failed: the engine answered 503 overloaded: the engine is overloaded (try again shortly)\n');
    } finally {
      down.closeAllConnections();
      await new Promise((r) => down.close(r));
    }
  });
});

describe('flash events tail', () => {
  it('parses Server-Sent Events: fields, multi-line data, comments, CR, LF and CRLF, split anywhere', () => {
    const text = ': hello\r\nevent: stock\r\ndata: {"a":\r\ndata: 1}\r\nid: 7\r\n\r\nevent: tick\rdata: {}\r\rdata:plain\n\n';
    for (const size of [1, 2, 5, text.length]) {
      const p = new SseParser();
      const out = [];
      for (let i = 0; i < text.length; i += size) out.push(...p.push(text.slice(i, i + size)));
      expect(out, `chunks of ${size}`).toEqual([
        { event: 'stock', data: '{"a":\n1}', id: '7' },
        { event: 'tick', data: '{}', id: '7' },
        { event: 'message', data: 'plain', id: '7' },
      ]);
    }
  });

  /**
   * A stand-in of GET /v1/console/stream: connection k gets scripts[k] (the last script for
   * any later one); every script but the last ends its stream (a lost connection), the last
   * stays open and ticks.
   */
  async function standIn(...scripts: string[][]): Promise<{ url: string; auth: string[]; lastEventIds: (string | null)[]; close(): Promise<void> }> {
    const auth: string[] = [];
    const lastEventIds: (string | null)[] = [];
    const open = new Set<ServerResponse>();
    const server = createServer((req, res) => {
      auth.push(req.headers.authorization ?? '');
      if (req.url !== '/v1/console/stream') return void res.writeHead(404).end();
      const k = lastEventIds.length;
      lastEventIds.push((req.headers['last-event-id'] as string | undefined) ?? null);
      res.writeHead(200, { 'content-type': 'text/event-stream; charset=utf-8', 'cache-control': 'no-cache' });
      for (const chunk of scripts[Math.min(k, scripts.length - 1)]!) res.write(chunk);
      if (k < scripts.length - 1) return void res.end();
      open.add(res);
      const tick = setInterval(() => res.write(`event: tick\ndata: {"at":${Date.now()}}\n\n`), 50);
      res.on('close', () => {
        clearInterval(tick);
        open.delete(res);
      });
    });
    await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
    return {
      url: `http://127.0.0.1:${(server.address() as { port: number }).port}`,
      auth,
      lastEventIds,
      close: async () => {
        for (const r of open) r.destroy();
        server.closeAllConnections();
        await new Promise((r) => server.close(r));
      },
    };
  }

  it('prints one line per stock event of the SKU asked for, and exits 0 after --count', async () => {
    const at = Date.UTC(2026, 10, 30, 12, 0, 0);
    const s = await standIn([
      'retry: 2000\n\nevent: tick\ndata: {}\n\n',
      `event: stock\ndata: {"type":"low_stock","sku":"other","at":${at}}\n\n`,
      `event: stock\ndata: {"type":"low_stock","sku":"moutai","at":${at},"available":9}\n\n`,
      `event: stock\ndata: {"type":"sold_out","sku":"moutai","at":${at + 1000}}\n\n`,
      `event: stock\ndata: {"type":"restocked","sku":"moutai","at":${at + 2000}}\n\n`,
    ]);
    try {
      const r = await flash(['events', 'tail', '--sku', 'moutai', '--count', '2'], { env: { FLASH_URL: s.url } });
      expect(r).toEqual({
        code: 0, err: '',
        out: '2026-11-30 12:00:00Z  low_stock   moutai  available 9\n2026-11-30 12:00:01Z  sold_out    moutai\n',
      });
      expect(s.auth[0]).toBe(`Bearer ${TOKENS.operator}`);
      const json = await flash(['events', 'tail', '--count', '1', '--json'], { env: { FLASH_URL: s.url } });
      expect(json.out).toBe(`{"type":"low_stock","sku":"other","at":${at}}\n`);
      // Until interrupted: Ctrl-C (the abort signal) ends it with exit 0.
      const stop = new AbortController();
      const tail = await flash(['events', 'tail', '--sku', 'moutai'], { env: { FLASH_URL: s.url }, signal: stop.signal, onOut: (out) => lines(out).length === 3 && stop.abort() });
      expect(tail.code).toBe(0);
      expect(lines(tail.out)).toHaveLength(3);
    } finally {
      await s.close();
    }
  });

  it('reconnects when the stream drops, says so once on stderr, and sends Last-Event-ID', async () => {
    const s = await standIn(
      ['retry: 20\n\n', 'id: 41\nevent: stock\ndata: {"type":"sold_out","sku":"a","at":1}\n\n'],
      ['id: 42\nevent: stock\ndata: {"type":"restocked","sku":"a","at":2}\n\n'],
    );
    try {
      const r = await flash(['events', 'tail', '--count', '2', '--json'], { env: { FLASH_URL: s.url } });
      expect(r.code).toBe(0);
      expect(lines(r.out)).toEqual(['{"type":"sold_out","sku":"a","at":1}', '{"type":"restocked","sku":"a","at":2}']);
      expect(lines(r.err)).toEqual(['flash: the engine closed the stream; reconnecting', 'flash: the event stream is back']);
      expect(s.lastEventIds).toEqual([null, '41']);
    } finally {
      await s.close();
    }
  });

  it('a stream the token may not read, or an engine without one, exits 1 at once', async () => {
    const r = await flash(['events', 'tail'], { env: { FLASH_TOKEN: TOKENS.shop } });
    expect(r).toMatchObject({ code: 1, out: '' });
    expect(r.err).toMatch(/^flash: GET \/v1\/console\/stream refused: 403 forbidden: /);
  });

  it('against the engine: GET /v1/console/stream tells of sold_out and restocked as stock changes', async () => {
    expect((await a.put('/v1/skus/cli-events', { stock: 2 })).status).toBe(201);
    const stop = new AbortController();
    const timer = setTimeout(() => stop.abort(), 15_000);
    let settled = false;
    const tail = flash(['events', 'tail', '--sku', 'cli-events', '--count', '2'], { env: { FLASH_TOKEN: TOKENS.viewer }, signal: stop.signal })
      .finally(() => (settled = true));
    // Sold out, restocked, again, until the tail (connected at some point) has seen two: any
    // two events in a row are one of each.
    for (let round = 0; !settled && round < 60; round++) {
      expect((await flash(['stock', 'adjust', 'cli-events', '-2', '--reason', 'count found none'])).code).toBe(0);
      expect((await flash(['stock', 'adjust', 'cli-events', '+2', '--reason', 'found them'])).code).toBe(0);
      await sleep(200);
    }
    const r = await tail;
    clearTimeout(timer);
    expect(r.err).toBe('');
    expect(r.code).toBe(0);
    const got = lines(r.out);
    expect(got).toHaveLength(2);
    for (const l of got) expect(l).toMatch(/^\d{4}-\d\d-\d\d \d\d:\d\d:\d\dZ {2}(sold_out {4}|restocked {3})cli-events$/);
    expect(got.map((l) => l.split(/\s+/)[2]).sort()).toEqual(['restocked', 'sold_out']);
    // Each change is in the audit trail with its reason.
    expect((await a.get('/v1/skus/cli-events/audit?limit=1', TOKENS.viewer)).body.items[0]).toMatchObject({ action: 'stock', reason: 'found them' });
  });
});

/** A stand-in HTTP server (another server at --url, or a scripted engine); closed by `close`. */
async function standInHttp(handler: (req: import('node:http').IncomingMessage, res: ServerResponse) => void): Promise<{ url: string; close(): Promise<void> }> {
  const server = createServer(handler);
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  return {
    url: `http://127.0.0.1:${(server.address() as { port: number }).port}`,
    close: async () => {
      server.closeAllConnections();
      await new Promise((r) => server.close(r));
    },
  };
}

describe('flash apply: drops that fail and channel policies', () => {
  it('a new drop whose queue has no mode is refused before anything is sent (exit 2): neither the drop nor its SKU', async () => {
    const path = file('no-mode.yaml', 'drops:\n  - dropId: cli-no-mode\n    queue: { admitPerSecond: 10, admitSeconds: 60 }\nskus:\n  - sku: cli-no-mode-sku\n    stock: 100\n    dropId: cli-no-mode\n');
    for (const args of [['apply', path], ['apply', path, '--dry-run']]) {
      const r = await flash(args);
      expect(r.code).toBe(2);
      expect(r.out).toBe('');
      expect(lines(r.err)).toEqual([
        `flash: ${path}: 1 error; nothing was applied`,
        `  ${path}:3: drops[0].queue: queue.mode is required for a new queue: fifo, random or draw (drop cli-no-mode does not exist yet)`,
      ]);
    }
    expect((await a.get('/v1/drops/cli-no-mode')).status).toBe(404);
    expect((await a.get('/v1/skus/cli-no-mode-sku')).status).toBe(404);
    // Not on sale without its drop's queue.
    expect((await a.post('/v1/reservations', { sku: 'cli-no-mode-sku', buyerId: 'anyone', qty: 1 }, TOKENS.shop)).status).toBe(404);
  });

  it('a SKU whose drop failed at the engine is not sent (its drop failed, and why); the other SKUs are applied', async () => {
    // A queue that has opened: its mode can no longer change (409 queue_locked).
    expect((await a.put('/v1/drops/cli-locked', { queue: { mode: 'fifo', opensAt: Date.now() - 60_000, admitPerSecond: 10 } })).status).toBe(201);
    const path = file('locked.yaml', 'drops:\n  - dropId: cli-locked\n    queue: { mode: random }\nskus:\n  - sku: cli-locked-sku\n    stock: 5\n    dropId: cli-locked\n  - sku: cli-free-sku\n    stock: 1\n');
    const r = await flash(['apply', path]);
    expect(r.code).toBe(1);
    expect(lines(r.out)).toEqual(['created  sku  cli-free-sku', `${path}: 1 drop, 2 SKUs: 1 created, 0 updated, 0 unchanged, 2 failed`]);
    const drop = `PUT /v1/drops/cli-locked refused: 409 queue_locked: `;
    expect(lines(r.err)).toEqual([
      expect.stringContaining(`flash: apply drop cli-locked (${path}:2: drops[0]): ${drop}`),
      expect.stringContaining(`flash: apply sku cli-locked-sku (${path}:5: skus[0]): not sent: its drop cli-locked failed: ${drop}`),
    ]);
    expect((await a.get('/v1/skus/cli-locked-sku')).status).toBe(404);
    expect((await a.get('/v1/drops/cli-locked')).body.queue.mode).toBe('fifo');
  });

  it('a channel policy over channels that already have units is sent and reported updated (the view cannot tell); the same again is unchanged', async () => {
    expect((await a.put('/v1/skus/cli-chan', { stock: 100 })).status).toBe(201);
    // A sale through the web storefront before any policy: the view lists web (maxUnits null) already.
    expect((await a.post('/v1/reservations', { sku: 'cli-chan', buyerId: 'w1', qty: 1 }, TOKENS.shopWeb)).status).toBe(201);
    expect((await a.get('/v1/skus/cli-chan')).body.channels).toEqual({ web: { reserved: 1, sold: 0, maxUnits: null } });
    const path = file('chan.yaml', 'sku: cli-chan\nchannels:\n  web: {}\n');
    const dry = await flash(['apply', path, '--dry-run']);
    expect(dry.code).toBe(0);
    expect(lines(dry.out)[0]).toBe('would update  sku  cli-chan: channels none → [["web",null]]');

    const r = await flash(['apply', path]);
    expect(r.code).toBe(0);
    expect(lines(r.out)).toEqual(['updated  sku  cli-chan: channels none → [["web",null]]', `${path}: 0 drops, 1 SKU: 0 created, 1 updated, 0 unchanged, 0 failed`]);
    // The policy is in force: the app storefront may no longer reserve.
    expect((await a.post('/v1/reservations', { sku: 'cli-chan', buyerId: 'a1', qty: 1 }, TOKENS.shopApp)).status).toBe(403);
    const audit = (await a.get('/v1/skus/cli-chan/audit', TOKENS.viewer)).body.items;
    expect(audit[0]).toMatchObject({ action: 'update', actor: 'ops-ann', after: { channels: [['web', null]] } });

    const again = await flash(['apply', path]);
    expect(lines(again.out)[0]).toBe('unchanged  sku  cli-chan');
    const dryAgain = await flash(['apply', path, '--dry-run']);
    expect(lines(dryAgain.out)[0]).toBe('unchanged  sku  cli-chan');
    // Sent, but nothing changed: the engine recorded nothing.
    expect((await a.get('/v1/skus/cli-chan/audit', TOKENS.viewer)).body.items).toHaveLength(audit.length);

    writeFileSync(path, 'sku: cli-chan\nchannels:\n  web: { maxUnits: 5 }\n');
    const capped = await flash(['apply', path]);
    expect(lines(capped.out)[0]).toBe('updated  sku  cli-chan: channels [["web",null]] → [["web",5]]');
  });
});

describe('flash stock import and the audit trail', () => {
  it('records the reason "stock import", as POST /v1/admin/stock-import does', async () => {
    const r = await flash(['stock', 'import', file('reason.csv', 'sku,stock\ncli-imp-reason,4\n')]);
    expect(r.code, r.err).toBe(0);
    const s = await a.raw('POST', '/v1/admin/stock-import', { body: 'sku,stock\ncli-imp-reason-api,4\n', headers: { 'content-type': 'text/csv' }, token: TOKENS.operator });
    expect(s.status).toBe(200);
    const viaCli = (await a.get('/v1/skus/cli-imp-reason/audit', TOKENS.viewer)).body.items[0];
    const viaApi = (await a.get('/v1/skus/cli-imp-reason-api/audit', TOKENS.viewer)).body.items[0];
    expect(viaCli).toMatchObject({ action: 'create', actor: 'ops-ann', reason: 'stock import' });
    expect(viaCli.reason).toBe(viaApi.reason);
  });
});

describe('flash erp and the stock events deliverer', () => {
  it('an engine with only FLASH_EVENTS_WEBHOOK_URL: no ERP deliverer, the events deliverer shown apart', async () => {
    const ev = await startEngine({ env: { FLASH_EVENTS_WEBHOOK_URL: 'http://127.0.0.1:9/ev', FLASH_EVENTS_SECRET: 'ev-secret-0123456789' } });
    try {
      const json = JSON.parse((await flash(['erp', '--json'], { env: { FLASH_URL: ev.url } })).out);
      expect(Object.keys(json.deliverer)).toEqual(['eventsWebhook']);
      const r = await flash(['erp'], { env: { FLASH_URL: ev.url } });
      expect(r).toMatchObject({ code: 0, err: '' });
      expect(r.out).not.toContain('undefined');
      expect(r.out).toMatch(/^deliverer:\s+none in this process/m);
      expect(r.out).toMatch(/^delivered:\s+-$/m);
      expect(r.out).toMatch(/^events webhook:\s+0 delivered, 0 in backlog, 0 failures$/m);
    } finally {
      await ev.stop();
    }
  });

  it('both deliverers (the ERP\'s figures plus eventsWebhook), and a standby node over NATS', async () => {
    const at = Date.UTC(2026, 10, 30, 12, 0, 0);
    const stats = (over: Record<string, unknown>): Record<string, unknown> => ({
      backlogEvents: 0, backlogMayHaveMore: false, oldestUndeliveredAgeMs: 0, deliveredTotal: 7, callsStarted: 7, callsInFlight: 0, failuresTotal: 0,
      failuresByKind: {}, lastError: null, shards: [], maxRps: 50, concurrency: 4, maxStartsPerSecond: 3, maxCallsInFlight: 1, firstCallAtMs: at, lastCallAtMs: at, ...over,
    });
    let deliverer: unknown = { ...stats({}), eventsWebhook: stats({ deliveredTotal: 3, backlogEvents: 2, failuresTotal: 1, lastError: { kind: 'http_500', message: 'boom', eventId: 'e1', atMs: at } }) };
    const s = await standInHttp((_req, res) => {
      res.writeHead(200, { 'content-type': 'application/json' }).end(JSON.stringify({ complete: true, shardsAnswered: true, shards: [], totals: { sold: 0 }, skus: [], deliverer }));
    });
    try {
      const both = await flash(['erp'], { env: { FLASH_URL: s.url } });
      expect(both.code).toBe(0);
      expect(both.out).toMatch(/^delivered:\s+7$/m);
      expect(both.out).toMatch(/^deliverer:\s+0 calls in flight, cap 50\/s and 4 at once, 0 failures$/m);
      expect(both.out).toMatch(/^last error:\s+-$/m);
      expect(both.out).toMatch(/^events webhook:\s+3 delivered, 2 in backlog, 1 failures$/m);
      expect(both.out).toMatch(/^events last error:\s+2026-11-30 12:00:00Z http_500: boom$/m);
      deliverer = { role: 'standby', lease: 'erp', deliveringSinceMs: null };
      const standby = await flash(['erp'], { env: { FLASH_URL: s.url } });
      expect(standby.code).toBe(0);
      expect(standby.out).not.toContain('undefined');
      expect(standby.out).toMatch(/^deliverer:\s+standby on this node/m);
      expect(standby.out).not.toMatch(/^events webhook:/m);
    } finally {
      await s.close();
    }
  });
});

describe('flash stock adjust when the answer is lost', () => {
  it('a request that reached the engine without an answer says the change may have been applied and how to check; never "try again"', async () => {
    const { connect, createServer: tcp } = await import('node:net');
    expect((await a.put('/v1/skus/cli-lost', { stock: 10 })).status).toBe(201);
    // A proxy that forwards the request and loses the answer (a load balancer timing out).
    const sockets = new Set<import('node:net').Socket>();
    const proxy = tcp((client) => {
      const up = connect(engine.port, '127.0.0.1');
      sockets.add(client).add(up);
      client.pipe(up);
      up.on('data', () => undefined);
      client.on('error', () => up.destroy());
      up.on('error', () => client.destroy());
    });
    await new Promise<void>((r) => proxy.listen(0, '127.0.0.1', r));
    try {
      const url = `http://127.0.0.1:${(proxy.address() as { port: number }).port}`;
      const r = await flash(['stock', 'adjust', 'cli-lost', '+50', '--reason', 'pallet 7', '--url', url, '--timeout', '1']);
      expect(r.code).toBe(3);
      expect(lines(r.err)).toEqual([
        `flash: stock adjust cli-lost +50: the request reached ${url} but its answer was lost (no answer in time); the change may have been applied: check flash sku audit cli-lost (or flash sku get cli-lost) before retrying (sent again, it would apply twice)`,
      ]);
      expect(r.err).not.toMatch(/is it running\?|try again/);
      expect((await a.get('/v1/skus/cli-lost')).body.onHand).toBe(60);
    } finally {
      for (const s of sockets) s.destroy();
      await new Promise((r) => proxy.close(r));
    }
  });

  it('a 5xx that may have come after the change says so; "nothing was done" (overloaded) and a refused connection invite a retry', async () => {
    let answer = { status: 504, body: '<html>gateway timeout</html>', type: 'text/html' };
    const s = await standInHttp((req, res) => {
      req.resume();
      res.writeHead(answer.status, { 'content-type': answer.type }).end(answer.body);
    });
    try {
      const timedOut = await flash(['stock', 'adjust', 'cli-x', '+5', '--reason', 'r', '--url', s.url]);
      expect(timedOut.code).toBe(3);
      expect(timedOut.err).toBe('flash: stock adjust cli-x +5 failed: the engine answered 504 http_504: <html>gateway timeout</html>; the change may have been applied: check flash sku audit cli-x (or flash sku get cli-x) before retrying (sent again, it would apply twice)\n');
      answer = { status: 503, body: '{"error":{"code":"overloaded","message":"the engine is overloaded"}}', type: 'application/json' };
      const overloaded = await flash(['stock', 'adjust', 'cli-x', '+5', '--reason', 'r', '--url', s.url]);
      expect(overloaded).toMatchObject({ code: 3, err: 'flash: stock adjust cli-x +5 failed: the engine answered 503 overloaded: the engine is overloaded (try again shortly)\n' });
    } finally {
      await s.close();
    }
    const port = await freePort();
    const refused = await flash(['stock', 'adjust', 'cli-x', '+5', '--reason', 'r', '--url', `http://127.0.0.1:${port}`]);
    expect(refused).toMatchObject({ code: 3, err: `flash: cannot reach the engine at http://127.0.0.1:${port} (ECONNREFUSED): is it running? Point --url or FLASH_URL at it\n` });
  });
});

describe('flash exit codes: not the engine, and bugs of the tool', () => {
  it('a URL that answers 2xx with something that is not the engine\'s JSON exits 3 "not an engine answer", never 1 with a stack', async () => {
    const s = await standInHttp((req, res) => {
      req.resume();
      res.writeHead(200, { 'content-type': 'text/html' }).end('<html>please log in</html>');
    });
    try {
      for (const args of [['sku', 'list'], ['sku', 'get', 'x'], ['sku', 'audit', 'x'], ['erp'], ['drop', 'status', 'd'], ['drop', 'entry', 'd', 'b'], ['stock', 'adjust', 'x', '+1', '--reason', 'r']]) {
        const r = await flash([...args, '--url', s.url]);
        expect({ args, code: r.code, out: r.out, err: r.err }).toEqual({
          args, code: 3, out: '', err: `flash: ${args.slice(0, args[0] === 'stock' ? 4 : args.length).join(' ')} failed: not an engine answer from ${s.url} (200, text/html): is --url (or FLASH_URL) the engine's address?\n`,
        });
      }
      const apply = await flash(['apply', file('html.yaml', 'sku: cli-html\nstock: 1\n'), '--url', s.url]);
      expect(apply.code).toBe(3);
      expect(apply.err).toContain(`GET /v1/skus/cli-html failed: not an engine answer from ${s.url} (200, text/html)`);
      const imp = await flash(['stock', 'import', file('html.csv', 'sku,stock\ncli-html,1\n'), '--url', s.url]);
      expect(imp.code).toBe(3);
      expect(imp.err).toContain('not an engine answer');
      for (const r of [apply, imp]) expect(r.err).not.toContain('a bug of the tool');
    } finally {
      await s.close();
    }
  });

  it('an unexpected error of the tool exits 4 (a bug), not 1 (which means the engine refused)', async () => {
    let err = '';
    const code = await runFlash(['sku', 'get', 'cli-adjust'], {
      stdout: () => {
        throw new TypeError('cannot write');
      },
      stderr: (t) => {
        err += t;
      },
      readFile: (p) => readFileSync(p, 'utf8'),
      env: { FLASH_URL: engine.url, FLASH_TOKEN: TOKENS.operator, FLASH_DATA_DIR: join(work, 'no-data') },
      progress: null,
    });
    expect(code).toBe(4);
    expect(err).toMatch(/^flash: unexpected error \(a bug of the tool; please report it\): TypeError: cannot write/);
  });
});
