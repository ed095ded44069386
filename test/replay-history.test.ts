// A replay gives the logged history, it does not judge it again: a logged command that the
// current field checks would refuse (as a later version with a stricter rule would) still
// replays to the change it made when it was applied. Live commands are still checked.

import { afterEach, describe, expect, it } from 'vitest';
import { apply, createShardState, toSnapshot, type Command } from '../src/domain/index.js';
import { encodeLogRecord } from '../src/engine/codec.js';
import { ShardRuntime } from '../src/engine/shard-runtime.js';
import { makeTempDir, openWal, removeTempDirs } from './wal-test-kit.js';

afterEach(() => removeTempDirs());

const T0 = 1_760_000_000_000;

describe('replaying the log', () => {
  it('replays a logged command the field checks now refuse, and still refuses it live', () => {
    // A buyer id with a control character: refused by today's checks, harmless to the state.
    const odd: Command = { t: 'res.reserve', sku: 'tee', buyerId: 'buyer\u0007one', qty: 1, nonce: 'abc' };
    const live = createShardState(0, 1);
    expect(apply(live, { t: 'sku.upsert', sku: 'tee', stock: 10, holdSeconds: 600 }, T0).outcome.ok).toBe(true);
    const refusedLive = apply(live, odd, T0 + 1);
    expect(refusedLive.outcome).toMatchObject({ ok: false, code: 'invalid_request' });
    expect(refusedLive.mutated).toBe(false);

    const dir = makeTempDir();
    const rt = ShardRuntime.open({ dir, shardId: 0, shardCount: 1 });
    expect(rt.execute([{ t: 'sku.upsert', sku: 'tee', stock: 10, holdSeconds: 600 }], T0)[0]!.outcome.ok).toBe(true);
    rt.close();
    // The record an older version (with a laxer rule) would have logged for it.
    const { wal } = openWal({ dir });
    wal.append(encodeLogRecord([T0 + 1, [odd]]));
    wal.commit();
    wal.close();

    const reopened = ShardRuntime.open({ dir, shardId: 0, shardCount: 1 });
    expect(reopened.recovery.commandsReplayed).toBe(2);
    const snap = toSnapshot(reopened.state);
    expect(snap.reservations.map((r) => r[3])).toEqual(['buyer\u0007one']);
    expect(snap.skus[0]![5]).toBe(1); // reserved
    // Live, through the runtime, the same command is refused and changes nothing.
    const [again] = reopened.execute([{ ...odd, nonce: 'abd' }], T0 + 2);
    expect(again!.outcome).toMatchObject({ ok: false, code: 'invalid_request' });
    expect(toSnapshot(reopened.state).reservations.length).toBe(1);
    reopened.close();
  });
});
