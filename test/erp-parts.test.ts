// The ERP hand-off's parts one by one: the start limiter's exact per-second cap, the
// backoff's bounds, the delivery window's contiguous-prefix acks (and a refund held back
// until its order.paid is delivered), the settings loader's errors, the exact webhook
// bodies and signature, and how the webhook sink names failures.

import { createHmac } from 'node:crypto';
import { Registry } from 'prom-client';
import { describe, expect, expectTypeOf, it } from 'vitest';
import type { PaidEvent as ShardPaidEvent, RefundedEvent as ShardRefundedEvent } from '../src/domain/commands.js';
import { startErpStandIn } from '../bench/erp-standin.js';
import { ConfigError } from '../src/config.js';
import { Deliverer } from '../src/erp/deliverer.js';
import { DeliveryWindow, EntryState } from '../src/erp/delivery-window.js';
import { loadErpConfig, describeErpConfig } from '../src/erp/erp-config.js';
import { startErpHandOff } from '../src/erp/erp-hand-off.js';
import { erpMetricNames } from '../src/erp/erp-metrics.js';
import { erpReport } from '../src/erp/erp-report.js';
import { DeliveryFailure } from '../src/erp/erp-sink.js';
import type { PaidEvent, RefundedEvent } from '../src/erp/outbox-source.js';
import { backoffDelayMs } from '../src/erp/retry-backoff.js';
import { StartLimiter } from '../src/erp/start-limiter.js';
import { eventBody, orderPaidBody, orderRefundedBody, signatureHeader } from '../src/erp/webhook-body.js';
import { WebhookSink } from '../src/erp/webhook-sink.js';
import { FakeOutbox } from './support/erp-fake-outbox.js';

function event(shardId: number, eventSeq: number, paymentRef: string | null = 'alipay-1'): PaidEvent {
  return {
    eventId: `order.paid:${shardId}.${eventSeq}abc`, shardId, eventSeq, reservationId: `${shardId}.${eventSeq}abc`,
    sku: 'moutai-2026', buyerId: 'u-17', qty: 2, paidAt: 1_760_000_000_000 + eventSeq, paymentRef,
  };
}

/** The order.refunded of `paid`, as a shard queues it later in the same outbox. */
function refundOf(paid: PaidEvent, eventSeq: number, reason: string | null = 'damaged'): RefundedEvent {
  return {
    ...paid, type: 'order.refunded', eventId: `order.refunded:${paid.reservationId}`, eventSeq, channel: paid.channel ?? 'default',
    refundedAt: paid.paidAt + 60_000, restock: false, reason,
  };
}

describe('outbox contract', () => {
  it('takes the shards\' own PaidEvent type as its own, field for field', () => {
    expectTypeOf<ShardPaidEvent>().toEqualTypeOf<PaidEvent>();
    expectTypeOf<ShardRefundedEvent>().toEqualTypeOf<RefundedEvent>();
  });
});

describe('start limiter', () => {
  it('never lets more than N starts into any one-second window, whatever the arrival pattern', () => {
    for (const n of [1, 3, 50]) {
      const limiter = new StartLimiter(n);
      const starts: number[] = [];
      let now = 0;
      for (let i = 0; i < 5000; i++) {
        now += Math.random() < 0.5 ? 0 : Math.random() * 40;
        if (limiter.tryTake(now)) starts.push(now);
      }
      for (let i = n; i < starts.length; i++) expect(starts[i]! - starts[i - n]!).toBeGreaterThanOrEqual(1000);
      expect(starts.length).toBeGreaterThan(n * Math.floor(now / 1000) * 0.9);
    }
  });

  it('says how long to wait for the next token, and spends nothing while refusing', () => {
    const limiter = new StartLimiter(2);
    expect(limiter.tryTake(0)).toBe(true);
    expect(limiter.tryTake(10)).toBe(true);
    expect(limiter.waitMs(500)).toBe(500);
    expect(limiter.tryTake(500)).toBe(false);
    expect(limiter.waitMs(1000)).toBe(0);
    expect(limiter.tryTake(1000)).toBe(true);
    expect(limiter.waitMs(1000)).toBe(10);
  });
});

describe('retry backoff', () => {
  it.each([
    [1, 0.999, 99], [2, 0.999, 199], [3, 0.5, 200], [10, 0.999, 51_148], [11, 0.999, 59_940], [1000, 0.999, 59_940], [5, 0, 0],
  ])('after %i failures with draw %f waits %i ms (full jitter, capped at 60 s)', (failures, draw, expected) => {
    expect(backoffDelayMs({ baseMs: 100, capMs: 60_000 }, failures, draw)).toBe(expected);
  });
});

describe('delivery window', () => {
  it('acknowledges only the contiguous delivered prefix, whatever order events were delivered in', () => {
    const w = new DeliveryWindow(0, 10);
    w.add([1, 2, 3, 4, 5].map((s) => event(0, s)));
    const taken = w.take(5, true);
    expect(taken.map((e) => e.event.eventSeq)).toEqual([1, 2, 3, 4, 5]);
    for (const seq of [2, 3, 5]) taken[seq - 1]!.state = EntryState.delivered;
    expect(w.deliveredPrefix()).toEqual({ count: 0, upToSeq: 0 });
    taken[0]!.state = EntryState.delivered;
    expect(w.deliveredPrefix()).toEqual({ count: 3, upToSeq: 3 });
    w.dropAcknowledged(3, 3);
    expect(w.size).toBe(2);
    expect(w.undeliveredCount()).toBe(1);
    expect(w.oldestUndeliveredPaidAt()).toBe(event(0, 4).paidAt);
  });

  it('refuses events out of order, from another shard, or more than it has room for', () => {
    const w = new DeliveryWindow(1, 3);
    expect(() => w.add([event(1, 2), event(1, 1)])).toThrow(/after seq/);
    expect(() => w.add([event(2, 1)])).toThrow(/shard 2/);
    expect(() => w.add([1, 2, 3, 4].map((s) => event(1, s)))).toThrow(/4 events for 3 asked/);
    expect(w.size).toBe(0);
  });

  it('holds an order.refunded back until its order.paid is delivered, however the paid one fares meanwhile', () => {
    const w = new DeliveryWindow(0, 10);
    const paid = event(0, 1);
    w.add([paid, event(0, 2), refundOf(paid, 3), event(0, 4)]);
    expect(w.readyCount()).toBe(3);
    const taken = w.take(10, true);
    expect(taken.map((e) => e.event.eventSeq)).toEqual([1, 2, 4]);
    const refund = w.all()[2]!;
    expect(refund.state).toBe(EntryState.waiting);
    // The order.paid fails and is retried: the refund still waits.
    taken[0]!.state = EntryState.backoff;
    w.markReady(taken[0]!);
    w.markDelivered(taken[1]!);
    expect(w.take(10, true).map((e) => e.event.eventSeq)).toEqual([1]);
    expect(refund.state).toBe(EntryState.waiting);
    w.markDelivered(taken[0]!);
    expect(refund.state).toBe(EntryState.ready);
    expect(w.take(10, true).map((e) => e.event.eventId)).toEqual([`order.refunded:${paid.reservationId}`]);
    expect(w.undeliveredCount()).toBe(2);
    expect(w.oldestUndeliveredPaidAt()).toBe(refund.event.type === 'order.refunded' ? refund.event.refundedAt : null);
  });

  it('hands out at once an order.refunded whose order.paid was acknowledged before (it is not in the window)', () => {
    const w = new DeliveryWindow(0, 10);
    const paid = event(0, 1);
    w.add([paid]);
    w.markDelivered(w.take(1, true)[0]!);
    w.dropAcknowledged(1, 1);
    w.add([refundOf(paid, 2)]);
    expect(w.take(10, true).map((e) => e.event.eventSeq)).toEqual([2]);
  });

  it('sends a retried event again in eventSeq order, and a solo event only alone', () => {
    const w = new DeliveryWindow(0, 10);
    w.add([1, 2, 3, 4].map((s) => event(0, s)));
    const [first] = w.take(1, true);
    first!.solo = true;
    w.markReady(first!);
    expect(w.take(3, false)).toEqual([]);
    expect(w.take(3, true).map((e) => e.event.eventSeq)).toEqual([1]);
    expect(w.take(3, true).map((e) => e.event.eventSeq)).toEqual([2, 3, 4]);
  });
});

describe('ERP settings', () => {
  const webhook = { FLASH_ERP_WEBHOOK_URL: 'https://erp.example.com/hooks/orders', FLASH_ERP_SECRET: 's'.repeat(16) };

  it('are off when no ERP URL is set', () => {
    expect(loadErpConfig({})).toBeNull();
  });

  it('read a webhook with its defaults', () => {
    expect(loadErpConfig(webhook)).toEqual({
      sink: { kind: 'webhook', url: webhook.FLASH_ERP_WEBHOOK_URL, secret: webhook.FLASH_ERP_SECRET },
      maxRps: 50, concurrency: 8, timeoutMs: 5000, windowEventsPerShard: 256, retryBaseMs: 100, retryMaxMs: 60_000, pollMs: 200,
    });
  });

  it('read PostgreSQL with its table and batch, and describe it without the password', () => {
    const c = loadErpConfig({ FLASH_ERP_PG_URL: 'postgres://erp:hunter2@db:5432/erp', FLASH_ERP_PG_TABLE: 'erp.orders', FLASH_ERP_PG_BATCH: '50', FLASH_ERP_MAX_RPS: '20' });
    expect(c?.sink).toEqual({ kind: 'postgres', url: 'postgres://erp:hunter2@db:5432/erp', table: 'erp.orders', batchEventsMax: 50 });
    expect(c?.maxRps).toBe(20);
    expect(JSON.stringify(describeErpConfig(c!))).not.toContain('hunter2');
    expect(JSON.stringify(describeErpConfig(loadErpConfig(webhook)!))).not.toContain(webhook.FLASH_ERP_SECRET);
  });

  it.each([
    [{ FLASH_ERP_WEBHOOK_URL: 'not a url', FLASH_ERP_SECRET: 's'.repeat(16) }, 'FLASH_ERP_WEBHOOK_URL'],
    [{ FLASH_ERP_WEBHOOK_URL: 'ftp://erp/x', FLASH_ERP_SECRET: 's'.repeat(16) }, 'FLASH_ERP_WEBHOOK_URL'],
    [{ FLASH_ERP_WEBHOOK_URL: 'http://erp/x' }, 'FLASH_ERP_SECRET'],
    [{ FLASH_ERP_WEBHOOK_URL: 'http://erp/x', FLASH_ERP_SECRET: 'short' }, 'FLASH_ERP_SECRET'],
    [{ ...webhook, FLASH_ERP_PG_URL: 'postgres://db/erp' }, 'FLASH_ERP_PG_URL'],
    [{ ...webhook, FLASH_ERP_MAX_RPS: '0' }, 'FLASH_ERP_MAX_RPS'],
    [{ ...webhook, FLASH_ERP_MAX_RPS: '2.5' }, 'FLASH_ERP_MAX_RPS'],
    [{ ...webhook, FLASH_ERP_CONCURRENCY: 'ten' }, 'FLASH_ERP_CONCURRENCY'],
    [{ ...webhook, FLASH_ERP_TIMEOUT_MS: '-1' }, 'FLASH_ERP_TIMEOUT_MS'],
    [{ ...webhook, FLASH_ERP_WINDOW: '0' }, 'FLASH_ERP_WINDOW'],
    [{ ...webhook, FLASH_ERP_RETRY_BASE_MS: '500', FLASH_ERP_RETRY_MAX_MS: '100' }, 'FLASH_ERP_RETRY_MAX_MS'],
    [{ FLASH_ERP_PG_URL: 'mysql://db/erp' }, 'FLASH_ERP_PG_URL'],
    [{ FLASH_ERP_PG_URL: 'postgres://db/erp', FLASH_ERP_PG_TABLE: 'orders; drop table x' }, 'FLASH_ERP_PG_TABLE'],
    [{ FLASH_ERP_PG_URL: 'postgres://db/erp', FLASH_ERP_PG_BATCH: '5000' }, 'FLASH_ERP_PG_BATCH'],
  ])('refuse %j with an error naming %s', (env, variable) => {
    expect(() => loadErpConfig(env)).toThrow(ConfigError);
    expect(() => loadErpConfig(env)).toThrow(variable);
  });
});

describe('webhook body and signature', () => {
  it('is exactly the contract body, keys in order, with a null paymentRef kept and the channel last', () => {
    expect(orderPaidBody(event(3, 7))).toBe(
      '{"type":"order.paid","eventId":"order.paid:3.7abc","reservationId":"3.7abc","sku":"moutai-2026","buyerId":"u-17","qty":2,"paidAt":1760000000007,"paymentRef":"alipay-1","channel":"default"}',
    );
    expect(orderPaidBody({ ...event(3, 7), paymentRef: undefined as unknown as null })).toMatch(/,"paymentRef":null,"channel":"default"}$/);
    // v2: the channel an order was sold through, last, so v1 keys keep their places.
    expect(orderPaidBody({ ...event(3, 7), channel: 'web' })).toMatch(/,"paymentRef":"alipay-1","channel":"web"}$/);
  });

  it('of an order.refunded is the order\'s keys in order.paid\'s order, then refundedAt, restock and reason (null when none)', () => {
    const paid = { ...event(3, 7), channel: 'web' };
    expect(orderRefundedBody(refundOf(paid, 9))).toBe(
      '{"type":"order.refunded","eventId":"order.refunded:3.7abc","reservationId":"3.7abc","sku":"moutai-2026","buyerId":"u-17","qty":2,'
      + '"paidAt":1760000000007,"paymentRef":"alipay-1","channel":"web","refundedAt":1760000060007,"restock":false,"reason":"damaged"}',
    );
    expect(orderRefundedBody(refundOf({ ...paid, paymentRef: null }, 9, null))).toMatch(/"paymentRef":null,"channel":"web","refundedAt":1760000060007,"restock":false,"reason":null}$/);
    expect(eventBody(refundOf(paid, 9))).toBe(orderRefundedBody(refundOf(paid, 9)));
    expect(eventBody(paid)).toBe(orderPaidBody(paid));
  });

  it('is signed with HMAC-SHA256 of the raw body, in hex', () => {
    const body = orderPaidBody(event(0, 1));
    expect(signatureHeader('k'.repeat(16), body)).toBe(`sha256=${createHmac('sha256', 'k'.repeat(16)).update(body).digest('hex')}`);
  });
});

describe('webhook sink', () => {
  it('names a slow ERP a timeout, a wrong secret http_401, and a dead port connection_refused', async () => {
    const erp = await startErpStandIn({ secret: 'right-secret-0123456', latencyMs: 300 });
    const signal = new AbortController().signal;
    try {
      const slow = new WebhookSink({ url: erp.url, secret: 'right-secret-0123456', timeoutMs: 50, concurrency: 1 });
      await expect(slow.deliver([event(0, 1)], signal)).rejects.toMatchObject({ kind: 'timeout' });
      await slow.close();
      const wrong = new WebhookSink({ url: erp.url, secret: 'wrong-secret-0123456', timeoutMs: 1000, concurrency: 1 });
      const refusal = await wrong.deliver([event(0, 1)], signal).catch((e: unknown) => e);
      expect(refusal).toBeInstanceOf(DeliveryFailure);
      expect(refusal).toMatchObject({ kind: 'http_401', status: 401 });
      await wrong.close();
      expect(erp.stats().badSignatures).toBe(1);
    } finally {
      await erp.close();
    }
    const dead = new WebhookSink({ url: erp.url, secret: 'right-secret-0123456', timeoutMs: 1000, concurrency: 1 });
    await expect(dead.deliver([event(0, 1)], signal)).rejects.toMatchObject({ kind: 'connection_refused' });
    await dead.close();
  });
});

describe('deliverer and a failing outbox', () => {
  it('retries a failed ack until it holds, and never acks past what was delivered', async () => {
    const outbox = new FakeOutbox({ shardIds: [0] });
    outbox.appendMany(20);
    let ackFailuresLeft = 3;
    const realAck = outbox.ack.bind(outbox);
    outbox.ack = async (shardId, upToSeq) => {
      if (ackFailuresLeft-- > 0) throw new Error('shard restarting');
      return realAck(shardId, upToSeq);
    };
    const delivered: string[] = [];
    const d = new Deliverer({
      source: outbox,
      sink: { name: 'memory', batchEventsMax: 4, deliver: async (events) => void delivered.push(...events.map((e) => e.eventId)), close: async () => undefined },
      maxRps: 1000, concurrency: 2, windowEventsPerShard: 8, backoff: { baseMs: 5, capMs: 20 }, pollMs: 50,
    });
    d.start();
    const deadline = Date.now() + 5000;
    while (outbox.ackedSeq(0) < 20 && Date.now() < deadline) await new Promise((r) => setTimeout(r, 10));
    await d.stop(1000);
    expect(outbox.ackedSeq(0)).toBe(20);
    expect(outbox.violations).toEqual([]);
    expect(new Set(delivered).size).toBe(20);
    expect(d.stats().failuresByKind).toEqual({ outbox_ack: 3 });
  });
});

describe('deliverer figures at the sender', () => {
  /** A sink answering after `latencyMs`, recording when each call started. */
  function slowSink(latencyMs: number) {
    const startedAtMs: number[] = [];
    return {
      startedAtMs,
      sink: {
        name: 'slow', batchEventsMax: 1, close: async () => undefined,
        deliver: async () => {
          startedAtMs.push(performance.now());
          await new Promise((r) => setTimeout(r, latencyMs));
        },
      },
    };
  }

  it('counts the most calls started in any 1 s and the most in flight, both within the caps', async () => {
    const outbox = new FakeOutbox({ shardIds: [0, 1] });
    outbox.appendMany(60);
    const { sink } = slowSink(30);
    const d = new Deliverer({ source: outbox, sink, maxRps: 25, concurrency: 3, windowEventsPerShard: 16, backoff: { baseMs: 5, capMs: 20 }, pollMs: 20 });
    d.start();
    const deadline = Date.now() + 10_000;
    while (outbox.ackedSeq(0) + outbox.ackedSeq(1) < 40 && Date.now() < deadline) await new Promise((r) => setTimeout(r, 10));
    d.halt();
    const s = d.stats();
    expect(s).toMatchObject({ maxRps: 25, concurrency: 3 });
    expect(s.maxStartsPerSecond).toBeGreaterThan(0);
    expect(s.maxStartsPerSecond).toBeLessThanOrEqual(25);
    expect(s.maxCallsInFlight).toBeGreaterThan(0);
    expect(s.maxCallsInFlight).toBeLessThanOrEqual(3);
    expect(s.firstCallAtMs).not.toBeNull();
    expect(s.lastCallAtMs!).toBeGreaterThanOrEqual(s.firstCallAtMs!);
  });

  it('with quietFirstWindow, starts no call during the first rate window, so a successor never shares a second with its predecessor', async () => {
    const outbox = new FakeOutbox({ shardIds: [0] });
    outbox.appendMany(5);
    const { sink, startedAtMs } = slowSink(1);
    const d = new Deliverer({ source: outbox, sink, maxRps: 100, concurrency: 2, windowEventsPerShard: 8, backoff: { baseMs: 5, capMs: 20 }, pollMs: 20, quietFirstWindow: true });
    const startMs = performance.now();
    d.start();
    const deadline = Date.now() + 5000;
    while (outbox.ackedSeq(0) < 5 && Date.now() < deadline) await new Promise((r) => setTimeout(r, 10));
    await d.stop(1000);
    expect(outbox.ackedSeq(0)).toBe(5);
    expect(startedAtMs[0]! - startMs).toBeGreaterThanOrEqual(1000);
  });

  it('the start limiter, spent entirely, refuses for one whole window', () => {
    const limiter = new StartLimiter(3, 1020);
    limiter.spendAll(500);
    expect(limiter.waitMs(500)).toBe(1020);
    expect(limiter.tryTake(1519)).toBe(false);
    for (let i = 0; i < 3; i++) expect(limiter.tryTake(1520)).toBe(true);
    expect(limiter.tryTake(1520)).toBe(false);
  });
});

describe('the GET /v1/admin/erp report', () => {
  const noRefunds = { refundedUnits: 0, refundsDeliveredUnits: 0, refundsUndeliveredUnits: 0, refundsUndeliveredOrders: 0, refundsNotQueuedUnits: 0 };
  const units = { sold: 5, deliveredUnits: 2, undeliveredUnits: 1, undeliveredOrders: 1, notQueuedUnits: 2, uncountedUnits: 0, ...noRefunds };
  const shard = (rows: unknown[], totals?: unknown) => ({
    ok: true as const, status: 'ok' as const, outboxLastSeq: 3,
    reconcile: { rows, ...(totals === undefined ? {} : { totals }), outboxLength: 1, truncated: false, outboxEnabled: true },
  }) as never;

  it('adds the shards up, and is complete only when every shard answered and everything sold was delivered', () => {
    const r = erpReport([shard([{ sku: 'a', ...units }], units), shard([], { ...units, sold: 0, deliveredUnits: 0, undeliveredUnits: 0, undeliveredOrders: 0, notQueuedUnits: 0 })], null);
    expect(r.totals).toEqual(units);
    expect(r.complete).toBe(false);
    expect(r.shardsAnswered).toBe(true);
    expect(r.shards[0]).toEqual({ shardId: 0, backlogOrders: 1, lastEventSeq: 3, truncated: false, outboxEnabled: true });
    const delivered = { ...units, deliveredUnits: 5, undeliveredUnits: 0, undeliveredOrders: 0, notQueuedUnits: 0 };
    expect(erpReport([shard([{ sku: 'a', ...delivered }], delivered)], null).complete).toBe(true);
    const down = erpReport([shard([{ sku: 'a', ...delivered }], delivered), { ok: false, code: 'shard_unavailable', message: 'gone' }], null);
    expect(down).toMatchObject({ complete: false, shardsAnswered: false });
    expect(down.shards[1]).toEqual({ shardId: 1, error: 'shard_unavailable: gone' });
  });

  it('reads a shard node of the previous version (a rolling upgrade): what it sold outside its outbox is uncounted, never delivered', () => {
    const r = erpReport([shard([{ sku: 'a', sold: 7, undeliveredUnits: 2, undeliveredOrders: 1 }])], null);
    expect(r.skus).toEqual([{ sku: 'a', sold: 7, deliveredUnits: 0, undeliveredUnits: 2, undeliveredOrders: 1, notQueuedUnits: 0, uncountedUnits: 5, ...noRefunds }]);
    expect(r.totals).toEqual({ sold: 7, deliveredUnits: 0, undeliveredUnits: 2, undeliveredOrders: 1, notQueuedUnits: 0, uncountedUnits: 5, ...noRefunds });
    expect(r.complete).toBe(false);
  });

  it('reads a shard node from before refunds (with delivered units counted): it refunded nothing', () => {
    const counted = { sold: 4, deliveredUnits: 4, undeliveredUnits: 0, undeliveredOrders: 0, notQueuedUnits: 0, uncountedUnits: 0 };
    const r = erpReport([shard([{ sku: 'a', ...counted }], counted)], null);
    expect(r.skus).toEqual([{ sku: 'a', ...counted, ...noRefunds }]);
    expect(r.totals).toEqual({ ...counted, ...noRefunds });
    expect(r.complete).toBe(true);
  });

  it('counts refunds apart, and is complete only when every order.paid and every order.refunded was delivered', () => {
    // 6 units paid, 2 refunded: sold 4; every order.paid delivered, one refund of 1 unit still in the outbox.
    const refunds = {
      sold: 4, deliveredUnits: 6, undeliveredUnits: 0, undeliveredOrders: 0, notQueuedUnits: 0, uncountedUnits: 0,
      refundedUnits: 2, refundsDeliveredUnits: 1, refundsUndeliveredUnits: 1, refundsUndeliveredOrders: 1, refundsNotQueuedUnits: 0,
    };
    const r = erpReport([shard([{ sku: 'a', ...refunds }], refunds), shard([{ sku: 'b', ...refunds }], refunds)], null);
    expect(r.totals).toEqual({
      sold: 8, deliveredUnits: 12, undeliveredUnits: 0, undeliveredOrders: 0, notQueuedUnits: 0, uncountedUnits: 0,
      refundedUnits: 4, refundsDeliveredUnits: 2, refundsUndeliveredUnits: 2, refundsUndeliveredOrders: 2, refundsNotQueuedUnits: 0,
    });
    expect(r.complete).toBe(false);
    const done = { ...refunds, refundsDeliveredUnits: 2, refundsUndeliveredUnits: 0, refundsUndeliveredOrders: 0 };
    expect(erpReport([shard([{ sku: 'a', ...done }], done)], null).complete).toBe(true);
    // A refund never queued (its order was paid while the outbox was off) keeps it incomplete.
    const notQueued = { ...done, deliveredUnits: 5, notQueuedUnits: 1, refundsDeliveredUnits: 1, refundsNotQueuedUnits: 1 };
    expect(erpReport([shard([{ sku: 'a', ...notQueued }], notQueued)], null).complete).toBe(false);
  });
});

describe('ERP hand-off wiring', () => {
  it('starts a webhook deliverer from settings, exposes its metrics, and stops after acknowledging everything', async () => {
    const erp = await startErpStandIn({ secret: 's'.repeat(16), latencyMs: 5 });
    const outbox = new FakeOutbox({ shardIds: [0, 1] });
    outbox.appendMany(40);
    const config = loadErpConfig({ FLASH_ERP_WEBHOOK_URL: erp.url, FLASH_ERP_SECRET: 's'.repeat(16), FLASH_ERP_MAX_RPS: '1000', FLASH_ERP_POLL_MS: '50' })!;
    const registry = new Registry();
    const logged: string[] = [];
    const log = { info: (_o: unknown, m: string) => void logged.push(m), warn: (_o: unknown, m: string) => void logged.push(m), error: (_o: unknown, m: string) => void logged.push(m) };
    const handOff = await startErpHandOff({ config, source: outbox, registry, log: log as never });
    const deadline = Date.now() + 5000;
    while (outbox.undeliveredCount() > 0 && Date.now() < deadline) await new Promise((r) => setTimeout(r, 10));
    const text = await registry.metrics();
    for (const name of erpMetricNames) expect(text).toContain(`# TYPE ${name}`);
    expect(text).toContain('flash_erp_delivered_total 40');
    expect(text).toContain('flash_erp_backlog_events 0');
    await handOff.stop(1000);
    await erp.close();
    expect(outbox.ackedSeq(0) + outbox.ackedSeq(1)).toBe(40);
    expect(logged).toEqual(['ERP hand-off started', 'ERP hand-off stopped']);
  });
});
