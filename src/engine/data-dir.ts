// Guards a data directory: one engine process at a time (a pid lock file, taken over
// only from a dead process), and a meta file that pins the shard count, because
// reservation ids and SKU routing depend on it and changing it would strand data.

import { closeSync, existsSync, mkdirSync, openSync, readFileSync, renameSync, rmSync, writeFileSync, writeSync, fsyncSync } from 'node:fs';
import { join } from 'node:path';

export class DataDirError extends Error {
  override readonly name = 'DataDirError';
}

function alive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (e) {
    return (e as NodeJS.ErrnoException).code === 'EPERM';
  }
}

/** Takes the directory's lock; returns a function that releases it. */
export function lockDataDir(dir: string): () => void {
  mkdirSync(dir, { recursive: true });
  const lockPath = join(dir, 'LOCK');
  for (let attempt = 0; attempt < 2; attempt++) {
    try {
      const fd = openSync(lockPath, 'wx');
      writeSync(fd, String(process.pid));
      fsyncSync(fd);
      closeSync(fd);
      return () => rmSync(lockPath, { force: true });
    } catch (e) {
      if ((e as NodeJS.ErrnoException).code !== 'EEXIST') throw e;
      const pid = Number(readFileSync(lockPath, 'utf8').trim());
      if (Number.isInteger(pid) && pid > 0 && pid !== process.pid && alive(pid)) {
        throw new DataDirError(`data directory ${dir} is in use by process ${pid}; two engines must never share one`);
      }
      rmSync(lockPath, { force: true }); // left by a process that died (kill -9)
    }
  }
  throw new DataDirError(`could not lock data directory ${dir}`);
}

interface Meta {
  format: 1;
  shardCount: number;
}

/** Records the shard count on first use and refuses a different one later. */
export function checkMeta(dir: string, shardCount: number): void {
  mkdirSync(dir, { recursive: true });
  const path = join(dir, 'engine.json');
  if (existsSync(path)) {
    const meta = JSON.parse(readFileSync(path, 'utf8')) as Meta;
    if (meta.shardCount !== shardCount) {
      throw new DataDirError(`data directory ${dir} was created with FLASH_SHARDS=${meta.shardCount}; it cannot be opened with ${shardCount}`);
    }
    return;
  }
  const tmp = `${path}.tmp`;
  writeFileSync(tmp, JSON.stringify({ format: 1, shardCount } satisfies Meta));
  const fd = openSync(tmp, 'r');
  fsyncSync(fd);
  closeSync(fd);
  renameSync(tmp, path);
  const dirFd = openSync(dir, 'r');
  fsyncSync(dirFd);
  closeSync(dirFd);
}
