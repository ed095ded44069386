// The systems `npm run bench` compares, each started fresh for every scenario (a new
// process, a new data dir, Redis key prefix or PostgreSQL schema) and always stopped and
// cleaned up after it: the bare node:http ceiling, the engine embedded, the engine over
// NATS (bench/nats-cluster.ts), and the naive durable, Redis + Lua and PostgreSQL
// baselines. A system whose service or binary is missing says why, and the run reports it
// as skipped.

import { accessSync, constants, mkdtempSync, rmSync } from 'node:fs';
import * as path from 'node:path';
import { randomBytes } from 'node:crypto';
import { loadConfig } from '../src/config.js';
import { createPgSchema, dropPgSchema, pgUnavailable } from './baseline-pg.js';
import { dropRedisNamespace, redisUnavailable } from './baseline-redis.js';
import type { StoreAudit } from './baseline-store.js';
import { progress, repoDir } from './bench-report.js';
import { freePort, startServer } from './child-server.js';
import { settings, type ScenarioKey, type SystemKey } from './compare-settings.js';
import { call, engineEnv, launchEngine } from './engine-under-test.js';
import { gatewayCall, startNatsCluster } from './nats-cluster.js';

export interface StartOptions {
  tmp: string;
  runId: string;
  scenario: ScenarioKey;
}

export type HttpCall = (method: string, urlPath: string, body?: unknown) => Promise<{ status: number; json: Record<string, unknown> }>;

export interface RunningSystem {
  key: SystemKey;
  url: string;
  /** Processes whose memory is sampled (the ones this bench started for the system). */
  pids: number[];
  /** What differs from defaults in this start, in words (reported with the figures). */
  settings: string;
  call: HttpCall;
  /** Baselines: counters recomputed from the reservation records (and `focusSku`'s own); null for the others. */
  audit(focusSku?: string): Promise<StoreAudit | null>;
  /** Stops every process, then deletes the data dir, key prefix or schema. */
  stop(): Promise<void>;
}

export interface SystemSpec {
  key: SystemKey;
  label: string;
  /** False for the bare server: it keeps no stock, so sell-out and flow checks mean nothing. */
  stateful: boolean;
  /** null when it can run here, else why not. */
  unavailable(): Promise<string | null>;
  start(o: StartOptions): Promise<RunningSystem>;
}

const engineShards = (): number => loadConfig(engineEnv(0, '/nonexistent')).shardCount;

const noAudit = async (): Promise<null> => null;

const bare: SystemSpec = {
  key: 'bare', label: 'bare node:http', stateful: false,
  unavailable: async () => null,
  async start() {
    const port = await freePort();
    const s = await startServer({ name: 'bare', args: [path.join(repoDir, 'dist/bench/bare-server.js')], env: { PORT: String(port) }, port, readyPath: '/' });
    return {
      key: 'bare', url: `http://127.0.0.1:${port}`, pids: [s.child.pid!], settings: 'reads the body, answers a fixed 201',
      call: (m, p, b) => call(port, m, p, b), audit: noAudit, stop: async () => void (await s.stop()),
    };
  },
};

/** The embedded engine; `laneOff` starts it with FLASH_HTTP_LANE=0 (node:http reads every request). */
function embeddedEngine(key: 'engine' | 'engine-node-http', label: string, laneOff: boolean): SystemSpec {
  return {
    key, label, stateful: true,
    unavailable: async () => null,
    async start(o) {
      const extraEnv: Record<string, string> = {
        ...(laneOff ? { FLASH_HTTP_LANE: '0' } : {}),
        ...(o.scenario === 'overload' ? { FLASH_MAILBOX_MAX: String(settings.engineOverloadMailboxMax) } : {}),
      };
      const e = await launchEngine(o.tmp, `${key}-${o.scenario}`, { extraEnv });
      const shown = Object.entries(extraEnv).map(([k, v]) => `${k}=${v}`).join(' ');
      return {
        key, url: `http://127.0.0.1:${e.port}`, pids: [e.child.pid!],
        settings: `FLASH_SHARDS=${e.shardCount}${shown === '' ? '' : ` ${shown}`}, WAL fdatasync per turn, FLASH_BUYER_RPS=0 FLASH_IP_RPS=0`,
        call: (m, p, b) => call(e.port, m, p, b), audit: noAudit,
        async stop() {
          await e.stop();
          rmSync(e.dataDir, { recursive: true, force: true });
        },
      };
    },
  };
}

const engine = embeddedEngine('engine', 'engine (embedded)', false);
const engineNodeHttp = embeddedEngine('engine-node-http', 'engine, HTTP lane off (FLASH_HTTP_LANE=0)', true);

function natsBinaryMissing(): string | null {
  const candidates = [process.env.NATS_SERVER_BIN, '/usr/sbin/nats-server', ...(process.env.PATH ?? '').split(path.delimiter).map((d) => path.join(d, 'nats-server'))];
  for (const c of candidates) {
    if (c === undefined || c === '') continue;
    try {
      accessSync(c, constants.X_OK);
      return null;
    } catch {
      // not here
    }
  }
  return 'no nats-server binary (NATS_SERVER_BIN, /usr/sbin/nats-server, PATH)';
}

const engineNats: SystemSpec = {
  key: 'engine-nats', label: 'engine over NATS', stateful: true,
  unavailable: async () => natsBinaryMissing(),
  async start(o) {
    const shardCount = engineShards();
    const dir = mkdtempSync(path.join(o.tmp, `nats-${o.scenario}-`));
    const cluster = await startNatsCluster(dir, { shardCount, nodes: [Array.from({ length: shardCount }, (_, i) => i)], prefix: `b${o.runId}` });
    const port = cluster.gateway.port;
    const mailbox = o.scenario === 'overload' ? ' (FLASH_MAILBOX_MAX stays at its default: nats-cluster.ts takes no extra env)' : '';
    return {
      key: 'engine-nats', url: `http://127.0.0.1:${port}`,
      pids: [cluster.gateway.child.pid!, ...cluster.nodes.map((n) => n.child.pid!), cluster.nats.child.pid!],
      settings: `gateway + 1 shard node + nats-server; ${cluster.env}${mailbox}`,
      call: (m, p, b) => gatewayCall(port, m, p, b), audit: noAudit,
      async stop() {
        await cluster.stopAll();
        rmSync(dir, { recursive: true, force: true });
      },
    };
  },
};

async function startBaseline(key: 'naive' | 'redis' | 'postgres', o: StartOptions, env: Record<string, string>, cleanup: () => Promise<void>): Promise<RunningSystem> {
  const port = await freePort();
  let s;
  try {
    s = await startServer({ name: key, args: [path.join(repoDir, 'dist/bench/baseline-server.js')], env: { ...env, PORT: String(port), BENCH_BASELINE: key }, port, readyPath: '/healthz' });
  } catch (e) {
    await cleanup();
    throw e;
  }
  const server = s;
  const health = (await (await fetch(`http://127.0.0.1:${port}/healthz`)).json()) as { durability?: string };
  return {
    key, url: `http://127.0.0.1:${port}`, pids: [server.child.pid!], settings: `durability: ${health.durability ?? 'unknown'}`,
    call: (m, p, b) => call(port, m, p, b),
    async audit(focusSku?: string) {
      const r = await fetch(`http://127.0.0.1:${port}/bench/audit${focusSku === undefined ? '' : `?sku=${encodeURIComponent(focusSku)}`}`);
      return (await r.json()) as StoreAudit;
    },
    async stop() {
      await server.stop();
      await cleanup();
    },
  };
}

const naive: SystemSpec = {
  key: 'naive', label: 'naive durable server', stateful: true,
  unavailable: async () => null,
  async start(o) {
    // In the bench's temp dir, like the engine's data dir, so both fdatasync on the same file system.
    const dir = mkdtempSync(path.join(o.tmp, `naive-${o.scenario}-`));
    const sys = await startBaseline('naive', o, { BENCH_NAIVE_LOG: path.join(dir, 'changes.jsonl') }, async () => rmSync(dir, { recursive: true, force: true }));
    return { ...sys, settings: `Maps on one thread, pipelined group fdatasync; ${sys.settings}` };
  },
};

const redis: SystemSpec = {
  key: 'redis', label: 'Redis + Lua', stateful: true,
  unavailable: () => redisUnavailable(settings.redisUrl),
  async start(o) {
    const prefix = `flashbench:${o.runId}:${o.scenario}:`;
    const sys = await startBaseline('redis', o, { BENCH_REDIS_URL: settings.redisUrl, BENCH_REDIS_PREFIX: prefix }, async () => {
      const n = await dropRedisNamespace(settings.redisUrl, prefix);
      progress(`redis: deleted ${n} keys under ${prefix}`);
    });
    return { ...sys, settings: `one EVALSHA per reserve, holds in a sorted set swept every 200 ms; ${sys.settings}; key prefix ${prefix}` };
  },
};

const postgres: SystemSpec = {
  key: 'postgres', label: 'PostgreSQL', stateful: true,
  unavailable: () => pgUnavailable(settings.pgUrl),
  async start(o) {
    const schema = `flashbench_${o.runId}_${o.scenario.replace(/-/g, '_')}`;
    await createPgSchema(settings.pgUrl, schema);
    const sys = await startBaseline('postgres', o, { BENCH_PG_URL: settings.pgUrl, BENCH_PG_SCHEMA: schema, BENCH_PG_POOL: String(settings.pgPoolSize) }, async () => {
      await dropPgSchema(settings.pgUrl, schema);
      progress(`postgres: dropped schema ${schema}`);
    });
    return { ...sys, settings: `pg Pool of ${settings.pgPoolSize}; per reserve a lock-free pre-check read, then one transaction (quota upsert, conditional UPDATE + insert, COMMIT); ${sys.settings}; schema ${schema}` };
  },
};

export const systems: Record<SystemKey, SystemSpec> = { bare, engine, 'engine-node-http': engineNodeHttp, 'engine-nats': engineNats, naive, redis, postgres };

/** A short lower-case id for this run's namespaces (Redis prefix, PG schema, NATS prefix). */
export const newRunId = (): string => `${Date.now().toString(36)}${randomBytes(3).toString('hex')}`;
