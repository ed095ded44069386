// Wires the ERP hand-off from its settings: builds the sink (webhook, or PostgreSQL loaded
// only when asked for, since `pg` is optional), the deliverer over the shards' outbox, its
// metrics and its logging (failures summarised at most once per 10 s, never per event).
// It owns the sink's connections and closes them on stop; it never touches shard state.

import type { Logger } from 'pino';
import type { Registry } from 'prom-client';
import { Deliverer, type DelivererObserver } from './deliverer.js';
import { describeErpConfig, type ErpConfig } from './erp-config.js';
import { registerErpMetrics } from './erp-metrics.js';
import type { ErpSink } from './erp-sink.js';
import type { OutboxSource } from './outbox-source.js';
import { WebhookSink } from './webhook-sink.js';

export interface ErpHandOff {
  readonly deliverer: Deliverer;
  readonly sink: ErpSink;
  /** Finishes calls in flight (up to graceMs), acknowledges what was delivered, closes the sink. */
  stop(graceMs: number): Promise<void>;
  /**
   * Stops dead (a lost deliverer lease): aborts calls in flight, acknowledges nothing more,
   * closes the sink. Whatever was in flight may reach the ERP again from the next deliverer,
   * with the same eventId.
   */
  halt(): Promise<void>;
}

type Log = Pick<Logger, 'info' | 'warn' | 'error'>;

const failureLogIntervalMs = 10_000;

export async function createErpSink(config: ErpConfig): Promise<ErpSink> {
  const { sink } = config;
  if (sink.kind === 'webhook') return new WebhookSink({ url: sink.url, secret: sink.secret, timeoutMs: config.timeoutMs, concurrency: config.concurrency });
  const { PgSink } = await import('./pg-sink.js');
  return new PgSink({ url: sink.url, table: sink.table, concurrency: config.concurrency, batchEventsMax: sink.batchEventsMax, timeoutMs: config.timeoutMs });
}

/** Logs the first failure at once, then one summary per interval while failures go on. */
function loggingObserver(log: Log): DelivererObserver {
  let lastLogMs = Number.NEGATIVE_INFINITY;
  let unlogged = 0;
  return {
    onFailure(kind, error, events) {
      unlogged++;
      const now = Date.now();
      if (now - lastLogMs < failureLogIntervalMs) return;
      const message = error instanceof Error ? error.message : String(error);
      log.warn({ kind, failures: unlogged, eventId: events[0]?.eventId, err: message }, 'ERP delivery failing; retrying with backoff');
      lastLogMs = now;
      unlogged = 0;
    },
  };
}

export async function startErpHandOff(opts: {
  config: ErpConfig; source: OutboxSource; registry?: Registry; log?: Log;
  /** Checked before every call: false starts none (see DelivererOptions.mayStart). */
  mayStart?: () => boolean;
}): Promise<ErpHandOff> {
  const { config, source, log } = opts;
  const sink = await createErpSink(config);
  const deliverer = new Deliverer({
    source, sink,
    maxRps: config.maxRps, concurrency: config.concurrency, windowEventsPerShard: config.windowEventsPerShard,
    backoff: { baseMs: config.retryBaseMs, capMs: config.retryMaxMs }, pollMs: config.pollMs,
    // Another deliverer may have run until a moment ago (this process before a restart, or
    // the last holder of the deployment's deliverer lease): keep the cap across the two.
    quietFirstWindow: true,
    ...(opts.mayStart === undefined ? {} : { mayStart: opts.mayStart }),
    ...(log === undefined ? {} : { observer: loggingObserver(log) }),
  });
  if (opts.registry !== undefined) registerErpMetrics(opts.registry, () => deliverer);
  deliverer.start();
  log?.info({ ...describeErpConfig(config), shards: source.shardIds }, 'ERP hand-off started');
  return {
    deliverer, sink,
    async stop(graceMs) {
      await deliverer.stop(graceMs);
      await sink.close();
      const s = deliverer.stats();
      log?.info({ delivered: s.deliveredTotal, backlog: s.backlogEvents, failures: s.failuresTotal }, 'ERP hand-off stopped');
    },
    async halt() {
      deliverer.halt();
      await sink.close().catch(() => undefined);
      log?.warn({ delivered: deliverer.stats().deliveredTotal }, 'ERP hand-off halted; calls in flight were aborted');
    },
  };
}
