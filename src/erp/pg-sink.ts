// Delivers paid and refunded orders into a PostgreSQL table, one row per event (a refund is
// its own row, `event_type` order.refunded), one multi-row INSERT per batch with
// `ON CONFLICT (event_id) DO NOTHING`, so a repeated event (a call in flight at a crash)
// leaves exactly one row. It creates the table if absent, lazily and again after a failed
// attempt; it never updates or deletes a row, and it owns only the table it is given.

import pg from 'pg';
import { DeliveryFailure, networkFailureKind, type ErpSink } from './erp-sink.js';
import type { OutboxEvent } from './outbox-source.js';
import { defaultChannel } from '../domain/index.js';
import { checkedTableName, createTableSql, insertOrdersSql } from './pg-table-sql.js';

export interface PgSinkOptions {
  url: string;
  /** `table` or `schema.table`, each part [a-z_][a-z0-9_]{0,62}. */
  table: string;
  /** Pool size; the deliverer never has more calls in flight. */
  concurrency: number;
  batchEventsMax: number;
  /** Per statement (and per connect). */
  timeoutMs: number;
}

export class PgSink implements ErpSink {
  readonly name = 'postgres';
  readonly batchEventsMax: number;
  private readonly pool: pg.Pool;
  private readonly table: string;
  private tableReady: Promise<void> | null = null;

  constructor(opts: PgSinkOptions) {
    this.table = checkedTableName(opts.table);
    this.batchEventsMax = opts.batchEventsMax;
    this.pool = new pg.Pool({
      connectionString: opts.url, max: opts.concurrency,
      connectionTimeoutMillis: opts.timeoutMs, statement_timeout: opts.timeoutMs, query_timeout: opts.timeoutMs + 1000,
    });
    // An idle client losing its connection must not crash the process; the next call fails and retries.
    this.pool.on('error', () => undefined);
  }

  private ensureTable(): Promise<void> {
    if (this.tableReady === null) {
      this.tableReady = this.pool.query(createTableSql(this.table)).then(() => undefined, (e: unknown) => {
        this.tableReady = null;
        throw e;
      });
    }
    return this.tableReady;
  }

  async deliver(events: readonly OutboxEvent[], signal: AbortSignal, sent?: () => void): Promise<void> {
    if (events.length === 0) return;
    if (signal.aborted) throw new DeliveryFailure('aborted', 'the deliverer stopped before the call');
    try {
      await this.ensureTable();
      const values: unknown[] = [];
      for (const e of events) values.push(...rowOf(e));
      sent?.();
      await this.pool.query(insertOrdersSql(this.table, events.length), values);
    } catch (e) {
      // 42P01 undefined_table: the table went away (or a same-named view hid it); create it again next time.
      if ((e as { code?: unknown }).code === '42P01') this.tableReady = null;
      throw pgFailure(e);
    }
  }

  async close(): Promise<void> {
    await this.pool.end();
  }
}

/** An event's row, in the order of orderColumns: a refund fills the last three, an order.paid leaves them null. */
function rowOf(e: OutboxEvent): unknown[] {
  const order = [e.eventId, e.reservationId, e.sku, e.buyerId, e.qty, e.paidAt, e.paymentRef ?? null, e.channel ?? defaultChannel];
  if (e.type === 'order.refunded') return [...order, e.type, e.refundedAt, e.restock, e.reason];
  return [...order, 'order.paid', null, null, null];
}

function pgFailure(e: unknown): DeliveryFailure {
  if (e instanceof DeliveryFailure) return e;
  const err = e as { code?: unknown; message?: unknown };
  const message = typeof err.message === 'string' ? err.message : String(e);
  const code = typeof err.code === 'string' ? err.code : undefined;
  // Known network codes first (EPIPE also looks like a SQLSTATE), then five-character SQLSTATEs.
  const network = networkFailureKind(code);
  if (code !== undefined && network !== 'network_error') return new DeliveryFailure(network, `PostgreSQL call failed: ${message}`);
  if (code !== undefined && /^[0-9A-Z]{5}$/.test(code)) return new DeliveryFailure(`pg_${code}`, `PostgreSQL refused the insert: ${message}`);
  if (code !== undefined) return new DeliveryFailure('network_error', `PostgreSQL call failed: ${message}`);
  if (/timeout/i.test(message)) return new DeliveryFailure('timeout', `PostgreSQL call timed out: ${message}`);
  return new DeliveryFailure('pg_error', `PostgreSQL call failed: ${message}`);
}
