// Snapshots with no single-buffer ceiling, and a failing snapshot that is an alarm, never a
// crash loop (issue #10, bounded state): version 2 snapshot files are chunks, each checked on
// its own, read one at a time; a shard's snapshot is cut into chunks of rows; a damaged chunk
// makes recovery fall back to the older snapshot; a snapshot that cannot be written leaves the
// log usable and the shard serving.

import * as fs from 'node:fs';
import * as path from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { rowsOf, snapshotPieces, toSnapshot, type Command, type ShardSnapshot } from '../src/domain/index.js';
import { ShardRuntime, decodeSnapshotChunks, decodeSnapshotWithTail, encodeSnapshotChunks, encodeSnapshotPieces, reusingChunks, snapshotChunks } from '../src/engine/shard-runtime.js';
import { ChunkedSnapshotWriter, encodeChunkedSnapshot, readSnapshotFile, readSnapshotFileInSteps } from '../src/wal/snapshot-codec.js';
import { snapshotFileName } from '../src/wal/segment-name.js';
import { appendRange, makeTempDir, openWal, removeTempDirs, snapshotFiles } from './wal-test-kit.js';

afterEach(() => removeTempDirs());

const T0 = 1_760_000_000_000;

function readSnapshot(file: string, lsn: number): ReturnType<typeof readSnapshotFile> {
  const fd = fs.openSync(file, 'r');
  try {
    return readSnapshotFile(fd, lsn);
  } finally {
    fs.closeSync(fd);
  }
}

describe('chunked snapshot files', () => {
  it('write and read back every chunk exactly, in order', () => {
    const dir = makeTempDir();
    const { wal } = openWal({ dir });
    appendRange(wal, 1, 10, 20, 5);
    const chunks = [Uint8Array.from([1, 2, 3]), new Uint8Array(0), Uint8Array.from({ length: 70_000 }, (_, i) => i & 0xff)];
    wal.writeSnapshot(10, chunks);
    wal.close();
    const read = readSnapshot(path.join(dir, snapshotFiles(dir)[0]!), 10);
    expect(read.ok).toBe(true);
    if (read.ok) expect(read.snapshot.chunks.map((c) => Buffer.from(c).toString('hex'))).toEqual(chunks.map((c) => Buffer.from(c).toString('hex')));
    const again = openWal({ dir });
    expect(again.result.snapshotLsn).toBe(10);
    again.wal.close();
  });

  it('are refused when any chunk is damaged, cut short or followed by junk, and recovery falls back to the older snapshot', () => {
    const dir = makeTempDir();
    const { wal } = openWal({ dir });
    appendRange(wal, 1, 10, 20, 5);
    wal.writeSnapshot(5, [Uint8Array.from([5, 5])]);
    wal.writeSnapshot(10, [Uint8Array.from([1, 2, 3]), Uint8Array.from([4, 5, 6, 7])]);
    wal.close();
    const newest = path.join(dir, snapshotFiles(dir)[1]!);
    const good = fs.readFileSync(newest);
    const variants: [string, Buffer][] = [
      ['a flipped byte in the second chunk', Buffer.from(good).fill(good.at(-1)! ^ 1, good.length - 1)],
      ['the last chunk cut short', good.subarray(0, good.length - 2)],
      ['bytes after the last chunk', Buffer.concat([good, Buffer.from([0])])],
      ['a chunk count one too many', (() => { const b = Buffer.from(good); b.writeUInt32LE(3, 16); return b; })()],
    ];
    for (const [label, bytes] of variants) {
      fs.writeFileSync(newest, bytes);
      expect(readSnapshot(newest, 10).ok, label).toBe(false);
      const r = openWal({ dir });
      expect(r.result.snapshotLsn, label).toBe(5);
      expect(r.events.some((e) => e.type === 'snapshot_invalid'), label).toBe(true);
      r.wal.close();
    }
  });

  it('still reads version 1 snapshots (one payload) as one chunk', () => {
    const dir = makeTempDir();
    const { wal } = openWal({ dir });
    appendRange(wal, 1, 3, 20, 3);
    wal.writeSnapshot(3, Uint8Array.from([9, 8, 7]));
    wal.close();
    const read = readSnapshot(path.join(dir, snapshotFiles(dir)[0]!), 3);
    expect(read.ok && read.snapshot.chunks.map((c) => [...c])).toEqual([[9, 8, 7]]);
  });
});

describe('a shard snapshot in chunks', () => {
  it('cuts long lists into chunks of rows and restores the very same state', () => {
    const dir = makeTempDir();
    const rt = ShardRuntime.open({ dir, shardId: 0, shardCount: 1 });
    rt.execute([{ t: 'sku.upsert', sku: 'tee', stock: 1_000_000, holdSeconds: 3600 }], T0);
    for (let b = 0; b < 6; b++) {
      const cmds: Command[] = Array.from({ length: 10_000 }, (_, i) => ({ t: 'res.reserve', sku: 'tee', buyerId: `b${b}-${i}`, qty: 1, nonce: 'n', idemKey: `k${i}` }));
      rt.execute(cmds, T0 + b);
    }
    const snap = toSnapshot(rt.state);
    const chunks = encodeSnapshotChunks(snap);
    expect(chunks.length).toBeGreaterThan(4); // 60,000 reservations, quota rows and keys, 50,000 rows a chunk
    expect(Math.max(...chunks.map((c) => c.length))).toBeLessThan(16 * 1024 * 1024);
    expect(decodeSnapshotChunks(chunks)).toEqual(snap);
    rt.snapshot();
    rt.close();
    const reopened = ShardRuntime.open({ dir, shardId: 0, shardCount: 1 });
    expect(reopened.recovery.recordsReplayed).toBe(0);
    expect(toSnapshot(reopened.state)).toEqual(snap);
    reopened.close();
  });

  it('in steps (as the checkpointer writes it): the same snapshot, the same chunks through the streaming writer, and a checked read-back', () => {
    const dir = makeTempDir();
    const rt = ShardRuntime.open({ dir, shardId: 0, shardCount: 1 });
    rt.execute([{ t: 'sku.upsert', sku: 'tee', stock: 1_000_000, holdSeconds: 3600 }], T0);
    rt.execute([{ t: 'sku.upsert', sku: 'cap', stock: 1_000_000, holdSeconds: 3600, dropId: 'd1' }], T0);
    const [put] = rt.execute([{ t: 'drop.put', dropId: 'd1', seed: 'a1'.repeat(32), secret: 'b2'.repeat(16), queue: { mode: 'fifo', admitPerSecond: 10, admitSeconds: 60 } } as Command], T0);
    expect(put!.outcome.ok).toBe(true);
    const cmds: Command[] = [];
    for (let i = 0; i < 9_000; i++) cmds.push({ t: 'res.reserve', sku: 'tee', buyerId: `b-${i}`, qty: 1, nonce: 'n', idemKey: `k${i}` });
    for (let i = 0; i < 3_000; i++) cmds.push({ t: 'q.join', dropId: 'd1', buyerId: `q-${i}` });
    rt.execute(cmds, T0 + 1);
    const ids = toSnapshot(rt.state).reservations.slice(0, 500).map((row) => row[0]);
    rt.execute(ids.map((id) => ({ t: 'res.cancel', id })), T0 + 2);
    const whole = toSnapshot(rt.state);
    expect(whole.reservations.length).toBe(9_000);
    expect(whole.quotas.length).toBeGreaterThan(0);
    expect(whole.queueEntries?.length).toBe(3_000);
    expect(whole.settledOrder.length).toBe(500);
    // The places that settled reservations and idempotency keys refer by are right.
    expect(whole.settledOrder).toEqual(Array.from({ length: 500 }, (_, i) => i));
    expect(whole.idempotency.length).toBe(9_000);
    for (const [key, i] of whole.idempotency) expect(key.startsWith(`${whole.reservations[i]![3]}\u0000`) && key.endsWith(`\u0000${whole.reservations[i]![8]}`)).toBe(true);
    // In pieces of at most 1,000 rows, with steps to rest at between them: the same snapshot.
    let head: ShardSnapshot | null = null;
    let steps = 0;
    let pieces = 0;
    for (const piece of snapshotPieces(rt.state, 1_000)) {
      steps++;
      if (piece === null) continue;
      if ('head' in piece) {
        expect(head).toBeNull();
        head = piece.head;
        for (const list of ['skus', 'reservations', 'quotas', 'idempotency', 'settledOrder', 'queueEntries'] as const) expect(head[list]).toEqual([]);
        continue;
      }
      pieces++;
      const rows = rowsOf(piece);
      expect(rows.length).toBeGreaterThan(0);
      expect(rows.length).toBeLessThanOrEqual(1_000);
      const list = head![piece.list] as unknown[];
      for (const row of rows) list.push(row);
    }
    expect(head).toEqual(whole);
    expect(pieces).toBeGreaterThanOrEqual(9 + 9 + 3 + 1);
    expect(steps).toBeGreaterThan(pieces);
    // Streamed from the live state, encoded a piece at a time: the chunks decode to the same.
    const live = [...encodeSnapshotPieces(snapshotPieces(rt.state, 2_000), 1234)].filter((c): c is Uint8Array => c !== null);
    expect(decodeSnapshotWithTail(live)).toEqual({ snapshot: whole, tailCrc: 1234 });
    // Streamed a chunk at a time, header last: byte for byte the file of the whole chunks.
    const chunks = [...snapshotChunks(whole, 1234, 2_000)];
    expect(chunks.length).toBeGreaterThan(5);
    expect(decodeSnapshotChunks(chunks)).toEqual(whole);
    const file = path.join(dir, 'streamed.snap');
    const fd = fs.openSync(file, 'w');
    // Synced every 64 KiB on the way (as the checkpointer does every 1 MB): the same bytes.
    const writer = new ChunkedSnapshotWriter(fd, 77, 64 * 1024);
    for (const c of chunks) writer.add(c);
    const bytes = writer.finish();
    fs.closeSync(fd);
    const expected = Buffer.concat(encodeChunkedSnapshot(77, chunks));
    expect(bytes).toBe(expected.length);
    expect(fs.readFileSync(file).equals(expected)).toBe(true);
    expect(expected.length).toBeGreaterThan(4 * 64 * 1024);
    expect(writer.syncs).toBeGreaterThanOrEqual(2);
    expect(writer.syncs).toBeLessThanOrEqual(Math.floor(expected.length / (64 * 1024)));
    // The checkpointer's read-back checks every chunk without keeping them, and catches a bad one.
    const check = (lsn: number): ReturnType<typeof readSnapshotFile> => {
      const f = fs.openSync(file, 'r');
      try {
        const st = readSnapshotFileInSteps(f, lsn, false);
        for (;;) {
          const x = st.next();
          if (x.done === true) return x.value;
        }
      } finally {
        fs.closeSync(f);
      }
    };
    expect(check(77).ok).toBe(true);
    const damaged = fs.readFileSync(file);
    damaged[damaged.length - 3]! ^= 0xff;
    fs.writeFileSync(file, damaged);
    const bad = check(77);
    expect(bad.ok).toBe(false);
    if (!bad.ok) expect(bad.reason).toMatch(new RegExp(`chunk ${chunks.length} checksum mismatch`));
    rt.close();
  });

  it('as the checkpointer makes and checks them, without a buffer per chunk: one reused encoder buffer gives the same bytes, and a read-back into one buffer keeps the head and still finds a bad chunk', () => {
    const dir = makeTempDir();
    const rt = ShardRuntime.open({ dir, shardId: 0, shardCount: 1 });
    rt.execute([{ t: 'sku.upsert', sku: 'tee', stock: 1_000_000, holdSeconds: 3600 }], T0);
    const cmds: Command[] = [];
    for (let i = 0; i < 30_000; i++) cmds.push({ t: 'res.reserve', sku: 'tee', buyerId: `buyer-${i}-${'x'.repeat(i % 40)}`, qty: 1, nonce: 'n' });
    rt.execute(cmds, T0 + 1);
    // Each chunk is copied as it comes: the next one is written over it.
    const encodeReusing = reusingChunks();
    const reused: Uint8Array[] = [];
    const buffers = new Set<ArrayBufferLike>();
    for (const c of encodeSnapshotPieces(snapshotPieces(rt.state, 1_000), 99, encodeReusing)) {
      if (c === null) continue;
      buffers.add(c.buffer);
      reused.push(Uint8Array.from(c));
    }
    const plain = [...encodeSnapshotPieces(snapshotPieces(rt.state, 1_000), 99)].filter((c): c is Uint8Array => c !== null);
    expect(reused.length).toBe(plain.length);
    expect(reused.length).toBeGreaterThan(10);
    for (let i = 0; i < plain.length; i++) expect(Buffer.from(reused[i]!).equals(Buffer.from(plain[i]!)), `chunk ${i}`).toBe(true);
    // Two buffers for every chunk (one would grow only for a chunk larger than it): msgpackr's
    // for the head and the lists of made rows, the row writer's for the reservations. `encode`
    // moves on through its buffer and takes a new one each time it runs out.
    expect(buffers.size).toBe(2);
    // Chunks of growing and shrinking sizes, the first one small: read back into one buffer,
    // the first (returned) is still itself, and a flipped byte in any later one is found.
    const chunks = [Uint8Array.from([9, 8, 7]), ...reused, Uint8Array.from({ length: 300_000 }, (_, i) => (i * 7) & 0xff), Uint8Array.from([1])];
    const file = path.join(dir, 'scratch.snap');
    fs.writeFileSync(file, Buffer.concat(encodeChunkedSnapshot(5, chunks)));
    const check = (): ReturnType<typeof readSnapshotFile> => {
      const f = fs.openSync(file, 'r');
      try {
        const st = readSnapshotFileInSteps(f, 5, false);
        for (;;) {
          const x = st.next();
          if (x.done === true) return x.value;
        }
      } finally {
        fs.closeSync(f);
      }
    };
    const good = check();
    expect(good.ok).toBe(true);
    if (good.ok) expect([...good.snapshot.payload]).toEqual([9, 8, 7]);
    const bytes = fs.readFileSync(file);
    // A byte inside the 300,000-byte chunk, read into the buffer the smaller ones were read into.
    const at = bytes.length - 1 - 8 - 100_000;
    const damaged = Buffer.from(bytes);
    damaged[at]! ^= 0x01;
    fs.writeFileSync(file, damaged);
    const bad = check();
    expect(bad.ok).toBe(false);
    if (!bad.ok) expect(bad.reason).toBe(`chunk ${chunks.length - 1} checksum mismatch`);
    rt.close();
  });

  it('turns a snapshot that cannot be written into an alarm: the shard keeps serving and its log stays usable', () => {
    const dir = makeTempDir();
    const rt = ShardRuntime.open({ dir, shardId: 0, shardCount: 1, snapshotEveryCommands: 10 });
    rt.execute([{ t: 'sku.upsert', sku: 'tee', stock: 100, holdSeconds: 3600 }], T0);
    // Every snapshot file name the shard could use is taken by a directory, so writing its
    // temp file fails, as on a full disk.
    const blocked = Array.from({ length: 80 }, (_, lsn) => path.join(dir, `${snapshotFileName(lsn + 1)}.tmp`));
    for (const p of blocked) fs.mkdirSync(p);
    for (let i = 0; i < 50; i++) {
      const [a] = rt.execute([{ t: 'res.reserve', sku: 'tee', buyerId: `x${i}`, qty: 1, nonce: 'n' }], T0 + i);
      expect(a!.outcome.ok).toBe(true);
      rt.snapshotIfDue();
    }
    for (const p of blocked) fs.rmSync(p, { recursive: true });
    expect(rt.snapshotFailures).toBeGreaterThan(0);
    expect(rt.lastSnapshotError).toMatch(/EISDIR|directory/);
    const [after] = rt.execute([{ t: 'res.reserve', sku: 'tee', buyerId: 'after', qty: 1, nonce: 'n' }], T0 + 100);
    expect(after!.outcome.ok).toBe(true);
    for (let i = 0; i < 10; i++) rt.execute([{ t: 'res.reserve', sku: 'tee', buyerId: `y${i}`, qty: 1, nonce: 'n' }], T0 + 200 + i);
    expect(rt.snapshotIfDue()).toBe(true); // the disk has room again: the next due snapshot is taken
    const state = toSnapshot(rt.state);
    rt.close();
    const reopened = ShardRuntime.open({ dir, shardId: 0, shardCount: 1 });
    expect(toSnapshot(reopened.state)).toEqual(state);
    reopened.close();
  });
});

describe('a shard with a large queue', () => {
  it('cuts its queue entries into chunks of rows like reservations, and reads them back exactly', async () => {
    const { apply, createShardState, fromSnapshot } = await import('../src/domain/index.js');
    const s = createShardState(0, 1);
    apply(s, { t: 'drop.put', dropId: 'big', seed: 'ab'.repeat(32), secret: 'cd'.repeat(16), queue: { mode: 'random', opensAt: T0, randomizeSeconds: 60 } }, T0);
    const n = 120_000;
    for (let i = 0; i < n; i++) apply(s, { t: 'q.join', dropId: 'big', buyerId: `buyer-${i}` }, T0 + 1);
    apply(s, { t: 'res.expire' }, T0 + 60_000); // fixes the order: every entry ranked
    const snap = toSnapshot(s);
    expect(snap.queueEntries).toHaveLength(n);
    const chunks = encodeSnapshotChunks(snap);
    // The queue no longer rides in the first chunk whole: three chunks of rows at least.
    expect(chunks.length).toBeGreaterThanOrEqual(4);
    expect(chunks[0]!.length).toBeLessThan(10_000);
    const back = decodeSnapshotChunks(chunks);
    const restored = fromSnapshot(back, s.config);
    expect(toSnapshot(restored)).toEqual(snap);
    const order = (st: typeof s) => apply(st, { t: 'drop.order', dropId: 'big', offset: 0, limit: n }, T0 + 60_001);
    expect(order(restored)).toEqual(order(s));
  });
});
