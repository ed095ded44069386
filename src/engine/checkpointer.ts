// Worker-thread entry: a shard's checkpointer. It keeps a second copy of the shard's state,
// built the same way recovery builds it (the newest snapshot, then the log's records through
// the same pure apply), follows the log as the shard tells it which lsn is durable (and, when
// replicated, acknowledged), and when a snapshot is due writes one at the lsn it has reached:
// rows made, encoded and written a chunk at a time into a temp file (synced every 1 MB on
// the way), then fsync, rename, fsync dir, then read the file back and check every chunk
// before telling the shard, which only then counts it and
// drops the log behind it. So a snapshot, however large the shard, never stops the shard's
// thread; its cost is a second copy of the state in memory and this thread's CPU.

import * as fs from 'node:fs';
import * as path from 'node:path';
import { PerformanceObserver, constants as perfConstants } from 'node:perf_hooks';
import { parentPort, receiveMessageOnPort, workerData } from 'node:worker_threads';
import { createShardState, snapshotPieces, type ShardConfig } from '../domain/index.js';
import { crc32c } from '../wal/crc32c.js';
import { fsyncDir } from '../wal/durable-fs.js';
import { removeFilesNow } from '../wal/file-wal.js';
import { snapshotFileName } from '../wal/segment-name.js';
import { ChunkedSnapshotWriter, readSnapshotFileInSteps } from '../wal/snapshot-codec.js';
import { WalFollower } from '../wal/wal-follower.js';
import { backgroundCpuShare, lowerThisThreadPriority, type PriorityOutcome } from './thread-priority.js';
import { applyRecord, encodeSnapshotPieces, restoreSnapshotChunksInSteps, reusingChunks, seededConfig } from './shard-runtime.js';

export interface CheckpointerData {
  dir: string;
  shardId: number;
  shardCount: number;
  config?: Partial<ShardConfig>;
  /** A snapshot is due after this many logged commands. */
  everyCommands: number;
  /**
   * The share of one core a snapshot may take (0 < share <= 1): collecting, encoding and
   * writing it and reading it back run in slices of a few ms with rests between them, so the
   * shard and the gateway, which share the machine's cores with it, are never kept waiting
   * for long. Default: 1 (no rests) when this thread's priority was lowered far enough
   * (`nice`; thread-priority.ts), for the kernel then yields for it; 0.25 when it was not.
   * Loading the copy after a restart runs at this share when one is given, else at 0.25, at
   * normal priority (see lowerPriority).
   */
  cpuShare?: number;
  /**
   * This thread's nice value once its copy is loaded (1..19, default 19; 0 leaves it): on
   * Linux the kernel then runs it only on what the shard, the gateway and the thread pool
   * leave (thread-priority.ts).
   */
  nice?: number;
}

/** Where a checkpoint's time went (ms): making, encoding and writing its rows (and the syncs on the way), syncing and renaming, reading it back (each with its rests), and the rests in all. */
export interface SnapshotStages {
  writeMs: number;
  /** Syncs while writing (every syncEveryBytes) and the time they waited on the disk. */
  writeSyncs: number;
  writeSyncMs: number;
  restedMs: number;
  syncMs: number;
  verifyMs: number;
  /**
   * This thread's garbage collections during the checkpoint: pauses in all (wall ms, which
   * at nice 19 counts the time the kernel ran others meanwhile) and how many were major. A
   * major one (and V8's helper threads that mark its heap, at normal priority) is what a
   * checkpoint's garbage costs the shard beside it.
   */
  gcMs: number;
  gcMajor: number;
}

/**
 * From the shard's thread: records up to `lsn` may be read and snapshotted; files of the log
 * behind an adopted snapshot to delete (then the directory is synced); stop.
 */
export type ToCheckpointer = { k: 'upTo'; lsn: number } | { k: 'remove'; files: string[] } | { k: 'stop' };

/** To the shard's thread. */
export type FromCheckpointer =
  /** Its copy is loaded (resting restedMs ms on the way, at loadCpuPercent); its nice value now (null: unknown) and why, and the share checkpoints run at. */
  | { k: 'ready'; lsn: number; restedMs: number; nice: number | null; niceWhy: string; cpuPercent: number; loadCpuPercent: number }
  | { k: 'snapshot'; lsn: number; file: string; crc: number | null; bytes: number; ms: number; commands: number; stages: SnapshotStages }
  | { k: 'failed'; message: string }
  /** Deleting files the shard's log dropped failed (its next prune hands them over again). */
  | { k: 'removeFailed'; message: string };

// TEST-ONLY FAULT (test/checkpointer-crash.test.ts): FLASH_TEST_FAULT=checkpoint_kill_at:<step>
// kills the whole process with SIGKILL at one step of the second snapshot this thread
// writes: `writing` (the temp file partly written: its first chunks, no header), `written` (the temp file
// written, not yet synced or renamed), `renamed` (renamed into place, the directory not yet
// synced), `verified` (read back and checked, the shard not yet told).
const testFaultStep = /^checkpoint_kill_at:(writing|written|renamed|verified)$/.exec(process.env.FLASH_TEST_FAULT ?? '')?.[1] ?? null;
let snapshotsWritten = 0;
function testFaultPoint(step: string): void {
  if (testFaultStep === step && snapshotsWritten === 1) process.kill(process.pid, 'SIGKILL');
}

/**
 * This thread's latest GC pauses (start, wall ms, major), for SnapshotStages. They arrive a
 * couple of event-loop turns after they happened, and a checkpoint without rests gives the
 * loop none, so a checkpoint counts them by their start once they have arrived (gcDuring).
 */
const gcPauses: { at: number; ms: number; major: boolean }[] = [];
const gcPausesKept = 4096;
new PerformanceObserver((list) => {
  for (const e of list.getEntries()) {
    gcPauses.push({ at: e.startTime, ms: e.duration, major: (e as unknown as { detail?: { kind?: number } }).detail?.kind === perfConstants.NODE_PERFORMANCE_GC_MAJOR });
  }
  if (gcPauses.length > gcPausesKept) gcPauses.splice(0, gcPauses.length - gcPausesKept);
}).observe({ entryTypes: ['gc'] });

/** This thread's GC pauses that started between `from` and `to` (performance.now()), once they have arrived. */
async function gcDuring(from: number, to: number): Promise<{ ms: number; major: number }> {
  for (let i = 0; i < 3; i++) await new Promise((r) => setImmediate(r));
  let ms = 0;
  let major = 0;
  for (const p of gcPauses) {
    if (p.at < from || p.at > to) continue;
    ms += p.ms;
    if (p.major) major++;
  }
  return { ms, major };
}

const data = workerData as CheckpointerData;
const port = parentPort;
if (port === null) throw new Error('checkpointer must run in a worker thread');

const follower = new WalFollower(data.dir);
let state = createShardState(data.shardId, data.shardCount, seededConfig(data.config));
let tailCrc: number | null = null;
/** Until its copy is loaded (load below), this thread reads no log. */
let loading = true;
let commandsSinceSnapshot = 0;
let upTo = 0;
/** The catch-up after a checkpoint: up to here the log is read in paced steps. */
let pacedTo = 0;
let working = false;
let stopped = false;
/** Set once the copy is loaded (lowerPriority below): the share asked, or the default for the priority this thread got. */
let cpuShare = 0.25;
/** The share the copy is loaded at (start below). */
let loadShare = 0.25;
let priority: PriorityOutcome = { nice: null, yields: false, why: 'not loaded yet' };
/** Work of a slice before a rest (ms); the rest is as long as the share asks. */
const sliceMs = 4;
/** Reservation rows per chunk: small, so that one chunk is about one slice of work. */
const rowsPerChunk = 2_000;
const chunkEncoder = reusingChunks();

function post(m: FromCheckpointer): void {
  if (!stopped) port!.postMessage(m);
}

const rest = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));

/** Log records read and applied between two looks at the clock (a step of the catch-up). */
const recordsPerStep = 1_000;
/** The least share of a core the catch-up after a checkpoint runs at, whatever the checkpoint's. */
const catchUpShareMin = 0.5;
/** While a snapshot is written, its file is synced every this many bytes (see ChunkedSnapshotWriter). */
const syncEveryBytes = 1024 * 1024;

function onRecord(lsn: number, payload: Uint8Array): void {
  commandsSinceSnapshot += applyRecord(state, lsn, payload);
  tailCrc = crc32c(payload);
}

/** Reads what became durable, and snapshots when due; runs on this thread's own time. */
async function work(): Promise<void> {
  if (working || stopped || loading) return;
  working = true;
  try {
    // The log that became durable while a checkpoint stood this copy still (seconds of a
    // busy shard) is a burst of work the checkpoint caused: it is read in steps with rests,
    // at half a core (or the checkpoint's share, if more), so that it never takes a whole
    // core at once. Never slower: a reader paced at the checkpoint's 5 % can be slower than a
    // busy shard's log, and then the copy falls behind for good and no snapshot is ever due
    // again (found by review: 1 snapshot in 60 s where unpaced reading made 11). Only that
    // stretch is paced; what comes after is read as it comes.
    if (pacedTo > follower.lastLsn) {
      sliceStart = performance.now();
      while (pacedTo > follower.lastLsn) {
        follower.readTo(pacedTo, onRecord, recordsPerStep);
        if (pacedTo > follower.lastLsn) await maybeRest(Math.max(cpuShare, catchUpShareMin));
      }
    }
    if (upTo > follower.lastLsn) follower.readTo(upTo, onRecord);
    // While a snapshot is written this copy stands still (its rows are the snapshot's);
    // what became durable meanwhile is read right after.
    if (commandsSinceSnapshot >= data.everyCommands) await snapshot();
  } finally {
    working = false;
  }
  if (!stopped && upTo > follower.lastLsn) setImmediate(run);
}

function run(): void {
  work().catch((e: unknown) => {
    if (stopped) return;
    post({ k: 'failed', message: e instanceof Error ? e.message : String(e) });
    stopped = true;
    follower.close();
    port!.close();
  });
}

let sliceStart = 0;
let restedMs = 0;

/** After a slice of work, a rest as long as the share asks (none at 100 %). */
async function maybeRest(share = cpuShare): Promise<void> {
  if (share >= 1) return;
  const worked = performance.now() - sliceStart;
  if (worked < sliceMs) return;
  const pause = (worked * (1 - share)) / share;
  await rest(pause);
  if (stopped) throw new Error('stopped during a checkpoint');
  restedMs += pause;
  sliceStart = performance.now();
}

/** Runs steps of work (a generator that yields between them), resting between slices. */
async function paced<T>(steps: Generator<void, T, void>, share = cpuShare): Promise<T> {
  for (;;) {
    const r = steps.next();
    if (r.done === true) return r.value;
    await maybeRest(share);
  }
}

/**
 * A durable, checked snapshot of this copy at the lsn it has reached. Every part of it that
 * takes time (making the rows, encoding and writing them, reading the file back) runs in
 * slices of about sliceMs with rests between them, at most cpuShare of a core. The rows are
 * made from the copy a chunk at a time and each chunk is written before the next is made,
 * so a checkpoint holds one chunk, never a second snapshot-sized heap: a snapshot of a
 * million holds built whole first (1 GB of rows here) cost this thread a major GC whose
 * concurrent marking took both cores of the machine for most of a second.
 */
async function snapshot(): Promise<void> {
  drainMessages();
  const started = performance.now();
  sliceStart = started;
  restedMs = 0;
  const lsn = follower.lastLsn;
  const commands = commandsSinceSnapshot;
  const name = snapshotFileName(lsn);
  const file = path.join(data.dir, name);
  // A temp name of its own: the shard thread may write a snapshot of the same lsn (at close).
  const tmp = `${file}.ckpt.tmp`;
  const fd = fs.openSync(tmp, 'w');
  let bytes: number;
  let written: number;
  let writeSyncs = 0;
  let writeSyncMs = 0;
  try {
    const writer = new ChunkedSnapshotWriter(fd, lsn, syncEveryBytes);
    let chunks = 0;
    // Each chunk is written before the next is made, so one buffer serves them all.
    for (const chunk of encodeSnapshotPieces(snapshotPieces(state, rowsPerChunk), tailCrc, chunkEncoder)) {
      if (chunk !== null) {
        const syncedBefore = writer.syncMs;
        writer.add(chunk);
        // A sync on the way waited on the disk, not the CPU: it buys no rest.
        sliceStart += writer.syncMs - syncedBefore;
        if (++chunks === 2) testFaultPoint('writing');
        if (chunks % 64 === 0) drainMessages();
      }
      await maybeRest();
    }
    writeSyncs = writer.syncs;
    writeSyncMs = writer.syncMs;
    bytes = writer.finish();
    written = performance.now();
    testFaultPoint('written');
    fs.fsyncSync(fd);
  } finally {
    fs.closeSync(fd);
  }
  fs.renameSync(tmp, file);
  testFaultPoint('renamed');
  fsyncDir(data.dir);
  const synced = performance.now();
  // The sync waited on the disk, not the CPU: it buys no rest.
  sliceStart = synced;
  // Read back: a snapshot the shard counts on (and drops its log for) is one that loads.
  const check = fs.openSync(file, 'r');
  try {
    const decoded = await paced(readSnapshotFileInSteps(check, lsn, false));
    if (!decoded.ok) throw new Error(`snapshot ${file} does not read back: ${decoded.reason}`);
  } finally {
    fs.closeSync(check);
  }
  testFaultPoint('verified');
  const verified = performance.now();
  const gc = await gcDuring(started, verified);
  snapshotsWritten++;
  commandsSinceSnapshot = 0;
  pacedTo = upTo;
  const r = (x: number): number => Math.round(x);
  post({
    k: 'snapshot', lsn, file, crc: tailCrc, bytes, ms: verified - started, commands,
    stages: { writeMs: r(written - started), writeSyncs, writeSyncMs: r(writeSyncMs), restedMs: r(restedMs), syncMs: r(synced - written), verifyMs: r(verified - synced),
      gcMs: r(gc.ms), gcMajor: gc.major },
  });
}

function onMessage(m: ToCheckpointer): void {
  if (m.k === 'stop') {
    stopped = true;
    follower.close();
    port!.close();
    return;
  }
  if (m.k === 'remove') {
    // Only files the shard's log has dropped from its lists; one left by a failure is found
    // and handed over again at the shard's next prune, and is no reason to stop snapshots.
    try {
      removeFilesNow(m.files, data.dir);
    } catch (e) {
      post({ k: 'removeFailed', message: e instanceof Error ? e.message : String(e) });
    }
    return;
  }
  if (m.lsn > upTo) upTo = m.lsn;
  // Messages that arrived meanwhile are read first, so a burst of them is one read.
  setImmediate(run);
}
port.on('message', onMessage);

/**
 * Handles the messages waiting now, without giving the event loop a turn: a checkpoint
 * without rests never gives it one, and the files behind the snapshot before (whose space a
 * nearly full disk needs for the next) would otherwise be deleted only after it. Throws if
 * one of them stopped this thread.
 */
function drainMessages(): void {
  for (let r = receiveMessageOnPort(port!); r !== undefined; r = receiveMessageOnPort(port!)) onMessage(r.message as ToCheckpointer);
  if (stopped) throw new Error('stopped during a checkpoint');
}

/**
 * Loads this copy from the newest snapshot, paced like a checkpoint: it starts right after
 * the shard recovered, while the shard serves (after a restart on drop day, the busiest
 * seconds there are), so reading, checking and restoring a million holds must not take a core
 * (and V8's helper threads) from it for seconds at once. Then it reads the log as told.
 */
async function load(): Promise<void> {
  const started = performance.now();
  sliceStart = started;
  restedMs = 0;
  const loaded = await paced(follower.loadSnapshotInSteps(), loadShare);
  if (loaded !== null) {
    const restored = await paced(restoreSnapshotChunksInSteps(loaded.chunks, state.config, rowsPerChunk), loadShare);
    state = restored.state;
    tailCrc = restored.tailCrc;
  }
  if (follower.lastLsn > upTo) upTo = follower.lastLsn;
  // The log that became durable during the load is read paced too, as after a checkpoint (an
  // unpaced read of a slow load's log was a burst of 100-300 ms beside the shard; review).
  pacedTo = upTo;
  loading = false;
  lowerPriority();
  post({ k: 'ready', lsn: follower.lastLsn, restedMs: Math.round(restedMs), nice: priority.nice, niceWhy: priority.why, cpuPercent: Math.round(cpuShare * 100), loadCpuPercent: Math.round(loadShare * 100) });
  run();
}

/**
 * Once the copy is loaded: lowers this thread's priority, so that the kernel gives the cores
 * to the shard, the gateway and the thread pool first and to the checkpoints only what they
 * leave, and sets the share of a core checkpoints run at (no rests when the kernel yields
 * for us, a quarter of a core when it could not be asked). Measured at half the peak with
 * checkpoints of a million holds, three alternating rounds: at nice 19 without rests the
 * worst answer was no worse than with no snapshot work at all (70-81 against 71-103 ms),
 * each snapshot written in 1.6-2.0 s; paced at 25 % at normal priority, 92-128 ms and
 * 4.6-12.5 s (README, "Benchmarks").
 *
 * Not before: the load builds a heap of 600+ MB while the shard serves its first seconds
 * after a restart. Loaded at nice 19 beside a shard at half its peak, without rests (two
 * rounds) or paced at 25 % (three, on a machine busy with other work too), p99 was 394,
 * 1,138, 265, 1,795 and 87 ms; at normal priority, paced, 115-305 ms in five rounds. A
 * thread the kernel seldom runs while the machine is full may be holding a lock the
 * process's other threads need (V8's page allocator, a message port), so the part that
 * allocates most stays at the priority of the threads beside it.
 */
function lowerPriority(): void {
  priority = lowerThisThreadPriority(data.nice ?? 19);
  cpuShare = backgroundCpuShare(data.cpuShare, priority.yields);
}

async function start(): Promise<void> {
  // The process's thread pool runs before this thread's nice value drops: threads inherit
  // the nice value of the thread that starts them, and the shard's fdatasync runs there.
  await fs.promises.access(data.dir);
  // The load runs at normal priority (see lowerPriority): the kernel does not yield for it.
  loadShare = backgroundCpuShare(data.cpuShare, false);
  await load();
}

start().catch((e: unknown) => {
  if (stopped) return;
  post({ k: 'failed', message: e instanceof Error ? e.message : String(e) });
  stopped = true;
  follower.close();
  port.close();
});
