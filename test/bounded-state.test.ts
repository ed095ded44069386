// A shard under millions of reserve+cancel turns, through ShardRuntime with its real WAL and
// snapshots (project issue #10, item 3): with retention by time alone, every settled
// reservation stayed for 7 days, so such a loop grew the snapshot past its 1 GiB frame limit
// and the worker crash-looped. With settledReservationsMax, the reservation table, the settled
// queue, the key indexes, the expiry heap, the snapshot file and the heap stay at the bound's
// size however many turns run, and a reopened shard has exactly the state it closed with.
// Sizes are asserted, never timings.

import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import * as v8 from 'node:v8';
import * as vm from 'node:vm';
import { afterAll, describe, expect, test } from 'vitest';
import { toSnapshot, type Command, type ShardState } from '../src/domain/index.js';
import { ShardRuntime } from '../src/engine/shard-runtime.js';
import { okOf, T0 } from './support/domain-kit.js';

const SETTLED_MAX = 10_000;
const PAIRS = 3_000_000;
/** Reserve+cancel pairs per execute: 5,000 commands, one log record and one fdatasync. */
const PAIRS_PER_BATCH = 2_500;
const SNAPSHOT_EVERY_COMMANDS = 500_000;
const BUYERS = 1_000;
/** Every this-many-th pair is paid instead of cancelled, so dropped paid ones count in sold. */
const PAY_EVERY = 997;
/** Every this-many-th reserve carries an idempotency key (each a new one). */
const KEY_EVERY = 4;
/** A snapshot of 10,000 settled reservations (2,500 of them keyed) is about 1 MB. */
const SNAPSHOT_BYTES_MAX = 4 * 1024 * 1024;
/** Heap growth allowed between the first measurement (after warm-up) and any later one. */
const HEAP_GROWTH_BYTES_MAX = 16 * 1024 * 1024;

const dirs: string[] = [];
afterAll(() => {
  for (const dir of dirs) rmSync(dir, { recursive: true, force: true });
});

/** A full garbage collection, from `--expose-gc` or, without it, the same switch set at run time. */
function collector(): () => void {
  const exposed = (globalThis as { gc?: () => void }).gc;
  if (exposed !== undefined) return exposed;
  v8.setFlagsFromString('--expose-gc');
  return vm.runInNewContext('gc') as () => void;
}

/** Sizes of every collection of the state that grows with reservations or keys. */
function sizes(state: ShardState) {
  let quotaEntries = 0;
  for (const s of state.skus.values()) quotaEntries += s.quota.size;
  return {
    reservations: state.reservations.size, settled: state.settled.length, live: state.liveCount,
    expiry: state.expiry.size, keys: state.idempotency.size, keyQueue: state.idempotencyQueue.length, quotaEntries,
  };
}

/** The id the k-th reservation of this run gets: seqs count from 1, the nonce is zero-padded to 8. */
function idOf(seq: number, nonce: string): string {
  return `0.${seq.toString(36)}${nonce.padStart(8, '0')}`;
}

describe('a shard under a reserve+cancel loop of millions of turns', () => {
  test('keeps its table, settled queue, indexes, snapshot and heap at the bound, and reopens to exactly the state it had', () => {
    const gc = collector();
    const dir = mkdtempSync(join(tmpdir(), 'flash-bounded-'));
    dirs.push(dir);
    const snapshotBytes: number[] = [];
    const open = () => ShardRuntime.open({
      dir, shardId: 0, shardCount: 1, config: { settledReservationsMax: SETTLED_MAX }, snapshotEveryCommands: SNAPSHOT_EVERY_COMMANDS,
      onWalEvent: (e) => { if (e.type === 'snapshot_written') snapshotBytes.push(e.bytes); },
    });
    const runtime = open();
    okOf(runtime.execute([{ t: 'sku.upsert', sku: 'tee', stock: 1_000_000, holdSeconds: 600 }], T0)[0]!);

    let seq = runtime.state.seq;
    let paid = 0;
    let baselineHeap = 0;
    let heapGrowthMax = 0;
    const biggest = { reservations: 0, settled: 0, expiry: 0, keys: 0, keyQueue: 0, quotaEntries: 0 };
    const batches = PAIRS / PAIRS_PER_BATCH;
    for (let b = 0; b < batches; b++) {
      const nowMs = T0 + 1 + b * 50; // 60 s in all: no hold falls due, no key leaves its window
      const reserves: Command[] = [];
      const settles: Command[] = [];
      for (let i = 0; i < PAIRS_PER_BATCH; i++) {
        const k = b * PAIRS_PER_BATCH + i;
        const nonce = (k % 2_821_109_907_456).toString(36);
        const c: Command = { t: 'res.reserve', sku: 'tee', buyerId: `b${k % BUYERS}`, qty: 1, nonce };
        if (k % KEY_EVERY === 0) c.idemKey = `k${k}`;
        reserves.push(c);
        const id = idOf(++seq, nonce);
        if (k % PAY_EVERY === 0) {
          settles.push({ t: 'res.pay', id });
          paid++;
        } else {
          settles.push({ t: 'res.cancel', id });
        }
      }
      const answers = runtime.execute([...reserves, ...settles], nowMs);
      // Every reserve made the reservation whose id was predicted, and every settle found it.
      const refused = answers.find((a) => !a.outcome.ok || !a.mutated);
      if (refused !== undefined) expect.fail(`batch ${b}: ${JSON.stringify(refused.outcome)}`);
      if (runtime.housekeepingDue(nowMs)) runtime.execute([{ t: 'res.expire' }], nowMs);
      runtime.snapshotIfDue();
      const now = sizes(runtime.state);
      for (const key of Object.keys(biggest) as (keyof typeof biggest)[]) biggest[key] = Math.max(biggest[key], now[key]);
      if ((b + 1) % 100 === 0) {
        gc();
        const heapUsed = process.memoryUsage().heapUsed;
        if (baselineHeap === 0) baselineHeap = heapUsed; // after 250,000 pairs: the bound is reached, buffers are warm
        else heapGrowthMax = Math.max(heapGrowthMax, heapUsed - baselineHeap);
      }
    }

    const state = runtime.state;
    expect(state.seq, 'reservations made').toBe(PAIRS);
    expect(sizes(state)).toMatchObject({ reservations: SETTLED_MAX, settled: SETTLED_MAX, live: 0 });
    expect(biggest.reservations, 'reservations in the table at any batch end').toBe(SETTLED_MAX);
    expect(biggest.settled, 'settled queue').toBe(SETTLED_MAX);
    expect(biggest.keys, 'idempotency keys').toBeLessThanOrEqual(SETTLED_MAX / KEY_EVERY + 1);
    expect(biggest.keyQueue, 'idempotency review queue').toBeLessThanOrEqual(2 * (SETTLED_MAX / KEY_EVERY + 1) + 1024 + PAIRS_PER_BATCH);
    expect(biggest.expiry, 'expiry heap (no hold is live at a batch end)').toBeLessThanOrEqual(1024);
    expect(biggest.quotaEntries, 'quota entries (paid units only, one per buyer)').toBeLessThanOrEqual(BUYERS);
    // Dropped paid reservations still count: every unit paid is sold, and in its buyer's quota.
    const tee = state.skus.get('tee')!;
    expect(tee.sold).toBe(paid);
    let quotaUnits = 0;
    for (const units of tee.quota.values()) quotaUnits += units;
    expect(quotaUnits).toBe(paid);

    expect(snapshotBytes.length, 'snapshots taken').toBeGreaterThanOrEqual(10);
    expect(Math.max(...snapshotBytes), 'largest snapshot').toBeLessThan(SNAPSHOT_BYTES_MAX);
    expect(heapGrowthMax, `heap growth after warm-up (baseline ${baselineHeap} bytes)`).toBeLessThan(HEAP_GROWTH_BYTES_MAX);

    runtime.snapshot();
    const closed = toSnapshot(state);
    // One more turn, logged after the snapshot: a reserve and its cancel, which drops one more.
    const after = runtime.execute([
      { t: 'res.reserve', sku: 'tee', buyerId: 'last', qty: 1, nonce: 'end' },
      { t: 'res.cancel', id: idOf(seq + 1, 'end') },
    ], T0 + 60_001);
    expect(after.map((a) => a.mutated)).toEqual([true, true]);
    const last = toSnapshot(state);
    expect(last).not.toEqual(closed);
    runtime.close();
    const reopened = open();
    expect(reopened.recovery.recordsReplayed, 'records replayed after the last snapshot').toBe(1);
    expect(toSnapshot(reopened.state)).toEqual(last);
    expect(sizes(reopened.state)).toMatchObject({ reservations: SETTLED_MAX, settled: SETTLED_MAX });
    reopened.close();
  }, 180_000);
});
