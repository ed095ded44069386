// The NATS deployment bench:nats (and the comparison kit) loads: a nats-server of its own, or
// a 3-node nats-server cluster on loopback (nats-servers.ts: free ports, JetStream stores in
// the bench's temp dir; never the system server on 4222), shard nodes (FLASH_ROLE=shards),
// each with a data dir of its own, and a gateway (FLASH_ROLE=gateway) with the bench's
// credentials, each a child process that is always stopped. Shard nodes get
// FLASH_BUYER_RPS=0 (they hold the per-buyer rate) and the log and lease replicas asked for.
// No FLASH_* setting of the caller's environment reaches them.

import { mkdirSync } from 'node:fs';
import * as path from 'node:path';
import { repoDir } from './bench-report.js';
import { freePort, startServer, type ChildServer } from './child-server.js';
import type { SkuSetup } from './engine-under-test.js';
import { adminToken, benchAuthEnv, skuName } from './engine-under-test.js';
import { startNatsServerCluster, startSingleNatsServer, type NatsServerProcess, type NatsServers } from './nats-servers.js';

export { startNatsServer, type NatsServerProcess } from './nats-servers.js';

/** Every FLASH_* of our own environment blanked (each one's default), then `env`. */
export function cleanEnv(env: Record<string, string>): Record<string, string> {
  const out: Record<string, string> = {};
  for (const k of Object.keys(process.env)) if (k.startsWith('FLASH_')) out[k] = '';
  return { ...out, HOST: '127.0.0.1', LOG_LEVEL: 'warn', ...env };
}

async function waitServing(name: string, port: number, ids: number[], timeoutMs = 30_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    try {
      const h = (await (await fetch(`http://127.0.0.1:${port}/healthz`)).json()) as { serving?: number[] };
      if (ids.every((id) => h.serving?.includes(id))) return;
    } catch {
      // not yet
    }
    if (Date.now() > deadline) throw new Error(`${name} does not serve shards ${ids.join(',')} after ${timeoutMs} ms`);
    await new Promise((r) => setTimeout(r, 50));
  }
}

export interface NatsCluster {
  /** The first (or only) nats-server; `natsServers` has them all. */
  nats: NatsServerProcess;
  natsServers: NatsServers;
  /** FLASH_NATS_URL of every process: every server's client URL, comma separated. */
  natsUrl: string;
  prefix: string;
  shardCount: number;
  logReplicas: number;
  leaseReplicas: number;
  nodes: ChildServer[];
  /** Each shard node's own FLASH_DATA_DIR, in the order of `nodes`. */
  nodeDataDirs: string[];
  gateway: ChildServer;
  env: string;
  /** Every process of the deployment (gateway, shard nodes, nats-servers). */
  pids(): number[];
  /** Exit codes: gateway, shard nodes, then every nats-server. */
  stopAll(): Promise<(number | null)[]>;
}

export interface NatsClusterOptions {
  shardCount: number;
  /** The shard ids of each shard node (FLASH_SHARD_IDS). */
  nodes: number[][];
  prefix: string;
  /** 1 (default): one nats-server; 3: a 3-node cluster on loopback. */
  natsServers?: 1 | 3;
  /** FLASH_LOG_REPLICAS of the shard nodes (default 1). */
  logReplicas?: number;
  /** FLASH_LEASE_REPLICAS of the shard nodes (default 1). */
  leaseReplicas?: number;
  /** Prefixed to the children's names in the bench's output, e.g. "(b)". */
  label?: string;
}

/**
 * Starts the deployment under `dir` (created if absent; give each deployment its own). Each
 * shard node has a data dir of its own: nodes hosting different shards could share one, but
 * a node that also follows another node's shard as its standby must not.
 */
export async function startNatsCluster(dir: string, o: NatsClusterOptions): Promise<NatsCluster> {
  mkdirSync(dir, { recursive: true });
  const logReplicas = o.logReplicas ?? 1;
  const leaseReplicas = o.leaseReplicas ?? 1;
  const label = o.label === undefined ? '' : `${o.label} `;
  const natsServers = o.natsServers === 3 ? await startNatsServerCluster(dir, 3) : await startSingleNatsServer(dir);
  const common = {
    FLASH_NATS_URL: natsServers.url, FLASH_NATS_PREFIX: o.prefix, FLASH_SHARDS: String(o.shardCount),
  };
  const nodes: ChildServer[] = [];
  const nodeDataDirs: string[] = [];
  let gateway: ChildServer | null = null;
  const stopAll = async (): Promise<(number | null)[]> => {
    const codes: (number | null)[] = [];
    if (gateway !== null) codes.push(await gateway.stop());
    for (const n of nodes) codes.push(await n.stop());
    codes.push(...(await natsServers.stop()));
    return codes;
  };
  try {
    for (const [i, ids] of o.nodes.entries()) {
      const port = await freePort();
      const name = `shard-node-${i + 1}`;
      const dataDir = path.join(dir, `${name}-data`);
      nodeDataDirs.push(dataDir);
      nodes.push(await startServer({
        name: `${label}${name}`, args: [path.join(repoDir, 'dist/src/main.js')], port, readyPath: '/healthz',
        env: cleanEnv({
          ...common, PORT: String(port), FLASH_ROLE: 'shards', FLASH_SHARD_IDS: ids.join(','), FLASH_DATA_DIR: dataDir, FLASH_NODE_NAME: name,
          FLASH_BUYER_RPS: '0', FLASH_LOG_REPLICAS: String(logReplicas), FLASH_LEASE_REPLICAS: String(leaseReplicas),
        }),
      }));
      await waitServing(`${label}${name}`, port, ids);
    }
    const port = await freePort();
    const gatewayDir = path.join(dir, 'gateway-unused');
    gateway = await startServer({
      name: `${label}gateway`, args: [path.join(repoDir, 'dist/src/main.js')], port, readyPath: '/healthz',
      env: cleanEnv({ ...common, PORT: String(port), FLASH_ROLE: 'gateway', ...benchAuthEnv(gatewayDir), FLASH_BUYER_RPS: '0', FLASH_IP_RPS: '0', FLASH_DATA_DIR: gatewayDir }),
    });
  } catch (e) {
    await stopAll();
    throw e;
  }
  const gw = gateway;
  return {
    nats: natsServers.servers[0]!, natsServers, natsUrl: natsServers.url, prefix: o.prefix, shardCount: o.shardCount, logReplicas, leaseReplicas,
    nodes, nodeDataDirs, gateway: gw, stopAll,
    pids: () => [gw, ...nodes, ...natsServers.servers].map((c) => c.child.pid).filter((p): p is number => p !== undefined),
    env: `${natsServers.description}; gateway: FLASH_ROLE=gateway FLASH_ADMIN_TOKEN=<random> FLASH_TOKENS_FILE (shop, payments) FLASH_BUYER_TOKEN_SECRET=<random> FLASH_BUYER_RPS=0 FLASH_IP_RPS=0; shard nodes: FLASH_ROLE=shards FLASH_SHARD_IDS=${o.nodes.map((n) => n.join(',')).join(' / ')} FLASH_BUYER_RPS=0 FLASH_LOG_REPLICAS=${logReplicas} FLASH_LEASE_REPLICAS=${leaseReplicas}, a FLASH_DATA_DIR each; all: FLASH_SHARDS=${o.shardCount} FLASH_NATS_PREFIX=${o.prefix} LOG_LEVEL=warn`,
  };
}

/** An admin or public call to the gateway, with the cluster's admin token. */
export async function gatewayCall(port: number, method: string, urlPath: string, body?: unknown): Promise<{ status: number; json: Record<string, unknown> }> {
  const res = await fetch(`http://127.0.0.1:${port}${urlPath}`, {
    method,
    headers: { 'content-type': 'application/json', authorization: `Bearer ${adminToken}` },
    ...(body === undefined ? {} : { body: JSON.stringify(body) }),
  });
  return { status: res.status, json: (await res.json()) as Record<string, unknown> };
}

/** The bench SKUs through the gateway, as engine-under-test creates them on the embedded engine. */
export async function createSkusThrough(port: number, skus: SkuSetup): Promise<void> {
  let next = 0;
  await Promise.all(Array.from({ length: 16 }, async () => {
    while (next < skus.count) {
      const i = next++;
      const r = await gatewayCall(port, 'PUT', `/v1/skus/${skuName(i)}`, { stock: skus.stock, maxPerBuyer: i % 2 === 1 ? skus.maxPerBuyerOnOddSkus : 0 });
      if (r.status !== 201) throw new Error(`PUT ${skuName(i)} answered ${r.status}: ${JSON.stringify(r.json)}`);
    }
  }));
}
