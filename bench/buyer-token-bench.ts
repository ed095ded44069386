// Cost of checking a buyer token on one core: microseconds per verify for HS256 with distinct
// tokens (the flash-sale case: every request a different buyer, so a cache miss), for a
// repeated token (a cache hit), for EdDSA and ES256 misses and for unsigned garbage, and per
// HS256 mint. Tokens are made before the clock starts, so a timed loop is verify() alone.

import { generateKeyPairSync, sign, type KeyObject } from 'node:crypto';
import os from 'node:os';
import { pathToFileURL } from 'node:url';
import { BuyerTokenVerifier, mintBuyerToken, type BuyerTokenConfig } from '../src/gateway/buyer-token.js';

const SECRET = 'bench-secret-bench-secret-bench-secret';
const HS_ITERATIONS = 200_000;
const ASYMMETRIC_ITERATIONS = 20_000;
const WARMUP_ITERATIONS = 2_000;

function baseConfig(overrides: Partial<BuyerTokenConfig>): BuyerTokenConfig {
  return { hs256Secret: null, publicKey: null, audience: 'flash-engine', leewaySeconds: 5, cacheEntriesMax: 100_000, ...overrides };
}

function buyerClaims(i: number, nowMs: number): Record<string, unknown> {
  return { sub: `buyer-${i}`, exp: Math.floor(nowMs / 1000) + 600, aud: 'flash-engine', channel: 'app', accountCreatedAt: 1_600_000_000_000 + i, pastOrders: Math.abs(i) % 50 };
}

/** A compact JWS signed with a private key, the way a shop would mint EdDSA / ES256 tokens. */
function signAsymmetric(alg: 'EdDSA' | 'ES256', privateKey: KeyObject, claims: Record<string, unknown>): string {
  const signed = `${Buffer.from(JSON.stringify({ alg, typ: 'JWT' })).toString('base64url')}.${Buffer.from(JSON.stringify(claims)).toString('base64url')}`;
  const data = Buffer.from(signed);
  const signature = alg === 'EdDSA' ? sign(null, data, privateKey) : sign('sha256', data, { key: privateKey, dsaEncoding: 'ieee-p1363' });
  return `${signed}.${signature.toString('base64url')}`;
}

/** µs per verify over `tokens`; throws if any answer is not `expectOk`, so nothing is optimised away. */
function timeVerify(verifier: BuyerTokenVerifier, tokens: readonly string[], nowMs: number, expectOk: boolean): number {
  let mismatches = 0;
  const startMs = performance.now();
  for (let i = 0; i < tokens.length; i++) {
    if (verifier.verify(tokens[i] as string, nowMs).ok !== expectOk) mismatches++;
  }
  const elapsedMs = performance.now() - startMs;
  if (mismatches > 0) throw new Error(`buyer-token bench: ${mismatches} of ${tokens.length} answers were not ok=${expectOk}`);
  return (elapsedMs * 1000) / tokens.length;
}

function round(us: number): number {
  return us < 1 ? Math.round(us * 1000) / 1000 : Math.round(us * 100) / 100;
}

/** µs per operation, by name. Each figure is measured after a warm-up on separate tokens. */
export async function measureBuyerTokenCosts(): Promise<Record<string, number>> {
  const nowMs = Date.now();
  const costs: Record<string, number> = {};

  const hsVerifier = new BuyerTokenVerifier(baseConfig({ hs256Secret: Buffer.from(SECRET) }));
  for (let i = 0; i < WARMUP_ITERATIONS; i++) hsVerifier.verify(mintBuyerToken(SECRET, buyerClaims(-i - 1, nowMs)), nowMs);
  const hsTokens: string[] = new Array(HS_ITERATIONS);
  const mintStartMs = performance.now();
  for (let i = 0; i < HS_ITERATIONS; i++) hsTokens[i] = mintBuyerToken(SECRET, buyerClaims(i, nowMs));
  costs['HS256 mint'] = round(((performance.now() - mintStartMs) * 1000) / HS_ITERATIONS);
  costs['HS256 verify, distinct tokens (cache miss)'] = round(timeVerify(hsVerifier, hsTokens, nowMs, true));
  const repeated = new Array<string>(HS_ITERATIONS).fill(hsTokens[HS_ITERATIONS - 1] as string);
  costs['HS256 verify, repeated token (cache hit)'] = round(timeVerify(hsVerifier, repeated, nowMs, true));
  // Same shape, wrong key: what a flood of forged tokens costs (no payload is parsed).
  const forged = hsTokens.slice(0, ASYMMETRIC_ITERATIONS * 5).map((t) => `${t.slice(0, t.lastIndexOf('.'))}.${'A'.repeat(42)}E`);
  costs['HS256 verify, bad signature'] = round(timeVerify(hsVerifier, forged, nowMs, false));

  for (const alg of ['EdDSA', 'ES256'] as const) {
    const pair = alg === 'EdDSA' ? generateKeyPairSync('ed25519') : generateKeyPairSync('ec', { namedCurve: 'P-256' });
    const verifier = new BuyerTokenVerifier(baseConfig({ publicKey: pair.publicKey }));
    const warm = Array.from({ length: WARMUP_ITERATIONS / 4 }, (_, i) => signAsymmetric(alg, pair.privateKey, buyerClaims(-i - 1, nowMs)));
    timeVerify(verifier, warm, nowMs, true);
    const tokens = Array.from({ length: ASYMMETRIC_ITERATIONS }, (_, i) => signAsymmetric(alg, pair.privateKey, buyerClaims(i, nowMs)));
    costs[`${alg} verify, distinct tokens (cache miss)`] = round(timeVerify(verifier, tokens, nowMs, true));
  }
  return costs;
}

const runAsMain = process.argv[1] !== undefined && import.meta.url === pathToFileURL(process.argv[1]).href;
if (runAsMain) {
  console.log(`machine: ${os.cpus()[0]?.model ?? 'unknown cpu'}, ${os.cpus().length} cpus, node ${process.version}`);
  console.log(`iterations: ${HS_ITERATIONS} (HS256), ${ASYMMETRIC_ITERATIONS} (EdDSA, ES256); token ~${mintBuyerToken(SECRET, buyerClaims(0, Date.now())).length} characters`);
  for (const [name, us] of Object.entries(await measureBuyerTokenCosts())) console.log(`${name}: ${us} µs`);
}
