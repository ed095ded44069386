// Replay of the ERP outbox is exact whatever the replaying process is configured with.
// Random batches (pays, cancels, expiries, erp.mode toggles, acks inside and past the end,
// reads) go through a shard runtime with frequent snapshots; the newest WAL segment is cut
// at a random byte, as a crash mid-write leaves it; each reopen uses a random legacy setting
// (as a process with or without FLASH_ERP_* would). The recovered state must equal, bit for
// bit, the state as of the last whole record, and per SKU sold must always equal delivered +
// undelivered + not queued units.

import fc from 'fast-check';
import { mkdtempSync, readdirSync, rmSync, statSync, truncateSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, test } from 'vitest';
import { apply, createShardState, fromSnapshot, toSnapshot, type Command, type ShardSnapshot, type ShardState } from '../src/domain/index.js';
import { ShardRuntime } from '../src/engine/shard-runtime.js';

const T0 = 1_700_000_000_000;
const dirs: string[] = [];
afterAll(() => {
  for (const dir of dirs) rmSync(dir, { recursive: true, force: true });
});

type Op =
  | { k: 'upsert'; sku: string }
  | { k: 'reserve'; sku: string; qty: number }
  | { k: 'pay'; back: number }
  | { k: 'cancel'; back: number }
  | { k: 'expire' }
  | { k: 'mode'; enabled: boolean }
  /** An ack up to `ahead` events past the last acknowledged one (past the end sometimes). */
  | { k: 'ack'; ahead: number }
  | { k: 'pending' }
  | { k: 'reconcile' };

const opArb: fc.Arbitrary<Op> = fc.oneof(
  { weight: 6, arbitrary: fc.record({ k: fc.constant('reserve' as const), sku: fc.constantFrom('a', 'b'), qty: fc.integer({ min: 1, max: 3 }) }) },
  { weight: 6, arbitrary: fc.record({ k: fc.constant('pay' as const), back: fc.nat(4) }) },
  { weight: 1, arbitrary: fc.record({ k: fc.constant('cancel' as const), back: fc.nat(4) }) },
  { weight: 1, arbitrary: fc.constant({ k: 'expire' as const }) },
  { weight: 3, arbitrary: fc.record({ k: fc.constant('mode' as const), enabled: fc.boolean() }) },
  { weight: 4, arbitrary: fc.record({ k: fc.constant('ack' as const), ahead: fc.integer({ min: 0, max: 6 }) }) },
  { weight: 1, arbitrary: fc.constant({ k: 'pending' as const }) },
  { weight: 1, arbitrary: fc.constant({ k: 'reconcile' as const }) },
);

interface Batch {
  dtMs: number;
  ops: Op[];
}

const batchesArb = (max: number): fc.Arbitrary<Batch[]> => fc.array(
  fc.record({ dtMs: fc.integer({ min: 0, max: 20_000 }), ops: fc.array(opArb, { minLength: 1, maxLength: 4 }) }),
  { minLength: 1, maxLength: max },
);

let nonce = 0;

/** Concrete commands; reservations and ack positions are picked from the model's state now. */
function commandsOf(ops: Op[], model: ShardState): Command[] {
  const ids = [...model.reservations.values()].map((r) => r.id);
  const pick = (back: number): string => ids[Math.max(0, ids.length - 1 - back)] ?? '0.zzzzzzzz';
  const ackedSeq = model.outboxLastSeq - model.outbox.length;
  return ops.map((op): Command => {
    switch (op.k) {
      case 'upsert': return { t: 'sku.upsert', sku: op.sku, stock: 40, holdSeconds: 30 };
      case 'reserve': return { t: 'res.reserve', sku: op.sku, buyerId: `u${nonce % 5}`, qty: op.qty, nonce: (nonce++).toString(36) };
      case 'pay': return { t: 'res.pay', id: pick(op.back), paymentRef: 'p' };
      case 'cancel': return { t: 'res.cancel', id: pick(op.back) };
      case 'expire': return { t: 'res.expire' };
      case 'mode': return { t: 'erp.mode', enabled: op.enabled };
      case 'ack': return { t: 'erp.ack', upToSeq: ackedSeq + op.ahead };
      case 'pending': return { t: 'erp.pending', afterSeq: 0, max: 5 };
      case 'reconcile': return { t: 'erp.reconcile' };
    }
  });
}

/** sold = delivered + undelivered + not queued, for every SKU (nothing here is from an old snapshot). */
function expectUnitsAddUp(state: ShardState): void {
  const queued = new Map<string, number>();
  for (const e of state.outbox) queued.set(e.sku, (queued.get(e.sku) ?? 0) + e.qty);
  for (const s of state.skus.values()) {
    expect(s.erpUncountedUnits, s.sku).toBe(0);
    expect(s.erpDeliveredUnits + (queued.get(s.sku) ?? 0) + s.erpNotQueuedUnits, `${s.sku}: delivered + undelivered + not queued`).toBe(s.sold);
  }
}

interface Run {
  firstMode: boolean;
  batches: Batch[];
  after: Batch[];
  legacy: [boolean, boolean, boolean];
  snapshotEveryCommands: number;
  cutAt: number;
}

function open(dir: string, legacy: boolean, run: Run): ShardRuntime {
  return ShardRuntime.open({ dir, shardId: 0, shardCount: 1, config: { legacyOutboxEnabled: legacy, expireBatchMax: 2 }, snapshotEveryCommands: run.snapshotEveryCommands });
}

function drive(rt: ShardRuntime, model: ShardState, batches: Batch[], clock: { ms: number }, onLogged: () => void): void {
  for (const b of batches) {
    clock.ms += b.dtMs;
    const commands = commandsOf(b.ops, model);
    const answers = rt.execute(commands, clock.ms);
    const expected = commands.map((c) => apply(model, c, clock.ms));
    expect(answers).toEqual(expected);
    expectUnitsAddUp(model);
    if (expected.some((a) => a.mutated)) onLogged();
  }
}

function newestSegment(dir: string): { file: string; bytes: number } | null {
  const name = readdirSync(dir).filter((n) => /^wal-[0-9a-f]+\.log$/.test(n)).sort().pop();
  if (name === undefined) return null;
  const file = join(dir, name);
  return { file, bytes: statSync(file).size };
}

function crashAndReplay(run: Run): void {
  const dir = mkdtempSync(join(tmpdir(), 'flash-erp-mode-'));
  dirs.push(dir);
  // The adapter's first act on a new log: the mode of the first process's settings.
  const model = createShardState(0, 1, { legacyOutboxEnabled: run.firstMode, expireBatchMax: 2 });
  const byLsn: ShardSnapshot[] = [toSnapshot(model)];
  const clock = { ms: T0 };
  const rt = open(dir, run.firstMode, run);
  const first: Batch = { dtMs: 0, ops: [{ k: 'mode', enabled: run.firstMode }, { k: 'upsert', sku: 'a' }, { k: 'upsert', sku: 'b' }] };
  drive(rt, model, [first, ...run.batches], clock, () => byLsn.push(toSnapshot(model)));
  expect(toSnapshot(rt.state)).toEqual(toSnapshot(model));
  rt.close();

  const segment = newestSegment(dir);
  if (segment !== null) truncateSync(segment.file, Math.floor(run.cutAt * segment.bytes));
  const recovered = open(dir, run.legacy[0], run);
  const lsn = recovered.recovery.lastLsn;
  expect(lsn).toBeLessThanOrEqual(byLsn.length - 1);
  expect(toSnapshot(recovered.state), `recovered to lsn ${lsn}, whatever the settings`).toEqual(byLsn[lsn]);

  // A process with other settings goes on, and is reopened by one with others again.
  const resumed = fromSnapshot(structuredClone(byLsn[lsn]!), recovered.state.config);
  drive(recovered, resumed, [{ dtMs: 1, ops: [{ k: 'mode', enabled: run.legacy[1] }] }, ...run.after], clock, () => {});
  recovered.close();
  const again = open(dir, run.legacy[2], run);
  expect(toSnapshot(again.state), 'state after a second recovery').toEqual(toSnapshot(resumed));
  again.close();
}

describe('replay of the ERP outbox', () => {
  test('with erp.mode toggles and acks anywhere, a crash at any byte and any settings on reopen recover the state of the last whole record', () => {
    const runArb: fc.Arbitrary<Run> = fc.record({
      firstMode: fc.boolean(),
      batches: batchesArb(25),
      after: batchesArb(5),
      legacy: fc.tuple(fc.boolean(), fc.boolean(), fc.boolean()),
      snapshotEveryCommands: fc.integer({ min: 2, max: 15 }),
      cutAt: fc.oneof(fc.double({ min: 0, max: 1, noNaN: true }), fc.constant(1)),
    });
    fc.assert(fc.property(runArb, crashAndReplay), { numRuns: 80 });
  });
});
