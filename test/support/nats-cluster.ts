// A 3-node nats-server cluster with JetStream on loopback, for fault tests that need what a
// single server cannot show: replicated streams and KV (R3) surviving the loss of one server.
// Each node has its own client, cluster (route) and monitoring ports and its own JetStream
// store directory, and routes to the other two. A node can be killed (SIGKILL), stopped
// (SIGTERM) and started again on the same ports and directory, so it rejoins as the same
// peer (its server name is fixed). `url` lists every client port (FLASH_NATS_URL is a comma
// list). Like nats-deployment.ts, it never touches a server it did not start;
// `stopAllNatsClusters()` kills what it started and removes the store directories.

import { spawn, type ChildProcess } from 'node:child_process';
import { mkdirSync, mkdtempSync, rmSync } from 'node:fs';
import { connect as tcpConnect } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { jetstreamManager } from '@nats-io/jetstream';
import { connect, type NatsConnection } from '@nats-io/transport-node';
import { freePort, sleep } from './engine-process.js';
import { natsServerBinary, type NatsServer } from './nats-deployment.js';

export interface ClusterNode {
  /** server_name (nats-1, nats-2, nats-3): JetStream peers are known by it, so it is fixed. */
  name: string;
  /** nats://127.0.0.1:<port> */
  url: string;
  port: number;
  clusterPort: number;
  monitorPort: number;
  /** This node's own JetStream store directory (-sd). */
  storeDir: string;
  running(): boolean;
  pid(): number | null;
  logs(): string;
}

export interface NatsCluster {
  /** Every node's client URL, comma separated (for FLASH_NATS_URL). */
  url: string;
  nodes: ClusterNode[];
  /** SIGKILL node i and wait until it is gone. */
  kill9(i: number): Promise<void>;
  /** Stop node i (SIGTERM by default: JetStream shuts down cleanly) and wait until it is gone. */
  stop(i: number, signal?: NodeJS.Signals): Promise<void>;
  /**
   * Start node i again on the same ports and store directory; resolves once it accepts TCP
   * and its /healthz answers ok (JetStream current with the meta leader and its streams).
   */
  start(i: number, timeoutMs?: number): Promise<void>;
  /** Stop (or kill, with signal SIGKILL), wait `downMs`, start again. */
  restart(i: number, opts?: { signal?: NodeJS.Signals; downMs?: number; timeoutMs?: number }): Promise<void>;
  /** Resolves once JetStream answers account info through every running node (a meta leader exists). */
  waitJetStream(timeoutMs?: number): Promise<void>;
  /** The index of the node whose server_name is `name` (e.g. a stream's cluster.leader), or -1. */
  indexOf(name: string): number;
  /** A client connection to the cluster (every node's URL), for a test's own reads; closed by stopAll. */
  connect(): Promise<NatsConnection>;
  /** The cluster as nats-deployment.ts's NatsServer (not own: a deployment never stops it). */
  asNatsServer(): NatsServer;
  /** Everything every node printed, per node. */
  logs(): string;
  /** SIGKILL every node, close the connections opened through connect(), remove the store directories. */
  stopAll(): Promise<void>;
}

interface Proc {
  child: ChildProcess | null;
  exited: Promise<void>;
  out: string;
}

const clusters = new Set<NatsCluster>();
const allChildren = new Set<ChildProcess>();
// A runner that dies without stopAllNatsClusters() must not leave nats-servers behind.
process.once('exit', () => {
  for (const c of allChildren) if (c.exitCode === null && c.signalCode === null) c.kill('SIGKILL');
});

function tcpOpen(port: number): Promise<boolean> {
  return new Promise((resolve) => {
    const s = tcpConnect(port, '127.0.0.1');
    s.once('connect', () => {
      s.destroy();
      resolve(true);
    });
    s.once('error', () => resolve(false));
  });
}

/** Distinct free ports (never 4222, the system server's). */
async function freePorts(n: number): Promise<number[]> {
  const ports = new Set<number>();
  while (ports.size < n) {
    const p = await freePort();
    if (p !== 4222 && p !== 6222 && p !== 8222) ports.add(p);
  }
  return [...ports];
}

export interface NatsClusterOptions {
  /** Nodes (default 3). */
  size?: number;
  /** Cluster name (default a unique one). */
  name?: string;
}

export async function startNatsCluster(opts: NatsClusterOptions = {}): Promise<NatsCluster> {
  const bin = natsServerBinary();
  if (bin === null) throw new Error('no nats-server binary found (NATS_SERVER_BIN, /usr/sbin/nats-server, PATH): install nats-server 2.9+ (JetStream)');
  const size = opts.size ?? 3;
  const clusterName = opts.name ?? `flash-t${process.pid.toString(36)}${Math.random().toString(36).slice(2, 6)}`;
  const root = mkdtempSync(join(tmpdir(), 'flash-nats-cluster-'));
  const connections: NatsConnection[] = [];

  // The ports are probed, then bound by the servers: another process may take one in between,
  // so the whole cluster is started again on new ports if a node cannot bind (rare).
  let nodes: ClusterNode[] = [];
  let procs: Proc[] = [];

  const argsOf = (i: number): string[] => {
    const n = nodes[i]!;
    const routes = nodes.filter((_, j) => j !== i).map((m) => `nats-route://127.0.0.1:${m.clusterPort}`).join(',');
    return [
      '-a', '127.0.0.1', '-p', String(n.port), '-n', n.name, '-m', String(n.monitorPort),
      '--cluster', `nats://127.0.0.1:${n.clusterPort}`, '--cluster_name', clusterName, '--routes', routes,
      '-js', '-sd', n.storeDir,
    ];
  };

  const running = (i: number): boolean => {
    const c = procs[i]?.child ?? null;
    return c !== null && c.exitCode === null && c.signalCode === null;
  };

  const healthz = async (i: number): Promise<string> => {
    try {
      const r = await fetch(`http://127.0.0.1:${nodes[i]!.monitorPort}/healthz`, { signal: AbortSignal.timeout(1000) });
      return r.ok ? 'ok' : `${r.status} ${await r.text()}`;
    } catch (e) {
      return String(e);
    }
  };

  /** Spawns node i and waits until it accepts TCP. */
  const launch = async (i: number, timeoutMs = 10_000): Promise<void> => {
    if (running(i)) throw new Error(`${nodes[i]!.name} is already running`);
    const p = procs[i]!;
    const child = spawn(bin, argsOf(i), { stdio: ['ignore', 'pipe', 'pipe'] });
    allChildren.add(child);
    p.child = child;
    p.out += `--- started ${new Date().toISOString()} pid ${child.pid}\n`;
    let gone = false;
    p.exited = new Promise((resolve) => child.once('exit', (code, signal) => {
      gone = true;
      allChildren.delete(child);
      p.out += `--- exited code ${code} signal ${signal} ${new Date().toISOString()}\n`;
      resolve();
    }));
    child.stdout!.on('data', (c: Buffer) => (p.out += c.toString('utf8')));
    child.stderr!.on('data', (c: Buffer) => (p.out += c.toString('utf8')));
    const deadline = Date.now() + timeoutMs;
    while (!(await tcpOpen(nodes[i]!.port))) {
      if (gone) throw new Error(`${nodes[i]!.name} (port ${nodes[i]!.port}) exited before accepting connections:\n${p.out.slice(-2000)}`);
      if (Date.now() > deadline) {
        child.kill('SIGKILL');
        throw new Error(`${nodes[i]!.name} did not accept connections within ${timeoutMs} ms:\n${p.out.slice(-2000)}`);
      }
      await sleep(20);
    }
  };

  const waitHealthy = async (i: number, timeoutMs: number): Promise<void> => {
    const deadline = Date.now() + timeoutMs;
    let last = '';
    for (;;) {
      last = await healthz(i);
      if (last === 'ok') return;
      if (!running(i)) throw new Error(`${nodes[i]!.name} exited while waiting for its /healthz:\n${procs[i]!.out.slice(-2000)}`);
      if (Date.now() > deadline) throw new Error(`${nodes[i]!.name}'s /healthz not ok after ${timeoutMs} ms (last: ${last}):\n${procs[i]!.out.slice(-2000)}`);
      await sleep(50);
    }
  };

  const waitJetStream = async (timeoutMs = 20_000): Promise<void> => {
    const deadline = Date.now() + timeoutMs;
    for (let i = 0; i < nodes.length; i++) {
      if (!running(i)) continue;
      let last: unknown = null;
      for (;;) {
        let nc: NatsConnection | null = null;
        try {
          nc = await connect({ servers: nodes[i]!.url, timeout: 1000, reconnect: false });
          const jsm = await jetstreamManager(nc, { timeout: 1000 });
          await jsm.getAccountInfo();
          break;
        } catch (e) {
          last = e;
        } finally {
          await nc?.close().catch(() => undefined);
        }
        if (Date.now() > deadline) throw new Error(`JetStream not ready through ${nodes[i]!.name} after ${timeoutMs} ms: ${String(last)}\n${procs[i]!.out.slice(-2000)}`);
        await sleep(100);
      }
    }
    for (let i = 0; i < nodes.length; i++) if (running(i)) await waitHealthy(i, Math.max(1000, deadline - Date.now()));
  };

  const killProc = async (i: number, signal: NodeJS.Signals): Promise<void> => {
    const p = procs[i]!;
    if (running(i)) p.child!.kill(signal);
    await p.exited;
  };

  for (let attempt = 1; ; attempt++) {
    const ports = await freePorts(3 * size);
    nodes = [];
    procs = [];
    for (let i = 0; i < size; i++) {
      const storeDir = join(root, `a${attempt}-nats-${i + 1}`);
      mkdirSync(storeDir, { recursive: true });
      const idx = i;
      nodes.push({
        name: `nats-${i + 1}`, url: `nats://127.0.0.1:${ports[3 * i]!}`, port: ports[3 * i]!, clusterPort: ports[3 * i + 1]!, monitorPort: ports[3 * i + 2]!,
        storeDir, running: () => running(idx), pid: () => (running(idx) ? procs[idx]!.child!.pid ?? null : null), logs: () => procs[idx]!.out,
      });
      procs.push({ child: null, exited: Promise.resolve(), out: '' });
    }
    try {
      await Promise.all(nodes.map((_, i) => launch(i)));
      await waitJetStream(30_000);
      break;
    } catch (e) {
      await Promise.all(nodes.map((_, i) => killProc(i, 'SIGKILL')));
      if (attempt >= 3) {
        rmSync(root, { recursive: true, force: true });
        throw e;
      }
    }
  }

  const url = nodes.map((n) => n.url).join(',');
  const cluster: NatsCluster = {
    url,
    nodes,
    kill9: (i) => killProc(i, 'SIGKILL'),
    stop: (i, signal = 'SIGTERM') => killProc(i, signal),
    async start(i, timeoutMs = 30_000) {
      const started = Date.now();
      await launch(i, timeoutMs);
      await waitHealthy(i, Math.max(1000, timeoutMs - (Date.now() - started)));
    },
    async restart(i, o = {}) {
      await killProc(i, o.signal ?? 'SIGTERM');
      if ((o.downMs ?? 0) > 0) await sleep(o.downMs!);
      await cluster.start(i, o.timeoutMs);
    },
    waitJetStream,
    indexOf: (name) => nodes.findIndex((n) => n.name === name),
    async connect() {
      const nc = await connect({ servers: nodes.map((n) => n.url), maxReconnectAttempts: -1, reconnectTimeWait: 250, timeout: 5000 });
      connections.push(nc);
      return nc;
    },
    asNatsServer(): NatsServer {
      const refuse = (what: string) => async (): Promise<void> => {
        throw new Error(`cannot ${what} a NATS cluster through its NatsServer view: use the cluster's kill9/stop/start`);
      };
      return {
        url, port: nodes[0]!.port, storeDir: null, own: false, running: () => nodes.some((_, i) => running(i)),
        stop: refuse('stop'), start: refuse('start'), logs: () => cluster.logs(),
      };
    },
    logs: () => nodes.map((n, i) => `--- ${n.name} (client ${n.port}, cluster ${n.clusterPort}, monitor ${n.monitorPort})\n${procs[i]!.out}`).join('\n'),
    async stopAll() {
      await Promise.all(connections.splice(0).map((nc) => nc.close().catch(() => undefined)));
      await Promise.all(nodes.map((_, i) => killProc(i, 'SIGKILL')));
      rmSync(root, { recursive: true, force: true });
      clusters.delete(cluster);
    },
  };
  clusters.add(cluster);
  return cluster;
}

/** Stops every cluster this process started (SIGKILL) and removes their store directories. */
export async function stopAllNatsClusters(): Promise<void> {
  for (const c of [...clusters]) await c.stopAll();
}
