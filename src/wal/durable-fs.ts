// Small synchronous file-system steps the WAL needs to be crash-safe: full writes at a
// position, directory fsync, durable create-by-rename and durable truncation. Every function
// either finishes its step or throws; none of them swallows an I/O error or retries one.

import * as fs from 'node:fs';
import * as path from 'node:path';

/** Writes `data[start, end)` at `position`, looping only if the kernel writes part of it. */
export function writeAllSync(fd: number, data: Uint8Array, start: number, end: number, position: number): void {
  let offset = start;
  while (offset < end) {
    const written = fs.writeSync(fd, data, offset, end - offset, position + (offset - start));
    if (written <= 0) throw new Error(`write returned ${written} with ${end - offset} bytes left`);
    offset += written;
  }
}

/** Makes creations, renames and deletions inside `dir` durable. */
export function fsyncDir(dir: string): void {
  const fd = fs.openSync(dir, 'r');
  try {
    fs.fsyncSync(fd);
  } finally {
    fs.closeSync(fd);
  }
}

/** Creates `dir` and any missing parents, and makes each new directory entry durable. */
export function ensureDirDurable(dir: string): void {
  const firstCreated = fs.mkdirSync(dir, { recursive: true });
  if (firstCreated === undefined) return;
  const stop = path.dirname(path.resolve(firstCreated));
  for (let p = path.resolve(dir); p !== stop; p = path.dirname(p)) {
    fsyncDir(path.dirname(p));
    if (p === path.dirname(p)) break;
  }
}

/** Options of writeFileDurable: a temp name of the writer's own, and TEST-ONLY step hooks. */
export interface DurableWriteOptions {
  /** Suffix of the temp file (default `.tmp`; it must end in `.tmp`, which recovery removes). */
  tmpSuffix?: string;
  /** Called at a step (after the temp file is written, after the rename): fault injection. */
  onStep?: (step: 'written' | 'renamed') => void;
}

/**
 * Writes `chunks` to `dir/name` so that after a crash the file is either absent or complete:
 * write `name.tmp`, fsync it, rename it over `name`, fsync the directory. Returns the bytes.
 */
export function writeFileDurable(dir: string, name: string, chunks: readonly Uint8Array[], opts: DurableWriteOptions = {}): number {
  const finalPath = path.join(dir, name);
  const tmpPath = `${finalPath}${opts.tmpSuffix ?? '.tmp'}`;
  const fd = fs.openSync(tmpPath, 'w');
  let bytes = 0;
  try {
    for (const chunk of chunks) {
      writeAllSync(fd, chunk, 0, chunk.length, bytes);
      bytes += chunk.length;
    }
    opts.onStep?.('written');
    fs.fsyncSync(fd);
  } finally {
    fs.closeSync(fd);
  }
  fs.renameSync(tmpPath, finalPath);
  opts.onStep?.('renamed');
  fsyncDir(dir);
  return bytes;
}

/** Reads a whole open file from offset 0. */
export function readAllSync(fd: number): Buffer {
  const size = fs.fstatSync(fd).size;
  const bytes = Buffer.allocUnsafe(size);
  let offset = 0;
  while (offset < size) {
    const read = fs.readSync(fd, bytes, offset, size - offset, offset);
    if (read === 0) throw new Error(`file shrank while being read: ${offset} of ${size} bytes`);
    offset += read;
  }
  return bytes;
}
