// Buyer tokens (src/gateway/buyer-token.ts): real HS256, EdDSA and ES256 tokens are accepted
// with their claims mapped; everything an attacker can do to a token (another algorithm, the
// public key used as an HMAC secret, tampering, odd encodings, stale or early times, a foreign
// audience, hostile JSON) is refused with the right reason; the cache of verified tokens is
// bounded and still expires tokens on time; and the environment is read strictly.

import { createHmac, createPrivateKey, generateKeyPairSync, sign, type KeyObject } from 'node:crypto';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import fc from 'fast-check';
import { afterAll, beforeEach, describe, expect, test, vi } from 'vitest';
import { ConfigError } from '../src/config.js';
import {
  BuyerTokenVerifier, loadBuyerTokenConfig, mintBuyerToken,
  type BuyerTokenConfig, type BuyerTokenFailure, type VerifyResult,
} from '../src/gateway/buyer-token.js';

// Counts HMAC computations, so that a test can tell a cache hit (none) from a miss (one).
const hmacCalls = vi.hoisted(() => ({ count: 0 }));
vi.mock('node:crypto', async (importOriginal) => {
  const actual = await importOriginal<typeof import('node:crypto')>();
  const createHmac = ((...args: Parameters<typeof actual.createHmac>) => {
    hmacCalls.count++;
    return actual.createHmac(...args);
  }) as typeof actual.createHmac;
  return { ...actual, default: { ...actual, createHmac }, createHmac };
});

const SECRET = 'a-shared-secret-of-at-least-32-bytes!!';
const NOW_MS = 1_700_000_000_000;
const NOW_S = NOW_MS / 1000;
const ed = generateKeyPairSync('ed25519');
const ec = generateKeyPairSync('ec', { namedCurve: 'P-256' });
const rsa = generateKeyPairSync('rsa', { modulusLength: 2048 });
const pemOf = (key: KeyObject, type: 'spki' | 'pkcs8'): string => key.export({ format: 'pem', type }) as string;

type SignAlg = 'HS256' | 'HS384' | 'HS512' | 'EdDSA' | 'ES256' | 'RS256' | 'none';
const b64 = (data: string | Buffer): string => Buffer.from(data).toString('base64url');

/**
 * A local signer, independent of the code under test. Header and payload are objects or raw
 * JSON text (so a test can write `__proto__` keys); `key` is the HMAC secret or a private key.
 */
function signToken(alg: SignAlg, payload: object | string, key: string | Buffer | KeyObject = SECRET, header: object | string = { alg, typ: 'JWT' }): string {
  const json = (v: object | string): string => (typeof v === 'string' ? v : JSON.stringify(v));
  const signed = `${b64(json(header))}.${b64(json(payload))}`;
  const data = Buffer.from(signed);
  let signature: Buffer;
  if (alg === 'none') signature = Buffer.alloc(0);
  else if (alg.startsWith('HS')) signature = createHmac(`sha${alg.slice(2)}`, key as string | Buffer).update(data).digest();
  else if (alg === 'EdDSA') signature = sign(null, data, key as KeyObject);
  else if (alg === 'ES256') signature = sign('sha256', data, { key: key as KeyObject, dsaEncoding: 'ieee-p1363' });
  else signature = sign('sha256', data, key as KeyObject);
  return `${signed}.${b64(signature)}`;
}

function config(overrides: Partial<BuyerTokenConfig> = {}): BuyerTokenConfig {
  return { hs256Secret: Buffer.from(SECRET), publicKey: null, audience: null, leewaySeconds: 5, cacheEntriesMax: 100_000, ...overrides };
}
const hsVerifier = (o: Partial<BuyerTokenConfig> = {}): BuyerTokenVerifier => new BuyerTokenVerifier(config(o));
const edVerifier = (o: Partial<BuyerTokenConfig> = {}): BuyerTokenVerifier => new BuyerTokenVerifier(config({ hs256Secret: null, publicKey: ed.publicKey, ...o }));
const ecVerifier = (o: Partial<BuyerTokenConfig> = {}): BuyerTokenVerifier => new BuyerTokenVerifier(config({ hs256Secret: null, publicKey: ec.publicKey, ...o }));

const claims = (extra: Record<string, unknown> = {}): Record<string, unknown> => ({ sub: 'buyer-1', exp: NOW_S + 600, ...extra });

function expectRefused(result: VerifyResult, reason: BuyerTokenFailure, messagePart?: string | RegExp): void {
  expect(result.ok).toBe(false);
  if (result.ok) return;
  expect(result.reason).toBe(reason);
  expect(result.message).toMatch(/^buyer token /);
  expect(result.message).not.toContain(SECRET);
  if (messagePart !== undefined) expect(result.message).toMatch(messagePart);
}

function acceptedClaims(result: VerifyResult): unknown {
  expect(result).toMatchObject({ ok: true });
  return result.ok ? result.claims : undefined;
}

beforeEach(() => {
  hmacCalls.count = 0;
});

describe('valid tokens are accepted', () => {
  test('an HS256 token minted by mintBuyerToken is accepted with its claims mapped', () => {
    const token = mintBuyerToken(SECRET, claims({ channel: 'app', accountCreatedAt: 1_600_000_000_000, pastOrders: 3 }));
    expect(acceptedClaims(hsVerifier().verify(token, NOW_MS))).toEqual({
      buyerId: 'buyer-1', expiresAtMs: (NOW_S + 600) * 1000, channel: 'app', accountCreatedAtMs: 1_600_000_000_000, pastOrders: 3,
    });
  });

  test('optional signals are absent from the claims when the token does not carry them, and channel is null', () => {
    const result = hsVerifier().verify(mintBuyerToken(Buffer.from(SECRET), claims()), NOW_MS);
    const mapped = acceptedClaims(result) as Record<string, unknown>;
    expect(mapped).toEqual({ buyerId: 'buyer-1', expiresAtMs: (NOW_S + 600) * 1000, channel: null });
    expect(Object.keys(mapped)).not.toContain('accountCreatedAtMs');
    expect(Object.keys(mapped)).not.toContain('pastOrders');
  });

  test('an EdDSA token signed with the Ed25519 private key is accepted with its claims mapped', () => {
    const token = signToken('EdDSA', claims({ channel: 'web', pastOrders: 0 }), ed.privateKey);
    expect(acceptedClaims(edVerifier().verify(token, NOW_MS))).toEqual({ buyerId: 'buyer-1', expiresAtMs: (NOW_S + 600) * 1000, channel: 'web', pastOrders: 0 });
  });

  test('an ES256 token with a raw r||s signature is accepted with its claims mapped', () => {
    const token = signToken('ES256', claims({ accountCreatedAt: 0 }), ec.privateKey);
    expect(acceptedClaims(ecVerifier().verify(token, NOW_MS))).toEqual({ buyerId: 'buyer-1', expiresAtMs: (NOW_S + 600) * 1000, channel: null, accountCreatedAtMs: 0 });
  });

  test('the accepted algorithms follow the configured keys alone', () => {
    expect(hsVerifier().algorithms).toEqual(['HS256']);
    expect(edVerifier().algorithms).toEqual(['EdDSA']);
    expect(ecVerifier().algorithms).toEqual(['ES256']);
    expect(hsVerifier({ publicKey: ec.publicKey }).algorithms).toEqual(['HS256', 'ES256']);
  });

  test('with both a secret and a public key configured, tokens of either algorithm are accepted', () => {
    const v = hsVerifier({ publicKey: ed.publicKey });
    expect(v.verify(mintBuyerToken(SECRET, claims()), NOW_MS).ok).toBe(true);
    expect(v.verify(signToken('EdDSA', claims({ sub: 'buyer-2' }), ed.privateKey), NOW_MS).ok).toBe(true);
  });

  test('a non-integer exp is accepted, as a JWT NumericDate may be', () => {
    const result = hsVerifier().verify(mintBuyerToken(SECRET, claims({ exp: NOW_S + 0.5 })), NOW_MS);
    expect(result).toMatchObject({ ok: true, claims: { expiresAtMs: NOW_MS + 500 } });
  });

  test('typ JWT in any case, or no typ at all, and any kid are accepted', () => {
    const v = hsVerifier();
    for (const header of [{ alg: 'HS256', typ: 'jwt' }, { alg: 'HS256' }, { alg: 'HS256', typ: 'JWT', kid: 'key-2024' }]) {
      expect(v.verify(signToken('HS256', claims(), SECRET, header), NOW_MS).ok).toBe(true);
    }
  });
});

describe('times', () => {
  test('a token past exp by more than the leeway is refused as expired, and within the leeway is accepted', () => {
    const token = mintBuyerToken(SECRET, claims({ exp: NOW_S }));
    expect(hsVerifier().verify(token, NOW_MS + 4_999).ok).toBe(true);
    expectRefused(hsVerifier().verify(token, NOW_MS + 5_000), 'expired', 'buyer token has expired');
    expectRefused(hsVerifier({ leewaySeconds: 0 }).verify(token, NOW_MS), 'expired');
    expect(hsVerifier({ leewaySeconds: 60 }).verify(token, NOW_MS + 59_000).ok).toBe(true);
  });

  test('a token whose nbf is in the future beyond the leeway is refused as not yet valid', () => {
    const token = mintBuyerToken(SECRET, claims({ nbf: NOW_S + 10 }));
    expectRefused(hsVerifier().verify(token, NOW_MS), 'not_yet_valid');
    expect(hsVerifier().verify(token, NOW_MS + 5_000).ok).toBe(true);
    expect(hsVerifier().verify(mintBuyerToken(SECRET, claims({ nbf: NOW_S - 1 })), NOW_MS).ok).toBe(true);
  });

  test('an exp or nbf that is not a finite number is refused as bad claims', () => {
    for (const bad of [{ exp: String(NOW_S + 600) }, { exp: null }, { exp: 1e300 }, { nbf: '0' }, { nbf: null }]) {
      expectRefused(hsVerifier().verify(mintBuyerToken(SECRET, claims(bad)), NOW_MS), 'bad_claims');
    }
  });
});

describe('required claims', () => {
  test('a token without sub is refused as bad claims', () => {
    expectRefused(hsVerifier().verify(mintBuyerToken(SECRET, { exp: NOW_S + 600 }), NOW_MS), 'bad_claims', 'buyer token sub is required');
  });

  test('a token without exp is refused as bad claims', () => {
    expectRefused(hsVerifier().verify(mintBuyerToken(SECRET, { sub: 'buyer-1' }), NOW_MS), 'bad_claims', 'buyer token exp is required');
  });

  test('a sub that is not a valid buyer id is refused as bad claims', () => {
    for (const sub of ['', 42, 'x'.repeat(129), 'bad\u0000id', ['buyer-1']]) {
      expectRefused(hsVerifier().verify(mintBuyerToken(SECRET, claims({ sub })), NOW_MS), 'bad_claims', /buyer token sub must/);
    }
  });

  test('a bad channel, accountCreatedAt or pastOrders is refused as bad claims', () => {
    const cases: [Record<string, unknown>, RegExp][] = [
      [{ channel: 'Web!' }, /channel must be/],
      [{ channel: null }, /channel must be/],
      [{ accountCreatedAt: -1 }, /accountCreatedAt must be/],
      [{ accountCreatedAt: 1.5 }, /accountCreatedAt must be/],
      [{ accountCreatedAt: '2020-01-01' }, /accountCreatedAt must be/],
      [{ pastOrders: -1 }, /pastOrders must be/],
      [{ pastOrders: 2.5 }, /pastOrders must be/],
      [{ pastOrders: 1_000_000_001 }, /pastOrders must be/],
    ];
    for (const [extra, message] of cases) {
      expectRefused(hsVerifier().verify(mintBuyerToken(SECRET, claims(extra)), NOW_MS), 'bad_claims', message);
    }
  });
});

describe('audience', () => {
  const v = (): BuyerTokenVerifier => hsVerifier({ audience: 'flash-engine' });

  test('an aud string equal to the configured audience is accepted, another is refused', () => {
    expect(v().verify(mintBuyerToken(SECRET, claims({ aud: 'flash-engine' })), NOW_MS).ok).toBe(true);
    expectRefused(v().verify(mintBuyerToken(SECRET, claims({ aud: 'other-engine' })), NOW_MS), 'wrong_audience', 'buyer token audience does not match');
  });

  test('an aud array containing the configured audience is accepted, one without it is refused', () => {
    expect(v().verify(mintBuyerToken(SECRET, claims({ aud: ['shop', 'flash-engine'] })), NOW_MS).ok).toBe(true);
    expectRefused(v().verify(mintBuyerToken(SECRET, claims({ aud: ['shop', 'other'] })), NOW_MS), 'wrong_audience');
    expectRefused(v().verify(mintBuyerToken(SECRET, claims({ aud: [] })), NOW_MS), 'wrong_audience');
    expectRefused(v().verify(mintBuyerToken(SECRET, claims({ aud: { 0: 'flash-engine' } })), NOW_MS), 'wrong_audience');
  });

  test('a token without aud is refused when an audience is configured, and accepted when none is', () => {
    expectRefused(v().verify(mintBuyerToken(SECRET, claims()), NOW_MS), 'wrong_audience');
    expect(hsVerifier().verify(mintBuyerToken(SECRET, claims({ aud: 'anything' })), NOW_MS).ok).toBe(true);
  });
});

describe('algorithms', () => {
  test('alg none with an empty signature is refused under every configuration', () => {
    for (const v of [hsVerifier(), edVerifier(), ecVerifier()]) {
      expectRefused(v.verify(signToken('none', claims()), NOW_MS), 'unsupported_alg', /algorithm none is not accepted; this engine accepts/);
    }
    expectRefused(hsVerifier().verify(signToken('none', claims()), NOW_MS), 'unsupported_alg', 'buyer token algorithm none is not accepted; this engine accepts HS256');
  });

  test('an HS256 token keyed with the public key PEM is refused when only the public key is configured', () => {
    for (const [keyPair, v] of [[ed, edVerifier()], [ec, ecVerifier()]] as const) {
      const forged = signToken('HS256', claims(), pemOf(keyPair.publicKey, 'spki'));
      expectRefused(v.verify(forged, NOW_MS), 'unsupported_alg', /algorithm HS256 is not accepted/);
    }
  });

  test('an HS256 token keyed with the public key PEM is a bad signature when a secret and the public key are configured', () => {
    const forged = signToken('HS256', claims(), pemOf(ed.publicKey, 'spki'));
    expectRefused(hsVerifier({ publicKey: ed.publicKey }).verify(forged, NOW_MS), 'bad_signature', 'buyer token signature does not verify');
  });

  test('an ES256 token is refused under an Ed25519 key, and an EdDSA token under a P-256 key', () => {
    expectRefused(edVerifier().verify(signToken('ES256', claims(), ec.privateKey), NOW_MS), 'unsupported_alg', /accepts EdDSA$/);
    expectRefused(ecVerifier().verify(signToken('EdDSA', claims(), ed.privateKey), NOW_MS), 'unsupported_alg', /accepts ES256$/);
  });

  test('a header that names EdDSA but carries an ES256 signature (or the reverse) does not verify', () => {
    const v = hsVerifier({ publicKey: ed.publicKey });
    const header = { alg: 'EdDSA', typ: 'JWT' };
    const signed = `${b64(JSON.stringify(header))}.${b64(JSON.stringify(claims()))}`;
    const esSignature = sign('sha256', Buffer.from(signed), { key: ec.privateKey, dsaEncoding: 'ieee-p1363' });
    expectRefused(v.verify(`${signed}.${b64(esSignature)}`, NOW_MS), 'bad_signature');
  });

  test('RS256, HS384 and HS512 tokens are refused, however they are signed', () => {
    const v = hsVerifier({ publicKey: ec.publicKey });
    expectRefused(v.verify(signToken('RS256', claims(), rsa.privateKey), NOW_MS), 'unsupported_alg', /algorithm RS256 is not accepted/);
    expectRefused(v.verify(signToken('HS384', claims()), NOW_MS), 'unsupported_alg', /algorithm HS384/);
    expectRefused(v.verify(signToken('HS512', claims()), NOW_MS), 'unsupported_alg', /algorithm HS512/);
  });

  test('a missing, non-string or oddly spelled alg is refused', () => {
    const v = hsVerifier();
    for (const header of [{ typ: 'JWT' }, { alg: ['HS256'] }, { alg: 'hs256' }, { alg: 'HS256 ' }, { alg: 'x'.repeat(500) }]) {
      const result = v.verify(signToken('HS256', claims(), SECRET, header), NOW_MS);
      expectRefused(result, 'unsupported_alg');
      if (!result.ok) expect(result.message.length).toBeLessThan(200);
    }
  });

  test('a header with crit is refused, even naming nothing', () => {
    for (const crit of [['exp'], [], 'b64']) {
      expectRefused(hsVerifier().verify(signToken('HS256', claims(), SECRET, { alg: 'HS256', crit }), NOW_MS), 'malformed', /crit/);
    }
  });

  test('a header whose typ is not JWT is refused', () => {
    for (const typ of ['at+jwt', 'JOSE', 1, null]) {
      expectRefused(hsVerifier().verify(signToken('HS256', claims(), SECRET, { alg: 'HS256', typ }), NOW_MS), 'malformed', /typ/);
    }
  });
});

describe('tampering', () => {
  test('a token whose payload has one byte flipped is refused as a bad signature', () => {
    const token = mintBuyerToken(SECRET, claims({ pastOrders: 1 }));
    const [header, payload, signature] = token.split('.') as [string, string, string];
    const bytes = Buffer.from(payload, 'base64url');
    bytes[bytes.indexOf('1'.charCodeAt(0), bytes.indexOf('pastOrders'))] = '9'.charCodeAt(0);
    expectRefused(hsVerifier().verify(`${header}.${b64(bytes)}.${signature}`, NOW_MS), 'bad_signature');
  });

  test('a token whose signature has one byte flipped is refused as a bad signature, for every algorithm', () => {
    const cases: [string, BuyerTokenVerifier][] = [
      [mintBuyerToken(SECRET, claims()), hsVerifier()],
      [signToken('EdDSA', claims(), ed.privateKey), edVerifier()],
      [signToken('ES256', claims(), ec.privateKey), ecVerifier()],
    ];
    for (const [token, v] of cases) {
      const [header, payload, signature] = token.split('.') as [string, string, string];
      const bytes = Buffer.from(signature, 'base64url');
      bytes[5] = (bytes[5] as number) ^ 0x01;
      expectRefused(v.verify(`${header}.${payload}.${b64(bytes)}`, NOW_MS), 'bad_signature');
      expectRefused(v.verify(`${header}.${payload}.${b64(bytes.subarray(0, bytes.length - 1))}`, NOW_MS), 'bad_signature');
      expectRefused(v.verify(`${header}.${payload}.`, NOW_MS), 'bad_signature');
    }
  });

  test('a token signed with another secret is refused as a bad signature', () => {
    expectRefused(hsVerifier().verify(mintBuyerToken(`${SECRET}-other`, claims()), NOW_MS), 'bad_signature');
  });
});

describe('malformed tokens', () => {
  const good = mintBuyerToken(SECRET, claims());
  const [header, payload, signature] = good.split('.') as [string, string, string];

  test('characters outside base64url, and padding, are refused as malformed', () => {
    const v = hsVerifier();
    for (const token of [`${header}.${payload}=.${signature}`, `${header}.${payload}.${signature}=`, `${header}.${payload.replace(/-|_/g, '+')}+.${signature}`,
      `${header}.${payload}/.${signature}`, `${header} .${payload}.${signature}`, `${header}.${payload}.${signature}\n`, `${header}.${payload}.${signature}é`]) {
      expectRefused(v.verify(token, NOW_MS), 'malformed');
    }
  });

  test('base64url whose length or unused tail bits no encoder produces is refused as malformed', () => {
    const v = hsVerifier();
    // The signature of HS256 is 32 bytes: 43 characters whose last one carries 2 unused bits.
    const last = signature.at(-1) as string;
    const alphabet = 'ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_';
    const sibling = alphabet[alphabet.indexOf(last) ^ 0x01] as string;
    expectRefused(v.verify(`${header}.${payload}.${signature.slice(0, -1)}${sibling}`, NOW_MS), 'malformed', /canonical/);
    // 45 characters: a length (1 mod 4) that no byte count encodes to.
    expectRefused(v.verify(`${header}.${payload}.${signature}AA`, NOW_MS), 'malformed', /canonical/);
  });

  test('a token that is not exactly three parts is refused as malformed', () => {
    const v = hsVerifier();
    for (const token of ['', '.', '..', '...', `${header}.${payload}`, `${header}.${payload}.${signature}.`, `${header}.${payload}.${signature}.${signature}`,
      `${header}..${signature}`, `.${payload}.${signature}`, `${header}.${payload}..${signature}`]) {
      expectRefused(v.verify(token, NOW_MS), 'malformed');
    }
  });

  test('a token over 4096 characters is refused as malformed before any other work', () => {
    const long = mintBuyerToken(SECRET, claims({ padding: 'x'.repeat(3100) }));
    expect(long.length).toBeGreaterThan(4096);
    expectRefused(hsVerifier().verify(long, NOW_MS), 'malformed', /4096/);
    expect(hmacCalls.count).toBe(1); // the mint alone
    const fits = mintBuyerToken(SECRET, claims({ padding: 'x'.repeat(2900) }));
    expect(fits.length).toBeLessThanOrEqual(4096);
    expect(hsVerifier().verify(fits, NOW_MS).ok).toBe(true);
  });

  test('a value that is not a string is refused as malformed', () => {
    for (const value of [undefined, null, 42, { token: good }]) {
      expectRefused(hsVerifier().verify(value as unknown as string, NOW_MS), 'malformed');
    }
  });

  test('a header that is not a JSON object is refused as malformed', () => {
    for (const h of ['["HS256"]', '"HS256"', 'null', '42', '{"alg":"HS256"', 'not json']) {
      expectRefused(hsVerifier().verify(signToken('HS256', claims(), SECRET, h), NOW_MS), 'malformed', /header must be a JSON object/);
    }
  });

  test('a properly signed payload that is not a JSON object is refused as malformed', () => {
    for (const p of ['["buyer-1"]', '"buyer-1"', 'null', '7', '{"sub":"buyer-1"', '']) {
      const result = hsVerifier().verify(signToken('HS256', p), NOW_MS);
      expectRefused(result, 'malformed');
    }
  });

  test('unsigned garbage is refused before its payload is read', () => {
    // The payload is not even JSON; the answer is about the signature, not the payload.
    expectRefused(hsVerifier().verify(`${header}.${b64('not json at all')}.${signature}`, NOW_MS), 'bad_signature');
  });
});

describe('hostile JSON', () => {
  test('a __proto__ claim neither pollutes prototypes nor supplies claims', () => {
    const raw = `{"sub":"buyer-1","exp":${NOW_S + 600},"__proto__":{"polluted":true,"pastOrders":5,"channel":"vip"}}`;
    const result = hsVerifier().verify(signToken('HS256', raw), NOW_MS);
    expect(acceptedClaims(result)).toEqual({ buyerId: 'buyer-1', expiresAtMs: (NOW_S + 600) * 1000, channel: null });
    expect(({} as Record<string, unknown>).polluted).toBeUndefined();
    expect((Object.prototype as Record<string, unknown>).pastOrders).toBeUndefined();
  });

  test('claims that exist only under __proto__ count as missing', () => {
    const raw = `{"__proto__":{"sub":"buyer-1","exp":${NOW_S + 600}}}`;
    expectRefused(hsVerifier().verify(signToken('HS256', raw), NOW_MS), 'bad_claims', /is required/);
  });

  test('a __proto__ header key cannot supply alg', () => {
    expectRefused(hsVerifier().verify(signToken('HS256', claims(), SECRET, '{"__proto__":{"alg":"HS256"}}'), NOW_MS), 'unsupported_alg');
  });

  test('accepted claims are frozen, so no caller can change what the cache hands the next one', () => {
    const v = hsVerifier();
    const token = mintBuyerToken(SECRET, claims());
    const first = v.verify(token, NOW_MS);
    expect(first.ok && Object.isFrozen(first.claims)).toBe(true);
    expect(() => {
      if (first.ok) (first.claims as { buyerId: string }).buyerId = 'someone-else';
    }).toThrow(TypeError);
    expect(v.verify(token, NOW_MS)).toMatchObject({ ok: true, claims: { buyerId: 'buyer-1' } });
  });
});

describe('cache', () => {
  test('a repeated token is answered from the cache without computing an HMAC', () => {
    const v = hsVerifier();
    const token = mintBuyerToken(SECRET, claims());
    hmacCalls.count = 0;
    const first = v.verify(token, NOW_MS);
    expect(hmacCalls.count).toBe(1);
    expect(v.verify(token, NOW_MS + 1000)).toEqual(first);
    expect(hmacCalls.count).toBe(1);
    expect(v.cacheSize).toBe(1);
  });

  test('the cache holds at most cacheEntriesMax tokens and evicts the oldest inserted first', () => {
    const v = hsVerifier({ cacheEntriesMax: 3 });
    const tokens = [1, 2, 3, 4].map((n) => mintBuyerToken(SECRET, claims({ sub: `buyer-${n}` })));
    for (const t of tokens) expect(v.verify(t, NOW_MS).ok).toBe(true);
    expect(v.cacheSize).toBe(3);
    hmacCalls.count = 0;
    for (const t of tokens.slice(1)) expect(v.verify(t, NOW_MS).ok).toBe(true);
    expect(hmacCalls.count).toBe(0); // tokens 2..4 were kept
    expect(v.verify(tokens[0] as string, NOW_MS).ok).toBe(true);
    expect(hmacCalls.count).toBe(1); // token 1 was evicted and is verified afresh
    expect(v.cacheSize).toBe(3);
    hmacCalls.count = 0;
    expect(v.verify(tokens[1] as string, NOW_MS).ok).toBe(true);
    expect(hmacCalls.count).toBe(1); // re-inserting token 1 evicted token 2, the oldest
  });

  test('a token that left the cache early (expired) frees its place without evicting anyone else', () => {
    const v = hsVerifier({ cacheEntriesMax: 2 });
    const shortLived = mintBuyerToken(SECRET, claims({ sub: 'buyer-a', exp: NOW_S + 1 }));
    const [b, c, d] = ['b', 'c', 'd'].map((n) => mintBuyerToken(SECRET, claims({ sub: `buyer-${n}` }))) as [string, string, string];
    v.verify(shortLived, NOW_MS);
    v.verify(b, NOW_MS);
    expectRefused(v.verify(shortLived, NOW_MS + 10_000), 'expired');
    expect(v.cacheSize).toBe(1);
    v.verify(c, NOW_MS); // takes the expired token's place; b stays
    expect(v.cacheSize).toBe(2);
    hmacCalls.count = 0;
    v.verify(b, NOW_MS);
    expect(hmacCalls.count).toBe(0);
    v.verify(d, NOW_MS); // evicts b, now the oldest
    v.verify(c, NOW_MS);
    expect(hmacCalls.count).toBe(1);
    v.verify(b, NOW_MS);
    expect(hmacCalls.count).toBe(2);
    expect(v.cacheSize).toBe(2);
  });

  test('refused tokens are not cached', () => {
    const v = hsVerifier();
    v.verify(mintBuyerToken(`${SECRET}-other`, claims()), NOW_MS);
    v.verify(mintBuyerToken(SECRET, claims({ exp: NOW_S - 60 })), NOW_MS);
    v.verify(mintBuyerToken(SECRET, { exp: NOW_S + 60 }), NOW_MS);
    expect(v.cacheSize).toBe(0);
  });

  test('a cached token still expires on time, and leaves the cache when it does', () => {
    const v = hsVerifier();
    const token = mintBuyerToken(SECRET, claims({ exp: NOW_S + 10 }));
    expect(v.verify(token, NOW_MS).ok).toBe(true);
    expect(v.verify(token, NOW_MS + 14_999).ok).toBe(true);
    expectRefused(v.verify(token, NOW_MS + 15_000), 'expired');
    expect(v.cacheSize).toBe(0);
  });

  test('a cached token with nbf is still refused at a time before nbf', () => {
    const v = hsVerifier();
    const token = mintBuyerToken(SECRET, claims({ nbf: NOW_S }));
    expect(v.verify(token, NOW_MS).ok).toBe(true);
    expectRefused(v.verify(token, NOW_MS - 6_000), 'not_yet_valid');
  });

  test('cacheEntriesMax 0 turns the cache off', () => {
    const v = hsVerifier({ cacheEntriesMax: 0 });
    expect(v.verify(mintBuyerToken(SECRET, claims()), NOW_MS).ok).toBe(true);
    expect(v.cacheSize).toBe(0);
  });
});

describe('mutations', () => {
  const signers = [
    { name: 'HS256', token: mintBuyerToken(SECRET, claims({ channel: 'app', pastOrders: 7 })), verifier: hsVerifier({ cacheEntriesMax: 0 }) },
    { name: 'EdDSA', token: signToken('EdDSA', claims({ channel: 'app', pastOrders: 7 }), ed.privateKey), verifier: edVerifier({ cacheEntriesMax: 0 }) },
    { name: 'ES256', token: signToken('ES256', claims({ channel: 'app', pastOrders: 7 }), ec.privateKey), verifier: ecVerifier({ cacheEntriesMax: 0 }) },
  ];
  const edit = fc.oneof(
    fc.record({ kind: fc.constant('replace' as const), at: fc.nat(), char: fc.oneof(fc.constantFrom(...'Aa0-_.=+/ '), fc.string({ minLength: 1, maxLength: 1, unit: 'binary' })) }),
    fc.record({ kind: fc.constant('flipBit' as const), at: fc.nat(), bit: fc.integer({ min: 0, max: 6 }) }),
    fc.record({ kind: fc.constant('insert' as const), at: fc.nat(), char: fc.constantFrom(...'Aa0-_.=') }),
    fc.record({ kind: fc.constant('delete' as const), at: fc.nat() }),
  );
  type Edit = typeof edit extends fc.Arbitrary<infer E> ? E : never;
  function mutate(token: string, e: Edit): string {
    const at = e.at % token.length;
    if (e.kind === 'replace') return token.slice(0, at) + e.char + token.slice(at + 1);
    if (e.kind === 'flipBit') return token.slice(0, at) + String.fromCharCode(token.charCodeAt(at) ^ (1 << e.bit)) + token.slice(at + 1);
    if (e.kind === 'insert') return token.slice(0, at) + e.char + token.slice(at);
    return token.slice(0, at) + token.slice(at + 1);
  }

  test('any mutation of a valid token is refused, unless it leaves the token unchanged', () => {
    for (const { token, verifier } of signers) {
      const original = verifier.verify(token, NOW_MS);
      expect(original.ok).toBe(true);
      fc.assert(
        fc.property(fc.array(edit, { minLength: 1, maxLength: 3 }), (edits) => {
          const mutated = edits.reduce(mutate, token);
          const result = verifier.verify(mutated, NOW_MS);
          if (mutated === token) {
            expect(result).toEqual(original);
          } else {
            // Never accepted with different claims; with canonical base64url, never accepted at all.
            expect(result.ok).toBe(false);
          }
        }),
        // The first example leaves the token as it was, so that branch is always exercised.
        { numRuns: 400, examples: [[[{ kind: 'replace', at: 0, char: token[0] as string }]], [[{ kind: 'delete', at: token.length - 1 }]]] },
      );
    }
  });
});

describe('loadBuyerTokenConfig', () => {
  const dir = mkdtempSync(join(tmpdir(), 'buyer-token-'));
  afterAll(() => rmSync(dir, { recursive: true, force: true }));

  function configError(env: Record<string, string | undefined>, message: RegExp): void {
    let thrown: unknown;
    try {
      loadBuyerTokenConfig(env);
    } catch (err) {
      thrown = err;
    }
    expect(thrown).toBeInstanceOf(ConfigError);
    expect((thrown as Error).message).toMatch(message);
  }

  test('nothing configured gives null', () => {
    expect(loadBuyerTokenConfig({})).toBeNull();
    expect(loadBuyerTokenConfig({ FLASH_BUYER_TOKEN_SECRET: '', FLASH_BUYER_TOKEN_PUBLIC_KEY: '  ', FLASH_BUYER_TOKEN_AUDIENCE: 'x' })).toBeNull();
  });

  test('a secret, audience and leeway are read, with the defaults for what is unset', () => {
    expect(loadBuyerTokenConfig({ FLASH_BUYER_TOKEN_SECRET: SECRET })).toEqual({
      hs256Secret: Buffer.from(SECRET), publicKey: null, audience: null, leewaySeconds: 5, cacheEntriesMax: 100_000,
    });
    const c = loadBuyerTokenConfig({ FLASH_BUYER_TOKEN_SECRET: SECRET, FLASH_BUYER_TOKEN_AUDIENCE: 'flash-engine', FLASH_BUYER_TOKEN_LEEWAY_SECONDS: '0' });
    expect(c).toMatchObject({ audience: 'flash-engine', leewaySeconds: 0 });
    expect(new BuyerTokenVerifier(c as BuyerTokenConfig).verify(mintBuyerToken(SECRET, claims({ aud: 'flash-engine' })), NOW_MS).ok).toBe(true);
  });

  test('a secret shorter than 32 bytes is a ConfigError naming the variable, without the secret', () => {
    const short = 'only-31-bytes-long-secret-value';
    expect(Buffer.byteLength(short)).toBe(31);
    configError({ FLASH_BUYER_TOKEN_SECRET: short }, /^FLASH_BUYER_TOKEN_SECRET must be at least 32 bytes/);
    try {
      loadBuyerTokenConfig({ FLASH_BUYER_TOKEN_SECRET: short });
    } catch (err) {
      expect((err as Error).message).not.toContain(short);
    }
    // 32 bytes of UTF-8 in fewer characters is enough.
    expect(loadBuyerTokenConfig({ FLASH_BUYER_TOKEN_SECRET: 'é'.repeat(16) })?.hs256Secret?.length).toBe(32);
  });

  test('an Ed25519 or P-256 public key PEM is read from the variable itself', () => {
    const edConfig = loadBuyerTokenConfig({ FLASH_BUYER_TOKEN_PUBLIC_KEY: pemOf(ed.publicKey, 'spki') }) as BuyerTokenConfig;
    expect(edConfig.hs256Secret).toBeNull();
    expect(new BuyerTokenVerifier(edConfig).verify(signToken('EdDSA', claims(), ed.privateKey), NOW_MS).ok).toBe(true);
    const ecConfig = loadBuyerTokenConfig({ FLASH_BUYER_TOKEN_PUBLIC_KEY: pemOf(ec.publicKey, 'spki').replace(/\n/g, '\\n') }) as BuyerTokenConfig;
    expect(new BuyerTokenVerifier(ecConfig).algorithms).toEqual(['ES256']);
  });

  test('a public key PEM is read from a file when the variable is a path', () => {
    const file = join(dir, 'shop-public.pem');
    writeFileSync(file, pemOf(ec.publicKey, 'spki'));
    const c = loadBuyerTokenConfig({ FLASH_BUYER_TOKEN_PUBLIC_KEY: file, FLASH_BUYER_TOKEN_SECRET: SECRET }) as BuyerTokenConfig;
    const v = new BuyerTokenVerifier(c);
    expect(v.algorithms).toEqual(['HS256', 'ES256']);
    expect(v.verify(signToken('ES256', claims(), ec.privateKey), NOW_MS).ok).toBe(true);
    configError({ FLASH_BUYER_TOKEN_PUBLIC_KEY: join(dir, 'missing.pem') }, /^FLASH_BUYER_TOKEN_PUBLIC_KEY .*readable file.*ENOENT/);
  });

  test('a private key given by mistake is a ConfigError asking for the public key', () => {
    for (const privateKey of [ed.privateKey, ec.privateKey]) {
      configError({ FLASH_BUYER_TOKEN_PUBLIC_KEY: pemOf(privateKey, 'pkcs8') }, /^FLASH_BUYER_TOKEN_PUBLIC_KEY holds a private key; give the public key/);
    }
    const sec1 = createPrivateKey(pemOf(ec.privateKey, 'pkcs8')).export({ format: 'pem', type: 'sec1' }) as string;
    const file = join(dir, 'shop-private.pem');
    writeFileSync(file, sec1);
    configError({ FLASH_BUYER_TOKEN_PUBLIC_KEY: file }, /holds a private key/);
  });

  test('an RSA or other-curve public key, or text that is no key, is a ConfigError', () => {
    configError({ FLASH_BUYER_TOKEN_PUBLIC_KEY: pemOf(rsa.publicKey, 'spki') }, /^FLASH_BUYER_TOKEN_PUBLIC_KEY is a key of type rsa; only Ed25519 .* and P-256/);
    const p384 = generateKeyPairSync('ec', { namedCurve: 'P-384' });
    configError({ FLASH_BUYER_TOKEN_PUBLIC_KEY: pemOf(p384.publicKey, 'spki') }, /is a key of type ec \(curve secp384r1\)/);
    configError({ FLASH_BUYER_TOKEN_PUBLIC_KEY: '-----BEGIN PUBLIC KEY-----\nnot a key\n-----END PUBLIC KEY-----\n' }, /is not a PEM public key/);
  });

  test('a leeway outside 0..60 or not an integer is a ConfigError', () => {
    for (const leeway of ['61', '-1', '1.5', 'abc', '5s', '1e1']) {
      configError({ FLASH_BUYER_TOKEN_SECRET: SECRET, FLASH_BUYER_TOKEN_LEEWAY_SECONDS: leeway }, /^FLASH_BUYER_TOKEN_LEEWAY_SECONDS=.* is not an integer in 0\.\.60/);
    }
    expect(loadBuyerTokenConfig({ FLASH_BUYER_TOKEN_SECRET: SECRET, FLASH_BUYER_TOKEN_LEEWAY_SECONDS: '60' })?.leewaySeconds).toBe(60);
  });

  test('the verifier itself refuses a config without keys, a short secret or a private key', () => {
    expect(() => new BuyerTokenVerifier(config({ hs256Secret: null }))).toThrow();
    expect(() => new BuyerTokenVerifier(config({ hs256Secret: Buffer.alloc(31) }))).toThrow();
    expect(() => new BuyerTokenVerifier(config({ hs256Secret: null, publicKey: ed.privateKey }))).toThrow();
    expect(() => new BuyerTokenVerifier(config({ leewaySeconds: 61 }))).toThrow();
  });
});
