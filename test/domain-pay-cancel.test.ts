// Table-driven unit tests of res.pay, res.cancel and res.get: every status a reservation can
// be in when it is paid or cancelled, late payment after a hold lapsed, and what each
// transition does to the SKU's counters and the buyer's quota.

import { describe, expect, test } from 'vitest';
import {
  apply, createShardState, toSnapshot,
  type Applied, type Mode, type ShardState, type SkuView,
} from '../src/domain/index.js';
import { okOf, codeOf, view, T0 } from './support/domain-kit.js';

const HOLD_MS = 10_000;

/** Stock 5 and a quota of 2 per buyer; ann holds 2 units, expiring at T0 + HOLD_MS. */
function held(mode: Mode = 'pre_deduct'): { s: ShardState; id: string } {
  const s = createShardState(0, 1);
  okOf(apply(s, { t: 'sku.upsert', sku: 'tee', stock: 5, mode, holdSeconds: HOLD_MS / 1000, maxPerBuyer: 2 }, T0));
  const a = apply(s, { t: 'res.reserve', sku: 'tee', buyerId: 'ann', qty: 2, nonce: 'an00' }, T0);
  return { s, id: okOf(a).reservation!.reservationId };
}

function statusOf(s: ShardState, id: string): string {
  return okOf(apply(s, { t: 'res.get', id }, 0)).reservation!.status;
}

function canReserve(s: ShardState, buyerId: string, qty: number, nowMs: number): string {
  return codeOf(apply(s, { t: 'res.reserve', sku: 'tee', buyerId, qty, nonce: 'zz99' }, nowMs));
}

describe('res.pay', () => {
  const holding: { mode: Mode }[] = [{ mode: 'pre_deduct' }, { mode: 'on_order' }, { mode: 'on_payment' }];
  for (const { mode } of holding) {
    test(`paying a held ${mode} reservation makes it paid, moves its units to sold and keeps the paymentRef`, () => {
      const { s, id } = held(mode);
      const a = apply(s, { t: 'res.pay', id, paymentRef: 'pi_42' }, T0 + 500);
      expect(a.mutated).toBe(true);
      expect(a.outcome).toEqual({
        ok: true, status: 'ok',
        reservation: {
          reservationId: id, sku: 'tee', buyerId: 'ann', qty: 2, channel: 'default', status: 'paid', mode, createdAt: T0,
          expiresAt: T0 + HOLD_MS, paidAt: T0 + 500, paymentRef: 'pi_42',
        },
      });
      expect(view(s, 'tee')).toMatchObject({ onHand: 5, reserved: 0, sold: 2, available: 3 });
      expect(okOf(apply(s, { t: 'res.get', id }, 0)).reservation).toEqual(okOf(a).reservation);
    });
  }

  test('paying without a paymentRef leaves it out of the view', () => {
    const { s, id } = held();
    expect(okOf(apply(s, { t: 'res.pay', id }, T0)).reservation).not.toHaveProperty('paymentRef');
  });

  test('paying again answers the same paid reservation, replayed, and changes nothing', () => {
    const { s, id } = held();
    const first = okOf(apply(s, { t: 'res.pay', id, paymentRef: 'pi_1' }, T0 + 1));
    const before = toSnapshot(s);
    const again = apply(s, { t: 'res.pay', id, paymentRef: 'pi_2' }, T0 + HOLD_MS * 3);
    expect(again).toEqual({ outcome: { ...first, replayed: true }, mutated: false, events: null });
    expect(toSnapshot(s)).toEqual(before);
  });

  interface Refusal { name: string; prepare: (s: ShardState, id: string) => void; payAtMs: number; code: string; mutated: boolean; status: string }
  const refusals: Refusal[] = [
    { name: 'paying a cancelled reservation is refused reservation_cancelled', prepare: (s, id) => okOf(apply(s, { t: 'res.cancel', id }, T0 + 1)), payAtMs: T0 + 2, code: 'reservation_cancelled', mutated: false, status: 'cancelled' },
    { name: 'paying a reservation already swept as expired is refused reservation_expired', prepare: (s) => okOf(apply(s, { t: 'res.expire' }, T0 + HOLD_MS)), payAtMs: T0 + HOLD_MS + 1, code: 'reservation_expired', mutated: false, status: 'expired' },
    { name: 'paying exactly at expiresAt expires the hold and is refused reservation_expired', prepare: () => {}, payAtMs: T0 + HOLD_MS, code: 'reservation_expired', mutated: true, status: 'expired' },
    { name: 'paying long after expiresAt, before any sweep, expires the hold and is refused reservation_expired', prepare: () => {}, payAtMs: T0 + HOLD_MS * 100, code: 'reservation_expired', mutated: true, status: 'expired' },
    { name: 'paying a lapsed hold is refused even when the units are still there after a restock', prepare: (s) => okOf(apply(s, { t: 'sku.adjust', sku: 'tee', delta: 100 }, T0 + 1)), payAtMs: T0 + HOLD_MS + 1, code: 'reservation_expired', mutated: true, status: 'expired' },
  ];
  for (const { name, prepare, payAtMs, code, mutated, status } of refusals) test(name, () => {
    const { s, id } = held();
    prepare(s, id);
    const a = apply(s, { t: 'res.pay', id, paymentRef: 'late' }, payAtMs);
    expect(codeOf(a)).toBe(code);
    expect(a.mutated).toBe(mutated);
    expect(statusOf(s, id)).toBe(status);
    expect(view(s, 'tee')).toMatchObject({ reserved: 0, sold: 0 });
    expect(okOf(apply(s, { t: 'res.get', id }, 0)).reservation).not.toHaveProperty('paymentRef');
  });

  test('a hold expired by a late pay gives back its units and quota, and a second pay is still refused', () => {
    const { s, id } = held();
    const late = apply(s, { t: 'res.pay', id }, T0 + HOLD_MS);
    expect(okOf(apply(s, { t: 'res.get', id }, 0)).reservation).toMatchObject({ status: 'expired', expiredAt: T0 + HOLD_MS });
    expect(late.events).toBeNull();
    expect(view(s, 'tee')).toMatchObject({ reserved: 0, available: 5 });
    expect(canReserve(s, 'ann', 2, T0 + HOLD_MS)).toBe('ok');
    const again = apply(s, { t: 'res.pay', id }, T0 + HOLD_MS + 1);
    expect(codeOf(again)).toBe('reservation_expired');
    expect(again.mutated).toBe(false);
  });

  test('paying an on_payment reservation when too few units are left is refused sold_out and leaves it held', () => {
    const { s, id } = held('on_payment');
    const other = okOf(apply(s, { t: 'res.reserve', sku: 'tee', buyerId: 'bob', qty: 2, nonce: 'bb00' }, T0)).reservation!.reservationId;
    okOf(apply(s, { t: 'sku.adjust', sku: 'tee', delta: -2 }, T0)); // 3 left, both reservations want 2
    okOf(apply(s, { t: 'res.pay', id: other }, T0 + 1));
    const before = toSnapshot(s);
    const a = apply(s, { t: 'res.pay', id }, T0 + 2);
    expect(codeOf(a)).toBe('sold_out');
    expect(a.mutated).toBe(false);
    expect(toSnapshot(s)).toEqual(before);
    expect(statusOf(s, id)).toBe('held');
    expect(view(s, 'tee')).toMatchObject({ onHand: 3, reserved: 0, sold: 2, available: 1 });
    okOf(apply(s, { t: 'sku.adjust', sku: 'tee', delta: 1 }, T0 + 3));
    expect(codeOf(apply(s, { t: 'res.pay', id }, T0 + 4))).toBe('ok');
    expect(view(s, 'tee')).toMatchObject({ sold: 4, available: 0 });
  });

  test('paying an id this shard never issued is refused unknown_reservation', () => {
    const { s, id: issued } = held();
    expect(issued).toBe('0.10000an00'); // seq 1, nonce "an00" padded to 8
    // '0.1an00' is the same reservation spelled without the padding: not one of our ids.
    for (const id of ['0.zzzzzzzz', '1.1an00', '0.1an00', 'nonsense', '']) {
      const a = apply(s, { t: 'res.pay', id }, T0);
      expect(codeOf(a)).toBe('unknown_reservation');
      expect(a.mutated).toBe(false);
    }
  });
});

describe('res.cancel', () => {
  for (const { mode, availableHeld } of [
    { mode: 'pre_deduct' as Mode, availableHeld: 3 },
    { mode: 'on_order' as Mode, availableHeld: 3 },
    { mode: 'on_payment' as Mode, availableHeld: 5 },
  ]) {
    test(`cancelling a held ${mode} reservation releases its units and the buyer's quota`, () => {
      const { s, id } = held(mode);
      expect(view(s, 'tee').available).toBe(availableHeld);
      expect(canReserve(s, 'ann', 1, T0)).toBe('quota_exceeded');
      const a = apply(s, { t: 'res.cancel', id }, T0 + 100);
      expect(a.mutated).toBe(true);
      expect(okOf(a)).toMatchObject({ status: 'ok', reservation: { reservationId: id, status: 'cancelled', cancelledAt: T0 + 100 } });
      expect(view(s, 'tee')).toMatchObject({ reserved: 0, sold: 0, available: 5 });
      expect(canReserve(s, 'ann', 2, T0 + 100)).toBe('ok');
    });
  }

  interface Case { name: string; prepare: (s: ShardState, id: string) => void; cancelAtMs: number; code: string; status: string; mutated: boolean; replayed?: boolean }
  const cases: Case[] = [
    { name: 'cancelling again answers ok, replayed, and changes nothing', prepare: (s, id) => okOf(apply(s, { t: 'res.cancel', id }, T0 + 1)), cancelAtMs: T0 + 2, code: 'ok', status: 'cancelled', mutated: false, replayed: true },
    { name: 'cancelling a paid reservation is refused already_paid', prepare: (s, id) => okOf(apply(s, { t: 'res.pay', id }, T0 + 1)), cancelAtMs: T0 + 2, code: 'already_paid', status: 'paid', mutated: false },
    { name: 'cancelling a hold already swept as expired answers ok with status expired', prepare: (s) => okOf(apply(s, { t: 'res.expire' }, T0 + HOLD_MS)), cancelAtMs: T0 + HOLD_MS + 5, code: 'ok', status: 'expired', mutated: false, replayed: true },
    { name: 'cancelling a hold that is due but not yet swept expires it and answers ok with status expired', prepare: () => {}, cancelAtMs: T0 + HOLD_MS, code: 'ok', status: 'expired', mutated: true },
  ];
  for (const { name, prepare, cancelAtMs, code, status, mutated, replayed } of cases) test(name, () => {
    const { s, id } = held();
    prepare(s, id);
    const before = toSnapshot(s);
    const a = apply(s, { t: 'res.cancel', id }, cancelAtMs);
    expect(codeOf(a)).toBe(code);
    expect(a.mutated).toBe(mutated);
    if (a.outcome.ok) {
      expect(a.outcome.reservation?.status).toBe(status);
      expect(a.outcome.replayed).toBe(replayed);
    }
    expect(statusOf(s, id)).toBe(status);
    if (!mutated) expect(toSnapshot(s)).toEqual(before);
  });

  test('a hold expired by a late cancel gives back its units and quota', () => {
    const { s, id } = held();
    okOf(apply(s, { t: 'res.cancel', id }, T0 + HOLD_MS + 1));
    expect(okOf(apply(s, { t: 'res.get', id }, 0)).reservation).toMatchObject({ status: 'expired', expiredAt: T0 + HOLD_MS + 1 });
    expect(view(s, 'tee')).toMatchObject({ reserved: 0, available: 5 });
    expect(canReserve(s, 'ann', 2, T0 + HOLD_MS + 1)).toBe('ok');
  });

  test('cancelling an id this shard never issued is refused unknown_reservation', () => {
    const { s } = held();
    const a = apply(s, { t: 'res.cancel', id: '0.nothere' }, T0);
    expect(codeOf(a)).toBe('unknown_reservation');
    expect(a.mutated).toBe(false);
  });
});

describe('res.get', () => {
  test('reading a reservation answers its view, changes nothing, and does not expire a due hold', () => {
    const { s, id } = held();
    const before = toSnapshot(s);
    const a = apply(s, { t: 'res.get', id }, T0 + HOLD_MS * 2);
    expect(a.mutated).toBe(false);
    expect(okOf(a).reservation).toMatchObject({ reservationId: id, status: 'held' });
    expect(toSnapshot(s)).toEqual(before);
  });

  test('reading an unknown id answers unknown_reservation', () => {
    expect(codeOf(apply(createShardState(0, 1), { t: 'res.get', id: '0.1abc' }, T0))).toBe('unknown_reservation');
  });
});
