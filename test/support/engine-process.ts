// Starts the built engine (dist/src/main.js) as a child process on a free port and a
// fresh data directory, waits for its `listening` line, and gives tests small HTTP
// helpers. It owns every child it starts: `stopAllEngines()` kills what is still running
// and removes the temporary data directories, so a failing test never leaks a server.

import { spawn, type ChildProcess } from 'node:child_process';
import { existsSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { createServer } from 'node:net';
import { tmpdir } from 'node:os';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';

import { mintBuyerToken } from '../../src/gateway/buyer-token.js';

export const ADMIN_TOKEN = 'test-admin-token-0123';
/** One caller token per role (and a shop on channel "web"), written to the engines' FLASH_TOKENS_FILE. */
export const TOKENS = {
  operator: 'test-operator-token-0123',
  viewer: 'test-viewer-token-012345',
  shop: 'test-shop-token-01234567',
  payments: 'test-payments-token-0123',
  shopWeb: 'test-shop-web-token-0123',
  shopApp: 'test-shop-app-token-0123',
} as const;
export const BUYER_TOKEN_SECRET = 'test-buyer-token-secret-0123456789-abcdef';
/** Sent as the token: no authorization header at all. */
export const NO_TOKEN = '';

/** A buyer token for `sub`, valid for an hour, with any extra claims (accountCreatedAt, channel, ...). */
export function buyerToken(sub: string, claims: Record<string, unknown> = {}): string {
  return mintBuyerToken(BUYER_TOKEN_SECRET, { sub, exp: Math.floor(Date.now() / 1000) + 3600, ...claims });
}

let tokensFilePath: string | null = null;

/** The FLASH_TOKENS_FILE every test engine gets (written once per test process). */
export function testTokensFile(): string {
  if (tokensFilePath !== null && existsSync(tokensFilePath)) return tokensFilePath;
  const dir = mkdtempSync(join(tmpdir(), 'flash-tokens-'));
  tempDirs.add(dir);
  tokensFilePath = join(dir, 'tokens.json');
  writeFileSync(tokensFilePath, JSON.stringify([
    { name: 'ops-ann', role: 'operator', token: TOKENS.operator },
    { name: 'dash', role: 'viewer', token: TOKENS.viewer },
    { name: 'shop-backend', role: 'shop', token: TOKENS.shop },
    { name: 'psp', role: 'payments', token: TOKENS.payments },
    { name: 'shop-web', role: 'shop', token: TOKENS.shopWeb, channel: 'web' },
    { name: 'shop-app', role: 'shop', token: TOKENS.shopApp, channel: 'app' },
  ]));
  return tokensFilePath;
}

/** The FLASH_* settings that make an engine accept the test callers above. */
export function testAuthEnv(): Record<string, string> {
  return { FLASH_ADMIN_TOKEN: ADMIN_TOKEN, FLASH_TOKENS_FILE: testTokensFile(), FLASH_BUYER_TOKEN_SECRET: BUYER_TOKEN_SECRET };
}
const repoRoot = resolve(dirname(fileURLToPath(import.meta.url)), '..', '..');
/** The engine under test; FLASH_TEST_ENGINE_ENTRY points the suites at another build. */
export const engineEntry = process.env.FLASH_TEST_ENGINE_ENTRY ?? join(repoRoot, 'dist', 'src', 'main.js');
const startTimeoutMs = 15_000;

export interface EngineOptions {
  env?: Record<string, string>;
  dataDir?: string;
  /** A port of the caller's (gateways sharing one with FLASH_REUSE_PORT); default: a free one. */
  port?: number;
}

export interface Engine {
  url: string;
  port: number;
  dataDir: string;
  child: ChildProcess;
  /** Sends `signal` (SIGTERM by default) and resolves with the exit code (null if killed by a signal). */
  stop(signal?: NodeJS.Signals): Promise<number | null>;
  /** SIGKILL, and wait until the process is gone. */
  kill9(): Promise<void>;
  /** Everything the process printed so far, stdout then stderr interleaved as received. */
  logs(): string;
  /** Settles when the process has exited, with its code or signal. */
  exited: Promise<{ code: number | null; signal: NodeJS.Signals | null }>;
}

interface Tracked {
  child: ChildProcess;
  exited: Promise<{ code: number | null; signal: NodeJS.Signals | null }>;
}

const children = new Set<Tracked>();
const tempDirs = new Set<string>();

/** A port nobody listens on right now (listen on 0, read it, close). */
export function freePort(): Promise<number> {
  return new Promise((resolvePort, reject) => {
    const srv = createServer();
    srv.once('error', reject);
    srv.listen(0, '127.0.0.1', () => {
      const address = srv.address();
      const port = typeof address === 'object' && address !== null ? address.port : 0;
      srv.close(() => resolvePort(port));
    });
  });
}

export function makeDataDir(): string {
  const dir = mkdtempSync(join(tmpdir(), 'flash-http-'));
  tempDirs.add(dir);
  return dir;
}

function engineEnv(port: number, dataDir: string, extra: Record<string, string> | undefined): NodeJS.ProcessEnv {
  const env: NodeJS.ProcessEnv = {};
  // Never let the developer's own FLASH_* settings leak into a test engine.
  for (const [k, v] of Object.entries(process.env)) if (!k.startsWith('FLASH_') && k !== 'PORT' && k !== 'HOST') env[k] = v;
  Object.assign(env, {
    PORT: String(port),
    HOST: '127.0.0.1',
    FLASH_DATA_DIR: dataDir,
    FLASH_SHARDS: '2',
    ...testAuthEnv(),
    LOG_LEVEL: 'info',
  });
  Object.assign(env, extra ?? {});
  return env;
}

function spawnEngine(port: number, dataDir: string, extra?: Record<string, string>): { tracked: Tracked; output: () => string; onOutput: (f: () => void) => void } {
  if (!existsSync(engineEntry)) throw new Error(`${engineEntry} is missing: build first with npx tsc -p tsconfig.json`);
  const child = spawn(process.execPath, [engineEntry], { env: engineEnv(port, dataDir, extra), stdio: ['ignore', 'pipe', 'pipe'] });
  let out = '';
  const listeners: (() => void)[] = [];
  const take = (chunk: Buffer): void => {
    out += chunk.toString('utf8');
    for (const f of listeners) f();
  };
  child.stdout!.on('data', take);
  child.stderr!.on('data', take);
  const exited = new Promise<{ code: number | null; signal: NodeJS.Signals | null }>((res) => {
    child.once('exit', (code, signal) => res({ code, signal }));
  });
  const tracked: Tracked = { child, exited };
  children.add(tracked);
  void exited.then(() => children.delete(tracked));
  return { tracked, output: () => out, onOutput: (f) => listeners.push(f) };
}

/** Runs an engine that is expected to refuse to start; resolves with its exit code and output. */
export async function runEngineToExit(opts: EngineOptions & { timeoutMs?: number } = {}): Promise<{ code: number | null; logs: string }> {
  const dataDir = opts.dataDir ?? makeDataDir();
  const { tracked, output } = spawnEngine(opts.port ?? (await freePort()), dataDir, opts.env);
  const timeout = new Promise<'timeout'>((res) => setTimeout(() => res('timeout'), opts.timeoutMs ?? startTimeoutMs).unref());
  const first = await Promise.race([tracked.exited, timeout]);
  if (first === 'timeout') {
    tracked.child.kill('SIGKILL');
    await tracked.exited;
    throw new Error(`engine did not exit within ${opts.timeoutMs ?? startTimeoutMs} ms; output:\n${output()}`);
  }
  return { code: first.code, logs: output() };
}

async function startOnce(dataDir: string, env: Record<string, string> | undefined, givenPort?: number): Promise<Engine> {
  const port = givenPort ?? (await freePort());
  const { tracked, output, onOutput } = spawnEngine(port, dataDir, env);
  const { child, exited } = tracked;
  await new Promise<void>((res, reject) => {
    let settled = false;
    const finish = (err?: Error): void => {
      if (settled) return;
      settled = true;
      clearTimeout(timer);
      if (err) reject(err);
      else res();
    };
    const timer = setTimeout(() => {
      child.kill('SIGKILL');
      finish(new Error(`engine did not print "listening" within ${startTimeoutMs} ms; output:\n${output()}`));
    }, startTimeoutMs);
    const check = (): void => {
      if (output().split('\n').some((line) => line.includes('listening'))) finish();
    };
    onOutput(check);
    check();
    void exited.then(({ code, signal }) => finish(new Error(`engine exited (code ${code}, signal ${signal}) before listening; output:\n${output()}`)));
  });
  const stop = async (signal: NodeJS.Signals = 'SIGTERM'): Promise<number | null> => {
    if (child.exitCode === null && child.signalCode === null) child.kill(signal);
    const timeout = new Promise<'timeout'>((res) => setTimeout(() => res('timeout'), 30_000).unref());
    const result = await Promise.race([exited, timeout]);
    if (result === 'timeout') {
      child.kill('SIGKILL');
      await exited;
      throw new Error(`engine did not exit within 30 s of ${signal}; output:\n${output()}`);
    }
    return result.code;
  };
  return {
    url: `http://127.0.0.1:${port}`,
    port,
    dataDir,
    child,
    stop,
    kill9: async () => {
      if (child.exitCode === null && child.signalCode === null) child.kill('SIGKILL');
      await exited;
    },
    logs: output,
    exited,
  };
}

export async function startEngine(opts: EngineOptions = {}): Promise<Engine> {
  const dataDir = opts.dataDir ?? makeDataDir();
  // The free port may be taken by someone else between our probe and the engine's listen.
  for (let attempt = 1; ; attempt++) {
    try {
      return await startOnce(dataDir, opts.env, opts.port);
    } catch (e) {
      if (attempt >= 3 || opts.port !== undefined || !String((e as Error).message).includes('EADDRINUSE')) throw e;
    }
  }
}

/** Kills every engine still running (SIGKILL) and removes the temporary data directories. */
export async function stopAllEngines(): Promise<void> {
  const running = [...children];
  for (const t of running) if (t.child.exitCode === null && t.child.signalCode === null) t.child.kill('SIGKILL');
  await Promise.all(running.map((t) => t.exited));
  for (const dir of tempDirs) rmSync(dir, { recursive: true, force: true });
  tempDirs.clear();
}

// ---------------------------------------------------------------------------------------
// HTTP helpers (global fetch).

export interface Reply<T = any> {
  status: number;
  headers: Headers;
  text: string;
  /** The parsed JSON body, or undefined when the body is not JSON. */
  body: T;
}

export interface RawOptions {
  body?: string;
  headers?: Record<string, string>;
  /** The bearer token; NO_TOKEN sends none; absent: the token of the role that may make the call. */
  token?: string;
}

/**
 * The token a test call carries when it names none: the caller a shop's system would use
 * for that route (the shop backend reserves, gets and cancels; the payment side pays; an
 * admin changes SKUs). Public reads carry none. Tests of who may call what name tokens.
 */
export function defaultTokenFor(method: string, path: string): string | undefined {
  const p = path.split('?')[0]!;
  if (/^\/v1\/reservations\/[^/]+\/(pay|refund)$/.test(p)) return TOKENS.payments;
  if (p.startsWith('/v1/reservations')) return TOKENS.shop;
  if (method === 'GET' && /^\/v1\/skus\/[^/]+$/.test(p)) return undefined;
  if (p.startsWith('/v1/')) return ADMIN_TOKEN;
  return undefined;
}

async function send(base: string, method: string, path: string, opts: RawOptions): Promise<Reply> {
  const headers: Record<string, string> = { ...(opts.headers ?? {}) };
  if (opts.body !== undefined && headers['content-type'] === undefined) headers['content-type'] = 'application/json';
  const hasAuth = Object.keys(headers).some((k) => k.toLowerCase() === 'authorization');
  const token = opts.token ?? (hasAuth ? undefined : defaultTokenFor(method, path));
  if (token !== undefined && token !== NO_TOKEN) headers.authorization = `Bearer ${token}`;
  const res = await fetch(base + path, { method, headers, body: opts.body });
  const text = await res.text();
  let body: unknown;
  try {
    body = text === '' ? undefined : JSON.parse(text);
  } catch {
    body = undefined;
  }
  return { status: res.status, headers: res.headers, text, body };
}

export interface Api {
  get(path: string, token?: string): Promise<Reply>;
  put(path: string, body: unknown, token?: string): Promise<Reply>;
  post(path: string, body: unknown, token?: string): Promise<Reply>;
  /** Any method, with the body sent exactly as given (no JSON encoding). */
  raw(method: string, path: string, opts?: RawOptions): Promise<Reply>;
}

export function api(url: string): Api {
  return {
    get: (path, token) => send(url, 'GET', path, { token }),
    put: (path, body, token) => send(url, 'PUT', path, { body: JSON.stringify(body), token }),
    post: (path, body, token) => send(url, 'POST', path, { body: JSON.stringify(body), token }),
    raw: (method, path, opts = {}) => send(url, method, path, opts),
  };
}

export const sleep = (ms: number): Promise<void> => new Promise((res) => setTimeout(res, ms));
