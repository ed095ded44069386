// The `flash` command line tool's side of the HTTP API: where the engine is (--url,
// FLASH_URL), which token it carries (--token, FLASH_TOKEN, or the operator token a local
// first start wrote), one call with a timeout, and how an answer becomes an exit code and
// one clear line on stderr (what failed, the API's code and message, what to do).
//
// Exit codes a script can use: 0 ok; 1 the engine refused (a 4xx); 2 usage (bad flags, an
// unreadable or invalid file: nothing was sent); 3 the engine cannot be reached, did not
// answer in time, answered something that is not the engine's JSON, or failed (a 5xx:
// overloaded, a shard restarting); 4 a bug of the tool (an unexpected error: report it).
//
// A write that must not be sent twice (stock adjust: +50 sent twice is +100) goes through
// `writeOnce`: when the request may have reached the engine but its answer did not reach
// the tool, the error says the change may have been applied and how to check, never
// "try again".

import { join } from 'node:path';

export const Exit = { ok: 0, refused: 1, usage: 2, unreachable: 3, internal: 4 } as const;
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
  /** The answer's content-type (null or absent: none). */
  contentType?: string | null;
}

export const isObject = (v: unknown): v is Record<string, unknown> => v !== null && typeof v === 'object' && !Array.isArray(v);

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

/** Network failures before a request is on its way: nothing reached the engine. */
const notSentCodes = new Set([
  'ECONNREFUSED', 'ENOTFOUND', 'EAI_AGAIN', 'EAI_NONAME', 'EHOSTUNREACH', 'EHOSTDOWN', 'ENETUNREACH', 'ENETDOWN', 'EADDRNOTAVAIL',
  'UND_ERR_CONNECT_TIMEOUT', 'ERR_TLS_CERT_ALTNAME_INVALID', 'DEPTH_ZERO_SELF_SIGNED_CERT', 'SELF_SIGNED_CERT_IN_CHAIN',
  'UNABLE_TO_VERIFY_LEAF_SIGNATURE', 'UNABLE_TO_GET_ISSUER_CERT_LOCALLY', 'CERT_HAS_EXPIRED', 'CERT_NOT_YET_VALID',
]);

/**
 * Whether a failed call may have reached the engine: anything but a failure to connect (or a
 * request fetch refused to build) may have. A timeout cannot tell when it struck, so it may.
 */
function maybeSent(e: unknown): boolean {
  const cause = (e as { cause?: { code?: unknown } } | null)?.cause;
  if (typeof cause?.code === 'string' && notSentCodes.has(cause.code)) return false;
  // fetch refuses a bad header or URL with a TypeError of its own, before any byte is sent.
  if (e instanceof TypeError && e.message !== 'fetch failed') return false;
  return true;
}

/** A call without a whole answer: whether the request may have reached the engine, and the status if one came. */
interface Lost {
  lost: true;
  error: unknown;
  sent: boolean;
  status: number | null;
}

async function send(conn: Connection, method: string, path: string, body: unknown, signal: AbortSignal | undefined): Promise<Answer | Lost> {
  const timeout = AbortSignal.timeout(conn.timeoutMs);
  let res: Response;
  try {
    res = await fetch(conn.url + path, {
      method,
      headers: headers(conn, body === undefined ? {} : { 'content-type': 'application/json' }),
      body: body === undefined ? undefined : JSON.stringify(body),
      signal: signal === undefined ? timeout : AbortSignal.any([timeout, signal]),
    });
  } catch (e) {
    return { lost: true, error: e, sent: maybeSent(e), status: null };
  }
  let text: string;
  try {
    text = await res.text();
  } catch (e) {
    // The status came, so the engine had the request; its body was cut off.
    return { lost: true, error: e, sent: true, status: res.status };
  }
  let parsed: unknown;
  try {
    parsed = text === '' ? undefined : JSON.parse(text);
  } catch {
    parsed = undefined;
  }
  return { status: res.status, body: parsed, text, contentType: res.headers.get('content-type') };
}

/**
 * One call; a network failure or timeout throws exit 3 ("cannot reach": right for reads and
 * upserts, which may be sent again). Any HTTP answer is returned.
 */
export async function call(conn: Connection, method: string, path: string, body?: unknown, signal?: AbortSignal): Promise<Answer> {
  const a = await send(conn, method, path, body, signal);
  if ('lost' in a) throw unreachable(conn, a.error);
  return a;
}

/** A 2xx whose body is not a JSON object: another server (a login portal, a proxy's page, a wrong port). */
export function notEngine(conn: Connection, what: string, a: Answer): CliError {
  return new CliError(Exit.unreachable,
    `${what} failed: not an engine answer from ${conn.url} (${a.status}, ${a.contentType ?? 'no content-type'}): is --url (or FLASH_URL) the engine's address?`);
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

/** A call that must answer 2xx with a JSON object: that object, else the failure thrown. */
export async function expectOk(conn: Connection, what: string, method: string, path: string, body?: unknown): Promise<Record<string, unknown>> {
  const a = await call(conn, method, path, body);
  if (a.status < 200 || a.status > 299) throw failure(conn, what, a);
  if (!isObject(a.body)) throw notEngine(conn, what, a);
  return a.body;
}

/** 5xx codes that say the request was turned away before anything was done. */
const nothingDoneCodes = new Set(['overloaded', 'shutting_down', 'rate_limited']);

/**
 * A write that must not be sent twice (it is not an upsert: stock adjust): like expectOk,
 * but when the request may have reached the engine and no answer says what became of it (a
 * connection lost or a timeout after sending, a 5xx other than "nothing was done"), the
 * error (exit 3) says the change may have been applied and to `check` before retrying.
 */
export async function writeOnce(conn: Connection, what: string, method: string, path: string, body: unknown, check: string): Promise<Record<string, unknown>> {
  const a = await send(conn, method, path, body, undefined);
  const mayHave = `the change may have been applied: check ${check} before retrying (sent again, it would apply twice)`;
  if ('lost' in a) {
    if (!a.sent) throw unreachable(conn, a.error);
    const said = a.status === null ? '' : `, after it answered ${a.status}`;
    throw new CliError(Exit.unreachable, `${what}: the request reached ${conn.url} but its answer was lost (${networkReason(a.error)}${said}); ${mayHave}`);
  }
  if (a.status >= 500 || a.status === 429) {
    const { code, message } = apiError(a);
    if (!nothingDoneCodes.has(code)) throw new CliError(Exit.unreachable, `${what} failed: the engine answered ${a.status} ${code}: ${message}; ${mayHave}`);
  }
  if (a.status < 200 || a.status > 299) throw failure(conn, what, a);
  if (!isObject(a.body)) throw notEngine(conn, what, a);
  return a.body;
}

/** An error that is not a CliError is a bug of the tool: exit 4, with its stack to report. */
export function internalError(e: unknown): CliError {
  if (e instanceof CliError) return e;
  return new CliError(Exit.internal, `unexpected error (a bug of the tool; please report it): ${e instanceof Error ? e.stack ?? e.message : String(e)}`);
}

/** A command whose unexpected errors exit 4 (a bug), never 1 (which means "the engine refused"). */
export function guarded<A extends unknown[]>(f: (...args: A) => Promise<ExitCode>): (...args: A) => Promise<ExitCode> {
  return async (...args: A): Promise<ExitCode> => {
    try {
      return await f(...args);
    } catch (e) {
      throw internalError(e);
    }
  };
}

export const seg = (s: string): string => encodeURIComponent(s);
