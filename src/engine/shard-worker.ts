// Worker-thread entry: the single owner of one shard's state and WAL. It runs turns:
// take every batch that arrived, apply them in order (plus a res.expire when holds are
// due), make the turn durable with one fdatasync, then answer every batch. It never
// answers before the fsync, and any WAL error ends the thread so the parent replays it.
// With a replicated log it starts as a follower (applying records the owner wrote, nothing
// else), serves only once told to and only while its lease lasts, and hands each turn's
// record to the parent, which answers the turn once the replicated log has it.

import { parentPort, workerData } from 'node:worker_threads';
import type { Command, DomainEvent, Outcome } from '../domain/index.js';
import { nextExpiryAtMs, type ShardConfig } from '../domain/index.js';
import { ShardRuntime } from './shard-runtime.js';
import type { CallOutcome, FromShard, ShardStats, ToShard } from './shard-protocol.js';

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

/** Replaces a view object by its JSON text (see Outcome.json): cheaper to send and to answer. */
function toWire(o: Outcome): Outcome {
  if (!o.ok) return o;
  if (o.reservation !== undefined) {
    const { reservation, ...rest } = o;
    return { ...rest, json: JSON.stringify(reservation) };
  }
  if (o.sku !== undefined) {
    const { sku, ...rest } = o;
    return { ...rest, json: JSON.stringify(sku), dropId: sku.dropId };
  }
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
    post({ k: 'reply', id: b.id, outcomes: b.cmds.map(() => outcome), events: null, commitMs: 0, record: null });
  }
}

function turn(): void {
  turnScheduled = false;
  if (closed) return;
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
    const before = runtime.walStats.commits;
    const failures = runtime.snapshotFailures;
    const applied = runtime.execute(commands, nowMs);
    reportSnapshotFailure(failures);
    const commitMs = runtime.walStats.commits > before ? performance.now() - started : 0;
    let events: DomainEvent[] | null = null;
    for (const a of applied) if (a.events !== null) for (const e of a.events) if (e.type !== 'paid') (events ??= []).push(e);
    // Replicated: the turn's record goes with its first reply; the parent answers the turn only
    // once the replicated log holds it (and every record before it).
    let record = replicated ? runtime.takeLastRecord() : null;
    let i = expire ? 1 : 0;
    let first = true;
    for (const b of batches) {
      const outcomes: CallOutcome[] = new Array(b.cmds.length);
      for (let j = 0; j < b.cmds.length; j++) outcomes[j] = toWire(applied[i++]!.outcome);
      post({ k: 'reply', id: b.id, outcomes, events, commitMs: first ? commitMs : 0, record });
      events = null; // send each event, the commit time and the record once, with the first reply of the turn
      record = null;
      first = false;
    }
    if (first && (events !== null || commitMs > 0 || record !== null)) post({ k: 'reply', id: -1, outcomes: [], events, commitMs, record });
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
    if (closed || queue.length > 0 || turnScheduled) return;
    const failures = runtime.snapshotFailures;
    if (runtime.snapshotIfDue()) announceSnapshot();
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
  const next = nextExpiryAtMs(runtime.state);
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
  };
}

function shutdown(id: number): void {
  closing = true;
  if (expiryTimer !== null) clearTimeout(expiryTimer);
  if (replicated) {
    // Nothing more is applied: what is queued may no longer be ours, and a snapshot may only
    // cover what the replicated log acknowledged.
    refuseBatches(queue.splice(0), 'is changing owner');
    closed = true;
    if (runtime.snapshotIfAcked()) announceSnapshot();
  } else {
    while (queue.length > 0) turn();
    closed = true;
    runtime.snapshot();
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
    case 'stats':
      post({ k: 'stats', id: m.id, stats: stats() });
      break;
    case 'shutdown':
      shutdown(m.id);
      break;
    case 'records':
      // A follower's step. Any failure ends the thread: the parent rebuilds this shard's disk.
      post({ k: 'applied', id: m.id, lsn: runtime.applyRecords(m.records) });
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
      if (queue.length === 0) scheduleIdleSnapshot();
      break;
    case 'mark':
      post({ k: 'marked', id: m.id, record: runtime.appendMarker(Date.now()) });
      break;
    case 'checkpoint':
      runtime.snapshotIfAcked();
      post({ k: 'checkpointed', id: m.id, snapshot: runtime.newestSnapshot === null ? null : { ...runtime.newestSnapshot, crc: runtime.snapshotTailCrc } });
      break;
  }
});

post({ k: 'ready', shardId: data.shardId, recovery: runtime.recovery, tail: runtime.tail });
armExpiryTimer();
