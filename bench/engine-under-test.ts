// The engine as bench:http sees it: a child `node dist/src/main.js` on a free port with a
// fresh data dir and a random admin token, plus the few calls the bench makes to it (create
// SKUs, read their counters, count the records in its logs). It never touches a real data dir.

import { randomBytes } from 'node:crypto';
import { mkdtempSync, readFileSync, readdirSync, writeFileSync } from 'node:fs';
import * as path from 'node:path';
import { loadConfig } from '../src/config.js';
import { repoDir } from './bench-report.js';
import { freePort, startServer, type ChildServer } from './child-server.js';

export interface SkuSetup {
  count: number;
  stock: number;
  /** maxPerBuyer of every odd SKU (even ones have none), so both reserve paths run. */
  maxPerBuyerOnOddSkus: number;
}

export interface Engine extends ChildServer {
  dataDir: string;
  shardCount: number;
}

const token = randomBytes(12).toString('hex');

export const skuName = (i: number): string => `bench-${i}`;

/** The bearer token of the bench's engines, for callers that start other roles (NATS). */
export const adminToken = token;
/** The shop backend's token: reserves carry it, as a shop's checkout calls would. */
export const shopToken = `bench-shop-${randomBytes(12).toString('hex')}`;
/** The payment side's token: pays carry it. */
export const paymentsToken = `bench-payments-${randomBytes(12).toString('hex')}`;
/** The HS256 secret buyer tokens are minted with (bench:http's buyer-token runs). */
export const buyerTokenSecret = randomBytes(32).toString('hex');

/** Writes the bench's FLASH_TOKENS_FILE next to a data dir (inside the bench's temp dir). */
function tokensFileFor(dataDir: string): string {
  const file = `${dataDir}.tokens.json`;
  writeFileSync(file, JSON.stringify([
    { name: 'bench-shop', role: 'shop', token: shopToken },
    { name: 'bench-payments', role: 'payments', token: paymentsToken },
  ]));
  return file;
}

/** Every caller setting of a bench engine or gateway: the admin, the shop and buyer tokens. */
export function benchAuthEnv(dataDir: string): Record<string, string> {
  return { FLASH_ADMIN_TOKEN: token, FLASH_TOKENS_FILE: tokensFileFor(dataDir), FLASH_BUYER_TOKEN_SECRET: buyerTokenSecret };
}

/** `extra` (e.g. FLASH_MAILBOX_MAX for the overload scenario) is applied last. */
export function engineEnv(port: number, dataDir: string, extra: Record<string, string> = {}): Record<string, string> {
  const env: Record<string, string> = {};
  // Only FLASH_SHARDS is taken from the caller; every other setting is the bench's own.
  for (const [k, v] of Object.entries(process.env)) if (v !== undefined && (!k.startsWith('FLASH_') || k === 'FLASH_SHARDS')) env[k] = v;
  return { ...env, PORT: String(port), HOST: '127.0.0.1', FLASH_DATA_DIR: dataDir, ...benchAuthEnv(dataDir), FLASH_BUYER_RPS: '0', FLASH_IP_RPS: '0', LOG_LEVEL: 'warn', ...extra };
}

export const engineEnvDescription = 'FLASH_ADMIN_TOKEN=<random>, FLASH_TOKENS_FILE (shop and payments tokens, sent with every reserve and pay), FLASH_BUYER_TOKEN_SECRET=<random>, FLASH_BUYER_RPS=0, FLASH_IP_RPS=0, LOG_LEVEL=warn, HOST=127.0.0.1, fresh FLASH_DATA_DIR; FLASH_SHARDS default unless set';

export async function call(port: number, method: string, urlPath: string, body?: unknown): Promise<{ status: number; json: Record<string, unknown> }> {
  const res = await fetch(`http://127.0.0.1:${port}${urlPath}`, {
    method,
    headers: { 'content-type': 'application/json', authorization: `Bearer ${token}` },
    ...(body === undefined ? {} : { body: JSON.stringify(body) }),
  });
  return { status: res.status, json: (await res.json()) as Record<string, unknown> };
}

export async function inParallel(count: number, width: number, task: (i: number) => Promise<void>): Promise<void> {
  let next = 0;
  await Promise.all(Array.from({ length: width }, async () => {
    while (next < count) await task(next++);
  }));
}

export async function createSkus(port: number, skus: SkuSetup): Promise<void> {
  await inParallel(skus.count, 16, async (i) => {
    const r = await call(port, 'PUT', `/v1/skus/${skuName(i)}`, { stock: skus.stock, maxPerBuyer: i % 2 === 1 ? skus.maxPerBuyerOnOddSkus : 0 });
    if (r.status !== 201) throw new Error(`PUT ${skuName(i)} answered ${r.status}: ${JSON.stringify(r.json)}`);
  });
}

/** reserved + sold over the bench SKUs, and every SKU whose counters break the contract. */
export async function skuTotals(port: number, skus: SkuSetup): Promise<{ units: number; broken: string[] }> {
  let units = 0;
  const broken: string[] = [];
  await inParallel(skus.count, 16, async (i) => {
    const { json: v } = await call(port, 'GET', `/v1/skus/${skuName(i)}`);
    const [onHand, reserved, sold, available] = [v.onHand, v.reserved, v.sold, v.available] as number[];
    units += reserved! + sold!;
    if (reserved! + sold! > onHand! || available! < 0 || available !== onHand! - reserved! - sold!) broken.push(`${skuName(i)}: ${JSON.stringify(v)}`);
  });
  return { units, broken };
}

/** A fresh engine process with no SKUs; `extraEnv` overrides the bench's settings. */
export async function launchEngine(tmp: string, name: string, opts: { nodeArgs?: string[]; extraEnv?: Record<string, string> } = {}): Promise<Engine> {
  const port = await freePort();
  const dataDir = mkdtempSync(path.join(tmp, `${name}-data-`));
  const env = engineEnv(port, dataDir, opts.extraEnv);
  const server = await startServer({ name, args: [...(opts.nodeArgs ?? []), path.join(repoDir, 'dist/src/main.js')], env, port, readyPath: '/healthz' });
  return { ...server, dataDir, shardCount: loadConfig(env).shardCount };
}

export async function startEngine(tmp: string, name: string, skus: SkuSetup, nodeArgs: string[] = [], extraEnv: Record<string, string> = {}): Promise<Engine> {
  const engine = await launchEngine(tmp, name, { nodeArgs, extraEnv });
  try {
    await createSkus(engine.port, skus);
  } catch (e) {
    await engine.stop();
    throw e;
  }
  return engine;
}

/** The last lsn of a shard's log: the first lsn of its newest segment plus its whole frames. */
function lastLsn(shardDir: string): number {
  const segments = readdirSync(shardDir).filter((f) => /^wal-[0-9a-f]{16}\.log$/.test(f)).sort();
  const newest = segments[segments.length - 1];
  if (newest === undefined) return 0;
  const bytes = readFileSync(path.join(shardDir, newest));
  let frames = 0;
  // Frames are [length u32][crc u32][lsn u64][payload]; a frame still being written is not counted.
  for (let offset = 0; offset + 16 <= bytes.length;) {
    const end = offset + 16 + bytes.readUInt32LE(offset);
    if (end > bytes.length) break;
    frames++;
    offset = end;
  }
  return parseInt(newest.slice(4, 20), 16) + frames - 1;
}

export interface CommitCounters {
  /** Records in the shards' logs: one per turn that changed state, made durable by one fdatasync. */
  walRecords: number;
  /** Observations of the flash_wal_commit_duration_seconds histogram, and their sum. */
  metricCount: number;
  metricSeconds: number;
}

export async function commitCounters(engine: Engine): Promise<CommitCounters> {
  const text = await (await fetch(`http://127.0.0.1:${engine.port}/metrics`)).text();
  const sum = (name: string): number => text.split('\n').filter((l) => l.startsWith(name)).reduce((a, l) => a + Number(l.split(' ').pop()), 0);
  const shardDirs = readdirSync(engine.dataDir).filter((d) => d.startsWith('shard-'));
  return {
    walRecords: shardDirs.reduce((a, d) => a + lastLsn(path.join(engine.dataDir, d)), 0),
    metricCount: sum('flash_wal_commit_duration_seconds_count'),
    metricSeconds: sum('flash_wal_commit_duration_seconds_sum'),
  };
}

export interface CommitFigures {
  /** fdatasync'ed records written during the run, read back from the log files. */
  walRecords: number;
  reservesPerRecord: number;
  /** Mean of flash_wal_commit_duration_seconds (a shard turn: apply + write + fdatasync). */
  meanTurnMs: number;
  /** Observations of that histogram; more than walRecords when a turn answers several batches. */
  metricObservations: number;
}

export function commitFigures(before: CommitCounters, after: CommitCounters, acked: number): CommitFigures {
  const walRecords = after.walRecords - before.walRecords;
  const metricObservations = after.metricCount - before.metricCount;
  return {
    walRecords,
    reservesPerRecord: acked / Math.max(1, walRecords),
    meanTurnMs: (1000 * (after.metricSeconds - before.metricSeconds)) / Math.max(1, metricObservations),
    metricObservations,
  };
}
