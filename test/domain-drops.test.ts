// The pure core's drops and queues (src/domain/apply-drop.ts): the hash the order is made
// of (checked against node:crypto), fifo and random order, the pace of admission in every
// one-second window, lapses, the admission check of a reserve in the same command as its
// hold, the draw, sold_out, and that snapshots and replays give exactly the same queue.

import { createHash, createHmac, randomBytes } from 'node:crypto';
import fc from 'fast-check';
import { Packr } from 'msgpackr';
import { describe, expect, it } from 'vitest';
import {
  apply, createShardState, fromSnapshot, nextDueAtMs, housekeepingDue, toSnapshot,
  type Applied, type Command, type EntryView, type ShardSnapshot, type ShardState,
} from '../src/domain/index.js';
import { Hmac, sha256, toHex, utf8 } from '../src/domain/sha256.js';
import { codeOf, okOf, T0 } from './support/domain-kit.js';
import { pageBytesMax, utf8Length } from '../src/domain/fields.js';

const SEED = 'a1'.repeat(32);
const SECRET = 'b2'.repeat(16);
const packr = new Packr({ useRecords: false, moreTypes: false, mapsAsObjects: true, variableMapSize: true });

function shard(): ShardState {
  return createShardState(0, 1);
}

function put(s: ShardState, dropId: string, queue: Record<string, unknown> | null | undefined, nowMs = T0, seed = SEED): Applied {
  const c = { t: 'drop.put', dropId, seed, secret: SECRET, ...(queue === undefined ? {} : { queue }) } as Command;
  return apply(s, c, nowMs);
}

const join = (s: ShardState, dropId: string, buyerId: string, nowMs: number, extra: Partial<Extract<Command, { t: 'q.join' }>> = {}): Applied =>
  apply(s, { t: 'q.join', dropId, buyerId, ...extra }, nowMs);
const entry = (s: ShardState, dropId: string, buyerId: string, nowMs: number): EntryView => okOf(apply(s, { t: 'q.entry', dropId, buyerId }, nowMs)).entry!;
const reserve = (s: ShardState, sku: string, buyerId: string, nowMs: number, idemKey?: string): Applied =>
  apply(s, { t: 'res.reserve', sku, buyerId, qty: 1, nonce: randomBytes(4).toString('hex').slice(0, 8), ...(idemKey === undefined ? {} : { idemKey }) }, nowMs);
/** Runs the shard's clock as its adapter does: a res.expire whenever one is due, until `untilMs`. */
function runClock(s: ShardState, fromMs: number, untilMs: number, stepMs = 10): void {
  for (let t = fromMs; t <= untilMs; t += stepMs) if (housekeepingDue(s, t)) apply(s, { t: 'res.expire' }, t);
}
const restore = (s: ShardState): ShardState => fromSnapshot(packr.unpack(packr.pack(toSnapshot(s))) as ShardSnapshot, s.config);

describe('the hash behind the order', () => {
  it('sha256 and HMAC-SHA256 agree with node:crypto on any input', () => {
    fc.assert(fc.property(fc.uint8Array({ maxLength: 300 }), fc.uint8Array({ maxLength: 100 }), (key, msg) => {
      expect(toHex(sha256(msg))).toBe(createHash('sha256').update(msg).digest('hex'));
      expect(toHex(new Hmac(key).digest(msg))).toBe(createHmac('sha256', key).update(msg).digest('hex'));
    }), { numRuns: 300 });
    expect(toHex(new Hmac(utf8('k')).digest(utf8('héllo wörld ✓')))).toBe(createHmac('sha256', 'k').update('héllo wörld ✓', 'utf8').digest('hex'));
  });
});

describe('drops', () => {
  it('are created (201) and updated (200), publish sha256 of the seed, and list their SKUs', () => {
    const s = shard();
    const created = okOf(put(s, 'd1', { mode: 'fifo', opensAt: T0 + 60_000 }));
    expect(created.status).toBe('created');
    expect(created.drop!.queue!.seedSha256).toBe(createHash('sha256').update(Buffer.from(SEED, 'hex')).digest('hex'));
    expect(created.drop!.queue!.seed).toBeUndefined();
    okOf(apply(s, { t: 'sku.upsert', sku: 'shoe', stock: 3, dropId: 'd1' }, T0));
    const updated = okOf(put(s, 'd1', { admitPerSecond: 7 }, T0 + 1));
    expect(updated.status).toBe('ok');
    expect(updated.drop!.skus).toEqual(['shoe']);
    expect(updated.drop!.queue!.admitPerSecond).toBe(7);
    expect(updated.drop!.queue!.mode).toBe('fifo');
    expect(codeOf(apply(s, { t: 'drop.get', dropId: 'nope' }, T0))).toBe('unknown_drop');
  });

  it('lock mode, opensAt, randomizeSeconds and closesAt once open, but not the pace; refuse bad input and change nothing', () => {
    const s = shard();
    okOf(put(s, 'd', { mode: 'random', opensAt: T0 + 1000, randomizeSeconds: 5 }));
    okOf(put(s, 'd', { mode: 'fifo' }, T0 + 10)); // before opening: anything may change
    okOf(put(s, 'd', { mode: 'random' }, T0 + 20));
    for (const change of [{ mode: 'fifo' }, { opensAt: T0 + 5000 }, { randomizeSeconds: 1 }]) {
      expect(codeOf(put(s, 'd', change, T0 + 2000))).toBe('queue_locked');
    }
    expect(codeOf(put(s, 'd', null, T0 + 2000))).toBe('queue_locked');
    okOf(put(s, 'd', { admitPerSecond: 3, admitSeconds: 9 }, T0 + 2000));
    const before = JSON.stringify(toSnapshot(s));
    for (const bad of [{ mode: 'lottery' }, { admitPerSecond: 0 }, { admitSeconds: -1 }, { opensAt: 1.5 }, { qtyPerWinner: 100_000 }]) {
      expect(codeOf(put(s, 'd', bad, T0 + 3000))).toBe('invalid_request');
    }
    expect(codeOf(put(s, 'd2', { mode: 'draw' }))).toBe('invalid_request'); // closesAt is required
    expect(codeOf(put(s, 'd2', { mode: 'draw', opensAt: T0, closesAt: T0 }))).toBe('invalid_request');
    expect(JSON.stringify(toSnapshot(s))).toBe(before);
  });
});

describe('a fifo queue', () => {
  function fifo(rate: number, stock = 1000): ShardState {
    const s = shard();
    okOf(apply(s, { t: 'sku.upsert', sku: 'shoe', stock, dropId: 'd', maxPerBuyer: 1 }, T0));
    okOf(put(s, 'd', { mode: 'fifo', opensAt: T0 + 1000, admitPerSecond: rate, admitSeconds: 60 }));
    return s;
  }

  it('refuses joins before opensAt, takes each buyer once, and admits in joining order', () => {
    const s = fifo(5);
    expect(codeOf(join(s, 'd', 'early', T0 + 999))).toBe('queue_not_open');
    const buyers = Array.from({ length: 12 }, (_, i) => `b${i}`);
    buyers.forEach((b, i) => expect(okOf(join(s, 'd', b, T0 + 1000 + i)).status).toBe('created'));
    const again = okOf(join(s, 'd', 'b3', T0 + 1100));
    expect([again.status, again.entry!.position]).toEqual(['ok', 4]);
    expect(okOf(apply(s, { t: 'drop.get', dropId: 'd' }, T0 + 1100)).drop!.queue!.entries).toBe(12);
    runClock(s, T0 + 1000, T0 + 4000);
    const admitted = buyers.map((b) => entry(s, 'd', b, T0 + 4000)).filter((e) => e.state === 'admitted');
    expect(admitted.length).toBeGreaterThan(0);
    const times = buyers.map((b) => entry(s, 'd', b, T0 + 4000).admittedAt ?? Infinity);
    expect(times).toEqual([...times].sort((x, y) => x - y)); // joining order
    const waiting = buyers.map((b) => entry(s, 'd', b, T0 + 4000)).filter((e) => e.state === 'waiting');
    expect(waiting.map((e) => e.position)).toEqual(waiting.map((_, i) => i + 1));
  });

  it('never admits more than admitPerSecond in any one-second window, whatever the clock does, even when the pace is lowered', () => {
    fc.assert(fc.property(fc.integer({ min: 1, max: 40 }), fc.array(fc.integer({ min: 1, max: 700 }), { minLength: 5, maxLength: 60 }), fc.integer({ min: 1, max: 40 }), (first, gaps, second) => {
      const s = fifo(first);
      for (let i = 0; i < 200; i++) join(s, 'd', `b${i}`, T0 + 1000);
      let t = T0 + 1000;
      let changedAt = Infinity;
      gaps.forEach((g, n) => {
        t += g;
        if (n === Math.floor(gaps.length / 2)) {
          okOf(put(s, 'd', { admitPerSecond: second }, t));
          changedAt = t;
        }
        if (housekeepingDue(s, t)) {
          apply(s, { t: 'res.expire' }, t);
          // Due means work to do: once done, nothing is due at the same moment (no spinning timer).
          expect(housekeepingDue(s, t)).toBe(false);
        }
      });
      const at = Array.from({ length: 200 }, (_, i) => entry(s, 'd', `b${i}`, t).admittedAt).filter((x): x is number => x !== undefined).sort((a, b) => a - b);
      for (let i = 0; i < at.length; i++) {
        let j = i;
        while (j < at.length && at[j]! < at[i]! + 1000) j++;
        // A window that starts after the change holds at most the new pace; one across it, the larger.
        expect(j - i).toBeLessThanOrEqual(at[i]! >= changedAt ? second : Math.max(first, second));
      }
    }), { numRuns: 150 });
  });

  it('lets only an admitted buyer reserve, once, in the same command; its key replays the hold after', () => {
    const s = fifo(100);
    join(s, 'd', 'ann', T0 + 1000);
    join(s, 'd', 'bob', T0 + 1000);
    expect(codeOf(reserve(s, 'shoe', 'ann', T0 + 1000))).toBe('not_admitted');
    expect(codeOf(reserve(s, 'shoe', 'stranger', T0 + 1000))).toBe('not_admitted');
    runClock(s, T0 + 1000, T0 + 1200);
    expect(entry(s, 'd', 'ann', T0 + 1200).state).toBe('admitted');
    const held = okOf(reserve(s, 'shoe', 'ann', T0 + 1300, 'k1'));
    const used = entry(s, 'd', 'ann', T0 + 1300);
    expect([used.state, used.reservationId]).toEqual(['used', held.reservation!.reservationId]);
    expect(codeOf(reserve(s, 'shoe', 'ann', T0 + 1400, 'k2'))).toBe('not_admitted');
    const replay = okOf(reserve(s, 'shoe', 'ann', T0 + 1400, 'k1'));
    expect([replay.replayed, replay.reservation!.reservationId]).toEqual([true, held.reservation!.reservationId]);
    // bob's admission runs out after admitSeconds: lapsed, and refused.
    const until = entry(s, 'd', 'bob', T0 + 1300).admittedUntil!;
    expect(until - entry(s, 'd', 'bob', T0 + 1300).admittedAt!).toBe(60_000);
    expect(entry(s, 'd', 'bob', until - 1).state).toBe('admitted');
    expect(entry(s, 'd', 'bob', until).state).toBe('lapsed');
    expect(codeOf(reserve(s, 'shoe', 'bob', T0 + 62_000))).toBe('not_admitted');
    runClock(s, T0 + 61_000, T0 + 62_000, 100);
    expect(okOf(apply(s, { t: 'drop.get', dropId: 'd' }, T0 + 62_000)).drop!.queue).toMatchObject({ admitted: 0, lapsed: 1, used: 1 });
  });

  it('pauses admission while nothing is available, resumes when a hold expires, and tells waiting buyers sold_out', () => {
    const s = shard();
    okOf(apply(s, { t: 'sku.upsert', sku: 'shoe', stock: 1, dropId: 'd', holdSeconds: 5 }, T0));
    okOf(put(s, 'd', { mode: 'fifo', opensAt: T0, admitPerSecond: 1, admitSeconds: 600 }));
    for (const b of ['a', 'b', 'c']) join(s, 'd', b, T0);
    runClock(s, T0, T0 + 500);
    expect(entry(s, 'd', 'a', T0 + 500).state).toBe('admitted');
    okOf(reserve(s, 'shoe', 'a', T0 + 600));
    // The unit is held: nothing available, nobody more admitted, however long it waits.
    runClock(s, T0 + 600, T0 + 4900);
    expect(entry(s, 'd', 'b', T0 + 4900).state).toBe('waiting');
    expect(nextDueAtMs(s, T0 + 4900)).toBe(T0 + 5600); // the hold's expiry, not the queue
    runClock(s, T0 + 4900, T0 + 6000);
    expect(entry(s, 'd', 'b', T0 + 6000).state).toBe('admitted');
    okOf(reserve(s, 'shoe', 'b', T0 + 6000));
    okOf(apply(s, { t: 'res.pay', id: okOf(apply(s, { t: 'q.entry', dropId: 'd', buyerId: 'b' }, T0 + 6000)).entry!.reservationId! }, T0 + 6100));
    // Sold out: the waiting buyer is told at once.
    expect(entry(s, 'd', 'c', T0 + 6100).state).toBe('sold_out');
  });
});

describe('a random queue', () => {
  it('orders the early entries by HMAC-SHA256(seed, buyerId) and the late ones after them in joining order; same after a snapshot', () => {
    const seed = randomBytes(32).toString('hex');
    const s = shard();
    okOf(apply(s, { t: 'sku.upsert', sku: 'shoe', stock: 1000, dropId: 'r' }, T0));
    okOf(put(s, 'r', { mode: 'random', opensAt: T0, randomizeSeconds: 10, admitPerSecond: 1 }, T0, seed));
    const early = Array.from({ length: 50 }, (_, i) => `early-${i}-${randomBytes(3).toString('hex')}`);
    early.forEach((b, i) => join(s, 'r', b, T0 + i));
    expect(entry(s, 'r', early[0]!, T0 + 100).position).toBeUndefined(); // not fixed yet
    expect(codeOf(apply(s, { t: 'drop.order', dropId: 'r', offset: 0, limit: 1000 }, T0 + 100))).toBe('order_not_fixed');
    expect(codeOf(reserve(s, 'shoe', early[0]!, T0 + 100))).toBe('not_admitted');
    const late = ['late-1', 'late-2'];
    late.forEach((b, i) => join(s, 'r', b, T0 + 10_000 + i)); // the first late join fixes the order first
    const expected = [...early].sort((x, y) => Buffer.compare(createHmac('sha256', Buffer.from(seed, 'hex')).update(x).digest(), createHmac('sha256', Buffer.from(seed, 'hex')).update(y).digest()));
    const order = okOf(apply(s, { t: 'drop.order', dropId: 'r', offset: 0, limit: 1000 }, T0 + 10_100)).order!;
    expect(order.seed).toBe(seed);
    expect(order.buyers).toEqual([...expected, ...late]);
    expect(okOf(apply(s, { t: 'drop.get', dropId: 'r' }, T0 + 10_100)).drop!.queue!.seed).toBe(seed);
    const positions = [...expected, ...late].map((b) => entry(s, 'r', b, T0 + 10_100).position);
    expect(positions).toEqual(positions.map((_, i) => i + 1));
    const again = restore(s);
    expect(okOf(apply(again, { t: 'drop.order', dropId: 'r', offset: 0, limit: 1000 }, T0 + 10_100)).order!.buyers).toEqual(order.buyers);
    expect(toSnapshot(again)).toEqual(toSnapshot(s));
    // Admission follows that order.
    runClock(s, T0 + 10_100, T0 + 13_200, 50);
    const admitted = [...expected, ...late].filter((b) => entry(s, 'r', b, T0 + 13_200).state === 'admitted');
    expect(admitted).toEqual(expected.slice(0, admitted.length));
    expect(admitted.length).toBeGreaterThanOrEqual(2);
  });
});

describe('a draw', () => {
  it('holds qtyPerWinner for the first winners in seeded order while stock and quotas allow; everyone else lost', () => {
    const seed = randomBytes(32).toString('hex');
    const s = shard();
    okOf(apply(s, { t: 'sku.upsert', sku: 'bottle', stock: 5, dropId: 'w', maxPerBuyer: 1, holdSeconds: 3600 }, T0));
    okOf(put(s, 'w', { mode: 'draw', opensAt: T0, closesAt: T0 + 60_000, qtyPerWinner: 1 }, T0, seed));
    const buyers = Array.from({ length: 30 }, (_, i) => `buyer-${i}`);
    for (const b of buyers) expect(okOf(join(s, 'w', b, T0 + 10)).entry!.state).toBe('entered');
    // One entrant already holds its quota (bought outside the draw? impossible here: reserve a draw is refused).
    expect(codeOf(reserve(s, 'bottle', 'buyer-0', T0 + 20))).toBe('not_admitted');
    expect(codeOf(join(s, 'w', 'latecomer', T0 + 60_000))).toBe('queue_closed');
    expect(housekeepingDue(s, T0 + 59_999)).toBe(false);
    expect(nextDueAtMs(s, T0 + 100)).toBe(T0 + 60_000);
    const drawn = apply(s, { t: 'res.expire' }, T0 + 60_000);
    expect(drawn.mutated).toBe(true);
    const key = Buffer.from(seed, 'hex');
    const order = [...buyers].sort((x, y) => Buffer.compare(createHmac('sha256', key).update(x).digest(), createHmac('sha256', key).update(y).digest()));
    const views = order.map((b) => entry(s, 'w', b, T0 + 60_001));
    expect(views.map((v) => v.state)).toEqual([...Array(5).fill('won'), ...Array(25).fill('lost')]);
    for (const v of views.slice(0, 5)) {
      const r = okOf(apply(s, { t: 'res.get', id: v.reservationId! }, T0 + 60_001)).reservation!;
      expect([r.buyerId, r.status, r.qty]).toEqual([v.buyerId, 'held', 1]);
    }
    expect(okOf(apply(s, { t: 'sku.get', sku: 'bottle' }, T0 + 60_001)).sku).toMatchObject({ reserved: 5, available: 0 });
    const view = okOf(apply(s, { t: 'drop.get', dropId: 'w' }, T0 + 60_001)).drop!.queue!;
    expect([view.seed, view.won, view.lost]).toEqual([seed, 5, 25]);
    expect(toSnapshot(restore(s))).toEqual(toSnapshot(s));
  });
});

describe('replay', () => {
  it('a log of joins, clock turns and reserves replayed on a fresh shard, or after a snapshot, gives the same queue', () => {
    fc.assert(fc.property(fc.array(fc.tuple(fc.integer({ min: 0, max: 5 }), fc.integer({ min: 0, max: 30 }), fc.integer({ min: 1, max: 400 })), { minLength: 10, maxLength: 120 }), (steps) => {
      const live = shard();
      const log: [Command, number][] = [];
      const run = (c: Command, t: number): void => {
        if (apply(live, c, t).mutated) log.push([c, t]);
      };
      run({ t: 'sku.upsert', sku: 'shoe', stock: 6, dropId: 'd', holdSeconds: 2, maxPerBuyer: 1 }, T0);
      run({ t: 'drop.put', dropId: 'd', seed: SEED, secret: SECRET, queue: { mode: 'random', opensAt: T0, randomizeSeconds: 1, admitPerSecond: 3, admitSeconds: 2 } }, T0);
      let t = T0;
      let half: ShardState | null = null;
      let halfAt = 0;
      steps.forEach(([kind, who, gap], n) => {
        t += gap;
        if (kind <= 2) run({ t: 'q.join', dropId: 'd', buyerId: `b${who}` }, t);
        else if (kind <= 4) run({ t: 'res.reserve', sku: 'shoe', buyerId: `b${who}`, qty: 1, nonce: `n${n}` }, t);
        if (housekeepingDue(live, t)) run({ t: 'res.expire' }, t);
        if (n === Math.floor(steps.length / 2)) {
          half = restore(live);
          halfAt = log.length;
        }
      });
      const fresh = shard();
      for (const [c, at] of log) expect(apply(fresh, c, at).mutated).toBe(true);
      expect(toSnapshot(fresh)).toEqual(toSnapshot(live));
      const resumed = half as ShardState | null;
      if (resumed !== null) {
        for (const [c, at] of log.slice(halfAt)) apply(resumed, c, at);
        expect(toSnapshot(resumed)).toEqual(toSnapshot(live));
      }
    }), { numRuns: 100 });
  });
});

describe('what an adversarial review found', () => {
  const drawOn = (mode: 'pre_deduct' | 'on_payment', stock: number, entrants: number, config: Parameters<typeof createShardState>[2] = {}) => {
    const s = createShardState(0, 1, config);
    okOf(apply(s, { t: 'sku.upsert', sku: 'bottle', stock, dropId: 'w', mode, maxPerBuyer: 1, holdSeconds: 60 }, T0));
    okOf(put(s, 'w', { mode: 'draw', opensAt: T0, closesAt: T0 + 1000, qtyPerWinner: 1 }));
    const buyers = Array.from({ length: entrants }, (_, i) => `b${i}`);
    for (const b of buyers) okOf(join(s, 'w', b, T0 + 1));
    return { s, buyers };
  };
  const states = (s: ShardState, buyers: string[], t: number) => buyers.map((b) => entry(s, 'w', b, t).state);

  it('a draw on an on_payment SKU makes only as many winners as units: a winner\'s hold takes its unit', () => {
    const { s, buyers } = drawOn('on_payment', 2, 10);
    runClock(s, T0 + 1000, T0 + 1100);
    expect(states(s, buyers, T0 + 1100).filter((x) => x === 'won')).toHaveLength(2);
    expect(okOf(apply(s, { t: 'sku.get', sku: 'bottle' }, T0 + 1100)).sku).toMatchObject({ reserved: 2, available: 0 });
  });

  it('runs a large draw in steps of expireBatchMax entries, with the same winners as in one step', () => {
    const one = drawOn('pre_deduct', 7, 40);
    const steps = drawOn('pre_deduct', 7, 40, { expireBatchMax: 3 });
    runClock(one.s, T0 + 1000, T0 + 1100);
    const first = apply(steps.s, { t: 'res.expire' }, T0 + 1000);
    expect(first.mutated).toBe(true);
    expect(states(steps.s, steps.buyers, T0 + 1000).filter((x) => x === 'won')).toHaveLength(3);
    expect(housekeepingDue(steps.s, T0 + 1000)).toBe(true); // the next step is due at once
    runClock(steps.s, T0 + 1000, T0 + 1100);
    expect(states(steps.s, steps.buyers, T0 + 1100)).toEqual(states(one.s, one.buyers, T0 + 1100));
  });

  it('gives units that come back after the draw to the next entries in its order (a second chance)', () => {
    const { s, buyers } = drawOn('pre_deduct', 2, 6);
    runClock(s, T0 + 1000, T0 + 1100);
    const before = states(s, buyers, T0 + 1100);
    const winner = buyers[before.indexOf('won')]!;
    okOf(apply(s, { t: 'res.cancel', id: entry(s, 'w', winner, T0 + 1100).reservationId! }, T0 + 1200));
    expect(housekeepingDue(s, T0 + 1200)).toBe(true);
    runClock(s, T0 + 1200, T0 + 1300);
    const after = states(s, buyers, T0 + 1300);
    expect(after.filter((x) => x === 'won')).toHaveLength(3); // the cancelled winner stays won (its hold is its history)
    const order = okOf(apply(s, { t: 'drop.order', dropId: 'w', offset: 0, limit: 100 }, T0 + 1300)).order!.buyers;
    const winners = order.filter((b) => entry(s, 'w', b, T0 + 1300).state === 'won');
    expect(winners).toEqual(order.slice(0, 3));
    expect(okOf(apply(s, { t: 'sku.get', sku: 'bottle' }, T0 + 1300)).sku).toMatchObject({ reserved: 2, available: 0 });
    expect(housekeepingDue(s, T0 + 1300)).toBe(false);
  });

  it('does not tell a waiting buyer sold_out while the drop has no SKU yet', () => {
    const s = shard();
    okOf(put(s, 'empty', { mode: 'fifo', opensAt: T0, admitPerSecond: 1 }));
    okOf(join(s, 'empty', 'ann', T0));
    okOf(join(s, 'empty', 'bob', T0));
    expect(entry(s, 'empty', 'bob', T0 + 10).state).toBe('waiting');
  });

  it('counts admitted buyers whose admission has not run out, whenever it is read, as a scan would', () => {
    fc.assert(fc.property(fc.array(fc.integer({ min: 1, max: 900 }), { minLength: 3, maxLength: 30 }), fc.array(fc.integer({ min: 0, max: 20_000 }), { minLength: 1, maxLength: 10 }), (gaps, reads) => {
      const s = shard();
      okOf(apply(s, { t: 'sku.upsert', sku: 'shoe', stock: 1000, dropId: 'd' }, T0));
      okOf(put(s, 'd', { mode: 'fifo', opensAt: T0, admitPerSecond: 20, admitSeconds: 3 }));
      for (let i = 0; i < 100; i++) join(s, 'd', `b${i}`, T0);
      let t = T0;
      gaps.forEach((g, n) => {
        t += g;
        // Every other step lowers or raises admitSeconds, so admissions end out of order.
        if (n % 2 === 0) okOf(put(s, 'd', { admitSeconds: 1 + (n % 5) }, t));
        if (housekeepingDue(s, t)) apply(s, { t: 'res.expire' }, t);
      });
      for (const r of reads) {
        const at = t + r;
        const byScan = Array.from({ length: 100 }, (_, i) => entry(s, 'd', `b${i}`, at)).filter((e) => e.state === 'admitted').length;
        expect(okOf(apply(s, { t: 'drop.get', dropId: 'd' }, at)).drop!.queue!.admitted).toBe(byScan);
      }
    }), { numRuns: 100 });
  });

  it('locks qtyPerWinner once the draw has opened', () => {
    const { s } = drawOn('pre_deduct', 2, 1);
    expect(codeOf(put(s, 'w', { qtyPerWinner: 2 }, T0 + 10))).toBe('queue_locked');
  });

  it('ends a page of a published order by its bytes as well as by count: pages of long ids read back the whole order (found by a review: 28,000 UUIDs passed NATS max_payload)', () => {
    const s = shard();
    okOf(put(s, 'big', { mode: 'random', opensAt: T0, randomizeSeconds: 1, admitPerSecond: 1 }, T0));
    const buyers = Array.from({ length: 5000 }, (_, i) => `${String(i).padStart(6, '0')}-${'x'.repeat(120)}`);
    buyers.forEach((b) => join(s, 'big', b, T0));
    join(s, 'big', 'late-joiner', T0 + 2000); // fixes the order
    const all: string[] = [];
    let pages = 0;
    for (let offset = 0; ; pages++) {
      const o = okOf(apply(s, { t: 'drop.order', dropId: 'big', offset, limit: 100_000 }, T0 + 2001)).order!;
      expect(o.total).toBe(5001);
      if (o.buyers.length === 0) break;
      expect(o.buyers.slice(0, -1).reduce((n, b) => n + utf8Length(b) + 8, 0)).toBeLessThan(pageBytesMax);
      all.push(...o.buyers);
      offset += o.buyers.length;
    }
    expect(pages).toBeGreaterThan(1);
    expect([...all].sort()).toEqual([...buyers, 'late-joiner'].sort());
    // The count still bounds a page.
    expect(okOf(apply(s, { t: 'drop.order', dropId: 'big', offset: 10, limit: 3 }, T0 + 2001)).order!.buyers).toEqual(all.slice(10, 13));
  });
});
