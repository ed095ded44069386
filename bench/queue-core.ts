// bench:queue, part 1: the pure state machine (apply on one core, no I/O) with one drop's
// waiting room. N buyers join a fifo queue (joins/s, and the memory each waiting entry
// costs: V8 heap plus the typed-array columns, which live outside the heap), then q.entry
// reads of random buyers (answers/s), a snapshot of the shard as the engine encodes it
// (toSnapshot + encodeSnapshotChunks: msgpackr) and its restore, a simulated drain
// (res.expire every 100 ms of a simulated clock, every admitted buyer reserving in the same
// step) that must admit exactly the set pace; then a random queue of N buyers (each join
// computes an HMAC-SHA256) and the one res.expire after opensAt + randomizeSeconds that
// fixes its order by sorting the whole queue, checked against node:crypto's HMAC.
// Commands are built before the clock starts, so timed loops are apply() alone.

import { createHmac } from 'node:crypto';
import { apply, createShardState, fromSnapshot, toSnapshot, type Command, type ShardState } from '../src/domain/index.js';
import { decodeSnapshotChunks, encodeSnapshotChunks } from '../src/engine/shard-runtime.js';
import { fmt, progress } from './bench-report.js';
import { seededRandom } from './seeded-random.js';
import { checkState, type StateCheck } from './state-check.js';

export interface QueueCoreSettings {
  /** Buyers joining each queue (fifo, then random). */
  buyers: number;
  /** q.entry reads of random joined buyers. */
  entryReads: number;
  /** Simulated seconds of the in-process drain, and its pace. */
  drainSeconds: number;
  admitPerSecond: number;
  /** random: the order is fixed this long after opensAt. */
  randomizeSeconds: number;
  /** Characters of every buyer id. */
  idChars: number;
}

interface Mem {
  heapUsed: number;
  arrayBuffers: number;
}

export interface MemoryFigures {
  /** (heapUsed after - before) / N: the V8 heap alone (buyer id strings, the id map, the buyers array). */
  heapBytesPerEntry: number;
  /** (arrayBuffers after - before) / N: the typed-array columns, outside the V8 heap. */
  columnBytesPerEntry: number;
  /** Both: what a waiting buyer costs the process. */
  totalBytesPerEntry: number;
  before: Mem;
  after: Mem;
  /** Of the prebuilt join commands (released before `after` was taken), for comparison. */
  commandsBytesPerEntry: number;
}

export interface JoinFigures {
  mode: 'fifo' | 'random';
  joins: number;
  created: number;
  ms: number;
  joinsPerSec: number;
  memory: MemoryFigures;
}

export interface QueueCoreFigures {
  settings: QueueCoreSettings & { buyerIdExample: string; gcExposed: boolean };
  fifo: JoinFigures;
  entry: { reads: number; ok: number; ms: number; answersPerSec: number; positionsChecked: number; positionsWrong: number };
  snapshot: {
    toSnapshotMs: number;
    encodeMs: number;
    bytes: number;
    chunks: number;
    bytesPerEntry: number;
    decodeMs: number;
    fromSnapshotMs: number;
    restoreMs: number;
    restoredEntries: number;
    answersEqual: boolean;
  };
  drain: {
    simulatedSeconds: number;
    admitPerSecond: number;
    expireCommands: number;
    admitted: number;
    reserves: number;
    reservesOk: number;
    /** Admitted in each simulated second (the pace, on the state machine's own clock). */
    perSecond: number[];
    maxInAnyWindow: number;
    ms: number;
    /** Wall time of the res.expire commands alone, mean per command. */
    expireMeanMs: number;
    /** res.expire + reserves per second of wall time. */
    commandsPerSec: number;
  };
  random: JoinFigures & {
    fixMs: number;
    fixedEntries: number;
    admittedInFixingTurn: number;
    orderChecked: { adjacentPairs: number; outOfOrder: number; hmacSample: number; hmacMismatches: number };
  };
  checks: StateCheck[];
}

const t0Ms = 1_790_000_000_000;
const seedHex = '5eed'.repeat(16);
const secretHex = '5ec7'.repeat(8);
const stockHuge = 1_000_000_000;

/** Characters of every buyer id (BENCH_QUEUE_ID_CHARS): the id string is most of an entry's heap. */
let idChars = 16;

/** A buyer id as a shop would send it, `idChars` long. */
const buyerIdOf = (prefix: string, i: number): string => `${prefix}${i.toString().padStart(idChars - prefix.length, '0')}`;

function gc(): void {
  const g = (globalThis as { gc?: () => void }).gc;
  g?.();
  g?.();
}

function mem(): Mem {
  gc();
  const m = process.memoryUsage();
  return { heapUsed: m.heapUsed, arrayBuffers: m.arrayBuffers };
}

function mustApply(state: ShardState, c: Command, nowMs: number): void {
  const a = apply(state, c, nowMs);
  if (!a.outcome.ok) throw new Error(`bench setup: ${c.t} refused: ${a.outcome.code} ${a.outcome.message ?? ''}`);
}

/** A shard with one SKU of drop `dropId` (large stock) and the drop's queue. */
function dropState(dropId: string, queue: Extract<Command, { t: 'drop.put' }>['queue']): ShardState {
  const state = createShardState(0, 1);
  mustApply(state, { t: 'sku.upsert', sku: `${dropId}-sku`, dropId, stock: stockHuge, holdSeconds: 3600 }, t0Ms);
  mustApply(state, { t: 'drop.put', dropId, queue, seed: seedHex, secret: secretHex }, t0Ms);
  return state;
}


/**
 * Join commands as a shard receives them: built in batches of 1,000 and passed through
 * structuredClone, as the gateway's batches are by postMessage. A buyer id is then a flat
 * string, as it is in the engine (also after a replay: msgpackr decodes flat strings); one
 * built here by concatenation would be a cons string, which the queue's map flattens into
 * a second object (about 32 B more per entry than the engine ever keeps).
 */
function joinCommands(dropId: string, prefix: string, n: number): Command[] {
  const out: Command[] = [];
  for (let i = 0; i < n; i += 1000) {
    const batch: Command[] = [];
    for (let k = i; k < Math.min(n, i + 1000); k++) batch.push({ t: 'q.join', dropId, buyerId: buyerIdOf(prefix, k) });
    for (const c of structuredClone(batch)) out.push(c);
  }
  return out;
}

/** N joins on a fresh queue, timed, and the memory the queue keeps per entry. */
function joinRun(state: ShardState, mode: 'fifo' | 'random', dropId: string, n: number, prefix: string): JoinFigures {
  const before = mem();
  let commands: Command[] | null = joinCommands(dropId, prefix, n);
  const withCommands = mem();
  let created = 0;
  const started = performance.now();
  for (let i = 0; i < n; i++) {
    // 1,000 joins per simulated millisecond: all of them well before a random queue's reveal.
    const a = apply(state, commands[i]!, t0Ms + Math.floor(i / 1000));
    if (a.outcome.ok && a.outcome.status === 'created') created++;
  }
  const ms = performance.now() - started;
  commands = null;
  const after = mem();
  const heapBytesPerEntry = (after.heapUsed - before.heapUsed) / n;
  const columnBytesPerEntry = (after.arrayBuffers - before.arrayBuffers) / n;
  const f: JoinFigures = {
    mode, joins: n, created, ms, joinsPerSec: n / (ms / 1000),
    memory: {
      heapBytesPerEntry, columnBytesPerEntry, totalBytesPerEntry: heapBytesPerEntry + columnBytesPerEntry, before, after,
      commandsBytesPerEntry: (withCommands.heapUsed - before.heapUsed) / n,
    },
  };
  progress(`${mode}: ${fmt(n)} joins at ${fmt(f.joinsPerSec)}/s (${created} created); ${fmt(f.memory.totalBytesPerEntry, 1)} B per waiting buyer `
    + `(heap ${fmt(heapBytesPerEntry, 1)} + columns ${fmt(columnBytesPerEntry, 1)})`);
  if (created !== n) throw new Error(`${mode}: ${created} of ${n} joins created an entry`);
  return f;
}

function entryReads(state: ShardState, dropId: string, n: number, reads: number, prefix: string): QueueCoreFigures['entry'] {
  const rnd = seededRandom(42);
  const picks = new Int32Array(reads);
  const commands: Command[] = new Array<Command>(reads);
  for (let k = 0; k < reads; k++) {
    picks[k] = Math.floor(rnd() * n);
    commands[k] = { t: 'q.entry', dropId, buyerId: buyerIdOf(prefix, picks[k]!) };
  }
  gc();
  let ok = 0;
  const started = performance.now();
  for (let k = 0; k < reads; k++) if (apply(state, commands[k]!, t0Ms + 2000).outcome.ok) ok++;
  const ms = performance.now() - started;
  // Nobody admitted yet: a fifo entry's position is its joining place.
  let positionsWrong = 0;
  const checked = Math.min(reads, 10_000);
  for (let k = 0; k < checked; k++) {
    const o = apply(state, commands[k]!, t0Ms + 2000).outcome;
    const e = o.ok ? o.entry : undefined;
    if (e?.state !== 'waiting' || e.position !== picks[k]! + 1) positionsWrong++;
  }
  const f = { reads, ok, ms, answersPerSec: reads / (ms / 1000), positionsChecked: checked, positionsWrong };
  progress(`q.entry: ${fmt(f.answersPerSec)} answers/s (${ok}/${reads} ok, ${positionsWrong} of ${checked} positions wrong)`);
  return f;
}

function snapshotRun(state: ShardState, dropId: string, n: number, prefix: string): QueueCoreFigures['snapshot'] {
  gc();
  let t = performance.now();
  let snap: ReturnType<typeof toSnapshot> | null = toSnapshot(state);
  const toSnapshotMs = performance.now() - t;
  t = performance.now();
  const chunks = encodeSnapshotChunks(snap);
  const encodeMs = performance.now() - t;
  snap = null;
  const bytes = chunks.reduce((a, c) => a + c.length, 0);
  gc();
  t = performance.now();
  const decoded = decodeSnapshotChunks(chunks);
  const decodeMs = performance.now() - t;
  t = performance.now();
  const restored = fromSnapshot(decoded, state.config);
  const fromSnapshotMs = performance.now() - t;
  const restoredEntries = restored.drops.get(dropId)?.queue?.count ?? 0;
  let answersEqual = restoredEntries === n;
  const rnd = seededRandom(7);
  for (let k = 0; k < 2000 && answersEqual; k++) {
    const c: Command = { t: 'q.entry', dropId, buyerId: buyerIdOf(prefix, Math.floor(rnd() * n)) };
    answersEqual = JSON.stringify(apply(state, c, t0Ms + 3000).outcome) === JSON.stringify(apply(restored, c, t0Ms + 3000).outcome);
  }
  const f = {
    toSnapshotMs, encodeMs, bytes, chunks: chunks.length, bytesPerEntry: bytes / n, decodeMs, fromSnapshotMs, restoreMs: decodeMs + fromSnapshotMs,
    restoredEntries, answersEqual,
  };
  progress(`snapshot: ${fmt(bytes / 2 ** 20, 1)} MiB in ${chunks.length} chunk(s), ${fmt(f.bytesPerEntry, 1)} B per entry; toSnapshot ${fmt(toSnapshotMs)} ms + encode ${fmt(encodeMs)} ms; `
    + `restore ${fmt(f.restoreMs)} ms (decode ${fmt(decodeMs)} + fromSnapshot ${fmt(fromSnapshotMs)}); answers equal: ${answersEqual}`);
  return f;
}

/** The largest count of admissions within any half-open window [t, t + 1000) of the given instants. */
export function maxInWindow(instants: readonly [atMs: number, count: number][], widthMs = 1000): number {
  const s = [...instants].sort((a, b) => a[0] - b[0]);
  let best = 0;
  let sum = 0;
  let hi = 0;
  for (let lo = 0; lo < s.length; lo++) {
    while (hi < s.length && s[hi]![0] < s[lo]![0] + widthMs) sum += s[hi++]![1];
    best = Math.max(best, sum);
    sum -= s[lo]![1];
  }
  return best;
}

/**
 * res.expire every 100 ms of a simulated clock from `startMs`, and every buyer it admitted
 * reserves right after it (fifo: admission takes joining order, so the admitted are the next
 * buyer ids in order). The pace is read off the state machine's own clock.
 */
function drainRun(state: ShardState, dropId: string, prefix: string, seconds: number, rate: number, startMs: number): QueueCoreFigures['drain'] {
  const q = state.drops.get(dropId)!.queue!;
  const sku = `${dropId}-sku`;
  const steps = Math.round(seconds * 10);
  let next = q.admitHead;
  const instants: [number, number][] = [];
  let reserves = 0;
  let reservesOk = 0;
  let expireMs = 0;
  gc();
  const started = performance.now();
  for (let s = 0; s < steps; s++) {
    const now = startMs + s * 100;
    const t = performance.now();
    apply(state, { t: 'res.expire' }, now);
    expireMs += performance.now() - t;
    const admitted = q.admitHead - next;
    if (admitted > 0) instants.push([now, admitted]);
    for (; next < q.admitHead; next++) {
      reserves++;
      const c: Command = { t: 'res.reserve', sku, buyerId: buyerIdOf(prefix, next), qty: 1, nonce: next.toString(36).padStart(8, '0').slice(-8) };
      if (apply(state, c, now).outcome.ok) reservesOk++;
    }
  }
  const ms = performance.now() - started;
  const perSecond = Array.from({ length: Math.ceil(seconds) }, (_, k) => instants.filter(([t]) => t >= startMs + k * 1000 && t < startMs + (k + 1) * 1000).reduce((a, [, c]) => a + c, 0));
  const admitted = instants.reduce((a, [, c]) => a + c, 0);
  const f = {
    simulatedSeconds: seconds, admitPerSecond: rate, expireCommands: steps, admitted, reserves, reservesOk, perSecond, maxInAnyWindow: maxInWindow(instants),
    ms, expireMeanMs: expireMs / steps, commandsPerSec: (steps + reserves) / (ms / 1000),
  };
  progress(`drain (simulated ${seconds} s at ${fmt(rate)}/s): ${fmt(admitted)} admitted, ${fmt(reservesOk)}/${fmt(reserves)} reserves ok, at most ${fmt(f.maxInAnyWindow)} in any 1 s; `
    + `res.expire ${fmt(f.expireMeanMs, 3)} ms each on ${fmt(q.count)} entries`);
  return f;
}

function randomRun(s: QueueCoreSettings, checks: StateCheck[]): QueueCoreFigures['random'] {
  const dropId = 'drop-random';
  const state = dropState(dropId, { mode: 'random', opensAt: t0Ms, randomizeSeconds: s.randomizeSeconds, admitPerSecond: s.admitPerSecond, admitSeconds: 600 });
  const joins = joinRun(state, 'random', dropId, s.buyers, 'r-');
  const q = state.drops.get(dropId)!.queue!;
  if (q.fixed || q.ranked !== 0) throw new Error('random: the order was fixed before opensAt + randomizeSeconds');
  gc();
  // The one turn that fixes the order: the shard's timer command after the reveal.
  const started = performance.now();
  const a = apply(state, { t: 'res.expire' }, t0Ms + s.randomizeSeconds * 1000 + 1);
  const fixMs = performance.now() - started;
  if (!a.outcome.ok || !q.fixed) throw new Error('random: res.expire after the reveal did not fix the order');
  // The order: keys ascending on every adjacent pair, and a sample recomputed with node:crypto.
  const order = q.order.data;
  const key = q.key.data;
  let outOfOrder = 0;
  for (let r = 0; r + 1 < q.ranked; r++) if (key[order[r]!]! > key[order[r + 1]!]!) outOfOrder++;
  const seed = Buffer.from(seedHex, 'hex');
  const mac = (b: string): Buffer => createHmac('sha256', seed).update(b, 'utf8').digest();
  const sample = Math.min(q.ranked, 20_000);
  let hmacMismatches = 0;
  const from = Math.floor((q.ranked - sample) / 2);
  for (let r = from; r + 1 < from + sample; r++) {
    if (Buffer.compare(mac(q.buyers[order[r]!]!), mac(q.buyers[order[r + 1]!]!)) > 0) hmacMismatches++;
  }
  const f = {
    ...joins, fixMs, fixedEntries: q.ranked, admittedInFixingTurn: q.admitHead,
    orderChecked: { adjacentPairs: Math.max(0, q.ranked - 1), outOfOrder, hmacSample: sample, hmacMismatches },
  };
  progress(`random: the fixing res.expire sorted ${fmt(q.ranked)} entries in ${fmt(fixMs)} ms (and admitted ${q.admitHead}); `
    + `${outOfOrder} adjacent pairs out of order, ${hmacMismatches} mismatches with node:crypto over ${sample} ranks`);
  checks.push(checkState('queue: random drop', state));
  return f;
}

export function benchQueueCore(s: QueueCoreSettings): QueueCoreFigures {
  idChars = s.idChars;
  const gcExposed = typeof (globalThis as { gc?: unknown }).gc === 'function';
  if (!gcExposed) progress('warning: run node with --expose-gc for meaningful memory figures');
  const checks: StateCheck[] = [];
  // Warm-up: a small queue of each kind, so the timed loops run optimized code.
  const warmN = Math.min(100_000, s.buyers);
  for (const mode of ['fifo', 'random'] as const) {
    const w = dropState('warm', { mode, opensAt: t0Ms, randomizeSeconds: 1, admitPerSecond: s.admitPerSecond });
    for (let i = 0; i < warmN; i++) apply(w, { t: 'q.join', dropId: 'warm', buyerId: buyerIdOf('w-', i) }, t0Ms);
    for (let i = 0; i < warmN; i++) apply(w, { t: 'q.entry', dropId: 'warm', buyerId: buyerIdOf('w-', i) }, t0Ms);
  }
  progress(`warm-up: ${fmt(warmN)} joins and reads on a fifo and a random queue`);

  const dropId = 'drop-fifo';
  let state: ShardState | null = dropState(dropId, { mode: 'fifo', opensAt: t0Ms, admitPerSecond: s.admitPerSecond, admitSeconds: 600 });
  const fifo = joinRun(state, 'fifo', dropId, s.buyers, 'f-');
  const entry = entryReads(state, dropId, s.buyers, s.entryReads, 'f-');
  const snapshot = snapshotRun(state, dropId, s.buyers, 'f-');
  const drain = drainRun(state, dropId, 'f-', s.drainSeconds, s.admitPerSecond, t0Ms + 10_000);
  checks.push(checkState('queue: fifo drop after the drain', state));
  state = null;
  gc();
  const random = randomRun(s, checks);
  const example = buyerIdOf('f-', 123);
  return { settings: { ...s, buyerIdExample: example, gcExposed }, fifo, entry, snapshot, drain, random, checks };
}
