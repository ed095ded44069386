// Shared helpers for the WAL tests: fresh temp directories, deterministic payloads, a
// recovery that collects everything it sees, and hand-built segment and snapshot files.
// It must stay free of assertions about behaviour; the test files own those.

import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { FileWal, type FileWalOptions, type WalEvent, type WalSnapshot } from '../src/wal/file-wal.js';
import { encodeSnapshotHeader } from '../src/wal/snapshot-codec.js';
import { segmentFileName, snapshotFileName } from '../src/wal/segment-name.js';
import { FRAME_HEADER_BYTES, encodeFrame } from '../src/wal/wal-frame.js';

const tempDirs: string[] = [];

export function makeTempDir(): string {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'wal-test-'));
  tempDirs.push(dir);
  return dir;
}

export function removeTempDirs(): void {
  for (const dir of tempDirs.splice(0)) fs.rmSync(dir, { recursive: true, force: true });
}

/** A payload whose bytes depend on its lsn, so a record replayed at the wrong lsn shows. */
export function payloadFor(lsn: number, bytes: number): Uint8Array {
  const payload = new Uint8Array(bytes);
  for (let i = 0; i < bytes; i++) payload[i] = (lsn * 31 + i * 7) & 0xff;
  return payload;
}

export interface Recovered {
  wal: FileWal;
  /** The snapshot recovery loaded (its payload copied; chunked snapshots are tested on their own). */
  snapshot: Pick<WalSnapshot, 'lsn' | 'payload'> | null;
  records: { lsn: number; payload: Uint8Array }[];
  events: WalEvent[];
  result: ReturnType<FileWal['recover']>;
}

/** Opens and recovers a WAL, collecting the snapshot, the records (copied) and the events. */
export function openWal(opts: Omit<FileWalOptions, 'onEvent'>): Recovered {
  const events: WalEvent[] = [];
  const wal = new FileWal({ ...opts, onEvent: (e) => events.push(e) });
  let snapshot: Recovered['snapshot'] | undefined;
  const records: Recovered['records'] = [];
  const result = wal.recover(
    (s) => {
      if (snapshot !== undefined) throw new Error('onSnapshot called twice');
      snapshot = s === null ? null : { lsn: s.lsn, payload: Uint8Array.from(s.payload) };
    },
    (lsn, payload) => {
      if (snapshot === undefined) throw new Error('onRecord called before onSnapshot');
      records.push({ lsn, payload: Uint8Array.from(payload) });
    },
  );
  if (snapshot === undefined) throw new Error('onSnapshot never called');
  return { wal, snapshot, records, events, result };
}

/** Recovers, closes, and returns what recovery saw. */
export function recoverOnce(opts: Omit<FileWalOptions, 'onEvent'>): Omit<Recovered, 'wal'> {
  const { wal, ...rest } = openWal(opts);
  wal.close();
  return rest;
}

/** Appends records `lsnFrom..lsnTo` with payloadFor(lsn, bytes), committing every `batch`. */
export function appendRange(wal: FileWal, lsnFrom: number, lsnTo: number, bytes: number, batch: number): void {
  for (let lsn = lsnFrom; lsn <= lsnTo; lsn++) {
    const got = wal.append(payloadFor(lsn, bytes));
    if (got !== lsn) throw new Error(`append returned lsn ${got}, expected ${lsn}`);
    if ((lsn - lsnFrom + 1) % batch === 0) wal.commit();
  }
  wal.commit();
}

export function segmentFiles(dir: string): string[] {
  return fs.readdirSync(dir).filter((n) => /^wal-[0-9a-f]{16}\.log$/.test(n)).sort();
}

export function snapshotFiles(dir: string): string[] {
  return fs.readdirSync(dir).filter((n) => /^snap-[0-9a-f]{16}\.snap$/.test(n)).sort();
}

export function lsnOfFile(name: string): number {
  return Number.parseInt(/-([0-9a-f]{16})\./.exec(name)![1]!, 16);
}

/** Byte offset where each frame starts, for frames of the given payload sizes. */
export function frameOffsets(payloadSizes: readonly number[]): number[] {
  const offsets: number[] = [];
  let offset = 0;
  for (const size of payloadSizes) {
    offsets.push(offset);
    offset += FRAME_HEADER_BYTES + size;
  }
  return offsets;
}

/** Writes a segment file by hand, with frames carrying exactly the given lsns. */
export function writeSegmentFile(dir: string, lsnFirst: number, lsns: readonly number[], bytes: number): string {
  const frames = Buffer.alloc(lsns.length * (FRAME_HEADER_BYTES + bytes));
  let offset = 0;
  for (const lsn of lsns) offset = encodeFrame(frames, offset, lsn, payloadFor(lsn, bytes));
  const file = path.join(dir, segmentFileName(lsnFirst));
  fs.writeFileSync(file, frames);
  return file;
}

/** Writes a snapshot file by hand (not durably; tests do not crash the machine). */
export function writeSnapshotFile(dir: string, lsn: number, payload: Uint8Array): string {
  const file = path.join(dir, snapshotFileName(lsn));
  fs.writeFileSync(file, Buffer.concat([encodeSnapshotHeader(lsn, payload), payload]));
  return file;
}

export function flipBit(file: string, offset: number, bit = 0): void {
  const bytes = fs.readFileSync(file);
  bytes[offset]! ^= 1 << bit;
  fs.writeFileSync(file, bytes);
}

/** Copies the files of a WAL directory, as a crash would leave them (pending records lost). */
export function copyWalDir(from: string): string {
  const to = makeTempDir();
  for (const name of fs.readdirSync(from)) fs.copyFileSync(path.join(from, name), path.join(to, name));
  return to;
}
