// Table-driven unit tests of the bound on settled reservations (settledReservationsMax,
// retention.ts): settles drop the oldest settled first, by settle order, with the keys still
// naming them; quota use and sold stay; a dropped id is unknown; the settling command still
// answers what it settled; snapshots and replay after drops are exact; and a reserve+cancel
// loop leaves every collection of the state, indexes included, at its bound.

import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Packr } from 'msgpackr';
import { afterAll, describe, expect, test } from 'vitest';
import {
  apply, createShardState, defaultShardConfig, fromSnapshot, toSnapshot,
  type Applied, type Command, type ShardConfig, type ShardSnapshot, type ShardState,
} from '../src/domain/index.js';
import { ShardRuntime } from '../src/engine/shard-runtime.js';
import { codeOf, okOf, view, T0 } from './support/domain-kit.js';

const SECOND = 1000;
const packr = new Packr({ useRecords: false, moreTypes: false, mapsAsObjects: true, variableMapSize: true });

const dirs: string[] = [];
afterAll(() => {
  for (const dir of dirs) rmSync(dir, { recursive: true, force: true });
});

let nonceCounter = 0;
function nonce(): string {
  return (nonceCounter++ % 1_679_616).toString(36).padStart(4, '0');
}

function shard(config: Partial<ShardConfig>, sku: Omit<Extract<Command, { t: 'sku.upsert' }>, 't'> = { sku: 'tee', stock: 100 }): ShardState {
  const s = createShardState(0, 1, config);
  okOf(apply(s, { t: 'sku.upsert', ...sku }, T0));
  return s;
}

function reserve(s: ShardState, opts: { buyerId?: string; qty?: number; idemKey?: string; channel?: string } = {}, nowMs = T0): string {
  const c: Command = { t: 'res.reserve', sku: 'tee', buyerId: opts.buyerId ?? 'ann', qty: opts.qty ?? 1, nonce: nonce() };
  if (opts.idemKey !== undefined) c.idemKey = opts.idemKey;
  if (opts.channel !== undefined) c.channel = opts.channel;
  return okOf(apply(s, c, nowMs)).reservation!.reservationId;
}

/** What res.get answers for `id`: its status, or the refusal code. */
function statusOf(s: ShardState, id: string): string {
  const a = apply(s, { t: 'res.get', id }, 0);
  return a.outcome.ok ? a.outcome.reservation!.status : a.outcome.code;
}

/** Ids of the settled reservations the shard keeps, oldest settled first. */
function settledIds(s: ShardState): string[] {
  return [...s.settled].map((r) => r.id);
}

function restore(s: ShardState): ShardState {
  return fromSnapshot(packr.unpack(packr.pack(toSnapshot(s))) as ShardSnapshot, s.config);
}

describe('settledReservationsMax', () => {
  test('is 1,000,000 by default, and must be an integer of at least 1', () => {
    expect(defaultShardConfig.settledReservationsMax).toBe(1_000_000);
    expect(createShardState(0, 1).config.settledReservationsMax).toBe(1_000_000);
    for (const bad of [0, -1, 1.5, Number.NaN]) {
      expect(() => createShardState(0, 1, { settledReservationsMax: bad }), String(bad)).toThrow(/settledReservationsMax/);
    }
    expect(() => createShardState(0, 1, { settledReservationsMax: 1 })).not.toThrow();
  });

  test('a settle past the bound drops the oldest settled reservation first, by settle order, whatever its creation order or status', () => {
    // Five holds made at T0 (r0..r4), due at T0+10 s; two settled reservations are kept.
    const s = shard({ settledReservationsMax: 2 }, { sku: 'tee', stock: 10, holdSeconds: 10 });
    const r = [0, 1, 2, 3, 4].map((i) => reserve(s, { buyerId: `b${i}` }));
    const steps: { name: string; command: Command; nowMs: number; kept: number[] }[] = [
      { name: 'cancel r3', command: { t: 'res.cancel', id: r[3]! }, nowMs: T0 + SECOND, kept: [3] },
      { name: 'pay r1', command: { t: 'res.pay', id: r[1]! }, nowMs: T0 + 2 * SECOND, kept: [3, 1] },
      { name: 'cancel r0 drops r3, settled first though created last of the three', command: { t: 'res.cancel', id: r[0]! }, nowMs: T0 + 3 * SECOND, kept: [1, 0] },
      { name: 'a get changes nothing', command: { t: 'res.get', id: r[1]! }, nowMs: T0 + 4 * SECOND, kept: [1, 0] },
      { name: 'res.expire expires r2 then r4, dropping r1 then r0', command: { t: 'res.expire' }, nowMs: T0 + 10 * SECOND, kept: [2, 4] },
    ];
    const dropped = new Set<number>();
    for (const { name, command, nowMs, kept } of steps) {
      const before = settledIds(s).map((id) => r.indexOf(id));
      okOf(apply(s, command, nowMs));
      for (const i of before) if (!kept.includes(i)) dropped.add(i);
      expect(settledIds(s), name).toEqual(kept.map((i) => r[i]));
      for (const i of dropped) expect(statusOf(s, r[i]!), `${name}: r${i} was dropped`).toBe('unknown_reservation');
      for (const i of kept) expect(statusOf(s, r[i]!), `${name}: r${i} is kept`).not.toBe('unknown_reservation');
    }
    expect([...dropped]).toEqual([3, 1, 0]);
    expect(s.reservations.size).toBe(2);
  });

  test('a held reservation is never dropped, however many settle after it', () => {
    const s = shard({ settledReservationsMax: 1 }, { sku: 'tee', stock: 10, holdSeconds: 600 });
    const held = reserve(s, { buyerId: 'bob' });
    for (let i = 0; i < 5; i++) okOf(apply(s, { t: 'res.cancel', id: reserve(s) }, T0 + i));
    expect(statusOf(s, held)).toBe('held');
    expect(s.reservations.size).toBe(2);
    expect(view(s, 'tee')).toMatchObject({ reserved: 1, available: 9 });
  });

  test('a drop takes the idempotency key still naming the reservation; a key of a kept one still replays', () => {
    const s = shard({ settledReservationsMax: 1 });
    const resend = (idemKey: string) => apply(s, { t: 'res.reserve', sku: 'tee', buyerId: 'ann', qty: 1, idemKey, nonce: nonce() }, T0 + 10);
    const a = reserve(s, { idemKey: 'k1' });
    okOf(apply(s, { t: 'res.cancel', id: a }, T0 + 1));
    const b = reserve(s, { idemKey: 'k2' }, T0 + 2);
    expect(okOf(resend('k1'))).toMatchObject({ replayed: true, reservation: { reservationId: a, status: 'cancelled' } });
    okOf(apply(s, { t: 'res.cancel', id: b }, T0 + 3)); // drops a, and its key k1
    expect(statusOf(s, a)).toBe('unknown_reservation');
    expect(s.idempotency.size).toBe(1);
    expect(toSnapshot(s).idempotency.map(([key]) => key.split('\u0000')[2])).toEqual(['k2']);
    expect(okOf(resend('k2'))).toMatchObject({ replayed: true, reservation: { reservationId: b, status: 'cancelled' } });
    const again = resend('k1');
    expect(again.mutated).toBe(true);
    expect(okOf(again).replayed).toBeUndefined();
    expect(okOf(again).reservation!.reservationId).not.toBe(a);
  });

  test('a dropped paid reservation stays counted in sold, in its channel and in its buyer\'s quota; dropping changes no counter', () => {
    const s = shard({ settledReservationsMax: 1 }, { sku: 'tee', stock: 5, maxPerBuyer: 2, channels: [['web', 3], ['app', null]] });
    const paid = reserve(s, { qty: 2, channel: 'web' });
    okOf(apply(s, { t: 'res.pay', id: paid }, T0 + 1));
    const before = view(s, 'tee');
    expect(before).toMatchObject({ sold: 2, reserved: 0, available: 3, channels: { web: { sold: 2, reserved: 0, maxUnits: 3 } } });
    okOf(apply(s, { t: 'res.cancel', id: reserve(s, { buyerId: 'bob', channel: 'app' }, T0 + 2) }, T0 + 3)); // drops the paid one
    expect(statusOf(s, paid)).toBe('unknown_reservation');
    expect(view(s, 'tee')).toEqual(before);
    expect(codeOf(apply(s, { t: 'res.reserve', sku: 'tee', buyerId: 'ann', qty: 1, channel: 'app', nonce: nonce() }, T0 + 4))).toBe('quota_exceeded');
    expect(codeOf(apply(s, { t: 'res.reserve', sku: 'tee', buyerId: 'bob', qty: 2, channel: 'web', nonce: nonce() }, T0 + 4))).toBe('channel_sold_out');
    // A cancelled reservation gave its quota back when it settled; its drop gives nothing more.
    expect(codeOf(apply(s, { t: 'res.reserve', sku: 'tee', buyerId: 'bob', qty: 2, channel: 'app', nonce: nonce() }, T0 + 5))).toBe('ok');
  });

  test('a dropped paid reservation of a drop stays in the quota the drop\'s SKUs share', () => {
    const s = createShardState(0, 1, { settledReservationsMax: 1 });
    okOf(apply(s, { t: 'sku.upsert', sku: 'tee', stock: 5, dropId: 'D', maxPerBuyer: 2 }, T0));
    okOf(apply(s, { t: 'sku.upsert', sku: 'cap', stock: 5, dropId: 'D', maxPerBuyer: 2 }, T0));
    const paid = reserve(s, { qty: 2 });
    okOf(apply(s, { t: 'res.pay', id: paid }, T0));
    okOf(apply(s, { t: 'res.cancel', id: reserve(s, { buyerId: 'bob' }) }, T0));
    expect(statusOf(s, paid)).toBe('unknown_reservation');
    expect(codeOf(apply(s, { t: 'res.reserve', sku: 'cap', buyerId: 'ann', qty: 1, nonce: nonce() }, T0))).toBe('quota_exceeded');
  });

  const afterDrop: { name: string; command: (id: string) => Command }[] = [
    { name: 'res.get', command: (id) => ({ t: 'res.get', id }) },
    { name: 'res.get by its buyer', command: (id) => ({ t: 'res.get', id, buyerId: 'ann' }) },
    { name: 'res.pay', command: (id) => ({ t: 'res.pay', id, paymentRef: 'p' }) },
    { name: 'res.cancel', command: (id) => ({ t: 'res.cancel', id }) },
    { name: 'res.cancel by its buyer', command: (id) => ({ t: 'res.cancel', id, buyerId: 'ann' }) },
  ];
  for (const { name, command } of afterDrop) test(`${name} of a dropped reservation answers unknown_reservation and changes nothing`, () => {
    const s = shard({ settledReservationsMax: 1 });
    const id = reserve(s);
    okOf(apply(s, { t: 'res.pay', id }, T0));
    okOf(apply(s, { t: 'res.cancel', id: reserve(s, { buyerId: 'bob' }) }, T0));
    const snap = toSnapshot(s);
    const a = apply(s, command(id), T0 + SECOND);
    expect(a).toEqual({ outcome: { ok: false, code: 'unknown_reservation', message: `no reservation ${id}` }, mutated: false, events: null });
    expect(toSnapshot(s)).toEqual(snap);
  });

  test('the command that settles a reservation answers it, even when only one settled reservation is kept', () => {
    const s = shard({ settledReservationsMax: 1 }, { sku: 'tee', stock: 10, holdSeconds: 10 });
    const [a, b, c, d, e] = [0, 1, 2, 3, 4].map((i) => reserve(s, { buyerId: `b${i}` }));
    const paid = apply(s, { t: 'res.pay', id: a!, paymentRef: 'p1' }, T0 + SECOND);
    expect(okOf(paid).reservation).toMatchObject({ reservationId: a, status: 'paid', paymentRef: 'p1' });
    expect(paid.events).toContainEqual({ type: 'paid', reservation: okOf(paid).reservation });
    expect(okOf(apply(s, { t: 'res.cancel', id: b! }, T0 + SECOND)).reservation).toMatchObject({ reservationId: b, status: 'cancelled' });
    // Due but not swept: the cancel expires it and answers it, the pay expires it and refuses.
    expect(okOf(apply(s, { t: 'res.cancel', id: c! }, T0 + 10 * SECOND)).reservation).toMatchObject({ reservationId: c, status: 'expired' });
    const late = apply(s, { t: 'res.pay', id: d! }, T0 + 10 * SECOND);
    expect([codeOf(late), late.mutated]).toEqual(['reservation_expired', true]);
    expect(statusOf(s, d!)).toBe('expired');
    expect(statusOf(s, c!)).toBe('unknown_reservation');
    // One res.expire that expires more holds than are kept counts them all, and keeps the last.
    const f = reserve(s, { buyerId: 'b5' }, T0 + 10 * SECOND);
    expect(okOf(apply(s, { t: 'res.expire' }, T0 + 20 * SECOND)).expired).toBe(2);
    expect(settledIds(s)).toEqual([f]);
    expect(statusOf(s, e!)).toBe('unknown_reservation');
  });

  test('a snapshot taken after drops round-trips exactly, and the restored state drops the same reservations next', () => {
    const s = shard({ settledReservationsMax: 3, idempotencyWindowMs: 60 * SECOND }, { sku: 'tee', stock: 50, holdSeconds: 30 });
    const ids: string[] = [];
    for (let i = 0; i < 8; i++) ids.push(reserve(s, { buyerId: `b${i % 3}`, idemKey: i % 2 === 0 ? `k${i}` : undefined }, T0 + i));
    okOf(apply(s, { t: 'res.pay', id: ids[5]! }, T0 + 10));
    for (const i of [2, 0, 7, 3]) okOf(apply(s, { t: 'res.cancel', id: ids[i]! }, T0 + 11 + i));
    expect(settledIds(s)).toEqual([ids[0], ids[7], ids[3]]);
    const snap = toSnapshot(s);
    expect(snap.settledOrder.map((i) => snap.reservations[i]![0])).toEqual([ids[0], ids[7], ids[3]]);
    const r = restore(s);
    expect(toSnapshot(r)).toEqual(snap);
    const next: [Command, number][] = [
      [{ t: 'res.reserve', sku: 'tee', buyerId: 'b0', qty: 1, idemKey: 'k0', nonce: 'c001' }, T0 + 20], // k0's reservation is kept: a replay
      [{ t: 'res.reserve', sku: 'tee', buyerId: 'b2', qty: 1, idemKey: 'k2', nonce: 'c002' }, T0 + 20], // k2 was dropped with ids[2]: created
      [{ t: 'res.pay', id: ids[1]! }, T0 + 21],
      [{ t: 'res.get', id: ids[0]! }, T0 + 22],
      [{ t: 'res.expire' }, T0 + 40 * SECOND],
      [{ t: 'res.get', id: ids[1]! }, T0 + 41 * SECOND],
    ];
    for (const [c, nowMs] of next) expect(apply(r, c, nowMs), JSON.stringify(c)).toEqual(apply(s, c, nowMs));
    expect(toSnapshot(r)).toEqual(toSnapshot(s));
    expect(s.settled.length).toBe(3);
  });

  test('a runtime reopened after drops has exactly the state it had, from its log alone or from a snapshot and the log after it', () => {
    for (const snapshotMidway of [false, true]) {
      const dir = mkdtempSync(join(tmpdir(), 'flash-retention-'));
      dirs.push(dir);
      const config: Partial<ShardConfig> = { settledReservationsMax: 3, idempotencyWindowMs: 5 * SECOND };
      const runtime = ShardRuntime.open({ dir, shardId: 0, shardCount: 1, config });
      runtime.execute([{ t: 'sku.upsert', sku: 'tee', stock: 100, holdSeconds: 2, maxPerBuyer: 4 }], T0);
      let clock = T0;
      const answers: Applied[] = [];
      for (let round = 0; round < 6; round++) {
        clock += 700;
        const batch: Command[] = [0, 1, 2].map((i) => ({
          t: 'res.reserve', sku: 'tee', buyerId: `b${i}`, qty: 1, nonce: `r${round}${i}`, ...(i === 0 ? { idemKey: `k${round % 2}` } : {}),
        }));
        const created = runtime.execute(batch, clock).filter((a) => a.outcome.ok && a.outcome.status === 'created' && !a.outcome.replayed);
        const ids = created.map((a) => okOf(a).reservation!.reservationId);
        const settles: Command[] = ids.map((id, i) => (i === 1 ? { t: 'res.pay', id } : { t: 'res.cancel', id }));
        answers.push(...runtime.execute([...settles.slice(0, 2), { t: 'res.expire' }], clock + 300));
        if (snapshotMidway && round === 2) runtime.snapshot();
      }
      expect(runtime.state.settled.length, 'drops happened').toBe(3);
      expect(answers.some((a) => a.outcome.ok && a.outcome.expired! > 0), 'res.expire expired holds').toBe(true);
      const live = toSnapshot(runtime.state);
      runtime.close();
      const reopened = ShardRuntime.open({ dir, shardId: 0, shardCount: 1, config });
      expect(reopened.recovery.commandsReplayed, `replayed commands (snapshot midway: ${snapshotMidway})`).toBeGreaterThan(0);
      expect(toSnapshot(reopened.state), `snapshot midway: ${snapshotMidway}`).toEqual(live);
      reopened.close();
    }
  });
});

describe('a reserve+cancel loop', () => {
  test('keeps the table and settled queue at the bound, and sheds the index garbage of keys and settled holds', () => {
    const max = 10;
    const s = shard({ settledReservationsMax: max }, { sku: 'tee', stock: 100, holdSeconds: 600 });
    const live = [0, 1, 2, 3, 4].map((i) => reserve(s, { buyerId: `live${i}`, idemKey: `live${i}` }));
    let biggest = { expiry: 0, keyQueue: 0, settledQueue: 0 };
    for (let i = 0; i < 20_000; i++) {
      const id = reserve(s, { buyerId: `b${i % 7}`, idemKey: i % 3 === 0 ? `k${i}` : undefined }, T0 + 1);
      okOf(apply(s, { t: 'res.cancel', id }, T0 + 1));
      biggest = {
        expiry: Math.max(biggest.expiry, s.expiry.size),
        keyQueue: Math.max(biggest.keyQueue, s.idempotencyQueue.length),
        settledQueue: Math.max(biggest.settledQueue, s.settled.length),
      };
    }
    expect(s.reservations.size).toBe(max + live.length);
    expect(biggest.settledQueue).toBe(max);
    expect(s.idempotency.size).toBeLessThanOrEqual(max + live.length);
    expect(biggest.keyQueue, 'key queue').toBeLessThanOrEqual(2 * (max + live.length) + 1025);
    expect(biggest.expiry, 'expiry heap').toBeLessThanOrEqual(2 * live.length + 1025);
    // Shedding lost no live hold or key: they expire on time, and their keys still replay.
    expect(okOf(apply(s, { t: 'res.reserve', sku: 'tee', buyerId: 'live0', qty: 1, idemKey: 'live0', nonce: 'zz' }, T0 + 2))).toMatchObject({ replayed: true, reservation: { reservationId: live[0] } });
    expect(okOf(apply(s, { t: 'res.expire' }, T0 + 600 * SECOND)).expired).toBe(live.length);
    expect(toSnapshot(restore(s))).toEqual(toSnapshot(s));
  });
});
