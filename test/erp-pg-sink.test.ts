// The ERP hand-off into a real PostgreSQL (127.0.0.1:5432, database `test`, or
// FLASH_TEST_PG_URL): batched inserts with ON CONFLICT, through injected failures before
// and after commits, a crash mid-flight and a restart from the durable acks, must leave
// exactly one row per paid event, equal to the event, in the configured table; refunds go to
// `<table>_refunds`, never into the orders table (an ERP job that sums or counts it keeps
// seeing one row per paid order), also beside a table the first version made; a batch of
// orders and refunds is all-or-nothing. Each run uses its own schema and drops it.

import pg from 'pg';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { Deliverer } from '../src/erp/deliverer.js';
import { loadErpConfig } from '../src/erp/erp-config.js';
import { DeliveryFailure } from '../src/erp/erp-sink.js';
import { PgSink } from '../src/erp/pg-sink.js';
import { refundsTableName } from '../src/erp/pg-table-sql.js';
import type { OutboxEvent, PaidEvent, RefundedEvent } from '../src/erp/outbox-source.js';
import { ConfigError } from '../src/config.js';
import { FakeOutbox } from './support/erp-fake-outbox.js';
import { TrackingSink } from './support/erp-tracking-sink.js';

const pgUrl = process.env.FLASH_TEST_PG_URL ?? 'postgres://postgres@127.0.0.1:5432/test';
const schema = `erp_test_${process.pid}_${Math.floor(Math.random() * 1e9).toString(36)}`;
const table = `${schema}.flash_orders`;
let admin: pg.Client;

beforeAll(async () => {
  admin = new pg.Client({ connectionString: pgUrl, connectionTimeoutMillis: 5000 });
  await admin.connect().catch((e: unknown) => {
    throw new Error(`these tests need PostgreSQL at ${pgUrl} (set FLASH_TEST_PG_URL): ${String(e)}`);
  });
  await admin.query(`CREATE SCHEMA ${schema}`);
});

afterAll(async () => {
  await admin?.query(`DROP SCHEMA IF EXISTS ${schema} CASCADE`);
  await admin?.end();
});

async function waitFor(what: string, done: () => boolean, timeoutMs: number): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!done()) {
    if (Date.now() > deadline) throw new Error(`timed out after ${timeoutMs} ms waiting until ${what}`);
    await new Promise((r) => setTimeout(r, 10));
  }
}

/** A table's columns in order, `schema.table` given. */
async function columnsOf(qualified: string): Promise<string[]> {
  const [s, t] = qualified.split('.');
  const { rows } = await admin.query<{ column_name: string }>(
    'SELECT column_name FROM information_schema.columns WHERE table_schema = $1 AND table_name = $2 ORDER BY ordinal_position', [s, t]);
  return rows.map((r) => r.column_name);
}

const orderTableColumns = ['event_id', 'reservation_id', 'sku', 'buyer_id', 'qty', 'paid_at', 'payment_ref', 'delivered_at', 'channel'];
const refundTableColumns = ['event_id', 'reservation_id', 'sku', 'buyer_id', 'qty', 'paid_at', 'payment_ref', 'channel', 'refunded_at', 'restock', 'reason', 'delivered_at'];
const orderSelect = 'event_id, reservation_id, sku, buyer_id, qty, paid_at, payment_ref, channel';
const refundSelect = `${orderSelect}, refunded_at, restock, reason`;

/** An order.paid's row as PostgreSQL returns it (bigint as a string). */
function orderRow(e: PaidEvent): Record<string, unknown> {
  return {
    event_id: e.eventId, reservation_id: e.reservationId, sku: e.sku, buyer_id: e.buyerId, qty: e.qty, paid_at: String(e.paidAt),
    payment_ref: e.paymentRef, channel: e.channel ?? 'default',
  };
}

function refundRow(e: RefundedEvent): Record<string, unknown> {
  return {
    event_id: e.eventId, reservation_id: e.reservationId, sku: e.sku, buyer_id: e.buyerId, qty: e.qty, paid_at: String(e.paidAt),
    payment_ref: e.paymentRef, channel: e.channel, refunded_at: String(e.refundedAt), restock: e.restock, reason: e.reason,
  };
}

const byEventId = (x: Record<string, unknown>, y: Record<string, unknown>): number => (String(x.event_id) < String(y.event_id) ? -1 : 1);

async function rowsOf(qualified: string, select: string): Promise<Record<string, unknown>[]> {
  return (await admin.query<Record<string, unknown>>(`SELECT ${select} FROM ${qualified} ORDER BY event_id`)).rows;
}

/** deliver() with a fresh signal; the failure it threw, or null. */
async function deliverOnce(sink: PgSink, events: readonly OutboxEvent[]): Promise<DeliveryFailure | null> {
  try {
    await sink.deliver(events, new AbortController().signal);
    return null;
  } catch (e) {
    if (e instanceof DeliveryFailure) return e;
    throw e;
  }
}

function run(outbox: FakeOutbox, sink: TrackingSink): Deliverer {
  const d = new Deliverer({
    source: outbox, sink, maxRps: 200, concurrency: 4, windowEventsPerShard: 100,
    backoff: { baseMs: 10, capMs: 200 }, pollMs: 100,
  });
  d.start();
  return d;
}

describe('PostgreSQL sink', () => {
  it('leaves exactly one row per paid event after failures, a crash mid-flight and a restart', async () => {
    const outbox = new FakeOutbox({ shardIds: [0, 1, 2], delayMsMax: 2 });
    outbox.appendMany(1200);
    const sinkOptions = { url: pgUrl, table, concurrency: 4, batchEventsMax: 25, timeoutMs: 5000 };
    // failAfter: the rows are committed but the answer is "lost", so the batch comes again.
    const first = new TrackingSink(new PgSink(sinkOptions), { failBeforeRate: 0.2, failAfterRate: 0.2 });
    const a = run(outbox, first);
    await waitFor('a quarter of the rows are acknowledged', () => outbox.undeliveredCount() <= 900, 20_000);
    const inFlightAtCrash = first.inFlight.size;
    a.halt();
    outbox.crash();
    await first.close();
    expect(outbox.undeliveredCount()).toBeGreaterThan(0);

    outbox.appendMany(300); // orders keep being paid while the deliverer is down
    const second = new TrackingSink(new PgSink(sinkOptions), { failBeforeRate: 0.1, failAfterRate: 0.1 });
    const b = run(outbox, second);
    await waitFor('every event is acknowledged', () => outbox.undeliveredCount() === 0, 40_000);
    await b.stop(5000);
    await second.close();

    expect(outbox.violations).toEqual([]);
    expect(first.maxEventsPerCall).toBeGreaterThan(1);
    expect(second.maxEventsPerCall).toBeLessThanOrEqual(25);
    const events = outbox.allEvents();
    const { rows } = await admin.query<{ event_id: string; reservation_id: string; sku: string; buyer_id: string; qty: number; paid_at: string; payment_ref: string | null }>(
      `SELECT event_id, reservation_id, sku, buyer_id, qty, paid_at, payment_ref FROM ${table}`);
    expect(rows.length).toBe(events.length);
    const byId = new Map(rows.map((r) => [r.event_id, r]));
    for (const e of events) {
      expect(byId.get(e.eventId)).toEqual({
        event_id: e.eventId, reservation_id: e.reservationId, sku: e.sku, buyer_id: e.buyerId, qty: e.qty, paid_at: String(e.paidAt), payment_ref: e.paymentRef,
      });
    }
    expect(inFlightAtCrash).toBeLessThanOrEqual(4 * 25);
    // A table this version makes: the orders table as every release made it, and an empty refunds table beside it.
    expect(await columnsOf(table)).toEqual(orderTableColumns);
    expect(await columnsOf(`${table}_refunds`)).toEqual(refundTableColumns);
    expect(await rowsOf(`${table}_refunds`, 'event_id')).toEqual([]);
    const kinds = new Set([...Object.keys(a.stats().failuresByKind), ...Object.keys(b.stats().failuresByKind)]);
    expect([...kinds].sort()).toEqual(['injected_after', 'injected_before']);
  }, 60_000);

  it('writes orders to the table and refunds to <table>_refunds, exact rows, through lost answers, beside a table the first version made (it gets channel, no refund columns)', async () => {
    const old = `${schema}.older_orders`;
    // The table as the first version created it (no channel), with one order already in it.
    await admin.query(`CREATE TABLE ${old} (event_id text PRIMARY KEY, reservation_id text, sku text, buyer_id text, qty int,
      paid_at bigint, payment_ref text, delivered_at timestamptz DEFAULT now())`);
    await admin.query(`INSERT INTO ${old} (event_id, reservation_id, sku, buyer_id, qty, paid_at, payment_ref)
      VALUES ('order.paid:0.old', '0.old', 'tee', 'ann', 1, 1, null)`);
    const outbox = new FakeOutbox({ shardIds: [0, 1] });
    const paid = outbox.appendMany(20);
    const refunds = paid.filter((_, i) => i % 4 === 0).map((p, i) => outbox.appendRefund(p, { restock: i % 2 === 0, reason: i === 0 ? null : `reason ${i}` }));
    paid.push(...outbox.appendMany(6)); // orders after the refunds: later batches mix both kinds
    // failAfterRate: committed batches come again, so every row is written more than once by some call.
    const sink = new TrackingSink(new PgSink({ url: pgUrl, table: old, concurrency: 2, batchEventsMax: 7, timeoutMs: 5000 }), { failAfterRate: 0.3 });
    const d = run(outbox, sink);
    await waitFor('every event is acknowledged', () => outbox.undeliveredCount() === 0, 20_000);
    await d.stop(1000);
    await sink.close();
    expect(outbox.violations).toEqual([]);

    // The orders table: what a reader saw before refunds existed, one row per paid order, and no refund columns.
    expect(await columnsOf(old)).toEqual(orderTableColumns);
    expect(await rowsOf(old, orderSelect)).toEqual([
      { event_id: 'order.paid:0.old', reservation_id: '0.old', sku: 'tee', buyer_id: 'ann', qty: 1, paid_at: '1', payment_ref: null, channel: null },
      ...paid.map(orderRow),
    ].sort(byEventId));
    const sums = (await admin.query<{ n: string; qty: string }>(`SELECT count(*) AS n, sum(qty) AS qty FROM ${old}`)).rows[0]!;
    expect({ n: Number(sums.n), qty: Number(sums.qty) }).toEqual({ n: 1 + paid.length, qty: 1 + paid.reduce((n, p) => n + p.qty, 0) });

    // The refunds table: one row per order.refunded, equal to it.
    expect(refundsTableName(old)).toBe(`${schema}.older_orders_refunds`);
    expect(await columnsOf(`${old}_refunds`)).toEqual(refundTableColumns);
    expect(await rowsOf(`${old}_refunds`, refundSelect)).toEqual(refunds.map(refundRow).sort(byEventId));
    const notNull = (await admin.query<{ n: string }>(`SELECT count(*) AS n FROM ${old}_refunds WHERE delivered_at IS NOT NULL`)).rows[0]!;
    expect(Number(notNull.n)).toBe(refunds.length);
  }, 30_000);

  it('writes a batch of orders and refunds in one transaction: a refused refund leaves no order row either, and the pooled client leaves its transaction', async () => {
    const t = `${schema}.atomic_orders`;
    // The refunds table made beforehand, as the sink would, plus a CHECK that refuses one reason.
    await admin.query(`CREATE TABLE ${t}_refunds (
      event_id text PRIMARY KEY, reservation_id text, sku text, buyer_id text, qty int,
      paid_at bigint, payment_ref text, channel text, refunded_at bigint, restock boolean, reason text,
      delivered_at timestamptz DEFAULT now(), CONSTRAINT no_refusals CHECK (reason IS DISTINCT FROM 'refuse me'))`);
    const outbox = new FakeOutbox({ shardIds: [0] });
    const [p0, p1, p2, p3] = outbox.appendMany(4) as [PaidEvent, PaidEvent, PaidEvent, PaidEvent];
    const refused = outbox.appendRefund(p2, { reason: 'refuse me', restock: true });
    // concurrency 1: one pooled client, so every call below runs on the client the failed transaction used.
    const sink = new PgSink({ url: pgUrl, table: t, concurrency: 1, batchEventsMax: 10, timeoutMs: 5000 });
    try {
      const mixed = [p0, p1, refused];
      for (let attempt = 0; attempt < 2; attempt++) {
        const failure = await deliverOnce(sink, mixed);
        expect(failure?.kind).toBe('pg_23514'); // check_violation, named by its SQLSTATE as before
        expect(await rowsOf(t, 'event_id')).toEqual([]);
        expect(await rowsOf(`${t}_refunds`, 'event_id')).toEqual([]);
      }
      // The client went back to the pool out of its transaction (no session of this database is
      // left in one): a batch of one kind works on it.
      const stuck = await admin.query(`SELECT pid FROM pg_stat_activity WHERE datname = current_database() AND state LIKE 'idle in transaction%' AND query LIKE '%atomic_orders%'`);
      expect(stuck.rows).toEqual([]);
      expect(await deliverOnce(sink, [p2])).toBeNull();
      expect(await rowsOf(t, orderSelect)).toEqual([orderRow(p2)]);

      // The ERP fixes its table: the same batch now goes through whole, and again changes nothing.
      await admin.query(`ALTER TABLE ${t}_refunds DROP CONSTRAINT no_refusals`);
      expect(await deliverOnce(sink, mixed)).toBeNull();
      expect(await deliverOnce(sink, mixed)).toBeNull();
      const refund3 = outbox.appendRefund(p3, { reason: null, restock: false });
      // Repeats inside one batch and across batches of every shape: still one row per event.
      expect(await deliverOnce(sink, [p0, p3, refused, refund3, p3])).toBeNull();
      expect(await deliverOnce(sink, [refund3, refused])).toBeNull();
      expect(await deliverOnce(sink, [p0, p1, p2, p3])).toBeNull();
      expect(await rowsOf(t, orderSelect)).toEqual([p0, p1, p2, p3].map(orderRow).sort(byEventId));
      expect(await rowsOf(`${t}_refunds`, refundSelect)).toEqual([refused, refund3].map(refundRow).sort(byEventId));

      // The refunds table dropped under the sink: 42P01 once, then both tables are made again.
      await admin.query(`DROP TABLE ${t}_refunds`);
      expect((await deliverOnce(sink, [refund3]))?.kind).toBe('pg_42P01');
      expect(await deliverOnce(sink, [refund3])).toBeNull();
      expect(await rowsOf(`${t}_refunds`, refundSelect)).toEqual([refundRow(refund3)]);
      expect(await rowsOf(t, 'event_id')).toHaveLength(4);
    } finally {
      await sink.close();
    }
  }, 30_000);

  it('refuses, when configured, a table name that leaves no room for `_refunds` within 63 characters', () => {
    const longest = `t${'x'.repeat(54)}`; // 55 characters: `<it>_refunds` has 63
    const tooLong = `${longest}y`;
    expect(refundsTableName(longest)).toBe(`${longest}_refunds`);
    expect(refundsTableName(`erp.${longest}`)).toBe(`erp.${longest}_refunds`);
    expect(refundsTableName('flash_orders')).toBe('flash_orders_refunds');
    expect(loadErpConfig({ FLASH_ERP_PG_URL: 'postgres://db/erp', FLASH_ERP_PG_TABLE: `erp.${longest}` })?.sink).toMatchObject({ table: `erp.${longest}` });
    for (const table of [tooLong, `erp.${tooLong}`]) {
      const env = { FLASH_ERP_PG_URL: 'postgres://db/erp', FLASH_ERP_PG_TABLE: table };
      expect(() => loadErpConfig(env)).toThrow(ConfigError);
      expect(() => loadErpConfig(env)).toThrow(`FLASH_ERP_PG_TABLE=${table}: refunds go to ${table}_refunds, so the table part may have at most 55 characters`);
      expect(() => refundsTableName(table)).toThrow(RangeError);
      expect(() => new PgSink({ url: pgUrl, table, concurrency: 1, batchEventsMax: 1, timeoutMs: 1000 })).toThrow(/at most 55/);
    }
    // A schema part may still use all 63.
    const schema63 = `s${'x'.repeat(62)}`;
    expect(refundsTableName(`${schema63}.orders`)).toBe(`${schema63}.orders_refunds`);
    expect(() => loadErpConfig({ FLASH_ERP_PG_URL: 'postgres://db/erp', FLASH_ERP_PG_TABLE: 'Orders' })).toThrow('must be [schema.]table');
  });

  it('names a database refusal by its SQLSTATE and retries it until the database is fixed', async () => {
    const outbox = new FakeOutbox({ shardIds: [0] });
    outbox.appendMany(3);
    const sink = new PgSink({ url: pgUrl, table: `${schema}.blocked_orders`, concurrency: 1, batchEventsMax: 10, timeoutMs: 5000 });
    // Make the table unusable: a view with the same name cannot take inserts with ON CONFLICT.
    await admin.query(`CREATE VIEW ${schema}.blocked_orders AS SELECT 1 AS x`);
    const d = new Deliverer({ source: outbox, sink, maxRps: 100, concurrency: 1, windowEventsPerShard: 10, backoff: { baseMs: 5, capMs: 20 }, pollMs: 50 });
    d.start();
    await waitFor('a few failures', () => d.stats().failuresTotal >= 3, 10_000);
    expect(Object.keys(d.stats().failuresByKind)[0]).toMatch(/^pg_[0-9A-Z]{5}$/);
    expect(outbox.ackedSeq(0)).toBe(0);
    // Fix the database: delivery resumes by itself.
    await admin.query(`DROP VIEW ${schema}.blocked_orders`);
    await waitFor('every event is acknowledged', () => outbox.undeliveredCount() === 0, 10_000);
    await d.stop(1000);
    await sink.close();
    const { rows } = await admin.query<{ n: string }>(`SELECT count(*) AS n FROM ${schema}.blocked_orders`);
    expect(Number(rows[0]!.n)).toBe(3);
  }, 30_000);
});
