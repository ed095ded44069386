// Prometheus metrics of the ERP hand-off, read from the deliverer's stats at scrape time
// (so nothing is counted twice and a restarted deliverer simply resets its counters).
// Labels are bounded: the failure `kind` is one of at most 64 values (then `other`).

import { Counter, Gauge, type Registry } from 'prom-client';
import type { Deliverer } from './deliverer.js';

export const erpMetricNames = [
  'flash_erp_delivered_total', 'flash_erp_calls_started_total', 'flash_erp_delivery_failures_total',
  'flash_erp_backlog_events', 'flash_erp_oldest_undelivered_seconds', 'flash_erp_calls_in_flight',
  'flash_erp_last_error_timestamp_seconds',
] as const;

/** Registers the hand-off's metrics on `registry`; `current()` is read at every scrape. */
export function registerErpMetrics(registry: Registry, current: () => Deliverer | null): void {
  const registers = [registry];
  const stats = () => current()?.stats() ?? null;
  const counter = (name: string, help: string, pick: (s: ReturnType<Deliverer['stats']>) => number) => new Counter({
    name, help, registers,
    collect() {
      const s = stats();
      this.reset();
      if (s !== null) this.inc(pick(s));
    },
  });
  const gauge = (name: string, help: string, pick: (s: ReturnType<Deliverer['stats']>) => number) => new Gauge({
    name, help, registers,
    collect() {
      const s = stats();
      this.set(s === null ? 0 : pick(s));
    },
  });
  counter('flash_erp_delivered_total', 'Events (order.paid and order.refunded) the ERP accepted (2xx or inserted), repeats after a crash included', (s) => s.deliveredTotal);
  counter('flash_erp_calls_started_total', 'Calls started to the ERP, retries included', (s) => s.callsStarted);
  new Counter({
    name: 'flash_erp_delivery_failures_total', help: 'Failed ERP calls and outbox reads/acks, by kind (http_503, timeout, connection_reset, pg_<sqlstate>, outbox_ack, ...)',
    labelNames: ['kind'], registers,
    collect() {
      const s = stats();
      this.reset();
      if (s !== null) for (const [kind, n] of Object.entries(s.failuresByKind)) this.inc({ kind }, n);
    },
  });
  gauge('flash_erp_backlog_events', 'Events (paid and refunded orders) known and not yet delivered (fetched into the delivery windows)', (s) => s.backlogEvents);
  gauge('flash_erp_oldest_undelivered_seconds', 'Age of the oldest event not yet delivered, from its pay or refund (0 when none)', (s) => s.oldestUndeliveredAgeMs / 1000);
  gauge('flash_erp_calls_in_flight', 'ERP calls in flight', (s) => s.callsInFlight);
  gauge('flash_erp_last_error_timestamp_seconds', 'When the last ERP call failed (0 when none)', (s) => (s.lastError === null ? 0 : s.lastError.atMs / 1000));
}
