// A replay checks each logged command's fields as apply does: the check is also the only
// guard against a record that never went through apply (one published into a shard's
// replicated log stream by anything but its owner, or a log from before the core checked
// fields). Such a record stops recovery (and a follower) cleanly at once, with the log intact,
// instead of making a hold whose id a later snapshot cannot restore (found by review: a
// reserve with a 12-character nonce, accepted by a replay without the check, left a shard
// whose next recovery failed for good).

import { afterEach, describe, expect, it } from 'vitest';
import { toSnapshot, type Command } from '../src/domain/index.js';
import { encodeLogRecord } from '../src/engine/codec.js';
import { ShardRuntime } from '../src/engine/shard-runtime.js';
import { makeTempDir, openWal, removeTempDirs } from './wal-test-kit.js';

afterEach(() => removeTempDirs());

const T0 = 1_760_000_000_000;
// A nonce of 12 characters: the field check refuses it ("0..8 characters"); the state machine alone would take it.
const unchecked: Command = { t: 'res.reserve', sku: 'tee', buyerId: 'b1', qty: 1, nonce: 'abcdefghijkl' };

function shard(): { rt: ShardRuntime; dir: string } {
  const dir = makeTempDir();
  const rt = ShardRuntime.open({ dir, shardId: 0, shardCount: 1 });
  expect(rt.execute([{ t: 'sku.upsert', sku: 'tee', stock: 10, holdSeconds: 600 }], T0)[0]!.outcome.ok).toBe(true);
  return { rt, dir };
}

describe('a logged record whose command fails the field check', () => {
  it('is refused by a follower, which keeps its state', () => {
    const { rt } = shard();
    const before = toSnapshot(rt.state);
    expect(() => rt.applyRecords([{ lsn: 2, payload: encodeLogRecord([T0 + 1, [unchecked]]) }])).toThrow(/replay of record 2 diverged/);
    expect(toSnapshot(rt.state).reservations).toEqual(before.reservations);
    rt.close();
  });

  it('stops recovery at that record, with the log left as it was', () => {
    const { rt, dir } = shard();
    rt.close();
    const { wal } = openWal({ dir });
    wal.append(encodeLogRecord([T0 + 1, [unchecked]]));
    wal.commit();
    wal.close();
    expect(() => ShardRuntime.open({ dir, shardId: 0, shardCount: 1 })).toThrow(/replay of record 2 diverged/);
    const again = openWal({ dir });
    expect(again.records.map((r) => r.lsn)).toEqual([1, 2]);
    again.wal.close();
  });
});

describe('free text in the log', () => {
  it('replays as it was written: a reason may hold format characters, but may not begin with a byte order mark (the log\'s decoder drops one)', () => {
    const { rt, dir } = shard();
    const long = 'restock after the audit of the north warehouse, see ticket 4711';
    const [bom] = rt.execute([{ t: 'sku.adjust', sku: 'tee', delta: 2, actor: 'ops', reason: `\uFEFF${long}` }], T0 + 1);
    expect(bom!.outcome).toMatchObject({ ok: false, code: 'invalid_request', message: 'reason must not begin with a byte order mark (U+FEFF)' });
    const kept = `${long} \uFEFF\u200d👩‍👩‍👧`;
    expect(rt.execute([{ t: 'sku.adjust', sku: 'tee', delta: 2, actor: 'ops', reason: kept }], T0 + 2)[0]!.outcome.ok).toBe(true);
    const live = toSnapshot(rt.state);
    rt.close();
    const again = ShardRuntime.open({ dir, shardId: 0, shardCount: 1 });
    expect(toSnapshot(again.state)).toEqual(live);
    expect(JSON.stringify(live)).toContain(JSON.stringify(kept).slice(1, -1));
    again.close();
  });
});

describe('a field rule added since a log was written', () => {
  it('does not stop its replay: a reason an earlier version accepted with a leading byte order mark replays as written, and live it is refused', () => {
    const { rt, dir } = shard();
    rt.close();
    // What a version before the rule logged and acknowledged (a short text: msgpackr keeps its mark).
    const reason = '\uFEFFrecount';
    const { wal } = openWal({ dir });
    wal.append(encodeLogRecord([T0 + 1, [{ t: 'sku.adjust', sku: 'tee', delta: 2, actor: 'ops', reason } satisfies Command]]));
    wal.commit();
    wal.close();
    const again = ShardRuntime.open({ dir, shardId: 0, shardCount: 1 });
    expect(again.recovery.commandsReplayed).toBe(2);
    const sku = toSnapshot(again.state).skus[0]!;
    expect(sku[4]).toBe(12); // onHand
    expect(sku[20]![1].at(-1)!.reason).toBe(reason);
    const [live] = again.execute([{ t: 'sku.adjust', sku: 'tee', delta: 2, actor: 'ops', reason }], T0 + 2);
    expect(live!.outcome).toMatchObject({ ok: false, code: 'invalid_request', message: 'reason must not begin with a byte order mark (U+FEFF)' });
    again.close();
  });
});
