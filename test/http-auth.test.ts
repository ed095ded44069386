// Who may call what, over real HTTP (shared/API.md v2 "Callers and what each may do"):
// every role against every route, allowed and refused; buyer tokens that are expired,
// tampered, for another audience or of the wrong algorithm (alg none, and an HS256 token
// signed with the public key of an EdDSA setup); a buyer paying its own hold, reading and
// cancelling another buyer's; signed claims feeding the risk rules; and the closed-by-default
// start with generated credentials.

import { createHmac, generateKeyPairSync, sign, type KeyObject } from 'node:crypto';
import { readFileSync, statSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import {
  ADMIN_TOKEN, BUYER_TOKEN_SECRET, NO_TOKEN, TOKENS, api, buyerToken, makeDataDir, runEngineToExit, startEngine, stopAllEngines,
  type Api, type Engine, type Reply,
} from './support/engine-process.js';
import { createSku, expectError, getSku, metricValue, reserveOk, uniq } from './support/http-kit.js';
import { expectedAccess } from './support/role-matrix.js';

const b64url = (x: Buffer | string): string => Buffer.from(x).toString('base64url');
const nowS = (): number => Math.floor(Date.now() / 1000);

/** A compact JWS with any header, signed by `signer` over `header.payload`. */
function jws(header: Record<string, unknown>, claims: Record<string, unknown>, signer: (data: string) => Buffer): string {
  const data = `${b64url(JSON.stringify(header))}.${b64url(JSON.stringify(claims))}`;
  return `${data}.${b64url(signer(data))}`;
}
const hs256 = (secret: string | Buffer) => (data: string): Buffer => createHmac('sha256', secret).update(data).digest();
const eddsa = (key: KeyObject) => (data: string): Buffer => sign(null, Buffer.from(data), key);

let engine: Engine;
let a: Api;

/**
 * A call whose answer may never end (an event stream): the whole body of an error, else the
 * first bytes, after which the call is aborted.
 */
async function firstBytes(url: string, token: string): Promise<Reply> {
  const ctl = new AbortController();
  const res = await fetch(url, { headers: token === NO_TOKEN ? {} : { authorization: `Bearer ${token}` }, signal: ctl.signal });
  let text: string;
  if (res.ok) {
    const { value } = await res.body!.getReader().read();
    text = Buffer.from(value ?? new Uint8Array()).toString('utf8');
    ctl.abort();
  } else text = await res.text();
  let body: unknown;
  try {
    body = JSON.parse(text);
  } catch {
    body = undefined;
  }
  return { status: res.status, headers: res.headers, text, body };
}

beforeAll(async () => {
  engine = await startEngine({ env: { FLASH_BUYER_RPS: '1000' } });
  a = api(engine.url);
});

afterAll(async () => {
  await stopAllEngines();
});

type CallerName = 'none' | 'admin' | 'operator' | 'viewer' | 'shop' | 'payments' | 'buyer' | 'garbage';
const matrixBuyer = 'matrix-buyer';
const tokenOf = (c: CallerName): string => ({
  none: NO_TOKEN, admin: ADMIN_TOKEN, operator: TOKENS.operator, viewer: TOKENS.viewer, shop: TOKENS.shop,
  payments: TOKENS.payments, buyer: buyerToken(matrixBuyer), garbage: 'not-a-token-anyone-issued-42',
})[c];

describe('every role against every route', () => {
  let sku: string;
  /** A fifo drop the matrix buyer joined, and a random drop whose order is published. */
  let drop: string;
  let revealed: string;
  beforeAll(async () => {
    sku = uniq('matrix');
    await createSku(a, sku, { stock: 1000 });
    drop = uniq('m-drop');
    revealed = uniq('m-order');
    expect((await a.put(`/v1/drops/${drop}`, { queue: { mode: 'fifo' } }, ADMIN_TOKEN)).status).toBe(201);
    expect((await a.post(`/v1/drops/${drop}/queue`, { buyerId: matrixBuyer }, TOKENS.shop)).status).toBe(201);
    expect((await a.put(`/v1/drops/${revealed}`, { queue: { mode: 'random', randomizeSeconds: 0 } }, ADMIN_TOKEN)).status).toBe(201);
    // The shard's timer fixes the order (and reveals the seed) at opensAt + randomizeSeconds: now.
    for (let i = 0; i < 200 && (await a.get(`/v1/drops/${revealed}/order`, NO_TOKEN)).status !== 200; i++) await new Promise((r) => setTimeout(r, 50));
  });

  /** A fresh held reservation of the matrix buyer, made by the shop. */
  const held = async (): Promise<string> => (await reserveOk(a, { sku, buyerId: matrixBuyer })).reservationId;
  /** A fresh paid reservation of the matrix buyer (reserved by the shop, paid by the payment side). */
  const paid = async (): Promise<string> => {
    const id = await held();
    expect((await a.post(`/v1/reservations/${id}/pay`, {}, TOKENS.payments)).status).toBe(200);
    return id;
  };

  /** Each route, called by `token` with fresh fixtures, and the status a permitted caller gets. */
  const calls: Record<string, { call: (token: string) => Promise<Reply>; okStatus: number[] }> = {
    'GET /v1/skus/{sku}': { call: (t) => a.get(`/v1/skus/${sku}`, t), okStatus: [200] },
    'PUT /v1/skus/{sku}': { call: (t) => a.put(`/v1/skus/${uniq('m-put')}`, { stock: 5 }, t), okStatus: [201] },
    'POST /v1/skus/{sku}/stock': { call: (t) => a.post(`/v1/skus/${sku}/stock`, { delta: 1 }, t), okStatus: [200] },
    'POST /v1/reservations': { call: (t) => a.post('/v1/reservations', { sku, buyerId: matrixBuyer }, t), okStatus: [201] },
    'GET /v1/reservations/{id}': { call: async (t) => a.get(`/v1/reservations/${await held()}`, t), okStatus: [200] },
    'POST /v1/reservations/{id}/pay': { call: async (t) => a.post(`/v1/reservations/${await held()}/pay`, {}, t), okStatus: [200] },
    'POST /v1/reservations/{id}/cancel': { call: async (t) => a.post(`/v1/reservations/${await held()}/cancel`, {}, t), okStatus: [200] },
    'POST /v1/reservations/{id}/refund': { call: async (t) => a.post(`/v1/reservations/${await paid()}/refund`, {}, t), okStatus: [200] },
    'POST /v1/admin/stock-import': {
      call: (t) => a.raw('POST', '/v1/admin/stock-import', { body: `sku,stock\n${uniq('m-imp')},5\n`, headers: { 'content-type': 'text/csv' }, token: t }),
      okStatus: [200],
    },
    'GET /v1/admin/erp': { call: (t) => a.get('/v1/admin/erp', t), okStatus: [200] },
    'GET /v1/skus': { call: (t) => a.get('/v1/skus?limit=5', t), okStatus: [200] },
    'GET /v1/skus/{sku}/audit': { call: (t) => a.get(`/v1/skus/${sku}/audit`, t), okStatus: [200] },
    'PUT /v1/drops/{dropId}': { call: (t) => a.put(`/v1/drops/${uniq('m-put-drop')}`, { queue: { mode: 'fifo' } }, t), okStatus: [201] },
    'GET /v1/drops/{dropId}': { call: (t) => a.get(`/v1/drops/${drop}`, t), okStatus: [200] },
    // The shop joined the matrix buyer already: joining again answers 200 with the same entry.
    'POST /v1/drops/{dropId}/queue': { call: (t) => a.post(`/v1/drops/${drop}/queue`, { buyerId: matrixBuyer }, t), okStatus: [200] },
    'GET /v1/drops/{dropId}/queue/{buyerId}': { call: (t) => a.get(`/v1/drops/${drop}/queue/${matrixBuyer}`, t), okStatus: [200] },
    'GET /v1/drops/{dropId}/order': { call: (t) => a.get(`/v1/drops/${revealed}/order`, t), okStatus: [200] },
    'GET /console': { call: (t) => a.get('/console', t), okStatus: [200] },
    'GET /console/{file}': { call: (t) => a.get('/console/console.js', t), okStatus: [200] },
    'GET /v1/console/stream': { call: (t) => firstBytes(`${engine.url}/v1/console/stream`, t), okStatus: [200] },
  };

  it('covers every route of the role matrix that needs or accepts a token', () => {
    const routes = Object.entries(expectedAccess).filter(([, access]) => access !== 'open').map(([r]) => r).sort();
    expect(Object.keys(calls).sort()).toEqual(routes);
  });

  const callers: CallerName[] = ['none', 'garbage', 'admin', 'operator', 'viewer', 'shop', 'payments', 'buyer'];
  for (const route of Object.keys(calls)) {
    it(`${route}: allowed for exactly the callers API.md names, 401 without a valid token, 403 for the rest`, async () => {
      const access = expectedAccess[route]!;
      const { call, okStatus } = calls[route]!;
      for (const caller of callers) {
        const r = await call(tokenOf(caller));
        const label = `${caller} on ${route}: ${r.status} ${r.text}`;
        if (caller === 'garbage') {
          expectError(r, 401, 'unauthorized');
          expect(r.headers.get('www-authenticate'), label).toBe('Bearer');
        } else if (access === 'public' || (caller !== 'none' && (access as string[]).includes(caller))) {
          expect(okStatus, label).toContain(r.status);
        } else if (caller === 'none') {
          expectError(r, 401, 'unauthorized');
        } else {
          expectError(r, 403, 'forbidden');
        }
      }
    });
  }

  it('authenticates before it judges the path or the body: a malformed id or body without a token is 401', async () => {
    expectError(await a.raw('POST', '/v1/reservations/%FF/pay', { body: '{', token: NO_TOKEN }), 401, 'unauthorized');
    expectError(await a.raw('GET', '/v1/reservations/%C0%80', { token: NO_TOKEN }), 401, 'unauthorized');
    expectError(await a.raw('POST', '/v1/reservations', { body: 'not json', token: NO_TOKEN }), 401, 'unauthorized');
    expectError(await a.raw('GET', '/v1/reservations/%C0%80', { token: TOKENS.shop }), 400, 'invalid_request');
    expectError(await a.raw('POST', '/v1/reservations', { body: 'not json', token: TOKENS.viewer }), 403, 'forbidden');
  });

  it('challenges with exactly `www-authenticate: Bearer` (API.md) whether no bearer token was sent or a bad one was', async () => {
    const basic = await a.raw('POST', '/v1/reservations', { body: '{}', headers: { authorization: 'Basic Zm9vOmJhcg==' } });
    expectError(basic, 401, 'unauthorized');
    expect(basic.headers.get('www-authenticate')).toBe('Bearer');
    const none = await a.raw('POST', '/v1/reservations', { body: '{}', token: NO_TOKEN });
    expect(none.headers.get('www-authenticate')).toBe('Bearer');
    const bad = await a.raw('POST', '/v1/reservations', { body: '{}', token: 'wrong-token-but-bearer-1' });
    expect(bad.headers.get('www-authenticate')).toBe('Bearer');
    const malformed = await a.raw('POST', '/v1/reservations', { body: '{}', token: 'a.b.c' });
    expectError(malformed, 401, 'unauthorized');
    expect(malformed.headers.get('www-authenticate')).toBe('Bearer');
  });

  it('leaves the probes open, but checks a token sent to them', async () => {
    expect((await a.get('/healthz', NO_TOKEN)).status).toBe(200);
    expect((await a.get('/metrics', TOKENS.viewer)).status).toBe(200);
    expectError(await a.get('/metrics', 'not-a-token-anyone-issued-42'), 401, 'unauthorized');
    expectError(await a.get('/healthz', 'not-a-token-anyone-issued-42'), 401, 'unauthorized');
  });

  it('counts every refusal by route template and code in flash_refusals_total', async () => {
    const label = { route: 'POST /v1/reservations/{id}/pay', code: 'forbidden' };
    const read = async (): Promise<number> => metricValue(await (await fetch(`${engine.url}/metrics`)).text(), 'flash_refusals_total', label) ?? 0;
    const before = await read();
    const id = await held();
    for (let i = 0; i < 3; i++) expectError(await a.post(`/v1/reservations/${id}/pay`, {}, TOKENS.shop), 403, 'forbidden');
    expect(await read()).toBe(before + 3);
    const wrongMethod = { route: 'DELETE /v1/skus/{sku}', code: 'method_not_allowed' };
    const before405 = metricValue(await (await fetch(`${engine.url}/metrics`)).text(), 'flash_refusals_total', wrongMethod) ?? 0;
    expectError(await a.raw('DELETE', `/v1/skus/${sku}`), 405, 'method_not_allowed');
    expect(metricValue(await (await fetch(`${engine.url}/metrics`)).text(), 'flash_refusals_total', wrongMethod)).toBe(before405 + 1);
  });
});

describe('buyer tokens', () => {
  let sku: string;
  beforeAll(async () => {
    sku = uniq('buyer');
    await createSku(a, sku, { stock: 100, maxPerBuyer: 3 });
  });

  const valid = (sub: string, extra: Record<string, unknown> = {}): Record<string, unknown> => ({ sub, exp: nowS() + 600, ...extra });

  it('reserve for their own sub, with buyerId omitted or equal, and refuse another buyerId with 403, reserving nothing', async () => {
    const t = buyerToken('ann');
    const r1 = await a.post('/v1/reservations', { sku }, t);
    expect(r1.status, r1.text).toBe(201);
    expect(r1.body).toMatchObject({ buyerId: 'ann', channel: 'default' });
    const r2 = await a.post('/v1/reservations', { sku, buyerId: 'ann' }, t);
    expect(r2.status).toBe(201);
    const before = await getSku(a, sku);
    expectError(await a.post('/v1/reservations', { sku, buyerId: 'bob' }, t), 403, 'forbidden');
    expect(await getSku(a, sku)).toEqual(before);
  });

  it('may never pay, not even their own hold, which stays held', async () => {
    const t = buyerToken('cat');
    const hold = (await a.post('/v1/reservations', { sku }, t)).body;
    expectError(await a.post(`/v1/reservations/${hold.reservationId}/pay`, { paymentRef: 'self' }, t), 403, 'forbidden');
    expect((await a.get(`/v1/reservations/${hold.reservationId}`, t)).body.status).toBe('held');
  });

  it('see and cancel only their own reservations: another buyer\'s answers 404 unknown_reservation and stays held', async () => {
    const own = (await a.post('/v1/reservations', { sku }, buyerToken('dan'))).body;
    const eve = buyerToken('eve');
    expectError(await a.get(`/v1/reservations/${own.reservationId}`, eve), 404, 'unknown_reservation');
    expectError(await a.post(`/v1/reservations/${own.reservationId}/cancel`, {}, eve), 404, 'unknown_reservation');
    const mine = await a.get(`/v1/reservations/${own.reservationId}`, buyerToken('dan'));
    expect(mine.body).toMatchObject({ status: 'held', buyerId: 'dan' });
    expect((await a.post(`/v1/reservations/${own.reservationId}/cancel`, {}, buyerToken('dan'))).body.status).toBe('cancelled');
  });

  it('answer 401 naming the problem when expired, tampered, unsigned or signed with another key, also on a public route', async () => {
    const cases: [string, string, RegExp][] = [
      ['expired', jws({ alg: 'HS256', typ: 'JWT' }, { sub: 'x', exp: nowS() - 3600 }, hs256(BUYER_TOKEN_SECRET)), /expired/],
      ['tampered', buyerToken('x').replace(/\.([^.]+)\./, (_m, p: string) => `.${b64url(JSON.stringify({ ...JSON.parse(Buffer.from(p, 'base64url').toString()), sub: 'admin' }))}.`), /signature/],
      ['alg none', `${b64url(JSON.stringify({ alg: 'none' }))}.${b64url(JSON.stringify(valid('x')))}.`, /none|algorithm/i],
      ['another secret', jws({ alg: 'HS256' }, valid('x'), hs256('another-secret-of-at-least-32-bytes!!')), /signature/],
      ['HS512', jws({ alg: 'HS512' }, valid('x'), (d) => createHmac('sha512', BUYER_TOKEN_SECRET).update(d).digest()), /HS512|algorithm/],
      ['no exp', jws({ alg: 'HS256' }, { sub: 'x' }, hs256(BUYER_TOKEN_SECRET)), /exp/],
      ['not a JWS', 'eyJhbGciOiJIUzI1NiJ9.bm90IGpzb24', /malformed|parts|JWS|token/i],
    ];
    for (const [label, token, why] of cases) {
      for (const r of [await a.post('/v1/reservations', { sku, buyerId: 'x' }, token), await a.get(`/v1/skus/${sku}`, token)]) {
        expectError(r, 401, 'unauthorized');
        expect(r.body.error.message, label).toMatch(why);
      }
    }
  });

  it('feed the risk rules from signed claims only: body fields of a buyer are ignored, a shop\'s are read', async () => {
    const risky = uniq('risky');
    await createSku(a, risky, { stock: 10, minPastOrders: 3, minAccountAgeSeconds: 86_400 });
    const old = Date.now() - 30 * 86_400_000;
    const vouched = buyerToken('fay', { pastOrders: 5, accountCreatedAt: old });
    expect((await a.post('/v1/reservations', { sku: risky }, vouched)).status).toBe(201);
    const unvouched = buyerToken('gus');
    expectError(await a.post('/v1/reservations', { sku: risky, pastOrders: 99, accountCreatedAt: old }, unvouched), 403, 'buyer_blocked');
    const young = buyerToken('hal', { pastOrders: 5, accountCreatedAt: Date.now() - 1000 });
    expectError(await a.post('/v1/reservations', { sku: risky }, young), 403, 'buyer_blocked');
    expect((await a.post('/v1/reservations', { sku: risky, buyerId: 'ida', pastOrders: 4, accountCreatedAt: old }, TOKENS.shop)).status).toBe(201);
  });

  it('hold a buyer to its quota however many tokens it is minted: identity is the sub', async () => {
    const quota = uniq('quota');
    await createSku(a, quota, { stock: 100, maxPerBuyer: 2 });
    const answers = await Promise.all(Array.from({ length: 10 }, () => a.post('/v1/reservations', { sku: quota }, buyerToken('jo', { jti: Math.random() }))));
    expect(answers.filter((r) => r.status === 201)).toHaveLength(2);
    expect(answers.filter((r) => r.status === 409).every((r) => r.body.error.code === 'quota_exceeded')).toBe(true);
  });
});

describe('buyer tokens against a configured audience and a public key', () => {
  it('refuses a token for another audience, or with none, and accepts the configured one', async () => {
    const e = await startEngine({ env: { FLASH_BUYER_TOKEN_AUDIENCE: 'shop-a' } });
    const b = api(e.url);
    const sku = uniq('aud');
    await createSku(b, sku, { stock: 10 });
    expectError(await b.post('/v1/reservations', { sku }, buyerToken('kim', { aud: 'shop-b' })), 401, 'unauthorized');
    expectError(await b.post('/v1/reservations', { sku }, buyerToken('kim')), 401, 'unauthorized');
    expect((await b.post('/v1/reservations', { sku }, buyerToken('kim', { aud: 'shop-a' }))).status).toBe(201);
    expect((await b.post('/v1/reservations', { sku }, buyerToken('lee', { aud: ['shop-x', 'shop-a'] }))).status).toBe(201);
  });

  it('with an Ed25519 public key, accepts EdDSA tokens and refuses an HS256 token signed with the public key itself', async () => {
    const { publicKey, privateKey } = generateKeyPairSync('ed25519');
    const pem = publicKey.export({ type: 'spki', format: 'pem' }).toString();
    const e = await startEngine({ env: { FLASH_BUYER_TOKEN_SECRET: '', FLASH_BUYER_TOKEN_PUBLIC_KEY: pem } });
    const b = api(e.url);
    const sku = uniq('eddsa');
    await createSku(b, sku, { stock: 10 });
    const claims = { sub: 'max', exp: nowS() + 600 };
    expect((await b.post('/v1/reservations', { sku }, jws({ alg: 'EdDSA', typ: 'JWT' }, claims, eddsa(privateKey)))).status).toBe(201);
    const confused = jws({ alg: 'HS256', typ: 'JWT' }, claims, hs256(pem));
    const r = await b.post('/v1/reservations', { sku }, confused);
    expectError(r, 401, 'unauthorized');
    expect(r.body.error.message).toMatch(/HS256|algorithm/);
    // The engine holds no secret here, so the shop's HS256 tokens of the other setup are refused too.
    expectError(await b.post('/v1/reservations', { sku }, buyerToken('max')), 401, 'unauthorized');
  });
});

describe('channels', () => {
  it('put a reservation on its token\'s channel (shop token, or buyer claim), else "default"', async () => {
    const sku = uniq('chan');
    await createSku(a, sku, { stock: 10 });
    expect((await a.post('/v1/reservations', { sku, buyerId: 'n1' }, TOKENS.shopWeb)).body.channel).toBe('web');
    expect((await a.post('/v1/reservations', { sku }, buyerToken('n2', { channel: 'app' }))).body.channel).toBe('app');
    expect((await a.post('/v1/reservations', { sku, buyerId: 'n3' }, TOKENS.shop)).body.channel).toBe('default');
    expect((await getSku(a, sku)).channels).toEqual({
      web: { reserved: 1, sold: 0, maxUnits: null }, app: { reserved: 1, sold: 0, maxUnits: null }, default: { reserved: 1, sold: 0, maxUnits: null },
    });
  });

  it('refuse a channel the policy does not list with 403 channel_not_allowed', async () => {
    const sku = uniq('chan-allow');
    await createSku(a, sku, { stock: 10, channels: { web: {} } } as never);
    expect((await a.post('/v1/reservations', { sku, buyerId: 'o1' }, TOKENS.shopWeb)).status).toBe(201);
    expectError(await a.post('/v1/reservations', { sku, buyerId: 'o2' }, TOKENS.shop), 403, 'channel_not_allowed');
    expectError(await a.post('/v1/reservations', { sku, buyerId: 'o3' }, TOKENS.shopApp), 403, 'channel_not_allowed');
  });

  it('keep every channel under its cap and sell no unit twice under 1,000 concurrent reserves across three channels', async () => {
    const sku = uniq('chan-race');
    const caps = { web: 120, app: 90, store: 60 };
    await createSku(a, sku, { stock: 250, channels: { web: { maxUnits: caps.web }, app: { maxUnits: caps.app }, store: { maxUnits: caps.store } } } as never);
    const tokenFor = (i: number): string => (i % 3 === 0 ? TOKENS.shopWeb : i % 3 === 1 ? TOKENS.shopApp : buyerToken(`st-${i}`, { channel: 'store' }));
    const answers = await Promise.all(Array.from({ length: 1000 }, (_, i) => a.post('/v1/reservations', { sku, buyerId: `st-${i}` }, tokenFor(i))));
    const granted = { web: 0, app: 0, store: 0 };
    for (const r of answers) {
      if (r.status === 201) granted[r.body.channel as keyof typeof granted]++;
      else expect(['channel_sold_out', 'sold_out'], r.text).toContain(r.body.error.code);
    }
    expect(granted.web).toBeLessThanOrEqual(caps.web);
    expect(granted.app).toBeLessThanOrEqual(caps.app);
    expect(granted.store).toBeLessThanOrEqual(caps.store);
    expect(granted.web + granted.app + granted.store).toBe(250); // 270 of caps over 250 units: the pool runs out first
    const view = await getSku(a, sku);
    expect(view).toMatchObject({ onHand: 250, reserved: 250, sold: 0, available: 0 });
    expect(view.channels).toEqual({
      web: { reserved: granted.web, sold: 0, maxUnits: caps.web },
      app: { reserved: granted.app, sold: 0, maxUnits: caps.app },
      store: { reserved: granted.store, sold: 0, maxUnits: caps.store },
    });
    const ids = new Set(answers.filter((r) => r.status === 201).map((r) => r.body.reservationId));
    expect(ids.size).toBe(250);
  });
});

describe('closed by default', () => {
  const bare = { FLASH_ADMIN_TOKEN: '', FLASH_TOKENS_FILE: '', FLASH_BUYER_TOKEN_SECRET: '' };

  it('generates one token per role on first start, says where, and reuses them on the next start', async () => {
    const dataDir = makeDataDir();
    const first = await startEngine({ dataDir, env: bare });
    const dir = join(dataDir, 'credentials');
    expect(first.logs()).toContain(dir);
    expect(statSync(join(dir, 'tokens.json')).mode & 0o077).toBe(0);
    const env = Object.fromEntries(readFileSync(join(dir, 'tokens.env'), 'utf8').split('\n').filter((l) => /^[A-Z_]+=/.test(l)).map((l) => l.split('=') as [string, string]));
    expect(Object.keys(env).sort()).toEqual(['ADMIN_TOKEN', 'BUYER_TOKEN_SECRET', 'OPERATOR_TOKEN', 'PAYMENTS_TOKEN', 'SHOP_TOKEN', 'VIEWER_TOKEN']);
    const b = api(first.url);
    const sku = uniq('first');
    expectError(await b.put(`/v1/skus/${sku}`, { stock: 3 }, NO_TOKEN), 401, 'unauthorized');
    expectError(await b.post('/v1/reservations', { sku, buyerId: 'p1' }, NO_TOKEN), 401, 'unauthorized');
    expect((await b.put(`/v1/skus/${sku}`, { stock: 3 }, env.ADMIN_TOKEN)).status).toBe(201);
    const hold = await b.post('/v1/reservations', { sku, buyerId: 'p1' }, env.SHOP_TOKEN);
    expect(hold.status).toBe(201);
    expect(await first.stop()).toBe(0);
    const second = await startEngine({ dataDir, env: bare });
    expect(second.logs()).toContain('generated on first start');
    const c = api(second.url);
    expect((await c.post(`/v1/reservations/${hold.body.reservationId}/pay`, {}, env.PAYMENTS_TOKEN)).status).toBe(200);
    const minted = jws({ alg: 'HS256' }, { sub: 'p2', exp: nowS() + 60 }, hs256(env.BUYER_TOKEN_SECRET!));
    expect((await c.post('/v1/reservations', { sku }, minted)).status).toBe(201);
  });

  it('lets FLASH_DEV=1 run open, and says so at start', async () => {
    const dev = await startEngine({ env: { ...bare, FLASH_DEV: '1' } });
    expect(dev.logs()).toContain('FLASH_DEV is on');
    expect((await api(dev.url).put(`/v1/skus/${uniq('dev')}`, { stock: 1 }, NO_TOKEN)).status).toBe(201);
  });

  it('logs at start which callers it accepts, never a token', async () => {
    expect(engine.logs()).toMatch(/accepting caller tokens .*admin 1.*; buyer tokens HS256/);
    for (const t of [ADMIN_TOKEN, ...Object.values(TOKENS), BUYER_TOKEN_SECRET]) expect(engine.logs()).not.toContain(t);
  });

  it('refuses to start a gateway, or any node over NATS, with no credential, naming the settings', async () => {
    for (const role of ['gateway', 'all']) {
      const { code, logs } = await runEngineToExit({ env: { ...bare, FLASH_ROLE: role, FLASH_NATS_URL: 'nats://127.0.0.1:1' } });
      expect(code, role).toBe(2);
      expect(logs, role).toContain('FLASH_TOKENS_FILE');
    }
  });

  it('refuses a damaged set of generated credentials instead of replacing the tokens handed out', async () => {
    const dataDir = makeDataDir();
    const first = await startEngine({ dataDir, env: bare });
    expect(await first.stop()).toBe(0);
    const { rmSync, writeFileSync, chmodSync } = await import('node:fs');
    const dir = join(dataDir, 'credentials');
    chmodSync(join(dir, 'tokens.env'), 0o644);
    chmodSync(dir, 0o755);
    const again = await startEngine({ dataDir, env: bare });
    expect(await again.stop()).toBe(0);
    expect(statSync(join(dir, 'tokens.env')).mode & 0o777).toBe(0o600);
    expect(statSync(dir).mode & 0o777).toBe(0o700);
    writeFileSync(join(dir, 'buyer-token-secret'), 'short\n');
    const short = await runEngineToExit({ dataDir, env: bare });
    expect(short.code).toBe(2);
    expect(short.logs).toContain('buyer-token-secret');
    rmSync(join(dir, 'buyer-token-secret'));
    const missing = await runEngineToExit({ dataDir, env: bare });
    expect(missing.code).toBe(2);
    expect(missing.logs).toContain('incomplete');
  });

  it('refuses to start with a malformed tokens file, naming the file and the entry', async () => {
    const dataDir = makeDataDir();
    const file = join(dataDir, 'bad-tokens.json');
    const { writeFileSync } = await import('node:fs');
    writeFileSync(file, JSON.stringify([{ name: 'x', role: 'superuser', token: 'a-token-of-enough-length' }]));
    const { code, logs } = await runEngineToExit({ env: { FLASH_TOKENS_FILE: file } });
    expect(code).toBe(2);
    expect(logs).toContain('entry 1');
    expect(logs).toContain('role must be one of');
    // A misspelt key would silently change what the token may do.
    writeFileSync(file, JSON.stringify([{ name: 'web', role: 'shop', token: 'a-token-of-enough-length', chanel: 'web' }]));
    const typo = await runEngineToExit({ env: { FLASH_TOKENS_FILE: file } });
    expect(typo.code).toBe(2);
    expect(typo.logs).toContain('unknown key chanel');
  });
});
