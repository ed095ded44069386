// Worker-thread entry: a shard's checkpointer. It keeps a second copy of the shard's state,
// built the same way recovery builds it (the newest snapshot, then the log's records through
// the same pure apply), follows the log as the shard tells it which lsn is durable (and, when
// replicated, acknowledged), and when a snapshot is due writes one at the lsn it has reached:
// collect and encode on this thread, then temp file, fsync, rename, fsync dir, then read the
// file back and check every chunk before telling the shard, which only then counts it and
// drops the log behind it. So a snapshot, however large the shard, never stops the shard's
// thread; its cost is a second copy of the state in memory and this thread's CPU.

import * as fs from 'node:fs';
import * as path from 'node:path';
import { parentPort, workerData } from 'node:worker_threads';
import { createShardState, fromSnapshot, toSnapshot, type ShardConfig } from '../domain/index.js';
import { crc32c } from '../wal/crc32c.js';
import { writeFileDurable } from '../wal/durable-fs.js';
import { snapshotFileName } from '../wal/segment-name.js';
import { encodeChunkedSnapshot, readSnapshotFile } from '../wal/snapshot-codec.js';
import { WalFollower } from '../wal/wal-follower.js';
import { applyRecord, decodeSnapshotWithTail, encodeSnapshotChunks } from './shard-runtime.js';

export interface CheckpointerData {
  dir: string;
  shardId: number;
  shardCount: number;
  config?: Partial<ShardConfig>;
  /** A snapshot is due after this many logged commands. */
  everyCommands: number;
}

/** From the shard's thread: records up to `lsn` may be read and snapshotted. */
export type ToCheckpointer = { k: 'upTo'; lsn: number } | { k: 'stop' };

/** To the shard's thread. */
export type FromCheckpointer =
  | { k: 'ready'; lsn: number }
  | { k: 'snapshot'; lsn: number; file: string; crc: number | null; bytes: number; ms: number; commands: number }
  | { k: 'failed'; message: string };

// TEST-ONLY FAULT (test/checkpointer-crash.test.ts): FLASH_TEST_FAULT=checkpoint_kill_at:<step>
// kills the whole process with SIGKILL at one step of the second snapshot this thread
// writes: `encoded` (state collected and encoded, nothing written), `written` (the temp file
// written, not yet synced or renamed), `renamed` (renamed into place, the directory not yet
// synced), `verified` (read back and checked, the shard not yet told).
const testFaultStep = /^checkpoint_kill_at:(encoded|written|renamed|verified)$/.exec(process.env.FLASH_TEST_FAULT ?? '')?.[1] ?? null;
let snapshotsWritten = 0;
function testFaultPoint(step: string): void {
  if (testFaultStep === step && snapshotsWritten === 1) process.kill(process.pid, 'SIGKILL');
}

const data = workerData as CheckpointerData;
const port = parentPort;
if (port === null) throw new Error('checkpointer must run in a worker thread');

const follower = new WalFollower(data.dir);
let state = createShardState(data.shardId, data.shardCount, data.config);
let tailCrc: number | null = null;
const loaded = follower.loadSnapshot();
if (loaded !== null) {
  const decoded = decodeSnapshotWithTail(loaded.chunks);
  state = fromSnapshot(decoded.snapshot, state.config);
  tailCrc = decoded.tailCrc;
}
let commandsSinceSnapshot = 0;
let upTo = follower.lastLsn;
let working = false;

function post(m: FromCheckpointer): void {
  port!.postMessage(m);
}

/** Reads what became durable, and snapshots when due; runs on this thread's own time. */
function work(): void {
  if (working) return;
  working = true;
  try {
    if (upTo > follower.lastLsn) {
      follower.readTo(upTo, (lsn, payload) => {
        commandsSinceSnapshot += applyRecord(state, lsn, payload);
        tailCrc = crc32c(payload);
      });
    }
    if (commandsSinceSnapshot >= data.everyCommands) snapshot();
  } finally {
    working = false;
  }
}

/** A durable, checked snapshot of this copy at the lsn it has reached. */
function snapshot(): void {
  const started = performance.now();
  const lsn = follower.lastLsn;
  const commands = commandsSinceSnapshot;
  const parts = encodeChunkedSnapshot(lsn, encodeSnapshotChunks(toSnapshot(state), tailCrc));
  testFaultPoint('encoded');
  const name = snapshotFileName(lsn);
  const file = path.join(data.dir, name);
  // A temp name of its own: the shard thread may write a snapshot of the same lsn (at close).
  const bytes = writeFileDurable(data.dir, name, parts, { tmpSuffix: '.ckpt.tmp', onStep: testFaultPoint });
  // Read back: a snapshot the shard counts on (and drops its log for) is one that loads.
  const check = fs.openSync(file, 'r');
  try {
    const decoded = readSnapshotFile(check, lsn);
    if (!decoded.ok) throw new Error(`snapshot ${file} does not read back: ${decoded.reason}`);
  } finally {
    fs.closeSync(check);
  }
  testFaultPoint('verified');
  snapshotsWritten++;
  commandsSinceSnapshot = 0;
  post({ k: 'snapshot', lsn, file, crc: tailCrc, bytes, ms: performance.now() - started, commands });
}

port.on('message', (m: ToCheckpointer) => {
  if (m.k === 'stop') {
    follower.close();
    port.close();
    return;
  }
  if (m.lsn > upTo) upTo = m.lsn;
  // Messages that arrived meanwhile are read first, so a burst of them is one read.
  setImmediate(() => {
    try {
      work();
    } catch (e) {
      post({ k: 'failed', message: e instanceof Error ? e.message : String(e) });
      follower.close();
      port.close();
    }
  });
});

post({ k: 'ready', lsn: follower.lastLsn });
