// `flash events tail`: the console's Server-Sent Events stream (GET /v1/console/stream),
// one line per stock event (low_stock, sold_out, restocked), until interrupted or, with
// --count N, after N events. `tick` events only prove the stream is alive. When the stream
// drops after it was open, the tool says so on stderr and reconnects (sending Last-Event-ID
// when the server gave ids); if the engine stays away for `giveUpMs`, it exits 3.

import { CliError, Exit, failure, headers, unreachable, type Connection, type ExitCode, type FlashIo } from './flash-client.js';
import { time } from './flash-format.js';

export interface SseEvent {
  event: string;
  data: string;
  id: string | null;
}

/** The text/event-stream parser of the HTML standard: fields, multi-line data, comments, CR/LF/CRLF. */
export class SseParser {
  private buffer = '';
  private data: string[] = [];
  private event = '';
  private started = false;
  lastEventId: string | null = null;
  /** The server's `retry:` advice, in ms. */
  retryMs: number | null = null;

  /** Feeds decoded text; returns the events it completed. */
  push(chunk: string): SseEvent[] {
    this.buffer += chunk;
    if (!this.started && this.buffer.length > 0) {
      this.started = true;
      if (this.buffer.startsWith('\uFEFF')) this.buffer = this.buffer.slice(1);
    }
    const out: SseEvent[] = [];
    for (;;) {
      const m = /\r\n|\r|\n/.exec(this.buffer);
      if (m === null) break;
      // A lone CR at the very end may be the first half of CRLF: wait for more.
      if (m[0] === '\r' && m.index === this.buffer.length - 1) break;
      const line = this.buffer.slice(0, m.index);
      this.buffer = this.buffer.slice(m.index + m[0].length);
      const e = this.line(line);
      if (e !== null) out.push(e);
    }
    return out;
  }

  private line(line: string): SseEvent | null {
    if (line === '') {
      const e = this.data.length === 0 ? null : { event: this.event || 'message', data: this.data.join('\n'), id: this.lastEventId };
      this.data = [];
      this.event = '';
      return e;
    }
    if (line.startsWith(':')) return null;
    const colon = line.indexOf(':');
    const name = colon < 0 ? line : line.slice(0, colon);
    let value = colon < 0 ? '' : line.slice(colon + 1);
    if (value.startsWith(' ')) value = value.slice(1);
    if (name === 'data') this.data.push(value);
    else if (name === 'event') this.event = value;
    else if (name === 'id' && !value.includes('\0')) this.lastEventId = value;
    else if (name === 'retry' && /^\d+$/.test(value)) this.retryMs = Number(value);
    return null;
  }
}

export interface StockEvent {
  type: string;
  sku: string;
  at?: number;
  [k: string]: unknown;
}

/** `2026-11-30 12:00:00Z  sold_out    moutai-2026  available 0` */
export function formatStockEvent(e: StockEvent): string {
  const extra = ['available', 'onHand', 'dropId'].filter((k) => e[k] !== undefined && e[k] !== null).map((k) => `${k} ${String(e[k])}`);
  return [time(e.at), e.type.padEnd(10), e.sku, ...extra].join('  ').trimEnd();
}

export interface TailOptions {
  sku?: string;
  count?: number;
  json: boolean;
  /** How long a lost stream is retried before exit 3. */
  giveUpMs?: number;
  /** No byte (not even a tick) for this long: the stream is taken as lost. */
  idleMs?: number;
}

const streamPath = '/v1/console/stream';

export async function runEventsTail(conn: Connection, io: FlashIo, opts: TailOptions): Promise<ExitCode> {
  const giveUpMs = opts.giveUpMs ?? 30_000;
  const idleMs = opts.idleMs ?? 60_000;
  const parser = new SseParser();
  let printed = 0;
  let everOpen = false;
  let lostSince: number | null = null;
  let backoffMs = 500;
  const stopped = (): boolean => io.signal?.aborted === true;

  while (!stopped()) {
    const ctl = new AbortController();
    const onStop = (): void => ctl.abort();
    io.signal?.addEventListener('abort', onStop, { once: true });
    let idle: NodeJS.Timeout | undefined;
    const armIdle = (ms = idleMs): void => {
      clearTimeout(idle);
      idle = setTimeout(() => ctl.abort(new Error(`no event or tick for ${Math.round(ms / 1000)} s`)), ms);
    };
    let lost: string;
    try {
      armIdle(conn.timeoutMs);
      const extra: Record<string, string> = { accept: 'text/event-stream', 'cache-control': 'no-cache' };
      if (parser.lastEventId !== null) extra['last-event-id'] = parser.lastEventId;
      let res: Response;
      try {
        res = await fetch(conn.url + streamPath, { headers: headers(conn, extra), signal: ctl.signal });
      } catch (e) {
        if (stopped()) return Exit.ok;
        throw unreachable(conn, e);
      }
      if (res.status !== 200 || res.body === null) {
        const text = await res.text().catch(() => '');
        let body: unknown;
        try {
          body = JSON.parse(text);
        } catch {
          body = undefined;
        }
        const err = failure(conn, `GET ${streamPath}`, { status: res.status, body, text });
        // A refusal (401, 403, 404) will not heal by waiting: stop at once.
        if (err.exitCode === Exit.refused || !everOpen) throw err;
        lost = err.message;
      } else {
        if (!(res.headers.get('content-type') ?? '').startsWith('text/event-stream')) {
          throw new CliError(Exit.refused, `GET ${streamPath} answered ${res.headers.get('content-type') ?? 'no content-type'}, not an event stream: is --url an engine of this version?`);
        }
        if (everOpen) io.stderr('flash: the event stream is back\n');
        everOpen = true;
        lostSince = null;
        armIdle();
        backoffMs = 500;
        const decoder = new TextDecoder();
        const reader = res.body.getReader();
        lost = 'the engine closed the stream';
        try {
          for (;;) {
            const { done, value } = await reader.read();
            if (done) break;
            armIdle();
            for (const e of parser.push(decoder.decode(value, { stream: true }))) {
              if (e.event !== 'stock') continue;
              let data: StockEvent;
              try {
                data = JSON.parse(e.data) as StockEvent;
              } catch {
                io.stderr(`flash: skipped a stock event whose data is not JSON: ${e.data.slice(0, 100)}\n`);
                continue;
              }
              if (opts.sku !== undefined && data.sku !== opts.sku) continue;
              io.stdout(opts.json ? `${e.data}\n` : `${formatStockEvent(data)}\n`);
              printed++;
              if (opts.count !== undefined && printed >= opts.count) {
                ctl.abort();
                return Exit.ok;
              }
            }
          }
        } catch (e) {
          if (stopped()) return Exit.ok;
          const reason = ctl.signal.reason instanceof Error ? ctl.signal.reason.message : (e as Error).message;
          lost = `the stream broke (${reason})`;
        }
      }
    } catch (e) {
      if (stopped()) return Exit.ok;
      if (!(e instanceof CliError) || e.exitCode !== Exit.unreachable || !everOpen) throw e;
      lost = e.message;
    } finally {
      clearTimeout(idle);
      io.signal?.removeEventListener('abort', onStop);
    }
    if (stopped()) return Exit.ok;
    const now = Date.now();
    lostSince ??= now;
    if (now - lostSince > giveUpMs) throw new CliError(Exit.unreachable, `the event stream has been lost for ${Math.round((now - lostSince) / 1000)} s (${lost}); is the engine running?`);
    // One note per outage; the next says it is back (or why the tool gave up).
    if (now === lostSince) io.stderr(`flash: ${lost}; reconnecting${parser.lastEventId === null ? ' (events meanwhile are not replayed)' : ''}\n`);
    await new Promise<void>((res) => {
      const t = setTimeout(res, parser.retryMs ?? backoffMs);
      io.signal?.addEventListener('abort', () => {
        clearTimeout(t);
        res();
      }, { once: true });
    });
    backoffMs = Math.min(backoffMs * 2, 5000);
  }
  return Exit.ok;
}
