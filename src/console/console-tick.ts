// The figures of one `tick` of the live console, gathered from what the gateway already has:
// the shards' stats (stock per SKU, queue figures per drop), the gateway's own counters
// (reserve rate, refusals by code, reserve latency) and the ERP outbox (backlog, oldest
// undelivered order). One TickSource serves every console stream: it remembers what it needs
// for rates and windows (the previous counters, a few latency snapshots, which drop each SKU
// is in) and nothing per client.

import type { OutboxEvent, QueueFigures } from '../domain/index.js';
import type { ShardTransport } from '../engine/shard-protocol.js';
import type { ConsoleFigures } from '../gateway/metrics.js';

/** How many SKUs a tick carries at most (the shards' stats already cap each shard at 1,000). */
export const tickSkusMax = 2000;
/** The window of the latency percentiles. */
export const latencyWindowMs = 10_000;
/** erp.reconcile walks every SKU of a shard: read it this seldom, unlike the O(1) erp.pending. */
export const reconcileEveryMs = 15_000;
/** Which drop each SKU is in comes from sku.list: read again at most this often when a SKU is new, and at least this often anyway. */
const dropsRefreshMinMs = 5_000;
const dropsRefreshMaxMs = 30_000;
/** SKUs per shard that sku.list reads for the drop map (its maximum page). */
const dropsListLimit = 1000;

/** Most SKUs whose figures a history sample keeps. */
export const historySkusMax = 100;

/** One SKU's stock, as the shard's stats count it, with the drop it belongs to (null: none, or not known yet). */
export interface TickSku {
  sku: string;
  dropId: string | null;
  onHand: number;
  available: number;
  reserved: number;
  sold: number;
  refunded: number;
}

export interface Tick {
  /** When the figures were read (epoch ms). */
  at: number;
  /** Shards that answered the stats call, of all. */
  shards: { answered: number; of: number };
  /** Sorted by sku; at most tickSkusMax (then `skusTruncated`). As sent: see `full`. */
  skus: TickSku[];
  skusTruncated: boolean;
  /**
   * As sent on a stream: true when `skus` lists every SKU (the first tick a stream gets),
   * false when it lists only the SKUs whose figures changed since the previous tick, and
   * `removed` the SKUs no longer there.
   */
  full: boolean;
  removed: string[];
  /** Drops with a queue: entries by state. */
  queues: QueueFigures[];
  reserve: {
    /** POST /v1/reservations answered since the gateway started, and those answered 2xx. */
    total: number;
    ok: number;
    /** Over the time since the previous tick; null on the first tick. */
    perSecond: number | null;
    okPerSecond: number | null;
    /** Latency of the reserves answered in the last `windowSeconds` (null: none answered). */
    p50Ms: number | null;
    p99Ms: number | null;
    windowSeconds: number;
  };
  /** 4xx answers by error code since the gateway started, over every route. */
  refusals: Record<string, number>;
  erp: {
    /** Events (order.paid, order.refunded) in the shards' outboxes, owed to the ERP. */
    backlogOrders: number;
    /** When the oldest of them was paid (or refunded), and its age; null: nothing is owed. */
    oldestUndeliveredAt: number | null;
    oldestUndeliveredAgeSeconds: number | null;
    /** Units owed (paid and refunded), read less often than the rest (see reconcileEveryMs); null until read. */
    undeliveredUnits: number | null;
    /** Every shard answered the ERP calls of this tick. */
    shardsAnswered: boolean;
  };
}

const sameSku = (x: TickSku, y: TickSku | undefined): boolean => y !== undefined && x.dropId === y.dropId && x.onHand === y.onHand
  && x.available === y.available && x.reserved === y.reserved && x.sold === y.sold && x.refunded === y.refunded;

/**
 * `tick` as sent to streams that have `previous` (a full tick): only the SKUs whose figures
 * changed, and the SKUs that left. In a sale most SKUs stand still between two ticks, so this
 * is what keeps the fan-out small.
 */
export function tickDelta(tick: Tick, previous: Tick | null): Tick {
  if (previous === null) return tick;
  const before = new Map(previous.skus.map((s) => [s.sku, s]));
  const skus = tick.skus.filter((s) => !sameSku(s, before.get(s.sku)));
  for (const s of tick.skus) before.delete(s.sku);
  return { ...tick, full: false, skus, removed: [...before.keys()] };
}

/**
 * A tick, thinned for the history a console gets when it opens: the totals, and per SKU
 * [sku, available, reserved, sold] for at most historySkusMax SKUs (all of them when there are
 * that few, else the ones with the most units held and sold).
 */
export interface Sample {
  at: number;
  perSecond: number | null;
  okPerSecond: number | null;
  p50Ms: number | null;
  p99Ms: number | null;
  skus: [string, number, number, number][];
}

export function sampleOf(tick: Tick): Sample {
  let skus = tick.skus;
  if (skus.length > historySkusMax) skus = [...skus].sort((x, y) => y.reserved + y.sold - (x.reserved + x.sold)).slice(0, historySkusMax);
  const { perSecond, okPerSecond, p50Ms, p99Ms } = tick.reserve;
  return { at: tick.at, perSecond, okPerSecond, p50Ms, p99Ms, skus: skus.map((s) => [s.sku, s.available, s.reserved, s.sold]) };
}

/** Routes whose calls change stock or queues: a call answered on one of them makes the next tick come sooner. */
export const changingRoutes = [
  'reservation.create', 'reservation.pay', 'reservation.cancel', 'reservation.refund',
  'sku.put', 'sku.stock', 'admin.stock-import', 'drop.put', 'drop.join',
] as const;

/** Requests answered so far on the changing routes: when it moves, something changed. */
export function changeCount(figures: ConsoleFigures): number {
  let n = 0;
  for (const route of changingRoutes) for (const count of Object.values(figures.requests[route] ?? {})) n += count;
  return n;
}

/**
 * The q-quantile (0..1) of a cumulative histogram, in the histogram's unit, interpolated
 * linearly inside the bucket it falls in (as Prometheus' histogram_quantile); past the last
 * finite bound it is that bound. null when the histogram is empty.
 */
export function histogramQuantile(q: number, buckets: readonly { le: number; count: number }[]): number | null {
  const total = buckets.length === 0 ? 0 : buckets[buckets.length - 1]!.count;
  if (total <= 0) return null;
  const rank = q * total;
  let lowerLe = 0;
  let lowerCount = 0;
  for (const b of buckets) {
    if (b.count >= rank && b.count > lowerCount) {
      if (!Number.isFinite(b.le)) return lowerLe;
      return lowerLe + (b.le - lowerLe) * ((rank - lowerCount) / (b.count - lowerCount));
    }
    if (Number.isFinite(b.le)) lowerLe = b.le;
    lowerCount = b.count;
  }
  return lowerLe;
}

/** `now` minus `before`, bucket by bucket (both cumulative, same bounds). */
function bucketDelta(now: readonly { le: number; count: number }[], before: readonly { le: number; count: number }[]): { le: number; count: number }[] {
  return now.map((b, i) => ({ le: b.le, count: b.count - (before[i]?.le === b.le ? before[i]!.count : 0) }));
}

const sum = (statuses: Record<string, number> | undefined, keep: (status: number) => boolean = () => true): number =>
  Object.entries(statuses ?? {}).reduce((n, [status, count]) => (keep(Number(status)) ? n + count : n), 0);

const eventTime = (e: OutboxEvent): number => (e.type === 'order.refunded' ? e.refundedAt : e.paidAt);

export class TickSource {
  private previous: { at: number; total: number; ok: number } | null = null;
  /** Latency snapshots of the last latencyWindowMs (and one older), oldest first. */
  private readonly latency: { at: number; buckets: { le: number; count: number }[] }[] = [];
  private readonly dropOf = new Map<string, string | null>();
  private dropsReadAt = Number.NEGATIVE_INFINITY;
  private undeliveredUnits: number | null = null;
  private reconciledAt = Number.NEGATIVE_INFINITY;

  constructor(private readonly transport: ShardTransport) {}

  /** The next tick's figures; `figures` are the gateway's counters read just before. */
  async read(figures: ConsoleFigures, now: number): Promise<Tick> {
    const [stats, erp] = await Promise.all([this.transport.stats(), this.erp(now)]);
    const all = stats.flatMap((s) => s.skus);
    await this.learnDrops(all.map((s) => s.sku), now);
    all.sort((x, y) => (x.sku < y.sku ? -1 : x.sku > y.sku ? 1 : 0));
    const skus = all.slice(0, tickSkusMax).map((s): TickSku => ({
      sku: s.sku, dropId: this.dropOf.get(s.sku) ?? null, onHand: s.onHand, available: s.available, reserved: s.reserved, sold: s.sold, refunded: s.refunded ?? 0,
    }));
    const queues = stats.flatMap((s) => s.queues ?? []).sort((x, y) => (x.dropId < y.dropId ? -1 : x.dropId > y.dropId ? 1 : 0));
    return {
      at: now, shards: { answered: stats.length, of: this.transport.shardCount }, skus, skusTruncated: all.length > skus.length, full: true, removed: [], queues,
      reserve: this.reserve(figures, now), refusals: figures.refusals, erp,
    };
  }

  private reserve(figures: ConsoleFigures, now: number): Tick['reserve'] {
    const statuses = figures.requests['reservation.create'];
    const total = sum(statuses);
    const ok = sum(statuses, (s) => s >= 200 && s < 300);
    const prev = this.previous;
    const seconds = prev === null ? 0 : (now - prev.at) / 1000;
    this.previous = { at: now, total, ok };
    // Latency over the window: the newest snapshot at least a window old is the baseline.
    this.latency.push({ at: now, buckets: figures.reserveBuckets });
    while (this.latency.length > 2 && this.latency[1]!.at <= now - latencyWindowMs) this.latency.shift();
    // The first tick has no baseline: its window would be the whole life of the gateway.
    const base = this.latency.length > 1 ? this.latency[0]! : undefined;
    const window = base === undefined ? [] : bucketDelta(figures.reserveBuckets, base.buckets);
    const ms = (q: number): number | null => {
      const s = histogramQuantile(q, window);
      return s === null ? null : Math.round(s * 1e5) / 100;
    };
    return {
      total, ok,
      perSecond: seconds > 0 ? (total - prev!.total) / seconds : null,
      okPerSecond: seconds > 0 ? (ok - prev!.ok) / seconds : null,
      p50Ms: ms(0.5), p99Ms: ms(0.99),
      windowSeconds: Math.round((now - (base?.at ?? now)) / 1000),
    };
  }

  /**
   * Backlog and oldest undelivered event per shard from erp.pending (the first event after 0:
   * the outbox holds undelivered events only, numbered consecutively, so its length is the
   * last seq minus the first's, plus one); units owed from erp.reconcile, now and then.
   */
  private async erp(now: number): Promise<Tick['erp']> {
    const shards = Array.from({ length: this.transport.shardCount }, (_, k) => k);
    const reconcile = now - this.reconciledAt >= reconcileEveryMs;
    const [pending, reconciled] = await Promise.all([
      Promise.all(shards.map((k) => this.transport.call(k, { t: 'erp.pending', afterSeq: 0, max: 1, refunds: true }))),
      reconcile ? Promise.all(shards.map((k) => this.transport.call(k, { t: 'erp.reconcile' }))) : Promise.resolve(null),
    ]);
    let backlogOrders = 0;
    let oldest: number | null = null;
    let shardsAnswered = true;
    for (const o of pending) {
      if (!o.ok || o.outboxLastSeq === undefined) {
        shardsAnswered = false;
        continue;
      }
      const first = o.paid?.[0];
      if (first === undefined) continue;
      backlogOrders += o.outboxLastSeq - first.eventSeq + 1;
      oldest = Math.min(oldest ?? Infinity, eventTime(first));
    }
    if (reconciled !== null) {
      let units = 0;
      let complete = true;
      for (const o of reconciled) {
        if (!o.ok || o.reconcile === undefined) complete = false;
        else units += o.reconcile.totals.undeliveredUnits + o.reconcile.totals.refundsUndeliveredUnits;
      }
      if (complete) {
        this.undeliveredUnits = units;
        this.reconciledAt = now;
      } else shardsAnswered = false;
    }
    return {
      backlogOrders, oldestUndeliveredAt: oldest, oldestUndeliveredAgeSeconds: oldest === null ? null : Math.max(0, Math.round((now - oldest) / 1000)),
      undeliveredUnits: this.undeliveredUnits, shardsAnswered,
    };
  }

  /** Reads which drop each SKU is in (sku.list of every shard) when a SKU is new to it, or the map is old. */
  private async learnDrops(skus: readonly string[], now: number): Promise<void> {
    const age = now - this.dropsReadAt;
    const unknown = skus.some((s) => !this.dropOf.has(s));
    if (!(age >= dropsRefreshMaxMs || (unknown && age >= dropsRefreshMinMs))) return;
    this.dropsReadAt = now;
    const shards = Array.from({ length: this.transport.shardCount }, (_, k) => k);
    const answers = await Promise.all(shards.map((k) => this.transport.call(k, { t: 'sku.list', limit: dropsListLimit })));
    const seen = new Set(skus);
    for (const sku of this.dropOf.keys()) if (!seen.has(sku)) this.dropOf.delete(sku);
    for (const a of answers) {
      if (!a.ok) continue;
      for (const view of a.skus?.items ?? []) this.dropOf.set(view.sku, view.dropId);
    }
    // Past a shard's first page (or on a shard that did not answer): no drop until the next full read.
    for (const sku of skus) if (!this.dropOf.has(sku)) this.dropOf.set(sku, null);
  }
}
