// The ERP hand-off into a real PostgreSQL (127.0.0.1:5432, database `test`, or
// FLASH_TEST_PG_URL): batched inserts with ON CONFLICT, through injected failures before
// and after commits, a crash mid-flight and a restart from the durable acks, must leave
// exactly one row per paid event, equal to the event; a refund is a row of its own, also in
// a table an older version created. Each run uses its own schema and drops it.

import pg from 'pg';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { Deliverer } from '../src/erp/deliverer.js';
import { PgSink } from '../src/erp/pg-sink.js';
import type { PaidEvent } from '../src/erp/outbox-source.js';
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
    const kinds = new Set([...Object.keys(a.stats().failuresByKind), ...Object.keys(b.stats().failuresByKind)]);
    expect([...kinds].sort()).toEqual(['injected_after', 'injected_before']);
  }, 60_000);

  it('records an order.refunded as a row of its own beside its order\'s, in a table an older version made (the new columns are added)', async () => {
    const old = `${schema}.older_orders`;
    // The table as the version before refunds created it, with one order already in it.
    await admin.query(`CREATE TABLE ${old} (event_id text PRIMARY KEY, reservation_id text, sku text, buyer_id text, qty int,
      paid_at bigint, payment_ref text, delivered_at timestamptz DEFAULT now(), channel text)`);
    await admin.query(`INSERT INTO ${old} (event_id, reservation_id, sku, buyer_id, qty, paid_at, payment_ref, channel)
      VALUES ('order.paid:0.old', '0.old', 'tee', 'ann', 1, 1, null, 'default')`);
    const outbox = new FakeOutbox({ shardIds: [0, 1] });
    const paid = outbox.appendMany(20) as PaidEvent[];
    const refunds = paid.filter((_, i) => i % 4 === 0).map((p, i) => outbox.appendRefund(p, { restock: i % 2 === 0, reason: i === 0 ? null : `reason ${i}` }));
    const sink = new TrackingSink(new PgSink({ url: pgUrl, table: old, concurrency: 2, batchEventsMax: 7, timeoutMs: 5000 }), { failAfterRate: 0.2 });
    const d = run(outbox, sink);
    await waitFor('every event is acknowledged', () => outbox.undeliveredCount() === 0, 20_000);
    await d.stop(1000);
    await sink.close();
    expect(outbox.violations).toEqual([]);
    const { rows } = await admin.query<{ event_id: string; reservation_id: string; event_type: string; qty: number; paid_at: string; refunded_at: string | null; restock: boolean | null; reason: string | null; channel: string }>(
      `SELECT event_id, reservation_id, event_type, qty, paid_at, refunded_at, restock, reason, channel FROM ${old}`);
    expect(rows.length).toBe(1 + paid.length + refunds.length);
    const byId = new Map(rows.map((r) => [r.event_id, r]));
    expect(byId.get('order.paid:0.old')).toMatchObject({ event_type: 'order.paid', refunded_at: null, restock: null, reason: null });
    for (const p of paid) {
      expect(byId.get(p.eventId)).toEqual({
        event_id: p.eventId, reservation_id: p.reservationId, event_type: 'order.paid', qty: p.qty, paid_at: String(p.paidAt),
        refunded_at: null, restock: null, reason: null, channel: 'default',
      });
    }
    for (const r of refunds) {
      expect(byId.get(r.eventId)).toEqual({
        event_id: r.eventId, reservation_id: r.reservationId, event_type: 'order.refunded', qty: r.qty, paid_at: String(r.paidAt),
        refunded_at: String(r.refundedAt), restock: r.restock, reason: r.reason, channel: 'default',
      });
    }
  }, 30_000);

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
