// Delivers paid orders into a PostgreSQL table and refunds into a table of their own,
// `<table>_refunds` (so the orders table keeps one row per paid order, as before refunds
// existed), one row per event, with `ON CONFLICT (event_id) DO NOTHING`, so a repeated event
// (a call in flight at a crash) leaves exactly one row. A batch of one kind is one multi-row
// INSERT; a batch of both is one transaction on one pooled client (orders, then refunds), so
// a batch is all-or-nothing either way. It creates both tables if absent, lazily and again
// after a failed attempt; it never updates or deletes a row, and it owns only those two tables.

import pg from 'pg';
import { DeliveryFailure, networkFailureKind, type ErpSink } from './erp-sink.js';
import { isStockEvent, type OrderEvent, type OutboxEvent } from './outbox-source.js';
import { defaultChannel } from '../domain/index.js';
import { createTableSql, insertOrdersSql, insertRefundsSql, refundsTableName } from './pg-table-sql.js';

export interface PgSinkOptions {
  url: string;
  /**
   * `table` or `schema.table`, each part [a-z_][a-z0-9_]{0,62}; refunds go to
   * `<table>_refunds`, so the table part may have at most 55 characters.
   */
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
    refundsTableName(opts.table); // throws on a bad name, or one that leaves no room for the refunds table's
    this.table = opts.table;
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
      const orders: unknown[] = [];
      const refunds: unknown[] = [];
      let orderRows = 0;
      let refundRows = 0;
      for (const e of events) {
        // Stock events go to the events webhook, never to the ERP's table.
        if (isStockEvent(e)) throw new DeliveryFailure('unsupported', `the PostgreSQL sink takes orders only, not ${e.type}`);
        if (e.type === 'order.refunded') {
          refunds.push(...orderValues(e), e.refundedAt, e.restock, e.reason);
          refundRows++;
        } else {
          orders.push(...orderValues(e));
          orderRows++;
        }
      }
      if (refundRows === 0) {
        sent?.();
        await this.pool.query(insertOrdersSql(this.table, orderRows), orders);
      } else if (orderRows === 0) {
        sent?.();
        await this.pool.query(insertRefundsSql(this.table, refundRows), refunds);
      } else {
        await this.inTransaction(sent, async (client) => {
          await client.query(insertOrdersSql(this.table, orderRows), orders);
          await client.query(insertRefundsSql(this.table, refundRows), refunds);
        });
      }
    } catch (e) {
      // 42P01 undefined_table: the table went away (or a same-named view hid it); create it again next time.
      if ((e as { code?: unknown }).code === '42P01') this.tableReady = null;
      throw pgFailure(e);
    }
  }

  /**
   * BEGIN, `work`, COMMIT on one pooled client, always released. On an error the database
   * answered (a refused insert, a failed COMMIT) it sends ROLLBACK and returns the client to
   * the pool; a failed ROLLBACK, or any other error (connection lost, client-side timeout with
   * the statement maybe still running), destroys the client instead, which ends the session
   * and with it the open transaction, without queueing a ROLLBACK behind a stuck statement.
   */
  private async inTransaction(sent: (() => void) | undefined, work: (client: pg.PoolClient) => Promise<void>): Promise<void> {
    const client = await this.pool.connect();
    let destroy: Error | undefined;
    try {
      sent?.();
      await client.query('BEGIN');
      await work(client);
      await client.query('COMMIT');
    } catch (e) {
      if (e instanceof pg.DatabaseError) {
        await client.query('ROLLBACK').catch((rollbackError: unknown) => {
          destroy = rollbackError instanceof Error ? rollbackError : new Error(String(rollbackError));
        });
      } else {
        destroy = e instanceof Error ? e : new Error(String(e));
      }
      throw e;
    } finally {
      client.release(destroy);
    }
  }

  async close(): Promise<void> {
    await this.pool.end();
  }
}

/** An event's order columns, in the order of orderColumns (a refund's begin the same way). */
function orderValues(e: OrderEvent): unknown[] {
  return [e.eventId, e.reservationId, e.sku, e.buyerId, e.qty, e.paidAt, e.paymentRef ?? null, e.channel ?? defaultChannel];
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
