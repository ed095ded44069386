// Startup recovery of a WAL directory: remove leftover temporary files, load the newest valid
// snapshot, verify every segment frame by frame, cut a torn tail off the last segment and
// replay the records after the snapshot. It must never run on doubtful state: anything that
// is not a torn tail at the very end of the last segment throws WalCorruptionError.

import * as fs from 'node:fs';
import * as path from 'node:path';
import { ensureDirDurable, fsyncDir, readAllSync } from './durable-fs.js';
import { readSnapshotFile } from './snapshot-codec.js';
import { parseWalFileName, segmentFileName, snapshotFileName } from './segment-name.js';
import { scanFrames } from './wal-frame.js';
import { WalCorruptionError } from './wal-errors.js';
import type { OnRecord, OnSnapshot, WalEventSink, WalSnapshot } from './wal-types.js';

/** The last segment as recovery left it, so the writer can continue in it. */
export interface RecoveredTail {
  lsnFirst: number;
  bytes: number;
  /** The lsn its next frame must carry. */
  lsnNext: number;
}

export interface RecoveredWal {
  lastLsn: number;
  recordsReplayed: number;
  snapshotLsn: number;
  /** First lsn of every segment on disk, ascending. */
  segmentLsns: number[];
  tail: RecoveredTail | null;
  /** Lsn of every snapshot file on disk (valid or not), ascending. */
  snapshotFileLsns: number[];
}

interface DirListing {
  segmentLsns: number[];
  snapshotLsns: number[];
  tmpNames: string[];
}

export function recoverWalDir(dir: string, emit: WalEventSink, onSnapshot: OnSnapshot, onRecord: OnRecord): RecoveredWal {
  ensureDirDurable(dir);
  const listing = listWalDir(dir);
  for (const name of listing.tmpNames) fs.unlinkSync(path.join(dir, name));
  const snapshot = loadNewestValidSnapshot(dir, listing.snapshotLsns, emit);
  onSnapshot(snapshot);
  const snapshotLsn = snapshot === null ? 0 : snapshot.lsn;
  const { tail, recordsReplayed } = replaySegments(dir, listing.segmentLsns, snapshotLsn, emit, onRecord);
  // A previous process may have died after a rename or unlink but before its directory fsync;
  // make what recovery saw durable before anything new is built on it.
  fsyncDir(dir);
  const lastLsn = tail === null ? snapshotLsn : Math.max(snapshotLsn, tail.lsnNext - 1);
  const { segmentLsns, snapshotLsns: snapshotFileLsns } = listing;
  return { lastLsn, recordsReplayed, snapshotLsn, segmentLsns, tail, snapshotFileLsns };
}

function listWalDir(dir: string): DirListing {
  const listing: DirListing = { segmentLsns: [], snapshotLsns: [], tmpNames: [] };
  for (const entry of fs.readdirSync(dir, { withFileTypes: true })) {
    if (!entry.isFile()) continue;
    const parsed = parseWalFileName(entry.name);
    if (parsed.kind === 'tmp') listing.tmpNames.push(entry.name);
    if (parsed.kind !== 'segment' && parsed.kind !== 'snapshot') continue;
    // Lsns start at 1, and a snapshot always covers at least one record.
    if (!(parsed.lsn >= 1)) {
      throw new WalCorruptionError(path.join(dir, entry.name), 0, 'file name holds an lsn out of range');
    }
    (parsed.kind === 'segment' ? listing.segmentLsns : listing.snapshotLsns).push(parsed.lsn);
  }
  listing.segmentLsns.sort((a, b) => a - b);
  listing.snapshotLsns.sort((a, b) => a - b);
  return listing;
}

/** Newest first; an invalid snapshot is reported and the next older one is tried. */
function loadNewestValidSnapshot(dir: string, snapshotLsns: readonly number[], emit: WalEventSink): WalSnapshot | null {
  for (let i = snapshotLsns.length - 1; i >= 0; i--) {
    const lsn = snapshotLsns[i]!;
    const file = path.join(dir, snapshotFileName(lsn));
    const fd = fs.openSync(file, 'r');
    let decoded: ReturnType<typeof readSnapshotFile>;
    try {
      decoded = readSnapshotFile(fd, lsn);
    } finally {
      fs.closeSync(fd);
    }
    if (decoded.ok) return decoded.snapshot;
    emit({ type: 'snapshot_invalid', file, reason: decoded.reason });
  }
  return null;
}

function replaySegments(
  dir: string,
  segmentLsns: readonly number[],
  snapshotLsn: number,
  emit: WalEventSink,
  onRecord: OnRecord,
): { tail: RecoveredTail | null; recordsReplayed: number } {
  let recordsReplayed = 0;
  let tail: RecoveredTail | null = null;
  for (let i = 0; i < segmentLsns.length; i++) {
    const lsnFirst = segmentLsns[i]!;
    const file = path.join(dir, segmentFileName(lsnFirst));
    checkSegmentStart(file, lsnFirst, tail === null ? null : tail.lsnNext, snapshotLsn);
    const isLast = i === segmentLsns.length - 1;
    // The last segment is opened for writing: it may need its torn tail cut off, and data a
    // crashed process wrote but never synced must be made durable before it is built upon.
    const fd = fs.openSync(file, isLast ? 'r+' : 'r');
    try {
      const bytes = readAllSync(fd);
      const scan = scanFrames(bytes, lsnFirst, (lsn, payloadStart, payloadEnd) => {
        if (lsn <= snapshotLsn) return;
        onRecord(lsn, bytes.subarray(payloadStart, payloadEnd));
        recordsReplayed++;
      });
      if (scan.end === 'corrupt' || (scan.end === 'torn' && !isLast)) {
        const where = scan.end === 'torn' ? ' in a segment that is not the last' : '';
        throw new WalCorruptionError(file, scan.goodBytes, `${scan.reason}${where}`);
      }
      if (scan.end === 'torn') {
        fs.ftruncateSync(fd, scan.goodBytes);
        fs.fsyncSync(fd);
        emit({ type: 'torn_tail_truncated', file, offset: scan.goodBytes, bytesDropped: bytes.length - scan.goodBytes });
      } else if (isLast) {
        fs.fdatasyncSync(fd);
      }
      tail = { lsnFirst, bytes: scan.goodBytes, lsnNext: scan.lsnNext };
    } finally {
      fs.closeSync(fd);
    }
  }
  return { tail, recordsReplayed };
}

/**
 * A segment must start where the previous one ended. A gap is allowed only where the
 * snapshot covers every missing lsn (the log was pruned, or restarted after a snapshot that
 * was newer than the log), since replay needs every lsn after the snapshot.
 */
function checkSegmentStart(file: string, lsnFirst: number, lsnExpected: number | null, snapshotLsn: number): void {
  const coveredBySnapshot = lsnFirst <= snapshotLsn + 1;
  if (lsnExpected === null) {
    if (coveredBySnapshot) return;
    const reason =
      snapshotLsn === 0
        ? `log starts at lsn ${lsnFirst} and there is no valid snapshot, so it must start at lsn 1`
        : `log resumes at lsn ${lsnFirst} but the snapshot ends at lsn ${snapshotLsn}; ` +
          `lsns ${snapshotLsn + 1}..${lsnFirst - 1} are missing`;
    throw new WalCorruptionError(file, 0, reason);
  }
  if (lsnFirst < lsnExpected) {
    const reason = `segment starts at lsn ${lsnFirst}, overlapping the previous segment that ends at lsn ${lsnExpected - 1}`;
    throw new WalCorruptionError(file, 0, reason);
  }
  if (lsnFirst > lsnExpected && !coveredBySnapshot) {
    const reason = `lsns ${lsnExpected}..${lsnFirst - 1} are missing before this segment and no snapshot covers them`;
    throw new WalCorruptionError(file, 0, reason);
  }
}
