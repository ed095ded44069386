// The NATS deployment bench:nats loads: a nats-server of its own (free port, JetStream store
// in the bench's temp dir; never the system one on 4222), shard nodes (FLASH_ROLE=shards)
// sharing one data dir, and a gateway (FLASH_ROLE=gateway), each a child process that is
// always stopped. No FLASH_* setting of the caller's environment reaches them.

import { spawn, type ChildProcess } from 'node:child_process';
import { accessSync, constants, mkdirSync } from 'node:fs';
import { connect } from 'node:net';
import * as path from 'node:path';
import { progress, repoDir } from './bench-report.js';
import { freePort, startServer, type ChildServer } from './child-server.js';
import type { SkuSetup } from './engine-under-test.js';
import { adminToken, benchAuthEnv, skuName } from './engine-under-test.js';

export interface NatsServerProcess extends ChildServer {
  url: string;
}

function natsBinary(): string {
  const candidates = [process.env.NATS_SERVER_BIN, '/usr/sbin/nats-server', ...(process.env.PATH ?? '').split(path.delimiter).map((d) => path.join(d, 'nats-server'))];
  for (const c of candidates) {
    if (c === undefined || c === '') continue;
    try {
      accessSync(c, constants.X_OK);
      return c;
    } catch {
      // not here
    }
  }
  throw new Error('no nats-server binary found (NATS_SERVER_BIN, /usr/sbin/nats-server, PATH); bench:nats needs nats-server 2.9+ with JetStream');
}

function tcpOpen(port: number): Promise<boolean> {
  return new Promise((resolve) => {
    const s = connect(port, '127.0.0.1');
    s.once('connect', () => {
      s.destroy();
      resolve(true);
    });
    s.once('error', () => resolve(false));
  });
}

export async function startNatsServer(tmp: string): Promise<NatsServerProcess> {
  const bin = natsBinary();
  let port: number;
  do port = await freePort(); while (port === 4222);
  const store = path.join(tmp, 'nats-store');
  mkdirSync(store, { recursive: true });
  const child: ChildProcess = spawn(bin, ['-a', '127.0.0.1', '-p', String(port), '-js', '-sd', store], { stdio: ['ignore', 'ignore', 'pipe'] });
  let exited: number | null | undefined;
  const exit = new Promise<number | null>((resolve) => child.once('exit', (code) => resolve((exited = code))));
  let err = '';
  child.stderr?.on('data', (c: Buffer) => (err += c.toString('utf8')));
  const deadline = Date.now() + 10_000;
  while (!(await tcpOpen(port))) {
    if (exited !== undefined) throw new Error(`nats-server exited with ${exited}: ${err.slice(-1000)}`);
    if (Date.now() > deadline) {
      child.kill('SIGKILL');
      throw new Error('nats-server did not accept connections within 10 s');
    }
    await new Promise((r) => setTimeout(r, 20));
  }
  progress(`nats-server ${bin} serving on port ${port} (pid ${child.pid}), JetStream store ${store}`);
  return {
    name: 'nats-server', child, port, url: `nats://127.0.0.1:${port}`,
    async stop() {
      if (exited !== undefined) return exited;
      // nats-server exits 1 on SIGTERM and 0 on SIGINT, after the same clean shutdown.
      child.kill('SIGINT');
      return exit;
    },
  };
}

/** Every FLASH_* of our own environment blanked (each one's default), then `env`. */
function cleanEnv(env: Record<string, string>): Record<string, string> {
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
  nats: NatsServerProcess;
  prefix: string;
  shardCount: number;
  nodes: ChildServer[];
  gateway: ChildServer;
  env: string;
  stopAll(): Promise<(number | null)[]>;
}

export async function startNatsCluster(tmp: string, o: { shardCount: number; nodes: number[][]; prefix: string }): Promise<NatsCluster> {
  const nats = await startNatsServer(tmp);
  const dataDir = path.join(tmp, 'nats-shards-data');
  const common = { FLASH_NATS_URL: nats.url, FLASH_NATS_PREFIX: o.prefix, FLASH_SHARDS: String(o.shardCount) };
  const nodes: ChildServer[] = [];
  let gateway: ChildServer | null = null;
  const stopAll = async (): Promise<(number | null)[]> => {
    const codes: (number | null)[] = [];
    if (gateway !== null) codes.push(await gateway.stop());
    for (const n of nodes) codes.push(await n.stop());
    codes.push(await nats.stop());
    return codes;
  };
  try {
    for (const [i, ids] of o.nodes.entries()) {
      const port = await freePort();
      const name = `shard-node-${i + 1}`;
      nodes.push(await startServer({
        name, args: [path.join(repoDir, 'dist/src/main.js')], port, readyPath: '/healthz',
        env: cleanEnv({ ...common, PORT: String(port), FLASH_ROLE: 'shards', FLASH_SHARD_IDS: ids.join(','), FLASH_DATA_DIR: dataDir, FLASH_NODE_NAME: name, FLASH_BUYER_RPS: '0' }),
      }));
      await waitServing(name, port, ids);
    }
    const port = await freePort();
    gateway = await startServer({
      name: 'gateway', args: [path.join(repoDir, 'dist/src/main.js')], port, readyPath: '/healthz',
      env: cleanEnv({ ...common, PORT: String(port), FLASH_ROLE: 'gateway', ...benchAuthEnv(path.join(tmp, 'gateway-unused')), FLASH_BUYER_RPS: '0', FLASH_IP_RPS: '0', FLASH_DATA_DIR: path.join(tmp, 'gateway-unused') }),
    });
  } catch (e) {
    await stopAll();
    throw e;
  }
  return {
    nats, prefix: o.prefix, shardCount: o.shardCount, nodes, gateway, stopAll,
    env: `gateway: FLASH_ROLE=gateway FLASH_ADMIN_TOKEN=<random> FLASH_TOKENS_FILE (shop, payments) FLASH_BUYER_RPS=0 FLASH_IP_RPS=0; shard nodes: FLASH_ROLE=shards FLASH_SHARD_IDS=${o.nodes.map((n) => n.join(',')).join(' / ')} FLASH_BUYER_RPS=0 on one FLASH_DATA_DIR; all: FLASH_SHARDS=${o.shardCount} FLASH_NATS_PREFIX=${o.prefix} LOG_LEVEL=warn`,
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
