// Who is calling: caller tokens (FLASH_ADMIN_TOKEN and FLASH_TOKENS_FILE, each with a role
// and a name) and buyer tokens (a JWS the shop minted, verified by buyer-token.ts). Caller
// tokens are kept only as SHA-256 digests and compared in constant time; nothing here ever
// logs or returns a token. A presented token is always checked, even on a public route.

import { createHash, timingSafeEqual } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { ConfigError } from '../config.js';
import { channelNameError, textError } from '../domain/index.js';
import { BuyerTokenVerifier, type BuyerClaims, type BuyerTokenConfig } from './buyer-token.js';
import { Roles, type CallerKind, type Role } from './routes.js';

/** A caller token's identity: its role, its name (the audit trail's actor) and its channel. */
export interface CallerToken {
  role: Role;
  name: string;
  /** Only for `shop` tokens: the storefront its reservations are on. */
  channel: string | null;
}

export type Caller =
  | ({ kind: Role } & CallerToken)
  | { kind: 'buyer'; name: string; claims: BuyerClaims }
  /** No token, on a public route. */
  | { kind: 'anonymous'; name: 'anonymous' };

/** A caller, or why the authorization header was refused (answered 401). */
export type AuthResult = { ok: true; caller: Caller } | { ok: false; message: string };

/** The token length a caller token must have at least (a sha256 entry is trusted as given). */
export const callerTokenLengthMin = 16;

interface Entry extends CallerToken {
  digest: Buffer;
}

const sha256 = (text: string): Buffer => createHash('sha256').update(text).digest();

/** Reads a FLASH_TOKENS_FILE: `[{"name","role","token" | "sha256","channel"?}]`. Throws ConfigError naming the entry. */
export function parseTokensFile(text: string, source: string): Entry[] {
  let list: unknown;
  try {
    list = JSON.parse(text.replace(/^\uFEFF/, ''));
  } catch (e) {
    throw new ConfigError(`${source} is not valid JSON: ${(e as Error).message}`);
  }
  if (!Array.isArray(list)) throw new ConfigError(`${source} must be a JSON array of {"name","role","token" or "sha256","channel"?}`);
  return list.map((item: unknown, i) => parseEntry(item, `${source} entry ${i + 1}`));
}

const entryKeys = ['name', 'role', 'token', 'sha256', 'channel'];

function parseEntry(item: unknown, where: string): Entry {
  if (item === null || typeof item !== 'object' || Array.isArray(item)) throw new ConfigError(`${where} must be an object`);
  // A misspelt key ("chanel") would silently change what the token may do: refuse it.
  const unknown = Object.keys(item).filter((k) => !entryKeys.includes(k));
  if (unknown.length > 0) throw new ConfigError(`${where}: unknown key ${unknown[0]}; an entry has ${entryKeys.join(', ')}`);
  const get = (k: string): unknown => (Object.prototype.hasOwnProperty.call(item, k) ? (item as Record<string, unknown>)[k] : undefined);
  const name = get('name');
  const badName = textError(name, 'name', 64);
  if (badName !== null) throw new ConfigError(`${where}: ${badName}`);
  const role = get('role');
  if (typeof role !== 'string' || !(Roles as readonly string[]).includes(role)) throw new ConfigError(`${where}: role must be one of ${Roles.join(', ')}`);
  const token = get('token');
  const digestHex = get('sha256');
  if ((token === undefined) === (digestHex === undefined)) throw new ConfigError(`${where}: give exactly one of token and sha256`);
  let digest: Buffer;
  if (token !== undefined) {
    if (typeof token !== 'string' || token.length < callerTokenLengthMin || /\s/.test(token)) {
      throw new ConfigError(`${where}: token must be at least ${callerTokenLengthMin} characters with no spaces`);
    }
    digest = sha256(token);
  } else {
    if (typeof digestHex !== 'string' || !/^[0-9a-fA-F]{64}$/.test(digestHex)) throw new ConfigError(`${where}: sha256 must be 64 hex digits (the token's SHA-256)`);
    digest = Buffer.from(digestHex, 'hex');
  }
  const channel = get('channel') ?? null;
  if (channel !== null) {
    if (role !== 'shop') throw new ConfigError(`${where}: only shop tokens may name a channel`);
    const bad = channelNameError(channel);
    if (bad !== null) throw new ConfigError(`${where}: ${bad}`);
  }
  return { name: name as string, role: role as Role, channel: channel as string | null, digest };
}

export interface AuthConfig {
  adminToken: string | null;
  tokensFile: string | null;
  buyerTokens: BuyerTokenConfig | null;
  devMode: boolean;
}

export class Authenticator {
  private readonly byDigest = new Map<string, Entry>();
  /**
   * Caller tokens already matched, by the token itself, so a known caller's request does not
   * hash its token again (a sha256 per request was 7 % of the gateway thread's time). It only
   * ever holds configured tokens, so it is bounded by the tokens file.
   */
  private readonly matched = new Map<string, Caller>();
  readonly buyers: BuyerTokenVerifier | null;

  constructor(private readonly config: AuthConfig, entries: Entry[] = []) {
    if (config.adminToken !== null) this.add({ name: 'admin', role: 'admin', channel: null, digest: sha256(config.adminToken) }, 'FLASH_ADMIN_TOKEN');
    for (const e of entries) this.add(e, 'FLASH_TOKENS_FILE');
    this.buyers = config.buyerTokens === null ? null : new BuyerTokenVerifier(config.buyerTokens);
  }

  static load(config: AuthConfig): Authenticator {
    const entries = config.tokensFile === null ? [] : parseTokensFile(readTokensFile(config.tokensFile), `FLASH_TOKENS_FILE ${config.tokensFile}`);
    return new Authenticator(config, entries);
  }

  private add(e: Entry, source: string): void {
    const key = e.digest.toString('hex');
    if (this.byDigest.has(key)) throw new ConfigError(`${source}: the token of ${e.name} is also another caller's token; every token must be distinct`);
    this.byDigest.set(key, e);
  }

  get devMode(): boolean {
    return this.config.devMode;
  }

  /** Whether any credential is configured (else only FLASH_DEV lets anyone in). */
  get hasCredentials(): boolean {
    return this.byDigest.size > 0 || this.buyers !== null;
  }

  /**
   * The caller of a request from its `authorization` header. With no header: the dev
   * caller (an admin) in FLASH_DEV, else anonymous (which only public routes accept).
   */
  authenticate(header: string | undefined, nowMs: number): AuthResult {
    if (header === undefined || header === '') {
      return { ok: true, caller: this.config.devMode ? devCaller : anonymous };
    }
    if (header.length < 8 || header.slice(0, 7).toLowerCase() !== 'bearer ') return { ok: false, message: 'the authorization header must be "Bearer <token>"' };
    const token = header.slice(7).trim();
    if (token === '') return { ok: false, message: 'the bearer token is empty' };
    const known = this.matched.get(token);
    if (known !== undefined) return { ok: true, caller: known };
    const digest = sha256(token);
    const entry = this.byDigest.get(digest.toString('hex'));
    if (entry !== undefined && timingSafeEqual(digest, entry.digest)) {
      const caller: Caller = Object.freeze({ kind: entry.role, role: entry.role, name: entry.name, channel: entry.channel });
      this.matched.set(token, caller);
      return { ok: true, caller };
    }
    if (this.buyers === null) return { ok: false, message: 'the token is not a known caller token (and buyer tokens are not configured)' };
    const v = this.buyers.verify(token, nowMs);
    if (!v.ok) {
      // Not even shaped like a JWS: most likely a caller token nobody configured.
      if (v.reason === 'malformed' && token.split('.').length !== 3) return { ok: false, message: 'the token is not a caller token this engine knows, nor a buyer token (a JWS)' };
      return { ok: false, message: v.message };
    }
    return { ok: true, caller: { kind: 'buyer', name: `buyer:${v.claims.buyerId}`, claims: v.claims } };
  }

  /** Whether `caller` may call a route open to `kinds` (the dev caller is an admin). */
  static allowed(caller: Caller, kinds: readonly CallerKind[]): boolean {
    return caller.kind !== 'anonymous' && kinds.includes(caller.kind);
  }

  /** A line for the start-up log: which callers this engine accepts (never a token). */
  describe(): string {
    if (this.config.devMode) return 'FLASH_DEV is on: every call is allowed without a token (never use this in production)';
    const parts: string[] = [];
    const byRole = new Map<string, number>();
    for (const e of this.byDigest.values()) byRole.set(e.role, (byRole.get(e.role) ?? 0) + 1);
    if (byRole.size > 0) parts.push(`caller tokens ${[...byRole].map(([r, n]) => `${r} ${n}`).join(', ')}`);
    if (this.buyers !== null) parts.push(`buyer tokens ${this.buyers.algorithms.join('/')}${this.config.buyerTokens?.audience ? ` for audience ${this.config.buyerTokens.audience}` : ''}`);
    if (parts.length === 0) return 'no credential is configured: every call except the public reads (GET /v1/skus/{sku}, GET /v1/drops/{dropId} and its /order), /healthz and /metrics is refused';
    return `accepting ${parts.join('; ')}`;
  }
}

const devCaller: Caller = { kind: 'admin', role: 'admin', name: 'dev', channel: null };
const anonymous: Caller = { kind: 'anonymous', name: 'anonymous' };

function readTokensFile(path: string): string {
  try {
    return readFileSync(path, 'utf8');
  } catch (e) {
    throw new ConfigError(`FLASH_TOKENS_FILE ${path} cannot be read: ${(e as Error).message}`);
  }
}
