// Reads the engine's settings from environment variables (shared/API.md "Starting it"),
// validates every one, and fails at start with a message naming the variable, rather
// than running with a setting it did not understand.

import { availableParallelism, hostname } from 'node:os';
import { resolve } from 'node:path';

export const Role = { all: 'all', gateway: 'gateway', shards: 'shards' } as const;
export type Role = (typeof Role)[keyof typeof Role];

export interface EngineConfig {
  port: number;
  host: string;
  dataDir: string;
  shardCount: number;
  ipRps: number;
  buyerRps: number;
  adminToken: string | null;
  /** FLASH_TOKENS_FILE: caller tokens with roles, names and channels. */
  tokensFile: string | null;
  /** Explicit development mode: every call allowed without a token. Never on by default. */
  devMode: boolean;
  /** Take the client IP from X-Forwarded-For (only behind a proxy you control). */
  trustProxy: boolean;
  natsUrl: string | null;
  natsUser: string | null;
  natsPassword: string | null;
  /** Subject and bucket prefix, so several engines can share one NATS cluster. */
  natsPrefix: string;
  /** Shard ownership lease time to live (NATS roles). */
  leaseTtlMs: number;
  /** Replicas of the lease bucket when created (set 3 on a 3-node NATS cluster). */
  leaseReplicas: number;
  /** Replicas of each shard's log stream and of the snapshot store when created (3 on a 3-node cluster). */
  logReplicas: number;
  /** This process's name in leases and logs. */
  nodeName: string;
  role: Role;
  shardIds: number[] | null;
  mailboxMax: number;
  /** HTTP requests in progress before new ones are answered 503 at once, unread. */
  httpInFlightMax: number;
  /** FLASH_HTTP_LANE: the API's own HTTP/1.1 lane in front of node:http (default on; 0: node:http alone). */
  httpLane: boolean;
  /** FLASH_HTTP_REQUEST_TIMEOUT_MS: a request not received whole within this is answered 408 `request_timeout` and its connection closed. */
  httpRequestTimeoutMs: number;
  snapshotEveryCommands: number;
  /** Snapshots by a checkpointer thread per shard (FLASH_CHECKPOINTER, default on), never on the shard's thread. */
  checkpointer: boolean;
  /** FLASH_CHECKPOINT_CPU_PERCENT: the share of one core a checkpoint's encoding and writing may take (5..100); null: 100 when the checkpointer's priority is lowered, else 25. */
  checkpointCpuPercent: number | null;
  /** FLASH_CHECKPOINT_NICE: the checkpointer thread's nice value on Linux (0..19, default 19; 0 leaves it). */
  checkpointNice: number;
  /** FLASH_REUSE_PORT: gateways (FLASH_ROLE=gateway) on one machine share the port (SO_REUSEPORT). */
  reusePort: boolean;
  logLevel: string;
  shutdownGraceMs: number;
}

export class ConfigError extends Error {
  override readonly name = 'ConfigError';
}

type Env = Record<string, string | undefined>;

function int(env: Env, name: string, fallback: number, min: number, max: number): number {
  const raw = env[name];
  if (raw === undefined || raw.trim() === '') return fallback;
  const n = Number(raw);
  if (!Number.isInteger(n) || n < min || n > max) {
    throw new ConfigError(`${name}=${raw} is not an integer in ${min}..${max}`);
  }
  return n;
}

function bool(env: Env, name: string): boolean {
  const raw = (env[name] ?? '').trim().toLowerCase();
  if (raw === '' || raw === '0' || raw === 'false' || raw === 'no') return false;
  if (raw === '1' || raw === 'true' || raw === 'yes') return true;
  throw new ConfigError(`${name}=${env[name]} is not a boolean (use 1 or 0)`);
}

function shardIds(env: Env, shardCount: number): number[] | null {
  const raw = env.FLASH_SHARD_IDS;
  if (raw === undefined || raw.trim() === '') return null;
  const ids = raw.split(',').map((s) => Number(s.trim()));
  for (const id of ids) {
    if (!Number.isInteger(id) || id < 0 || id >= shardCount) {
      throw new ConfigError(`FLASH_SHARD_IDS=${raw}: every id must be an integer in 0..${shardCount - 1}`);
    }
  }
  return [...new Set(ids)].sort((a, b) => a - b);
}

/** Whether this Node's server.listen() takes reusePort: 22.12 and later on 22, 23.1 and later. */
export function nodeHasReusePort(nodeVersion = process.versions.node): boolean {
  const [major = 0, minor = 0] = nodeVersion.split('.').map(Number);
  return major > 23 || (major === 23 && minor >= 1) || (major === 22 && minor >= 12);
}

/**
 * FLASH_REUSE_PORT=1: several gateway processes on one machine listen on the same port and
 * the kernel spreads connections over them. Only gateways, which hold no state: two engines
 * hosting shards behind one port would each sell the same stock.
 */
function reusePort(env: Env, role: string, nodeVersion = process.versions.node): boolean {
  if (!bool(env, 'FLASH_REUSE_PORT')) return false;
  if (role !== 'gateway') {
    throw new ConfigError(`FLASH_REUSE_PORT=1 is for FLASH_ROLE=gateway (stateless gateways in front of shard nodes over NATS); this is FLASH_ROLE=${role}, which hosts shards, and two of those behind one port would each sell the same stock`);
  }
  if (!nodeHasReusePort(nodeVersion)) {
    throw new ConfigError(`FLASH_REUSE_PORT=1 needs Node 22.12 or later on 22, or 23.1 or later (server.listen's reusePort); this is Node ${nodeVersion}`);
  }
  return true;
}

function prefix(env: Env): string {
  const p = env.FLASH_NATS_PREFIX?.trim() || 'flash';
  if (!/^[A-Za-z0-9_-]{1,32}$/.test(p)) throw new ConfigError(`FLASH_NATS_PREFIX=${p} must be 1..32 characters of [A-Za-z0-9_-]`);
  return p;
}

export function loadConfig(env: Env = process.env): EngineConfig {
  const role = (env.FLASH_ROLE ?? 'all') as Role;
  if (!Object.values(Role).includes(role)) throw new ConfigError(`FLASH_ROLE=${role} must be one of all, gateway, shards`);
  const defaultShards = Math.max(1, Math.min(4, availableParallelism() - 1));
  const shardCount = int(env, 'FLASH_SHARDS', defaultShards, 1, 1024);
  // Surrounding whitespace (a trailing newline from a secret file) is not part of a token.
  const token = env.FLASH_ADMIN_TOKEN?.trim();
  if (token !== undefined && token !== '' && (token.length < 8 || /\s/.test(token))) {
    throw new ConfigError('FLASH_ADMIN_TOKEN must be at least 8 characters with no spaces');
  }
  const natsUrl = env.FLASH_NATS_URL?.trim() || null;
  if (role !== 'all' && natsUrl === null) throw new ConfigError(`FLASH_ROLE=${role} needs FLASH_NATS_URL`);
  return {
    port: int(env, 'PORT', 8080, 0, 65535),
    host: env.HOST?.trim() || '127.0.0.1',
    dataDir: resolve(env.FLASH_DATA_DIR?.trim() || './data'),
    shardCount,
    ipRps: int(env, 'FLASH_IP_RPS', 0, 0, 1_000_000),
    buyerRps: int(env, 'FLASH_BUYER_RPS', 20, 0, 1_000_000),
    adminToken: token === undefined || token === '' ? null : token,
    tokensFile: env.FLASH_TOKENS_FILE?.trim() ? resolve(env.FLASH_TOKENS_FILE.trim()) : null,
    devMode: bool(env, 'FLASH_DEV'),
    trustProxy: bool(env, 'FLASH_TRUST_PROXY'),
    natsUrl,
    natsUser: env.FLASH_NATS_USER?.trim() || null,
    natsPassword: env.FLASH_NATS_PASSWORD ?? null,
    natsPrefix: prefix(env),
    leaseTtlMs: int(env, 'FLASH_LEASE_TTL_MS', 3000, 500, 600_000),
    leaseReplicas: int(env, 'FLASH_LEASE_REPLICAS', 1, 1, 5),
    logReplicas: int(env, 'FLASH_LOG_REPLICAS', 1, 1, 5),
    nodeName: env.FLASH_NODE_NAME?.trim() || `${hostname()}-${process.pid}`,
    role,
    shardIds: shardIds(env, shardCount),
    mailboxMax: int(env, 'FLASH_MAILBOX_MAX', 20_000, 1, 10_000_000),
    httpInFlightMax: int(env, 'FLASH_HTTP_INFLIGHT_MAX', 10_000, 1, 10_000_000),
    httpLane: (env.FLASH_HTTP_LANE ?? '').trim() === '' ? true : bool(env, 'FLASH_HTTP_LANE'),
    httpRequestTimeoutMs: int(env, 'FLASH_HTTP_REQUEST_TIMEOUT_MS', 30_000, 1_000, 600_000),
    snapshotEveryCommands: int(env, 'FLASH_SNAPSHOT_EVERY', 1_000_000, 1, 1_000_000_000),
    checkpointer: (env.FLASH_CHECKPOINTER ?? '').trim() === '' ? true : bool(env, 'FLASH_CHECKPOINTER'),
    checkpointCpuPercent: (env.FLASH_CHECKPOINT_CPU_PERCENT ?? '').trim() === '' ? null : int(env, 'FLASH_CHECKPOINT_CPU_PERCENT', 100, 5, 100),
    checkpointNice: int(env, 'FLASH_CHECKPOINT_NICE', 19, 0, 19),
    reusePort: reusePort(env, role),
    logLevel: logLevel(env),
    shutdownGraceMs: int(env, 'FLASH_SHUTDOWN_GRACE_MS', 10_000, 0, 600_000),
  };
}

/** pino's levels (and `silent`). */
export const logLevels = ['fatal', 'error', 'warn', 'info', 'debug', 'trace', 'silent'] as const;

/** LOG_LEVEL, checked like every other setting: a typo is a clear ConfigError, not pino's stack trace. */
export function logLevel(env: Record<string, string | undefined>): string {
  const raw = env.LOG_LEVEL?.trim() ?? '';
  if (raw === '') return 'info';
  if (!(logLevels as readonly string[]).includes(raw)) throw new ConfigError(`LOG_LEVEL=${raw} is not a log level: use one of ${logLevels.join(', ')}`);
  return raw;
}
