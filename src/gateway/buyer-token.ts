// Verifies buyer tokens: compact JWS tokens the shop mints for one buyer (HS256 with a shared
// secret, or EdDSA / ES256 with the shop's public key), and reads the buyer id and the signals
// the shop vouches for. It owns the allow-list of algorithms, the claim checks and a bounded
// cache of verified tokens. It must never accept an algorithm the configured keys do not name,
// never parse a payload before its signature verifies, and never put the secret in a message.

import { createHmac, createPublicKey, timingSafeEqual, verify as verifySignature, type KeyObject } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { ConfigError } from '../config.js';
import { buyerIdError, channelNameError, intError, Limits, timeError } from '../domain/fields.js';

export interface BuyerTokenConfig {
  hs256Secret: Buffer | null;
  publicKey: KeyObject | null;
  audience: string | null;
  /** Clock skew forgiven on exp and nbf; default 5, 0..60. */
  leewaySeconds: number;
  /** Verified tokens remembered; default 100_000 (0 turns the cache off). */
  cacheEntriesMax: number;
}

export interface BuyerClaims {
  buyerId: string;
  /** exp * 1000. */
  expiresAtMs: number;
  channel: string | null;
  /** Present only when the token carries accountCreatedAt. */
  accountCreatedAtMs?: number;
  /** Present only when the token carries pastOrders. */
  pastOrders?: number;
}

export type BuyerTokenFailure = 'malformed' | 'unsupported_alg' | 'bad_signature' | 'expired' | 'not_yet_valid' | 'wrong_audience' | 'bad_claims';
export type VerifyResult = { ok: true; claims: BuyerClaims } | { ok: false; reason: BuyerTokenFailure; message: string };

const buyerTokenDefaults = { leewaySeconds: 5, leewaySecondsMax: 60, cacheEntriesMax: 100_000, tokenLengthMax: 4096, secretBytesMin: 32 } as const;

type Alg = 'HS256' | 'EdDSA' | 'ES256';

/** What a cached token needs on a hit: its answer and the times that bound it. */
interface Verified {
  result: VerifyResult;
  /** Refused from this instant on: (exp + leeway) * 1000. */
  refuseFromMs: number;
  /** Refused before this instant: (nbf - leeway) * 1000, or -Infinity without nbf. */
  acceptFromMs: number;
  /** Its place in the eviction ring, so that a stale slot never evicts a newer entry. */
  slot: number;
}

// Three non-empty-ish base64url parts and nothing else: one linear scan, no allocation.
// The signature part may be empty so that `alg: none` is reported as such, not as malformed.
const compactShape = /^[A-Za-z0-9_-]+\.[A-Za-z0-9_-]+\.[A-Za-z0-9_-]*$/;
const printableAlg = /^[A-Za-z0-9_+-]{1,20}$/;
const privateKeyPem = /-----BEGIN [A-Z0-9 ]*PRIVATE KEY-----/;
/** Distinct header parts remembered; a shop uses one or two, so this only bounds abuse. */
const headerCacheMax = 32;

// The 6-bit value of each base64url character, to refuse encodings whose unused tail bits are
// set: without this, several strings would decode to the same signature.
const base64urlValue = new Int8Array(128).fill(-1);
'ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_'.split('').forEach((c, i) => {
  base64urlValue[c.charCodeAt(0)] = i;
});

/** True when s[from, to) (already known to be base64url characters) is canonical base64url. */
function canonicalBase64url(s: string, from: number, to: number): boolean {
  const rest = (to - from) % 4;
  if (rest === 0) return true;
  if (rest === 1) return false;
  const last = base64urlValue[s.charCodeAt(to - 1)] as number;
  return (last & (rest === 2 ? 0x0f : 0x03)) === 0;
}

function fail(reason: BuyerTokenFailure, message: string): VerifyResult {
  return { ok: false, reason, message };
}

function own(o: object, key: string): unknown {
  return Object.prototype.hasOwnProperty.call(o, key) ? (o as Record<string, unknown>)[key] : undefined;
}

function isJsonObject(v: unknown): v is object {
  return v !== null && typeof v === 'object' && !Array.isArray(v);
}

function parseJson(text: string): unknown {
  try {
    return JSON.parse(text);
  } catch {
    return undefined;
  }
}

/** The algorithm a public key can verify, or null when it is neither Ed25519 nor P-256. */
function algOfPublicKey(key: KeyObject): Alg | null {
  if (key.type !== 'public') return null;
  if (key.asymmetricKeyType === 'ed25519') return 'EdDSA';
  if (key.asymmetricKeyType === 'ec' && key.asymmetricKeyDetails?.namedCurve === 'prime256v1') return 'ES256';
  return null;
}

export class BuyerTokenVerifier {
  readonly algorithms: readonly string[];
  private readonly hmacSecret: Buffer | null;
  /** The public key with the options crypto.verify needs for its algorithm, built once. */
  private readonly publicVerifyKey: KeyObject | { key: KeyObject; dsaEncoding: 'ieee-p1363' } | null;
  private readonly publicAlg: Alg | null;
  private readonly audience: string | null;
  private readonly leewayMs: number;
  private readonly cacheEntriesMax: number;
  private readonly cache = new Map<string, Verified>();
  /**
   * Cached tokens in insertion order, as a ring: the next slot to fill holds the oldest.
   * (Not Map.keys().next(): V8 skips the holes left by deleted entries one by one, which
   * made every eviction cost tens of microseconds once the cache was full.)
   */
  private readonly ring: string[] = [];
  private ringNext = 0;
  private readonly headerAlgs = new Map<string, Alg>();

  constructor(config: BuyerTokenConfig) {
    const { hs256Secret, publicKey, leewaySeconds, cacheEntriesMax } = config;
    if (hs256Secret === null && publicKey === null) throw new Error('BuyerTokenVerifier needs an HS256 secret or a public key');
    if (hs256Secret !== null && hs256Secret.length < buyerTokenDefaults.secretBytesMin) {
      throw new Error(`BuyerTokenVerifier: the HS256 secret must be at least ${buyerTokenDefaults.secretBytesMin} bytes`);
    }
    if (!Number.isInteger(leewaySeconds) || leewaySeconds < 0 || leewaySeconds > buyerTokenDefaults.leewaySecondsMax) {
      throw new Error(`BuyerTokenVerifier: leewaySeconds must be an integer in 0..${buyerTokenDefaults.leewaySecondsMax}`);
    }
    if (!Number.isSafeInteger(cacheEntriesMax) || cacheEntriesMax < 0) throw new Error('BuyerTokenVerifier: cacheEntriesMax must be a non-negative integer');
    this.publicAlg = publicKey === null ? null : algOfPublicKey(publicKey);
    if (publicKey !== null && this.publicAlg === null) throw new Error('BuyerTokenVerifier: the public key must be an Ed25519 or P-256 public key');
    // The allow-list comes from the keys alone, never from a token (as jose does).
    this.algorithms = Object.freeze([...(hs256Secret !== null ? ['HS256'] : []), ...(this.publicAlg !== null ? [this.publicAlg] : [])]);
    this.hmacSecret = hs256Secret === null ? null : Buffer.from(hs256Secret);
    this.publicVerifyKey = publicKey === null ? null : this.publicAlg === 'ES256' ? { key: publicKey, dsaEncoding: 'ieee-p1363' } : publicKey;
    this.audience = config.audience;
    this.leewayMs = leewaySeconds * 1000;
    this.cacheEntriesMax = cacheEntriesMax;
  }

  get cacheSize(): number {
    return this.cache.size;
  }

  verify(token: string, nowMs: number): VerifyResult {
    if (typeof token !== 'string' || token.length > buyerTokenDefaults.tokenLengthMax) {
      return fail('malformed', `buyer token must be a string of at most ${buyerTokenDefaults.tokenLengthMax} characters`);
    }
    const known = this.cache.get(token);
    if (known !== undefined) return this.recheckTimes(token, known, nowMs);
    if (!compactShape.test(token)) return fail('malformed', 'buyer token must be three base64url parts separated by dots, without padding');
    const payloadAt = token.indexOf('.') + 1;
    const signatureAt = token.indexOf('.', payloadAt) + 1;
    if (!canonicalBase64url(token, payloadAt, signatureAt - 1) || !canonicalBase64url(token, signatureAt, token.length)) {
      return fail('malformed', 'buyer token is not canonical base64url');
    }
    const alg = this.headerAlg(token.substring(0, payloadAt - 1));
    if (typeof alg !== 'string' || !this.signatureVerifies(alg, token, signatureAt)) {
      return typeof alg === 'string' ? fail('bad_signature', 'buyer token signature does not verify') : alg;
    }
    // Only now, with the signature good, is the payload decoded and parsed.
    const payload = parseJson(Buffer.from(token.substring(payloadAt, signatureAt - 1), 'base64url').toString('utf8'));
    if (!isJsonObject(payload)) return fail('malformed', 'buyer token payload must be a JSON object');
    const verified = this.checkClaims(payload, nowMs);
    if ('reason' in verified) return verified;
    this.remember(token, verified);
    return verified.result;
  }

  /** A cached token: its signature and claims are known good, only the clock can refuse it. */
  private recheckTimes(token: string, known: Verified, nowMs: number): VerifyResult {
    if (nowMs >= known.refuseFromMs) {
      this.cache.delete(token);
      return fail('expired', 'buyer token has expired');
    }
    if (nowMs < known.acceptFromMs) return fail('not_yet_valid', 'buyer token is not valid yet (nbf is in the future)');
    return known.result;
  }

  /** Oldest-first eviction in O(1): the new token takes the oldest token's slot in the ring. */
  private remember(token: string, verified: Verified): void {
    if (this.cacheEntriesMax === 0) return;
    const slot = this.ringNext;
    if (slot < this.ring.length) {
      const oldest = this.ring[slot] as string;
      // The oldest may have left already (expired) and even come back in a newer slot.
      if (this.cache.get(oldest)?.slot === slot) this.cache.delete(oldest);
      this.ring[slot] = token;
    } else {
      this.ring.push(token);
    }
    this.ringNext = slot + 1 === this.cacheEntriesMax ? 0 : slot + 1;
    verified.slot = slot;
    this.cache.set(token, verified);
  }

  /** The accepted algorithm a header part names, or the failure. Good headers are remembered. */
  private headerAlg(part: string): Alg | VerifyResult {
    const knownAlg = this.headerAlgs.get(part);
    if (knownAlg !== undefined) return knownAlg;
    if (!canonicalBase64url(part, 0, part.length)) return fail('malformed', 'buyer token is not canonical base64url');
    const header = parseJson(Buffer.from(part, 'base64url').toString('utf8'));
    if (!isJsonObject(header)) return fail('malformed', 'buyer token header must be a JSON object');
    if (own(header, 'crit') !== undefined) return fail('malformed', 'buyer token header has crit; this engine understands no JWS extensions');
    const typ = own(header, 'typ');
    if (typ !== undefined && (typeof typ !== 'string' || typ.toUpperCase() !== 'JWT')) {
      return fail('malformed', 'buyer token header typ must be JWT or absent');
    }
    const alg = own(header, 'alg');
    if (typeof alg !== 'string' || !this.algorithms.includes(alg)) {
      const named = typeof alg === 'string' && printableAlg.test(alg) ? `algorithm ${alg}` : 'algorithm (missing or unprintable)';
      return fail('unsupported_alg', `buyer token ${named} is not accepted; this engine accepts ${this.algorithms.join(', ')}`);
    }
    if (this.headerAlgs.size >= headerCacheMax) this.headerAlgs.delete(this.headerAlgs.keys().next().value as string);
    this.headerAlgs.set(part, alg as Alg);
    return alg as Alg;
  }

  private signatureVerifies(alg: Alg, token: string, signatureAt: number): boolean {
    const signature = Buffer.from(token.substring(signatureAt), 'base64url');
    if (alg === 'HS256') {
      const expected = createHmac('sha256', this.hmacSecret as Buffer).update(token.substring(0, signatureAt - 1), 'latin1').digest();
      return signature.length === expected.length && timingSafeEqual(signature, expected);
    }
    // EdDSA and ES256 signatures are both 64 bytes (ES256: raw r||s, as JOSE writes them).
    if (signature.length !== 64) return false;
    // ECDSA's (r, n - s) twin verifies too, and is accepted: WebCrypto and node:crypto sign
    // with either s, so refusing the high one would refuse half of a shop's honest tokens.
    const signed = Buffer.from(token.substring(0, signatureAt - 1), 'latin1');
    try {
      return verifySignature(alg === 'ES256' ? 'sha256' : null, signed, this.publicVerifyKey as KeyObject, signature);
    } catch {
      return false;
    }
  }

  /** The registered claims, then the signals; the answer to cache, or the first failure. */
  private checkClaims(payload: object, nowMs: number): Verified | Extract<VerifyResult, { ok: false }> {
    const exp = own(payload, 'exp');
    if (exp === undefined) return badClaims('buyer token exp is required');
    if (typeof exp !== 'number' || !Number.isFinite(exp) || exp * 1000 > Limits.timeMsMax) {
      return badClaims('buyer token exp must be a number of seconds since the epoch');
    }
    const refuseFromMs = exp * 1000 + this.leewayMs;
    if (nowMs >= refuseFromMs) return { ok: false, reason: 'expired', message: 'buyer token has expired' };
    const nbf = own(payload, 'nbf');
    if (nbf !== undefined && (typeof nbf !== 'number' || !Number.isFinite(nbf))) return badClaims('buyer token nbf must be a number of seconds since the epoch');
    const acceptFromMs = nbf === undefined ? -Infinity : nbf * 1000 - this.leewayMs;
    if (nowMs < acceptFromMs) return { ok: false, reason: 'not_yet_valid', message: 'buyer token is not valid yet (nbf is in the future)' };
    if (this.audience !== null && !audienceMatches(own(payload, 'aud'), this.audience)) {
      return { ok: false, reason: 'wrong_audience', message: 'buyer token audience does not match' };
    }
    const sub = own(payload, 'sub');
    const channel = own(payload, 'channel');
    const accountCreatedAt = own(payload, 'accountCreatedAt');
    const pastOrders = own(payload, 'pastOrders');
    const bad =
      buyerIdError(sub, 'sub') ??
      (channel === undefined ? null : channelNameError(channel)) ??
      (accountCreatedAt === undefined ? null : timeError(accountCreatedAt, 'accountCreatedAt')) ??
      (pastOrders === undefined ? null : intError(pastOrders, 'pastOrders', 0, Limits.pastOrdersMax));
    if (bad !== null) return badClaims(`buyer token ${bad}`);
    const claims: BuyerClaims = { buyerId: sub as string, expiresAtMs: exp * 1000, channel: channel === undefined ? null : (channel as string) };
    if (accountCreatedAt !== undefined) claims.accountCreatedAtMs = accountCreatedAt as number;
    if (pastOrders !== undefined) claims.pastOrders = pastOrders as number;
    // Frozen, because a cache hit hands the same object to every caller.
    const result: VerifyResult = Object.freeze({ ok: true, claims: Object.freeze(claims) });
    return { result, refuseFromMs, acceptFromMs, slot: -1 };
  }
}

function badClaims(message: string): Extract<VerifyResult, { ok: false }> {
  return { ok: false, reason: 'bad_claims', message };
}

/** A JWT aud is one string or a list of strings; either must name the audience. */
function audienceMatches(aud: unknown, audience: string): boolean {
  if (typeof aud === 'string') return aud === audience;
  return Array.isArray(aud) && aud.some((a) => a === audience);
}

/** The env value as PEM text: the text itself, or the contents of the file it names. */
function publicKeyPem(raw: string): string {
  const name = 'FLASH_BUYER_TOKEN_PUBLIC_KEY';
  const value = raw.trim();
  if (value.startsWith('-----BEGIN')) {
    // Some deployment tools cannot hold newlines in a variable and write them as \n.
    return value.includes('\n') ? value : value.replace(/\\n/g, '\n');
  }
  try {
    return readFileSync(value, 'utf8');
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code ?? 'unreadable';
    throw new ConfigError(`${name} is neither PEM text (-----BEGIN ...) nor a readable file: ${value} (${code})`);
  }
}

function loadPublicKey(raw: string): KeyObject {
  const name = 'FLASH_BUYER_TOKEN_PUBLIC_KEY';
  const pem = publicKeyPem(raw);
  // createPublicKey would quietly derive the public half of a private key; a private key on
  // the engine is a leak waiting to happen, so it is refused instead.
  if (privateKeyPem.test(pem)) {
    throw new ConfigError(`${name} holds a private key; give the public key instead (the shop keeps the private key to mint tokens)`);
  }
  let key: KeyObject;
  try {
    key = createPublicKey(pem);
  } catch {
    throw new ConfigError(`${name} is not a PEM public key`);
  }
  if (algOfPublicKey(key) === null) {
    const curve = key.asymmetricKeyType === 'ec' ? ` (curve ${key.asymmetricKeyDetails?.namedCurve ?? 'unknown'})` : '';
    throw new ConfigError(`${name} is a key of type ${key.asymmetricKeyType ?? 'unknown'}${curve}; only Ed25519 (EdDSA) and P-256 EC (ES256) public keys are accepted`);
  }
  return key;
}

function leewaySeconds(env: Record<string, string | undefined>): number {
  const name = 'FLASH_BUYER_TOKEN_LEEWAY_SECONDS';
  const raw = env[name]?.trim() ?? '';
  if (raw === '') return buyerTokenDefaults.leewaySeconds;
  const n = Number(raw);
  if (!/^\d+$/.test(raw) || n > buyerTokenDefaults.leewaySecondsMax) {
    throw new ConfigError(`${name}=${raw} is not an integer in 0..${buyerTokenDefaults.leewaySecondsMax}`);
  }
  return n;
}

/** Throws ConfigError naming the variable. Null when neither a secret nor a public key is set. */
export function loadBuyerTokenConfig(env: Record<string, string | undefined>): BuyerTokenConfig | null {
  // Surrounding whitespace (a trailing newline from a secret file) is not part of the secret.
  const secret = env.FLASH_BUYER_TOKEN_SECRET?.trim() ?? '';
  const publicKeyRaw = env.FLASH_BUYER_TOKEN_PUBLIC_KEY?.trim() ?? '';
  if (secret === '' && publicKeyRaw === '') return null;
  let hs256Secret: Buffer | null = null;
  if (secret !== '') {
    hs256Secret = Buffer.from(secret, 'utf8');
    if (hs256Secret.length < buyerTokenDefaults.secretBytesMin) {
      throw new ConfigError(`FLASH_BUYER_TOKEN_SECRET must be at least ${buyerTokenDefaults.secretBytesMin} bytes (UTF-8); use a long random value`);
    }
  }
  const audience = env.FLASH_BUYER_TOKEN_AUDIENCE?.trim() ?? '';
  return {
    hs256Secret,
    publicKey: publicKeyRaw === '' ? null : loadPublicKey(publicKeyRaw),
    audience: audience === '' ? null : audience,
    leewaySeconds: leewaySeconds(env),
    cacheEntriesMax: buyerTokenDefaults.cacheEntriesMax,
  };
}

// The header every minted token carries, encoded once.
const hs256HeaderPart = Buffer.from(JSON.stringify({ alg: 'HS256', typ: 'JWT' })).toString('base64url');

/** Mints an HS256 token (for tests, benchmarks and the shop example). `claims` is written as given. */
export function mintBuyerToken(secret: string | Buffer, claims: Record<string, unknown>): string {
  const signed = `${hs256HeaderPart}.${Buffer.from(JSON.stringify(claims), 'utf8').toString('base64url')}`;
  return `${signed}.${createHmac('sha256', secret).update(signed, 'latin1').digest('base64url')}`;
}
