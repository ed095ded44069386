// Refunds in the shard core (shared/API.md "After the sale: refunds and returns"): a paid
// reservation becomes refunded in one command, with its units back in available (restock)
// or out of onHand, sold down, its buyer's quota and its channel's units given back; a second
// refund changes nothing; anything but a paid reservation is not_paid. Its order.refunded
// follows its order.paid through the outbox, and everything survives a snapshot round trip
// and a crash-replay of the log.

import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Packr } from 'msgpackr';
import { afterEach, describe, expect, test } from 'vitest';
import {
  apply, createShardState, fromSnapshot, toSnapshot, type Applied, type Command, type Mode, type ShardConfig,
  type ShardSnapshot, type ShardState,
} from '../src/domain/index.js';
import { ShardRuntime } from '../src/engine/shard-runtime.js';
import { codeOf, okOf, T0, view } from './support/domain-kit.js';

const HOLD_MS = 600_000;
let nonces = 0;

function shard(config: Partial<ShardConfig> = {}): ShardState {
  return createShardState(0, 1, config);
}

function upsert(s: ShardState, sku: string, fields: Omit<Extract<Command, { t: 'sku.upsert' }>, 't' | 'sku'> = {}): void {
  okOf(apply(s, { t: 'sku.upsert', sku, stock: 10, ...fields }, T0));
}

function reserve(s: ShardState, opts: { sku?: string; buyer?: string; qty?: number; channel?: string; idemKey?: string; atMs?: number } = {}): Applied {
  const c: Extract<Command, { t: 'res.reserve' }> = {
    t: 'res.reserve', sku: opts.sku ?? 'tee', buyerId: opts.buyer ?? 'ann', qty: opts.qty ?? 1, nonce: (++nonces).toString(36),
  };
  if (opts.channel !== undefined) c.channel = opts.channel;
  if (opts.idemKey !== undefined) c.idemKey = opts.idemKey;
  return apply(s, c, opts.atMs ?? T0 + 1);
}

/** Reserves and pays; returns the reservation id. */
function paid(s: ShardState, opts: Parameters<typeof reserve>[1] = {}): string {
  const id = okOf(reserve(s, opts)).reservation!.reservationId;
  okOf(apply(s, { t: 'res.pay', id, paymentRef: `pi-${id}` }, T0 + 2));
  return id;
}

const refund = (s: ShardState, id: string, restock = true, reason?: string, atMs = T0 + 10): Applied =>
  apply(s, reason === undefined ? { t: 'res.refund', id, restock } : { t: 'res.refund', id, restock, reason }, atMs);

const counters = (s: ShardState, sku = 'tee') => {
  const v = view(s, sku);
  return { onHand: v.onHand, available: v.available, reserved: v.reserved, sold: v.sold, refunded: v.refunded };
};

describe('res.refund of a paid reservation', () => {
  test('with restock, its units are available again at once: sold down, refunded up, onHand unchanged', () => {
    const s = shard();
    upsert(s, 'tee', { stock: 5 });
    const id = paid(s, { qty: 2 });
    expect(counters(s)).toEqual({ onHand: 5, available: 3, reserved: 0, sold: 2, refunded: 0 });
    const a = refund(s, id, true, 'changed mind');
    expect(a.mutated).toBe(true);
    expect(okOf(a).reservation).toEqual({
      reservationId: id, sku: 'tee', buyerId: 'ann', qty: 2, channel: 'default', status: 'refunded', mode: 'pre_deduct',
      createdAt: T0 + 1, expiresAt: T0 + 1 + HOLD_MS, paidAt: T0 + 2, paymentRef: `pi-${id}`,
      refundedAt: T0 + 10, restock: true, refundReason: 'changed mind',
    });
    expect(counters(s)).toEqual({ onHand: 5, available: 5, reserved: 0, sold: 0, refunded: 2 });
  });

  test('without restock, its units leave stock (a damaged return): onHand and sold down, available unchanged', () => {
    const s = shard();
    upsert(s, 'tee', { stock: 5 });
    const id = paid(s, { qty: 2 });
    const v = okOf(refund(s, id, false)).reservation!;
    expect(v).toMatchObject({ status: 'refunded', restock: false, refundedAt: T0 + 10, paidAt: T0 + 2 });
    expect(v).not.toHaveProperty('refundReason');
    expect(counters(s)).toEqual({ onHand: 3, available: 3, reserved: 0, sold: 0, refunded: 2 });
  });

  test('either way the buyer\'s quota is given back: it may buy up to maxPerBuyer again', () => {
    for (const restock of [true, false]) {
      const s = shard();
      upsert(s, 'tee', { stock: 10, maxPerBuyer: 2 });
      const id = paid(s, { qty: 2 });
      expect(codeOf(reserve(s)), `restock ${restock}: quota used`).toBe('quota_exceeded');
      okOf(refund(s, id, restock));
      expect(s.skus.get('tee')!.quota.has('ann'), `restock ${restock}`).toBe(false);
      okOf(reserve(s, { qty: 2 }));
      expect(codeOf(reserve(s)), `restock ${restock}: quota used again`).toBe('quota_exceeded');
    }
  });

  test('a refund in a drop gives back the drop\'s quota, shared by its SKUs', () => {
    const s = shard();
    upsert(s, 'tee', { dropId: 'spring', maxPerBuyer: 2 });
    upsert(s, 'cap', { dropId: 'spring', maxPerBuyer: 2 });
    const id = paid(s, { sku: 'tee', qty: 2 });
    expect(codeOf(reserve(s, { sku: 'cap' }))).toBe('quota_exceeded');
    okOf(refund(s, id));
    okOf(reserve(s, { sku: 'cap', qty: 2 }));
  });

  test('it gives back the channel\'s sold units, so a capped channel may sell them again', () => {
    const s = shard();
    upsert(s, 'tee', { stock: 10, channels: [['web', 2], ['app', null]] });
    const id = paid(s, { channel: 'web', qty: 2 });
    expect(codeOf(reserve(s, { channel: 'web', buyer: 'bob' }))).toBe('channel_sold_out');
    okOf(refund(s, id));
    expect(view(s, 'tee').channels.web).toEqual({ reserved: 0, sold: 0, maxUnits: 2 });
    okOf(reserve(s, { channel: 'web', buyer: 'bob', qty: 2 }));
  });

  test.each<Mode>(['pre_deduct', 'on_order', 'on_payment'])('the same rules hold for a paid reservation of mode %s', (mode) => {
    const s = shard();
    upsert(s, 'tee', { stock: 4, mode, maxPerBuyer: 3 });
    const id = paid(s, { qty: 3 });
    expect(counters(s)).toMatchObject({ available: 1, sold: 3 });
    okOf(refund(s, id));
    expect(counters(s)).toEqual({ onHand: 4, available: 4, reserved: 0, sold: 0, refunded: 3 });
    okOf(reserve(s, { qty: 3, buyer: 'ann' }));
  });

  test('a refund with restock that lifts available above lowStockThreshold re-arms the low-stock signal, and sold out fires again', () => {
    const s = shard();
    upsert(s, 'tee', { stock: 3, lowStockThreshold: 1, maxPerBuyer: 0 });
    const id = paid(s, { qty: 3 });
    const low = apply(s, { t: 'res.pay', id }, T0 + 3);
    expect(low.events).toBeNull(); // paying again changes nothing
    expect(s.skus.get('tee')!.lowStockSignaled).toBe(true);
    const back = refund(s, id);
    expect(back.events).toEqual([{ type: 'restocked', sku: 'tee' }]); // 0 -> 3: restocked; low stock is only re-armed
    expect(s.skus.get('tee')!.lowStockSignaled).toBe(false);
    const again = reserve(s, { qty: 3, buyer: 'bob' });
    expect(again.events).toEqual([{ type: 'low_stock', sku: 'tee', available: 0, threshold: 1 }, { type: 'sold_out', sku: 'tee' }]);
  });

  test('a refund without restock leaves available as it was, so it crosses no threshold', () => {
    const s = shard();
    upsert(s, 'tee', { stock: 3, lowStockThreshold: 1 });
    const id = paid(s, { qty: 3 });
    expect(refund(s, id, false).events).toBeNull();
    expect(s.skus.get('tee')!.lowStockSignaled).toBe(true);
  });
});

describe('what a refund answers besides', () => {
  test('again: the first refund\'s answer, replayed, and nothing changes (not logged), whatever the second asks', () => {
    const s = shard();
    upsert(s, 'tee');
    const id = paid(s);
    const first = okOf(refund(s, id, true, 'first'));
    const before = toSnapshot(s);
    for (const [restock, reason] of [[true, 'first'], [false, 'another'], [true, undefined]] as const) {
      const again = refund(s, id, restock, reason, T0 + 99);
      expect(again.mutated).toBe(false);
      expect(okOf(again)).toEqual({ ...first, replayed: true });
    }
    expect(toSnapshot(s)).toEqual(before);
  });

  test('not paid yet, or never: held, cancelled and expired reservations answer not_paid and change nothing', () => {
    const s = shard();
    upsert(s, 'tee', { holdSeconds: 5 });
    const expired = okOf(reserve(s, { buyer: 'cy' })).reservation!.reservationId;
    okOf(apply(s, { t: 'res.expire' }, T0 + 5_001));
    expect(okOf(apply(s, { t: 'res.get', id: expired }, T0)).reservation!.status).toBe('expired');
    const cancelled = okOf(reserve(s, { buyer: 'bob', atMs: T0 + 5_001 })).reservation!.reservationId;
    okOf(apply(s, { t: 'res.cancel', id: cancelled }, T0 + 5_002));
    const held = okOf(reserve(s, { atMs: T0 + 5_002 })).reservation!.reservationId;
    const before = toSnapshot(s);
    for (const id of [held, cancelled, expired]) {
      const a = refund(s, id, true, undefined, T0 + 10_003);
      expect(codeOf(a), id).toBe('not_paid');
      expect(a.mutated).toBe(false);
    }
    // The held one is past its expiry (not swept yet): a refund does not expire it.
    expect(toSnapshot(s)).toEqual(before);
    expect(okOf(apply(s, { t: 'res.get', id: held }, T0)).reservation!.status).toBe('held');
  });

  test('an unknown reservation, and one already dropped by the settled bound, answer unknown_reservation', () => {
    const s = shard({ settledReservationsMax: 1 });
    upsert(s, 'tee');
    const dropped = paid(s);
    paid(s, { buyer: 'bob' }); // the second settle drops the first
    expect(codeOf(apply(s, { t: 'res.get', id: dropped }, T0))).toBe('unknown_reservation');
    expect(codeOf(refund(s, dropped))).toBe('unknown_reservation');
    expect(codeOf(refund(s, '0.zzzzzzzzz'))).toBe('unknown_reservation');
    // Its units stay sold: dropping a paid reservation never gives them back.
    expect(counters(s)).toMatchObject({ sold: 2, refunded: 0 });
  });

  test('paying a refunded reservation answers its view (status refunded), replayed; cancelling it is already_paid', () => {
    const s = shard();
    upsert(s, 'tee');
    const id = paid(s);
    okOf(refund(s, id));
    const before = toSnapshot(s);
    const pay = apply(s, { t: 'res.pay', id, paymentRef: 'retry' }, T0 + 20);
    expect(pay.mutated).toBe(false);
    expect(okOf(pay)).toMatchObject({ replayed: true, reservation: { status: 'refunded', paymentRef: `pi-${id}` } });
    expect(codeOf(apply(s, { t: 'res.cancel', id }, T0 + 20))).toBe('already_paid');
    expect(toSnapshot(s)).toEqual(before);
  });

  test('the idempotency key of a refunded order replays the reservation as it is now: refunded, holding nothing more', () => {
    const s = shard();
    upsert(s, 'tee');
    const id = paid(s, { idemKey: 'cart-1' });
    okOf(refund(s, id));
    const again = okOf(reserve(s, { idemKey: 'cart-1' }));
    expect(again).toMatchObject({ replayed: true, reservation: { reservationId: id, status: 'refunded' } });
    expect(counters(s)).toMatchObject({ available: 10, sold: 0 });
  });

  test.each<[string, Record<string, unknown>]>([
    ['restock absent', { id: 'x' }],
    ['restock not a boolean', { id: 'x', restock: 'true' }],
    ['an empty reason', { id: 'x', restock: true, reason: '' }],
    ['a reason of 201 characters', { id: 'x', restock: true, reason: 'r'.repeat(201) }],
    ['a reason with a control character', { id: 'x', restock: true, reason: 'a\u0007b' }],
    ['a reason with an escape character', { id: 'x', restock: true, reason: '\u001b[31m' }],
    ['an id that is not a string', { id: 7, restock: true }],
    ['an id over 64 characters', { id: 'x'.repeat(65), restock: true }],
  ])('a malformed refund (%s) is invalid_request and changes nothing', (_, fields) => {
    const s = shard();
    upsert(s, 'tee');
    paid(s);
    const before = toSnapshot(s);
    expect(codeOf(apply(s, { t: 'res.refund', ...fields } as unknown as Command, T0 + 5))).toBe('invalid_request');
    expect(toSnapshot(s)).toEqual(before);
  });

  test('a reason may span lines (tab and line breaks are text a person writes)', () => {
    const s = shard();
    upsert(s, 'tee');
    const id = paid(s);
    const reason = 'box damaged\n\treturned by courier';
    expect(okOf(refund(s, id, true, reason)).reservation!.refundReason).toBe(reason);
  });

  test('a reason of exactly 200 code points (400 UTF-16 units) is taken', () => {
    const s = shard();
    upsert(s, 'tee');
    const id = paid(s);
    const reason = '\u{1F45F}'.repeat(200);
    expect(okOf(refund(s, id, true, reason)).reservation!.refundReason).toBe(reason);
  });

  test('a refunded reservation keeps its pay time and its place among the settled: retention counts from the pay', () => {
    const s = shard({ settledRetentionMs: 1000 });
    upsert(s, 'tee');
    const first = paid(s);
    const second = paid(s, { buyer: 'bob' });
    okOf(refund(s, first, true, undefined, T0 + 900));
    expect([...s.settled].map((r) => r.id)).toEqual([first, second]);
    okOf(apply(s, { t: 'res.expire' }, T0 + 1002));
    expect(codeOf(apply(s, { t: 'res.get', id: first }, T0 + 1002))).toBe('unknown_reservation');
    expect(codeOf(refund(s, first, true, undefined, T0 + 1003))).toBe('unknown_reservation');
    expect(counters(s)).toMatchObject({ sold: 2 - 1, refunded: 1 });
  });
});

describe('the order.refunded event in the ERP outbox', () => {
  const on: Command = { t: 'erp.mode', enabled: true };
  const off: Command = { t: 'erp.mode', enabled: false };
  const pending = (s: ShardState, refunds = true) => okOf(apply(s, { t: 'erp.pending', afterSeq: 0, max: 100, refunds }, T0 + 50)).paid!;
  const row = (s: ShardState) => okOf(apply(s, { t: 'erp.reconcile' }, T0 + 50)).reconcile!.rows[0]!;

  function withOutbox(): ShardState {
    const s = shard();
    okOf(apply(s, on, T0));
    upsert(s, 'tee');
    return s;
  }

  test('follows the order\'s order.paid with its own stable eventId, the order\'s fields and the refund\'s', () => {
    const s = withOutbox();
    const id = paid(s, { qty: 2, channel: 'web' });
    okOf(refund(s, id, false, 'damaged'));
    expect(pending(s)).toEqual([
      {
        eventId: `order.paid:${id}`, shardId: 0, eventSeq: 1, reservationId: id, sku: 'tee', buyerId: 'ann', qty: 2,
        paidAt: T0 + 2, paymentRef: `pi-${id}`, channel: 'web',
      },
      {
        type: 'order.refunded', eventId: `order.refunded:${id}`, shardId: 0, eventSeq: 2, reservationId: id, sku: 'tee', buyerId: 'ann', qty: 2,
        paidAt: T0 + 2, paymentRef: `pi-${id}`, channel: 'web', refundedAt: T0 + 10, restock: false, reason: 'damaged',
      },
    ]);
    // A second refund queues nothing more.
    refund(s, id);
    expect(pending(s).length).toBe(2);
  });

  test('a deliverer that does not know refunds is handed the events before the first refund only', () => {
    const s = withOutbox();
    const a = paid(s);
    okOf(refund(s, a));
    paid(s, { buyer: 'bob' });
    expect(pending(s, false).map((e) => e.eventId)).toEqual([`order.paid:${a}`]);
    expect(okOf(apply(s, { t: 'erp.pending', afterSeq: 0, max: 10 }, T0)).paid!.length).toBe(1);
    expect(pending(s).length).toBe(3);
  });

  test('the reconciliation counts refunds apart: paid units by their order.paid, refunded units by their order.refunded', () => {
    const s = withOutbox();
    const a = paid(s, { qty: 2 });
    const b = paid(s, { buyer: 'bob', qty: 3 });
    okOf(apply(s, { t: 'erp.ack', upToSeq: 1 }, T0 + 20)); // a's order.paid is delivered
    okOf(refund(s, a));
    okOf(refund(s, b, false));
    expect(row(s)).toEqual({
      sku: 'tee', sold: 0, deliveredUnits: 2, undeliveredUnits: 3, undeliveredOrders: 1, notQueuedUnits: 0, uncountedUnits: 0,
      refundedUnits: 5, refundsDeliveredUnits: 0, refundsUndeliveredUnits: 5, refundsUndeliveredOrders: 2, refundsNotQueuedUnits: 0,
    });
    okOf(apply(s, { t: 'erp.ack', upToSeq: 4 }, T0 + 30));
    expect(row(s)).toMatchObject({ deliveredUnits: 5, undeliveredUnits: 0, refundsDeliveredUnits: 5, refundsUndeliveredUnits: 0 });
    const r = row(s);
    expect(r.sold + r.refundedUnits).toBe(r.deliveredUnits + r.undeliveredUnits + r.notQueuedUnits + r.uncountedUnits);
    expect(r.refundedUnits).toBe(r.refundsDeliveredUnits + r.refundsUndeliveredUnits + r.refundsNotQueuedUnits);
  });

  test('a refund is queued exactly when its order.paid was, whatever the mode at the refund', () => {
    const s = shard();
    okOf(apply(s, off, T0));
    upsert(s, 'tee');
    const paidWhileOff = paid(s);
    okOf(apply(s, on, T0 + 3));
    const paidWhileOn = paid(s, { buyer: 'bob' });
    okOf(refund(s, paidWhileOff)); // its order.paid never reached the outbox: neither does this
    okOf(apply(s, off, T0 + 11));
    // Off now, but its order.paid is owed to the ERP: so is its refund, after it.
    okOf(refund(s, paidWhileOn, true, undefined, T0 + 12));
    expect(pending(s).map((e) => e.eventId)).toEqual([`order.paid:${paidWhileOn}`, `order.refunded:${paidWhileOn}`]);
    expect(row(s)).toMatchObject({ refundedUnits: 2, refundsNotQueuedUnits: 1, refundsUndeliveredUnits: 1, notQueuedUnits: 1 });
  });

  test('a paid reservation from a version 3 snapshot is known queued while its order.paid is still in the outbox, and its refund follows it', () => {
    const s = withOutbox();
    const id = paid(s);
    const v3 = structuredClone(toSnapshot(s)) as ShardSnapshot;
    v3.v = 3;
    v3.skus = v3.skus.map((r) => r.slice(0, 19) as ShardSnapshot['skus'][number]);
    v3.reservations = v3.reservations.map((r) => r.slice(0, 13) as ShardSnapshot['reservations'][number]);
    const restored = fromSnapshot(v3, s.config);
    expect(restored.reservations.get(id)!.erpQueued).toBe(true);
    okOf(refund(restored, id));
    expect(pending(restored).map((e) => e.eventId)).toEqual([`order.paid:${id}`, `order.refunded:${id}`]);
    expect(toSnapshot(restored).v).toBe(5);
  });

  test('a paid reservation from a version 3 snapshot whose queueing is unknown gets no refund event, so none can stall the shard', () => {
    const s = withOutbox();
    const id = paid(s);
    okOf(apply(s, { t: 'erp.ack', upToSeq: s.outboxLastSeq }, T0 + 20)); // delivered: gone from the outbox
    const v3 = structuredClone(toSnapshot(s)) as ShardSnapshot;
    v3.v = 3;
    v3.skus = v3.skus.map((r) => r.slice(0, 19) as ShardSnapshot['skus'][number]);
    v3.reservations = v3.reservations.map((r) => r.slice(0, 13) as ShardSnapshot['reservations'][number]);
    const restored = fromSnapshot(v3, s.config);
    expect(restored.reservations.get(id)!.erpQueued).toBeNull();
    okOf(refund(restored, id));
    expect(pending(restored).map((e) => e.eventId)).toEqual([]);
    expect(row(restored)).toMatchObject({ refundsNotQueuedUnits: 1 });
  });

  test('with nothing ever queued (a version 3 snapshot of a shard that had no ERP), no refund is queued', () => {
    const s = shard();
    okOf(apply(s, off, T0));
    upsert(s, 'tee');
    const id = paid(s);
    const v3 = structuredClone(toSnapshot(s)) as ShardSnapshot;
    v3.v = 3;
    v3.skus = v3.skus.map((r) => r.slice(0, 19) as ShardSnapshot['skus'][number]);
    v3.reservations = v3.reservations.map((r) => r.slice(0, 13) as ShardSnapshot['reservations'][number]);
    const restored = fromSnapshot(v3, s.config);
    expect(restored.reservations.get(id)!.erpQueued).toBe(false);
    okOf(apply(restored, on, T0 + 30));
    okOf(refund(restored, id));
    expect(pending(restored)).toEqual([]);
  });
});

describe('refunds across snapshots and crashes', () => {
  const packr = new Packr({ useRecords: false, moreTypes: false, mapsAsObjects: true, variableMapSize: true });
  const dirs: string[] = [];
  afterEach(() => {
    for (const d of dirs.splice(0)) rmSync(d, { recursive: true, force: true });
  });

  /** A shard with refunds of every kind: restocked, written off, queued, delivered, with a reason or none. */
  function refunded(s: ShardState, run: (c: Command, atMs: number) => Applied): string[] {
    run({ t: 'erp.mode', enabled: true }, T0);
    run({ t: 'sku.upsert', sku: 'tee', stock: 10, maxPerBuyer: 3, channels: [['web', 4], ['default', null]] }, T0);
    const ids: string[] = [];
    for (const [i, buyer] of ['ann', 'bob', 'cy', 'dee'].entries()) {
      const id = okOf(run({ t: 'res.reserve', sku: 'tee', buyerId: buyer, qty: 1 + (i % 2), nonce: `n${i}`, channel: i % 2 === 0 ? 'web' : 'default' }, T0 + 1)).reservation!.reservationId;
      okOf(run({ t: 'res.pay', id, paymentRef: `p${i}` }, T0 + 2));
      ids.push(id);
    }
    okOf(run({ t: 'erp.ack', upToSeq: 2 }, T0 + 3));
    okOf(run({ t: 'res.refund', id: ids[0]!, restock: true, reason: 'changed mind' }, T0 + 4));
    okOf(run({ t: 'res.refund', id: ids[1]!, restock: false }, T0 + 5));
    okOf(run({ t: 'res.refund', id: ids[2]!, restock: true }, T0 + 6));
    okOf(run({ t: 'erp.ack', upToSeq: 5 }, T0 + 7));
    expect(view(s, 'tee')).toMatchObject({ onHand: 8, sold: 2, refunded: 4, available: 6 });
    return ids;
  }

  test('a state with refunds round-trips through toSnapshot, msgpack and fromSnapshot exactly (version 4), and answers as the live one', () => {
    const s = shard();
    const ids = refunded(s, (c, atMs) => apply(s, c, atMs));
    const snap = toSnapshot(s);
    expect(snap.v).toBe(5);
    expect(snap.skus[0]!.slice(19, 20)).toEqual([[4, 1, 0]]); // 4 refunded, 1 of them delivered (ann's)
    expect(snap.reservations.map((r) => [r[9], r[13], r[14]])).toEqual([
      ['refunded', true, [T0 + 4, true, 'changed mind']], ['refunded', true, [T0 + 5, false, null]],
      ['refunded', true, [T0 + 6, true, null]], ['paid', true, null],
    ]);
    const restored = fromSnapshot(packr.unpack(packr.pack(snap)) as ShardSnapshot, s.config);
    expect(toSnapshot(restored)).toEqual(snap);
    const later: Command[] = [
      { t: 'res.refund', id: ids[0]!, restock: false }, { t: 'res.refund', id: ids[3]!, restock: true, reason: 'late' },
      { t: 'res.reserve', sku: 'tee', buyerId: 'ann', qty: 3, nonce: 'z1', channel: 'web' },
      { t: 'erp.pending', afterSeq: 0, max: 10, refunds: true }, { t: 'erp.reconcile' }, { t: 'sku.get', sku: 'tee' },
    ];
    for (const [i, c] of later.entries()) expect(apply(restored, c, T0 + 100 + i), `command ${i}`).toEqual(apply(s, c, T0 + 100 + i));
    expect(toSnapshot(restored)).toEqual(toSnapshot(s));
  });

  test('after a crash (no snapshot) every refund comes back from the log; a second refund is not logged', () => {
    const dir = mkdtempSync(join(tmpdir(), 'flash-refunds-'));
    dirs.push(dir);
    const rt = ShardRuntime.open({ dir, shardId: 0, shardCount: 1 });
    const ids = refunded(rt.state, (c, atMs) => rt.execute([c], atMs)[0]!);
    const records = rt.walStats.recordsCommitted;
    expect(rt.execute([{ t: 'res.refund', id: ids[0]!, restock: false }], T0 + 50)[0]!.mutated).toBe(false);
    expect(codeOf(rt.execute([{ t: 'res.refund', id: 'nope', restock: true }], T0 + 50)[0]!)).toBe('unknown_reservation');
    expect(rt.walStats.recordsCommitted, 'answered from memory, nothing written').toBe(records);
    const live = toSnapshot(rt.state);
    rt.close();
    const again = ShardRuntime.open({ dir, shardId: 0, shardCount: 1 });
    expect(again.recovery.snapshotLsn).toBe(0);
    expect(toSnapshot(again.state)).toEqual(live);
    // And from a snapshot taken now, then more log.
    again.snapshot();
    okOf(again.execute([{ t: 'res.refund', id: ids[3]!, restock: true }], T0 + 60)[0]!);
    const after = toSnapshot(again.state);
    again.close();
    const third = ShardRuntime.open({ dir, shardId: 0, shardCount: 1 });
    expect(toSnapshot(third.state)).toEqual(after);
    expect(view(third.state, 'tee')).toMatchObject({ sold: 0, refunded: 6, onHand: 8, available: 8 });
    third.close();
  });
});
