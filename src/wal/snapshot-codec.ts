// The snapshot file formats. Version 1: `[magic "FSNP"][version u32 LE][lsn u64 LE][payload
// length u32 LE][crc32c u32 LE over lsn bytes + payload][payload]`, one payload of at most
// 1 GiB. Version 2 has no ceiling: `[magic][version 2][lsn u64][chunk count u32][crc32c over
// lsn + count]` then each chunk `[length u32][crc32c u32][bytes]`, read one chunk at a time.
// It validates, never throws on bad input (it explains), and reads files only through an fd.

import * as fs from 'node:fs';
import { crc32c } from './crc32c.js';
import { writeAllSync } from './durable-fs.js';
import { readLsn, writeLsn } from './wal-frame.js';
import type { WalSnapshot } from './wal-types.js';

export const SNAPSHOT_HEADER_BYTES = 24;
export const SNAPSHOT_VERSION = 1;
export const SNAPSHOT_VERSION_CHUNKED = 2;
/** One chunk of a version 2 snapshot; a shard's snapshot is cut into many. */
export const SNAPSHOT_CHUNK_BYTES_MAX = 1024 * 1024 * 1024;
const CHUNK_HEADER_BYTES = 8;
/** Snapshots hold a whole shard's state, so they may exceed the record maximum; 1 GiB keeps
 * them well inside what one Buffer and one readFileSync can hold. */
export const SNAPSHOT_PAYLOAD_BYTES_MAX = 1024 * 1024 * 1024;

const MAGIC = Buffer.from('FSNP', 'latin1');
const OFFSET_VERSION = 4;
const OFFSET_LSN = 8;
const OFFSET_LENGTH = 16;
const OFFSET_CRC = 20;

export function encodeSnapshotHeader(lsn: number, payload: Uint8Array): Buffer {
  const header = Buffer.alloc(SNAPSHOT_HEADER_BYTES);
  MAGIC.copy(header, 0);
  header.writeUInt32LE(SNAPSHOT_VERSION, OFFSET_VERSION);
  writeLsn(header, OFFSET_LSN, lsn);
  header.writeUInt32LE(payload.length, OFFSET_LENGTH);
  const crc = crc32c(payload, 0, payload.length, crc32c(header, OFFSET_LSN, OFFSET_LSN + 8));
  header.writeUInt32LE(crc, OFFSET_CRC);
  return header;
}

function chunkedHeader(lsn: number, count: number): Buffer {
  const header = Buffer.alloc(SNAPSHOT_HEADER_BYTES);
  MAGIC.copy(header, 0);
  header.writeUInt32LE(SNAPSHOT_VERSION_CHUNKED, OFFSET_VERSION);
  writeLsn(header, OFFSET_LSN, lsn);
  header.writeUInt32LE(count, OFFSET_LENGTH);
  header.writeUInt32LE(crc32c(header, OFFSET_LSN, OFFSET_CRC), OFFSET_CRC);
  return header;
}

function chunkHeader(chunk: Uint8Array): Buffer {
  if (chunk.length > SNAPSHOT_CHUNK_BYTES_MAX) throw new RangeError(`snapshot chunk of ${chunk.length} bytes is over the maximum of ${SNAPSHOT_CHUNK_BYTES_MAX}`);
  const h = Buffer.alloc(CHUNK_HEADER_BYTES);
  h.writeUInt32LE(chunk.length, 0);
  h.writeUInt32LE(crc32c(chunk), 4);
  return h;
}

/** The bytes of a version 2 snapshot file, in order: its header, then each chunk's header and bytes. */
export function encodeChunkedSnapshot(lsn: number, chunks: readonly Uint8Array[]): Uint8Array[] {
  const out: Uint8Array[] = [chunkedHeader(lsn, chunks.length)];
  for (const chunk of chunks) out.push(chunkHeader(chunk), chunk);
  return out;
}

/**
 * Writes a version 2 snapshot file through `fd` one chunk at a time, as the chunks are made
 * (no list of every chunk is held): each chunk at once, the header (which counts them) last,
 * at offset 0. The caller syncs, renames and verifies, as for a whole file.
 *
 * With `syncEveryBytes`, it also syncs the file each time that many bytes were written since
 * the last sync (RocksDB's bytes_per_sync, PostgreSQL's checkpoint_flush_after), so dirty
 * pages never pile up: one sync of a whole snapshot at the end (hundreds of MB) fills the
 * disk's queue and, on ext4, holds the journal commit that the shard's log fdatasync waits
 * for. Measured here: a log fdatasync beside a 120 MB write synced once at its end waited
 * up to 189-226 ms, synced every 1 MB at most 74-83 ms.
 */
export class ChunkedSnapshotWriter {
  private position = SNAPSHOT_HEADER_BYTES;
  private count = 0;
  private unsynced = 0;
  /** Syncs made while writing, and the time they waited on the disk (ms). */
  syncs = 0;
  syncMs = 0;

  constructor(private readonly fd: number, private readonly lsn: number, private readonly syncEveryBytes = 0) {}

  add(chunk: Uint8Array): void {
    const h = chunkHeader(chunk);
    writeAllSync(this.fd, h, 0, h.length, this.position);
    writeAllSync(this.fd, chunk, 0, chunk.length, this.position + h.length);
    this.position += h.length + chunk.length;
    this.count++;
    this.unsynced += h.length + chunk.length;
    if (this.syncEveryBytes > 0 && this.unsynced >= this.syncEveryBytes) {
      const t = performance.now();
      fs.fdatasyncSync(this.fd);
      this.syncMs += performance.now() - t;
      this.syncs++;
      this.unsynced = 0;
    }
  }

  /** Writes the header; returns the file's size in bytes. */
  finish(): number {
    const header = chunkedHeader(this.lsn, this.count);
    writeAllSync(this.fd, header, 0, header.length, 0);
    return this.position;
  }
}

/**
 * Reads and validates a snapshot file of either version through `fd`, chunk by chunk (no
 * single buffer holds the whole file). Version 1 gives one chunk: its payload.
 */
export function readSnapshotFile(fd: number, lsnFromName: number): SnapshotDecode {
  return runSteps(readSnapshotFileInSteps(fd, lsnFromName, true));
}

/** Runs work given in steps (a generator that yields between them) to its end, without rests. */
export function runSteps<T>(steps: Generator<void, T, void>): T {
  for (;;) {
    const r = steps.next();
    if (r.done === true) return r.value;
  }
}

/**
 * readSnapshotFile in steps: it yields after each chunk checked, so a reader with time to
 * spare (the checkpointer reading back what it wrote) can rest between chunks. Without
 * `keepChunks` it only checks them (the snapshot it returns has no chunks).
 */
export function* readSnapshotFileInSteps(fd: number, lsnFromName: number, keepChunks: boolean): Generator<void, SnapshotDecode, void> {
  const size = fs.fstatSync(fd).size;
  // A chunk that is only checked (not kept) is read into one buffer used again for the next:
  // reading a snapshot of a million holds back into a new buffer per chunk made 110 MB of
  // short-lived memory outside the heap, and the major GC it set off took V8's helper threads
  // (shared by every thread of the process, at normal priority) from the shard for 100+ ms.
  let scratch = Buffer.alloc(0);
  const read = (position: number, length: number, reuse = false): Buffer | null => {
    if (position + length > size) return null;
    if (reuse && scratch.length < length) scratch = Buffer.allocUnsafe(Math.max(length, scratch.length * 2));
    const b = reuse ? scratch.subarray(0, length) : Buffer.allocUnsafe(length);
    let got = 0;
    while (got < length) {
      const n = fs.readSync(fd, b, got, length - got, position + got);
      if (n === 0) return null;
      got += n;
    }
    return b;
  };
  const header = read(0, SNAPSHOT_HEADER_BYTES);
  if (header === null) return bad(`file has ${size} bytes, shorter than the header`);
  if (!MAGIC.equals(header.subarray(0, MAGIC.length))) return bad('bad magic');
  const version = header.readUInt32LE(OFFSET_VERSION);
  if (version === SNAPSHOT_VERSION) {
    if (size > SNAPSHOT_HEADER_BYTES + SNAPSHOT_PAYLOAD_BYTES_MAX) return bad(`file size ${size} over the maximum`);
    const whole = read(0, size);
    return whole === null ? bad('file shrank while being read') : decodeSnapshot(whole, lsnFromName);
  }
  if (version !== SNAPSHOT_VERSION_CHUNKED) return bad(`unknown version ${version}`);
  const view = new DataView(header.buffer, header.byteOffset, header.byteLength);
  const lsn = readLsn(view, OFFSET_LSN);
  if (lsn !== lsnFromName) return bad(`header lsn ${lsn} differs from the lsn ${lsnFromName} in the file name`);
  if (crc32c(header, OFFSET_LSN, OFFSET_CRC) !== header.readUInt32LE(OFFSET_CRC)) return bad('header checksum mismatch');
  const count = header.readUInt32LE(OFFSET_LENGTH);
  const chunks: Uint8Array[] = [];
  let position = SNAPSHOT_HEADER_BYTES;
  for (let i = 0; i < count; i++) {
    const h = read(position, CHUNK_HEADER_BYTES, true);
    if (h === null) return bad(`chunk ${i + 1} of ${count} is missing`);
    const length = h.readUInt32LE(0);
    const crc = h.readUInt32LE(4);
    if (length > SNAPSHOT_CHUNK_BYTES_MAX) return bad(`chunk ${i + 1} length ${length} over the maximum`);
    const chunk = read(position + CHUNK_HEADER_BYTES, length, !(keepChunks || i === 0));
    if (chunk === null) return bad(`chunk ${i + 1} of ${count} is cut short`);
    if (crc32c(chunk) !== crc) return bad(`chunk ${i + 1} checksum mismatch`);
    if (keepChunks || i === 0) chunks.push(chunk);
    position += CHUNK_HEADER_BYTES + length;
    yield;
  }
  if (position !== size) return bad(`${size - position} bytes after the last chunk`);
  return { ok: true, snapshot: { lsn, payload: chunks[0] ?? new Uint8Array(0), chunks } };
}

export type SnapshotDecode = { ok: true; snapshot: WalSnapshot } | { ok: false; reason: string };

/** Validates a snapshot file's bytes against the lsn its name claims. The payload is a view. */
export function decodeSnapshot(bytes: Uint8Array, lsnFromName: number): SnapshotDecode {
  if (bytes.length < SNAPSHOT_HEADER_BYTES) return bad(`file has ${bytes.length} bytes, shorter than the header`);
  const view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  if (!MAGIC.equals(bytes.subarray(0, MAGIC.length))) return bad('bad magic');
  const version = view.getUint32(OFFSET_VERSION, true);
  if (version !== SNAPSHOT_VERSION) return bad(`unknown version ${version}`);
  const lsn = readLsn(view, OFFSET_LSN);
  if (lsn !== lsnFromName) return bad(`header lsn ${lsn} differs from the lsn ${lsnFromName} in the file name`);
  const payloadBytes = view.getUint32(OFFSET_LENGTH, true);
  if (payloadBytes > SNAPSHOT_PAYLOAD_BYTES_MAX) return bad(`payload length ${payloadBytes} over the maximum`);
  if (SNAPSHOT_HEADER_BYTES + payloadBytes !== bytes.length) {
    return bad(`payload length ${payloadBytes} does not match the file size ${bytes.length}`);
  }
  const payload = bytes.subarray(SNAPSHOT_HEADER_BYTES);
  const crc = crc32c(payload, 0, payload.length, crc32c(bytes, OFFSET_LSN, OFFSET_LSN + 8));
  if (crc !== view.getUint32(OFFSET_CRC, true)) return bad('checksum mismatch');
  return { ok: true, snapshot: { lsn, payload, chunks: [payload] } };
}

function bad(reason: string): SnapshotDecode {
  return { ok: false, reason };
}
