// Starts a server under test as a child process, waits until it answers, and stops it
// with SIGTERM (SIGKILL only after a grace period). Its output goes to our stderr with a
// prefix, so the bench's stdout stays one JSON object. It never signals any other process.

import { spawn, type ChildProcess } from 'node:child_process';
import { createServer } from 'node:net';
import { progress } from './bench-report.js';

export interface ChildServer {
  name: string;
  child: ChildProcess;
  port: number;
  /** Sends SIGTERM, waits for the exit (SIGKILL after graceMs), returns the exit code. */
  stop(graceMs?: number): Promise<number | null>;
  /** What it printed so far, one line each ('' unless started with keepOutput). */
  output?(): string;
}

export function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const probe = createServer();
    probe.once('error', reject);
    probe.listen(0, '127.0.0.1', () => {
      const address = probe.address();
      const port = typeof address === 'object' && address !== null ? address.port : 0;
      probe.close(() => resolve(port));
    });
  });
}

function forward(name: string, stream: NodeJS.ReadableStream | null, onLine?: (line: string) => void): void {
  let rest = '';
  stream?.setEncoding('utf8');
  stream?.on('data', (chunk: string) => {
    const lines = (rest + chunk).split('\n');
    rest = lines.pop() ?? '';
    for (const line of lines) {
      onLine?.(line);
      if (line.trim() !== '') process.stderr.write(`  [${name}] ${line}\n`);
    }
  });
}

async function healthy(url: string): Promise<boolean> {
  try {
    const res = await fetch(url, { signal: AbortSignal.timeout(1000) });
    await res.arrayBuffer();
    return res.status < 500;
  } catch {
    return false;
  }
}

export async function startServer(opts: {
  name: string;
  args: string[];
  env: Record<string, string>;
  port: number;
  readyPath: string;
  readyTimeoutMs?: number;
  /** Keep its output lines for output() (a bench that reads its logs). */
  keepOutput?: boolean;
}): Promise<ChildServer> {
  const child = spawn(process.execPath, opts.args, { env: { ...process.env, ...opts.env }, stdio: ['ignore', 'pipe', 'pipe'] });
  let exited: number | null | undefined;
  const exit = new Promise<number | null>((resolve) => child.once('exit', (code, signal) => {
    exited = code ?? (signal === null ? null : -1);
    resolve(exited);
  }));
  const kept: string[] = [];
  const keep = opts.keepOutput === true ? (line: string): void => { kept.push(line); } : undefined;
  forward(opts.name, child.stdout, keep);
  forward(opts.name, child.stderr, keep);
  const deadline = Date.now() + (opts.readyTimeoutMs ?? 30_000);
  while (!(await healthy(`http://127.0.0.1:${opts.port}${opts.readyPath}`))) {
    if (exited !== undefined) throw new Error(`${opts.name} exited with ${exited} before it served`);
    if (Date.now() > deadline) {
      child.kill('SIGKILL');
      throw new Error(`${opts.name} did not answer ${opts.readyPath} within ${opts.readyTimeoutMs ?? 30_000} ms`);
    }
    await new Promise((r) => setTimeout(r, 100));
  }
  progress(`${opts.name} serving on port ${opts.port} (pid ${child.pid})`);
  return {
    name: opts.name,
    child,
    port: opts.port,
    output: () => kept.join('\n'),
    async stop(graceMs = 60_000) {
      if (exited !== undefined) return exited;
      child.kill('SIGTERM');
      const timer = setTimeout(() => {
        progress(`${opts.name} did not stop within ${graceMs} ms; sending SIGKILL`);
        child.kill('SIGKILL');
      }, graceMs);
      const code = await exit;
      clearTimeout(timer);
      return code;
    },
  };
}
