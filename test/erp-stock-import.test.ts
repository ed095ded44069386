// Bulk stock import: CSV and JSON files become validated sku.upsert commands with the rules
// of PUT /v1/skus, or, with any bad line, no command at all and every error named by line
// and field. Then the CLI against a recording HTTP server (dry run, auth, retries), and the
// admin endpoint's helper (raw CSV or a JSON wrapper in, 400 with line errors or 200 counts).

import { createServer, type IncomingMessage, type Server } from 'node:http';
import { afterEach, describe, expect, it } from 'vitest';
import { runImportStock, type CliIo } from '../src/cli/import-stock.js';
import { upsertBody } from '../src/admin/stock-apply.js';
import { readStockImport, runStockImport } from '../src/admin/stock-import-endpoint.js';
import { formatImportError, guessStockImportFormat, parseStockImport, type StockImportResult } from '../src/admin/stock-import.js';

function errorsOf(r: StockImportResult): string[] {
  expect(r.ok, 'the file should have been refused').toBe(false);
  return r.ok ? [] : r.errors.map(formatImportError);
}

describe('stock import: good files', () => {
  it('turns a CSV with quoting, CRLF, a BOM, blank lines and optional columns into upsert commands', () => {
    const csv = '\uFEFFsku,stock,mode,holdSeconds,maxPerBuyer,dropId,startsAt,endsAt,lowStockThreshold\r\n'
      + 'moutai-2026,10000,pre_deduct,900,2,spring,1760000000000,1760003600000,100\r\n'
      + '\r\n'
      + '"sneaker:42", 500 ,"on_payment",,1,"spring",,,\r\n'
      + 'ticket.A,0,,,,,,,\r\n';
    const r = parseStockImport(csv, 'csv');
    expect(r).toEqual({
      ok: true, lines: [2, 4, 5],
      commands: [
        { t: 'sku.upsert', sku: 'moutai-2026', stock: 10000, mode: 'pre_deduct', holdSeconds: 900, maxPerBuyer: 2, dropId: 'spring', startsAtMs: 1760000000000, endsAtMs: 1760003600000, lowStockThreshold: 100 },
        { t: 'sku.upsert', sku: 'sneaker:42', stock: 500, mode: 'on_payment', maxPerBuyer: 1, dropId: 'spring' },
        { t: 'sku.upsert', sku: 'ticket.A', stock: 0 },
      ],
    });
  });

  it('imports the risk rules of the SKU policy (v2: minAccountAgeSeconds, minPastOrders), checked like PUT /v1/skus', () => {
    const csv = 'sku,stock,minAccountAgeSeconds,minPastOrders\nrisky,10,86400,2\nplain,5,,\n';
    expect(parseStockImport(csv, 'csv')).toEqual({
      ok: true, lines: [2, 3],
      commands: [{ t: 'sku.upsert', sku: 'risky', stock: 10, minAccountAgeSeconds: 86400, minPastOrders: 2 }, { t: 'sku.upsert', sku: 'plain', stock: 5 }],
    });
    expect(parseStockImport('[{"sku":"risky","stock":10,"minAccountAgeSeconds":86400,"minPastOrders":2}]', 'json'))
      .toEqual({ ok: true, lines: [1], commands: [{ t: 'sku.upsert', sku: 'risky', stock: 10, minAccountAgeSeconds: 86400, minPastOrders: 2 }] });
    expect(errorsOf(parseStockImport('sku,stock,minAccountAgeSeconds,minPastOrders\nrisky,10,-1,x\n', 'csv'))).toEqual([
      expect.stringMatching(/^line 2, minAccountAgeSeconds: minAccountAgeSeconds must be an integer in 0\.\./),
      expect.stringMatching(/^line 2, minPastOrders: minPastOrders must be an integer in 0\.\./),
    ]);
  });

  it('takes the header columns in any order', () => {
    expect(parseStockImport('stock,maxPerBuyer,sku\n7,1,a\n', 'csv')).toEqual({ ok: true, lines: [2], commands: [{ t: 'sku.upsert', sku: 'a', stock: 7, maxPerBuyer: 1 }] });
  });

  it('turns a JSON array of objects into the same commands, with the API field names', () => {
    const json = JSON.stringify([
      { sku: 'moutai-2026', stock: 10000, mode: 'on_order', holdSeconds: 600, maxPerBuyer: 2, dropId: 'spring', startsAt: 0, endsAt: 0, lowStockThreshold: 10 },
      { sku: 'b', stock: 1, dropId: null },
    ], null, 2);
    const r = parseStockImport(json, 'json');
    expect(r).toEqual({
      ok: true, lines: [2, 13],
      commands: [
        { t: 'sku.upsert', sku: 'moutai-2026', stock: 10000, mode: 'on_order', holdSeconds: 600, maxPerBuyer: 2, dropId: 'spring', startsAtMs: 0, endsAtMs: 0, lowStockThreshold: 10 },
        { t: 'sku.upsert', sku: 'b', stock: 1, dropId: null },
      ],
    });
    expect(upsertBody(r.ok ? r.commands[0]! : (undefined as never))).toEqual({ stock: 10000, mode: 'on_order', holdSeconds: 600, maxPerBuyer: 2, dropId: 'spring', startsAt: 0, endsAt: 0, lowStockThreshold: 10 });
    expect(guessStockImportFormat(json)).toBe('json');
    expect(guessStockImportFormat('sku,stock\n')).toBe('csv');
  });
});

describe('stock import: bad files give nothing to apply and name the line', () => {
  it.each([
    ['an unterminated quote', 'sku,stock\na,1\n"b,2\n', ['line 3: field 1 opens a quote that is never closed']],
    ['text after a closing quote', 'sku,stock\n"a"x,1\n', ['line 2: field 1 has text after its closing quote']],
    ['a quote inside an unquoted field', 'sku,stock\na"b,1\n', ['line 2: field 1 has a quote inside an unquoted value (quote the whole field and double inner quotes)']],
    ['negative stock', 'sku,stock\na,1\nb,-5\n', ['line 3, stock: stock must be an integer in 0..1000000000']],
    ['a number that is not an integer', 'sku,stock,holdSeconds\na,1.5,60\nb,1e3,60\nc,1,ten\n', [
      'line 2, stock: stock must be an integer in 0..1000000000',
      'line 3, stock: stock must be an integer in 0..1000000000',
      'line 4, holdSeconds: holdSeconds must be an integer in 1..86400',
    ]],
    ['an unknown column', 'sku,stock,colour\na,1,red\n', ['line 1, colour: unknown column colour; columns are sku, stock, mode, holdSeconds, maxPerBuyer, dropId, startsAt, endsAt, lowStockThreshold, minAccountAgeSeconds, minPastOrders']],
    ['a column in the wrong case', 'sku,stock,maxperbuyer\na,1,2\n', [expect.stringContaining('line 1, maxperbuyer: unknown column maxperbuyer (did you mean maxPerBuyer?)')]],
    ['a header without stock', 'sku,mode\na,on_order\n', ['line 1, stock: the header must have a stock column']],
    ['a column twice', 'sku,stock,stock\na,1,2\n', ['line 1, stock: column stock appears twice in the header']],
    ['duplicate SKUs', 'sku,stock\na,1\nb,2\na,3\n', ['line 4, sku: sku a is already on line 2']],
    ['a bad mode', 'sku,stock,mode\na,1,pre-deduct\n', ['line 2, mode: mode must be one of pre_deduct, on_order, on_payment']],
    ['too many columns', 'sku,stock\na,1,extra\n', ['line 2: has 3 fields, the header has 2']],
    ['too few columns', 'sku,stock,mode\na,1\n', ['line 2: has 2 fields, the header has 3']],
    ['bad quoting and bad values, reported in line order', 'sku,stock\na,-1\n"b,2\nc,x\n', [
      'line 2, stock: stock must be an integer in 0..1000000000', 'line 3: field 1 opens a quote that is never closed', 'line 4, stock: stock must be an integer in 0..1000000000',
    ]],
    ['a bad SKU name and a missing stock', 'sku,stock\nbad sku!,\n', ['line 2, sku: sku must be 1..64 characters of [A-Za-z0-9._:-]', 'line 2, stock: stock is required (the units the SKU is created with)']],
    ['a sale window that ends before it starts', 'sku,stock,startsAt,endsAt\na,1,2000,1000\n', ['line 2, endsAt: endsAt must be after startsAt']],
    ['an empty file', '\n\n', ['line 1: the file is empty; it needs a header line such as sku,stock']],
    ['a header and no rows', 'sku,stock\n', ['line 1: the file has no SKU rows']],
  ])('CSV with %s', (_name, csv, expected) => {
    expect(errorsOf(parseStockImport(csv, 'csv'))).toEqual(expected);
  });

  it.each([
    ['a syntax error', '[\n  {"sku": "a", "stock": 1},\n  {"sku": "b" "stock": 2}\n]', [expect.stringMatching(/^line 3: not valid JSON: /)]],
    ['something other than an array', '{"sku":"a","stock":1}', ['line 1: the JSON must be an array of objects like {"sku":"a","stock":10}']],
    ['an item that is not an object', '[\n{"sku":"a","stock":1},\n42\n]', ['line 3: item 2 is not an object']],
    ['an unknown key', '[\n{"sku":"a","stock":1,"colour":"red"}\n]', ['line 2, colour: unknown field colour; fields are sku, stock, mode, holdSeconds, maxPerBuyer, dropId, startsAt, endsAt, lowStockThreshold, minAccountAgeSeconds, minPastOrders']],
    ['a __proto__ key', '[{"sku":"a","stock":1,"__proto__":{"x":1}}]', [expect.stringContaining('line 1, __proto__: unknown field __proto__')]],
    ['stock as a string', '[\n{"sku":"a","stock":"10"}\n]', ['line 2, stock: stock must be an integer in 0..1000000000']],
    ['negative stock and a bad mode on one item', '[{"sku":"a","stock":1},\n {"sku":"b","stock":-1,"mode":"x"}]', [
      'line 2, stock: stock must be an integer in 0..1000000000', 'line 2, mode: mode must be one of pre_deduct, on_order, on_payment',
    ]],
    ['duplicate SKUs', '[\n{"sku":"a","stock":1},\n{"sku":"a","stock":2}\n]', ['line 3, sku: sku a is already on line 2']],
  ])('JSON with %s', (_name, json, expected) => {
    expect(errorsOf(parseStockImport(json, 'json'))).toEqual(expected);
  });

  it('reports every bad line, keeping the first 100 and counting them all', () => {
    const lines = ['sku,stock'];
    for (let i = 0; i < 150; i++) lines.push(`s${i},-1`);
    const r = parseStockImport(lines.join('\n'), 'csv');
    expect(r.ok).toBe(false);
    if (r.ok) return;
    expect(r.errorCount).toBe(150);
    expect(r.errors).toHaveLength(100);
    expect(r.errors[99]).toEqual({ line: 101, field: 'stock', message: 'stock must be an integer in 0..1000000000' });
  });
});

// ---- the CLI, against a server that records every call ---------------------------------

interface Recorder {
  url: string;
  calls: { method: string; path: string; auth: string | undefined; body: unknown }[];
  answer: (path: string, attempt: number) => number;
  close(): Promise<void>;
}

const servers: Server[] = [];
afterEach(async () => {
  for (const s of servers.splice(0)) await new Promise((r) => s.close(r));
});

async function recorder(answer: Recorder['answer'] = () => 201): Promise<Recorder> {
  const rec = { calls: [], answer } as unknown as Recorder;
  const attempts = new Map<string, number>();
  const server = createServer((req, res) => {
    let text = '';
    req.on('data', (c) => (text += c));
    req.on('end', () => {
      const path = req.url ?? '';
      rec.calls.push({ method: req.method ?? '', path, auth: req.headers.authorization, body: JSON.parse(text || '{}') });
      const attempt = (attempts.get(path) ?? 0) + 1;
      attempts.set(path, attempt);
      const status = rec.answer(path, attempt);
      const body = status < 300 ? { sku: decodeURIComponent(path.split('/')[3] ?? '') } : { error: { code: ({ 401: 'unauthorized', 403: 'forbidden', 503: 'overloaded' } as Record<number, string>)[status] ?? 'drop_mismatch', message: 'no' } };
      res.writeHead(status, { 'content-type': 'application/json' });
      res.end(JSON.stringify(body));
    });
  });
  servers.push(server);
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  const address = server.address();
  rec.url = `http://127.0.0.1:${typeof address === 'object' && address !== null ? address.port : 0}`;
  return rec;
}

function io(files: Record<string, string>): CliIo & { out: string[]; err: string[] } {
  const out: string[] = [];
  const err: string[] = [];
  return { out, err, log: (l) => out.push(l), error: (l) => err.push(l), readFile: (p) => files[p] ?? (() => { throw new Error('no such file'); })() };
}

const goodCsv = 'sku,stock,maxPerBuyer,dropId\nmoutai-2026,10000,2,spring\n"sneaker:42",500,1,\nticket.A,0,,\n';

describe('import-stock CLI', () => {
  it('validates, then applies every SKU with PUT /v1/skus/{sku} and the admin token, and prints a summary', async () => {
    const erp = await recorder((path) => (path.includes('ticket') ? 200 : 201));
    const cli = io({ 'stock.csv': goodCsv });
    expect(await runImportStock(['--url', erp.url, '--token', 'admin-token-123', 'stock.csv'], cli)).toBe(0);
    expect(erp.calls.map((c) => [c.method, c.path, c.auth]).sort()).toEqual([
      ['PUT', '/v1/skus/moutai-2026', 'Bearer admin-token-123'],
      ['PUT', '/v1/skus/sneaker%3A42', 'Bearer admin-token-123'],
      ['PUT', '/v1/skus/ticket.A', 'Bearer admin-token-123'],
    ]);
    expect(erp.calls.find((c) => c.path === '/v1/skus/moutai-2026')?.body).toEqual({ stock: 10000, maxPerBuyer: 2, dropId: 'spring', reason: 'stock import' });
    expect(cli.out).toEqual([expect.stringMatching(/^stock\.csv: 3 SKUs, 2 created, 1 updated .*, 0 failed$/)]);
  });

  it('with --dry-run validates and sends nothing', async () => {
    const erp = await recorder();
    const cli = io({ 'stock.csv': goodCsv });
    expect(await runImportStock(['--url', erp.url, '--dry-run', 'stock.csv'], cli)).toBe(0);
    expect(erp.calls).toEqual([]);
    expect(cli.out).toEqual(['stock.csv: 3 SKUs valid; dry run, nothing applied']);
  });

  it('sends nothing when one line is bad, and lists every error with its line', async () => {
    const erp = await recorder();
    const cli = io({ 'stock.json': '[\n{"sku":"a","stock":1},\n{"sku":"b","stock":-1},\n{"sku":"a","stock":2,"mode":"x"}\n]' });
    expect(await runImportStock(['--url', erp.url, 'stock.json'], cli)).toBe(1);
    expect(erp.calls).toEqual([]);
    expect(cli.err).toEqual([
      'stock.json: 3 errors; nothing was applied',
      '  line 3, stock: stock must be an integer in 0..1000000000',
      '  line 4, mode: mode must be one of pre_deduct, on_order, on_payment',
      '  line 4, sku: sku a is already on line 2',
    ]);
  });

  it('retries an overloaded engine, and stops at once when the token is refused (401) or may not import (403)', async () => {
    const busy = await recorder((_path, attempt) => (attempt === 1 ? 503 : 201));
    const cli = io({ 's.csv': goodCsv });
    expect(await runImportStock(['--url', busy.url, '--concurrency', '1', 's.csv'], cli)).toBe(0);
    expect(busy.calls).toHaveLength(6);

    const locked = await recorder(() => 401);
    const cli2 = io({ 's.csv': goodCsv });
    expect(await runImportStock(['--url', locked.url, '--concurrency', '1', 's.csv'], cli2)).toBe(1);
    expect(locked.calls).toHaveLength(1);
    expect(cli2.err.join('\n')).toContain('refused the token (unauthorized)');

    // v2: a valid token whose role may not import (viewer, shop, ...) is refused 403; that
    // too stops at once, as no other line would fare better.
    const readOnly = await recorder(() => 403);
    const cli3 = io({ 's.csv': goodCsv });
    expect(await runImportStock(['--url', readOnly.url, '--concurrency', '1', '--token', 'viewer-token-0123456', 's.csv'], cli3)).toBe(1);
    expect(readOnly.calls).toHaveLength(1);
    expect(cli3.err.join('\n')).toContain('refused the token (forbidden)');
    expect(cli3.err.join('\n')).toMatch(/admin or operator token/);
  });

  it('answers a wrong command line with usage and exit code 2', async () => {
    const cli = io({});
    expect(await runImportStock(['--format', 'xml', 'f.csv'], cli)).toBe(2);
    expect(await runImportStock([], cli)).toBe(2);
    expect(cli.err.join('\n')).toContain('usage: import-stock');
  });
});

// ---- the admin endpoint's helper ------------------------------------------------------

async function readOver(body: string, contentType: string): Promise<Awaited<ReturnType<typeof readStockImport>>> {
  let result: Awaited<ReturnType<typeof readStockImport>> | undefined;
  const server = createServer(async (req: IncomingMessage, res) => {
    result = await readStockImport(req);
    res.end();
  });
  servers.push(server);
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  const address = server.address();
  const port = typeof address === 'object' && address !== null ? address.port : 0;
  await fetch(`http://127.0.0.1:${port}/v1/admin/stock-import`, { method: 'POST', headers: { 'content-type': contentType }, body });
  return result!;
}

describe('stock import endpoint helper', () => {
  it('reads raw text/csv, a JSON wrapper, or a bare JSON array', async () => {
    expect(await readOver(goodCsv, 'text/csv')).toEqual({ format: 'csv', text: goodCsv });
    expect(await readOver(JSON.stringify({ format: 'csv', data: goodCsv }), 'application/json')).toEqual({ format: 'csv', text: goodCsv });
    expect(await readOver('[{"sku":"a","stock":1}]', 'application/json')).toEqual({ format: 'json', text: '[{"sku":"a","stock":1}]' });
    const bad = await readOver(JSON.stringify({ format: 'xml', data: '' }), 'application/json');
    // The answer names its error code apart too (the gateway counts refusals by code).
    expect(bad).toEqual({ status: 400, code: 'invalid_request', json: JSON.stringify({ error: { code: 'invalid_request', message: 'format must be "csv" or "json"' } }) });
  });

  it('answers 400 with every line error and applies nothing, or applies all and answers 200 with counts', async () => {
    const applied: string[] = [];
    const upsert = async (c: { sku: string }) => {
      applied.push(c.sku);
      return { ok: true as const, status: c.sku === 'ticket.A' ? ('ok' as const) : ('created' as const) };
    };
    const refused = await runStockImport({ format: 'csv', text: 'sku,stock\na,-1\nb,x\n' }, upsert);
    expect(refused.status).toBe(400);
    expect(refused.code).toBe('invalid_request');
    const body = JSON.parse(refused.json);
    expect(body.error.code).toBe('invalid_request');
    expect(body.error.message).toMatch(/^2 errors in the stock file; nothing was applied: line 2, stock: .*; line 3, stock: /);
    expect(body.errors).toEqual([
      { line: 2, field: 'stock', message: 'stock must be an integer in 0..1000000000' },
      { line: 3, field: 'stock', message: 'stock must be an integer in 0..1000000000' },
    ]);
    expect(applied).toEqual([]);

    const ok = await runStockImport({ format: 'csv', text: goodCsv }, upsert);
    // ticket.A existed (the stand-in answered 200): its row's stock was not applied, and the answer says so.
    expect(ok.status).toBe(200);
    expect(JSON.parse(ok.json)).toEqual({
      skus: 3, created: 2, updated: 1, failed: 0, stockKept: 1,
      note: 'stock applies when a SKU is created: 1 existing SKU(s) kept their stock (ticket.A); change it with POST /v1/skus/{sku}/stock (or flash stock adjust)',
    });
    expect(applied.sort()).toEqual(['moutai-2026', 'sneaker:42', 'ticket.A']);
  });

  it('answers 409 import_incomplete naming the SKUs a shard refused', async () => {
    const answer = await runStockImport({ format: 'csv', text: goodCsv }, async (c) =>
      c.sku === 'moutai-2026' ? { ok: false as const, code: 'drop_mismatch' as const, message: 'dropId cannot change' } : { ok: true as const, status: 'created' as const });
    expect(answer.status).toBe(409);
    expect(answer.code).toBe('import_incomplete');
    const body = JSON.parse(answer.json);
    expect(body.error.code).toBe('import_incomplete');
    expect(body).toMatchObject({ skus: 3, created: 2, failed: 1, failures: [{ line: 2, sku: 'moutai-2026', code: 'drop_mismatch' }] });
  });
});
