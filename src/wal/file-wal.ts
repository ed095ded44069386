// A single-writer write-ahead log on local files: appends are buffered in memory and each
// commit writes them with one write and one fdatasync (group commit), then snapshots let old
// segments be deleted. commit() does it all on the caller's thread; commitAsync() writes at
// once and runs the fdatasync on the thread pool, so its owner can apply (and append) the
// next batch while the disk works: a pipeline one sync deep, as a WAL writer does. It owns its directory alone and must never be shared
// between two writers, never report an lsn durable before its fdatasync returned, and never
// keep working after an I/O error (the caller restarts the shard and recovers).

import * as fs from 'node:fs';
import * as path from 'node:path';
import { fsyncDir, writeAllSync, writeFileDurable } from './durable-fs.js';
import { parseWalFileName, segmentFileName, snapshotFileName } from './segment-name.js';
import { SNAPSHOT_HEADER_BYTES, SNAPSHOT_PAYLOAD_BYTES_MAX, encodeChunkedSnapshot, encodeSnapshotHeader, readSnapshotFile } from './snapshot-codec.js';
import { FRAME_HEADER_BYTES, PAYLOAD_BYTES_MAX, encodeFrame } from './wal-frame.js';
import { walAssert } from './wal-errors.js';
import { recoverWalDir, type RecoveredTail } from './wal-recovery.js';
import type { OnRecord, OnSnapshot, WalEvent } from './wal-types.js';

export { WalCorruptionError } from './wal-errors.js';
export { PAYLOAD_BYTES_MAX } from './wal-frame.js';
export type { WalEvent, WalSnapshot } from './wal-types.js';

export interface FileWalOptions {
  dir: string;
  /** Roll to a new segment once the current one holds at least this many bytes. */
  segmentBytesMax?: number;
  /** Bound on the bytes of uncommitted frames; append() throws a RangeError beyond it. */
  pendingBytesMax?: number;
  onEvent?: (e: WalEvent) => void;
}

export interface WalRecovery {
  lastLsn: number;
  recordsReplayed: number;
  snapshotLsn: number;
  ms: number;
}

export interface WalStats {
  commits: number;
  recordsCommitted: number;
  bytesCommitted: number;
  lastCommitMs: number;
  fsyncMsTotal: number;
}

export const fileWalDefaults = {
  segmentBytesMax: 64 * 1024 * 1024,
  pendingBytesMax: 256 * 1024 * 1024,
  /** Upper bound for either option, so that a segment always fits in one Buffer. */
  optionBytesMax: 1024 * 1024 * 1024,
  pendingBufferBytesInitial: 64 * 1024,
  /** A pending buffer grown past this by one huge batch is dropped after its commit. */
  pendingBufferBytesKept: 16 * 1024 * 1024,
} as const;

const WalState = { created: 'created', open: 'open', failed: 'failed', closed: 'closed' } as const;
type WalState = (typeof WalState)[keyof typeof WalState];

export class FileWal {
  readonly stats: WalStats = { commits: 0, recordsCommitted: 0, bytesCommitted: 0, lastCommitMs: 0, fsyncMsTotal: 0 };

  private readonly dir: string;
  private readonly segmentBytesMax: number;
  private readonly pendingBytesMax: number;
  private readonly onEvent: (e: WalEvent) => void;
  private state: WalState = WalState.created;
  /** Descriptor of the current (last) segment, or -1. */
  private fd = -1;
  private segmentBytes = 0;
  /** First lsn of every segment on disk, ascending; the last one is the current segment. */
  private segmentLsns: number[] = [];
  private pending: Buffer = Buffer.alloc(0);
  private pendingBytes = 0;
  private pendingRecords = 0;
  private lsnLast = 0;
  private lsnDurable = 0;
  /** A commitAsync() whose fdatasync has not returned: no other commit, roll or snapshot meanwhile. */
  private syncInFlight = false;
  /** The newest two snapshots known to be valid (read back at recovery or written here). */
  private snapshotLsnsValid: number[] = [];
  /** Every snapshot file on disk, valid or not, ascending. */
  private snapshotFileLsns: number[] = [];

  constructor(opts: FileWalOptions) {
    this.dir = path.resolve(opts.dir);
    this.segmentBytesMax = checkBytesOption('segmentBytesMax', opts.segmentBytesMax ?? fileWalDefaults.segmentBytesMax);
    this.pendingBytesMax = checkBytesOption('pendingBytesMax', opts.pendingBytesMax ?? fileWalDefaults.pendingBytesMax);
    this.onEvent = opts.onEvent ?? (() => {});
  }

  get pendingCount(): number {
    return this.pendingRecords;
  }

  get lastLsn(): number {
    return this.lsnLast;
  }

  get durableLsn(): number {
    return this.lsnDurable;
  }

  /** Whether a commitAsync() is still waiting for its fdatasync. */
  get syncing(): boolean {
    return this.syncInFlight;
  }

  /** Bytes appended and not yet handed to a commit. */
  get pendingByteCount(): number {
    return this.pendingBytes;
  }

  /** The newest snapshot known to be valid (read back at recovery or written here), or null. */
  get newestSnapshot(): { lsn: number; file: string } | null {
    const lsn = this.snapshotLsnsValid[this.snapshotLsnsValid.length - 1];
    return lsn === undefined ? null : { lsn, file: path.join(this.dir, snapshotFileName(lsn)) };
  }

  /**
   * Loads the newest valid snapshot, then replays every record after it, in order. Must be
   * called exactly once, before append(). Payloads handed to `onRecord` are views into the
   * segment's read buffer: copy one to keep it without pinning the whole segment in memory.
   * When it throws (WalCorruptionError included), the callbacks may have seen a prefix of the
   * log; the caller must discard that state, as it must refuse to start anyway.
   */
  recover(onSnapshot: OnSnapshot, onRecord: OnRecord): WalRecovery {
    walAssert(this.state === WalState.created, 'recover() must be called exactly once, before append()');
    const startMs = performance.now();
    this.state = WalState.failed; // Until recovery has finished, nothing may be appended.
    const recovered = recoverWalDir(this.dir, this.onEvent, onSnapshot, onRecord);
    this.lsnLast = recovered.lastLsn;
    this.lsnDurable = recovered.lastLsn;
    this.segmentLsns = recovered.segmentLsns;
    this.snapshotFileLsns = recovered.snapshotFileLsns;
    this.snapshotLsnsValid = recovered.snapshotLsn > 0 ? [recovered.snapshotLsn] : [];
    this.openTail(recovered.tail);
    this.pending = Buffer.allocUnsafe(Math.min(fileWalDefaults.pendingBufferBytesInitial, this.pendingBytesMax));
    this.state = WalState.open;
    const { lastLsn, recordsReplayed, snapshotLsn } = recovered;
    return { lastLsn, recordsReplayed, snapshotLsn, ms: performance.now() - startMs };
  }

  /** Buffers one record in memory and returns its lsn. No I/O: commit() makes it durable. */
  append(payload: Uint8Array): number {
    this.assertWritable('append');
    if (payload.length > PAYLOAD_BYTES_MAX) {
      throw new RangeError(`WAL payload of ${payload.length} bytes is over the maximum of ${PAYLOAD_BYTES_MAX}`);
    }
    const pendingBytesNext = this.pendingBytes + FRAME_HEADER_BYTES + payload.length;
    if (pendingBytesNext > this.pendingBytesMax) {
      throw new RangeError(
        `WAL pending bytes would reach ${pendingBytesNext}, over pendingBytesMax ${this.pendingBytesMax}; commit first`,
      );
    }
    const lsn = this.lsnLast + 1;
    walAssert(Number.isSafeInteger(lsn), 'lsn space exhausted');
    this.reservePending(pendingBytesNext);
    this.pendingBytes = encodeFrame(this.pending, this.pendingBytes, lsn, payload);
    walAssert(this.pendingBytes === pendingBytesNext, 'frame size differs from its computed size');
    this.pendingRecords++;
    this.lsnLast = lsn;
    return lsn;
  }

  /** Writes every pending frame with one write and one fdatasync. Throws on any I/O error. */
  commit(): void {
    this.assertWritable('commit');
    walAssert(!this.syncInFlight, 'commit() while a commitAsync() is in flight');
    if (this.pendingRecords === 0) return;
    const startMs = performance.now();
    let fsyncMs = 0;
    this.failOnThrow(() => {
      if (this.segmentBytes >= this.segmentBytesMax) this.rollSegment(this.lsnDurable + 1);
      writeAllSync(this.fd, this.pending, 0, this.pendingBytes, this.segmentBytes);
      const syncStartMs = performance.now();
      fs.fdatasyncSync(this.fd);
      fsyncMs = performance.now() - syncStartMs;
    });
    this.segmentBytes += this.pendingBytes;
    this.lsnDurable = this.lsnLast;
    const stats = this.stats;
    stats.commits++;
    stats.recordsCommitted += this.pendingRecords;
    stats.bytesCommitted += this.pendingBytes;
    stats.fsyncMsTotal += fsyncMs;
    this.pendingBytes = 0;
    this.pendingRecords = 0;
    if (this.pending.length > fileWalDefaults.pendingBufferBytesKept) {
      this.pending = Buffer.allocUnsafe(fileWalDefaults.pendingBufferBytesInitial);
    }
    stats.lastCommitMs = performance.now() - startMs;
  }

  /**
   * Writes every pending frame now (one write, on this thread: a copy into the page cache)
   * and starts their fdatasync on the thread pool; appends may go on meanwhile. `done` is
   * called once they are durable (durableLsn covers them) or with the I/O error, after which
   * the log refuses everything. Returns false, doing nothing, when nothing is pending or a
   * commit is already in flight (one at a time: the next one covers all appended meanwhile).
   */
  commitAsync(done: (error: Error | null) => void): boolean {
    this.assertWritable('commitAsync');
    if (this.syncInFlight || this.pendingRecords === 0) return false;
    const startMs = performance.now();
    this.failOnThrow(() => {
      if (this.segmentBytes >= this.segmentBytesMax) this.rollSegment(this.lsnDurable + 1);
      writeAllSync(this.fd, this.pending, 0, this.pendingBytes, this.segmentBytes);
    });
    const lsn = this.lsnLast;
    const records = this.pendingRecords;
    const bytes = this.pendingBytes;
    this.segmentBytes += bytes;
    this.pendingBytes = 0;
    this.pendingRecords = 0;
    if (this.pending.length > fileWalDefaults.pendingBufferBytesKept) {
      this.pending = Buffer.allocUnsafe(fileWalDefaults.pendingBufferBytesInitial);
    }
    this.syncInFlight = true;
    const syncStartMs = performance.now();
    fs.fdatasync(this.fd, (error) => {
      this.syncInFlight = false;
      if (error !== null) {
        this.state = WalState.failed;
        done(error);
        return;
      }
      const now = performance.now();
      this.lsnDurable = lsn;
      const stats = this.stats;
      stats.commits++;
      stats.recordsCommitted += records;
      stats.bytesCommitted += bytes;
      stats.fsyncMsTotal += now - syncStartMs;
      stats.lastCommitMs = now - startMs;
      done(null);
    });
    return true;
  }

  /**
   * Durably stores the state as of `lsn` (which must be durable already), then deletes what
   * is no longer needed. Segments are kept back to the older of the two newest valid
   * snapshots, so that a newest snapshot found damaged at recovery can still fall back. One
   * payload is written as a version 1 file; a list of chunks as version 2 (no size ceiling).
   * A failed snapshot write (a full disk) throws but leaves the log itself usable.
   */
  writeSnapshot(lsn: number, payload: Uint8Array | readonly Uint8Array[]): void {
    this.assertWritable('writeSnapshot');
    walAssert(!this.syncInFlight, 'writeSnapshot() while a commitAsync() is in flight');
    walAssert(
      Number.isSafeInteger(lsn) && lsn >= 1 && lsn <= this.lsnDurable,
      `snapshot lsn ${lsn} must be within 1..durableLsn ${this.lsnDurable}`,
    );
    const lsnNewest = this.snapshotLsnsValid[this.snapshotLsnsValid.length - 1] ?? 0;
    walAssert(lsn >= lsnNewest, `snapshot lsn ${lsn} is older than the newest snapshot ${lsnNewest}`);
    const single = payload instanceof Uint8Array;
    if (single && payload.length > SNAPSHOT_PAYLOAD_BYTES_MAX) {
      throw new RangeError(`snapshot of ${payload.length} bytes is over the maximum of ${SNAPSHOT_PAYLOAD_BYTES_MAX}`);
    }
    const parts = single ? [encodeSnapshotHeader(lsn, payload), payload] : encodeChunkedSnapshot(lsn, payload);
    const startMs = performance.now();
    const name = snapshotFileName(lsn);
    // A fresh segment first, so that every older segment holds only lsns <= durableLsn and
    // can be deleted as a whole once a snapshot covers it.
    this.failOnThrow(() => {
      if (this.segmentBytes > 0) this.rollSegment(this.lsnDurable + 1);
    });
    // The snapshot is a file of its own (temp, fsync, rename): failing to write it leaves the
    // log as it was, so it is an alarm for the caller, never a reason to stop the log.
    const bytes = writeFileDurable(this.dir, name, parts);
    if (lsn !== lsnNewest) this.snapshotLsnsValid.push(lsn);
    if (this.snapshotLsnsValid.length > 2) this.snapshotLsnsValid.shift();
    if (!this.snapshotFileLsns.includes(lsn)) this.snapshotFileLsns.push(lsn);
    const ms = performance.now() - startMs;
    const deleted = this.failOnThrow(() => this.prune());
    this.onEvent({ type: 'snapshot_written', file: path.join(this.dir, name), lsn, bytes, ms });
    for (const file of deleted) this.onEvent({ type: 'segment_deleted', file });
  }

  /**
   * Counts a snapshot another thread wrote into this directory (durably, and read back) at
   * `lsn`, which must be durable here: it becomes the newest, and the log behind the older of
   * the two newest is dropped. One not newer than the newest is ignored (false).
   */
  adoptSnapshot(lsn: number, file: string, bytes: number, ms: number, removeFiles?: FileRemover): boolean {
    this.assertWritable('adoptSnapshot');
    walAssert(Number.isSafeInteger(lsn) && lsn >= 1 && lsn <= this.lsnDurable, `adopted snapshot lsn ${lsn} must be within 1..durableLsn ${this.lsnDurable}`);
    walAssert(path.resolve(file) === path.join(this.dir, snapshotFileName(lsn)), `adopted snapshot ${file} is not this log's snapshot of lsn ${lsn}`);
    const lsnNewest = this.snapshotLsnsValid[this.snapshotLsnsValid.length - 1] ?? 0;
    if (lsn <= lsnNewest) {
      // Stale (this log has a newer snapshot): its file would never be pruned, so it goes now,
      // unless it is a file this log knows (one of the same lsn it wrote itself).
      if (!this.snapshotFileLsns.includes(lsn)) (removeFiles ?? removeFilesNow)([file], this.dir);
      return false;
    }
    this.snapshotLsnsValid.push(lsn);
    if (this.snapshotLsnsValid.length > 2) this.snapshotLsnsValid.shift();
    if (!this.snapshotFileLsns.includes(lsn)) this.snapshotFileLsns.push(lsn);
    // Segments wholly behind the older kept snapshot go; the current one is never touched, so
    // this may run while a commitAsync() is in flight.
    const deleted = this.failOnThrow(() => this.prune(removeFiles));
    this.onEvent({ type: 'snapshot_written', file, lsn, bytes, ms });
    for (const f of deleted) this.onEvent({ type: 'segment_deleted', file: f });
    return true;
  }

  /** Commits what is pending (unless an I/O error already failed the log) and closes. */
  close(): void {
    if (this.state === WalState.closed) return;
    walAssert(!this.syncInFlight, 'close() while a commitAsync() is in flight');
    try {
      if (this.state === WalState.open && this.pendingRecords > 0) this.commit();
    } finally {
      if (this.fd >= 0) fs.closeSync(this.fd);
      this.fd = -1;
      this.pending = Buffer.alloc(0);
      this.state = WalState.closed;
    }
  }

  private assertWritable(operation: string): void {
    if (this.state === WalState.open) return;
    const why =
      this.state === WalState.created ? 'recover() has not been called' :
      this.state === WalState.closed ? 'the WAL is closed' :
      'an earlier I/O error or failed recovery left the WAL unusable; restart and recover';
    throw new Error(`WAL ${operation}() refused: ${why}`);
  }

  /** After a failed write or fsync the file's state is unknown, so the log stops for good. */
  private failOnThrow<T>(step: () => T): T {
    try {
      return step();
    } catch (error) {
      this.state = WalState.failed;
      throw error;
    }
  }

  private reservePending(bytesNeeded: number): void {
    if (bytesNeeded <= this.pending.length) return;
    let capacity = Math.max(this.pending.length, fileWalDefaults.pendingBufferBytesInitial);
    while (capacity < bytesNeeded) capacity *= 2;
    const grown = Buffer.allocUnsafe(Math.min(capacity, this.pendingBytesMax));
    this.pending.copy(grown, 0, 0, this.pendingBytes);
    this.pending = grown;
  }

  private openTail(tail: RecoveredTail | null): void {
    if (tail !== null && tail.lsnNext === this.lsnLast + 1) {
      this.fd = fs.openSync(path.join(this.dir, segmentFileName(tail.lsnFirst)), 'r+');
      this.segmentBytes = tail.bytes;
      return;
    }
    // No segment yet, or a snapshot newer than the whole log: the next lsn starts a segment.
    this.rollSegment(this.lsnLast + 1);
  }

  /** Starts segment `lsnFirst`; the current one must already be durable. */
  private rollSegment(lsnFirst: number): void {
    const lsnNewest = this.segmentLsns[this.segmentLsns.length - 1] ?? 0;
    walAssert(
      lsnFirst > lsnNewest && lsnFirst === this.lsnDurable + 1,
      `segment ${lsnFirst} must follow segment ${lsnNewest} and durableLsn ${this.lsnDurable}`,
    );
    // 'wx' fails if the file exists: recovery guarantees that no segment of this name does.
    const fd = fs.openSync(path.join(this.dir, segmentFileName(lsnFirst)), 'wx');
    try {
      fsyncDir(this.dir);
    } catch (error) {
      fs.closeSync(fd);
      throw error;
    }
    if (this.fd >= 0) fs.closeSync(this.fd);
    this.fd = fd;
    this.segmentBytes = 0;
    this.segmentLsns.push(lsnFirst);
  }

  /**
   * Deletes segments and snapshots older than the older of the two newest valid snapshots:
   * at once on this thread, or through `removeFiles`, which may do it later, elsewhere, or
   * never (stopped, failed, or the process died first). So every prune also looks at the
   * directory: a file behind what the log keeps that is still there is handed over again.
   * Returns the segments.
   */
  private prune(removeFiles: FileRemover = removeFilesNow): string[] {
    if (this.snapshotLsnsValid.length < 2) return [];
    const lsnKeepFrom = this.snapshotLsnsValid[0]!;
    // A segment is covered when the next one starts at or before lsnKeepFrom + 1.
    while (this.segmentLsns.length >= 2 && this.segmentLsns[1]! - 1 <= lsnKeepFrom) this.segmentLsns.shift();
    this.snapshotFileLsns.sort((a, b) => a - b);
    while (this.snapshotFileLsns.length > 0 && this.snapshotFileLsns[0]! < lsnKeepFrom) this.snapshotFileLsns.shift();
    // What is on disk behind what the log keeps: what it just dropped, and what an earlier
    // prune's remover never deleted. A segment before the oldest one kept, a snapshot older
    // than the older kept one (never a .tmp, never a newer file being written meanwhile).
    const segmentFirstKept = this.segmentLsns[0] ?? Number.POSITIVE_INFINITY;
    const segments: number[] = [];
    const snapshots: number[] = [];
    for (const name of fs.readdirSync(this.dir)) {
      const f = parseWalFileName(name);
      if (f.kind === 'segment' && f.lsn < segmentFirstKept) segments.push(f.lsn);
      else if (f.kind === 'snapshot' && f.lsn < lsnKeepFrom) snapshots.push(f.lsn);
    }
    const byLsn = (a: number, b: number): number => a - b;
    const deleted = segments.sort(byLsn).map((lsn) => path.join(this.dir, segmentFileName(lsn)));
    const files = [...deleted, ...snapshots.sort(byLsn).map((lsn) => path.join(this.dir, snapshotFileName(lsn)))];
    if (files.length > 0) removeFiles(files, this.dir);
    return deleted;
  }
}

/**
 * Deletes files a log no longer needs (segments and snapshots behind its kept snapshots),
 * then syncs their directory. The default deletes at once on the caller's thread; a shard
 * with a checkpointer hands them to it instead, for unlinking a snapshot of a million holds
 * (110 MB) and syncing the directory took the shard's thread 17-79 ms per checkpoint. One
 * that never deletes them loses nothing: the next prune hands them over again.
 */
export type FileRemover = (files: readonly string[], dir: string) => void;

/** Deletes `files` (missing ones are fine), then syncs `dir`. Throws on any other error. */
export function removeFilesNow(files: readonly string[], dir: string): void {
  for (const f of files) fs.rmSync(f, { force: true });
  if (files.length > 0) fsyncDir(dir);
}

/**
 * Places a snapshot file (of either version, as another node wrote it) into an empty WAL
 * directory, durably, after checking every byte of it: a FileWal opened there then starts at
 * its lsn. Returns that lsn. Throws on a damaged file or a directory that holds a log already.
 */
export function installSnapshotFile(dir: string, sourceFile: string): number {
  fs.mkdirSync(dir, { recursive: true });
  const present = fs.readdirSync(dir).filter((name) => /^(wal|snap)-/.test(name));
  walAssert(present.length === 0, `installing a snapshot into ${dir}, which holds a log already (${present[0]})`);
  const fd = fs.openSync(sourceFile, 'r');
  let lsn: number;
  try {
    const header = Buffer.alloc(SNAPSHOT_HEADER_BYTES);
    walAssert(fs.readSync(fd, header, 0, header.length, 0) === header.length, `snapshot ${sourceFile} is shorter than its header`);
    lsn = Number(header.readBigUInt64LE(8));
    const checked = readSnapshotFile(fd, lsn);
    if (!checked.ok) throw new Error(`snapshot ${sourceFile} is damaged: ${checked.reason}`);
  } finally {
    fs.closeSync(fd);
  }
  const target = path.join(dir, snapshotFileName(lsn));
  fs.copyFileSync(sourceFile, `${target}.tmp`);
  const tmpFd = fs.openSync(`${target}.tmp`, 'r+');
  try {
    fs.fsyncSync(tmpFd);
  } finally {
    fs.closeSync(tmpFd);
  }
  fs.renameSync(`${target}.tmp`, target);
  fsyncDir(dir);
  return lsn;
}

function checkBytesOption(name: string, value: number): number {
  if (!(Number.isSafeInteger(value) && value >= 1 && value <= fileWalDefaults.optionBytesMax)) {
    throw new RangeError(`FileWal option ${name} must be an integer in 1..${fileWalDefaults.optionBytesMax}, got ${value}`);
  }
  return value;
}
