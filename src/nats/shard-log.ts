// One shard's replicated log on JetStream: a stream per shard (`<prefix>_log_<k>`, subject
// `<prefix>.log.<k>`, FLASH_LOG_REPLICAS replicas) holding every turn record of the shard, and
// its newest snapshot in an object store (`<prefix>_snapshots`), so a node that never saw the
// owner's disk can take the shard over. Only the lease holder appends, each append carrying
// the stream's expected last sequence as the fencing token: once anyone else has appended, a
// stale owner's append is refused and it must stop. It never appends without that check.

import { DeliverPolicy, DiscardPolicy, RetentionPolicy, StorageType, jetstream, jetstreamManager, type JetStreamClient, type JetStreamManager } from '@nats-io/jetstream';
import { Objm, type ObjectStore } from '@nats-io/obj';
import { headers, nanos, type NatsConnection } from '@nats-io/transport-node';
import type { LogRecord } from '../engine/shard-protocol.js';
import type { Replicator } from '../engine/worker-transport.js';
import { createReadStream, createWriteStream } from 'node:fs';
import { Readable } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import { crc32c } from '../wal/crc32c.js';

/** This node may no longer write the shard's log: someone else appended after our last record. */
export class FencedError extends Error {
  override readonly name = 'FencedError';
}

export interface ShardLogOptions {
  nc: NatsConnection;
  prefix: string;
  shardId: number;
  /** Replicas of the stream and of the snapshot store when this node creates them. */
  replicas: number;
  /** This node's incarnation (written into every record's headers, for operators). */
  owner: string;
  /** How long one append may wait for JetStream before it is retried (same msgID, same fence). */
  publishTimeoutMs?: number;
}

/** Where the log stands: stream sequences and the lsns they hold (0 when empty). */
export interface LogEnd {
  firstSeq: number;
  lastSeq: number;
  /** lsn - seq, the same for every record of the stream (0 for an empty stream). */
  offset: number;
  lastLsn: number;
  lastCrc: number | null;
  /** The msgID of the newest record (null for an empty stream). */
  lastMsgId: string | null;
}

export interface FollowedRecord extends LogRecord {
  seq: number;
  /** Its msgID (the next owner's first append expects it as the last one). */
  msgId: string | null;
}

const header = { lsn: 'Flash-Lsn', crc: 'Flash-Crc', owner: 'Flash-Owner' } as const;

export function logStreamName(prefix: string, shardId: number): string {
  return `${prefix}_log_${shardId}`;
}

export function logSubject(prefix: string, shardId: number): string {
  return `${prefix}.log.${shardId}`;
}

export function snapshotBucket(prefix: string): string {
  return `${prefix}_snapshots`;
}

const isFence = (e: unknown): boolean => /wrong last (sequence|msg ?id)/i.test(e instanceof Error ? e.message : String(e));

/** How long a refused append may find the stream behind it before the stream is judged to have lost records. */
const behindMsMax = 5000;

/** The state an appender's appends share. */
interface AppendChain {
  expectedSeq: number;
  previousMsgId: string | null;
  /** The highest sequence the stream acknowledged to us. */
  ackedSeq: number;
}

/** Longest wait for a JetStream management answer (appends have their own publishTimeoutMs). */
export const managementTimeoutMs = 2000;

export class ShardLog {
  readonly stream: string;
  readonly subject: string;
  private readonly publishTimeoutMs: number;

  private constructor(
    private readonly o: ShardLogOptions,
    private readonly js: JetStreamClient,
    private readonly jsm: JetStreamManager,
    private readonly snapshots: ObjectStore,
  ) {
    this.stream = logStreamName(o.prefix, o.shardId);
    this.subject = logSubject(o.prefix, o.shardId);
    this.publishTimeoutMs = o.publishTimeoutMs ?? 2000;
  }

  /** Opens the shard's stream and the snapshot store, creating them if absent. */
  static async open(o: ShardLogOptions): Promise<ShardLog> {
    // A management request (stream info, a consumer) sent while the server restarts can be
    // lost; it then fails after this long and the node retries, instead of waiting the
    // client's default 5 s before following or serving again.
    const jsm = await jetstreamManager(o.nc, { timeout: managementTimeoutMs });
    const stream = logStreamName(o.prefix, o.shardId);
    try {
      await jsm.streams.info(stream);
    } catch {
      try {
        await jsm.streams.add({
          name: stream, subjects: [logSubject(o.prefix, o.shardId)], storage: StorageType.File,
          num_replicas: o.replicas, retention: RetentionPolicy.Limits, discard: DiscardPolicy.Old,
          // The window within which a retried append (same msgID) is recognised as a repeat.
          duplicate_window: nanos(120_000),
        });
      } catch (e) {
        if (!/already in use|exists/i.test((e as Error).message)) throw e; // another node made it first
      }
    }
    const snapshots = await new Objm(o.nc).create(snapshotBucket(o.prefix), { replicas: o.replicas, storage: StorageType.File });
    return new ShardLog(o, jetstream(o.nc, { timeout: managementTimeoutMs }), jsm, snapshots);
  }

  /** Where the log ends now. */
  async end(): Promise<LogEnd> {
    const info = await this.jsm.streams.info(this.stream);
    const { first_seq: firstSeq, last_seq: lastSeq, messages } = info.state;
    if (messages === 0) {
      // Trimming always keeps the newest record, so an empty stream was never written to.
      if (lastSeq > 0) throw new Error(`stream ${this.stream} is empty after sequence ${lastSeq}: its records were removed by hand; restore it or start the deployment afresh`);
      return { firstSeq: 1, lastSeq: 0, offset: 0, lastLsn: 0, lastCrc: null, lastMsgId: null };
    }
    const last = await this.jsm.streams.getMessage(this.stream, { seq: lastSeq });
    if (last === null) throw new Error(`stream ${this.stream} lost its last message ${lastSeq}`);
    const lastLsn = Number(last.header.get(header.lsn));
    return { firstSeq, lastSeq, offset: lastLsn - lastSeq, lastLsn, lastCrc: Number(last.header.get(header.crc)), lastMsgId: last.header.get('Nats-Msg-Id') || null };
  }

  /** The msgID of the record at stream sequence `seq` (null when the stream no longer holds it). */
  async msgIdAt(seq: number): Promise<string | null> {
    if (seq <= 0) return null;
    const m = await this.jsm.streams.getMessage(this.stream, { seq }).catch(() => null);
    return m === null ? null : m.header.get('Nats-Msg-Id') || null;
  }

  /** The crc32c of the record with `lsn`, or null when the stream no longer (or not yet) holds it. */
  async crcOf(lsn: number, end: LogEnd): Promise<number | null> {
    const seq = lsn - end.offset;
    if (seq < end.firstSeq || seq > end.lastSeq) return null;
    const m = await this.jsm.streams.getMessage(this.stream, { seq });
    return m === null ? null : Number(m.header.get(header.crc));
  }

  /**
   * The owner's side: appends in order after stream sequence `lastSeq` (which this node has
   * applied), each with that sequence as the expected last one. Appends go out at once
   * (several in flight) and resolve in order; one refused append refuses every later one.
   */
  appender(lastSeq: number, lastMsgId: string | null, stillOwner: () => boolean): Replicator {
    const chainState: AppendChain = { expectedSeq: lastSeq, previousMsgId: lastMsgId, ackedSeq: lastSeq };
    let chain: Promise<void> = Promise.resolve();
    return {
      append: (record) => {
        const seq = ++chainState.expectedSeq;
        const msgId = `${this.o.shardId}:${record.lsn}:${this.o.owner}`;
        const previous = chainState.previousMsgId;
        chainState.previousMsgId = msgId;
        const sent = this.appendOne(record, { seq, msgId, previousMsgId: previous }, chainState, stillOwner);
        // Handled here: a failure surfaces through the chain, in order, never as an unhandled
        // rejection while an earlier append is still being waited for.
        sent.catch(() => undefined);
        chain = chain.then(() => sent);
        return chain;
      },
    };
  }

  /**
   * One append at stream sequence `at.seq`, expecting both the sequence before it and, as the
   * fence, the msgID of the record before it: each append is chained to its own predecessor,
   * so once a newer owner's record is last, none of an older owner's appends in flight can
   * land, however many it had pipelined. Retried (same msgID) until it lands, is refused by
   * another node's record, the log turns out to have lost records, or our lease runs out.
   * Nothing is published once the lease has run out.
   */
  private async appendOne(record: LogRecord, at: { seq: number; msgId: string; previousMsgId: string | null }, chainState: AppendChain, stillOwner: () => boolean): Promise<void> {
    const h = headers();
    h.set(header.lsn, String(record.lsn));
    h.set(header.crc, String(crc32c(record.payload)));
    h.set(header.owner, this.o.owner);
    const expect = at.previousMsgId === null ? { lastSequence: at.seq - 1 } : { lastSequence: at.seq - 1, lastMsgID: at.previousMsgId };
    let behindSinceMs: number | null = null;
    for (;;) {
      if (!stillOwner()) throw new Error(`record ${record.lsn} not appended: this node's lease of shard ${this.o.shardId} has run out`);
      try {
        // The same msgID on a retry: if the first attempt landed, JetStream answers it as a duplicate.
        const ack = await this.js.publish(this.subject, record.payload, { msgID: at.msgId, headers: h, expect, timeout: this.publishTimeoutMs });
        if (ack.seq !== at.seq) throw new FencedError(`record ${record.lsn} landed at sequence ${ack.seq}, not ${at.seq}`);
        if (ack.seq > chainState.ackedSeq) chainState.ackedSeq = ack.seq;
        return;
      } catch (e) {
        if (e instanceof FencedError) throw e;
        if (isFence(e)) {
          const verdict = await this.afterRefusal(record, at.seq, chainState.ackedSeq);
          if (verdict === 'landed') return;
          if (verdict !== 'behind') throw new FencedError(`${verdict}: ${(e as Error).message}`);
          // Behind: an earlier record of ours is still being retried, briefly. For long, the log
          // lost what it held (a power loss of a single-replica store): this node stops.
          behindSinceMs ??= Date.now();
          if (Date.now() - behindSinceMs > behindMsMax) throw new FencedError(`${this.stream} stays behind sequence ${at.seq - 1}: it lost records`);
        }
        // No answer (a NATS restart, a leader change): retry while the lease is ours.
        await new Promise((r) => setTimeout(r, 50));
      }
    }
  }

  /**
   * A refused append is a fence only when another node's record holds our place. The stream may
   * instead be behind (an earlier append of ours is still being retried after a leader change),
   * or our own record may already be there (an attempt whose answer was lost). A stream shorter
   * than what it acknowledged to us has lost records: that is never ours to paper over.
   */
  private async afterRefusal(record: LogRecord, seq: number, ackedSeq: number): Promise<'landed' | 'behind' | string> {
    let lastSeq: number;
    try {
      lastSeq = (await this.jsm.streams.info(this.stream)).state.last_seq;
    } catch {
      return 'behind'; // unknown: retry (the lease bounds how long)
    }
    if (lastSeq < ackedSeq) return `${this.stream} ends at sequence ${lastSeq}, before sequence ${ackedSeq} it acknowledged: it lost records`;
    if (lastSeq < seq) return 'behind';
    const there = await this.jsm.streams.getMessage(this.stream, { seq }).catch(() => null);
    if (there !== null && there.header.get(header.owner) === this.o.owner && Number(there.header.get(header.lsn)) === record.lsn) return 'landed';
    return `another node appended to ${this.stream}`;
  }

  /**
   * The follower's side: reads records from stream sequence `fromSeq` on, in order, and hands
   * each batch (as many as are available, up to `batchMax`) to `onBatch` before reading more.
   * Runs until stopped or until `onBatch` throws.
   */
  follow(fromSeq: number, onBatch: (records: FollowedRecord[]) => Promise<void>, batchMax = 512): { stop: () => Promise<void>; done: Promise<void> } {
    let stopped = false;
    let messages: { stop(): void } | null = null;
    // Records are gathered while the consumer delivers what it holds and handed over once it
    // has nothing more at hand (after the current I/O turn): one local fdatasync for all of
    // them. The iterator's own pending count cannot say that: it also counts the client's
    // queued pull requests, so a batch waiting for it could wait forever once the log stops.
    const pending: FollowedRecord[] = [];
    let flushing: Promise<void> | null = null;
    let failure: unknown = null;
    const flush = (): Promise<void> => {
      flushing ??= (async () => {
        await new Promise<void>((r) => setImmediate(r));
        try {
          while (pending.length > 0 && !stopped && failure === null) await onBatch(pending.splice(0, batchMax));
        } catch (e) {
          failure = e;
          messages?.stop();
        } finally {
          flushing = null;
        }
      })();
      return flushing;
    };
    const done = (async () => {
      const consumer = await this.js.consumers.get(this.stream, { deliver_policy: DeliverPolicy.StartSequence, opt_start_seq: Math.max(1, fromSeq) });
      if (stopped) return;
      const iter = await consumer.consume({ max_messages: batchMax });
      messages = iter;
      // A stop() while consume() was being set up found nothing to stop: on an idle log the
      // loop below would wait for a message that never comes.
      if (stopped) {
        iter.stop();
        return;
      }
      try {
        for await (const m of iter) {
          if (stopped || failure !== null) break;
          pending.push({ seq: m.seq, lsn: Number(m.headers?.get(header.lsn)), payload: m.data, msgId: m.headers?.get('Nats-Msg-Id') || null });
          const flushed = flush();
          // Bounded: no more than a batch waits while the previous one is being applied.
          if (pending.length >= batchMax) await flushed;
        }
      } finally {
        // Nothing is being applied once done settles (a caller that stopped may serve next).
        while (flushing !== null) await flushing;
      }
      if (failure !== null) throw failure;
    })();
    return {
      stop: async () => {
        stopped = true;
        messages?.stop();
        await done.catch(() => undefined);
      },
      done,
    };
  }

  /** The shard's stored snapshots, newest first: objects `shard-<k>-<lsn>` (an older one may linger). */
  private async storedSnapshots(): Promise<StoredSnapshot[]> {
    const prefix = `shard-${this.o.shardId}-`;
    const found: StoredSnapshot[] = [];
    for (const info of await this.snapshots.list()) {
      if (info.deleted || !info.name.startsWith(prefix)) continue;
      const meta = parseDescription(info.description);
      const lsn = Number(meta.lsn);
      if (!Number.isSafeInteger(lsn) || lsn <= 0) continue;
      found.push({ name: info.name, lsn, crc: typeof meta.crc === 'number' ? meta.crc : null });
    }
    return found.sort((a, b) => b.lsn - a.lsn);
  }

  /**
   * Stores a snapshot file (streamed: no single buffer holds it) under a name of its own lsn,
   * so a late upload of an older one (a deposed owner's) can never replace a newer one; then
   * keeps the two newest, and trims the stream behind the OLDER of them, so a follower a
   * snapshot interval behind still catches up from the stream instead of rebuilding.
   */
  async putSnapshot(lsn: number, file: string, tailCrc: number | null): Promise<void> {
    const stream = Readable.toWeb(createReadStream(file)) as ReadableStream<Uint8Array>;
    const name = `shard-${this.o.shardId}-${lsn.toString(16).padStart(16, '0')}`;
    await this.snapshots.put({ name, description: JSON.stringify({ lsn, crc: tailCrc }) }, stream);
    const stored = await this.storedSnapshots();
    for (const old of stored.slice(2)) await this.snapshots.delete(old.name);
    const keepAfter = stored[1]?.lsn;
    if (keepAfter === undefined) return;
    const end = await this.end();
    // Keep every record after that snapshot, and always the newest one (it tells where the log
    // ends: its lsn and crc), so the stream is never empty once written.
    const keepFrom = Math.min(keepAfter + 1 - end.offset, end.lastSeq);
    if (end.lastSeq > 0 && keepFrom > end.firstSeq) await this.jsm.streams.purge(this.stream, { seq: keepFrom });
  }

  /** The shard's newest stored snapshot (its lsn and the crc32c of the record it ends at), without fetching it. */
  async snapshotInfo(): Promise<{ lsn: number; crc: number | null } | null> {
    const newest = (await this.storedSnapshots())[0];
    return newest === undefined ? null : { lsn: newest.lsn, crc: newest.crc };
  }

  /** The lsn of the shard's newest stored snapshot (null: none). */
  async snapshotLsn(): Promise<number | null> {
    return (await this.snapshotInfo())?.lsn ?? null;
  }

  /** Writes the shard's newest stored snapshot to `file` (streamed, digest checked); false when there is none. */
  async getSnapshot(file: string): Promise<boolean> {
    const newest = (await this.storedSnapshots())[0];
    if (newest === undefined) return false;
    const result = await this.snapshots.get(newest.name);
    if (result === null) return false;
    await pipeline(Readable.fromWeb(result.data as Parameters<typeof Readable.fromWeb>[0]), createWriteStream(file));
    const failed = await result.error;
    if (failed !== null && failed !== undefined) throw new Error(`the stored snapshot of shard ${this.o.shardId} did not download whole: ${failed.message}`);
    return true;
  }
}

interface StoredSnapshot {
  name: string;
  lsn: number;
  crc: number | null;
}

/** An object's description as we write it (`{"lsn":…,"crc":…}`); anything else reads as naming no snapshot. */
function parseDescription(description: string | undefined): { lsn?: unknown; crc?: unknown } {
  try {
    const meta: unknown = JSON.parse(description ?? '{}');
    return typeof meta === 'object' && meta !== null ? meta : {};
  } catch {
    return {};
  }
}
