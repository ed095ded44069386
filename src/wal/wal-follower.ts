// A read-only follower of a WAL directory that another thread writes: it loads the newest
// valid snapshot, then reads the records after it, segment by segment, up to an lsn its
// writer has told it is durable. It never writes, truncates or deletes anything, and never
// reads past that lsn, so a frame the writer is still writing is never taken for a record.
// The shard's checkpointer uses it to keep a second copy of the state off the shard's thread.

import * as fs from 'node:fs';
import * as path from 'node:path';
import { readSnapshotFileInSteps, runSteps } from './snapshot-codec.js';
import { parseWalFileName, segmentFileName, snapshotFileName } from './segment-name.js';
import { scanFrames } from './wal-frame.js';
import { WalCorruptionError } from './wal-errors.js';
import type { OnRecord, WalSnapshot } from './wal-types.js';

export class WalFollower {
  private readonly dir: string;
  /** The next lsn to read. */
  private lsnNext = 1;
  /** The segment being read (its first lsn), its descriptor and where its next frame starts. */
  private segmentLsn = 0;
  private fd = -1;
  private offset = 0;
  /** The next read of the segment takes all of the rest (a frame longer than readBytesMax). */
  private uncapped = false;

  /** `readBytesMax`: the most one read of a segment takes (a frame longer than it is read whole). */
  constructor(dir: string, private readonly readBytesMax = 1024 * 1024) {
    this.dir = path.resolve(dir);
  }

  /** The last lsn read. */
  get lastLsn(): number {
    return this.lsnNext - 1;
  }

  /**
   * The newest valid snapshot on disk (null: none), from which reading goes on. Call once,
   * before readTo(). An invalid one is passed over, as recovery does.
   */
  loadSnapshot(): WalSnapshot | null {
    return runSteps(this.loadSnapshotInSteps());
  }

  /** loadSnapshot in steps: it yields after each chunk read and checked (a reader with time to spare rests between them). */
  *loadSnapshotInSteps(): Generator<void, WalSnapshot | null, void> {
    const lsns: number[] = [];
    for (const name of fs.readdirSync(this.dir)) {
      const parsed = parseWalFileName(name);
      if (parsed.kind === 'snapshot') lsns.push(parsed.lsn);
    }
    lsns.sort((a, b) => b - a);
    for (const lsn of lsns) {
      let fd: number;
      try {
        fd = fs.openSync(path.join(this.dir, snapshotFileName(lsn)), 'r');
      } catch {
        continue; // pruned by the writer meanwhile: an older one is not wanted anyway
      }
      try {
        const decoded = yield* readSnapshotFileInSteps(fd, lsn, true);
        if (decoded.ok) {
          this.lsnNext = lsn + 1;
          return decoded.snapshot;
        }
      } finally {
        fs.closeSync(fd);
      }
    }
    return null;
  }

  /**
   * Hands every record after the last one read, up to and including `lsn`, to `onRecord`, in
   * order; at most `maxRecords` of them (the rest on the next call), so that a reader with
   * time to spare can catch up on a long stretch of log in steps. It reads a segment
   * `readBytesMax` (1 MB) at a time (one step never reads a whole 64 MB segment for a few
   * records), and checks no frame past the last one it hands over.
   */
  readTo(lsn: number, onRecord: OnRecord, maxRecords = Number.POSITIVE_INFINITY): number {
    const target = Math.min(lsn, this.lsnNext - 1 + maxRecords);
    let read = 0;
    while (this.lsnNext <= target) {
      if (this.fd < 0 || !this.inCurrentSegment()) this.openSegmentOf(this.lsnNext);
      const size = fs.fstatSync(this.fd).size;
      // A frame longer than the cap is read whole: the cap only bounds a step, never a record.
      const rest = size - this.offset;
      const want = rest > this.readBytesMax && !this.uncapped ? this.readBytesMax : rest;
      this.uncapped = false;
      const bytes = Buffer.allocUnsafe(want);
      let got = 0;
      while (got < bytes.length) {
        const n = fs.readSync(this.fd, bytes, got, bytes.length - got, this.offset + got);
        if (n === 0) break;
        got += n;
      }
      const view = bytes.subarray(0, got);
      // Frames past the target are not even checked: a step of a catch-up reads up to a
      // MB for its records and would otherwise checksum all of it, again on every step.
      const scan = scanFrames(view, this.lsnNext, (frameLsn, payloadStart, payloadEnd) => {
        onRecord(frameLsn, view.subarray(payloadStart, payloadEnd));
        read++;
      }, target);
      this.offset += scan.goodBytes;
      this.lsnNext = scan.lsnNext;
      if (this.lsnNext > target) break;
      // The read stopped short of the file's end: what was cut off is read next (whole, if
      // not even one frame fit).
      if (want < rest) {
        if (scan.goodBytes === 0) this.uncapped = true;
        continue;
      }
      // The rest must be in the next segment: this one holds nothing more that is durable.
      if (scan.end === 'corrupt') throw new WalCorruptionError(this.segmentPath(this.segmentLsn), this.offset, scan.reason);
      if (!this.nextSegmentStartsAt(this.lsnNext)) {
        throw new Error(`lsn ${this.lsnNext} is not in the log yet (asked to read up to ${lsn})`);
      }
      this.openSegmentOf(this.lsnNext);
    }
    return read;
  }

  close(): void {
    if (this.fd >= 0) fs.closeSync(this.fd);
    this.fd = -1;
  }

  private segmentPath(lsnFirst: number): string {
    return path.join(this.dir, segmentFileName(lsnFirst));
  }

  private inCurrentSegment(): boolean {
    return this.fd >= 0 && !this.nextSegmentStartsAt(this.lsnNext);
  }

  private nextSegmentStartsAt(lsn: number): boolean {
    return lsn > this.segmentLsn && fs.existsSync(this.segmentPath(lsn));
  }

  /** Opens the segment that holds `lsn` and finds that record's frame in it. */
  private openSegmentOf(lsn: number): void {
    const firsts: number[] = [];
    for (const name of fs.readdirSync(this.dir)) {
      const parsed = parseWalFileName(name);
      if (parsed.kind === 'segment' && parsed.lsn <= lsn) firsts.push(parsed.lsn);
    }
    if (firsts.length === 0) throw new Error(`no segment holds lsn ${lsn}`);
    const first = Math.max(...firsts);
    this.close();
    this.fd = fs.openSync(this.segmentPath(first), 'r');
    this.segmentLsn = first;
    this.offset = 0;
    if (first === lsn) return;
    // Skip the frames before `lsn` (a follower starting after a snapshot, mid-segment).
    const size = fs.fstatSync(this.fd).size;
    const bytes = Buffer.allocUnsafe(size);
    const got = fs.readSync(this.fd, bytes, 0, size, 0);
    const view = bytes.subarray(0, got);
    let end = 0;
    scanFrames(view, first, (frameLsn, _start, payloadEnd) => {
      if (frameLsn < lsn) end = payloadEnd;
    });
    this.offset = end;
  }
}
