// The nats-servers bench:nats (and the comparison kit) run the engine over: one server, or a
// 3-node cluster on loopback. Every server is a child of this process with ports of its own
// (never the system server's 4222/6222/8222), JetStream on, and a store directory (-sd) of
// its own under the caller's temp dir; stop() ends every one (SIGINT: a clean JetStream
// shutdown; SIGKILL after a grace period) and removes the store directories. It never
// signals a server it did not start. A cluster's servers route to each other and are ready
// once JetStream answers through every one of them (a meta leader exists) and each one's
// /healthz says ok.

import { spawn, type ChildProcess } from 'node:child_process';
import { accessSync, constants, mkdirSync, rmSync } from 'node:fs';
import { connect as tcpConnect } from 'node:net';
import * as path from 'node:path';
import { jetstreamManager } from '@nats-io/jetstream';
import { connect, type NatsConnection } from '@nats-io/transport-node';
import { progress } from './bench-report.js';
import { freePort, type ChildServer } from './child-server.js';

export interface NatsServerProcess extends ChildServer {
  /** nats://127.0.0.1:<client port> */
  url: string;
  storeDir: string;
}

/** One server or a cluster, as the engine's processes are given it. */
export interface NatsServers {
  /** Every server's client URL, comma separated (FLASH_NATS_URL takes a comma list). */
  url: string;
  servers: NatsServerProcess[];
  /** "1 nats-server" or "3-node nats-server cluster ...", for the report. */
  description: string;
  /** Stops every server and removes its store directory; the exit codes, in order. */
  stop(): Promise<(number | null)[]>;
}

// A bench that dies without its finally (an uncaught error in a callback) leaves no server behind.
const started = new Set<ChildProcess>();
process.once('exit', () => {
  for (const c of started) if (c.exitCode === null && c.signalCode === null) c.kill('SIGKILL');
});

export function natsBinary(): string {
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
    const s = tcpConnect(port, '127.0.0.1');
    s.once('connect', () => {
      s.destroy();
      resolve(true);
    });
    s.once('error', () => resolve(false));
  });
}

const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));

/** Distinct free ports, none of them a system server's. */
async function freePorts(n: number): Promise<number[]> {
  const ports = new Set<number>();
  while (ports.size < n) {
    const p = await freePort();
    if (p !== 4222 && p !== 6222 && p !== 8222) ports.add(p);
  }
  return [...ports];
}

/** Spawns one nats-server with `args` (plus -a/-p/-js/-sd) and waits until it accepts TCP on `port`. */
async function spawnServer(name: string, port: number, storeDir: string, args: string[]): Promise<NatsServerProcess> {
  const bin = natsBinary();
  mkdirSync(storeDir, { recursive: true });
  const child: ChildProcess = spawn(bin, ['-a', '127.0.0.1', '-p', String(port), ...args, '-js', '-sd', storeDir], { stdio: ['ignore', 'ignore', 'pipe'] });
  started.add(child);
  let exited: number | null | undefined;
  const exit = new Promise<number | null>((resolve) => child.once('exit', (code, signal) => {
    started.delete(child);
    resolve((exited = code ?? (signal === null ? null : -1)));
  }));
  let err = '';
  child.stderr?.on('data', (c: Buffer) => {
    err += c.toString('utf8');
    if (err.length > 20_000) err = err.slice(-10_000);
  });
  const deadline = Date.now() + 10_000;
  while (!(await tcpOpen(port))) {
    if (exited !== undefined) throw new Error(`${name} exited with ${exited}: ${err.slice(-1000)}`);
    if (Date.now() > deadline) {
      child.kill('SIGKILL');
      await exit;
      throw new Error(`${name} did not accept connections within 10 s: ${err.slice(-1000)}`);
    }
    await sleep(20);
  }
  return {
    name, child, port, url: `nats://127.0.0.1:${port}`, storeDir,
    async stop(graceMs = 15_000) {
      if (exited === undefined) {
        // nats-server exits 1 on SIGTERM and 0 on SIGINT, after the same clean shutdown.
        child.kill('SIGINT');
        const timer = setTimeout(() => {
          progress(`${name} did not stop within ${graceMs} ms; sending SIGKILL`);
          child.kill('SIGKILL');
        }, graceMs);
        await exit;
        clearTimeout(timer);
      }
      rmSync(storeDir, { recursive: true, force: true });
      return exited ?? null;
    },
  };
}

/** One nats-server with JetStream, its store in `<dir>/nats-store`. */
export async function startNatsServer(dir: string): Promise<NatsServerProcess> {
  let port: number;
  do port = await freePort(); while (port === 4222);
  const server = await spawnServer('nats-server', port, path.join(dir, 'nats-store'), []);
  progress(`nats-server ${natsBinary()} serving on port ${port} (pid ${server.child.pid}), JetStream store ${server.storeDir}`);
  return server;
}

/** Resolves once JetStream answers account info through `url` (a meta leader exists). */
async function jetStreamAnswers(url: string, deadline: number): Promise<void> {
  let last: unknown = null;
  for (;;) {
    let nc: NatsConnection | null = null;
    try {
      nc = await connect({ servers: url, timeout: 1000, reconnect: false });
      await (await jetstreamManager(nc, { timeout: 1000 })).getAccountInfo();
      return;
    } catch (e) {
      last = e;
    } finally {
      await nc?.close().catch(() => undefined);
    }
    if (Date.now() > deadline) throw new Error(`JetStream does not answer through ${url}: ${String(last)}`);
    await sleep(100);
  }
}

async function healthzOk(monitorPort: number, deadline: number): Promise<void> {
  let last = '';
  for (;;) {
    try {
      const r = await fetch(`http://127.0.0.1:${monitorPort}/healthz`, { signal: AbortSignal.timeout(1000) });
      last = `${r.status} ${await r.text()}`;
      if (r.ok) return;
    } catch (e) {
      last = String(e);
    }
    if (Date.now() > deadline) throw new Error(`/healthz of the nats-server monitoring on ${monitorPort} not ok: ${last}`);
    await sleep(50);
  }
}

/**
 * `size` nats-servers routed into one cluster on loopback, each with its own client, route
 * and monitoring port and its own store directory `<dir>/nats-<i>`. The ports are probed and
 * then bound by the servers, so if one is taken in between, the cluster starts again on new
 * ports (at most 3 attempts).
 */
export async function startNatsServerCluster(dir: string, size = 3): Promise<NatsServers> {
  const clusterName = `flashbench-${process.pid.toString(36)}-${Math.random().toString(36).slice(2, 6)}`;
  for (let attempt = 1; ; attempt++) {
    const ports = await freePorts(3 * size);
    const node = (i: number) => ({ name: `nats-${i + 1}`, port: ports[3 * i]!, routePort: ports[3 * i + 1]!, monitorPort: ports[3 * i + 2]! });
    const nodes = Array.from({ length: size }, (_, i) => node(i));
    const servers: NatsServerProcess[] = [];
    try {
      for (const [i, n] of nodes.entries()) {
        const routes = nodes.filter((_, j) => j !== i).map((m) => `nats-route://127.0.0.1:${m.routePort}`).join(',');
        servers.push(await spawnServer(n.name, n.port, path.join(dir, `a${attempt}-${n.name}`), [
          '-n', n.name, '-m', String(n.monitorPort),
          '--cluster', `nats://127.0.0.1:${n.routePort}`, '--cluster_name', clusterName, '--routes', routes,
        ]));
      }
      const deadline = Date.now() + 30_000;
      for (const s of servers) await jetStreamAnswers(s.url, deadline);
      for (const n of nodes) await healthzOk(n.monitorPort, deadline);
    } catch (e) {
      await Promise.all(servers.map((s) => s.stop(2000)));
      if (attempt >= 3) throw e;
      progress(`nats-server cluster, attempt ${attempt}: ${(e as Error).message.split('\n')[0]}; starting again on new ports`);
      continue;
    }
    const description = `${size}-node nats-server cluster on loopback (${nodes.map((n) => `${n.name} client ${n.port} route ${n.routePort}`).join(', ')}; a store dir each)`;
    progress(`${description}: JetStream ready (pids ${servers.map((s) => s.child.pid).join(', ')})`);
    return {
      url: servers.map((s) => s.url).join(','),
      servers,
      description,
      stop: () => Promise.all(servers.map((s) => s.stop())),
    };
  }
}

/** One server as a NatsServers. */
export async function startSingleNatsServer(dir: string): Promise<NatsServers> {
  const s = await startNatsServer(dir);
  return { url: s.url, servers: [s], description: '1 nats-server', stop: async () => [await s.stop()] };
}
