// Behaviour of FileWal in normal operation: group commit, segment rolls, lsn bookkeeping,
// bounds, snapshots and pruning. Crash and corruption cases live in file-wal-recovery.test.ts.

import * as fs from 'node:fs';
import * as path from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { FileWal, PAYLOAD_BYTES_MAX } from '../src/wal/file-wal.js';
import { snapshotFileName } from '../src/wal/segment-name.js';
import { encodeChunkedSnapshot } from '../src/wal/snapshot-codec.js';
import {
  appendRange,
  lsnOfFile,
  makeTempDir,
  openWal,
  payloadFor,
  recoverOnce,
  removeTempDirs,
  segmentFiles,
  snapshotFiles,
} from './wal-test-kit.js';

afterEach(removeTempDirs);

/** A snapshot of `lsn` written into the log's directory by someone else (a checkpointer); its path. */
function snapshotBeside(dir: string, lsn: number): string {
  const file = path.join(dir, snapshotFileName(lsn));
  fs.writeFileSync(file, Buffer.concat(encodeChunkedSnapshot(lsn, [payloadFor(lsn, 20)])));
  return file;
}

describe('FileWal append, commit and recover', () => {
  it('recovers every committed record, in order, across many segment rolls', () => {
    const dir = makeTempDir();
    const { wal, result } = openWal({ dir, segmentBytesMax: 128 });
    expect(result).toMatchObject({ lastLsn: 0, recordsReplayed: 0, snapshotLsn: 0 });
    let lsn = 0;
    for (const batch of [1, 5, 2, 17, 3, 8, 1, 1, 30, 4, 9, 6, 13]) {
      for (let i = 0; i < batch; i++) wal.append(payloadFor(++lsn, lsn % 23));
      wal.commit();
    }
    wal.close();
    expect(segmentFiles(dir).length).toBeGreaterThan(5);

    const again = recoverOnce({ dir, segmentBytesMax: 128 });
    expect(again.snapshot).toBeNull();
    expect(again.result).toMatchObject({ lastLsn: lsn, recordsReplayed: lsn, snapshotLsn: 0 });
    expect(again.records.map((r) => r.lsn)).toEqual(Array.from({ length: lsn }, (_, i) => i + 1));
    for (const r of again.records) expect(r.payload).toEqual(payloadFor(r.lsn, r.lsn % 23));
    expect(again.events).toEqual([]);
  });

  it('names each segment after its first lsn, and lsns continue across segments', () => {
    const dir = makeTempDir();
    const { wal } = openWal({ dir, segmentBytesMax: 100 });
    appendRange(wal, 1, 50, 20, 3);
    wal.close();
    const firstLsns = segmentFiles(dir).map(lsnOfFile);
    expect(firstLsns[0]).toBe(1);
    // Frames are 36 bytes and commits hold three, so each segment takes exactly one commit
    // beyond the 100-byte limit: 108 bytes, and the next segment starts three lsns later.
    expect(firstLsns).toEqual(Array.from({ length: 17 }, (_, i) => 1 + 3 * i));
    for (const name of segmentFiles(dir).slice(0, -1)) expect(fs.statSync(path.join(dir, name)).size).toBe(108);
  });

  it('keeps appends in memory until commit, which makes them durable', () => {
    const dir = makeTempDir();
    const { wal } = openWal({ dir });
    expect(wal.append(payloadFor(1, 10))).toBe(1);
    expect(wal.append(payloadFor(2, 10))).toBe(2);
    expect(wal.pendingCount).toBe(2);
    expect(wal.lastLsn).toBe(2);
    expect(wal.durableLsn).toBe(0);
    expect(fs.statSync(path.join(dir, segmentFiles(dir)[0]!)).size).toBe(0);
    wal.commit();
    expect(wal.pendingCount).toBe(0);
    expect(wal.durableLsn).toBe(2);
    expect(fs.statSync(path.join(dir, segmentFiles(dir)[0]!)).size).toBe(2 * (16 + 10));
    wal.close();
  });

  it('treats a commit with nothing pending as a no-op', () => {
    const dir = makeTempDir();
    const { wal } = openWal({ dir });
    wal.commit();
    appendRange(wal, 1, 3, 5, 10);
    const commits = wal.stats.commits;
    wal.commit();
    wal.commit();
    expect(wal.stats.commits).toBe(commits);
    wal.close();
  });

  it('counts commits, records and bytes in its stats', () => {
    const dir = makeTempDir();
    const { wal } = openWal({ dir });
    for (let i = 1; i <= 7; i++) wal.append(payloadFor(i, 4));
    wal.commit();
    wal.append(payloadFor(8, 0));
    wal.commit();
    expect(wal.stats).toMatchObject({ commits: 2, recordsCommitted: 8, bytesCommitted: 7 * 20 + 16 });
    expect(wal.stats.fsyncMsTotal).toBeGreaterThan(0);
    expect(wal.stats.lastCommitMs).toBeGreaterThan(0);
    wal.close();
  });

  it('round-trips empty payloads', () => {
    const dir = makeTempDir();
    const { wal } = openWal({ dir });
    appendRange(wal, 1, 5, 0, 2);
    wal.close();
    const again = recoverOnce({ dir });
    expect(again.records.map((r) => [r.lsn, r.payload.length])).toEqual([[1, 0], [2, 0], [3, 0], [4, 0], [5, 0]]);
  });

  it('rejects a payload over 64 MiB with a RangeError and does not consume an lsn', () => {
    const dir = makeTempDir();
    const { wal } = openWal({ dir });
    expect(PAYLOAD_BYTES_MAX).toBe(64 * 1024 * 1024);
    expect(() => wal.append(new Uint8Array(PAYLOAD_BYTES_MAX + 1))).toThrow(RangeError);
    expect(wal.lastLsn).toBe(0);
    expect(wal.pendingCount).toBe(0);
    expect(wal.append(payloadFor(1, 3))).toBe(1);
    wal.close();
  });

  it('accepts a payload of exactly 64 MiB and reads it back', () => {
    const dir = makeTempDir();
    const { wal } = openWal({ dir });
    const big = new Uint8Array(PAYLOAD_BYTES_MAX).fill(0xa5);
    big[PAYLOAD_BYTES_MAX - 1] = 1;
    wal.append(big);
    wal.close();
    const again = recoverOnce({ dir });
    expect(again.records.length).toBe(1);
    expect(Buffer.compare(again.records[0]!.payload, big)).toBe(0);
  });

  it('bounds the uncommitted bytes by pendingBytesMax', () => {
    const dir = makeTempDir();
    const { wal } = openWal({ dir, pendingBytesMax: 120 });
    wal.append(payloadFor(1, 40));
    wal.append(payloadFor(2, 40));
    expect(() => wal.append(payloadFor(3, 40))).toThrow(RangeError);
    wal.commit();
    expect(wal.append(payloadFor(3, 40))).toBe(3);
    wal.close();
  });

  it('refuses to append before recover and after close, and recover runs only once', () => {
    const dir = makeTempDir();
    const wal = new FileWal({ dir });
    expect(() => wal.append(payloadFor(1, 1))).toThrow(/recover/);
    wal.recover(() => {}, () => {});
    expect(() => wal.recover(() => {}, () => {})).toThrow(/exactly once/);
    wal.close();
    expect(() => wal.append(payloadFor(1, 1))).toThrow(/closed/);
  });

  it('commits pending records on close, and close is idempotent', () => {
    const dir = makeTempDir();
    const { wal } = openWal({ dir });
    wal.append(payloadFor(1, 8));
    wal.append(payloadFor(2, 8));
    wal.close();
    wal.close();
    expect(wal.durableLsn).toBe(2);
    expect(recoverOnce({ dir }).records.map((r) => r.lsn)).toEqual([1, 2]);
  });

  it('continues in the last segment after recovery', () => {
    const dir = makeTempDir();
    const first = openWal({ dir });
    appendRange(first.wal, 1, 10, 8, 4);
    first.wal.close();
    const second = openWal({ dir });
    expect(second.result.lastLsn).toBe(10);
    expect(second.wal.append(payloadFor(11, 8))).toBe(11);
    second.wal.close();
    expect(segmentFiles(dir)).toEqual(['wal-0000000000000001.log']);
    expect(recoverOnce({ dir }).records.map((r) => r.lsn)).toEqual(Array.from({ length: 11 }, (_, i) => i + 1));
  });

  it('refuses all further work after a commit fails with an I/O error', () => {
    const dir = makeTempDir();
    const { wal } = openWal({ dir });
    appendRange(wal, 1, 2, 4, 2);
    // Simulate a dead disk: the segment's descriptor goes away behind the WAL's back.
    const internals = wal as unknown as { fd: number };
    fs.closeSync(internals.fd);
    internals.fd = -1;
    wal.append(payloadFor(3, 4));
    expect(() => wal.commit()).toThrow();
    expect(wal.durableLsn).toBe(2);
    expect(() => wal.append(payloadFor(4, 4))).toThrow(/I\/O error/);
    expect(() => wal.commit()).toThrow(/I\/O error/);
    expect(() => wal.writeSnapshot(2, new Uint8Array(1))).toThrow(/I\/O error/);
    wal.close();
    expect(recoverOnce({ dir }).records.map((r) => r.lsn)).toEqual([1, 2]);
  });

  it('rejects options out of range', () => {
    expect(() => new FileWal({ dir: makeTempDir(), segmentBytesMax: 0 })).toThrow(RangeError);
    expect(() => new FileWal({ dir: makeTempDir(), segmentBytesMax: 1.5 })).toThrow(RangeError);
    expect(() => new FileWal({ dir: makeTempDir(), pendingBytesMax: 2 ** 40 })).toThrow(RangeError);
  });
});

describe('FileWal snapshots', () => {
  it('replays only the records after the snapshot on recovery', () => {
    const dir = makeTempDir();
    const { wal } = openWal({ dir, segmentBytesMax: 200 });
    appendRange(wal, 1, 40, 10, 5);
    wal.writeSnapshot(25, payloadFor(25, 100));
    appendRange(wal, 41, 60, 10, 5);
    wal.close();
    const again = recoverOnce({ dir, segmentBytesMax: 200 });
    expect(again.snapshot).toEqual({ lsn: 25, payload: payloadFor(25, 100) });
    expect(again.result).toMatchObject({ lastLsn: 60, snapshotLsn: 25, recordsReplayed: 35 });
    expect(again.records.map((r) => r.lsn)).toEqual(Array.from({ length: 35 }, (_, i) => i + 26));
  });

  it('prunes segments and snapshots older than the older of the two newest snapshots', () => {
    const dir = makeTempDir();
    const { wal, events } = openWal({ dir, segmentBytesMax: 100 });
    appendRange(wal, 1, 30, 10, 3);
    wal.writeSnapshot(30, payloadFor(30, 50));
    // The first snapshot deletes nothing: if it were damaged, recovery would need the log
    // from lsn 1.
    expect(segmentFiles(dir)[0]).toBe('wal-0000000000000001.log');
    appendRange(wal, 31, 60, 10, 3);
    wal.writeSnapshot(60, payloadFor(60, 50));
    expect(segmentFiles(dir).map(lsnOfFile)[0]).toBe(31);
    appendRange(wal, 61, 90, 10, 3);
    wal.writeSnapshot(85, payloadFor(85, 50));
    expect(snapshotFiles(dir)).toEqual(['snap-000000000000003c.snap', 'snap-0000000000000055.snap']);
    expect(segmentFiles(dir).map(lsnOfFile)[0]).toBe(61);
    wal.close();

    const deleted = events.filter((e) => e.type === 'segment_deleted').map((e) => path.basename(e.file));
    expect(deleted.length).toBeGreaterThan(0);
    for (const name of deleted) expect(fs.existsSync(path.join(dir, name))).toBe(false);
    const written = events.filter((e) => e.type === 'snapshot_written');
    expect(written.map((e) => e.type === 'snapshot_written' && [e.lsn, e.bytes])).toEqual([[30, 74], [60, 74], [85, 74]]);

    const again = recoverOnce({ dir, segmentBytesMax: 100 });
    expect(again.result).toMatchObject({ snapshotLsn: 85, lastLsn: 90, recordsReplayed: 5 });
  });

  it('adopts a snapshot written beside it (a checkpointer\'s), and removes one that is stale instead of leaving it unpruned', () => {
    const dir = makeTempDir();
    const { wal } = openWal({ dir, segmentBytesMax: 100 });
    appendRange(wal, 1, 40, 10, 3);
    const beside = (lsn: number): string => snapshotBeside(dir, lsn);
    expect(wal.adoptSnapshot(20, beside(20), 1, 1)).toBe(true);
    wal.writeSnapshot(30, payloadFor(30, 50));
    // A checkpoint of lsn 25 that finished after the log's own snapshot of 30: refused, and gone.
    const stale = beside(25);
    expect(wal.adoptSnapshot(25, stale, 1, 1)).toBe(false);
    expect(fs.existsSync(stale)).toBe(false);
    // One of an lsn the log wrote itself is refused and kept: it is the log's own file.
    expect(wal.adoptSnapshot(30, path.join(dir, snapshotFileName(30)), 1, 1)).toBe(false);
    expect(snapshotFiles(dir)).toEqual([snapshotFileName(20), snapshotFileName(30)]);
    expect(wal.adoptSnapshot(40, beside(40), 1, 1)).toBe(true);
    wal.close();
    expect(snapshotFiles(dir)).toEqual([snapshotFileName(30), snapshotFileName(40)]);
  });

  it('hands the files behind an adopted snapshot to a remover instead of deleting them on its own thread; files a remover never deleted are handed over again at the next snapshot, and after a restart', () => {
    const dir = makeTempDir();
    const { wal } = openWal({ dir, segmentBytesMax: 100 });
    appendRange(wal, 1, 40, 10, 3);
    const beside = (lsn: number): string => snapshotBeside(dir, lsn);
    const handed: string[][] = [];
    // A remover that never deletes: a checkpointer stopped, failed or killed before it got to them.
    const lose = (files: readonly string[]): void => { handed.push([...files]); };
    const segmentsBefore = segmentFiles(dir);
    expect(wal.adoptSnapshot(20, beside(20), 1, 1, lose)).toBe(true);
    expect(handed).toEqual([]); // one snapshot: nothing behind it may go yet
    expect(wal.adoptSnapshot(30, beside(30), 1, 1, lose)).toBe(true);
    // Behind the older kept snapshot (20): the segments wholly before lsn 21, no snapshot.
    expect(handed.length).toBe(1);
    const covered = segmentsBefore.filter((f, i) => i + 1 < segmentsBefore.length && lsnOfFile(segmentsBefore[i + 1]!) - 1 <= 20);
    expect(covered.length).toBeGreaterThan(0);
    expect(handed[0]!.map((f) => path.basename(f))).toEqual(covered);
    expect(segmentFiles(dir)).toEqual(segmentsBefore); // still on disk: the remover's to delete
    // The next snapshot hands over what it drops (snapshot 20, the segments behind 30) and,
    // again, what is still on disk of the last hand-over.
    expect(wal.adoptSnapshot(40, beside(40), 1, 1, lose)).toBe(true);
    const second = handed[1]!.map((f) => path.basename(f));
    expect(second).toContain(snapshotFileName(20));
    for (const f of covered) expect(second).toContain(f);
    // One that deletes: everything behind snapshot 30 goes, the kept log stays whole.
    appendRange(wal, 41, 50, 10, 3);
    expect(wal.adoptSnapshot(50, beside(50), 1, 1)).toBe(true);
    expect(snapshotFiles(dir)).toEqual([snapshotFileName(40), snapshotFileName(50)]);
    for (const f of handed.flat()) expect(fs.existsSync(f), f).toBe(false);
    expect(segmentFiles(dir).map(lsnOfFile)[0]).toBeLessThanOrEqual(41);
    // Lost once more, then a restart: recovery is as if they were gone, and its first
    // snapshot deletes them.
    appendRange(wal, 51, 60, 10, 3);
    expect(wal.adoptSnapshot(60, beside(60), 1, 1, lose)).toBe(true);
    expect(snapshotFiles(dir)).toContain(snapshotFileName(40));
    wal.close();
    const again = recoverOnce({ dir, segmentBytesMax: 100 });
    expect(again.result).toMatchObject({ snapshotLsn: 60, lastLsn: 60 });
    const reopened = openWal({ dir, segmentBytesMax: 100 });
    appendRange(reopened.wal, 61, 70, 10, 3);
    expect(reopened.wal.adoptSnapshot(70, beside(70), 1, 1)).toBe(true);
    reopened.wal.close();
    expect(snapshotFiles(dir)).toEqual([snapshotFileName(60), snapshotFileName(70)]);
    expect(segmentFiles(dir).map(lsnOfFile)[0]).toBeLessThanOrEqual(61);
    expect(recoverOnce({ dir, segmentBytesMax: 100 }).result).toMatchObject({ snapshotLsn: 70, lastLsn: 70 });
  });

  it('rolls to a fresh segment before a snapshot, so later records start a new file', () => {
    const dir = makeTempDir();
    const { wal } = openWal({ dir });
    appendRange(wal, 1, 10, 10, 10);
    wal.append(payloadFor(11, 10));
    wal.writeSnapshot(10, payloadFor(10, 10));
    wal.close();
    expect(segmentFiles(dir)).toEqual(['wal-0000000000000001.log', 'wal-000000000000000b.log']);
    const again = recoverOnce({ dir });
    expect(again.records.map((r) => r.lsn)).toEqual([11]);
  });

  it('refuses a snapshot lsn that is not durable yet or older than the newest snapshot', () => {
    const dir = makeTempDir();
    const { wal } = openWal({ dir });
    appendRange(wal, 1, 5, 4, 5);
    wal.append(payloadFor(6, 4));
    expect(() => wal.writeSnapshot(6, new Uint8Array(1))).toThrow(/durableLsn/);
    expect(() => wal.writeSnapshot(0, new Uint8Array(1))).toThrow(/durableLsn/);
    wal.writeSnapshot(5, new Uint8Array(1));
    expect(() => wal.writeSnapshot(4, new Uint8Array(1))).toThrow(/older than the newest/);
    wal.close();
  });

  it('writes the snapshot in the documented byte format', () => {
    const dir = makeTempDir();
    const { wal } = openWal({ dir });
    appendRange(wal, 1, 3, 4, 5);
    wal.writeSnapshot(3, Uint8Array.from([9, 8, 7]));
    wal.close();
    const bytes = fs.readFileSync(path.join(dir, 'snap-0000000000000003.snap'));
    expect(bytes.subarray(0, 4).toString('latin1')).toBe('FSNP');
    expect(bytes.readUInt32LE(4)).toBe(1);
    expect(bytes.readBigUInt64LE(8)).toBe(3n);
    expect(bytes.readUInt32LE(16)).toBe(3);
    expect([...bytes.subarray(24)]).toEqual([9, 8, 7]);
    expect(fs.readdirSync(dir).filter((n) => n.endsWith('.tmp'))).toEqual([]);
  });
});
