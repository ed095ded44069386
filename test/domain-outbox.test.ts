// The shard's ERP outbox: paying appends a paid event, erp.pending reads them in order,
// erp.ack removes a delivered prefix with a logged change, and the outbox survives a
// snapshot and a crash-replay, so delivery resumes exactly where it was.

import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, describe, expect, test } from 'vitest';
import { apply, createShardState, fromSnapshot, toSnapshot, type Applied, type ShardState } from '../src/domain/index.js';
import { ShardRuntime } from '../src/engine/shard-runtime.js';
import { okOf, T0 } from './support/domain-kit.js';

/** A shard with the outbox on (or off) and `paid` paid reservations of 1 unit each. */
function withPaid(paid: number, outboxEnabled = true): { s: ShardState; ids: string[] } {
  const s = createShardState(0, 1, { outboxEnabled });
  okOf(apply(s, { t: 'sku.upsert', sku: 'tee', stock: 100 }, T0));
  const ids: string[] = [];
  for (let i = 0; i < paid; i++) {
    const id = okOf(apply(s, { t: 'res.reserve', sku: 'tee', buyerId: `b${i}`, qty: 1, nonce: 'n1' }, T0)).reservation!.reservationId;
    okOf(apply(s, { t: 'res.pay', id, paymentRef: `p${i}` }, T0 + 1));
    ids.push(id);
  }
  return { s, ids };
}

const pending = (s: ShardState, afterSeq = 0, max = 100) => okOf(apply(s, { t: 'erp.pending', afterSeq, max }, T0 + 2)).paid!;

describe('the ERP outbox', () => {
  test('a pay appends one paid event with a stable eventId and consecutive eventSeq', () => {
    const { s, ids } = withPaid(3);
    expect(pending(s)).toEqual(ids.map((id, i) => ({
      eventId: `order.paid:${id}`, shardId: 0, eventSeq: i + 1, reservationId: id, sku: 'tee',
      buyerId: `b${i}`, qty: 1, paidAt: T0 + 1, paymentRef: `p${i}`, channel: 'default',
    })));
  });

  test('paying again, cancelling or expiring adds no event, and a shard with the outbox off keeps none', () => {
    const { s, ids } = withPaid(1);
    okOf(apply(s, { t: 'res.pay', id: ids[0]! }, T0 + 5));
    const held = okOf(apply(s, { t: 'res.reserve', sku: 'tee', buyerId: 'x', qty: 1, nonce: 'n2' }, T0)).reservation!.reservationId;
    okOf(apply(s, { t: 'res.cancel', id: held }, T0 + 6));
    expect(pending(s).map((e) => e.eventSeq)).toEqual([1]);
    const off = withPaid(2, false);
    expect(pending(off.s)).toEqual([]);
  });

  test('erp.pending pages by afterSeq and max and changes nothing', () => {
    const { s } = withPaid(5);
    const before = toSnapshot(s);
    expect(pending(s, 2, 2).map((e) => e.eventSeq)).toEqual([3, 4]);
    expect(pending(s, 5, 10)).toEqual([]);
    expect(apply(s, { t: 'erp.pending', afterSeq: 0, max: 10 }, T0).mutated).toBe(false);
    expect(toSnapshot(s)).toEqual(before);
  });

  test('erp.ack removes the delivered prefix cumulatively; a repeat changes nothing; past the end is refused', () => {
    const { s } = withPaid(4);
    const a = apply(s, { t: 'erp.ack', upToSeq: 2 }, T0 + 3);
    expect(a.mutated).toBe(true);
    expect(pending(s).map((e) => e.eventSeq)).toEqual([3, 4]);
    expect(apply(s, { t: 'erp.ack', upToSeq: 2 }, T0 + 3).mutated).toBe(false);
    expect(apply(s, { t: 'erp.ack', upToSeq: 1 }, T0 + 3).mutated).toBe(false);
    const past = apply(s, { t: 'erp.ack', upToSeq: 9 }, T0 + 3);
    expect(past.outcome.ok ? 'ok' : past.outcome.code).toBe('invalid_request');
    expect(pending(s, 2).map((e) => e.eventSeq)).toEqual([3, 4]);
  });

  test('erp.reconcile reports per SKU sold and the units and orders still waiting, and changes nothing', () => {
    const { s } = withPaid(4);
    okOf(apply(s, { t: 'erp.ack', upToSeq: 1 }, T0 + 3));
    const before = toSnapshot(s);
    const a = apply(s, { t: 'erp.reconcile' }, T0 + 4);
    expect(a.mutated).toBe(false);
    expect(okOf(a).reconcile).toEqual({ rows: [{ sku: 'tee', sold: 4, undeliveredUnits: 3, undeliveredOrders: 3 }], outboxLength: 3, truncated: false });
    expect(toSnapshot(s)).toEqual(before);
  });

  test('the outbox and its last seq survive a snapshot round trip', () => {
    const { s } = withPaid(3);
    okOf(apply(s, { t: 'erp.ack', upToSeq: 1 }, T0 + 3));
    const restored = fromSnapshot(toSnapshot(s), s.config);
    expect(toSnapshot(restored)).toEqual(toSnapshot(s));
    expect(pending(restored).map((e) => e.eventSeq)).toEqual([2, 3]);
  });
});

describe('the ERP outbox across a crash', () => {
  const dirs: string[] = [];
  afterEach(() => {
    for (const d of dirs.splice(0)) rmSync(d, { recursive: true, force: true });
  });

  test('acks and pays are replayed from the log, so delivery resumes after the last ack', () => {
    const dir = mkdtempSync(join(tmpdir(), 'flash-outbox-'));
    dirs.push(dir);
    const open = () => ShardRuntime.open({ dir, shardId: 0, shardCount: 1, config: { outboxEnabled: true } });
    const rt = open();
    rt.execute([{ t: 'sku.upsert', sku: 'tee', stock: 10 }], T0);
    const ids = rt.execute([0, 1, 2].map((i) => ({ t: 'res.reserve' as const, sku: 'tee', buyerId: `b${i}`, qty: 1, nonce: 'n3' })), T0)
      .map((a) => okOf(a).reservation!.reservationId);
    rt.execute(ids.map((id) => ({ t: 'res.pay' as const, id })), T0 + 1);
    rt.execute([{ t: 'erp.ack', upToSeq: 2 }], T0 + 2);
    rt.close(); // no snapshot: everything comes back from the log
    const again = open();
    expect(pending(again.state).map((e) => e.reservationId)).toEqual([ids[2]]);
    again.close();
  });
});
