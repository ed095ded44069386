// Worker-thread entry: the single owner of one shard's state and WAL. It runs turns: take
// every batch that arrived, apply them in order (plus a res.expire when holds are due) and
// append the turn's record. Commits are pipelined: while one group of records is in its
// fdatasync (on the thread pool), the next turns apply and append, and the next commit takes
// all of them at once. Every answer of a turn waits until the log is durable up to the record
// of that turn or any earlier one (a refusal or a read may have seen a change still in
// flight), so nothing is ever answered that a crash could take back. Any WAL error ends the
// thread so the parent replays it.
// With a replicated log it starts as a follower (applying records the owner wrote, nothing
// else), serves only once told to and only while its lease lasts, and hands each turn's
// record to the parent as soon as it is made (its append to the replicated log overlaps the
// local fdatasync); the parent answers a turn once the replicated log has it too.

import { Worker, parentPort, workerData } from 'node:worker_threads';
import type { Command, DomainEvent, Outcome } from '../domain/index.js';
import { nextDueAtMs, queueFigures, type ShardConfig } from '../domain/index.js';
import { ShardRuntime } from './shard-runtime.js';
import { removeFilesNow } from '../wal/file-wal.js';
import type { CallOutcome, FromShard, ShardStats, ToShard } from './shard-protocol.js';
import type { CheckpointerData, FromCheckpointer, ToCheckpointer } from './checkpointer.js';

export interface ShardWorkerData {
  dir: string;
  shardId: number;
  shardCount: number;
  config?: Partial<ShardConfig>;
  snapshotEveryCommands?: number;
  /** Most commands applied in one turn; the rest wait for the next turn. */
  turnCommandsMax?: number;
  skuStatsMax?: number;
  /** Reserve calls per second per buyer, held by this shard for every gateway (0 = off). */
  buyerRps?: number;
  /** The log is replicated (NATS shard nodes): start as a follower. */
  replicated?: boolean;
  /**
   * Bytes of staged records (applied, not yet handed to a commit) past which no new turn
   * runs until the commit in flight returns: bounds what waits for the disk (default 8 MiB).
   */
  pipelineBytesMax?: number;
  /**
   * Snapshots are taken by a checkpointer thread that follows this shard's log with its own
   * copy of the state (default), never on this thread while it serves; false: on this
   * thread, when no batch waits (and forced at four times the interval).
   */
  checkpointer?: boolean;
  /** The share of one core (percent) the checkpointer's snapshot writing may take (default: see CheckpointerData.cpuShare). */
  checkpointCpuPercent?: number;
  /** The checkpointer thread's nice value (default 19; 0 leaves it). */
  checkpointNice?: number;
}

const data = workerData as ShardWorkerData;
const port = parentPort;
if (port === null) throw new Error('shard-worker must run in a worker thread');

const runtime = ShardRuntime.open({
  dir: data.dir, shardId: data.shardId, shardCount: data.shardCount, config: data.config,
  snapshotEveryCommands: data.snapshotEveryCommands, buyerRps: data.buyerRps, replicated: data.replicated,
  // WAL events go to the parent's logger; a torn tail is worth a warning, the rest is routine.
  onWalEvent: (e) => port.postMessage({
    k: 'log', level: e.type === 'torn_tail_truncated' || e.type === 'snapshot_invalid' ? 'warn' : 'info', msg: `wal ${e.type.replaceAll('_', ' ')}`, data: { ...e },
  } satisfies FromShard),
});
const turnCommandsMax = data.turnCommandsMax ?? 8192;

// ---- the checkpointer ------------------------------------------------------------------
// Started after recovery (which may have cut a torn tail) so it reads what this thread reads.
let checkpointer: Worker | null = null;
let checkpointerToldLsn = 0;
let checkpointerTimer: NodeJS.Timeout | null = null;
if (data.checkpointer !== false) {
  const everyCommands = data.snapshotEveryCommands ?? 1_000_000;
  const cp = new Worker(new URL('./checkpointer.js', import.meta.url), {
    workerData: { dir: data.dir, shardId: data.shardId, shardCount: data.shardCount, config: data.config, everyCommands, cpuShare: data.checkpointCpuPercent === undefined ? undefined : data.checkpointCpuPercent / 100, nice: data.checkpointNice } satisfies CheckpointerData,
  });
  checkpointer = cp;
  const startedMs = performance.now();
  cp.on('message', (m: FromCheckpointer) => {
    if (m.k === 'ready') {
      // Its copy is loaded (the newest snapshot, paced at its CPU share while the shard serves).
      post({ k: 'log', level: 'info', msg: 'checkpointer ready', data: { lsn: m.lsn, ms: Math.round(performance.now() - startedMs), restedMs: m.restedMs, nice: m.nice, niceWhy: m.niceWhy, cpuPercent: m.cpuPercent, loadCpuPercent: m.loadCpuPercent } });
    } else if (m.k === 'snapshot') {
      const adoptStarted = performance.now();
      if (!closed && runtime.adoptSnapshot(m, removeByCheckpointer)) {
        post({ k: 'log', level: 'info', msg: 'checkpoint stages', data: { lsn: m.lsn, ...m.stages, adoptMs: Math.round(performance.now() - adoptStarted) } });
        announceSnapshot();
      }
    } else if (m.k === 'removeFailed') {
      post({ k: 'log', level: 'warn', msg: 'the checkpointer could not delete log files behind a snapshot; the next snapshot tries again', data: { error: m.message } });
    } else if (m.k === 'failed') {
      checkpointerGone(`checkpointer failed: ${m.message}`);
    }
  });
  cp.on('error', (e) => checkpointerGone(`checkpointer ended: ${e.message}`));
  cp.on('exit', (code) => { if (!closing) checkpointerGone(`checkpointer exited with code ${code}`); });
}

/**
 * The log's files behind an adopted snapshot are deleted by the checkpointer, at its low
 * priority: unlinking a snapshot of a million holds and syncing the directory took this
 * thread 17-79 ms per checkpoint. Without one, here and now.
 */
function removeByCheckpointer(files: readonly string[], dir: string): void {
  if (checkpointer === null) removeFilesNow(files, dir);
  else checkpointer.postMessage({ k: 'remove', files: [...files] } satisfies ToCheckpointer);
}

/** The checkpointer is gone: an alarm, and snapshots are taken on this thread again. */
function checkpointerGone(why: string): void {
  if (checkpointer === null) return;
  const cp = checkpointer;
  checkpointer = null;
  void cp.terminate();
  post({ k: 'log', level: 'error', msg: 'the shard checkpointer stopped; snapshots are taken on the shard thread from now on', data: { why } });
}

/** The newest lsn a snapshot may cover: durable here and, when replicated, acknowledged. */
function snapshotSafeLsn(): number {
  return replicated ? Math.min(runtime.durableLsn, runtime.ackedLsn) : runtime.durableLsn;
}

/** Tells the checkpointer how far it may read (at most every 10 ms: one message per burst). */
function tellCheckpointer(): void {
  if (checkpointer === null || checkpointerTimer !== null) return;
  checkpointerTimer = setTimeout(() => {
    checkpointerTimer = null;
    const lsn = snapshotSafeLsn();
    if (checkpointer === null || lsn <= checkpointerToldLsn) return;
    checkpointerToldLsn = lsn;
    checkpointer.postMessage({ k: 'upTo', lsn } satisfies ToCheckpointer);
  }, 10);
}
const pipelineBytesMax = data.pipelineBytesMax ?? 8 * 1024 * 1024;

// TEST-ONLY FAULT, never set in production or anywhere but test/history-faults.test.ts:
// FLASH_TEST_FAULT=ack_before_log answers every turn at once, BEFORE its record is durable,
// and starts each commit 20-50 ms late. A kill -9 in that window loses acknowledged changes:
// the planted bug the history checker must catch. Read once, at worker start.
const testFaultAckBeforeLog = process.env.FLASH_TEST_FAULT === 'ack_before_log';
// TEST-ONLY FAULT (test/history-faults.test.ts): FLASH_TEST_FAULT=kill_at:<stage> kills the
// whole process with SIGKILL at a random passage (the 10th to 40th) through one stage of
// the commit pipeline: `staged` (a turn applied and appended, not yet written; preferably
// while the previous commit is in its fdatasync), `written` (a group written, its fdatasync started, answers waiting),
// `synced` (the fdatasync returned, nothing answered yet), `answered` (just answered).
const testFaultKillAt = /^kill_at:(staged|written|synced|answered)$/.exec(process.env.FLASH_TEST_FAULT ?? '')?.[1] ?? null;
let testFaultKillIn = 10 + Math.floor(Math.random() * 31);

/**
 * TEST-ONLY: dies here when FLASH_TEST_FAULT=kill_at:<stage> says so. `preferred`: a passage
 * worth dying at (staged: while the previous commit is in its fdatasync); once due, the kill
 * waits for one, for at most 10 passages more.
 */
function testFaultPoint(stage: 'staged' | 'written' | 'synced' | 'answered', preferred = true): void {
  if (testFaultKillAt !== stage || --testFaultKillIn > 0) return;
  if (!preferred && testFaultKillIn > -10) return;
  process.kill(process.pid, 'SIGKILL');
}
const expireCommand: Command = { t: 'res.expire' };
let queue: { id: number; cmds: Command[] }[] = [];
let turnScheduled = false;
let expiryTimer: NodeJS.Timeout | null = null;
let closing = false;
let closed = false;
const replicated = data.replicated === true;
/** A follower applies what the owner wrote; only a server runs turns. */
let serving = !replicated;
/** Replicated: wall-clock end of the lease the parent last told us of; no turn runs past it. */
let leaseUntilMs = replicated ? 0 : Number.POSITIVE_INFINITY;

function post(message: FromShard): void {
  port!.postMessage(message);
}

/**
 * `o` without its view `key`, with the view's JSON text (and `dropId`) instead. Copied by a
 * loop, not `{ key, ...rest }`: object rest is a runtime call that cost 2 µs a reserve here,
 * a loop of the few keys 0.7 µs.
 */
function withJson(o: Outcome & { ok: true }, key: 'reservation' | 'sku' | 'drop' | 'entry', json: string, dropId?: string | null): Outcome {
  const w: Record<string, unknown> = { ok: true, status: o.status };
  const from = o as unknown as Record<string, unknown>;
  for (const k in from) if (k !== key && k !== 'ok' && k !== 'status' && from[k] !== undefined) w[k] = from[k];
  w.json = json;
  if (dropId !== undefined) w.dropId = dropId;
  return w as unknown as Outcome;
}

/** Replaces a view object by its JSON text (see Outcome.json): cheaper to send and to answer. */
function toWire(o: Outcome): Outcome {
  if (!o.ok) return o;
  if (o.reservation !== undefined) return withJson(o, 'reservation', JSON.stringify(o.reservation));
  if (o.sku !== undefined) return withJson(o, 'sku', JSON.stringify(o.sku), o.sku.dropId);
  if (o.drop !== undefined) return withJson(o, 'drop', JSON.stringify(o.drop));
  if (o.entry !== undefined) return withJson(o, 'entry', JSON.stringify(o.entry));
  return o;
}

function scheduleTurn(): void {
  if (turnScheduled) return;
  turnScheduled = true;
  setImmediate(turn);
}

function takeBatches(): { id: number; cmds: Command[] }[] {
  let count = 0;
  let n = 0;
  while (n < queue.length && (n === 0 || count + (queue[n]?.cmds.length ?? 0) <= turnCommandsMax)) {
    count += queue[n]!.cmds.length;
    n++;
  }
  const taken = queue.slice(0, n);
  queue = queue.slice(n);
  return taken;
}

/** Answers batches without applying them: the shard is not ours to change right now. */
function refuseBatches(batches: { id: number; cmds: Command[] }[], why: string): void {
  for (const b of batches) {
    const outcome: CallOutcome = { ok: false, code: 'shard_unavailable', message: `shard ${data.shardId} ${why}; retry shortly` };
    post({ k: 'reply', id: b.id, outcomes: b.cmds.map(() => outcome), events: null, commitMs: 0, needLsn: 0 });
  }
}

/**
 * Answers that wait for a watermark (an lsn the log has reached) to pass their own lsn; they
 * are added in lsn order, so they are released in order, from the front.
 */
class LsnWaiters {
  private waiting: { lsn: number; answer: () => void }[] = [];

  constructor(private readonly watermark: () => number) {}

  get size(): number {
    return this.waiting.length;
  }

  /** Runs `answer` once the watermark reaches `lsn` (at once if it has). */
  when(lsn: number, answer: () => void): void {
    if (this.watermark() >= lsn) answer();
    else this.waiting.push({ lsn, answer });
  }

  release(): void {
    const reached = this.watermark();
    let n = 0;
    while (n < this.waiting.length && this.waiting[n]!.lsn <= reached) n++;
    if (n === 0) return;
    const ready = this.waiting;
    this.waiting = ready.slice(n);
    for (let i = 0; i < n; i++) ready[i]!.answer();
  }
}

/** Answers of turns, waiting for the log to be durable here up to their lsn. */
const awaitingDurable = new LsnWaiters(() => runtime.durableLsn);
/**
 * Answers that show state to someone outside the log's owner (stats for /metrics): they wait
 * until what they saw is durable here and, when replicated, acknowledged by the replicated log.
 */
const awaitingSafe = new LsnWaiters(() => snapshotSafeLsn());
/** A shutdown that waits for the commit in flight to return. */
let shutdownWaiting: number | null = null;
let testFaultCommitTimer: NodeJS.Timeout | null = null;

function whenSafe(lsn: number, answer: () => void): void {
  awaitingSafe.when(lsn, answer);
}

function releaseSafe(): void {
  awaitingSafe.release();
}

/** Runs `answer` once every record up to `lsn` is durable here (at once if it is). */
function whenDurable(lsn: number, answer: () => void): void {
  awaitingDurable.when(lsn, answer);
}

function releaseDurable(): void {
  awaitingSafe.release();
  awaitingDurable.release();
}

/** Starts the next commit if records are staged and none is in flight. */
function pump(): void {
  if (closed || runtime.syncing) return;
  if (testFaultAckBeforeLog) {
    testFaultCommitTimer ??= setTimeout(() => {
      testFaultCommitTimer = null;
      if (!closed && !runtime.syncing) runtime.commitAsync(committed);
    }, 20 + Math.floor(Math.random() * 31));
    return;
  }
  if (runtime.commitAsync(committed) && testFaultKillAt !== null && awaitingDurable.size > 0) testFaultPoint('written');
}

/** A commit returned: answer what it made durable, then start the next one at once. */
function committed(error: Error | null): void {
  // The log's state is unknown after a failed fdatasync: end the thread; the parent answers
  // what was in flight 503 and replays the log (which never answered what it lacks).
  if (error !== null) throw error;
  if (closed) return;
  tellCheckpointer();
  if (testFaultKillAt !== null && awaitingDurable.size > 0) testFaultPoint('synced');
  releaseDurable();
  if (testFaultKillAt !== null) testFaultPoint('answered');
  if (shutdownWaiting !== null) return shutdown(shutdownWaiting);
  if (checkpointer === null && runtime.snapshotForced()) {
    // The log grew to four snapshot intervals under load: commit what is staged and take
    // the snapshot now, busy or not (this turn's answers wait for it). Never while a
    // checkpointer serves this shard: a paced checkpoint takes longer than four intervals on
    // a busy shard, and a snapshot of this thread's would stop the shard, make the
    // checkpoint under way stale (refused, its file wasted), and let the log behind it go
    // before the checkpointer has read it. A checkpointer that fails hands this back.
    const failures = runtime.snapshotFailures;
    runtime.commit();
    releaseDurable();
    if (runtime.snapshotIfForced()) announceSnapshot();
    reportSnapshotFailure(failures);
  }
  pump();
  if (queue.length > 0) scheduleTurn();
  else scheduleIdleSnapshot();
}

function turn(): void {
  turnScheduled = false;
  if (closed) return;
  // Backpressure: enough waits for the disk; the commit in flight schedules the next turn.
  if (runtime.syncing && runtime.pendingBytes >= pipelineBytesMax) return;
  const nowMs = Date.now();
  const batches = takeBatches();
  if (!serving || nowMs >= leaseUntilMs) {
    // A node paused past its lease (SIGSTOP, a long GC pause) comes back here first: it
    // applies nothing, so it writes nothing, whatever was queued while it slept.
    refuseBatches(batches, serving ? 'lease has run out on this node' : 'is not served by this node');
    if (queue.length > 0) scheduleTurn();
    return;
  }
  const commands: Command[] = [];
  const expire = runtime.housekeepingDue(nowMs);
  if (expire) commands.push(expireCommand);
  for (const b of batches) for (const c of b.cmds) commands.push(c);
  if (commands.length > 0) {
    const started = performance.now();
    const lsnBefore = runtime.lastLsn;
    const applied = runtime.stage(commands, nowMs);
    const staged = runtime.lastLsn > lsnBefore;
    if (testFaultKillAt !== null && staged) testFaultPoint('staged', runtime.syncing);
    let events: DomainEvent[] | null = null;
    for (const a of applied) if (a.events !== null) for (const e of a.events) if (e.type !== 'paid') (events ??= []).push(e);
    // Replicated: the turn's record goes to the parent now, so that its append to the
    // replicated log runs while the local fdatasync does; the answers follow once durable here.
    const record = replicated ? runtime.takeLastRecord() : null;
    if (record !== null) post({ k: 'record', record });
    const needLsn = runtime.lastLsn;
    let i = expire ? 1 : 0;
    const replies: FromShard[] = [];
    for (const b of batches) {
      // Built by push: an array made by new Array(n) stays holey however it is filled, and
      // postMessage copies a holey array as a sparse one, element by key (slower both ways).
      const outcomes: CallOutcome[] = [];
      for (let j = 0; j < b.cmds.length; j++) outcomes.push(toWire(applied[i++]!.outcome));
      replies.push({ k: 'reply', id: b.id, outcomes, events: null, commitMs: 0, needLsn });
    }
    const answer = (): void => {
      // Each event and the turn's time to durable go once, with the turn's first reply.
      const commitMs = staged ? performance.now() - started : 0;
      if (replies.length === 0) {
        if (events !== null || commitMs > 0) post({ k: 'reply', id: -1, outcomes: [], events, commitMs, needLsn });
        return;
      }
      const first = replies[0] as Extract<FromShard, { k: 'reply' }>;
      first.events = events;
      first.commitMs = commitMs;
      for (const r of replies) post(r);
    };
    if (testFaultAckBeforeLog) answer();
    else whenDurable(needLsn, answer);
    pump();
  }
  if (queue.length > 0) scheduleTurn();
  else scheduleIdleSnapshot();
  armExpiryTimer();
}

let idleCheckScheduled = false;

/** Snapshots only when no batch waits (after messages that arrived meanwhile are read). */
function scheduleIdleSnapshot(): void {
  if (idleCheckScheduled) return;
  idleCheckScheduled = true;
  setImmediate(() => {
    idleCheckScheduled = false;
    if (closed || queue.length > 0 || turnScheduled || runtime.syncing || checkpointer !== null) return;
    const failures = runtime.snapshotFailures;
    if (runtime.snapshotIfDue()) announceSnapshot();
    releaseDurable(); // the snapshot committed what was staged
    reportSnapshotFailure(failures);
  });
}

/** A failed snapshot is an alarm (logged, counted in the shard's stats), never a crash loop. */
function reportSnapshotFailure(failuresBefore: number): void {
  if (runtime.snapshotFailures === failuresBefore) return;
  post({ k: 'log', level: 'error', msg: 'snapshot failed; the shard goes on serving with a longer log', data: { error: runtime.lastSnapshotError, failures: runtime.snapshotFailures } });
}

/** Replicated: tells the parent of a new local snapshot, which it may ship to other nodes. */
function announceSnapshot(): void {
  const snap = replicated ? runtime.newestSnapshot : null;
  if (snap !== null) post({ k: 'snapshot', lsn: snap.lsn, file: snap.file, crc: runtime.snapshotTailCrc });
}

/** Wakes the shard when the next hold falls due (at least every second for retention). */
function armExpiryTimer(): void {
  if (closing || !serving) return;
  if (expiryTimer !== null) clearTimeout(expiryTimer);
  const next = nextDueAtMs(runtime.state, Date.now());
  const waitMs = next === null ? 1000 : Math.min(1000, Math.max(1, next - Date.now() + 1));
  expiryTimer = setTimeout(scheduleTurn, waitMs);
}

function stats(): ShardStats {
  const max = data.skuStatsMax ?? 1000;
  const skus: ShardStats['skus'] = [];
  for (const s of runtime.state.skus.values()) {
    if (skus.length >= max) break;
    skus.push({ sku: s.sku, onHand: s.onHand, available: s.available, reserved: s.reserved, sold: s.sold, refunded: s.refunded });
  }
  const wal = runtime.walStats;
  return {
    shardId: data.shardId, skuCount: runtime.state.skus.size, skus, liveReservations: runtime.state.liveCount,
    reservations: runtime.state.reservations.size, walCommits: wal.commits, walRecords: wal.recordsCommitted,
    walFsyncMsTotal: wal.fsyncMsTotal, heapUsedBytes: process.memoryUsage().heapUsed, snapshotFailures: runtime.snapshotFailures,
    logCommandsSinceSnapshot: runtime.logCommandsSinceSnapshot, snapshotEveryCommands: runtime.snapshotInterval,
    queues: queueFigures(runtime.state, Date.now(), max),
  };
}

function shutdown(id: number): void {
  closing = true;
  if (checkpointerTimer !== null) clearTimeout(checkpointerTimer);
  checkpointerTimer = null;
  if (checkpointer !== null) {
    // Whatever it was writing is a temp file until renamed; recovery removes a leftover one.
    void checkpointer.terminate();
    checkpointer = null;
  }
  if (expiryTimer !== null) clearTimeout(expiryTimer);
  if (testFaultCommitTimer !== null) clearTimeout(testFaultCommitTimer);
  testFaultCommitTimer = null;
  if (replicated) {
    // Nothing more is applied: what is queued may no longer be ours.
    refuseBatches(queue.splice(0), 'is changing owner');
  }
  // The commit in flight returns first (its callback calls this again).
  if (runtime.syncing) {
    shutdownWaiting = id;
    return;
  }
  if (replicated) {
    closed = true;
    runtime.commit();
    releaseDurable();
    // A snapshot may only cover what the replicated log acknowledged.
    if (runtime.snapshotIfAcked()) announceSnapshot();
  } else {
    while (queue.length > 0) {
      turnScheduled = false;
      turn();
      if (runtime.syncing) {
        shutdownWaiting = id;
        return;
      }
    }
    closed = true;
    runtime.snapshot();
    releaseDurable();
  }
  runtime.close();
  post({ k: 'closed', id });
  port!.close();
}

port.on('message', (m: ToShard) => {
  switch (m.k) {
    case 'batch':
      queue.push({ id: m.id, cmds: m.cmds });
      scheduleTurn();
      break;
    case 'stats': {
      // Figures taken now (later turns must not show), sent once what they saw is durable.
      const figures = stats();
      whenSafe(runtime.lastLsn, () => post({ k: 'stats', id: m.id, stats: figures }));
      break;
    }
    case 'shutdown':
      shutdown(m.id);
      break;
    case 'records':
      // A follower's step (no turn runs, so no commit is in flight). Any failure ends the
      // thread: the parent rebuilds this shard's disk.
      post({ k: 'applied', id: m.id, lsn: runtime.applyRecords(m.records) });
      tellCheckpointer();
      scheduleIdleSnapshot();
      break;
    case 'serve':
      serving = true;
      leaseUntilMs = m.leaseUntilMs;
      post({ k: 'serving', id: m.id, lsn: runtime.tail.lsn });
      armExpiryTimer();
      scheduleTurn();
      break;
    case 'lease':
      leaseUntilMs = m.untilMs;
      break;
    case 'acked':
      runtime.ackedUpTo(m.lsn);
      releaseSafe();
      tellCheckpointer();
      if (queue.length === 0) scheduleIdleSnapshot();
      break;
    case 'mark':
      // Sent on at once (the parent appends it to the replicated log); durable here with the
      // next commit, which every later answer waits for.
      post({ k: 'marked', id: m.id, record: runtime.appendMarker(Date.now()) });
      pump();
      break;
    case 'checkpoint':
      if (!runtime.syncing) {
        runtime.commit();
        releaseDurable();
        runtime.snapshotIfAcked();
      }
      post({ k: 'checkpointed', id: m.id, snapshot: runtime.newestSnapshot === null ? null : { ...runtime.newestSnapshot, crc: runtime.snapshotTailCrc } });
      break;
  }
});

post({ k: 'ready', shardId: data.shardId, recovery: runtime.recovery, tail: runtime.tail });
armExpiryTimer();
