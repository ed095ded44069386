// Prometheus metrics of a gateway: requests by route and status, reserve latency, shard
// mailbox depth and fsync latency, stock events, and per-SKU stock gauges read from the
// shards at scrape time. SKU gauges are capped per shard to bound label cardinality.

import { readFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { Counter, Gauge, Histogram, Registry, collectDefaultMetrics } from 'prom-client';
import type { DomainEvent } from '../domain/index.js';
import type { ShardTransport } from '../engine/shard-protocol.js';

/** What GatewayMetrics.consoleFigures() reads: cumulative counts since this process started. */
export interface ConsoleFigures {
  /** Route name (`reservation.create`) -> status (`201`) -> requests answered. */
  requests: Record<string, Record<string, number>>;
  /** Error code -> 4xx answers, over every route. */
  refusals: Record<string, number>;
  /** Cumulative histogram of POST /v1/reservations latency, by upper bound in seconds. */
  reserveBuckets: { le: number; count: number }[];
}

export class GatewayMetrics {
  readonly registry = new Registry();
  private readonly requests: Counter<'route' | 'status'>;
  private readonly errors: Counter<'route' | 'code'>;
  private readonly requestChildren = new Map<string, Counter.Internal>();
  private readonly refusals: Counter<'route' | 'code'>;
  private readonly refusalChildren = new Map<string, Counter.Internal>();
  readonly reserveSeconds: Histogram;
  private readonly fsyncSeconds: Histogram<'shard'>;
  private readonly stockEvents: Counter<'type' | 'sku'>;
  private readonly restarts: Counter<'shard'>;
  private transport: ShardTransport | null = null;

  /** `role`: this process's FLASH_ROLE, for flash_build_info. */
  constructor(opts: { role?: string } = {}) {
    const registers = [this.registry];
    collectDefaultMetrics({ register: this.registry });
    new Gauge({
      name: 'flash_build_info', help: 'Always 1; the labels say what runs: version (package.json), node (Node.js version), role (FLASH_ROLE)',
      labelNames: ['version', 'node', 'role'], registers,
    }).set({ version: engineVersion(), node: process.version, role: opts.role ?? 'unknown' }, 1);
    this.requests = new Counter({ name: 'flash_http_requests_total', help: 'HTTP requests by route and status code', labelNames: ['route', 'status'], registers });
    this.refusals = new Counter({ name: 'flash_refusals_total', help: 'Answers 4xx by route template and error code', labelNames: ['route', 'code'], registers });
    this.errors = new Counter({
      name: 'flash_errors_total', help: 'Answers 5xx by route template and error code (overloaded, shard_unavailable, shard_full, shutting_down, internal_error)',
      labelNames: ['route', 'code'], registers,
    });
    this.reserveSeconds = new Histogram({
      name: 'flash_reserve_duration_seconds', help: 'Latency of POST /v1/reservations, from request to response',
      buckets: [0.0005, 0.001, 0.002, 0.005, 0.01, 0.02, 0.05, 0.1, 0.25, 0.5, 1, 2.5], registers,
    });
    this.fsyncSeconds = new Histogram({
      name: 'flash_wal_commit_duration_seconds', help: 'Time from a shard turn applying its commands to its WAL record being durable (apply, waiting for the sync in flight, write, fdatasync)',
      labelNames: ['shard'], buckets: [0.0001, 0.0002, 0.0005, 0.001, 0.002, 0.005, 0.01, 0.05, 0.25], registers,
    });
    this.stockEvents = new Counter({ name: 'flash_stock_events_total', help: 'Stock crossings per SKU by type (low_stock, sold_out, restocked)', labelNames: ['type', 'sku'], registers });
    this.restarts = new Counter({ name: 'flash_shard_restarts_total', help: 'Shard worker restarts after a crash', labelNames: ['shard'], registers });
    this.defineShardGauges(registers);
  }

  private defineShardGauges(registers: Registry[]): void {
    const self = this;
    const skuGauge = (name: string, help: string, pick: (s: { onHand: number; available: number; reserved: number; sold: number; refunded?: number }) => number) =>
      new Gauge({
        name, help, labelNames: ['sku'], registers,
        async collect() {
          this.reset();
          for (const shard of await self.shardStats()) for (const s of shard.skus) this.set({ sku: s.sku }, pick(s));
        },
      });
    skuGauge('flash_sku_on_hand', 'Units on hand per SKU', (s) => s.onHand);
    skuGauge('flash_sku_available', 'Units available per SKU', (s) => s.available);
    skuGauge('flash_sku_reserved', 'Units held by live reservations per SKU', (s) => s.reserved);
    skuGauge('flash_sku_sold', 'Units sold per SKU (refunded units excluded)', (s) => s.sold);
    skuGauge('flash_sku_refunded', 'Units refunded per SKU (restocked or not)', (s) => s.refunded ?? 0);
    new Gauge({
      name: 'flash_queue_entries', help: "Entries of each drop's queue by state (waiting, admitted, used, lapsed; a draw's entered, won, lost)", labelNames: ['drop', 'state'], registers,
      async collect() {
        this.reset();
        for (const shard of await self.shardStats()) {
          for (const q of shard.queues ?? []) {
            const draw = q.mode === 'draw';
            const rows: [string, number][] = draw
              ? [['entered', q.entries - q.won - q.lost], ['won', q.won], ['lost', q.lost]]
              : [['waiting', q.waiting], ['admitted', q.admitted], ['used', q.used], ['lapsed', q.lapsed]];
            for (const [state, n] of rows) this.set({ drop: q.dropId, state }, n);
          }
        }
      },
    });
    new Gauge({
      name: 'flash_shard_mailbox_depth', help: 'Commands in flight to each shard', labelNames: ['shard'], registers,
      collect() {
        const t = self.transport;
        if (t !== null) for (let i = 0; i < t.shardCount; i++) this.set({ shard: String(i) }, t.inFlight(i));
      },
    });
    new Gauge({
      name: 'flash_shard_live_reservations', help: 'Held reservations per shard', labelNames: ['shard'], registers,
      async collect() {
        this.reset();
        for (const s of await self.shardStats()) this.set({ shard: String(s.shardId) }, s.liveReservations);
      },
    });
    new Gauge({
      name: 'flash_shard_snapshot_failures', help: 'Snapshots that failed since the shard worker started (alert on > 0: its log grows)', labelNames: ['shard'], registers,
      async collect() {
        this.reset();
        for (const s of await self.shardStats()) this.set({ shard: String(s.shardId) }, s.snapshotFailures);
      },
    });
    // A checkpointer that falls behind (at its low priority, on a machine busy for long) shows
    // here before it shows in a restart's replay time: alert when this passes a few intervals.
    new Gauge({
      name: 'flash_shard_log_commands_since_snapshot', help: 'Commands logged since the newest snapshot the shard counts on: what a restart would replay (alert when it passes a few times flash_shard_snapshot_every_commands)', labelNames: ['shard'], registers,
      async collect() {
        this.reset();
        for (const s of await self.shardStats()) if (s.logCommandsSinceSnapshot !== undefined) this.set({ shard: String(s.shardId) }, s.logCommandsSinceSnapshot);
      },
    });
    new Gauge({
      name: 'flash_shard_snapshot_every_commands', help: 'FLASH_SNAPSHOT_EVERY: logged commands after which a snapshot is due', labelNames: ['shard'], registers,
      async collect() {
        this.reset();
        for (const s of await self.shardStats()) if (s.snapshotEveryCommands !== undefined) this.set({ shard: String(s.shardId) }, s.snapshotEveryCommands);
      },
    });
  }

  private statsCache: { atMs: number; value: ReturnType<ShardTransport['stats']> } | null = null;

  /** One stats round trip per scrape, shared by every gauge that needs it. */
  private shardStats(): ReturnType<ShardTransport['stats']> {
    const now = Date.now();
    if (this.transport === null) return Promise.resolve([]);
    if (this.statsCache === null || now - this.statsCache.atMs > 250) {
      this.statsCache = { atMs: now, value: this.transport.stats() };
    }
    return this.statsCache.value;
  }

  attach(transport: ShardTransport): void {
    this.transport = transport;
  }

  countRequest(route: string, status: number): void {
    const key = `${route} ${status}`;
    let child = this.requestChildren.get(key);
    if (child === undefined) {
      child = this.requests.labels(route, String(status));
      this.requestChildren.set(key, child);
    }
    child.inc();
  }

  /** Counts a 5xx answer by its code, so overload is told apart from an unavailable shard. */
  countError(route: string, code: string): void {
    this.errors.inc({ route, code });
  }

  /** Counts a 4xx answer; `route` is the route's template (`POST /v1/reservations`), so labels are bounded. */
  countRefusal(route: string, code: string): void {
    const key = `${route} ${code}`;
    let child = this.refusalChildren.get(key);
    if (child === undefined) {
      child = this.refusals.labels(route, code);
      this.refusalChildren.set(key, child);
    }
    child.inc();
  }

  onEvents(events: DomainEvent[]): void {
    for (const e of events) if (e.type !== 'paid') this.stockEvents.inc({ type: e.type, sku: e.sku });
    this.relayEvents(events);
  }

  /**
   * Hands events to the listeners only, without counting them: a gateway over NATS hears
   * the stock events of shards another process hosts (and counts), so they are counted once.
   */
  relayEvents(events: readonly DomainEvent[]): void {
    for (const listener of this.eventListeners) {
      try {
        listener(events);
      } catch {
        // A listener (the live console) must never break the shards' observer.
      }
    }
  }

  private readonly eventListeners = new Set<(events: readonly DomainEvent[]) => void>();

  /** Hears every batch of domain events this process's shards report (the live console's stock events); returns the unsubscribe. */
  subscribeEvents(listener: (events: readonly DomainEvent[]) => void): () => void {
    this.eventListeners.add(listener);
    return () => this.eventListeners.delete(listener);
  }

  /**
   * Read-only figures for the live console, from the counters above: requests per route name
   * and status, refusals per code (summed over routes), and the cumulative buckets of
   * flash_reserve_duration_seconds (`le` in seconds, the last one Infinity).
   */
  async consoleFigures(): Promise<ConsoleFigures> {
    const [requests, refusals, reserve] = await Promise.all([this.requests.get(), this.refusals.get(), this.reserveSeconds.get()]);
    const byRoute: ConsoleFigures['requests'] = {};
    for (const v of requests.values) {
      const route = String(v.labels.route);
      (byRoute[route] ??= {})[String(v.labels.status)] = v.value;
    }
    const byCode: Record<string, number> = {};
    for (const v of refusals.values) byCode[String(v.labels.code)] = (byCode[String(v.labels.code)] ?? 0) + v.value;
    const reserveBuckets = reserve.values
      .filter((v) => v.metricName === 'flash_reserve_duration_seconds_bucket')
      .map((v) => ({ le: v.labels.le === '+Inf' ? Infinity : Number(v.labels.le), count: v.value }))
      .sort((x, y) => x.le - y.le);
    return { requests: byRoute, refusals: byCode, reserveBuckets };
  }

  onCommit(shardId: number, commitMs: number): void {
    this.fsyncSeconds.observe({ shard: String(shardId) }, commitMs / 1000);
  }

  onRestart(shardId: number): void {
    this.restarts.inc({ shard: String(shardId) });
  }
}

let version: string | null = null;

/** The engine's version from its package.json (the nearest one above this file: src/ or dist/src/), or `unknown`. */
function engineVersion(): string {
  if (version !== null) return version;
  version = 'unknown';
  let dir = dirname(fileURLToPath(import.meta.url));
  for (let i = 0; i < 5; i++, dir = dirname(dir)) {
    try {
      const pkg = JSON.parse(readFileSync(join(dir, 'package.json'), 'utf8')) as { version?: unknown };
      if (typeof pkg.version === 'string') version = pkg.version;
      break;
    } catch {
      // no package.json here (or unreadable): look one directory up
    }
  }
  return version;
}
