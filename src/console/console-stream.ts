// `GET /v1/console/stream`: Server-Sent Events for the live console (and for `flash events
// tail`). One shared poller feeds every client, so the shards are asked the same few
// questions however many consoles are open:
//   event: history first, once: {"samples":[...],"events":[...]}, what the streams saw in
//                  the last 20 minutes (a sample every 5 s) and the last 50 stock events
//   event: tick    every second, and at most every 250 ms while stock or queues change
//                  (the first a stream gets lists every SKU; later ones only what changed)
//   event: stock   as it happens: {"type":"low_stock"|"sold_out"|"restocked","sku","at"}
// A tick is serialized once and written to every client. Fan-out is bounded: at most
// `streamsMax` streams (past it, 503 `overloaded`), and a client whose unsent bytes pass
// `clientBufferBytes` is disconnected rather than buffered for (it reconnects and gets the
// latest tick). The poller runs only while a stream is open, and its timer never keeps the
// process alive.

import type { ServerResponse } from 'node:http';
import type { Logger } from 'pino';
import type { DomainEvent } from '../domain/index.js';
import type { ShardTransport } from '../engine/shard-protocol.js';
import type { FeatureHandler } from '../gateway/http-gateway.js';
import type { GatewayMetrics } from '../gateway/metrics.js';
import { sendError } from '../gateway/request-io.js';
import { changeCount, sampleOf, tickDelta, TickSource, type Sample, type Tick } from './console-tick.js';

export interface ConsoleStreamOptions {
  metrics: GatewayMetrics;
  log: Pick<Logger, 'info' | 'warn'>;
  /** Streams open at once, at most (default 64). */
  streamsMax?: number;
  /** Unsent bytes a client may lag behind before it is disconnected (default 1 MiB). */
  clientBufferBytes?: number;
  /** A tick at least this often (default 1000 ms) ... */
  tickMs?: number;
  /** ... and, on a change, at most this often (default 250 ms). */
  minTickMs?: number;
}

export const consoleStreamsMax = 64;
export const consoleClientBufferBytes = 1024 * 1024;
/** History for a console that opens later: a sample at most this often, kept this long. */
export const historyEveryMs = 5_000;
export const historyMs = 20 * 60_000;
/**
 * Ticks come sooner than every tickMs (on a change) only while one tick, written to every
 * stream, stays under this many bytes: a large catalog changing everywhere at once, watched
 * by many consoles, is sent once a second.
 */
export const fastTickBytesMax = 1024 * 1024;
/** A comment line goes out when nothing else did for this long, so a reader can tell a quiet stream from a lost one. */
export const heartbeatMs = 15_000;
/** Stock events a console that opens later is shown. */
export const recentEventsMax = 50;

interface StockLine {
  type: 'low_stock' | 'sold_out' | 'restocked';
  sku: string;
  at: number;
}

/** `event: <name>` with one line of JSON data, as EventSource and `flash events tail` read it. */
export function sseEvent(name: string, data: unknown): string {
  return `event: ${name}\ndata: ${JSON.stringify(data)}\n\n`;
}

export class ConsoleStream {
  private readonly clients = new Set<ServerResponse>();
  private readonly streamsMax: number;
  private readonly clientBufferBytes: number;
  private readonly tickMs: number;
  private readonly minTickMs: number;
  private source: TickSource | null = null;
  private timer: NodeJS.Timeout | null = null;
  private busy = false;
  private lastTickAt = 0;
  private lastSentAt = 0;
  private lastWarnedAt = Number.NEGATIVE_INFINITY;
  private lastChanges = -1;
  private changed = false;
  /** The latest tick (every SKU), and framed for a new client (made when one comes). */
  private latest: Tick | null = null;
  private latestFramed: string | null = null;
  /** Bytes of the last tick written to every stream. */
  private lastTickBytes = 0;
  private pendingEvents: string[] = [];
  /** Samples of the ticks read while a stream was open, oldest first (at most historyMs old). */
  private readonly samples: Sample[] = [];
  /** The latest stock events, oldest first, whether or not a stream was open. */
  private readonly recent: StockLine[] = [];
  private flushScheduled = false;
  private closed = false;
  private readonly unsubscribe: () => void;

  constructor(private readonly opts: ConsoleStreamOptions) {
    this.streamsMax = opts.streamsMax ?? consoleStreamsMax;
    this.clientBufferBytes = opts.clientBufferBytes ?? consoleClientBufferBytes;
    this.tickMs = opts.tickMs ?? 1000;
    this.minTickMs = opts.minTickMs ?? 250;
    this.unsubscribe = opts.metrics.subscribeEvents((events) => this.onEvents(events));
  }

  /** Streams open now. */
  get size(): number {
    return this.clients.size;
  }

  readonly handler: FeatureHandler = async ({ res, router }) => {
    if (this.closed) return sendError(res, 'shutting_down', 'the engine is shutting down; reconnect to another node');
    if (this.clients.size >= this.streamsMax) {
      return sendError(res, 'overloaded', `the console serves at most ${this.streamsMax} live streams at once; close one, or retry later`, { 'retry-after': '5' });
    }
    res.writeHead(200, {
      'content-type': 'text/event-stream; charset=utf-8',
      'cache-control': 'no-cache, no-transform',
      // A proxy (nginx) must pass events on as they come, not buffer them.
      'x-accel-buffering': 'no',
    });
    if (this.latest !== null) this.latestFramed ??= sseEvent('tick', this.latest);
    res.write(`retry: 2000\n\n${sseEvent('history', { samples: this.samples, events: this.recent })}${this.latestFramed ?? ''}`);
    this.lastSentAt = Date.now();
    this.clients.add(res);
    res.on('close', () => this.drop(res));
    this.run(router.transport);
    // The call is answered (its headers are sent): the stream goes on outside the gateway's
    // in-flight count, so an open console neither holds back a drain nor fills that bound.
    return 200;
  };

  /** Ends every stream, refuses new ones and stops the poller (before the gateway drains). */
  close(): void {
    this.closed = true;
    this.unsubscribe();
    this.stop();
    for (const res of [...this.clients]) res.end();
    this.clients.clear();
  }

  private drop(res: ServerResponse): void {
    this.clients.delete(res);
    if (this.clients.size === 0) this.stop();
  }

  private run(transport: ShardTransport): void {
    if (this.timer !== null || this.closed) return;
    this.source = new TickSource(transport);
    this.timer = setInterval(() => void this.poll(), this.minTickMs);
    this.timer.unref();
    void this.poll();
  }

  /** No stream is open: the poller stops, and the next one starts afresh (rates, windows, drops). */
  private stop(): void {
    if (this.timer !== null) clearInterval(this.timer);
    this.timer = null;
    this.source = null;
    this.latest = null;
    this.latestFramed = null;
  }

  /** Every minTickMs: a tick when one is due (tickMs passed), or sooner when something changed. */
  private async poll(): Promise<void> {
    const source = this.source;
    // Shards slow to answer hold back ticks, not the heartbeat.
    if (source !== null && Date.now() - this.lastSentAt >= heartbeatMs) this.broadcast(': waiting for the shards\n\n');
    if (this.busy || source === null) return;
    this.busy = true;
    try {
      const figures = await this.opts.metrics.consoleFigures();
      const changes = changeCount(figures);
      if (changes !== this.lastChanges) this.changed = true;
      const now = Date.now();
      const since = now - this.lastTickAt;
      const fast = this.changed && since >= this.minTickMs && this.lastTickBytes * this.clients.size <= fastTickBytesMax;
      if (since < this.tickMs && !fast) return;
      this.changed = false;
      this.lastChanges = changes;
      this.lastTickAt = now;
      const tick = await source.read(figures, now);
      if (source !== this.source) return; // every client left while the shards answered
      // Every stream has had the latest tick (its first one, or by broadcast): send what changed.
      const framed = sseEvent('tick', tickDelta(tick, this.latest));
      this.latest = tick;
      this.latestFramed = null;
      this.lastTickBytes = framed.length;
      this.broadcast(framed);
      const lastSample = this.samples.at(-1);
      if (lastSample === undefined || now - lastSample.at >= historyEveryMs) this.samples.push(sampleOf(tick));
      while (this.samples.length > 0 && this.samples[0]!.at < now - historyMs) this.samples.shift();
    } catch (e) {
      // At most once a minute: a failing read is retried every tick.
      if (Date.now() - this.lastWarnedAt >= 60_000) {
        this.lastWarnedAt = Date.now();
        this.opts.log.warn({ err: e }, 'console: reading the figures of a tick failed; retrying every tick');
      }
    } finally {
      this.busy = false;
    }
  }

  /** Stock events, framed at once and written together once this turn of the event loop ends. */
  private onEvents(events: readonly DomainEvent[]): void {
    const at = Date.now();
    for (const e of events) {
      if (e.type === 'paid') continue;
      const line: StockLine = { type: e.type, sku: e.sku, at };
      this.recent.push(line);
      if (this.recent.length > recentEventsMax) this.recent.shift();
      if (this.clients.size > 0) this.pendingEvents.push(sseEvent('stock', line));
    }
    // A pay changes stock without a stock event: either way, the next tick comes sooner.
    if (this.clients.size > 0 && events.length > 0) this.changed = true;
    if (this.pendingEvents.length > 0 && !this.flushScheduled) {
      this.flushScheduled = true;
      setImmediate(() => {
        this.flushScheduled = false;
        const chunk = this.pendingEvents.join('');
        this.pendingEvents = [];
        this.broadcast(chunk);
      });
    }
  }

  private broadcast(chunk: string): void {
    for (const res of this.clients) {
      if (res.writableLength > this.clientBufferBytes) {
        // Too slow to keep up: let it go (it reconnects) rather than buffer without bound.
        this.opts.log.info({ lagBytes: res.writableLength }, 'console: a stream fell too far behind and was disconnected');
        this.clients.delete(res);
        res.destroy();
        continue;
      }
      res.write(chunk);
    }
    this.lastSentAt = Date.now();
    if (this.clients.size === 0) this.stop();
  }
}
