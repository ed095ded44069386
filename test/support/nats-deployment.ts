// A NATS deployment for the integration suites: a nats-server of our own (free port, temp
// JetStream store; it can be stopped and started again on the same port and store), shard
// nodes (FLASH_ROLE=shards) sharing one data directory, and gateways (FLASH_ROLE=gateway),
// all started through engine-process.ts. Gateways get the test callers' credentials
// (startEngine's testAuthEnv); shard nodes, which serve no API, get none. It never touches
// a NATS server it did not start (the system one on 4222 included); `stopAllNatsServers()`
// kills what it started.

import { spawn, type ChildProcess } from 'node:child_process';
import { accessSync, constants, mkdtempSync, rmSync } from 'node:fs';
import { connect } from 'node:net';
import { tmpdir } from 'node:os';
import { delimiter, join } from 'node:path';
import { freePort, makeDataDir, runEngineToExit, sleep, startEngine, testAuthEnv, type Engine } from './engine-process.js';

export interface NatsServer {
  /** nats://127.0.0.1:<port> */
  url: string;
  port: number;
  /** The JetStream store directory; null for a server we did not start. */
  storeDir: string | null;
  /** True when this process started it (so it may stop and restart it). */
  own: boolean;
  running(): boolean;
  /** Stops it (SIGTERM by default) and waits for the exit. */
  stop(signal?: NodeJS.Signals): Promise<void>;
  /** Starts it again on the same port and store directory; resolves once it accepts TCP. */
  start(): Promise<void>;
  logs(): string;
}

const servers = new Set<{ child: ChildProcess | null; storeDir: string | null }>();
// A caller that dies without stopAllNatsServers() (an uncaught error in a script) must not
// leave an orphan nats-server behind: kill ours on the way out (synchronous, so it runs on exit).
process.once('exit', () => {
  for (const s of servers) if (s.child !== null && s.child.exitCode === null && s.child.signalCode === null) s.child.kill('SIGKILL');
});

function executable(path: string): boolean {
  try {
    accessSync(path, constants.X_OK);
    return true;
  } catch {
    return false;
  }
}

/** NATS_SERVER_BIN, else the Debian package's path, else the first nats-server on PATH. */
export function natsServerBinary(): string | null {
  const candidates = [process.env.NATS_SERVER_BIN, '/usr/sbin/nats-server', ...(process.env.PATH ?? '').split(delimiter).map((d) => join(d, 'nats-server'))];
  for (const c of candidates) if (c !== undefined && c !== '' && executable(c)) return c;
  return null;
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

/**
 * A nats-server for one suite. With `own: false` (the default) and FLASH_NATS_URL set in
 * the environment, that server is used as it is (it cannot be restarted); otherwise a
 * nats-server binary is started with JetStream on a free port and a fresh store directory.
 */
export async function startNatsServer(opts: { own?: boolean } = {}): Promise<NatsServer> {
  const external = process.env.FLASH_NATS_URL?.trim();
  if (opts.own !== true && external) {
    const refuse = (what: string) => async (): Promise<void> => {
      throw new Error(`cannot ${what} the NATS server of FLASH_NATS_URL (${external}): only a server this suite started can be; unset FLASH_NATS_URL`);
    };
    const port = Number(/:(\d+)\s*$/.exec(external.split(',')[0]!)?.[1] ?? 4222);
    return { url: external, port, storeDir: null, own: false, running: () => true, stop: refuse('stop'), start: refuse('start'), logs: () => '' };
  }
  const bin = natsServerBinary();
  if (bin === null) {
    throw new Error('no nats-server binary found (NATS_SERVER_BIN, /usr/sbin/nats-server, PATH): install nats-server (2.9+, with JetStream) or set FLASH_NATS_URL to a server with JetStream enabled');
  }
  const storeDir = mkdtempSync(join(tmpdir(), 'flash-nats-'));
  const entry: { child: ChildProcess | null; storeDir: string | null } = { child: null, storeDir };
  servers.add(entry);
  let out = '';
  let exited: Promise<void> = Promise.resolve();
  let port = 0;

  const launch = async (): Promise<void> => {
    const child = spawn(bin, ['-a', '127.0.0.1', '-p', String(port), '-js', '-sd', storeDir], { stdio: ['ignore', 'pipe', 'pipe'] });
    entry.child = child;
    let gone = false;
    exited = new Promise((resolve) => child.once('exit', () => {
      gone = true;
      resolve();
    }));
    child.stdout!.on('data', (c: Buffer) => (out += c.toString('utf8')));
    child.stderr!.on('data', (c: Buffer) => (out += c.toString('utf8')));
    const deadline = Date.now() + 10_000;
    while (!(await tcpOpen(port))) {
      if (gone) throw new Error(`nats-server on port ${port} exited before accepting connections:\n${out.slice(-2000)}`);
      if (Date.now() > deadline) {
        child.kill('SIGKILL');
        throw new Error(`nats-server on port ${port} did not accept connections within 10 s:\n${out.slice(-2000)}`);
      }
      await sleep(20);
    }
  };

  // The probed port may be taken before the server binds it: try a few.
  for (let attempt = 1; ; attempt++) {
    do port = await freePort(); while (port === 4222);
    try {
      await launch();
      break;
    } catch (e) {
      if (attempt >= 3) throw e;
    }
  }

  const running = (): boolean => entry.child !== null && entry.child.exitCode === null && entry.child.signalCode === null;
  return {
    url: `nats://127.0.0.1:${port}`,
    port,
    storeDir,
    own: true,
    running,
    async stop(signal: NodeJS.Signals = 'SIGTERM') {
      if (running()) entry.child!.kill(signal);
      await exited;
    },
    async start() {
      if (running()) throw new Error(`nats-server on port ${port} is already running`);
      await launch();
    },
    logs: () => out,
  };
}

/** Kills every nats-server this process started and removes their store directories. */
export async function stopAllNatsServers(): Promise<void> {
  for (const s of servers) {
    const c = s.child;
    if (c !== null && c.exitCode === null && c.signalCode === null) {
      const gone = new Promise((r) => c.once('exit', r));
      c.kill('SIGKILL');
      await gone;
    }
    if (s.storeDir !== null) rmSync(s.storeDir, { recursive: true, force: true });
  }
  servers.clear();
}

// ---------------------------------------------------------------------------------------
// Shard nodes and gateways.

export interface NodeHealth {
  serving: number[];
  standby: number[];
}

export interface ShardNode {
  name: string;
  shardIds: number[];
  engine: Engine;
  /** The node's own data directory: shard nodes share nothing (each follows the replicated log). */
  dataDir: string;
  /** The node's /healthz (`serving` and `standby` shard ids). */
  health(): Promise<NodeHealth>;
  /** Resolves once the node serves every one of `ids` (its own shard ids by default). */
  waitServing(ids?: number[], timeoutMs?: number): Promise<void>;
}

export interface NatsDeployment {
  nats: NatsServer;
  prefix: string;
  shards: number;
  /** The data directory every shard node of this deployment shares. */
  dataDir: string;
  /** The first gateway's base URL (the HTTP API). */
  url: string;
  gateway: Engine;
  /** Every shard node started, in start order (killed ones included). */
  nodes: ShardNode[];
  gateways: Engine[];
  /**
   * Starts another shard node, on a data dir of its own (a standby on another host), or on
   * `dataDir` (a node restarted on its disk).
   */
  startNode(shardIds: number[], opts?: { waitServing?: boolean; env?: Record<string, string>; dataDir?: string }): Promise<ShardNode>;
  /** Starts another gateway on the same NATS server and prefix (on `port`, when given). */
  startGateway(env?: Record<string, string>, port?: number): Promise<Engine>;
  /** Runs a gateway that is expected to refuse to start. */
  runGatewayToExit(env?: Record<string, string>, port?: number): Promise<{ code: number | null; logs: string }>;
  /** Everything every process of the deployment printed. */
  logs(): string;
  /** SIGTERM to gateways, then shard nodes, then (if we started it) the NATS server. */
  stopAll(): Promise<void>;
}

export interface NatsDeploymentOptions {
  /** FLASH_SHARDS of every process (default 2). */
  shards?: number;
  /** One entry per shard node: the shard ids it hosts (FLASH_SHARD_IDS). */
  nodes: number[][];
  /** FLASH_NATS_PREFIX; a unique one by default, so deployments never meet on one server. */
  prefix?: string;
  /** A NATS server to use; by default one is started (and stopped by stopAll). */
  nats?: NatsServer;
  /** FLASH_LEASE_TTL_MS of every shard node (default: the engine's, 3000). */
  leaseTtlMs?: number;
  /** Extra env for every process. */
  env?: Record<string, string>;
  gatewayEnv?: Record<string, string>;
}

let deployments = 0;

/**
 * A shard node serves no API (only /healthz and /metrics), so it is given no caller
 * credential at all, as in production: startEngine's test credentials are blanked ('' is
 * unset), and a shard node must start and serve without them. Gateways get them all.
 */
const noCallerCredentials = (): Record<string, string> => Object.fromEntries(Object.keys(testAuthEnv()).map((k) => [k, '']));

function uniquePrefix(): string {
  deployments++;
  return `t${process.pid.toString(36)}x${deployments.toString(36)}x${Math.random().toString(36).slice(2, 7)}`;
}

export async function startNatsDeployment(opts: NatsDeploymentOptions): Promise<NatsDeployment> {
  const shards = opts.shards ?? 2;
  const ownsNats = opts.nats === undefined;
  const nats = opts.nats ?? (await startNatsServer());
  const prefix = opts.prefix ?? uniquePrefix();
  const dataDir = makeDataDir();
  const common: Record<string, string> = {
    FLASH_NATS_URL: nats.url,
    FLASH_NATS_PREFIX: prefix,
    FLASH_SHARDS: String(shards),
    ...(opts.leaseTtlMs === undefined ? {} : { FLASH_LEASE_TTL_MS: String(opts.leaseTtlMs) }),
    ...(opts.env ?? {}),
  };
  const nodes: ShardNode[] = [];
  const gateways: Engine[] = [];

  const startNode = async (shardIds: number[], o: { waitServing?: boolean; env?: Record<string, string>; dataDir?: string } = {}): Promise<ShardNode> => {
    const name = `${prefix}-node${nodes.length + 1}`;
    const nodeDir = o.dataDir ?? makeDataDir();
    const engine = await startEngine({
      dataDir: nodeDir,
      env: { ...common, ...noCallerCredentials(), FLASH_ROLE: 'shards', FLASH_SHARD_IDS: shardIds.join(','), FLASH_NODE_NAME: name, ...(o.env ?? {}) },
    });
    const health = async (): Promise<NodeHealth> => {
      const r = await fetch(`${engine.url}/healthz`);
      const body = (await r.json()) as NodeHealth;
      return { serving: body.serving ?? [], standby: body.standby ?? [] };
    };
    const waitServing = async (ids = shardIds, timeoutMs = 15_000): Promise<void> => {
      const deadline = Date.now() + timeoutMs;
      let last: NodeHealth | string = 'no answer';
      for (;;) {
        try {
          last = await health();
          if (ids.every((id) => (last as NodeHealth).serving.includes(id))) return;
        } catch (e) {
          last = String(e);
        }
        if (Date.now() > deadline) throw new Error(`${name} does not serve shards ${ids.join(',')} after ${timeoutMs} ms (healthz: ${JSON.stringify(last)}); output:\n${engine.logs().slice(-3000)}`);
        await sleep(25);
      }
    };
    const node: ShardNode = { name, shardIds, engine, dataDir: nodeDir, health, waitServing };
    nodes.push(node);
    if (o.waitServing !== false) await waitServing();
    return node;
  };

  const gatewayEnv = (env?: Record<string, string>): Record<string, string> => ({ ...common, FLASH_ROLE: 'gateway', ...(opts.gatewayEnv ?? {}), ...(env ?? {}) });
  const startGateway = async (env?: Record<string, string>, port?: number): Promise<Engine> => {
    const g = await startEngine({ env: gatewayEnv(env), ...(port === undefined ? {} : { port }) });
    gateways.push(g);
    return g;
  };

  const stopAll = async (): Promise<void> => {
    await Promise.all(gateways.map((g) => g.stop().catch(() => g.kill9())));
    await Promise.all(nodes.map((n) => n.engine.stop().catch(() => n.engine.kill9())));
    if (ownsNats && nats.own) await nats.stop();
  };

  try {
    for (const ids of opts.nodes) await startNode(ids);
    const gateway = await startGateway();
    return {
      nats, prefix, shards, dataDir, url: gateway.url, gateway, nodes, gateways,
      startNode, startGateway,
      runGatewayToExit: (env, port) => runEngineToExit({ env: gatewayEnv(env), ...(port === undefined ? {} : { port }) }),
      logs: () => [...gateways.map((g, i) => `--- gateway ${i + 1}\n${g.logs()}`), ...nodes.map((n) => `--- ${n.name}\n${n.engine.logs()}`)].join('\n'),
      stopAll,
    };
  } catch (e) {
    await stopAll().catch(() => undefined);
    throw e;
  }
}
