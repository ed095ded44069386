// Worker-thread entry: the single owner of one shard's state and WAL. It runs turns:
// take every batch that arrived, apply them in order (plus a res.expire when holds are
// due), make the turn durable with one fdatasync, then answer every batch. It never
// answers before the fsync, and any WAL error ends the thread so the parent replays it.

import { parentPort, workerData } from 'node:worker_threads';
import type { Command, DomainEvent, Outcome } from '../domain/index.js';
import { nextExpiryAtMs, type ShardConfig } from '../domain/index.js';
import { ShardRuntime } from './shard-runtime.js';
import type { FromShard, ShardStats, ToShard } from './shard-protocol.js';

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
}

const data = workerData as ShardWorkerData;
const port = parentPort;
if (port === null) throw new Error('shard-worker must run in a worker thread');

const runtime = ShardRuntime.open({
  dir: data.dir, shardId: data.shardId, shardCount: data.shardCount, config: data.config,
  snapshotEveryCommands: data.snapshotEveryCommands, buyerRps: data.buyerRps,
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

function turn(): void {
  turnScheduled = false;
  if (closed) return;
  const nowMs = Date.now();
  const batches = takeBatches();
  const commands: Command[] = [];
  const expire = runtime.housekeepingDue(nowMs);
  if (expire) commands.push(expireCommand);
  for (const b of batches) for (const c of b.cmds) commands.push(c);
  if (commands.length > 0) {
    const started = performance.now();
    const before = runtime.walStats.commits;
    const applied = runtime.execute(commands, nowMs);
    const commitMs = runtime.walStats.commits > before ? performance.now() - started : 0;
    let events: DomainEvent[] | null = null;
    for (const a of applied) if (a.events !== null) for (const e of a.events) if (e.type !== 'paid') (events ??= []).push(e);
    let i = expire ? 1 : 0;
    let first = true;
    for (const b of batches) {
      const outcomes: Outcome[] = new Array(b.cmds.length);
      for (let j = 0; j < b.cmds.length; j++) outcomes[j] = toWire(applied[i++]!.outcome);
      post({ k: 'reply', id: b.id, outcomes, events, commitMs: first ? commitMs : 0 });
      events = null; // send each event and the commit time once, with the first reply of the turn
      first = false;
    }
    if (first && (events !== null || commitMs > 0)) post({ k: 'reply', id: -1, outcomes: [], events, commitMs });
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
    if (!closed && queue.length === 0 && !turnScheduled) runtime.snapshotIfDue();
  });
}

/** Wakes the shard when the next hold falls due (at least every second for retention). */
function armExpiryTimer(): void {
  if (closing) return;
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
    skus.push({ sku: s.sku, onHand: s.onHand, available: s.available, reserved: s.reserved, sold: s.sold });
  }
  const wal = runtime.walStats;
  return {
    shardId: data.shardId, skuCount: runtime.state.skus.size, skus, liveReservations: runtime.state.liveCount,
    reservations: runtime.state.reservations.size, walCommits: wal.commits, walRecords: wal.recordsCommitted,
    walFsyncMsTotal: wal.fsyncMsTotal, heapUsedBytes: process.memoryUsage().heapUsed,
  };
}

function shutdown(id: number): void {
  closing = true;
  if (expiryTimer !== null) clearTimeout(expiryTimer);
  while (queue.length > 0) turn();
  closed = true;
  runtime.snapshot();
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
  }
});

post({ k: 'ready', shardId: data.shardId, recovery: runtime.recovery });
armExpiryTimer();
