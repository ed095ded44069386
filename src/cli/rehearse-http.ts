// The calls `flash rehearse` makes outside the load's connections (setting up SKUs and drops,
// paying after a sell-out, polling a queue, reading SKU views, cleaning up), each counted by
// route and status in the run's ledger like the load itself; the credentials of the run (an
// operator for setup and reads, the shop, the payments side, buyer tokens minted with the
// shop's secret); and the engine's own counters read from /metrics. No call follows a
// redirect: a 3xx answer is a failed call (it would carry the run's tokens and writes to
// wherever the Location points, past the check of the target).

import { mintBuyerToken } from '../gateway/buyer-token.js';
import { CliError, Exit, hint, unreachable, type Connection } from './flash-client.js';
import type { Ledger, PhaseLog, StepLog } from './rehearse-load.js';
import { errorCodeOf } from './rehearse-load.js';

export interface Reply {
  /** 0: no answer (network error or timeout). */
  status: number;
  body: unknown;
  text: string;
  code: string | null;
}

export interface Credentials {
  /** Setup (SKUs, drops, stock) and reads (SKU views, the ERP report). */
  operator: { value: string; source: string } | null;
  shop: { value: string; source: string } | null;
  payments: { value: string; source: string } | null;
  /** HS256 secret of buyer tokens (FLASH_BUYER_TOKEN_SECRET); never printed. */
  buyerSecret: { value: string; source: string } | null;
  audience: string | null;
}

/** Where an answer is filed besides the ledger: a phase's step (latency, outcomes, per second). */
export interface Filing {
  phase: PhaseLog;
  step: StepLog;
}

export class Api {
  constructor(readonly conn: Connection, readonly ledger: Ledger) {}

  get url(): string {
    return this.conn.url;
  }

  /** One call; any HTTP answer is returned; no answer is status 0 (and filed as such). */
  async tryCall(route: string, method: string, path: string, opts: { token?: string | null; body?: unknown; filing?: Filing; signal?: AbortSignal } = {}): Promise<Reply & { error?: unknown; location?: string }> {
    const headers: Record<string, string> = { accept: 'application/json' };
    if (opts.token) headers.authorization = `Bearer ${opts.token}`;
    if (opts.body !== undefined) headers['content-type'] = 'application/json';
    const started = performance.now();
    const timeout = AbortSignal.timeout(this.conn.timeoutMs);
    let status = 0;
    let text = '';
    let location: string | null = null;
    try {
      const res = await fetch(this.conn.url + path, {
        method, headers, body: opts.body === undefined ? undefined : JSON.stringify(opts.body), redirect: 'manual',
        signal: opts.signal === undefined ? timeout : AbortSignal.any([timeout, opts.signal]),
      });
      location = res.headers.get('location');
      text = await res.text();
      status = res.status;
    } catch (e) {
      const timedOut = e instanceof Error && (e.name === 'TimeoutError' || e.name === 'AbortError');
      const code = timedOut ? 'timeout' : 'connection error';
      this.ledger.lost(route);
      if (opts.filing !== undefined) opts.filing.phase.record(opts.filing.step, route, 0, code, 0, this.ledger.now());
      return { status: 0, body: undefined, text: '', code, error: e };
    }
    if (status >= 300 && status < 400) {
      // Not followed: a failed call, filed as `3xx redirect`.
      if (opts.filing !== undefined) opts.filing.phase.record(opts.filing.step, route, status, 'redirect', (performance.now() - started) * 1000, this.ledger.now());
      else this.ledger.count(route, status);
      return { status, body: undefined, text, code: 'redirect', location: redirectTarget(location) };
    }
    let body: unknown;
    try {
      body = text === '' ? undefined : JSON.parse(text);
    } catch {
      body = undefined;
    }
    const code = status >= 300 ? errorCodeOf(text) : null;
    if (opts.filing !== undefined) opts.filing.phase.record(opts.filing.step, route, status, code, (performance.now() - started) * 1000, this.ledger.now());
    else {
      this.ledger.count(route, status);
      if (status >= 400 && status < 500 && code !== null) this.ledger.refused(code);
    }
    return { status, body, text, code };
  }

  /** A call that must be answered by the engine itself: no answer, or a redirect, ends the run (exit 3). */
  async call(route: string, method: string, path: string, opts: { token?: string | null; body?: unknown } = {}): Promise<Reply> {
    const r = await this.tryCall(route, method, path, opts);
    if (r.status === 0) throw unreachable(this.conn, r.error);
    if (r.code === 'redirect') {
      throw new CliError(Exit.unreachable, `${method} ${path} answered ${r.status}, a redirect${r.location === undefined ? '' : ` to ${r.location}`}: flash rehearse follows no redirect (it would take the run's tokens and load past the check of the target); point --url at the engine itself`);
    }
    return r;
  }

  /** A call that must answer 2xx (or a status of `accept`): else exit 1 (4xx) or 3 (no answer, a redirect, 5xx). */
  async expect(what: string, route: string, method: string, path: string, opts: { token?: string | null; body?: unknown; tokenSource?: string; accept?: readonly number[] } = {}): Promise<Reply> {
    const r = await this.call(route, method, path, opts);
    if ((r.status >= 200 && r.status < 300) || opts.accept?.includes(r.status) === true) return r;
    const message = ((r.body as { error?: { message?: unknown } } | undefined)?.error?.message as string | undefined) ?? r.text.slice(0, 200);
    const refused = r.status >= 400 && r.status < 500 && r.status !== 429;
    const h = !refused ? '' : r.code === 'unauthorized' || r.code === 'forbidden'
      ? `the token${opts.tokenSource === undefined ? '' : ` from ${opts.tokenSource}`} was refused: give an operator (or admin) token with --operator-token, FLASH_OPERATOR_TOKEN or --token`
      : hint(this.conn, r.code ?? '');
    throw new CliError(refused ? Exit.refused : Exit.unreachable, `${what} ${refused ? 'refused' : 'failed'}: ${r.status} ${r.code ?? ''}: ${message}${h === '' ? '' : ` (${h})`}`);
  }
}

/** Buyer ids of a run and their tokens (HS256, sub = buyerId, exp, aud when configured). */
export class Buyers {
  private readonly expSeconds: number;

  constructor(private readonly secret: string | null, private readonly audience: string | null, hours = 6) {
    this.expSeconds = Math.floor(Date.now() / 1000) + hours * 3600;
  }

  get canMint(): boolean {
    return this.secret !== null;
  }

  token(buyerId: string): string {
    if (this.secret === null) throw new Error('no buyer-token secret');
    const claims: Record<string, unknown> = { sub: buyerId, exp: this.expSeconds };
    if (this.audience !== null) claims.aud = this.audience;
    return mintBuyerToken(this.secret, claims);
  }

}

/** Where a redirect points, without any user or password in it (never printed). */
function redirectTarget(location: string | null): string | undefined {
  if (location === null) return undefined;
  try {
    const u = new URL(location, 'http://relative.invalid');
    return u.host === 'relative.invalid' ? u.pathname : u.origin;
  } catch {
    return undefined;
  }
}

/** Runs `f` over the items, `concurrency` at a time. */
export async function eachLimit<T>(items: readonly T[], concurrency: number, f: (item: T, i: number) => Promise<void>, signal?: AbortSignal): Promise<void> {
  let next = 0;
  const worker = async (): Promise<void> => {
    while (next < items.length && signal?.aborted !== true) {
      const i = next++;
      await f(items[i]!, i);
    }
  };
  await Promise.all(Array.from({ length: Math.min(concurrency, items.length) }, worker));
}

// ---------------------------------------------------------------------------------------
// The engine's own counters

export interface EngineCounters {
  /** flash_http_requests_total: route -> status -> count. */
  requests: Map<string, Map<number, number>>;
  /** flash_refusals_total summed over routes: code -> count. */
  refusals: Map<string, number>;
  /** flash_reserve_duration_seconds buckets (le in seconds, cumulative). */
  reserveBuckets: { le: number; count: number }[];
  /** flash_build_info's role (all: embedded; gateway: shards over NATS). */
  role: string | null;
  version: string | null;
}

function labels(s: string): Record<string, string> {
  const out: Record<string, string> = {};
  for (const m of s.matchAll(/(\w+)="((?:[^"\\]|\\.)*)"/g)) out[m[1]!] = m[2]!.replace(/\\(.)/g, '$1');
  return out;
}

export function parseMetrics(text: string): EngineCounters {
  const c: EngineCounters = { requests: new Map(), refusals: new Map(), reserveBuckets: [], role: null, version: null };
  for (const line of text.split('\n')) {
    // Label values may hold braces (route="GET /v1/skus/{sku}"): read them as quoted strings.
    const m = /^([a-z_:]+)\{((?:[^"}]|"(?:[^"\\]|\\.)*")*)\}\s+(\S+)/.exec(line);
    if (m === null) continue;
    const [, name, rawLabels, rawValue] = m;
    const v = Number(rawValue);
    const l = labels(rawLabels!);
    if (name === 'flash_http_requests_total' && l.route !== undefined && l.status !== undefined) {
      let r = c.requests.get(l.route);
      if (r === undefined) c.requests.set(l.route, (r = new Map()));
      r.set(Number(l.status), v);
    } else if (name === 'flash_refusals_total' && l.code !== undefined) {
      c.refusals.set(l.code, (c.refusals.get(l.code) ?? 0) + v);
    } else if (name === 'flash_reserve_duration_seconds_bucket' && l.le !== undefined) {
      c.reserveBuckets.push({ le: l.le === '+Inf' ? Infinity : Number(l.le), count: v });
    } else if (name === 'flash_build_info') {
      c.role = l.role ?? null;
      c.version = l.version ?? null;
    }
  }
  c.reserveBuckets.sort((a, b) => a.le - b.le);
  return c;
}

/** The engine's /metrics, or null when it cannot be read (protected, or not an engine). */
export async function scrapeMetrics(api: Api): Promise<EngineCounters | null> {
  const r = await api.tryCall('metrics', 'GET', '/metrics');
  if (r.status !== 200 || !r.text.includes('flash_')) return null;
  return parseMetrics(r.text);
}

/** after - before, per route and status (counters only grow; a restart shows as a drop and is kept as is). */
export function counterDelta(before: EngineCounters, after: EngineCounters): { requests: Map<string, Map<number, number>>; refusals: Map<string, number>; reserveBuckets: { le: number; count: number }[] } {
  const requests = new Map<string, Map<number, number>>();
  for (const [route, statuses] of after.requests) {
    for (const [status, v] of statuses) {
      const d = v - (before.requests.get(route)?.get(status) ?? 0);
      if (d === 0) continue;
      let r = requests.get(route);
      if (r === undefined) requests.set(route, (r = new Map()));
      r.set(status, d);
    }
  }
  const refusals = new Map<string, number>();
  for (const [code, v] of after.refusals) {
    const d = v - (before.refusals.get(code) ?? 0);
    if (d !== 0) refusals.set(code, d);
  }
  const reserveBuckets = after.reserveBuckets.map((b) => ({ le: b.le, count: b.count - (before.reserveBuckets.find((x) => x.le === b.le)?.count ?? 0) }));
  return { requests, refusals, reserveBuckets };
}

/** The upper bound (ms) of the bucket holding the q-quantile of cumulative buckets, as histogram_quantile would bound it. */
export function bucketQuantileMs(buckets: readonly { le: number; count: number }[], q: number): number | null {
  const total = buckets[buckets.length - 1]?.count ?? 0;
  if (total <= 0) return null;
  const rank = q * total;
  for (const b of buckets) if (b.count >= rank) return b.le === Infinity ? Infinity : b.le * 1000;
  return null;
}
