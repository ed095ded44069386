// The quota table (src/domain/quota-table.ts) is a Map<string, number> for the core's uses,
// faster: these tests hold it to a Map under random operations (contents and insertion order
// after every step), through keys whose 32-bit hashes collide, under any seed, and check that
// a table emptied by deletes gives its memory back.

import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { QuotaTable } from '../src/domain/quota-table.js';
import { apply, createShardState, toSnapshot, fromSnapshot } from '../src/domain/index.js';

type Op =
  | { k: 'set'; key: string; units: number }
  | { k: 'delete'; key: string }
  | { k: 'reserve'; key: string; qty: number }
  | { k: 'get'; key: string };

const keyArb = fc.oneof(fc.constantFrom('a', 'b', 'ann', 'bob', '', 'u-1', 'u-2', 'ü', '日本'), fc.string({ maxLength: 6 }));
const opArb: fc.Arbitrary<Op> = fc.oneof(
  fc.record({ k: fc.constant('set' as const), key: keyArb, units: fc.integer({ min: 1, max: 1000 }) }),
  fc.record({ k: fc.constant('delete' as const), key: keyArb }),
  fc.record({ k: fc.constant('reserve' as const), key: keyArb, qty: fc.integer({ min: 1, max: 5 }) }),
  fc.record({ k: fc.constant('get' as const), key: keyArb }),
);

/** What the core does on a hold: one lookup, then an insert where it ended or an update. */
function reserve(t: QuotaTable, key: string, qty: number): void {
  const hash = t.hashOf(key);
  const slot = t.slotOf(key, hash);
  if (slot < 0) t.insert(key, hash, qty);
  else t.setAt(slot, t.unitsAt(slot) + qty);
}

describe('the quota table', () => {
  it('holds the same entries in the same order as a Map after every operation, under any seed', () => {
    fc.assert(fc.property(fc.integer(), fc.array(opArb, { maxLength: 400 }), (seed, ops) => {
      const t = new QuotaTable(seed);
      const m = new Map<string, number>();
      for (const op of ops) {
        if (op.k === 'set') {
          t.set(op.key, op.units);
          m.set(op.key, op.units);
        } else if (op.k === 'delete') {
          expect(t.delete(op.key)).toBe(m.delete(op.key));
        } else if (op.k === 'reserve') {
          reserve(t, op.key, op.qty);
          m.set(op.key, (m.get(op.key) ?? 0) + op.qty);
        } else {
          expect(t.get(op.key)).toBe(m.get(op.key));
          expect(t.has(op.key)).toBe(m.has(op.key));
        }
        expect(t.size).toBe(m.size);
        expect([...t]).toEqual([...m]);
      }
      expect([...t.values()]).toEqual([...m.values()]);
    }), { numRuns: 300 });
  });

  it('keeps apart keys whose 32-bit hashes are equal', () => {
    const t = new QuotaTable(12345);
    const seen = new Map<number, string>();
    let pair: [string, string] | null = null;
    // Random 10-letter ids (a fixed xorshift): among 300,000 of them, a pair of equal 32-bit
    // hashes is all but certain (about ten expected).
    let x = 2463534242;
    const letter = (): string => {
      x ^= x << 13; x ^= x >>> 17; x ^= x << 5;
      return String.fromCharCode(97 + ((x >>> 0) % 26));
    };
    for (let i = 0; pair === null && i < 300_000; i++) {
      let key = '';
      for (let j = 0; j < 10; j++) key += letter();
      const h = t.hashOf(key);
      const other = seen.get(h);
      if (other !== undefined) pair = [other, key];
      else seen.set(h, key);
    }
    expect(pair).not.toBeNull();
    const [a, b] = pair!;
    expect(t.hashOf(a)).toBe(t.hashOf(b));
    reserve(t, a, 2);
    expect(t.get(b)).toBeUndefined();
    reserve(t, b, 3);
    reserve(t, a, 1);
    expect([t.get(a), t.get(b)]).toEqual([3, 3]);
    expect(t.delete(a)).toBe(true);
    expect([t.get(a), t.get(b), t.size]).toEqual([undefined, 3, 1]);
    expect([...t]).toEqual([[b, 3]]);
  });

  it('gives its memory back as it empties, and stays sized by what it holds', () => {
    const t = new QuotaTable();
    for (let i = 0; i < 100_000; i++) t.set(`b${i}`, 1);
    expect(t.capacity).toBeGreaterThanOrEqual(100_000);
    for (let i = 0; i < 99_990; i++) t.delete(`b${i}`);
    expect(t.size).toBe(10);
    expect(t.capacity).toBeLessThanOrEqual(64);
    expect([...t].map(([k]) => k)).toEqual(Array.from({ length: 10 }, (_, i) => `b${99_990 + i}`));
    // Buyers that come and go (a hold, then its release) do not grow it.
    for (let i = 0; i < 100_000; i++) {
      t.set(`c${i}`, 1);
      t.delete(`c${i}`);
    }
    expect(t.capacity).toBeLessThanOrEqual(64);
    expect(t.size).toBe(10);
  });

  it('leaves a shard\'s answers and snapshot the same whatever the seed', () => {
    const run = (seed: number): { answers: unknown[]; snapshot: unknown } => {
      const state = createShardState(0, 1, { quotaHashSeed: seed });
      const answers: unknown[] = [];
      const t0 = 1_700_000_000_000;
      answers.push(apply(state, { t: 'sku.upsert', sku: 'tee', stock: 50, maxPerBuyer: 3, holdSeconds: 60 }, t0).outcome);
      for (let i = 0; i < 200; i++) {
        const buyerId = `b${i % 23}`;
        answers.push(apply(state, { t: 'res.reserve', sku: 'tee', buyerId, qty: 1 + (i % 2), nonce: i.toString(36).padStart(8, '0') }, t0 + i).outcome);
      }
      answers.push(apply(state, { t: 'res.expire' }, t0 + 61_000 + 200).outcome);
      const restored = fromSnapshot(toSnapshot(state), state.config);
      return { answers, snapshot: toSnapshot(restored) };
    };
    const a = run(1);
    const b = run(0x5eed);
    expect(b.answers).toEqual(a.answers);
    expect(b.snapshot).toEqual(a.snapshot);
  });
});
