// The shard's ERP outbox: paying appends a paid event while the outbox is on (erp.mode, a
// logged command), erp.pending reads them in order, erp.ack removes a delivered prefix and
// counts its units as delivered, and everything survives a snapshot and a crash-replay, so
// delivery resumes exactly where it was. Whether a pay was queued is decided by the log,
// never by the settings of the process that replays it.

import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, describe, expect, test } from 'vitest';
import {
  apply, createShardState, fromSnapshot, toSnapshot, type Command, type ShardConfig, type ShardSnapshot, type ShardState,
} from '../src/domain/index.js';
import { ShardRuntime } from '../src/engine/shard-runtime.js';
import { codeOf, okOf, T0 } from './support/domain-kit.js';

const on: Command = { t: 'erp.mode', enabled: true };
const off: Command = { t: 'erp.mode', enabled: false };

/** Reserves and pays one unit of `tee` (qty 1 unless given); returns the reservation id. */
function pay(s: ShardState, buyerId: string, qty = 1, atMs = T0 + 1): string {
  const id = okOf(apply(s, { t: 'res.reserve', sku: 'tee', buyerId, qty, nonce: 'n1' }, T0)).reservation!.reservationId;
  okOf(apply(s, { t: 'res.pay', id, paymentRef: `p-${buyerId}` }, atMs));
  return id;
}

/** A shard with the outbox on (or never set), a SKU `tee`, and `paid` paid reservations of 1 unit each. */
function withPaid(paid: number, mode: boolean | null = true, config: Partial<ShardConfig> = {}): { s: ShardState; ids: string[] } {
  const s = createShardState(0, 1, config);
  if (mode !== null) okOf(apply(s, { t: 'erp.mode', enabled: mode }, T0));
  okOf(apply(s, { t: 'sku.upsert', sku: 'tee', stock: 100 }, T0));
  const ids: string[] = [];
  for (let i = 0; i < paid; i++) ids.push(pay(s, `b${i}`));
  return { s, ids };
}

const pending = (s: ShardState, afterSeq = 0, max = 100) => okOf(apply(s, { t: 'erp.pending', afterSeq, max }, T0 + 2)).paid!;
const reconcile = (s: ShardState) => okOf(apply(s, { t: 'erp.reconcile' }, T0 + 2)).reconcile!;
const rowOf = (s: ShardState, sku = 'tee') => reconcile(s).rows.find((r) => r.sku === sku);
/** The refund columns of a reconciliation row of a SKU that never had a refund. */
const noRefunds = { refundedUnits: 0, refundsDeliveredUnits: 0, refundsUndeliveredUnits: 0, refundsUndeliveredOrders: 0, refundsNotQueuedUnits: 0 };

describe('the ERP outbox', () => {
  test('a pay appends one paid event with a stable eventId and consecutive eventSeq', () => {
    const { s, ids } = withPaid(3);
    expect(pending(s)).toEqual(ids.map((id, i) => ({
      eventId: `order.paid:${id}`, shardId: 0, eventSeq: i + 1, reservationId: id, sku: 'tee',
      buyerId: `b${i}`, qty: 1, paidAt: T0 + 1, paymentRef: `p-b${i}`, channel: 'default',
    })));
  });

  test('paying again, cancelling or expiring adds no event, and a shard with the outbox off keeps none', () => {
    const { s, ids } = withPaid(1);
    okOf(apply(s, { t: 'res.pay', id: ids[0]! }, T0 + 5));
    const held = okOf(apply(s, { t: 'res.reserve', sku: 'tee', buyerId: 'x', qty: 1, nonce: 'n2' }, T0)).reservation!.reservationId;
    okOf(apply(s, { t: 'res.cancel', id: held }, T0 + 6));
    expect(pending(s).map((e) => e.eventSeq)).toEqual([1]);
    const offShard = withPaid(2, false);
    expect(pending(offShard.s)).toEqual([]);
    expect(offShard.s.outboxLastSeq).toBe(0);
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
    const before = toSnapshot(s);
    const past = apply(s, { t: 'erp.ack', upToSeq: 9 }, T0 + 3);
    expect(codeOf(past)).toBe('invalid_request');
    expect(past.mutated).toBe(false);
    expect(toSnapshot(s)).toEqual(before);
    expect(pending(s, 2).map((e) => e.eventSeq)).toEqual([3, 4]);
  });

  test('erp.reconcile reports per SKU sold, delivered (counted at erp.ack), waiting and never queued, with totals, and changes nothing', () => {
    const { s } = withPaid(4);
    okOf(apply(s, { t: 'erp.ack', upToSeq: 1 }, T0 + 3));
    okOf(apply(s, off, T0 + 4));
    pay(s, 'late', 2, T0 + 5);
    const before = toSnapshot(s);
    const a = apply(s, { t: 'erp.reconcile' }, T0 + 6);
    expect(a.mutated).toBe(false);
    const units = { sold: 6, deliveredUnits: 1, undeliveredUnits: 3, undeliveredOrders: 3, notQueuedUnits: 2, uncountedUnits: 0, ...noRefunds };
    expect(okOf(a).reconcile).toEqual({ rows: [{ sku: 'tee', ...units }], totals: units, outboxLength: 3, truncated: false, outboxEnabled: false });
    expect(toSnapshot(s)).toEqual(before);
  });

  test('the outbox, its mode and the ERP units survive a snapshot round trip (version 4)', () => {
    const { s } = withPaid(3);
    okOf(apply(s, { t: 'erp.ack', upToSeq: 1 }, T0 + 3));
    okOf(apply(s, off, T0 + 3));
    pay(s, 'off-1');
    const snap = toSnapshot(s);
    expect(snap.v).toBe(5);
    expect(snap.outboxEnabled).toBe(false);
    const restored = fromSnapshot(structuredClone(snap), s.config);
    expect(toSnapshot(restored)).toEqual(snap);
    expect(pending(restored).map((e) => e.eventSeq)).toEqual([2, 3]);
    expect(rowOf(restored)).toMatchObject({ sold: 4, deliveredUnits: 1, undeliveredUnits: 2, notQueuedUnits: 1 });
  });
});

describe('erp.mode: the outbox on and off, decided by the log', () => {
  test('the first erp.mode is always logged (even "off"); the same mode again changes nothing', () => {
    const s = createShardState(0, 1);
    expect(s.outboxEnabled).toBeNull();
    const first = apply(s, off, T0);
    expect(first.mutated).toBe(true);
    expect(okOf(first).erpMode).toEqual({ enabled: false, previous: null });
    expect(apply(s, off, T0).mutated).toBe(false);
    const turned = apply(s, on, T0);
    expect(turned.mutated).toBe(true);
    expect(okOf(turned).erpMode).toEqual({ enabled: true, previous: false });
    expect(apply(s, on, T0 + 1).mutated).toBe(false);
  });

  test('turning it off keeps every queued order; orders paid while off are counted as not queued and never enter it; on again, new pays continue the seq', () => {
    const { s, ids } = withPaid(2);
    okOf(apply(s, off, T0 + 2));
    const whileOff = pay(s, 'off-buyer', 3);
    expect(pending(s).map((e) => e.reservationId)).toEqual(ids);
    // A deliverer may still acknowledge what was queued: those orders are owed.
    expect(apply(s, { t: 'erp.ack', upToSeq: 1 }, T0 + 3).mutated).toBe(true);
    okOf(apply(s, on, T0 + 4));
    const after = pay(s, 'on-again');
    expect(pending(s).map((e) => [e.eventSeq, e.reservationId])).toEqual([[2, ids[1]], [3, after]]);
    expect(pending(s).some((e) => e.reservationId === whileOff)).toBe(false);
    expect(rowOf(s)).toEqual({ sku: 'tee', sold: 6, deliveredUnits: 1, undeliveredUnits: 2, undeliveredOrders: 2, notQueuedUnits: 3, uncountedUnits: 0, ...noRefunds });
  });

  test('with no erp.mode logged (a log from before it), legacyOutboxEnabled decides, as the settings did then', () => {
    expect(pending(withPaid(2, null, { legacyOutboxEnabled: true }).s).length).toBe(2);
    const legacyOff = withPaid(2, null, { legacyOutboxEnabled: false }).s;
    expect(pending(legacyOff)).toEqual([]);
    expect(rowOf(legacyOff)).toMatchObject({ sold: 2, notQueuedUnits: 2, deliveredUnits: 0 });
    // Once a mode is logged, the legacy setting is never read again.
    const logged = withPaid(0, true, { legacyOutboxEnabled: false }).s;
    pay(logged, 'x');
    expect(pending(logged).length).toBe(1);
  });

  test('erp.mode is checked like any command', () => {
    for (const enabled of [1, 'true', null, undefined]) {
      const s = createShardState(0, 1);
      const a = apply(s, { t: 'erp.mode', enabled } as unknown as Command, T0);
      expect(codeOf(a), String(enabled)).toBe('invalid_request');
      expect(s.outboxEnabled).toBeNull();
    }
  });
});

describe('snapshots from before the ERP units were counted', () => {
  /** A v2 snapshot of `s`, as the previous version wrote it: no mode, no ERP units. */
  function asV2(s: ShardState): ShardSnapshot {
    const snap = structuredClone(toSnapshot(s)) as ShardSnapshot & { outboxEnabled?: unknown };
    delete snap.outboxEnabled;
    return { ...snap, v: 2, skus: snap.skus.map((row) => row.slice(0, 18) as ShardSnapshot['skus'][number]) };
  }

  test('sold units outside the outbox are uncounted (never reported delivered) when events were ever queued, else not queued', () => {
    const { s } = withPaid(3, null, { legacyOutboxEnabled: true });
    okOf(apply(s, { t: 'erp.ack', upToSeq: 2 }, T0 + 3));
    const restored = fromSnapshot(asV2(s), s.config);
    expect(restored.outboxEnabled).toBeNull();
    expect(rowOf(restored)).toEqual({ sku: 'tee', sold: 3, deliveredUnits: 0, undeliveredUnits: 1, undeliveredOrders: 1, notQueuedUnits: 0, uncountedUnits: 2, ...noRefunds });
    const never = withPaid(2, null, { legacyOutboxEnabled: false }).s;
    expect(rowOf(fromSnapshot(asV2(never), never.config))).toMatchObject({ sold: 2, deliveredUnits: 0, notQueuedUnits: 2, uncountedUnits: 0 });
    // It goes on as a state of this version, and round-trips as one.
    const again = toSnapshot(restored);
    expect(again.v).toBe(5);
    expect(toSnapshot(fromSnapshot(again, s.config))).toEqual(again);
  });
});

describe('the ERP outbox across a crash and across differently configured processes', () => {
  const dirs: string[] = [];
  afterEach(() => {
    for (const d of dirs.splice(0)) rmSync(d, { recursive: true, force: true });
  });
  const tempDir = (): string => {
    const dir = mkdtempSync(join(tmpdir(), 'flash-outbox-'));
    dirs.push(dir);
    return dir;
  };
  /** A process's start: open the shard, then log the mode its settings ask for (as ErpModeTransport does). */
  function openAs(dir: string, erpConfigured: boolean): ShardRuntime {
    const rt = ShardRuntime.open({ dir, shardId: 0, shardCount: 1, config: { legacyOutboxEnabled: erpConfigured } });
    rt.execute([{ t: 'erp.mode', enabled: erpConfigured }], T0);
    return rt;
  }
  function payOn(rt: ShardRuntime, buyers: string[], atMs: number): string[] {
    const ids = rt.execute(buyers.map((b) => ({ t: 'res.reserve' as const, sku: 'tee', buyerId: b, qty: 1, nonce: 'n3' })), atMs)
      .map((a) => okOf(a).reservation!.reservationId);
    rt.execute(ids.map((id) => ({ t: 'res.pay' as const, id })), atMs + 1);
    return ids;
  }

  test('acks and pays are replayed from the log, so delivery resumes after the last ack', () => {
    const dir = tempDir();
    const rt = openAs(dir, true);
    rt.execute([{ t: 'sku.upsert', sku: 'tee', stock: 10 }], T0);
    const ids = payOn(rt, ['b0', 'b1', 'b2'], T0);
    rt.execute([{ t: 'erp.ack', upToSeq: 2 }], T0 + 2);
    rt.close(); // no snapshot: everything comes back from the log
    const again = openAs(dir, true);
    expect(pending(again.state).map((e) => e.reservationId)).toEqual([ids[2]]);
    again.close();
  });

  test('a process without ERP settings opens a log written with them (after an erp.ack), keeps the outbox, and a standby with them delivers the rest', () => {
    const dir = tempDir();
    const a = openAs(dir, true);
    a.execute([{ t: 'sku.upsert', sku: 'tee', stock: 20 }], T0);
    const queued = payOn(a, ['a0', 'a1', 'a2', 'a3'], T0);
    expect(a.execute([{ t: 'erp.ack', upToSeq: 2 }], T0 + 3)[0]!.mutated).toBe(true);
    // An ack past the end is refused and not logged: it can never make a replay diverge.
    expect(codeOf(a.execute([{ t: 'erp.ack', upToSeq: 99 }], T0 + 3)[0]!)).toBe('invalid_request');
    const liveA = toSnapshot(a.state);
    a.close();

    // Configured differently: it replays exactly what A had (used to throw "replay of record 4 diverged").
    const b = ShardRuntime.open({ dir, shardId: 0, shardCount: 1, config: { legacyOutboxEnabled: false } });
    expect(toSnapshot(b.state)).toEqual(liveA);
    expect(b.execute([off], T0 + 4)[0]!.mutated).toBe(true);
    const whileOff = payOn(b, ['b0', 'b1'], T0 + 5);
    expect(pending(b.state).map((e) => e.reservationId)).toEqual(queued.slice(2));
    const liveB = toSnapshot(b.state);
    b.close();

    // Back with ERP settings, from the log alone and then from a snapshot: the rest is owed, nothing paid while off.
    for (const snapshotFirst of [false, true]) {
      const c = ShardRuntime.open({ dir, shardId: 0, shardCount: 1, config: { legacyOutboxEnabled: true } });
      expect(toSnapshot(c.state), `snapshot first: ${snapshotFirst}`).toEqual(liveB);
      if (snapshotFirst) c.snapshot();
      c.close();
    }
    const c = openAs(dir, true);
    const owed = pending(c.state);
    expect(owed.map((e) => e.reservationId)).toEqual(queued.slice(2));
    expect(owed.some((e) => whileOff.includes(e.reservationId))).toBe(false);
    c.execute([{ t: 'erp.ack', upToSeq: owed[owed.length - 1]!.eventSeq }], T0 + 9);
    expect(rowOf(c.state)).toEqual({ sku: 'tee', sold: 6, deliveredUnits: 4, undeliveredUnits: 0, undeliveredOrders: 0, notQueuedUnits: 2, uncountedUnits: 0, ...noRefunds });
    c.close();
  });
});
