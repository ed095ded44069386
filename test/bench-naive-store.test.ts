// The comparison kit's naive durable baseline and its rounds, without HTTP: a hot SKU
// offered concurrently sells exactly its stock and every grant is in the log file before it
// is answered; refusals, replays, quotas, settles and expiry follow the engine's rules; the
// rotation and the per-figure medians of compare-rounds.ts.

import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { NaiveStore } from '../bench/baseline-naive.js';
import { median } from '../bench/bench-report.js';
import { deepMedian, roundOrder } from '../bench/compare-rounds.js';

const dirs: string[] = [];
const stores: NaiveStore[] = [];

function newStore(): { store: NaiveStore; logPath: string } {
  const dir = mkdtempSync(path.join(os.tmpdir(), 'naive-store-test-'));
  dirs.push(dir);
  const logPath = path.join(dir, 'changes.jsonl');
  const store = new NaiveStore(logPath);
  stores.push(store);
  return { store, logPath };
}

const linesIn = (logPath: string): { t: string; id?: string }[] =>
  readFileSync(logPath, 'utf8').split('\n').filter((l) => l !== '').map((l) => JSON.parse(l) as { t: string; id?: string });

afterEach(async () => {
  for (const s of stores.splice(0)) await s.close();
  for (const d of dirs.splice(0)) rmSync(d, { recursive: true, force: true });
});

describe('NaiveStore', () => {
  it('sells a hot SKU exactly once per unit and logs every grant before answering it', async () => {
    const { store, logPath } = newStore();
    const now = Date.now();
    await store.upsertSku('hot', { stock: 50, maxPerBuyer: 1 }, now);
    const answers = await Promise.all(Array.from({ length: 400 }, (_, i) => store.reserve({ id: `r${i}`, sku: 'hot', buyerId: `b${i}`, qty: 1 }, now).then((r) => {
      // Once answered, a grant's line must already be in the file.
      if (r.ok) expect(linesIn(logPath).some((l) => l.t === 'hold' && l.id === r.record.id)).toBe(true);
      return r;
    })));
    expect(answers.filter((a) => a.ok)).toHaveLength(50);
    expect(new Set(answers.filter((a) => !a.ok).map((a) => (a.ok ? '' : a.code)))).toEqual(new Set(['sold_out']));
    expect(await store.getSku('hot')).toMatchObject({ onHand: 50, reserved: 50, sold: 0, available: 0 });
    const audit = await store.audit('hot');
    expect(audit.violations).toEqual([]);
    expect(audit.focus).toMatchObject({ held: 50, heldUnits: 50 });
  });

  it('refuses over the quota, replays an idempotency key, pays, cancels, and expires a due hold instead of paying it', async () => {
    const { store } = newStore();
    const now = Date.now();
    await store.upsertSku('s', { stock: 10, maxPerBuyer: 2, holdSeconds: 60 }, now);
    const first = await store.reserve({ id: 'a', sku: 's', buyerId: 'x', qty: 2, idemKey: 'k' }, now);
    expect(first.ok).toBe(true);
    expect(await store.reserve({ id: 'a2', sku: 's', buyerId: 'x', qty: 2, idemKey: 'k' }, now)).toMatchObject({ ok: true, replayed: true, record: { id: 'a' } });
    // Another qty with the same key answers the first reservation too (API.md), holding nothing more.
    expect(await store.reserve({ id: 'a3', sku: 's', buyerId: 'x', qty: 1, idemKey: 'k' }, now)).toMatchObject({ ok: true, replayed: true, record: { id: 'a', qty: 2 } });
    expect(await store.reserve({ id: 'b', sku: 's', buyerId: 'x', qty: 1 }, now)).toMatchObject({ ok: false, code: 'quota_exceeded' });
    expect(await store.reserve({ id: 'c', sku: 'nope', buyerId: 'x', qty: 1 }, now)).toMatchObject({ ok: false, code: 'unknown_sku' });
    expect(await store.settle('a', 'cancel', null, now)).toMatchObject({ kind: 'settled', record: { status: 'cancelled' } });
    expect(await store.settle('a', 'pay', 'p', now)).toMatchObject({ kind: 'unchanged', record: { status: 'cancelled' } });
    // The cancel gave the quota back.
    expect((await store.reserve({ id: 'd', sku: 's', buyerId: 'x', qty: 2 }, now)).ok).toBe(true);
    expect(await store.settle('d', 'pay', 'p', now + 1)).toMatchObject({ kind: 'settled', record: { status: 'paid', paymentRef: 'p' } });
    expect((await store.reserve({ id: 'e', sku: 's', buyerId: 'y', qty: 1 }, now)).ok).toBe(true);
    expect(await store.settle('e', 'pay', 'p', now + 60_000)).toMatchObject({ kind: 'expired_now', record: { status: 'expired' } });
    expect(await store.getSku('s')).toMatchObject({ reserved: 0, sold: 2, available: 8 });
    expect((await store.audit()).violations).toEqual([]);
  });

  it('sweeps due holds only, in batches of at most the limit', async () => {
    const { store } = newStore();
    const now = Date.now();
    await store.upsertSku('short', { stock: 100, holdSeconds: 1 }, now);
    await store.upsertSku('long', { stock: 100, holdSeconds: 600 }, now);
    for (let i = 0; i < 5; i++) await store.reserve({ id: `s${i}`, sku: 'short', buyerId: `b${i}`, qty: 1 }, now);
    await store.reserve({ id: 'l', sku: 'long', buyerId: 'b', qty: 1 }, now);
    await store.settle('s0', 'pay', null, now);
    expect(await store.sweep(now + 999, 100)).toBe(0);
    expect(await store.sweep(now + 1000, 3)).toBe(3);
    expect(await store.sweep(now + 1000, 3)).toBe(1);
    expect(await store.getSku('short')).toMatchObject({ reserved: 0, sold: 1 });
    expect(await store.getSku('long')).toMatchObject({ reserved: 1 });
    expect(await store.getReservation('s4')).toMatchObject({ status: 'expired' });
    expect((await store.audit()).violations).toEqual([]);
  });
});

describe('compare-rounds', () => {
  it('rotates the order so each system takes each place in turn', () => {
    expect([1, 2, 3, 4].map((r) => roundOrder(['a', 'b', 'c'], r).join(''))).toEqual(['abc', 'bca', 'cab', 'abc']);
  });

  it('takes the median of each number, a missing count as zero, other leaves from the first', () => {
    expect(median([3, 1, 2])).toBe(2);
    expect(median([4, 1])).toBe(2.5);
    const m = deepMedian([
      { headline: 10, unit: 'x', statuses: { 201: 5 }, p: null },
      { headline: 30, unit: 'y', statuses: { 201: 7, 503: 9 }, p: 4 },
      { headline: 20, unit: 'z', statuses: { 201: 6 }, p: 2 },
    ]);
    expect(m).toEqual({ headline: 20, unit: 'x', statuses: { 201: 6, 503: 0 }, p: 3 });
  });
});
