// Table-driven unit tests of res.reserve: the three deduction modes, stock, per-buyer and
// per-drop quotas, sale windows, risk rules, idempotency keys, capacity and reservation ids.

import { describe, expect, test } from 'vitest';
import {
  apply, createShardState, shardOfReservationId, toSnapshot,
  type Applied, type Command, type Mode, type ShardConfig, type ShardState, type SkuView,
} from '../src/domain/index.js';
import { okOf, codeOf, view, T0 } from './support/domain-kit.js';

type Upsert = Extract<Command, { t: 'sku.upsert' }>;
type Reserve = Extract<Command, { t: 'res.reserve' }>;

let nonceCounter = 0;
function nonce(): string {
  return (nonceCounter++ % 1_679_616).toString(36).padStart(4, '0');
}

/** A one-shard state with the given SKUs created at T0. */
function withSkus(skus: Omit<Upsert, 't'>[], config: Partial<ShardConfig> = {}): ShardState {
  const s = createShardState(0, 1, config);
  for (const sku of skus) okOf(apply(s, { t: 'sku.upsert', ...sku }, T0));
  return s;
}

function reserve(s: ShardState, c: Partial<Omit<Reserve, 't'>> & { sku: string }, nowMs = T0): Applied {
  return apply(s, { t: 'res.reserve', buyerId: 'ann', qty: 1, nonce: nonce(), ...c }, nowMs);
}

function reservationIdOf(a: Applied): string {
  return okOf(a).reservation!.reservationId;
}

describe('res.reserve in each mode', () => {
  const modes: { mode: Mode; reserved: number; available: number }[] = [
    { mode: 'pre_deduct', reserved: 2, available: 3 },
    { mode: 'on_order', reserved: 2, available: 3 },
    { mode: 'on_payment', reserved: 0, available: 5 },
  ];
  for (const { mode, reserved, available } of modes) test(`a ${mode} reservation answers created, and takes ${reserved} units into reserved`, () => {
    const s = withSkus([{ sku: 'tee', stock: 5, mode, holdSeconds: 30 }]);
    const a = reserve(s, { sku: 'tee', buyerId: 'ann', qty: 2 }, T0 + 7);
    expect(a.mutated).toBe(true);
    expect(okOf(a).status).toBe('created');
    expect(okOf(a).replayed).toBeUndefined();
    expect(okOf(a).reservation).toMatchObject({
      sku: 'tee', buyerId: 'ann', qty: 2, status: 'held', mode, createdAt: T0 + 7, expiresAt: T0 + 7 + 30_000,
    });
    expect(view(s, 'tee')).toMatchObject({ onHand: 5, reserved, sold: 0, available });
    const id = reservationIdOf(a);
    expect(okOf(apply(s, { t: 'res.get', id }, T0 + 8)).reservation).toEqual(okOf(a).reservation);
  });

  test('an on_payment reservation holds nothing but is refused sold_out when too few units are available', () => {
    const s = withSkus([{ sku: 'tee', stock: 2, mode: 'on_payment' }]);
    expect(codeOf(reserve(s, { sku: 'tee', qty: 3 }))).toBe('sold_out');
    expect(codeOf(reserve(s, { sku: 'tee', qty: 2 }))).toBe('ok');
    expect(codeOf(reserve(s, { sku: 'tee', buyerId: 'bob', qty: 2 }))).toBe('ok'); // nothing was held
  });

  test('an on_payment reservation counts against the buyer quota', () => {
    const s = withSkus([{ sku: 'tee', stock: 10, mode: 'on_payment', maxPerBuyer: 2 }]);
    expect(codeOf(reserve(s, { sku: 'tee', qty: 2 }))).toBe('ok');
    expect(codeOf(reserve(s, { sku: 'tee', qty: 1 }))).toBe('quota_exceeded');
  });
});

describe('res.reserve refusals', () => {
  interface Case {
    name: string;
    skus: Omit<Upsert, 't'>[];
    /** Earlier reserves, all of which must succeed. */
    before?: Partial<Omit<Reserve, 't'>>[];
    command: Partial<Omit<Reserve, 't'>>;
    nowMs?: number;
    code: string;
  }
  const tee = { sku: 'tee', stock: 5 };
  const cases: Case[] = [
    { name: 'more units than are available is refused sold_out', skus: [tee], command: { qty: 6 }, code: 'sold_out' },
    { name: 'exactly the available units is accepted', skus: [tee], command: { qty: 5 }, code: 'ok' },
    { name: 'a unit after the last one was taken is refused sold_out', skus: [tee], before: [{ qty: 5, buyerId: 'bob' }], command: { qty: 1 }, code: 'sold_out' },
    { name: 'a SKU with no stock is refused sold_out', skus: [{ sku: 'tee' }], command: {}, code: 'sold_out' },
    { name: 'an unknown SKU is refused unknown_sku', skus: [tee], command: { sku: 'nope' }, code: 'unknown_sku' },
    { name: 'more than maxPerBuyer in one reservation is refused quota_exceeded', skus: [{ ...tee, maxPerBuyer: 2 }], command: { qty: 3 }, code: 'quota_exceeded' },
    { name: 'passing maxPerBuyer across reservations is refused quota_exceeded', skus: [{ ...tee, maxPerBuyer: 2 }], before: [{ qty: 1 }, { qty: 1 }], command: { qty: 1 }, code: 'quota_exceeded' },
    { name: 'reaching maxPerBuyer exactly is accepted', skus: [{ ...tee, maxPerBuyer: 2 }], before: [{ qty: 1 }], command: { qty: 1 }, code: 'ok' },
    { name: 'another buyer has a quota of their own', skus: [{ ...tee, maxPerBuyer: 2 }], before: [{ qty: 2 }], command: { buyerId: 'bob', qty: 2 }, code: 'ok' },
    { name: 'maxPerBuyer 0 means no limit', skus: [{ ...tee, maxPerBuyer: 0 }], before: [{ qty: 4 }], command: { qty: 1 }, code: 'ok' },
    { name: 'quota is checked before stock, so a buyer over quota hears quota_exceeded', skus: [{ ...tee, maxPerBuyer: 1 }], command: { qty: 6 }, code: 'quota_exceeded' },
    { name: 'SKUs of one drop share the quota: a second SKU of the drop sees the first one\'s units', skus: [{ sku: 'x', stock: 5, dropId: 'd', maxPerBuyer: 3 }, { sku: 'y', stock: 5, dropId: 'd', maxPerBuyer: 3 }], before: [{ sku: 'x', qty: 2 }], command: { sku: 'y', qty: 2 }, code: 'quota_exceeded' },
    { name: 'SKUs of one drop share the quota: the rest of it can be taken on the other SKU', skus: [{ sku: 'x', stock: 5, dropId: 'd', maxPerBuyer: 3 }, { sku: 'y', stock: 5, dropId: 'd', maxPerBuyer: 3 }], before: [{ sku: 'x', qty: 2 }], command: { sku: 'y', qty: 1 }, code: 'ok' },
    { name: 'SKUs of different drops do not share a quota', skus: [{ sku: 'x', stock: 5, dropId: 'd', maxPerBuyer: 3 }, { sku: 'y', stock: 5, dropId: 'e', maxPerBuyer: 3 }], before: [{ sku: 'x', qty: 3 }], command: { sku: 'y', qty: 3 }, code: 'ok' },
    { name: 'a SKU without a drop does not share a quota with a drop', skus: [{ sku: 'x', stock: 5, dropId: 'd', maxPerBuyer: 3 }, { sku: 'y', stock: 5, maxPerBuyer: 3 }], before: [{ sku: 'x', qty: 3 }], command: { sku: 'y', qty: 3 }, code: 'ok' },
    { name: 'a reserve before startsAt is refused not_on_sale', skus: [{ ...tee, startsAtMs: T0 + 1000 }], command: {}, nowMs: T0 + 999, code: 'not_on_sale' },
    { name: 'a reserve at startsAt is accepted', skus: [{ ...tee, startsAtMs: T0 + 1000 }], command: {}, nowMs: T0 + 1000, code: 'ok' },
    { name: 'a reserve just before endsAt is accepted', skus: [{ ...tee, endsAtMs: T0 + 2000 }], command: {}, nowMs: T0 + 1999, code: 'ok' },
    { name: 'a reserve at endsAt is refused not_on_sale', skus: [{ ...tee, endsAtMs: T0 + 2000 }], command: {}, nowMs: T0 + 2000, code: 'not_on_sale' },
    { name: 'a reserve after endsAt is refused not_on_sale', skus: [{ ...tee, startsAtMs: T0 - 10, endsAtMs: T0 + 2000 }], command: {}, nowMs: T0 + 9000, code: 'not_on_sale' },
    { name: 'the sale window is checked before stock', skus: [{ sku: 'tee', endsAtMs: T0 + 1 }], command: {}, nowMs: T0 + 1, code: 'not_on_sale' },
    { name: 'a buyer with no account-age signal is refused buyer_blocked when the rule is on', skus: [{ ...tee, minAccountAgeSeconds: 3600 }], command: {}, code: 'buyer_blocked' },
    { name: 'an account younger than minAccountAgeSeconds is refused buyer_blocked', skus: [{ ...tee, minAccountAgeSeconds: 3600 }], command: { accountCreatedAtMs: T0 - 3_599_999 }, code: 'buyer_blocked' },
    { name: 'an account exactly minAccountAgeSeconds old is accepted', skus: [{ ...tee, minAccountAgeSeconds: 3600 }], command: { accountCreatedAtMs: T0 - 3_600_000 }, code: 'ok' },
    { name: 'an account created in the future is refused buyer_blocked', skus: [{ ...tee, minAccountAgeSeconds: 1 }], command: { accountCreatedAtMs: T0 + 50_000 }, code: 'buyer_blocked' },
    { name: 'a buyer with no past-orders signal is refused buyer_blocked when the rule is on', skus: [{ ...tee, minPastOrders: 2 }], command: {}, code: 'buyer_blocked' },
    { name: 'a buyer with too few past orders is refused buyer_blocked', skus: [{ ...tee, minPastOrders: 2 }], command: { pastOrders: 1 }, code: 'buyer_blocked' },
    { name: 'a buyer with enough past orders is accepted', skus: [{ ...tee, minPastOrders: 2 }], command: { pastOrders: 2 }, code: 'ok' },
    { name: 'both risk rules must pass', skus: [{ ...tee, minPastOrders: 2, minAccountAgeSeconds: 60 }], command: { pastOrders: 5 }, code: 'buyer_blocked' },
    { name: 'risk rules that are off ignore missing signals', skus: [tee], command: { accountCreatedAtMs: T0, pastOrders: 0 }, code: 'ok' },
  ];
  for (const { name, skus, before = [], command, nowMs = T0, code } of cases) test(name, () => {
    const s = withSkus(skus);
    for (const c of before) okOf(reserve(s, { sku: 'tee', ...c }, nowMs));
    const snapshot = toSnapshot(s);
    const a = reserve(s, { sku: 'tee', ...command }, nowMs);
    expect(codeOf(a)).toBe(code);
    if (code !== 'ok') {
      expect(a.mutated).toBe(false);
      expect(toSnapshot(s)).toEqual(snapshot);
    }
  });

  test('a cancelled reservation gives its quota back, also across the SKUs of a drop', () => {
    const s = withSkus([{ sku: 'x', stock: 5, dropId: 'd', maxPerBuyer: 2 }, { sku: 'y', stock: 5, dropId: 'd', maxPerBuyer: 2 }]);
    const id = reservationIdOf(reserve(s, { sku: 'x', qty: 2 }));
    expect(codeOf(reserve(s, { sku: 'y' }))).toBe('quota_exceeded');
    okOf(apply(s, { t: 'res.cancel', id }, T0));
    expect(codeOf(reserve(s, { sku: 'y', qty: 2 }))).toBe('ok');
  });

  test('a paid reservation keeps counting against the quota', () => {
    const s = withSkus([{ sku: 'tee', stock: 5, maxPerBuyer: 2 }]);
    const id = reservationIdOf(reserve(s, { sku: 'tee', qty: 2 }));
    okOf(apply(s, { t: 'res.pay', id }, T0));
    expect(codeOf(reserve(s, { sku: 'tee', qty: 1 }))).toBe('quota_exceeded');
  });
});

describe('res.reserve input the gateway should have refused', () => {
  test('a qty that is not a whole number in 1..1000 is refused invalid_request and changes nothing (regression: accepted, or thrown after a partial change)', () => {
    // applyReserve never checked qty: 0 made a 0-unit reservation, and -1 or 1.5 passed
    // every check, changed seq, reserved, quotas and the expiry heap, then threw. The guard
    // in apply() now refuses them before any state is touched.
    for (const qty of [0, -1, 1.5, 1001, Number.NaN]) {
      const s = withSkus([{ sku: 'tee', stock: 5000 }]);
      const before = toSnapshot(s);
      let a: Applied | undefined;
      expect(() => { a = reserve(s, { sku: 'tee', qty }); }, `qty ${qty}`).not.toThrow();
      expect(a!.outcome, `qty ${qty}`).toMatchObject({ ok: false, code: 'invalid_request', message: 'qty must be an integer in 1..1000' });
      expect(a!.mutated, `qty ${qty}`).toBe(false);
      expect(toSnapshot(s), `qty ${qty}`).toEqual(before);
    }
    for (const qty of [1, 1000]) {
      const s = withSkus([{ sku: 'tee', stock: 5000 }]);
      expect(okOf(reserve(s, { sku: 'tee', qty })).reservation?.qty).toBe(qty);
      expect(view(s, 'tee')).toMatchObject({ reserved: qty, available: 5000 - qty });
    }
  });

  test('a nonce longer than 8 characters, or not of [0-9a-z], is refused invalid_request and changes nothing', () => {
    for (const nonce of ['123456789', 'abcdefghijkl', 'ABCD', 'ab_c']) {
      const s = withSkus([{ sku: 'tee', stock: 5 }]);
      const before = toSnapshot(s);
      const a = reserve(s, { sku: 'tee', nonce });
      expect(codeOf(a), nonce).toBe('invalid_request');
      expect(a.mutated, nonce).toBe(false);
      expect(toSnapshot(s), nonce).toEqual(before);
    }
  });
});

describe('res.reserve idempotency keys', () => {
  function first(): { s: ShardState; a: Applied } {
    const s = withSkus([
      { sku: 'tee', stock: 5, dropId: 'spring' }, { sku: 'hat', stock: 5, dropId: 'spring' },
      { sku: 'cap', stock: 5 }, { sku: 'bag', stock: 5, dropId: 'autumn' },
    ]);
    const a = reserve(s, { sku: 'tee', buyerId: 'ann', qty: 2, idemKey: 'k1' });
    expect(okOf(a).replayed).toBeUndefined();
    return { s, a };
  }

  test('the same key from the same buyer returns the first reservation again, replayed, and holds nothing more', () => {
    const { s, a } = first();
    const before = toSnapshot(s);
    const again = reserve(s, { sku: 'tee', buyerId: 'ann', qty: 2, idemKey: 'k1' }, T0 + 1000);
    expect(again.mutated).toBe(false);
    expect(again.outcome).toEqual({ ok: true, status: 'created', reservation: okOf(a).reservation, replayed: true });
    expect(view(s, 'tee')).toMatchObject({ reserved: 2, available: 3 });
    expect(toSnapshot(s)).toEqual(before);
  });

  const conflicts: { name: string; command: Partial<Omit<Reserve, 't'>>; code: string }[] = [
    { name: 'the same key with another qty answers the first reservation (API.md), holding nothing more', command: { sku: 'tee', qty: 1 }, code: 'replayed' },
    { name: 'the same key with another SKU of the same drop answers the first reservation, holding nothing more', command: { sku: 'hat', qty: 2 }, code: 'replayed' },
    { name: 'the same key with a SKU outside the drop is a separate request', command: { sku: 'cap', qty: 2 }, code: 'ok' },
    { name: 'the same key with a SKU of another drop is a separate request', command: { sku: 'bag', qty: 2 }, code: 'ok' },
    { name: 'the same key from another buyer is independent', command: { sku: 'tee', qty: 2, buyerId: 'bob' }, code: 'ok' },
    { name: 'another key from the same buyer makes a new reservation', command: { sku: 'tee', qty: 2, idemKey: 'k2' }, code: 'ok' },
  ];
  for (const { name, command, code } of conflicts) test(name, () => {
    const { s, a: made } = first();
    const a = reserve(s, { buyerId: 'ann', idemKey: 'k1', ...command, sku: command.sku ?? 'tee' });
    if (code === 'replayed') {
      expect(a.mutated).toBe(false);
      expect(a.outcome).toEqual({ ok: true, status: 'created', reservation: okOf(made).reservation, replayed: true });
    } else expect(codeOf(a)).toBe(code);
    if (code === 'ok') expect(okOf(a).replayed).toBeUndefined();
    const sku = command.sku ?? 'tee';
    expect(view(s, 'tee').reserved + (sku === 'tee' ? 0 : view(s, sku).reserved)).toBe(code === 'ok' ? 4 : 2);
  });

  test('a refused attempt is not remembered: a retry with the same key after a restock succeeds', () => {
    const s = withSkus([{ sku: 'tee', stock: 0 }]);
    expect(codeOf(reserve(s, { sku: 'tee', idemKey: 'k1' }))).toBe('sold_out');
    okOf(apply(s, { t: 'sku.adjust', sku: 'tee', delta: 1 }, T0));
    const retry = reserve(s, { sku: 'tee', idemKey: 'k1' });
    expect(okOf(retry).status).toBe('created');
    expect(okOf(retry).replayed).toBeUndefined();
    expect(retry.mutated).toBe(true);
  });

  test('a replay is answered even after the sale window closed, and shows the reservation as it is now', () => {
    const { s, a } = first();
    okOf(apply(s, { t: 'sku.upsert', sku: 'tee', endsAtMs: T0 + 10 }, T0));
    okOf(apply(s, { t: 'res.pay', id: reservationIdOf(a) }, T0 + 5));
    const again = reserve(s, { sku: 'tee', buyerId: 'ann', qty: 2, idemKey: 'k1' }, T0 + 50);
    expect(okOf(again)).toMatchObject({ replayed: true, reservation: { reservationId: reservationIdOf(a), status: 'paid' } });
  });

  test('the oldest keys are forgotten first past idempotencyKeysMax', () => {
    const s = withSkus([{ sku: 'tee', stock: 10 }], { idempotencyKeysMax: 2 });
    const ids = ['k1', 'k2', 'k3'].map((k) => reservationIdOf(reserve(s, { sku: 'tee', idemKey: k })));
    expect(okOf(reserve(s, { sku: 'tee', idemKey: 'k3' })).reservation?.reservationId).toBe(ids[2]);
    expect(okOf(reserve(s, { sku: 'tee', idemKey: 'k2' })).reservation?.reservationId).toBe(ids[1]);
    const k1 = reserve(s, { sku: 'tee', idemKey: 'k1' });
    expect(okOf(k1).replayed).toBeUndefined();
    expect(okOf(k1).reservation?.reservationId).not.toBe(ids[0]);
  });
});

describe('res.reserve capacity and ids', () => {
  test('a reserve past liveReservationsMax is refused shard_full until a hold settles', () => {
    const s = withSkus([{ sku: 'tee', stock: 10 }], { liveReservationsMax: 2 });
    const first = reservationIdOf(reserve(s, { sku: 'tee' }));
    okOf(reserve(s, { sku: 'tee' }));
    const full = reserve(s, { sku: 'tee' });
    expect(codeOf(full)).toBe('shard_full');
    expect(full.mutated).toBe(false);
    okOf(apply(s, { t: 'res.pay', id: first }, T0));
    expect(codeOf(reserve(s, { sku: 'tee' }))).toBe('ok');
  });

  test('on_payment holds count as live reservations', () => {
    const s = withSkus([{ sku: 'tee', stock: 10, mode: 'on_payment' }], { liveReservationsMax: 1 });
    okOf(reserve(s, { sku: 'tee' }));
    expect(codeOf(reserve(s, { sku: 'tee' }))).toBe('shard_full');
  });

  test('reservation ids name their shard and never repeat', () => {
    const s = createShardState(7, 9);
    // The drop routes this SKU to shard 7 of 9 whatever its name.
    let dropId = '';
    for (let i = 0; ; i++) {
      dropId = `drop-${i}`;
      if (codeOf(apply(createShardState(7, 9), { t: 'sku.upsert', sku: 'tee', dropId }, T0)) === 'ok') break;
    }
    okOf(apply(s, { t: 'sku.upsert', sku: 'tee', stock: 100, dropId }, T0));
    const ids = new Set<string>();
    for (let i = 0; i < 50; i++) {
      const id = reservationIdOf(reserve(s, { sku: 'tee', buyerId: `b${i}`, nonce: 'q7x2' }));
      expect(shardOfReservationId(id, 9)).toBe(7);
      ids.add(id);
    }
    expect(ids.size).toBe(50);
  });

  test('a reservation id is the shard, the seq in base 36 and the nonce zero-padded to 8 characters', () => {
    const s = withSkus([{ sku: 'tee', stock: 100 }]);
    const nonces = ['', '0', 'q', 'abc', 'zzzz', '1234567', 'z9y8x7w6'];
    nonces.forEach((nonce, i) => {
      expect(reservationIdOf(reserve(s, { sku: 'tee', nonce }))).toBe(`0.${(i + 1).toString(36)}${nonce.padStart(8, '0')}`);
    });
  });

  test('reservations whose nonces differ in length never collide (regression: ids were ambiguous and the core threw)', () => {
    // Unpadded, seq 1 with nonce "0" and seq 36 with nonce "" both spelled "0.10", and
    // applyReserve threw an InvariantError on a valid command. Nonces are now padded to 8.
    const s = withSkus([{ sku: 'tee', stock: 100 }]);
    const ids = new Set<string>();
    ids.add(reservationIdOf(reserve(s, { sku: 'tee', nonce: '0' })));
    for (let seq = 2; seq < 36; seq++) ids.add(reservationIdOf(reserve(s, { sku: 'tee', nonce: 'zz' })));
    let last: Applied | undefined;
    expect(() => { last = reserve(s, { sku: 'tee', nonce: '' }); }).not.toThrow();
    ids.add(reservationIdOf(last!));
    expect(ids.size).toBe(36);
    expect([...ids][0]).toBe('0.100000000');
    expect(reservationIdOf(last!)).toBe('0.1000000000');
  });
});
