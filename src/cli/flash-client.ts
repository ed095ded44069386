// The `flash` command line tool's side of the HTTP API: where the engine is (--url,
// FLASH_URL), which token it carries (--token, FLASH_TOKEN, or the operator token a local
// first start wrote), one call with a timeout, and how an answer becomes an exit code and
// one clear line on stderr (what failed, the API's code and message, what to do).
//
// Exit codes a script can use: 0 ok; 1 the engine refused (a 4xx); 2 usage (bad flags, an
// unreadable or invalid file: nothing was sent); 3 the engine cannot be reached, did not
// answer in time, or failed (a 5xx: overloaded, a shard restarting).

import { join } from 'node:path';

export const Exit = { ok: 0, refused: 1, usage: 2, unreachable: 3 } as const;
export type ExitCode = (typeof Exit)[keyof typeof Exit];

/** A failure that ends the command: `message` is printed as `flash: <message>`. */
export class CliError extends Error {
  constructor(readonly exitCode: ExitCode, message: string) {
    super(message);
  }
}

/** What the tool touches of the world, so tests run it in-process. */
export interface FlashIo {
  /** Raw writes (help text has its own newlines). */
  stdout(text: string): void;
  stderr(text: string): void;
  /** A file's text; `-` is standard input. */
  readFile(path: string): string;
  env: Readonly<Record<string, string | undefined>>;
  /** Where the stock import's progress bar goes (a terminal); null: no bar. */
  progress: NodeJS.WritableStream | null;
  /** Stops a long command (events tail) as Ctrl-C does: it then exits 0. */
  signal?: AbortSignal;
}

export const defaultUrl = 'http://127.0.0.1:8080';
export const defaultTimeoutMs = 10_000;

export interface Token {
  value: string;
  /** Where it came from, named in a 401's hint. */
  source: string;
}

export interface Connection {
  url: string;
  token: Token | null;
  timeoutMs: number;
}

export interface GlobalOptions {
  url?: string;
  token?: string;
  timeout?: string;
}

const loopbackHosts = new Set(['127.0.0.1', 'localhost', '[::1]', '::1']);

/**
 * `<data dir>/credentials/tokens.env` of an engine started on this machine (npm start writes
 * it on a first start with no credential configured): its OPERATOR_TOKEN, else ADMIN_TOKEN.
 * Read only when the engine is on this machine, so a token never travels to another host.
 */
function firstRunToken(io: FlashIo, url: URL): Token | null {
  if (!loopbackHosts.has(url.hostname)) return null;
  const file = join(io.env.FLASH_DATA_DIR ?? 'data', 'credentials', 'tokens.env');
  let text: string;
  try {
    text = io.readFile(file);
  } catch {
    return null;
  }
  const vars = new Map<string, string>();
  for (const line of text.split(/\r?\n/)) {
    const m = /^\s*([A-Z_]+)=(.*)$/.exec(line);
    if (m !== null) vars.set(m[1]!, m[2]!.trim().replace(/^(['"])(.*)\1$/, '$2'));
  }
  for (const name of ['OPERATOR_TOKEN', 'ADMIN_TOKEN']) {
    const value = vars.get(name);
    if (value !== undefined && value !== '') return { value, source: `${name} of ${file}` };
  }
  return null;
}

/** --url, --token and --timeout, else FLASH_URL, FLASH_TOKEN (or FLASH_ADMIN_TOKEN), else the local first-run token. */
export function connection(opts: GlobalOptions, io: FlashIo): Connection {
  const raw = opts.url ?? io.env.FLASH_URL ?? defaultUrl;
  let url: URL;
  try {
    url = new URL(raw);
  } catch {
    throw new CliError(Exit.usage, `--url ${raw} is not a URL; give one like ${defaultUrl}`);
  }
  if (url.protocol !== 'http:' && url.protocol !== 'https:') throw new CliError(Exit.usage, `--url ${raw} must be an http:// or https:// URL`);
  let timeoutMs = defaultTimeoutMs;
  if (opts.timeout !== undefined) {
    const s = Number(opts.timeout);
    if (!Number.isFinite(s) || s <= 0 || s > 3600) throw new CliError(Exit.usage, `--timeout ${opts.timeout} must be a number of seconds in (0, 3600]`);
    timeoutMs = Math.round(s * 1000);
  }
  let token: Token | null = null;
  if (opts.token !== undefined && opts.token !== '') token = { value: opts.token, source: '--token' };
  else if (io.env.FLASH_TOKEN) token = { value: io.env.FLASH_TOKEN, source: 'FLASH_TOKEN' };
  else if (io.env.FLASH_ADMIN_TOKEN) token = { value: io.env.FLASH_ADMIN_TOKEN, source: 'FLASH_ADMIN_TOKEN' };
  else token = firstRunToken(io, url);
  return { url: url.href.replace(/\/+$/, ''), token, timeoutMs };
}

export interface Answer {
  status: number;
  /** The parsed JSON body (undefined when the body is not JSON). */
  body: unknown;
  text: string;
}

/** The API's error, or the status and text when the body is not one. */
export function apiError(a: Answer): { code: string; message: string } {
  const e = (a.body as { error?: { code?: unknown; message?: unknown } } | undefined)?.error;
  return {
    code: typeof e?.code === 'string' ? e.code : `http_${a.status}`,
    message: typeof e?.message === 'string' ? e.message : a.text.trim().slice(0, 200) || '(no message)',
  };
}

function networkReason(e: unknown): string {
  if (e instanceof Error && (e.name === 'TimeoutError' || e.name === 'AbortError')) return 'no answer in time';
  const cause = (e as { cause?: { code?: unknown; message?: unknown } } | null)?.cause;
  if (typeof cause?.code === 'string') return cause.code;
  if (typeof cause?.message === 'string') return cause.message;
  return e instanceof Error ? e.message : String(e);
}

export function unreachable(conn: Connection, e: unknown): CliError {
  return new CliError(Exit.unreachable, `cannot reach the engine at ${conn.url} (${networkReason(e)}): is it running? Point --url or FLASH_URL at it`);
}

export function headers(conn: Connection, extra: Record<string, string> = {}): Record<string, string> {
  const h: Record<string, string> = { accept: 'application/json', ...extra };
  if (conn.token !== null) h.authorization = `Bearer ${conn.token.value}`;
  return h;
}

/** One call; a network failure or timeout throws exit 3. Any HTTP answer is returned. */
export async function call(conn: Connection, method: string, path: string, body?: unknown, signal?: AbortSignal): Promise<Answer> {
  const timeout = AbortSignal.timeout(conn.timeoutMs);
  let res: Response;
  let text: string;
  try {
    res = await fetch(conn.url + path, {
      method,
      headers: headers(conn, body === undefined ? {} : { 'content-type': 'application/json' }),
      body: body === undefined ? undefined : JSON.stringify(body),
      signal: signal === undefined ? timeout : AbortSignal.any([timeout, signal]),
    });
    text = await res.text();
  } catch (e) {
    throw unreachable(conn, e);
  }
  let parsed: unknown;
  try {
    parsed = text === '' ? undefined : JSON.parse(text);
  } catch {
    parsed = undefined;
  }
  return { status: res.status, body: parsed, text };
}

const hints: Record<string, string> = {
  forbidden: 'use a token whose role may make this call: operator or admin for changes, viewer or above for reads',
  unknown_sku: 'check the name: flash sku list shows every SKU',
  unknown_drop: 'check the name, or create the drop with flash apply',
  unknown_entry: 'that buyer has not joined this drop\'s queue',
  insufficient_stock: 'a write-off may take at most the available units; flash sku get SKU shows them',
  invalid_request: 'fix the field the message names',
  drop_mismatch: 'a SKU\'s dropId is fixed once set; leave it out or give the one it has',
  queue_locked: 'the queue has opened: only admitPerSecond and admitSeconds may still change',
  not_found: 'this engine has no such route: is --url an engine of this version?',
  payload_too_large: 'the body is over 16 KiB; use flash stock import for bulk stock',
};

/** What to do about a refusal, or '' when the message says it all. */
export function hint(conn: Connection, code: string): string {
  if (code === 'unauthorized') {
    return conn.token === null
      ? 'give a token with --token or FLASH_TOKEN (an operator token; npm start writes one to data/credentials/tokens.env on a first start)'
      : `the token from ${conn.token.source} was refused; give a valid operator token with --token or FLASH_TOKEN`;
  }
  return hints[code] ?? '';
}

/** The CliError for a non-2xx answer: 4xx refused (1), anything else failed (3). */
export function failure(conn: Connection, what: string, a: Answer): CliError {
  const { code, message } = apiError(a);
  if (a.status >= 400 && a.status < 500 && a.status !== 429) {
    const h = hint(conn, code);
    return new CliError(Exit.refused, `${what} refused: ${a.status} ${code}: ${message}${h === '' ? '' : ` (${h})`}`);
  }
  return new CliError(Exit.unreachable, `${what} failed: the engine answered ${a.status} ${code}: ${message} (try again shortly)`);
}

/** The exit code of an answer that is not 2xx (for commands that go on after one failure). */
export function exitOf(status: number): ExitCode {
  return status >= 400 && status < 500 && status !== 429 ? Exit.refused : Exit.unreachable;
}

/** A call that must answer 2xx: its JSON body, else the failure thrown. */
export async function expectOk(conn: Connection, what: string, method: string, path: string, body?: unknown): Promise<unknown> {
  const a = await call(conn, method, path, body);
  if (a.status < 200 || a.status > 299) throw failure(conn, what, a);
  return a.body;
}

export const seg = (s: string): string => encodeURIComponent(s);
