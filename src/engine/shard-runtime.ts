// One shard's durable state machine: the pure core plus its write-ahead log. A batch of
// commands is applied in order and the mutating ones are appended as ONE log record carrying
// the batch's nowMs. execute() then makes it durable with one fdatasync before returning;
// stage() leaves that to the owner's pipeline (commitAsync), which must hold every answer of
// the batch until the log is durable up to `lastLsn` as it was after the batch. Any I/O error
// must end the owning thread (memory is then ahead of the log, so it must be rebuilt by replay).

import { randomInt } from 'node:crypto';
import {
  apply, createShardState, housekeepingDue, SnapshotRestorer, replay, snapshotPieces,
  type Applied, type Command, type ShardConfig, type ShardSnapshot, type ShardState, type SnapshotListName, type SnapshotPiece, type UnmadeRows,
} from '../domain/index.js';
import { InvariantError, assert } from '../domain/assert.js';
import { FileWal, type FileRemover, type WalEvent } from '../wal/file-wal.js';
import { crc32c } from '../wal/crc32c.js';
import { runSteps } from '../wal/snapshot-codec.js';
import { decode, encode, encodeLogRecord, reusingEncoder } from './codec.js';
import { MsgpackRowWriter } from './row-encoder.js';
import { RateLimiter } from './rate-limiter.js';

export interface ShardRuntimeOptions {
  dir: string;
  shardId: number;
  shardCount: number;
  config?: Partial<ShardConfig>;
  /**
   * A snapshot is due after this many logged commands (default 1,000,000): the owner takes
   * it when idle (snapshotIfDue). At four times as many, execute takes it at once, busy or
   * not, to bound the log and so the replay time.
   */
  snapshotEveryCommands?: number;
  onWalEvent?: (e: WalEvent) => void;
  /**
   * Reserve calls per second one buyer may make to this shard (0 = off). Every reserve of a
   * buyer for a SKU or drop reaches this shard whatever gateway it came through, so the limit
   * holds for any number of gateways. A limited reserve is answered without touching the core.
   */
  buyerRps?: number;
  /**
   * The log is also replicated (NATS shard nodes): a snapshot may only cover records another
   * node has acknowledged (see `ackedLsn`), so that what is on this disk never runs ahead of
   * the shard's replicated history in a way recovery could not detect.
   */
  replicated?: boolean;
}

/** The record the last execute() made durable here, for the replicated log. */
export interface LoggedRecord {
  lsn: number;
  payload: Uint8Array;
}

/** A reserve refused by the shard's per-buyer limit: an adapter's answer, never the core's. */
function rateLimited(waitMs: number): Applied {
  const message = `too many reservation calls for this buyer; retry after ${Math.max(1, Math.ceil(waitMs / 1000))} s`;
  return { outcome: { ok: false, code: 'rate_limited', message, retryAfterMs: waitMs }, mutated: false, events: null };
}

/**
 * A log record: the batch's clock and its mutating commands, in apply order. Written with
 * encodeLogRecord (msgpackr records); logs written before hold plain maps, and `decode`
 * reads both, so old logs replay as they did.
 */
type WalRecord = [nowMs: number, commands: Command[]];

/** Rows per chunk of a snapshot: a chunk of reservation rows is a few MB, far from any ceiling. */
const snapshotRowsPerChunk = 50_000;
/** Chunks are cut smaller past this many bytes (the format's limit is 1 GiB a chunk). */
const snapshotChunkBytesTarget = 256 * 1024 * 1024;

/**
 * A snapshot as chunks, so that no single buffer (and no 1 GiB frame) bounds a shard's size:
 * the first chunk is the snapshot with its long lists emptied, each further one
 * `[list name, rows]`, a slice of one list in order.
 */
export function encodeSnapshotChunks(snap: ShardSnapshot, tailCrc: number | null = null): Uint8Array[] {
  return [...snapshotChunks(snap, tailCrc)];
}

/**
 * The same chunks, made one at a time as they are asked for; `rowsPerChunk` sets their size.
 */
export function* snapshotChunks(snap: ShardSnapshot, tailCrc: number | null = null, rowsPerChunk = snapshotRowsPerChunk): Generator<Uint8Array> {
  for (const chunk of encodeSnapshotPieces(piecesOf(snap, rowsPerChunk), tailCrc)) if (chunk !== null) yield chunk;
}

/** A whole snapshot as pieces: its head with the lists emptied, then each list in slices. */
function* piecesOf(snap: ShardSnapshot, rowsPerChunk: number): Generator<SnapshotPiece> {
  const head: Record<string, unknown> = { ...snap };
  const lists: [SnapshotListName, unknown[]][] = [];
  for (const [name, value] of Object.entries(snap)) {
    if (!Array.isArray(value) || value.length === 0) continue;
    head[name] = [];
    lists.push([name as SnapshotListName, value]);
  }
  yield { head: head as unknown as ShardSnapshot };
  for (const [list, rows] of lists) {
    for (let i = 0; i < rows.length; i += rowsPerChunk) yield { list, rows: rows.slice(i, i + rowsPerChunk) };
  }
}

/**
 * How snapshot chunks are encoded: values (the head, made rows) through msgpackr, rows not
 * made yet through a row writer, into the same msgpack.
 */
export interface ChunkEncoder {
  value(value: unknown): Uint8Array;
  /** The chunk `[rows.list, [rows [from, to)]]`. */
  rows(rows: UnmadeRows, from: number, to: number): Uint8Array;
}

const ownRowWriter = new MsgpackRowWriter();

/** Every chunk a buffer of its own. */
export const ownChunks: ChunkEncoder = {
  value: encode,
  rows: (rows, from, to) => ownRowWriter.chunk(rows, from, to, true),
};

/**
 * Every chunk a view that the next one overwrites (write it before asking for the next): a
 * checkpoint takes no buffer per chunk. See reusingEncoder for the head's buffer.
 */
export function reusingChunks(): ChunkEncoder {
  const value = reusingEncoder();
  const writer = new MsgpackRowWriter();
  return { value, rows: (rows, from, to) => writer.chunk(rows, from, to) };
}

/**
 * Encodes a snapshot given in pieces (snapshotPieces of a live state, or a whole snapshot
 * cut up) as the chunks of its file, one at a time as they are asked for: the checkpointer
 * writes each before it makes the next, and rests between them. It yields null where the
 * pieces do (a step that made no chunk yet). With `encoder` reusingChunks(), each chunk is a
 * view that the next one overwrites: write it before asking for the next.
 */
export function* encodeSnapshotPieces(
  pieces: Iterable<SnapshotPiece | null>,
  tailCrc: number | null,
  encoder: ChunkEncoder = ownChunks,
  chunkBytesTarget = snapshotChunkBytesTarget,
): Generator<Uint8Array | null> {
  // Every list leaves the head, in chunks, and a chunk that still encodes past
  // chunkBytesTarget is cut in halves: rows can be large (a SKU carries its audit
  // trail), and a chunk may never pass the file format's 1 GiB.
  function* put(name: string, rows: unknown[]): Generator<Uint8Array> {
    const bytes = encoder.value([name, rows]);
    if (bytes.length <= chunkBytesTarget || rows.length === 1) {
      yield bytes;
      return;
    }
    const half = Math.ceil(rows.length / 2);
    yield* put(name, rows.slice(0, half));
    yield* put(name, rows.slice(half));
  }
  function* putUnmade(rows: UnmadeRows, from: number, to: number): Generator<Uint8Array> {
    const bytes = encoder.rows(rows, from, to);
    if (bytes.length <= chunkBytesTarget || to - from === 1) {
      yield bytes;
      return;
    }
    const half = from + Math.ceil((to - from) / 2);
    yield* putUnmade(rows, from, half);
    yield* putUnmade(rows, half, to);
  }
  for (const piece of pieces) {
    if (piece === null) yield null;
    // The crc32c of the record the snapshot ends at rides along, so a node whose disk ends at
    // a snapshot can still check that last record against the replicated log's.
    else if ('head' in piece) yield encoder.value({ ...piece.head, [tailCrcKey]: tailCrc });
    else if ('rows' in piece) yield* put(piece.list, piece.rows);
    else if (piece.count > 0) yield* putUnmade(piece, 0, piece.count);
  }
}

/** The adapter's field in a snapshot's first chunk (not part of the shard's state). */
const tailCrcKey = 'adapterTailCrc';

export function decodeSnapshotChunks(chunks: readonly Uint8Array[]): ShardSnapshot {
  return decodeSnapshotWithTail(chunks).snapshot;
}

export function decodeSnapshotWithTail(chunks: readonly Uint8Array[]): { snapshot: ShardSnapshot; tailCrc: number | null } {
  const { head, tailCrc } = decodeHead(chunks[0]!);
  const snap = head as unknown as Record<string, unknown>;
  for (let i = 1; i < chunks.length; i++) {
    const [name, rows] = decode<[string, unknown[]]>(chunks[i]!);
    const list = snap[name];
    assert(Array.isArray(list), `snapshot chunk ${i} names ${name}, not a list of the snapshot`);
    for (const row of rows) list.push(row);
  }
  return { snapshot: head, tailCrc };
}

function decodeHead(chunk: Uint8Array): { head: ShardSnapshot; tailCrc: number | null } {
  const head = decode<Record<string, unknown>>(chunk);
  const tailCrc = typeof head[tailCrcKey] === 'number' ? (head[tailCrcKey] as number) : null;
  delete head[tailCrcKey];
  return { head: head as unknown as ShardSnapshot, tailCrc };
}

/**
 * The shard's config with a random seed for its quota tables' hash, unless it names one: a
 * state's layout then differs from run to run and from thread to thread (the checkpointer's
 * copy), never its contents or anything it answers.
 */
export function seededConfig(config: Partial<ShardConfig> | undefined): Partial<ShardConfig> {
  return { ...config, quotaHashSeed: config?.quotaHashSeed ?? randomInt(0x7fffffff) };
}

/**
 * The state a snapshot file's chunks hold, decoded and restored a chunk at a time: the rows
 * of one chunk are garbage once restored, so the heap never holds a decoded copy of the whole
 * snapshot beside the state (recovery of a million holds spent 41 % of its time in GC when
 * it did). The same state as fromSnapshot(decodeSnapshotChunks(chunks)).
 */
export function restoreSnapshotChunks(chunks: readonly Uint8Array[], config: ShardConfig): { state: ShardState; tailCrc: number | null } {
  return runSteps(restoreSnapshotChunksInSteps(chunks, config, Number.POSITIVE_INFINITY));
}

/**
 * restoreSnapshotChunks in steps: it yields after each `rowsPerStep` rows restored (a reader
 * with time to spare, the checkpointer loading its copy beside a shard that serves, rests
 * between them).
 */
export function* restoreSnapshotChunksInSteps(chunks: readonly Uint8Array[], config: ShardConfig, rowsPerStep: number): Generator<void, { state: ShardState; tailCrc: number | null }, void> {
  const { head, tailCrc } = decodeHead(chunks[0]!);
  const restorer = new SnapshotRestorer(head, config);
  for (let i = 1; i < chunks.length; i++) {
    const [name, rows] = decode<[string, unknown[]]>(chunks[i]!);
    assert(typeof name === 'string' && Array.isArray(rows), `snapshot chunk ${i} is not a list's rows`);
    if (rows.length <= rowsPerStep) restorer.add(name, rows);
    else for (let at = 0; at < rows.length; at += rowsPerStep) {
      restorer.add(name, rows.slice(at, at + rowsPerStep));
      yield;
    }
    yield;
  }
  return { state: restorer.finish(), tailCrc };
}

/** Replays one record into `state`; returns its command count. Every command must change state. */
export function applyRecord(state: ShardState, lsn: number, payload: Uint8Array): number {
  const [nowMs, commands] = decode<WalRecord>(payload);
  for (const c of commands) {
    const mutated = replay(state, c, nowMs);
    // Housekeeping may find its work already done: how long settled reservations are kept is
    // configuration, and a version that keeps fewer drops them earlier in the replay. Every
    // other command changes on replay exactly what it changed the first time.
    if (!mutated && c.t !== 'res.expire') throw new InvariantError(`replay of record ${lsn} diverged: ${c.t} changed nothing`);
  }
  return commands.length;
}

export interface RecoveryReport {
  snapshotLsn: number;
  recordsReplayed: number;
  commandsReplayed: number;
  lastLsn: number;
  ms: number;
}

export class ShardRuntime {
  private commandsSinceSnapshot = 0;
  /**
   * Commands logged since the newest snapshot on disk: what a restart would replay. Unlike
   * commandsSinceSnapshot (the cadence of the next try), a failed snapshot leaves it as is.
   */
  private loggedSinceSnapshot = 0;
  private readonly snapshotEveryCommands: number;
  private readonly buyerLimiter: RateLimiter;
  private lastRecord: LoggedRecord | null = null;
  /** crc32c of the newest record's payload (null when the log ends at a snapshot). */
  private tailCrc: number | null = null;
  /** Replicated mode: the newest lsn the replicated log has acknowledged. */
  private acked = 0;
  private replicated = false;

  private constructor(
    readonly state: ShardState,
    private readonly wal: FileWal,
    readonly recovery: RecoveryReport,
    snapshotEveryCommands: number,
    buyerRps: number,
  ) {
    this.snapshotEveryCommands = snapshotEveryCommands;
    this.buyerLimiter = new RateLimiter(buyerRps);
  }

  static open(opts: ShardRuntimeOptions): ShardRuntime {
    const started = performance.now();
    const wal = new FileWal({ dir: opts.dir, onEvent: opts.onWalEvent });
    let state = createShardState(opts.shardId, opts.shardCount, seededConfig(opts.config));
    let commandsReplayed = 0;
    let tailCrc: number | null = null;
    let snapshotCrc: number | null = null;
    // Only the newest record's crc32c is kept, so it is computed once, after the replay (the
    // log already checked every frame's): a payload is a view of its segment's own buffer.
    let lastPayload: Uint8Array | null = null;
    const result = wal.recover(
      (snap) => {
        if (snap === null) return;
        const restored = restoreSnapshotChunks(snap.chunks, state.config);
        state = restored.state;
        tailCrc = restored.tailCrc;
        snapshotCrc = restored.tailCrc;
      },
      (lsn, payload) => {
        commandsReplayed += applyRecord(state, lsn, payload);
        lastPayload = payload;
      },
    );
    if (lastPayload !== null) tailCrc = crc32c(lastPayload);
    const recovery: RecoveryReport = {
      snapshotLsn: result.snapshotLsn, recordsReplayed: result.recordsReplayed, commandsReplayed,
      lastLsn: result.lastLsn, ms: performance.now() - started,
    };
    const runtime = new ShardRuntime(state, wal, recovery, opts.snapshotEveryCommands ?? 1_000_000, opts.buyerRps ?? 0);
    runtime.commandsSinceSnapshot = commandsReplayed;
    runtime.loggedSinceSnapshot = commandsReplayed;
    runtime.tailCrc = tailCrc;
    runtime.snapshotTailCrc = snapshotCrc;
    runtime.replicated = opts.replicated ?? false;
    // A replicated shard's disk is trusted only once its node checked it against the replicated
    // log (ackedUpTo); until then no snapshot may cover it. A local log is its own authority.
    runtime.acked = runtime.replicated ? 0 : result.lastLsn;
    return runtime;
  }

  /** The last lsn on this disk and its record's crc32c (null when unknown: an empty log, or a snapshot from before crcs were kept). */
  get tail(): { lsn: number; crc: number | null } {
    return { lsn: this.wal.durableLsn, crc: this.tailCrc };
  }

  /** The record the last execute() wrote, once (null when it changed nothing). */
  takeLastRecord(): LoggedRecord | null {
    const r = this.lastRecord;
    this.lastRecord = null;
    return r;
  }

  /**
   * A record with no command, appended here (durable with the next commit): a new owner
   * appends it to the replicated log before it serves, so that any append an older owner
   * still has in flight is refused.
   */
  appendMarker(nowMs: number): LoggedRecord {
    const record: WalRecord = [nowMs, []];
    const payload = encodeLogRecord(record);
    const lsn = this.wal.append(payload);
    this.tailCrc = crc32c(payload);
    return { lsn, payload };
  }

  /** The newest lsn appended (durable or not). */
  get lastLsn(): number {
    return this.wal.lastLsn;
  }

  /** The newest lsn on disk for sure. */
  get durableLsn(): number {
    return this.wal.durableLsn;
  }

  /** Whether a commitAsync() waits for its fdatasync. */
  get syncing(): boolean {
    return this.wal.syncing;
  }

  /** Bytes appended and not yet handed to a commit (the pipeline's next group). */
  get pendingBytes(): number {
    return this.wal.pendingByteCount;
  }

  /** Starts making what is appended durable (see FileWal.commitAsync); false when there is nothing to do now. */
  commitAsync(done: (error: Error | null) => void): boolean {
    return this.wal.commitAsync(done);
  }

  /** Makes what is appended durable on this thread (no commitAsync may be in flight). */
  commit(): void {
    this.wal.commit();
  }

  /** Replicated mode: the newest lsn the replicated log acknowledged (the last durable one otherwise). */
  get ackedLsn(): number {
    return this.replicated ? this.acked : this.wal.durableLsn;
  }

  /** Replicated mode: records up to `lsn` are in the replicated log; snapshots may cover them. */
  ackedUpTo(lsn: number): void {
    if (lsn > this.acked) this.acked = lsn;
  }

  /**
   * A follower's step: applies records another node wrote (in lsn order, each exactly the next
   * one), appends them to this disk with the same lsns, and makes them durable. Throws if a
   * record does not follow or does not change what it changed there (the histories differ).
   */
  applyRecords(records: readonly LoggedRecord[]): number {
    for (const r of records) {
      assert(r.lsn === this.wal.lastLsn + 1, `record ${r.lsn} does not follow the local log at ${this.wal.lastLsn}`);
      const applied = applyRecord(this.state, r.lsn, r.payload);
      this.commandsSinceSnapshot += applied;
      this.loggedSinceSnapshot += applied;
      this.wal.append(r.payload);
      this.tailCrc = crc32c(r.payload);
    }
    this.wal.commit();
    this.acked = this.wal.durableLsn;
    return this.wal.durableLsn;
  }

  /**
   * Applies a batch; returns after the mutating part is durable. Throws on I/O failure. A
   * reserve past its buyer's rate is answered `rate_limited` (with retryAfterMs) unapplied.
   * (No commitAsync may be in flight: a pipelined owner uses stage().)
   */
  execute(commands: readonly Command[], nowMs: number): Applied[] {
    const results = this.stage(commands, nowMs);
    this.wal.commit();
    if (this.snapshotForced()) this.trySnapshot();
    return results;
  }

  /**
   * Applies a batch and appends its record, without making it durable: the caller answers
   * none of the results (not even a refusal or a read, which may have seen an earlier staged
   * change) before durableLsn reaches the lastLsn of right after this call.
   */
  stage(commands: readonly Command[], nowMs: number): Applied[] {
    const results: Applied[] = new Array(commands.length);
    let logged: Command[] | null = null;
    const limiting = this.buyerLimiter.enabled;
    for (let i = 0; i < commands.length; i++) {
      const c = commands[i] as Command;
      if (limiting && c.t === 'res.reserve' && typeof c.buyerId === 'string') {
        const waitMs = this.buyerLimiter.take(c.buyerId, nowMs);
        if (waitMs > 0) {
          results[i] = rateLimited(waitMs);
          continue;
        }
      }
      const applied = apply(this.state, c, nowMs);
      results[i] = applied;
      if (applied.mutated) (logged ??= []).push(c);
    }
    if (logged !== null) {
      const record: WalRecord = [nowMs, logged];
      const payload = encodeLogRecord(record);
      const lsn = this.wal.append(payload);
      this.tailCrc = crc32c(payload);
      this.lastRecord = { lsn, payload };
      this.commandsSinceSnapshot += logged.length;
      this.loggedSinceSnapshot += logged.length;
    }
    return results;
  }

  /**
   * Whether the log has grown to four snapshot intervals: the owner then snapshots at once,
   * busy or not (after committing what is staged), to bound the log and so the replay time.
   */
  snapshotForced(): boolean {
    return this.commandsSinceSnapshot >= 4 * this.snapshotEveryCommands && this.snapshotAllowed();
  }

  /** Whether expiry or retention work is due; the caller then executes a res.expire. */
  housekeepingDue(nowMs: number): boolean {
    return housekeepingDue(this.state, nowMs);
  }

  /**
   * Takes the snapshot if one is due. A snapshot of a large shard stops it for a while
   * (about 1.5 s for a million reservations), so owners call this when no command waits.
   */
  snapshotIfDue(): boolean {
    if (this.commandsSinceSnapshot < this.snapshotEveryCommands || !this.snapshotAllowed()) return false;
    return this.trySnapshot();
  }

  /** The forced snapshot, when due (see snapshotForced); no commitAsync may be in flight. */
  snapshotIfForced(): boolean {
    return this.snapshotForced() && this.trySnapshot();
  }

  /** Snapshots that failed (a full disk, an encoding limit) since start: an alarm, never a crash. */
  snapshotFailures = 0;
  lastSnapshotError: string | null = null;

  /**
   * A snapshot, or an alarm: a failed snapshot leaves the log as it was (the shard goes on
   * serving, its log longer), and the next try waits for another interval's worth of commands.
   */
  private trySnapshot(): boolean {
    try {
      this.snapshot();
      return true;
    } catch (e) {
      this.snapshotFailures++;
      this.lastSnapshotError = e instanceof Error ? e.message : String(e);
      this.commandsSinceSnapshot = Math.max(0, this.commandsSinceSnapshot - this.snapshotEveryCommands);
      return false;
    }
  }

  /** Writes a durable snapshot of the current (fully committed) state. */
  snapshot(): void {
    this.wal.commit();
    // Streamed from the live state a chunk of rows at a time, as the checkpointer does: no
    // whole snapshot of rows is built first (for a million holds, a second heap of them).
    const chunks: Uint8Array[] = [];
    for (const chunk of encodeSnapshotPieces(snapshotPieces(this.state, snapshotRowsPerChunk), this.tailCrc)) if (chunk !== null) chunks.push(chunk);
    this.wal.writeSnapshot(this.wal.durableLsn, chunks);
    this.snapshotTailCrc = this.tailCrc;
    this.commandsSinceSnapshot = 0;
    this.loggedSinceSnapshot = 0;
  }

  /**
   * A snapshot the checkpointer wrote (durable and read back) at `lsn`, covering `commands`
   * logged commands since its previous one: counted, and the log behind it dropped (by
   * `removeFiles`, when given: see FileRemover).
   */
  adoptSnapshot(snap: { lsn: number; file: string; crc: number | null; bytes: number; ms: number; commands: number }, removeFiles?: FileRemover): boolean {
    if (!this.wal.adoptSnapshot(snap.lsn, snap.file, snap.bytes, snap.ms, removeFiles)) return false;
    this.snapshotTailCrc = snap.crc;
    this.commandsSinceSnapshot = Math.max(0, this.commandsSinceSnapshot - snap.commands);
    this.loggedSinceSnapshot = Math.max(0, this.loggedSinceSnapshot - snap.commands);
    return true;
  }

  /** Replicated mode: a snapshot now if every record is acknowledged (a clean hand-over). */
  snapshotIfAcked(): boolean {
    // Whether a record follows the newest snapshot on disk, by lsn: the retry cadence
    // (commandsSinceSnapshot) drops by an interval at each failed snapshot and could read 0
    // with records unsnapshotted, and a seed then found no snapshot at the disk's lsn (review).
    if ((this.wal.newestSnapshot?.lsn ?? 0) >= this.wal.lastLsn || !this.snapshotAllowed()) return false;
    return this.trySnapshot();
  }

  /**
   * Never while a commitAsync() is in flight (the snapshot commits first, on this thread);
   * replicated mode: only a state every record of which the replicated log acknowledged.
   */
  private snapshotAllowed(): boolean {
    return !this.wal.syncing && (!this.replicated || this.acked >= this.wal.lastLsn);
  }

  /** The crc32c of the record the newest snapshot written here ends at (null: unknown). */
  snapshotTailCrc: number | null = null;

  /** The newest valid snapshot on this disk, for a node that ships it elsewhere. */
  get newestSnapshot(): { lsn: number; file: string } | null {
    return this.wal.newestSnapshot;
  }

  /** Commands logged since the newest snapshot counted on: what a restart would replay (failed snapshots do not lower it). */
  get logCommandsSinceSnapshot(): number {
    return this.loggedSinceSnapshot;
  }

  /** FLASH_SNAPSHOT_EVERY: the commands after which a snapshot is due. */
  get snapshotInterval(): number {
    return this.snapshotEveryCommands;
  }

  get walStats(): FileWal['stats'] {
    return this.wal.stats;
  }

  close(): void {
    this.wal.close();
  }
}
