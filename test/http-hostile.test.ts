// Hostile input over real HTTP, table by table: every case must get the exact 4xx and code
// of shared/API.md in the one error shape, a 400 must name the offending field, nothing may
// answer 500, and no case may change any state (SKU views and a live reservation are read
// before and after each case and must be identical).
// Every case authenticates as the caller that would make the call (shared/API.md v2: the
// shop reserves, gets and cancels, the payment side pays, an admin changes SKUs), so that it
// reaches the validation it is about: authentication (401) and roles (403) come first.

import { afterAll, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import {
  ADMIN_TOKEN, NO_TOKEN, TOKENS, api, buyerToken, defaultTokenFor, startEngine, stopAllEngines, type Api, type Engine,
} from './support/engine-process.js';
import { bearer, bearerLines, chunked, rawRequest, type RawReply } from './support/http-raw.js';
import { createSku, expectError, getSku, reserveOk, uniq } from './support/http-kit.js';

let engine: Engine;
let a: Api;
const SKU = 'hostile-sku';
const WINDOWED = 'hostile-window';
let heldId = '';

const engineEnv = { FLASH_BUYER_RPS: '0' };

beforeAll(async () => {
  engine = await startEngine({ env: engineEnv });
  a = api(engine.url);
  await createSku(a, SKU, { stock: 10, maxPerBuyer: 5 });
  await createSku(a, WINDOWED, { stock: 10, startsAt: Date.now() - 60_000, endsAt: Date.now() + 86_400_000 });
  heldId = (await reserveOk(a, { sku: SKU, buyerId: 'holder' })).reservationId;
});

afterAll(stopAllEngines);

const alive = (): boolean => engine.child.exitCode === null && engine.child.signalCode === null;

/**
 * A hostile request must never take the engine down. When one does, the case fails with
 * the engine's last words, and a fresh engine is started on the same data directory so
 * that the remaining cases still say something.
 */
async function reviveIfDead(): Promise<string | null> {
  if (alive()) await new Promise((r) => setTimeout(r, 50));
  if (alive()) return null;
  const lines = engine.logs().trim().split('\n');
  const from = lines.findIndex((l) => l.includes('listening'));
  // The throw site, the error and its innermost frame are enough to find the bug.
  const words = lines.slice(from + 1).filter((l) => l.trim() !== '');
  const firstFrame = words.findIndex((l) => /^\s+at /.test(l));
  const lastWords = (firstFrame < 0 ? words.slice(0, 8) : words.slice(0, firstFrame + 1)).join('\n    ');
  const code = engine.child.exitCode;
  engine = await startEngine({ env: engineEnv, dataDir: engine.dataDir });
  a = api(engine.url);
  return `the engine process died (exit code ${code}); its last output:\n    ${lastWords}`;
}

beforeEach(async () => {
  await reviveIfDead();
});

/** Everything a hostile request could have changed. */
async function snapshot(): Promise<unknown> {
  const res = await a.get(`/v1/reservations/${heldId}`);
  return { sku: await getSku(a, SKU), windowed: await getSku(a, WINDOWED), held: res.body };
}

interface Case {
  name: string;
  method: string;
  path: string;
  /** Sent verbatim; an object is JSON-encoded. */
  body?: unknown;
  /** The bearer token; NO_TOKEN sends none; absent: the caller that would make the call (defaultTokenFor). */
  token?: string;
  status: number;
  code: string;
  /** For 400s: a word the message must contain (the field); for 401s: what was wrong with the token. */
  field?: RegExp;
}

function send(c: Case): Promise<RawReply> {
  const body = c.body === undefined ? '' : typeof c.body === 'string' ? c.body : JSON.stringify(c.body);
  const bytes = Buffer.from(body, 'utf8');
  const head = [
    `${c.method} ${c.path} HTTP/1.1`,
    'host: 127.0.0.1',
    'connection: close',
    'content-type: application/json',
    `content-length: ${bytes.length}`,
    ...bearerLines(c.token ?? defaultTokenFor(c.method, c.path) ?? NO_TOKEN),
  ].join('\r\n');
  return rawRequest(engine.port, head, [bytes]);
}

async function runTable(cases: Case[]): Promise<void> {
  const failures: string[] = [];
  for (const c of cases) {
    const before = await snapshot();
    let r: RawReply;
    try {
      r = await send(c);
    } catch (e) {
      const died = await reviveIfDead();
      failures.push(`${c.name}: ${c.method} ${c.path} -> no answer (${(e as Error).message.split(';')[0]})${died ? `; ${died}` : ''}`);
      continue;
    }
    const died = await reviveIfDead();
    if (died !== null) {
      failures.push(`${c.name}: ${c.method} ${c.path} -> ${r.status} ${r.text}; ${died}`);
      continue;
    }
    const after = await snapshot();
    const label = `${c.name}: ${c.method} ${c.path} -> ${r.status} ${r.text}`;
    try {
      expect(r.status, label).toBeLessThan(500);
      expectError(r, c.status, c.code);
      if (c.field !== undefined) expect(r.body.error.message, label).toMatch(c.field);
      expect(after, `${label} changed state`).toEqual(before);
    } catch (e) {
      failures.push(`${label}\n    ${(e as Error).message.split('\n')[0]}`);
    }
  }
  expect(failures, failures.join('\n')).toEqual([]);
}

const reserveCase = (name: string, body: unknown, field: RegExp, status = 400, code = 'invalid_request'): Case => ({
  name, method: 'POST', path: '/v1/reservations', body, status, code, field,
});
const good = { sku: SKU, buyerId: 'hostile-buyer' };

describe('hostile reservation bodies', () => {
  it('answers 400 invalid_request naming the body for malformed JSON and non-object bodies, changing nothing', async () => {
    await runTable([
      reserveCase('truncated JSON', '{"sku": "hostile-sku", "buyerId": ', /body|JSON/i),
      reserveCase('trailing garbage', '{"sku":"hostile-sku","buyerId":"b"} x', /body|JSON/i),
      reserveCase('single quotes', "{'sku':'hostile-sku','buyerId':'b'}", /body|JSON/i),
      reserveCase('NaN literal', '{"sku":"hostile-sku","buyerId":"b","qty":NaN}', /body|JSON/i),
      reserveCase('Infinity literal', '{"sku":"hostile-sku","buyerId":"b","qty":Infinity}', /body|JSON/i),
      reserveCase('byte order mark', '\uFEFF{"sku":"hostile-sku","buyerId":"b"}', /body|JSON/i),
      reserveCase('array body', [good], /body/),
      reserveCase('string body', '"hostile-sku"', /body/),
      reserveCase('null body', 'null', /body/),
      reserveCase('number body', '42', /body/),
      reserveCase('boolean body', 'true', /body/),
      reserveCase('deeply nested arrays', '['.repeat(8000) + ']'.repeat(8000), /body|JSON/i),
    ]);
  });

  it('answers 400 invalid_request naming sku, buyerId or qty when one is missing or of the wrong type', async () => {
    await runTable([
      reserveCase('empty body', '', /sku/),
      reserveCase('empty object', {}, /sku/),
      reserveCase('missing sku', { buyerId: 'b' }, /sku/),
      reserveCase('missing buyerId', { sku: SKU }, /buyerId/),
      reserveCase('sku is a number', { sku: 5, buyerId: 'b' }, /sku/),
      reserveCase('sku is null', { sku: null, buyerId: 'b' }, /sku/),
      reserveCase('sku is an array', { sku: [SKU], buyerId: 'b' }, /sku/),
      reserveCase('buyerId is a number', { sku: SKU, buyerId: 7 }, /buyerId/),
      reserveCase('buyerId is an object', { sku: SKU, buyerId: { id: 'b' } }, /buyerId/),
      reserveCase('qty is a string', { ...good, qty: '1' }, /qty/),
      reserveCase('qty is true', { ...good, qty: true }, /qty/),
      reserveCase('qty is null', { ...good, qty: null }, /qty/),
      reserveCase('qty is an array', { ...good, qty: [1] }, /qty/),
    ]);
  });

  it('answers 400 invalid_request naming qty when it is not an integer in 1..1000', async () => {
    await runTable([
      reserveCase('qty 0', { ...good, qty: 0 }, /qty/),
      reserveCase('qty -1', { ...good, qty: -1 }, /qty/),
      reserveCase('qty -0', '{"sku":"hostile-sku","buyerId":"b","qty":-0}', /qty/),
      reserveCase('qty 1.5', { ...good, qty: 1.5 }, /qty/),
      reserveCase('qty 1001', { ...good, qty: 1001 }, /qty/),
      reserveCase('qty 1e308', '{"sku":"hostile-sku","buyerId":"b","qty":1e308}', /qty/),
      reserveCase('qty 1e400 (parses as Infinity)', '{"sku":"hostile-sku","buyerId":"b","qty":1e400}', /qty/),
      reserveCase('qty 2^53+1', '{"sku":"hostile-sku","buyerId":"b","qty":9007199254740993}', /qty/),
      reserveCase('qty "NaN"', { ...good, qty: 'NaN' }, /qty/),
      reserveCase('qty "Infinity"', { ...good, qty: 'Infinity' }, /qty/),
      reserveCase('qty "1e3"', { ...good, qty: '1e3' }, /qty/),
      reserveCase('qty "0x10"', { ...good, qty: '0x10' }, /qty/),
    ]);
  });

  it('answers 400 invalid_request naming sku when it is not 1..64 characters of [A-Za-z0-9._:-]', async () => {
    await runTable([
      reserveCase('empty sku', { ...good, sku: '' }, /sku/),
      reserveCase('65 characters', { ...good, sku: 'a'.repeat(65) }, /sku/),
      reserveCase('space', { ...good, sku: 'hostile sku' }, /sku/),
      reserveCase('slash', { ...good, sku: 'hostile/sku' }, /sku/),
      reserveCase('percent', { ...good, sku: 'hostile%2Dsku' }, /sku/),
      reserveCase('non-ASCII letter', { ...good, sku: 'hostilé-sku' }, /sku/),
      reserveCase('trailing newline', { ...good, sku: `${SKU}\n` }, /sku/),
      reserveCase('NUL', { ...good, sku: `${SKU}\u0000` }, /sku/),
      reserveCase('fullwidth digit', { ...good, sku: 'sku\uFF11' }, /sku/),
    ]);
  });

  it('answers 400 invalid_request naming buyerId when it is not 1..128 printable characters', async () => {
    await runTable([
      reserveCase('empty buyerId', { ...good, buyerId: '' }, /buyerId/),
      reserveCase('129 characters', { ...good, buyerId: 'b'.repeat(129) }, /buyerId/),
      reserveCase('NUL (Cc)', { ...good, buyerId: 'evil\u0000' }, /buyerId/),
      reserveCase('newline (Cc)', { ...good, buyerId: 'evil\nline' }, /buyerId/),
      reserveCase('DEL (Cc)', { ...good, buyerId: 'evil\u007f' }, /buyerId/),
      reserveCase('NEL U+0085 (Cc)', { ...good, buyerId: 'evil\u0085' }, /buyerId/),
      reserveCase('zero-width space U+200B (Cf)', { ...good, buyerId: 'evil\u200b' }, /buyerId/),
      reserveCase('right-to-left override U+202E (Cf)', { ...good, buyerId: 'evil\u202e' }, /buyerId/),
      reserveCase('byte order mark U+FEFF (Cf)', { ...good, buyerId: '\ufeffevil' }, /buyerId/),
      reserveCase('soft hyphen U+00AD (Cf)', { ...good, buyerId: 'ev\u00adil' }, /buyerId/),
      reserveCase('lone high surrogate', '{"sku":"hostile-sku","buyerId":"evil\\ud800"}', /buyerId/),
      reserveCase('lone low surrogate', '{"sku":"hostile-sku","buyerId":"\\udc00evil"}', /buyerId/),
    ]);
  });

  it('answers 400 invalid_request naming the field for a bad idempotencyKey or risk signal', async () => {
    await runTable([
      reserveCase('idempotencyKey of 129 characters', { ...good, idempotencyKey: 'k'.repeat(129) }, /idempotencyKey/),
      reserveCase('empty idempotencyKey', { ...good, idempotencyKey: '' }, /idempotencyKey/),
      reserveCase('idempotencyKey is a number', { ...good, idempotencyKey: 12 }, /idempotencyKey/),
      reserveCase('idempotencyKey with a control character', { ...good, idempotencyKey: 'k\u0001' }, /idempotencyKey/),
      reserveCase('accountCreatedAt is a string', { ...good, accountCreatedAt: '2020-01-01' }, /accountCreatedAt/),
      reserveCase('accountCreatedAt is negative', { ...good, accountCreatedAt: -1 }, /accountCreatedAt/),
      reserveCase('pastOrders is fractional', { ...good, pastOrders: 1.5 }, /pastOrders/),
      reserveCase('pastOrders is negative', { ...good, pastOrders: -3 }, /pastOrders/),
    ]);
  });

  it('never lets __proto__ or constructor keys reach a prototype: such keys are ignored and the request is handled normally', async () => {
    // Fields only present on a smuggled prototype are not read: the request is missing them.
    await runTable([
      reserveCase('sku only inside __proto__', '{"__proto__":{"sku":"hostile-sku"},"buyerId":"pp"}', /sku/),
      reserveCase('buyerId only inside __proto__', '{"sku":"hostile-sku","__proto__":{"buyerId":"pp"}}', /buyerId/),
      reserveCase('sku only inside constructor.prototype', '{"constructor":{"prototype":{"sku":"hostile-sku"}},"buyerId":"pp"}', /sku/),
    ]);
    const sku = uniq('proto');
    await createSku(a, sku, { stock: 10, maxPerBuyer: 1 });
    const smuggled = await a.raw('POST', '/v1/reservations', {
      body: `{"sku":"${sku}","buyerId":"pp","__proto__":{"qty":5,"polluted":true},"constructor":{"prototype":{"qty":7,"polluted":true}}}`,
    });
    expect(smuggled.status, smuggled.text).toBe(201);
    expect(smuggled.body.qty).toBe(1);
    expect(smuggled.body.polluted).toBeUndefined();
    // A follow-up request behaves as if nothing had been smuggled anywhere.
    expectError(await a.post('/v1/reservations', { buyerId: 'pp2' }), 400, 'invalid_request');
    expectError(await a.post('/v1/reservations', { sku, buyerId: 'pp' }), 409, 'quota_exceeded');
    const follow = await a.post('/v1/reservations', { sku, buyerId: 'pp3' });
    expect(follow.status).toBe(201);
    expect(follow.body.qty).toBe(1);
    expect(follow.body.polluted).toBeUndefined();
    // Admin bodies too: prototype keys never become policy.
    const created = uniq('proto-sku');
    const put = await a.raw('PUT', `/v1/skus/${created}`, {
      token: ADMIN_TOKEN,
      body: '{"stock":3,"__proto__":{"maxPerBuyer":9,"mode":"on_payment"},"constructor":{"prototype":{"holdSeconds":5}}}',
    });
    expect(put.status, put.text).toBe(201);
    expect(put.body).toMatchObject({ onHand: 3, maxPerBuyer: 0, mode: 'pre_deduct', holdSeconds: 600 });
    expect((await getSku(a, created)).polluted).toBeUndefined();
  });
});

describe('hostile body sizes', () => {
  const bigReserve = (): Buffer => {
    const json = JSON.stringify({ sku: SKU, buyerId: 'too-big', qty: 1 });
    return Buffer.from(json + ' '.repeat(20 * 1024 - json.length));
  };

  it('answers 413 payload_too_large to a 20 KiB body sent with content-length, and reserves nothing', async () => {
    const before = await snapshot();
    const body = bigReserve();
    const r = await rawRequest(engine.port, `POST /v1/reservations HTTP/1.1\r\nhost: x\r\n${bearer(TOKENS.shop)}\r\ncontent-type: application/json\r\ncontent-length: ${body.length}`, [body]);
    expectError(r, 413, 'payload_too_large');
    expect(await snapshot()).toEqual(before);
  });

  it('answers 413 payload_too_large to a 20 KiB body sent chunked, and reserves nothing', async () => {
    const before = await snapshot();
    const r = await rawRequest(engine.port, `POST /v1/reservations HTTP/1.1\r\nhost: x\r\n${bearer(TOKENS.shop)}\r\ncontent-type: application/json\r\ntransfer-encoding: chunked`, chunked(bigReserve(), 1000));
    expectError(r, 413, 'payload_too_large');
    expect(await snapshot()).toEqual(before);
  });

  it('answers 413 to an oversized admin body and creates nothing', async () => {
    const sku = uniq('big-put');
    const json = JSON.stringify({ stock: 5 });
    const body = Buffer.from(json + ' '.repeat(17 * 1024));
    const r = await rawRequest(engine.port, `PUT /v1/skus/${sku} HTTP/1.1\r\nhost: x\r\n${bearer(ADMIN_TOKEN)}\r\ncontent-length: ${body.length}`, [body]);
    expectError(r, 413, 'payload_too_large');
    expectError(await a.get(`/v1/skus/${sku}`), 404, 'unknown_sku');
  });

  it('accepts a body of exactly 16 KiB and the boundary values of every field', async () => {
    const sku = `b${'x'.repeat(63)}`;
    expect(sku.length).toBe(64);
    await createSku(a, sku, { stock: 2000 });
    const json = JSON.stringify({ sku, buyerId: 'u'.repeat(128), qty: 1000, idempotencyKey: 'k'.repeat(128) });
    const exact = json + ' '.repeat(16 * 1024 - Buffer.byteLength(json));
    expect(Buffer.byteLength(exact)).toBe(16 * 1024);
    const r = await a.raw('POST', '/v1/reservations', { body: exact });
    expect(r.status, r.text).toBe(201);
    expect(r.body).toMatchObject({ sku, qty: 1000 });
    const unicode = await a.post('/v1/reservations', { sku, buyerId: 'Zoë 😀 山田', qty: 1 });
    expect(unicode.status, unicode.text).toBe(201);
    expect(unicode.body.buyerId).toBe('Zoë 😀 山田');
  });
});

describe('hostile paths and methods', () => {
  it('answers 404 not_found to unknown routes', async () => {
    // v2 made GET /v1/skus (the listing) and POST /v1/reservations/{id}/refund routes: their
    // unknown neighbours stand in for them here.
    const paths = ['/', '/v1', '/v1/', '/v2/skus/a', '/v1/skuz', '/v1/sku/a', '/v1/skus/a/b/c', '/v1/skus/a/', '/v1/skus/a/restock',
      '/v1/reservations/x/refunds', '/v1/reservations/x/pay/now', '/healthz/x', '/metrics/', '//v1/skus/a', '/V1/skus/a', '/.env', '/v1/skus//stock'];
    await runTable(paths.map((path) => ({ name: `unknown route ${path}`, method: 'GET', path, status: 404, code: 'not_found' })));
    await runTable(paths.map((path) => ({ name: `unknown route ${path}`, method: 'POST', path, body: good, status: 404, code: 'not_found' })));
  });

  it('answers 405 method_not_allowed with an allow header to a wrong method on a known path', async () => {
    const cases: [string, string, string][] = [
      ['DELETE', `/v1/skus/${SKU}`, 'GET, PUT'],
      ['POST', `/v1/skus/${SKU}`, 'GET, PUT'],
      ['PATCH', `/v1/skus/${SKU}`, 'GET, PUT'],
      ['GET', `/v1/skus/${SKU}/stock`, 'POST'],
      ['PUT', `/v1/skus/${SKU}/stock`, 'POST'],
      ['GET', '/v1/reservations', 'POST'],
      ['PUT', '/v1/reservations', 'POST'],
      ['DELETE', `/v1/reservations/${heldId}`, 'GET'],
      ['GET', `/v1/reservations/${heldId}/pay`, 'POST'],
      ['PUT', `/v1/reservations/${heldId}/cancel`, 'POST'],
      ['GET', `/v1/reservations/${heldId}/refund`, 'POST'],
      ['POST', '/healthz', 'GET'],
      ['POST', '/metrics', 'GET'],
    ];
    await runTable(cases.map(([method, path]) => ({ name: `${method} ${path}`, method, path, token: ADMIN_TOKEN, body: { stock: 1, delta: 1 }, status: 405, code: 'method_not_allowed' })));
    for (const [method, path, allow] of cases) {
      const r = await send({ name: '', method, path, status: 405, code: '' });
      expect(r.headers.allow, `${method} ${path}`).toBeDefined();
      for (const m of allow.split(', ')) expect(r.headers.allow, `${method} ${path}`).toContain(m);
      expect(r.headers.allow, `${method} ${path}`).not.toContain(method);
    }
  });

  it('answers 400 invalid_request to percent-encoded garbage in the path, and never acts on the decoded text', async () => {
    await runTable([
      { name: 'truncated escape', method: 'GET', path: '/v1/skus/%E0%A4%A', status: 400, code: 'invalid_request' },
      { name: 'lone percent', method: 'GET', path: '/v1/skus/%', status: 400, code: 'invalid_request' },
      { name: 'non-hex escape', method: 'GET', path: '/v1/skus/%zz', status: 400, code: 'invalid_request' },
      { name: 'overlong UTF-8', method: 'GET', path: '/v1/reservations/%C0%80', status: 400, code: 'invalid_request' },
      { name: 'invalid UTF-8 byte', method: 'POST', path: '/v1/reservations/%FF/pay', body: {}, status: 400, code: 'invalid_request' },
      { name: 'encoded NUL in sku', method: 'GET', path: '/v1/skus/%00', status: 400, code: 'invalid_request', field: /sku/ },
      { name: 'encoded slash in sku', method: 'GET', path: `/v1/skus/${SKU}%2Fstock`, status: 400, code: 'invalid_request', field: /sku/ },
      { name: 'encoded slash in admin sku', method: 'POST', path: `/v1/skus/${SKU}%2Fstock`, token: ADMIN_TOKEN, body: { delta: 5 }, status: 405, code: 'method_not_allowed' },
      { name: 'encoded space in admin sku', method: 'PUT', path: '/v1/skus/a%20b', token: ADMIN_TOKEN, body: { stock: 5 }, status: 400, code: 'invalid_request', field: /sku/ },
      { name: '65-character sku in path', method: 'PUT', path: `/v1/skus/${'p'.repeat(65)}`, token: ADMIN_TOKEN, body: { stock: 5 }, status: 400, code: 'invalid_request', field: /sku/ },
      { name: 'encoded dot-dot', method: 'PUT', path: '/v1/skus/%2E%2E%2Fetc', token: ADMIN_TOKEN, body: { stock: 5 }, status: 400, code: 'invalid_request', field: /sku/ },
    ]);
    // A well-formed escape of a valid name is that name.
    expect((await rawRequest(engine.port, `GET /v1/skus/hostile%2Dsku HTTP/1.1\r\nhost: x\r\nconnection: close`)).body.sku).toBe(SKU);
  });

  it('answers 404 unknown_reservation to malformed or foreign reservation ids on every reservation route', async () => {
    const ids = ['nope', '0', '0.', '.abc', '2.abc', '99.abc', '-1.abc', '00.abc', '0x0.abc', '0.ABC', '0.a-b', '0.a_b',
      `0.${'a'.repeat(70)}`, '0.zzzzzzzzzzzz', '1.zzzzzzzzzzzz', '%E2%82%AC', '1.%00', `${heldId}x`];
    const cases: Case[] = [];
    for (const id of ids) {
      cases.push({ name: `get ${id}`, method: 'GET', path: `/v1/reservations/${id}`, status: 404, code: 'unknown_reservation' });
      cases.push({ name: `pay ${id}`, method: 'POST', path: `/v1/reservations/${id}/pay`, body: {}, status: 404, code: 'unknown_reservation' });
      cases.push({ name: `cancel ${id}`, method: 'POST', path: `/v1/reservations/${id}/cancel`, body: {}, status: 404, code: 'unknown_reservation' });
    }
    // Another buyer's reservation is, to a buyer token, as if it did not exist (v2).
    const intruder = buyerToken('intruder');
    cases.push({ name: 'a buyer gets another buyer\'s reservation', method: 'GET', path: `/v1/reservations/${heldId}`, token: intruder, status: 404, code: 'unknown_reservation' });
    cases.push({ name: 'a buyer cancels another buyer\'s reservation', method: 'POST', path: `/v1/reservations/${heldId}/cancel`, body: {}, token: intruder, status: 404, code: 'unknown_reservation' });
    cases.push({ name: 'a buyer gets a malformed id', method: 'GET', path: '/v1/reservations/0.zzzzzzzzzzzz', token: intruder, status: 404, code: 'unknown_reservation' });
    await runTable(cases);
  });

  it('answers 400 invalid_request naming the field to bad pay and cancel bodies, leaving the reservation held', async () => {
    const pay = `/v1/reservations/${heldId}/pay`;
    const cancel = `/v1/reservations/${heldId}/cancel`;
    await runTable([
      { name: 'pay with malformed JSON', method: 'POST', path: pay, body: '{"paymentRef":', status: 400, code: 'invalid_request', field: /body|JSON/i },
      { name: 'pay with an array body', method: 'POST', path: pay, body: [], status: 400, code: 'invalid_request', field: /body/ },
      { name: 'pay with a string body', method: 'POST', path: pay, body: '"pay"', status: 400, code: 'invalid_request', field: /body/ },
      { name: 'pay with a numeric paymentRef', method: 'POST', path: pay, body: { paymentRef: 5 }, status: 400, code: 'invalid_request', field: /paymentRef/ },
      { name: 'pay with an empty paymentRef', method: 'POST', path: pay, body: { paymentRef: '' }, status: 400, code: 'invalid_request', field: /paymentRef/ },
      { name: 'pay with a control character in paymentRef', method: 'POST', path: pay, body: { paymentRef: 'ref\u0007' }, status: 400, code: 'invalid_request', field: /paymentRef/ },
      { name: 'pay with a 129-character paymentRef', method: 'POST', path: pay, body: { paymentRef: 'r'.repeat(129) }, status: 400, code: 'invalid_request', field: /paymentRef/ },
      { name: 'cancel with malformed JSON', method: 'POST', path: cancel, body: '{', status: 400, code: 'invalid_request', field: /body|JSON/i },
      { name: 'cancel with a null body', method: 'POST', path: cancel, body: 'null', status: 400, code: 'invalid_request', field: /body/ },
      { name: 'cancel with a number body', method: 'POST', path: cancel, body: '1', status: 400, code: 'invalid_request', field: /body/ },
    ]);
    expect((await a.get(`/v1/reservations/${heldId}`)).body.status).toBe('held');
  });
});

describe('hostile callers: who is calling is checked before the body is read', () => {
  const malformed = '{"sku": "hostile-sku", "buyerId": ';
  const pay = (): string => `/v1/reservations/${heldId}/pay`;
  const cancel = (): string => `/v1/reservations/${heldId}/cancel`;

  it('answers 401 unauthorized, with www-authenticate, to hostile bodies sent with no token or a bad one, changing nothing', async () => {
    const expired = buyerToken('holder', { exp: Math.floor(Date.now() / 1000) - 3600 });
    // A signature changed in its first character (all six bits of it count).
    const [head, claims, signature] = buyerToken('holder').split('.') as [string, string, string];
    const forged = `${head}.${claims}.${signature[0] === 'A' ? 'B' : 'A'}${signature.slice(1)}`;
    // The message says which: missing, unknown, expired, bad signature.
    const who: [string, string, RegExp][] = [
      ['no token', NO_TOKEN, /token/], ['an unknown token', 'not-a-known-token-0123', /token/],
      ['an expired buyer token', expired, /expired/], ['a badly signed buyer token', forged, /signature/],
    ];
    const cases: Case[] = who.flatMap(([label, token, field]): Case[] => [
      { name: `reserve with malformed JSON and ${label}`, method: 'POST', path: '/v1/reservations', body: malformed, token, status: 401, code: 'unauthorized', field },
      { name: `reserve with a bad qty and ${label}`, method: 'POST', path: '/v1/reservations', body: { ...good, qty: 0 }, token, status: 401, code: 'unauthorized', field },
      { name: `pay with a numeric paymentRef and ${label}`, method: 'POST', path: pay(), body: { paymentRef: 5 }, token, status: 401, code: 'unauthorized', field },
      { name: `cancel with a null body and ${label}`, method: 'POST', path: cancel(), body: 'null', token, status: 401, code: 'unauthorized', field },
      { name: `a bad SKU policy with ${label}`, method: 'PUT', path: `/v1/skus/${SKU}`, body: { stock: -1 }, token, status: 401, code: 'unauthorized', field },
      { name: `a bad stock delta with ${label}`, method: 'POST', path: `/v1/skus/${SKU}/stock`, body: { delta: 0 }, token, status: 401, code: 'unauthorized', field },
    ]);
    // A token that is presented is checked even on a public route.
    cases.push({ name: 'a public SKU read with an unknown token', method: 'GET', path: `/v1/skus/${SKU}`, token: 'not-a-known-token-0123', status: 401, code: 'unauthorized' });
    await runTable(cases);
    for (const c of cases) {
      const r = await send(c);
      expect(r.headers['www-authenticate'], `${c.name}: ${r.status} ${r.text}`).toMatch(/^Bearer\b/);
    }
  });

  it('answers 403 forbidden to hostile bodies from a caller whose role may not make the call, changing nothing', async () => {
    const holder = buyerToken('holder');
    const forbidden = (name: string, method: string, path: string, body: unknown, token: string): Case => ({ name, method, path, body, token, status: 403, code: 'forbidden' });
    await runTable([
      forbidden('a viewer reserves with malformed JSON', 'POST', '/v1/reservations', malformed, TOKENS.viewer),
      forbidden('payments reserves with a bad qty', 'POST', '/v1/reservations', { ...good, qty: 0 }, TOKENS.payments),
      forbidden('an operator reserves with a bad sku', 'POST', '/v1/reservations', { ...good, sku: 'a b' }, TOKENS.operator),
      forbidden('a buyer reserves for another buyer with a bad qty', 'POST', '/v1/reservations', { ...good, buyerId: 'someone-else', qty: 0 }, buyerToken('hostile-buyer-2')),
      forbidden('the shop pays with a numeric paymentRef', 'POST', pay(), { paymentRef: 5 }, TOKENS.shop),
      forbidden('the owning buyer pays with a numeric paymentRef', 'POST', pay(), { paymentRef: 5 }, holder),
      forbidden('the owning buyer pays a held reservation', 'POST', pay(), {}, holder),
      forbidden('a viewer cancels with a null body', 'POST', cancel(), 'null', TOKENS.viewer),
      forbidden('an operator cancels with a null body', 'POST', cancel(), 'null', TOKENS.operator),
      forbidden('a viewer gets a reservation', 'GET', `/v1/reservations/${heldId}`, undefined, TOKENS.viewer),
      forbidden('the shop puts a bad SKU policy', 'PUT', `/v1/skus/${SKU}`, { stock: -1 }, TOKENS.shop),
      forbidden('a viewer puts a bad SKU policy', 'PUT', `/v1/skus/${SKU}`, { holdSeconds: 0 }, TOKENS.viewer),
      forbidden('payments sends a bad stock delta', 'POST', `/v1/skus/${SKU}/stock`, { delta: 0 }, TOKENS.payments),
      forbidden('a buyer sends a bad stock delta', 'POST', `/v1/skus/${SKU}/stock`, { delta: 1.5 }, holder),
    ]);
  });

  it('lets a caller whose role may make the call reach validation: 400 naming the field', async () => {
    await runTable([
      { name: 'an operator puts a bad SKU policy', method: 'PUT', path: `/v1/skus/${SKU}`, body: { holdSeconds: 0 }, token: TOKENS.operator, status: 400, code: 'invalid_request', field: /holdSeconds/ },
      { name: 'an operator sends a bad stock delta', method: 'POST', path: `/v1/skus/${SKU}/stock`, body: { delta: 1.5 }, token: TOKENS.operator, status: 400, code: 'invalid_request', field: /delta/ },
      { name: 'payments cancels with a null body', method: 'POST', path: cancel(), body: 'null', token: TOKENS.payments, status: 400, code: 'invalid_request', field: /body/ },
      { name: 'the admin pays with a numeric paymentRef', method: 'POST', path: pay(), body: { paymentRef: 5 }, token: ADMIN_TOKEN, status: 400, code: 'invalid_request', field: /paymentRef/ },
      { name: 'a buyer reserves for itself with a bad qty', method: 'POST', path: '/v1/reservations', body: { sku: SKU, qty: 0 }, token: buyerToken('hostile-buyer-3'), status: 400, code: 'invalid_request', field: /qty/ },
      { name: 'a buyer reserves with malformed JSON', method: 'POST', path: '/v1/reservations', body: malformed, token: buyerToken('hostile-buyer-3'), status: 400, code: 'invalid_request', field: /body|JSON/i },
      { name: 'a shop on a channel reserves with a bad buyerId', method: 'POST', path: '/v1/reservations', body: { ...good, buyerId: '' }, token: TOKENS.shopWeb, status: 400, code: 'invalid_request', field: /buyerId/ },
    ]);
  });

  it('answers 401 to an oversized body from no one before reading it, and reserves nothing', async () => {
    const before = await snapshot();
    const json = JSON.stringify({ sku: SKU, buyerId: 'too-big', qty: 1 });
    const body = Buffer.from(json + ' '.repeat(20 * 1024 - json.length));
    expectError(await rawRequest(engine.port, `POST /v1/reservations HTTP/1.1\r\nhost: x\r\ncontent-type: application/json\r\ncontent-length: ${body.length}`, [body]), 401, 'unauthorized');
    expectError(await rawRequest(engine.port, 'POST /v1/reservations HTTP/1.1\r\nhost: x\r\ncontent-type: application/json\r\ntransfer-encoding: chunked', chunked(body, 1000)), 401, 'unauthorized');
    expect(await snapshot()).toEqual(before);
  });
});

describe('hostile admin bodies', () => {
  const put = (name: string, body: unknown, field: RegExp, sku = SKU): Case => ({
    name, method: 'PUT', path: `/v1/skus/${sku}`, token: ADMIN_TOKEN, body, status: 400, code: 'invalid_request', field,
  });

  it('answers 400 invalid_request naming the field to a bad SKU policy, on update and on create, and creates nothing', async () => {
    const fresh = uniq('never-created');
    const bad: [string, unknown, RegExp][] = [
      ['malformed JSON', '{"stock": 5', /body|JSON/i],
      ['array body', [{ stock: 5 }], /body/],
      ['null body', 'null', /body/],
      ['mode "x"', { stock: 5, mode: 'x' }, /mode/],
      ['mode null', { stock: 5, mode: null }, /mode/],
      ['mode in upper case', { stock: 5, mode: 'PRE_DEDUCT' }, /mode/],
      ['holdSeconds 0', { stock: 5, holdSeconds: 0 }, /holdSeconds/],
      ['holdSeconds 86401', { stock: 5, holdSeconds: 86_401 }, /holdSeconds/],
      ['holdSeconds 1.5', { stock: 5, holdSeconds: 1.5 }, /holdSeconds/],
      ['holdSeconds "600"', { stock: 5, holdSeconds: '600' }, /holdSeconds/],
      ['maxPerBuyer -1', { stock: 5, maxPerBuyer: -1 }, /maxPerBuyer/],
      ['maxPerBuyer 0.5', { stock: 5, maxPerBuyer: 0.5 }, /maxPerBuyer/],
      ['stock -1', { stock: -1 }, /stock/],
      ['stock 1.5', { stock: 1.5 }, /stock/],
      ['stock "5"', { stock: '5' }, /stock/],
      ['stock 1e10', { stock: 1e10 }, /stock/],
      ['startsAt -1', { stock: 5, startsAt: -1 }, /startsAt/],
      ['startsAt as a date string', { stock: 5, startsAt: '2030-01-01' }, /startsAt/],
      ['endsAt equal to startsAt', { stock: 5, startsAt: 2_000_000_000_000, endsAt: 2_000_000_000_000 }, /endsAt/],
      ['endsAt before startsAt', { stock: 5, startsAt: 2_000_000_000_000, endsAt: 1_999_999_999_999 }, /endsAt/],
      ['dropId with a space', { stock: 5, dropId: 'bad drop' }, /dropId/],
      ['empty dropId', { stock: 5, dropId: '' }, /dropId/],
      ['numeric dropId', { stock: 5, dropId: 5 }, /dropId/],
      ['lowStockThreshold -1', { stock: 5, lowStockThreshold: -1 }, /lowStockThreshold/],
      ['minAccountAgeSeconds "x"', { stock: 5, minAccountAgeSeconds: 'x' }, /minAccountAgeSeconds/],
      ['minPastOrders -1', { stock: 5, minPastOrders: -1 }, /minPastOrders/],
    ];
    await runTable(bad.map(([name, body, field]) => put(`update: ${name}`, body, field)));
    await runTable(bad.map(([name, body, field]) => put(`create: ${name}`, body, field, fresh)));
    expectError(await a.get(`/v1/skus/${fresh}`), 404, 'unknown_sku');
  });

  it('answers 400 naming endsAt when an update would close the sale window before it opens', async () => {
    const view = await getSku(a, WINDOWED);
    await runTable([
      put('endsAt before the stored startsAt', { endsAt: view.startsAt - 1 }, /endsAt/, WINDOWED),
      put('endsAt equal to the stored startsAt', { endsAt: view.startsAt }, /endsAt/, WINDOWED),
      put('startsAt after the stored endsAt', { startsAt: view.endsAt + 1 }, /endsAt|startsAt/, WINDOWED),
    ]);
  });

  it('answers 400 invalid_request naming delta to a zero, fractional, missing or out-of-range stock delta', async () => {
    const stock = (name: string, body: unknown, field: RegExp): Case => ({
      name, method: 'POST', path: `/v1/skus/${SKU}/stock`, token: ADMIN_TOKEN, body, status: 400, code: 'invalid_request', field,
    });
    await runTable([
      stock('delta 0', { delta: 0 }, /delta/),
      stock('delta 1.5', { delta: 1.5 }, /delta/),
      stock('delta -0.5', { delta: -0.5 }, /delta/),
      stock('missing delta', {}, /delta/),
      stock('empty body', '', /delta/),
      stock('delta "5"', { delta: '5' }, /delta/),
      stock('delta null', { delta: null }, /delta/),
      stock('delta 1e10', { delta: 1e10 }, /delta/),
      stock('delta pushing onHand past the maximum', { delta: 999_999_995 }, /delta|onHand/),
      stock('array body', [{ delta: 5 }], /body/),
      stock('malformed JSON', '{"delta":}', /body|JSON/i),
    ]);
  });
});

describe('after all the hostile input', () => {
  it('is still healthy and logged no internal error', async () => {
    expect((await a.get('/healthz')).status).toBe(200);
    const errors = engine.logs().split('\n').filter((l) => /"level":(50|60)/.test(l));
    expect(errors).toEqual([]);
  });
});
