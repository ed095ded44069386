// Recovery rules of FileWal pinned down on real files: what counts as a torn tail (cut off
// and reported), what counts as corruption (refuse to start, naming file and offset), how
// snapshots and the log fit together, and a property test of crash-then-recover.

import * as fs from 'node:fs';
import * as path from 'node:path';
import fc from 'fast-check';
import { afterEach, describe, expect, it } from 'vitest';
import { WalCorruptionError, type WalEvent } from '../src/wal/file-wal.js';
import {
  appendRange,
  copyWalDir,
  flipBit,
  frameOffsets,
  lsnOfFile,
  makeTempDir,
  openWal,
  payloadFor,
  recoverOnce,
  removeTempDirs,
  segmentFiles,
  snapshotFiles,
  writeSegmentFile,
  writeSnapshotFile,
} from './wal-test-kit.js';

afterEach(removeTempDirs);

const FRAME_HEADER = 16;
const range = (from: number, to: number): number[] => Array.from({ length: Math.max(0, to - from + 1) }, (_, i) => from + i);

/** Runs a recovery that must fail and returns its WalCorruptionError. */
function corruptionOf(dir: string): WalCorruptionError {
  try {
    recoverOnce({ dir });
  } catch (error) {
    if (error instanceof WalCorruptionError) return error;
    throw error;
  }
  throw new Error('recovery succeeded on a corrupt log');
}

function expectCorruption(dir: string, file: string, offset: number, reason: RegExp): void {
  const error = corruptionOf(dir);
  expect(error.file).toBe(file);
  expect(error.offset).toBe(offset);
  expect(error.message).toContain(`WAL corrupt in ${file} at offset ${offset}`);
  expect(error.message).toMatch(reason);
  expect(error.message).toContain('refusing to start');
}

/** A log of records 1..20 with 24-byte payloads over several segments of 200 bytes. */
function makeLog(): { dir: string; last: string; lastSize: number; finalFrame: number } {
  const dir = makeTempDir();
  const { wal } = openWal({ dir, segmentBytesMax: 200 });
  appendRange(wal, 1, 20, 24, 4);
  wal.close();
  const last = path.join(dir, segmentFiles(dir).at(-1)!);
  const lastSize = fs.statSync(last).size;
  return { dir, last, lastSize, finalFrame: lastSize - (FRAME_HEADER + 24) };
}

const tornEvent = (file: string, offset: number, bytesDropped: number): WalEvent => ({
  type: 'torn_tail_truncated',
  file,
  offset,
  bytesDropped,
});

describe('recovery of a torn tail', () => {
  it('recovers exactly the earlier records when the final frame is cut at any byte, and keeps appending', () => {
    const log = makeLog();
    expect(segmentFiles(log.dir).length).toBeGreaterThan(2);
    for (let cut = log.finalFrame; cut < log.lastSize; cut++) {
      const dir = copyWalDir(log.dir);
      const last = path.join(dir, path.basename(log.last));
      fs.truncateSync(last, cut);
      const first = openWal({ dir, segmentBytesMax: 200 });
      expect(first.records.map((r) => r.lsn)).toEqual(range(1, 19));
      expect(first.result.lastLsn).toBe(19);
      expect(first.events).toEqual(cut === log.finalFrame ? [] : [tornEvent(last, log.finalFrame, cut - log.finalFrame)]);
      expect(fs.statSync(last).size).toBe(log.finalFrame);
      expect(first.wal.append(payloadFor(20, 5))).toBe(20);
      expect(first.wal.append(payloadFor(21, 5))).toBe(21);
      first.wal.close();

      const second = recoverOnce({ dir, segmentBytesMax: 200 });
      expect(second.events).toEqual([]);
      expect(second.records.map((r) => r.lsn)).toEqual(range(1, 21));
      expect(second.records[19]!.payload).toEqual(payloadFor(20, 5));
      fs.rmSync(dir, { recursive: true });
    }
  });

  it('treats a flipped bit in the final record at end of file as a torn tail', () => {
    for (const [what, offsetInFrame] of [['payload', FRAME_HEADER + 23], ['checksum', 4], ['lsn', 9]] as const) {
      const log = makeLog();
      flipBit(log.last, log.finalFrame + offsetInFrame, 3);
      const r = recoverOnce({ dir: log.dir });
      expect(r.records.map((x) => x.lsn), what).toEqual(range(1, 19));
      expect(r.events).toEqual([tornEvent(log.last, log.finalFrame, FRAME_HEADER + 24)]);
    }
  });

  it('treats an all-zero remainder at the end of the last segment as a torn tail', () => {
    const log = makeLog();
    fs.appendFileSync(log.last, new Uint8Array(4096));
    const r = recoverOnce({ dir: log.dir });
    expect(r.records.map((x) => x.lsn)).toEqual(range(1, 20));
    expect(r.events).toEqual([tornEvent(log.last, log.lastSize, 4096)]);
    expect(fs.statSync(log.last).size).toBe(log.lastSize);
  });

  it('treats a half-written final frame followed by zero fill as a torn tail', () => {
    const log = makeLog();
    const bytes = fs.readFileSync(log.last);
    bytes.fill(0, log.finalFrame + FRAME_HEADER + 10);
    fs.writeFileSync(log.last, Buffer.concat([bytes, new Uint8Array(100)]));
    const r = recoverOnce({ dir: log.dir });
    expect(r.records.map((x) => x.lsn)).toEqual(range(1, 19));
    expect(r.events).toEqual([tornEvent(log.last, log.finalFrame, FRAME_HEADER + 24 + 100)]);
  });

  it('treats a few bytes of a header at the end of the last segment as a torn tail', () => {
    const log = makeLog();
    fs.appendFileSync(log.last, Uint8Array.from([1, 2, 3, 4, 5]));
    const r = recoverOnce({ dir: log.dir });
    expect(r.records.length).toBe(20);
    expect(r.events).toEqual([tornEvent(log.last, log.lastSize, 5)]);
  });
});

describe('recovery refuses corruption', () => {
  it('names the file and offset of a flipped bit in a record that has data after it', () => {
    const log = makeLog();
    const middle = log.finalFrame - (FRAME_HEADER + 24);
    flipBit(log.last, middle + FRAME_HEADER + 2);
    expectCorruption(log.dir, log.last, middle, /checksum mismatch/);
  });

  it('refuses a length field that points past the end of the file while good records follow', () => {
    const log = makeLog();
    const middle = log.finalFrame - (FRAME_HEADER + 24);
    const bytes = fs.readFileSync(log.last);
    bytes.writeUInt32LE(24 + 1000, middle);
    fs.writeFileSync(log.last, bytes);
    expectCorruption(log.dir, log.last, middle, /past end of file, yet a good record follows/);
  });

  it('refuses a length over the maximum when good records follow it', () => {
    const log = makeLog();
    const middle = log.finalFrame - (FRAME_HEADER + 24);
    const bytes = fs.readFileSync(log.last);
    bytes.writeUInt32LE(0xffff_fff0, middle);
    fs.writeFileSync(log.last, bytes);
    expectCorruption(log.dir, log.last, middle, /over the maximum/);
  });

  it('refuses a flipped bit in a segment that is not the last, even in its final record', () => {
    const log = makeLog();
    const first = path.join(log.dir, segmentFiles(log.dir)[0]!);
    const size = fs.statSync(first).size;
    flipBit(first, size - 1);
    expectCorruption(log.dir, first, size - (FRAME_HEADER + 24), /checksum mismatch in a segment that is not the last/);
  });

  it('refuses a segment that is not the last when it is cut short or has zeros appended', () => {
    const cutShort = makeLog();
    const first = path.join(cutShort.dir, segmentFiles(cutShort.dir)[0]!);
    const size = fs.statSync(first).size;
    fs.truncateSync(first, size - 3);
    expectCorruption(cutShort.dir, first, size - (FRAME_HEADER + 24), /past end of file in a segment that is not the last/);

    const zeroFilled = makeLog();
    const second = path.join(zeroFilled.dir, segmentFiles(zeroFilled.dir)[1]!);
    const secondSize = fs.statSync(second).size;
    fs.appendFileSync(second, new Uint8Array(64));
    expectCorruption(zeroFilled.dir, second, secondSize, /not the last/);
  });

  it('refuses a record whose lsn skips one inside a segment', () => {
    const dir = makeTempDir();
    const file = writeSegmentFile(dir, 1, [1, 2, 4, 5], 10);
    expectCorruption(dir, file, frameOffsets([10, 10, 10])[2]!, /lsn 4 where lsn 3 was expected/);
  });

  it('refuses a good frame with an out-of-sequence lsn even at the end of the last segment', () => {
    const dir = makeTempDir();
    const file = writeSegmentFile(dir, 1, [1, 2, 3, 9], 10);
    expectCorruption(dir, file, 3 * (FRAME_HEADER + 10), /lsn 9 where lsn 4 was expected/);
  });

  it('refuses a segment whose first record differs from the lsn in its name', () => {
    const dir = makeTempDir();
    const file = writeSegmentFile(dir, 1, [2, 3], 10);
    expectCorruption(dir, file, 0, /lsn 2 where lsn 1 was expected/);
  });

  it('refuses a log that does not start at lsn 1 when there is no snapshot', () => {
    const dir = makeTempDir();
    const file = writeSegmentFile(dir, 5, [5, 6], 10);
    expectCorruption(dir, file, 0, /no valid snapshot, so it must start at lsn 1/);
  });

  it('refuses a gap between segments that no snapshot covers', () => {
    const dir = makeTempDir();
    writeSegmentFile(dir, 1, range(1, 5), 10);
    const file = writeSegmentFile(dir, 7, [7, 8], 10);
    expectCorruption(dir, file, 0, /lsns 6\.\.6 are missing/);
  });

  it('refuses segments that overlap', () => {
    const dir = makeTempDir();
    writeSegmentFile(dir, 1, range(1, 5), 10);
    const file = writeSegmentFile(dir, 5, [5, 6], 10);
    expectCorruption(dir, file, 0, /overlapping/);
  });

  it('refuses a gap between the snapshot and the first record after it', () => {
    const dir = makeTempDir();
    writeSnapshotFile(dir, 100, payloadFor(100, 10));
    writeSegmentFile(dir, 95, range(95, 100), 10);
    const file = writeSegmentFile(dir, 105, range(105, 110), 10);
    expectCorruption(dir, file, 0, /lsns 101\.\.104 are missing/);

    const alone = makeTempDir();
    writeSnapshotFile(alone, 100, payloadFor(100, 10));
    const only = writeSegmentFile(alone, 105, range(105, 110), 10);
    expectCorruption(alone, only, 0, /snapshot ends at lsn 100; lsns 101\.\.104 are missing/);
  });
});

describe('recovery of directories and snapshots', () => {
  it('starts fresh in a missing directory and creates it', () => {
    const dir = path.join(makeTempDir(), 'a', 'b', 'shard-0');
    const first = openWal({ dir });
    expect(first.snapshot).toBeNull();
    expect(first.result).toMatchObject({ lastLsn: 0, recordsReplayed: 0, snapshotLsn: 0 });
    appendRange(first.wal, 1, 3, 4, 3);
    first.wal.close();
    expect(recoverOnce({ dir }).records.map((r) => r.lsn)).toEqual([1, 2, 3]);
  });

  it('accepts empty segment files and continues in the last one', () => {
    const dir = makeTempDir();
    fs.writeFileSync(path.join(dir, 'wal-0000000000000001.log'), '');
    const first = openWal({ dir });
    expect(first.result.lastLsn).toBe(0);
    appendRange(first.wal, 1, 4, 4, 2);
    first.wal.close();
    fs.writeFileSync(path.join(dir, 'wal-0000000000000005.log'), '');
    const second = openWal({ dir });
    expect(second.records.map((r) => r.lsn)).toEqual([1, 2, 3, 4]);
    appendRange(second.wal, 5, 6, 4, 2);
    second.wal.close();
    expect(segmentFiles(dir)).toEqual(['wal-0000000000000001.log', 'wal-0000000000000005.log']);
    expect(recoverOnce({ dir }).records.map((r) => r.lsn)).toEqual(range(1, 6));
  });

  it('replays the whole log when there is no snapshot', () => {
    const dir = makeTempDir();
    writeSegmentFile(dir, 1, range(1, 7), 3);
    const r = recoverOnce({ dir });
    expect(r.snapshot).toBeNull();
    expect(r.records.map((x) => x.lsn)).toEqual(range(1, 7));
    expect(r.records[6]!.payload).toEqual(payloadFor(7, 3));
  });

  it('skips records the snapshot already covers', () => {
    const dir = makeTempDir();
    writeSnapshotFile(dir, 3, payloadFor(3, 5));
    writeSegmentFile(dir, 1, range(1, 6), 3);
    const r = recoverOnce({ dir });
    expect(r.snapshot).toEqual({ lsn: 3, payload: payloadFor(3, 5) });
    expect(r.records.map((x) => x.lsn)).toEqual([4, 5, 6]);
    expect(r.result).toMatchObject({ lastLsn: 6, snapshotLsn: 3, recordsReplayed: 3 });
  });

  it('starts from a snapshot alone when every segment was deleted', () => {
    const dir = makeTempDir();
    const first = openWal({ dir });
    appendRange(first.wal, 1, 30, 8, 10);
    first.wal.writeSnapshot(30, payloadFor(30, 40));
    first.wal.close();
    for (const name of segmentFiles(dir)) fs.unlinkSync(path.join(dir, name));
    const second = openWal({ dir });
    expect(second.snapshot).toEqual({ lsn: 30, payload: payloadFor(30, 40) });
    expect(second.records).toEqual([]);
    expect(second.result.lastLsn).toBe(30);
    expect(second.wal.append(payloadFor(31, 8))).toBe(31);
    second.wal.close();
    expect(segmentFiles(dir)).toEqual(['wal-000000000000001f.log']);
    expect(recoverOnce({ dir }).records.map((r) => r.lsn)).toEqual([31]);
  });

  it('accepts a snapshot newer than every record and continues after the snapshot', () => {
    const dir = makeTempDir();
    writeSegmentFile(dir, 1, range(1, 10), 4);
    writeSnapshotFile(dir, 50, payloadFor(50, 4));
    const first = openWal({ dir });
    expect(first.records).toEqual([]);
    expect(first.result).toMatchObject({ lastLsn: 50, snapshotLsn: 50, recordsReplayed: 0 });
    appendRange(first.wal, 51, 52, 4, 2);
    first.wal.close();
    expect(segmentFiles(dir)).toEqual(['wal-0000000000000001.log', 'wal-0000000000000033.log']);
    const second = recoverOnce({ dir });
    expect(second.records.map((r) => r.lsn)).toEqual([51, 52]);
  });

  it('falls back to the older snapshot when the newest is damaged', () => {
    const dir = makeTempDir();
    const first = openWal({ dir, segmentBytesMax: 100 });
    appendRange(first.wal, 1, 20, 8, 2);
    first.wal.writeSnapshot(20, payloadFor(20, 30));
    appendRange(first.wal, 21, 40, 8, 2);
    first.wal.writeSnapshot(40, payloadFor(40, 30));
    appendRange(first.wal, 41, 45, 8, 2);
    first.wal.close();
    const newest = path.join(dir, 'snap-0000000000000028.snap');
    flipBit(newest, 30);
    const r = recoverOnce({ dir, segmentBytesMax: 100 });
    expect(r.events).toEqual([{ type: 'snapshot_invalid', file: newest, reason: 'checksum mismatch' }]);
    expect(r.snapshot).toEqual({ lsn: 20, payload: payloadFor(20, 30) });
    expect(r.records.map((x) => x.lsn)).toEqual(range(21, 45));
  });

  it('refuses to start when the newest snapshot is damaged and the log no longer covers the older one', () => {
    const dir = makeTempDir();
    const first = openWal({ dir, segmentBytesMax: 100 });
    appendRange(first.wal, 1, 20, 8, 2);
    first.wal.writeSnapshot(20, payloadFor(20, 30));
    appendRange(first.wal, 21, 40, 8, 2);
    first.wal.writeSnapshot(40, payloadFor(40, 30));
    first.wal.close();
    fs.truncateSync(path.join(dir, 'snap-0000000000000028.snap'), 10);
    const oldest = segmentFiles(dir)[0]!;
    expect(lsnOfFile(oldest)).toBeLessThanOrEqual(21);
    fs.unlinkSync(path.join(dir, oldest));
    const file = path.join(dir, segmentFiles(dir)[0]!);
    expectCorruption(dir, file, 0, /snapshot ends at lsn 20/);
  });

  it('reports every damaged snapshot and needs the log from lsn 1 when none is valid', () => {
    const dir = makeTempDir();
    writeSegmentFile(dir, 1, range(1, 5), 4);
    const damaged = [
      writeSnapshotFile(dir, 2, payloadFor(2, 8)),
      writeSnapshotFile(dir, 3, payloadFor(3, 8)),
      writeSnapshotFile(dir, 4, payloadFor(4, 8)),
    ];
    fs.truncateSync(damaged[0]!, 5); // shorter than the header
    flipBit(damaged[1]!, 0); // bad magic
    fs.appendFileSync(damaged[2]!, 'x'); // size disagrees with the length field
    const r = recoverOnce({ dir });
    expect(r.events.map((e) => e.type === 'snapshot_invalid' && [path.basename(e.file), e.reason])).toEqual([
      ['snap-0000000000000004.snap', 'payload length 8 does not match the file size 33'],
      ['snap-0000000000000003.snap', 'bad magic'],
      ['snap-0000000000000002.snap', 'file has 5 bytes, shorter than the header'],
    ]);
    expect(r.snapshot).toBeNull();
    expect(r.records.map((x) => x.lsn)).toEqual(range(1, 5));

    fs.unlinkSync(path.join(dir, 'wal-0000000000000001.log'));
    writeSegmentFile(dir, 3, range(3, 5), 4);
    expectCorruption(dir, path.join(dir, 'wal-0000000000000003.log'), 0, /must start at lsn 1/);
  });

  it('deletes leftover temporary files and leaves unknown files alone', () => {
    const dir = makeTempDir();
    writeSegmentFile(dir, 1, range(1, 3), 4);
    fs.writeFileSync(path.join(dir, 'snap-0000000000000003.snap.tmp'), 'half a snapshot');
    fs.writeFileSync(path.join(dir, 'other.tmp'), 'x');
    fs.writeFileSync(path.join(dir, 'NOTES.txt'), 'operator notes');
    const r = recoverOnce({ dir });
    expect(r.records.length).toBe(3);
    expect(fs.readdirSync(dir).sort()).toEqual(['NOTES.txt', 'wal-0000000000000001.log']);
    expect(snapshotFiles(dir)).toEqual([]);
  });
});

type Op = { kind: 'append'; bytes: number } | { kind: 'commit' } | { kind: 'snapshot'; back: number };

const opArbitrary: fc.Arbitrary<Op> = fc.oneof(
  { weight: 6, arbitrary: fc.record({ kind: fc.constant('append' as const), bytes: fc.integer({ min: 0, max: 48 }) }) },
  { weight: 2, arbitrary: fc.constant({ kind: 'commit' as const }) },
  { weight: 1, arbitrary: fc.record({ kind: fc.constant('snapshot' as const), back: fc.integer({ min: 0, max: 3 }) }) },
);

interface Crash {
  dir: string;
  /** Payload size of every committed record, by lsn. */
  sizes: Map<number, number>;
  snapshotLsn: number;
}

/** Runs the ops, then copies the directory as a crash would leave it: pending appends lost. */
function runThenCrash(ops: readonly Op[], segmentBytesMax: number): Crash {
  const dir = makeTempDir();
  const { wal } = openWal({ dir, segmentBytesMax });
  const sizes = new Map<number, number>();
  let snapshotLsn = 0;
  for (const op of ops) {
    if (op.kind === 'append') sizes.set(wal.append(payloadFor(wal.lastLsn + 1, op.bytes)), op.bytes);
    if (op.kind === 'commit') wal.commit();
    const lsn = Math.max(snapshotLsn, wal.durableLsn - (op.kind === 'snapshot' ? op.back : 0));
    if (op.kind === 'snapshot' && lsn >= 1) {
      wal.writeSnapshot(lsn, payloadFor(lsn, 9));
      snapshotLsn = lsn;
    }
  }
  for (let lsn = wal.durableLsn + 1; lsn <= wal.lastLsn; lsn++) sizes.delete(lsn);
  const crashed = copyWalDir(dir);
  wal.close();
  return { dir: crashed, sizes, snapshotLsn };
}

/** Cuts the last segment at `cut` bytes and returns the last lsn whose frame survives whole. */
function cutLastSegment(crash: Crash, cutPerMillion: number): { lsnCut: number; cutInsideFrame: boolean } {
  const lastName = segmentFiles(crash.dir).at(-1)!;
  const lastFile = path.join(crash.dir, lastName);
  const cut = Math.floor((cutPerMillion / 1_000_000) * fs.statSync(lastFile).size);
  fs.truncateSync(lastFile, cut);
  let lsnCut = lsnOfFile(lastName) - 1;
  let frameEnd = 0;
  for (let lsn = lsnCut + 1; crash.sizes.has(lsn); lsn++) {
    if (frameEnd + FRAME_HEADER + crash.sizes.get(lsn)! > cut) break;
    frameEnd += FRAME_HEADER + crash.sizes.get(lsn)!;
    lsnCut = lsn;
  }
  return { lsnCut, cutInsideFrame: frameEnd !== cut };
}

describe('recovery after a crash, as a property', () => {
  it('replays exactly the committed prefix up to where the last segment was cut', () => {
    const opsArbitrary = fc.array(opArbitrary, { maxLength: 80, size: 'max' });
    const segmentBytesMaxArbitrary = fc.integer({ min: 40, max: 400 });
    const cutArbitrary = fc.integer({ min: 0, max: 1_000_000 });
    fc.assert(
      fc.property(opsArbitrary, segmentBytesMaxArbitrary, cutArbitrary, (ops, segmentBytesMax, cutPerMillion) => {
        const crash = runThenCrash(ops, segmentBytesMax);
        const { lsnCut, cutInsideFrame } = cutLastSegment(crash, cutPerMillion);
        const { snapshotLsn } = crash;
        // Snapshots roll to a fresh segment, so a cut in the last one never reaches below them.
        expect(lsnCut).toBeGreaterThanOrEqual(snapshotLsn);

        const first = openWal({ dir: crash.dir, segmentBytesMax });
        expect(first.snapshot).toEqual(snapshotLsn === 0 ? null : { lsn: snapshotLsn, payload: payloadFor(snapshotLsn, 9) });
        expect(first.records.map((r) => r.lsn)).toEqual(range(snapshotLsn + 1, lsnCut));
        for (const r of first.records) expect(r.payload).toEqual(payloadFor(r.lsn, crash.sizes.get(r.lsn)!));
        expect(first.result.lastLsn).toBe(lsnCut);
        expect(first.events.filter((e) => e.type === 'torn_tail_truncated').length).toBe(cutInsideFrame ? 1 : 0);

        appendRange(first.wal, lsnCut + 1, lsnCut + 3, 5, 2);
        first.wal.close();
        const second = recoverOnce({ dir: crash.dir, segmentBytesMax });
        expect(second.events).toEqual([]);
        expect(second.records.map((r) => r.lsn)).toEqual(range(snapshotLsn + 1, lsnCut + 3));
        removeTempDirs();
      }),
      { numRuns: 200 },
    );
  });
});
