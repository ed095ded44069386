// Reads the ERP hand-off settings (FLASH_ERP_*) from the environment, validates every one,
// and fails with a ConfigError naming the variable, rather than delivering with a setting
// it did not understand. The hand-off is off (null) unless a webhook or PostgreSQL URL is
// set; it never logs or returns the secret or a database password in a description.

import { ConfigError } from '../config.js';
import { checkedTableName, refundsTableName, refundsTableSuffix } from './pg-table-sql.js';

export type ErpSinkConfig =
  | { kind: 'webhook'; url: string; secret: string }
  | { kind: 'postgres'; url: string; table: string; batchEventsMax: number };

export interface ErpConfig {
  sink: ErpSinkConfig;
  /** FLASH_ERP_MAX_RPS: calls started in any 1 s window, across the deployment (one deliverer runs). */
  maxRps: number;
  /** FLASH_ERP_CONCURRENCY: calls in flight, across the deployment. */
  concurrency: number;
  /** FLASH_ERP_TIMEOUT_MS: one call, start to full answer. */
  timeoutMs: number;
  /** FLASH_ERP_WINDOW: events fetched but not yet acknowledged, per shard. */
  windowEventsPerShard: number;
  /** FLASH_ERP_RETRY_BASE_MS / FLASH_ERP_RETRY_MAX_MS: backoff ceiling of the first retry, and the cap. */
  retryBaseMs: number;
  retryMaxMs: number;
  /** FLASH_ERP_POLL_MS: how often to look for new paid events when nothing wakes the deliverer. */
  pollMs: number;
}

type Env = Record<string, string | undefined>;

function int(env: Env, name: string, fallback: number, min: number, max: number): number {
  const raw = env[name];
  if (raw === undefined || raw.trim() === '') return fallback;
  const n = Number(raw.trim());
  if (!/^\d+$/.test(raw.trim()) || !Number.isSafeInteger(n) || n < min || n > max) {
    throw new ConfigError(`${name}=${raw} is not an integer in ${min}..${max}`);
  }
  return n;
}

function url(env: Env, name: string, protocols: readonly string[]): string | null {
  const raw = env[name]?.trim();
  if (raw === undefined || raw === '') return null;
  let parsed: URL;
  try {
    parsed = new URL(raw);
  } catch {
    throw new ConfigError(`${name} is not a valid URL`);
  }
  if (!protocols.includes(parsed.protocol)) throw new ConfigError(`${name} must be a ${protocols.map((p) => p.replace(':', '://')).join(' or ')} URL`);
  return raw;
}

function sinkConfig(env: Env): ErpSinkConfig | null {
  const webhook = url(env, 'FLASH_ERP_WEBHOOK_URL', ['http:', 'https:']);
  const pgUrl = url(env, 'FLASH_ERP_PG_URL', ['postgres:', 'postgresql:']);
  if (webhook !== null && pgUrl !== null) throw new ConfigError('set only one of FLASH_ERP_WEBHOOK_URL and FLASH_ERP_PG_URL');
  if (webhook !== null) {
    const secret = env.FLASH_ERP_SECRET ?? '';
    if (secret.length < 16) throw new ConfigError('FLASH_ERP_SECRET must be set, at least 16 characters, when FLASH_ERP_WEBHOOK_URL is set');
    return { kind: 'webhook', url: webhook, secret };
  }
  if (pgUrl !== null) {
    const table = env.FLASH_ERP_PG_TABLE?.trim() || 'flash_orders';
    try {
      checkedTableName(table);
    } catch {
      throw new ConfigError(`FLASH_ERP_PG_TABLE=${table} must be [schema.]table, lower-case [a-z0-9_], starting with a letter or _`);
    }
    try {
      refundsTableName(table);
    } catch {
      throw new ConfigError(`FLASH_ERP_PG_TABLE=${table}: refunds go to ${table}${refundsTableSuffix}, so the table part may have at most `
        + `${63 - refundsTableSuffix.length} characters (PostgreSQL names have at most 63)`);
    }
    return { kind: 'postgres', url: pgUrl, table, batchEventsMax: int(env, 'FLASH_ERP_PG_BATCH', 100, 1, 1000) };
  }
  return null;
}

/** The hand-off settings, or null when neither FLASH_ERP_WEBHOOK_URL nor FLASH_ERP_PG_URL is set. */
export function loadErpConfig(env: Env = process.env): ErpConfig | null {
  const sink = sinkConfig(env);
  if (sink === null) return null;
  return { sink, ...pacing(env) };
}

/**
 * The events webhook (shared/API.md "Operators"): FLASH_EVENTS_WEBHOOK_URL, signed with
 * FLASH_EVENTS_SECRET (else FLASH_ERP_SECRET), paced and retried by the same FLASH_ERP_*
 * settings as orders; null when no URL is set.
 */
export function loadEventsConfig(env: Env = process.env): ErpConfig | null {
  const webhook = url(env, 'FLASH_EVENTS_WEBHOOK_URL', ['http:', 'https:']);
  if (webhook === null) return null;
  const secret = env.FLASH_EVENTS_SECRET || env.FLASH_ERP_SECRET || '';
  if (secret.length < 16) throw new ConfigError('FLASH_EVENTS_SECRET (or FLASH_ERP_SECRET) must be set, at least 16 characters, when FLASH_EVENTS_WEBHOOK_URL is set');
  return { sink: { kind: 'webhook', url: webhook, secret }, ...pacing(env) };
}

function pacing(env: Env): Omit<ErpConfig, 'sink'> {
  const retryBaseMs = int(env, 'FLASH_ERP_RETRY_BASE_MS', 100, 1, 60_000);
  return {
    maxRps: int(env, 'FLASH_ERP_MAX_RPS', 50, 1, 100_000),
    concurrency: int(env, 'FLASH_ERP_CONCURRENCY', 8, 1, 1024),
    timeoutMs: int(env, 'FLASH_ERP_TIMEOUT_MS', 5000, 10, 600_000),
    windowEventsPerShard: int(env, 'FLASH_ERP_WINDOW', 256, 1, 100_000),
    retryBaseMs,
    retryMaxMs: int(env, 'FLASH_ERP_RETRY_MAX_MS', 60_000, retryBaseMs, 3_600_000),
    pollMs: int(env, 'FLASH_ERP_POLL_MS', 200, 10, 60_000),
  };
}

/** The settings for a log line: no secret, no database password. */
export function describeErpConfig(c: ErpConfig): Record<string, unknown> {
  const target = new URL(c.sink.url);
  if (target.password !== '') target.password = '***';
  return {
    sink: c.sink.kind, url: target.toString(), ...(c.sink.kind === 'postgres' ? { table: c.sink.table, batchEventsMax: c.sink.batchEventsMax } : {}),
    maxRps: c.maxRps, concurrency: c.concurrency, timeoutMs: c.timeoutMs, windowEventsPerShard: c.windowEventsPerShard,
    retryBaseMs: c.retryBaseMs, retryMaxMs: c.retryMaxMs, pollMs: c.pollMs,
  };
}
