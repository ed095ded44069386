// Unit tests of the shard's housekeeping command res.expire: which holds it expires and in
// what order, its batch bound, what it gives back, how idempotency keys and settled
// reservations are pruned, and the helpers that tell an adapter when it is due.

import { describe, expect, test } from 'vitest';
import {
  apply, createShardState, housekeepingDue, nextExpiryAtMs, toSnapshot,
  type Applied, type Command, type ShardConfig, type ShardState, type SkuView,
} from '../src/domain/index.js';
import { okOf, codeOf, view, T0 } from './support/domain-kit.js';

const SECOND = 1000;

function statusOf(s: ShardState, id: string): string {
  const a = apply(s, { t: 'res.get', id }, 0);
  return a.outcome.ok ? a.outcome.reservation!.status : a.outcome.code;
}

function shardWith(config: Partial<ShardConfig>, sku: Omit<Extract<Command, { t: 'sku.upsert' }>, 't'>): ShardState {
  const s = createShardState(0, 1, config);
  okOf(apply(s, { t: 'sku.upsert', ...sku }, T0));
  return s;
}

let nonceCounter = 0;
function reserve(s: ShardState, opts: { buyerId?: string; qty?: number; idemKey?: string; holdSeconds?: number }, nowMs = T0): string {
  if (opts.holdSeconds !== undefined) okOf(apply(s, { t: 'sku.upsert', sku: 'tee', holdSeconds: opts.holdSeconds }, nowMs));
  const c: Command = {
    t: 'res.reserve', sku: 'tee', buyerId: opts.buyerId ?? 'ann', qty: opts.qty ?? 1,
    nonce: (nonceCounter++ % 1_679_616).toString(36).padStart(4, '0'),
  };
  if (opts.idemKey !== undefined) c.idemKey = opts.idemKey;
  return okOf(apply(s, c, nowMs)).reservation!.reservationId;
}

function expire(s: ShardState, nowMs: number): Applied {
  return apply(s, { t: 'res.expire' }, nowMs);
}

describe('res.expire of holds', () => {
  /** Five holds made at T0, due at 30 s, 10 s, 20 s, 10 s and 100 s (in seq order). */
  function fiveHolds(config: Partial<ShardConfig> = {}): { s: ShardState; ids: string[] } {
    const s = shardWith(config, { sku: 'tee', stock: 20 });
    const ids = [30, 10, 20, 10, 100].map((holdSeconds, i) => reserve(s, { buyerId: `b${i}`, holdSeconds }));
    return { s, ids };
  }

  test('holds expire in (expiresAt, seq) order, at most expireBatchMax per command', () => {
    const { s, ids } = fiveHolds({ expireBatchMax: 1 });
    const order: string[] = [];
    for (let i = 0; i < 5; i++) {
      const a = expire(s, T0 + 30 * SECOND);
      const expiredNow = ids.filter((id) => statusOf(s, id) === 'expired' && !order.includes(id));
      expect(okOf(a).expired).toBe(expiredNow.length);
      order.push(...expiredNow);
    }
    expect(order).toEqual([ids[1], ids[3], ids[2], ids[0]]);
    expect(statusOf(s, ids[4]!)).toBe('held');
  });

  test('one command expires every due hold when the batch bound allows, and answers how many', () => {
    const { s, ids } = fiveHolds();
    const a = expire(s, T0 + 20 * SECOND);
    expect(a.mutated).toBe(true);
    expect(okOf(a)).toEqual({ ok: true, status: 'ok', expired: 3 });
    expect(ids.map((id) => statusOf(s, id))).toEqual(['held', 'expired', 'expired', 'expired', 'held']);
    expect(okOf(apply(s, { t: 'res.get', id: ids[1]! }, 0)).reservation?.expiredAt).toBe(T0 + 20 * SECOND);
  });

  test('a hold is due at expiresAt exactly, not a millisecond before', () => {
    const { s, ids } = fiveHolds();
    expect(okOf(expire(s, T0 + 10 * SECOND - 1)).expired).toBe(0);
    expect(okOf(expire(s, T0 + 10 * SECOND)).expired).toBe(2);
    expect(statusOf(s, ids[1]!)).toBe('expired');
  });

  test('a command with nothing due answers expired 0 and changes nothing', () => {
    const { s } = fiveHolds();
    const before = toSnapshot(s);
    const a = expire(s, T0 + 1);
    expect(a).toEqual({ outcome: { ok: true, status: 'ok', expired: 0 }, mutated: false, events: null });
    expect(toSnapshot(s)).toEqual(before);
  });

  test('expiry gives back the held units and the buyer quota', () => {
    const s = shardWith({}, { sku: 'tee', stock: 3, maxPerBuyer: 3, holdSeconds: 5 });
    reserve(s, { qty: 3 });
    expect(view(s, 'tee')).toMatchObject({ reserved: 3, available: 0 });
    expect(okOf(expire(s, T0 + 5 * SECOND)).expired).toBe(1);
    expect(view(s, 'tee')).toMatchObject({ reserved: 0, available: 3, sold: 0 });
    reserve(s, { qty: 3 }, T0 + 5 * SECOND);
  });

  test('expiry of an on_payment hold gives back the quota and no units', () => {
    const s = shardWith({}, { sku: 'tee', stock: 3, maxPerBuyer: 1, holdSeconds: 5, mode: 'on_payment' });
    reserve(s, {});
    expect(okOf(expire(s, T0 + 5 * SECOND)).expired).toBe(1);
    expect(view(s, 'tee')).toMatchObject({ reserved: 0, available: 3 });
    reserve(s, {}, T0 + 5 * SECOND);
  });

  test('paid and cancelled holds are not expired, and a paid hold keeps its quota', () => {
    const s = shardWith({}, { sku: 'tee', stock: 5, maxPerBuyer: 2, holdSeconds: 5 });
    const paid = reserve(s, {});
    const cancelled = reserve(s, { buyerId: 'bob' });
    okOf(apply(s, { t: 'res.pay', id: paid }, T0 + 1));
    okOf(apply(s, { t: 'res.cancel', id: cancelled }, T0 + 1));
    expect(okOf(expire(s, T0 + 60 * SECOND)).expired).toBe(0);
    expect([statusOf(s, paid), statusOf(s, cancelled)]).toEqual(['paid', 'cancelled']);
    expect(view(s, 'tee')).toMatchObject({ sold: 1, reserved: 0, available: 4 });
    reserve(s, {}, T0 + 60 * SECOND);
    expect(codeOf(apply(s, { t: 'res.reserve', sku: 'tee', buyerId: 'ann', qty: 1, nonce: 'x000' }, T0 + 60 * SECOND))).toBe('quota_exceeded');
  });

  test('expiry re-arms low_stock and announces the units back (restocked), never sold_out', () => {
    const s = shardWith({}, { sku: 'tee', stock: 4, holdSeconds: 5, lowStockThreshold: 1 });
    reserve(s, { qty: 4 });
    const a = expire(s, T0 + 5 * SECOND);
    expect(a.events).toEqual([{ type: 'restocked', sku: 'tee' }]);
    expect(apply(s, { t: 'sku.adjust', sku: 'tee', delta: -3 }, T0 + 5 * SECOND).events)
      .toEqual([{ type: 'low_stock', sku: 'tee', available: 1, threshold: 1 }]);
  });
});

describe('res.expire pruning', () => {
  const windowMs = 10 * SECOND;

  test('an idempotency key is kept while its hold is live, even past the window', () => {
    const s = shardWith({ idempotencyWindowMs: windowMs }, { sku: 'tee', stock: 5, holdSeconds: 60 });
    const id = reserve(s, { idemKey: 'k' });
    expire(s, T0 + 30 * SECOND);
    expect(reserve(s, { idemKey: 'k' }, T0 + 31 * SECOND)).toBe(id);
    expire(s, T0 + 59 * SECOND);
    expect(reserve(s, { idemKey: 'k' }, T0 + 59 * SECOND)).toBe(id);
  });

  test('an idempotency key is kept for the window after its hold settles, and forgotten after it', () => {
    const s = shardWith({ idempotencyWindowMs: windowMs }, { sku: 'tee', stock: 5, holdSeconds: 60 });
    const id = reserve(s, { idemKey: 'k' });
    expire(s, T0 + 30 * SECOND);
    okOf(apply(s, { t: 'res.cancel', id }, T0 + 40 * SECOND));
    expire(s, T0 + 49 * SECOND);
    expect(reserve(s, { idemKey: 'k' }, T0 + 49 * SECOND)).toBe(id);
    expire(s, T0 + 200 * SECOND);
    const fresh = apply(s, { t: 'res.reserve', sku: 'tee', buyerId: 'ann', qty: 1, idemKey: 'k', nonce: 'zzzz' }, T0 + 200 * SECOND);
    expect(okOf(fresh).replayed).toBeUndefined();
    expect(okOf(fresh).reservation?.reservationId).not.toBe(id);
  });

  test('an idempotency key of an expired hold is kept for the window after the expiry', () => {
    const s = shardWith({ idempotencyWindowMs: windowMs }, { sku: 'tee', stock: 5, holdSeconds: 5 });
    const id = reserve(s, { idemKey: 'k' });
    expect(okOf(expire(s, T0 + 5 * SECOND)).expired).toBe(1);
    expire(s, T0 + 14 * SECOND);
    const again = apply(s, { t: 'res.reserve', sku: 'tee', buyerId: 'ann', qty: 1, idemKey: 'k', nonce: 'zzzz' }, T0 + 14 * SECOND);
    expect(okOf(again)).toMatchObject({ replayed: true, reservation: { reservationId: id, status: 'expired' } });
  });

  test('a settled reservation stays readable for settledRetentionMs, then is dropped', () => {
    const s = shardWith({ settledRetentionMs: 5 * SECOND }, { sku: 'tee', stock: 5, holdSeconds: 600 });
    const id = reserve(s, {});
    okOf(apply(s, { t: 'res.cancel', id }, T0 + 1 * SECOND));
    expect(expire(s, T0 + 6 * SECOND - 1).mutated).toBe(false);
    expect(statusOf(s, id)).toBe('cancelled');
    const a = expire(s, T0 + 6 * SECOND);
    expect(a.mutated).toBe(true);
    expect(okOf(a).expired).toBe(0);
    for (const c of [{ t: 'res.get', id }, { t: 'res.pay', id }, { t: 'res.cancel', id }] as Command[]) {
      expect(codeOf(apply(s, c, T0 + 7 * SECOND))).toBe('unknown_reservation');
    }
  });

  test('a held reservation is never dropped by retention, and a dropped paid one still counts in sold and quota', () => {
    const s = shardWith({ settledRetentionMs: 1 * SECOND }, { sku: 'tee', stock: 5, holdSeconds: 600, maxPerBuyer: 2 });
    const heldId = reserve(s, { buyerId: 'bob' });
    const paidId = reserve(s, { qty: 2 });
    okOf(apply(s, { t: 'res.pay', id: paidId }, T0));
    expire(s, T0 + 100 * SECOND);
    expect(statusOf(s, heldId)).toBe('held');
    expect(statusOf(s, paidId)).toBe('unknown_reservation');
    expect(view(s, 'tee')).toMatchObject({ sold: 2, reserved: 1, available: 2 });
    expect(codeOf(apply(s, { t: 'res.reserve', sku: 'tee', buyerId: 'ann', qty: 1, nonce: 'zzzz' }, T0 + 100 * SECOND))).toBe('quota_exceeded');
  });

  /** The idempotency queue as the snapshot holds it: [key, reservation index, reviewAtMs]. */
  function keyQueue(s: ShardState): [string, number, number][] {
    return toSnapshot(s).idempotency;
  }

  test('a res.expire that only re-queues idempotency keys says it mutated, and reviews them as of now (regression: mutated false)', () => {
    // pruneIdempotency re-queued a key whose hold is live (or settled less than a window ago)
    // with a new reviewAtMs, but the answer said mutated:false: the change was never logged,
    // and a shard rebuilt from its log had a different key queue.
    const rows = [
      { name: 'hold still live', config: { idempotencyWindowMs: 3_600_000 }, holdSeconds: 7200, cancelAtMs: null },
      { name: 'default config, hold cancelled just before the window', config: {}, holdSeconds: 600, cancelAtMs: T0 + SECOND },
    ];
    for (const { name, config, holdSeconds, cancelAtMs } of rows) {
      const s = shardWith(config, { sku: 'tee', stock: 5, holdSeconds });
      const id = reserve(s, { idemKey: 'k' });
      if (cancelAtMs !== null) okOf(apply(s, { t: 'res.cancel', id }, cancelAtMs));
      expect(keyQueue(s).map(([, , reviewAtMs]) => reviewAtMs), name).toEqual([T0]);
      const early = expire(s, T0 + 3_600_000 - 1);
      expect(early.mutated, `${name}: not yet due for review`).toBe(false);
      const a = expire(s, T0 + 3_600_000);
      expect(a, name).toEqual({ outcome: { ok: true, status: 'ok', expired: 0 }, mutated: true, events: null });
      expect(keyQueue(s).map(([, , reviewAtMs]) => reviewAtMs), name).toEqual([T0 + 3_600_000]);
      expect(s.lastNowMs, name).toBe(T0 + 3_600_000);
      expect(reserve(s, { idemKey: 'k' }, T0 + 3_600_000), `${name}: the key is still remembered`).toBe(id);
    }
  });

  test('a res.expire that only forgets a key past its window says it mutated', () => {
    const s = shardWith({ idempotencyWindowMs: windowMs }, { sku: 'tee', stock: 5, holdSeconds: 60 });
    const id = reserve(s, { idemKey: 'k' });
    okOf(apply(s, { t: 'res.cancel', id }, T0 + SECOND));
    const a = expire(s, T0 + 11 * SECOND);
    expect(a.mutated).toBe(true);
    expect(keyQueue(s)).toEqual([]);
    expect(statusOf(s, id)).toBe('cancelled');
  });

  test('a res.expire with keys not yet due for review changes nothing and says so', () => {
    const s = shardWith({ idempotencyWindowMs: windowMs }, { sku: 'tee', stock: 5, holdSeconds: 60 });
    reserve(s, { idemKey: 'k1' });
    reserve(s, { idemKey: 'k2' }, T0 + 5 * SECOND);
    const before = toSnapshot(s);
    const a = expire(s, T0 + windowMs - 1);
    expect(a).toEqual({ outcome: { ok: true, status: 'ok', expired: 0 }, mutated: false, events: null });
    expect(toSnapshot(s)).toEqual(before);
  });

  test('res.expire ends when a due hold waits longer than the idempotency window behind expireBatchMax (regression: endless loop)', () => {
    // A key whose hold is still `held` used to be re-queued with reviewAtMs = expiresAtMs; a
    // due hold left over by the batch bound was then due again at once, and the loop never
    // ended. It is now re-queued as of now, so one pass sees each entry once.
    const s = shardWith({ expireBatchMax: 1, idempotencyWindowMs: SECOND }, { sku: 'tee', stock: 5, holdSeconds: 1 });
    reserve(s, { buyerId: 'bob' });
    const keyed = reserve(s, { idemKey: 'k' });
    const queue = s.idempotencyQueue;
    const push = queue.push.bind(queue);
    let pushes = 0;
    queue.push = (entry) => {
      if (++pushes > 1000) throw new Error('one idempotency key was re-queued 1000 times by a single res.expire: it would never end');
      push(entry);
    };
    let a: Applied | undefined;
    expect(() => { a = expire(s, T0 + 2 * SECOND); }).not.toThrow();
    expect(a!.mutated).toBe(true);
    expect(okOf(a!).expired).toBe(1);
    expect(pushes).toBe(1);
    expect(statusOf(s, keyed)).toBe('held');
    expect(keyQueue(s)).toEqual([[expect.any(String), 1, T0 + 2 * SECOND]]);
    // The next passes expire the keyed hold, keep its key a window, then forget it.
    expect(okOf(expire(s, T0 + 3 * SECOND)).expired).toBe(1);
    expect(statusOf(s, keyed)).toBe('expired');
    expect(keyQueue(s)).toEqual([[expect.any(String), 1, T0 + 3 * SECOND]]);
    expect(expire(s, T0 + 4 * SECOND).mutated).toBe(true);
    expect(keyQueue(s)).toEqual([]);
    expect(pushes).toBe(2);
  });

  test('with a res.expire every second, a key lives at least a window after its hold settles, and at most about two', () => {
    const W = 10 * SECOND;
    for (const settleAfterMs of [500, 3_000, 9_999, 10_000, 10_001, 15_000, 29_500]) {
      const s = shardWith({ idempotencyWindowMs: W }, { sku: 'tee', stock: 5, holdSeconds: 600 });
      const id = reserve(s, { idemKey: 'k' });
      let settledAt: number | null = null;
      let forgottenAt: number | null = null;
      for (let t = T0; t <= T0 + 100 * SECOND && forgottenAt === null; t += 500) {
        if (settledAt === null && t >= T0 + settleAfterMs) {
          okOf(apply(s, { t: 'res.cancel', id }, t));
          settledAt = t;
        }
        expire(s, t);
        if (keyQueue(s).length === 0) forgottenAt = t;
      }
      const at = `settled after ${settleAfterMs} ms`;
      expect(settledAt, at).not.toBeNull();
      expect(forgottenAt, at).not.toBeNull();
      expect(forgottenAt! - settledAt!, at).toBeGreaterThanOrEqual(W);
      expect(forgottenAt! - settledAt!, at).toBeLessThanOrEqual(2 * W + 500);
    }
  });

  test('a settled reservation dropped by retention takes its idempotency key with it', () => {
    const s = shardWith({ idempotencyWindowMs: 60 * SECOND, settledRetentionMs: SECOND }, { sku: 'tee', stock: 5, holdSeconds: 600 });
    const id = reserve(s, { idemKey: 'k' });
    const other = reserve(s, { idemKey: 'other', buyerId: 'bob' });
    okOf(apply(s, { t: 'res.cancel', id }, T0 + SECOND));
    expect(reserve(s, { idemKey: 'k' }, T0 + SECOND)).toBe(id);
    const a = expire(s, T0 + 2 * SECOND);
    expect(a.mutated).toBe(true);
    expect(statusOf(s, id)).toBe('unknown_reservation');
    expect(keyQueue(s).map(([key]) => key.split('\u0000').pop())).toEqual(['other']);
    const again = apply(s, { t: 'res.reserve', sku: 'tee', buyerId: 'ann', qty: 1, idemKey: 'k', nonce: 'zzzz' }, T0 + 3 * SECOND);
    expect(okOf(again).replayed).toBeUndefined();
    expect(okOf(again).reservation?.reservationId).not.toBe(id);
    expect(reserve(s, { idemKey: 'other', buyerId: 'bob' }, T0 + 3 * SECOND)).toBe(other);
  });
});

describe('housekeeping helpers', () => {
  test('nextExpiryAtMs names the earliest live hold and skips settled ones', () => {
    const s = shardWith({}, { sku: 'tee', stock: 5, holdSeconds: 10 });
    expect(nextExpiryAtMs(s)).toBeNull();
    const first = reserve(s, {});
    reserve(s, {}, T0 + 3 * SECOND);
    expect(nextExpiryAtMs(s)).toBe(T0 + 10 * SECOND);
    okOf(apply(s, { t: 'res.cancel', id: first }, T0 + 4 * SECOND));
    expect(nextExpiryAtMs(s)).toBe(T0 + 13 * SECOND);
  });

  test('housekeepingDue is true exactly when a res.expire would have work to do', () => {
    const s = shardWith({ settledRetentionMs: 60 * SECOND }, { sku: 'tee', stock: 5, holdSeconds: 10 });
    reserve(s, {});
    expect(housekeepingDue(s, T0 + 10 * SECOND - 1)).toBe(false);
    expect(housekeepingDue(s, T0 + 10 * SECOND)).toBe(true);
    expect(expire(s, T0 + 10 * SECOND).mutated).toBe(true);
    expect(housekeepingDue(s, T0 + 70 * SECOND - 1)).toBe(false);
    expect(housekeepingDue(s, T0 + 70 * SECOND)).toBe(true);
    expect(expire(s, T0 + 70 * SECOND).mutated).toBe(true);
    expect(housekeepingDue(s, T0 + 10_000 * SECOND)).toBe(false);
  });

  test('housekeepingDue agrees with whether a res.expire says it mutated, with keys, holds and retention in play', () => {
    const s = shardWith({ idempotencyWindowMs: 7 * SECOND, settledRetentionMs: 13 * SECOND, expireBatchMax: 1 }, { sku: 'tee', stock: 50, holdSeconds: 5 });
    const ids: string[] = [];
    let dueCount = 0;
    for (let t = T0, i = 0; t <= T0 + 120 * SECOND; t += 700, i++) {
      if (i % 4 === 0 && t < T0 + 60 * SECOND) ids.push(reserve(s, { buyerId: `b${i}`, idemKey: i % 8 === 0 ? `k${i}` : undefined }, t));
      if (i % 6 === 3 && t < T0 + 60 * SECOND) okOf(apply(s, { t: 'res.cancel', id: ids[ids.length - 1]! }, t));
      const due = housekeepingDue(s, t);
      if (due) dueCount++;
      expect(expire(s, t).mutated, `at T0+${t - T0}`).toBe(due);
    }
    expect(dueCount).toBeGreaterThan(10);
    // Everything has been expired, forgotten and dropped by now: nothing is left to do.
    expect(toSnapshot(s)).toMatchObject({ reservations: [], idempotency: [], settledOrder: [] });
    expect(housekeepingDue(s, T0 + 1000 * SECOND)).toBe(false);
    expect(expire(s, T0 + 1000 * SECOND).mutated).toBe(false);
  });
});
