// Hosts shards for NATS gateways. For each shard id it may own, it follows the shard's
// replicated log (a JetStream stream, see shard-log.ts) into a local worker and disk, so
// that when it takes the shard's lease it is a catch-up, not a replay, from serving. Only
// while it holds the lease does it subscribe to `<prefix>.shard.<k>.v2`, and every record
// it writes is fenced by the stream's expected last sequence: a node that lost the shard
// (lease gone, or another node appended) stops at once, answers nothing it did not make
// durable in the replicated log, and follows again after checking its disk against the log.

import { readdir, rename, rm, stat } from 'node:fs/promises';
import { join } from 'node:path';
import type { NatsConnection, Msg, Subscription } from '@nats-io/transport-node';
import { Kvm, type KV } from '@nats-io/kv';
import type { Logger } from 'pino';
import { encode } from '../engine/codec.js';
import { lockDataDir } from '../engine/data-dir.js';
import type { WorkerTransport } from '../engine/worker-transport.js';
import { installSnapshotFile } from '../wal/file-wal.js';
import { leaseBucket, shardSubject, wireVersion } from './nats-connect.js';
import { fitBatchReply, readRequest, type NatsReply } from './nats-wire.js';
import { ShardLease } from './shard-lease.js';
import { ShardLog, type FollowedRecord, type LogEnd } from './shard-log.js';

export interface ShardNodeOptions {
  nc: NatsConnection;
  prefix: string;
  shardIds: number[];
  dataDir: string;
  /** Must be created with `replicated: true`, and its onShardLost / onSnapshot routed to this node. */
  transport: WorkerTransport;
  log: Logger;
  /** Lease time to live; a dead owner's shards are taken over after about this long. */
  leaseTtlMs?: number;
  /** Who we are, written into the lease (for operators reading the KV bucket). */
  nodeName: string;
  /** Replicas of the lease bucket, the log streams and the snapshot store when this node creates them. */
  leaseReplicas?: number;
  logReplicas?: number;
  /** Longest wait for a follower to catch up with the log before serving (then the lease is given back). */
  catchUpMsMax?: number;
}

type HostState = 'following' | 'promoting' | 'serving' | 'stopping' | 'stopped';

class HostedShard {
  state: HostState = 'following';
  private subs: Subscription[] = [];
  private unlock: (() => void) | null = null;
  private timer: NodeJS.Timeout | null = null;
  private stopped = false;
  private log: ShardLog | null = null;
  private follower: { stop: () => Promise<void>; done: Promise<void> } | null = null;
  /** The newest stream sequence and lsn this node applied, and that record's msgID. */
  private appliedSeq = 0;
  private appliedLsn = 0;
  private appliedMsgId: string | null = null;
  private uploading = false;
  private uploadedLsn = 0;
  /** Set when following must start over (a failure, a fence, a demotion). */
  private restartFollowing = true;

  constructor(readonly shardId: number, private readonly lease: ShardLease, private readonly opts: ShardNodeOptions, private readonly tickMs: number) {}

  private get dir(): string {
    return join(this.opts.dataDir, `shard-${this.shardId}`);
  }

  run(): void {
    const loop = async (): Promise<void> => {
      await this.tick().catch((e: unknown) => this.opts.log.error({ err: e, shard: this.shardId }, 'shard tick failed'));
      if (!this.stopped) this.timer = setTimeout(() => void loop(), this.tickMs);
    };
    void loop();
  }

  private async tick(): Promise<void> {
    if (this.state === 'serving') {
      if (await this.lease.renew()) this.opts.transport.leaseShard(this.shardId, Date.now() + this.lease.validForMs);
      else await this.demote('lease lost');
      return;
    }
    if (this.state !== 'following') return;
    if (this.restartFollowing) {
      this.restartFollowing = false;
      await this.startFollowing().catch(async (e: unknown) => {
        this.opts.log.error({ shard: this.shardId, err: e }, 'cannot follow the shard log; retrying');
        await this.stopLocal();
        this.restartFollowing = true;
      });
      return;
    }
    if (this.follower !== null && (await this.lease.acquire())) await this.promote();
  }

  // ---- following ------------------------------------------------------------------------

  /** Starts the local worker on this disk, checked against the log (rebuilt if it differs). */
  private async startFollowing(): Promise<void> {
    const { transport } = this.opts;
    this.log ??= await ShardLog.open({ nc: this.opts.nc, prefix: this.opts.prefix, shardId: this.shardId, replicas: this.opts.logReplicas ?? 1, owner: this.lease.owner });
    this.unlock ??= lockDataDir(this.dir);
    const end = await this.log.end();
    const stored = await this.log.snapshotInfo();
    const snapshotLsn = stored?.lsn ?? null;
    const unreadable = await transport.startShard(this.shardId).then(() => null, (e: unknown) => (e instanceof Error ? e.message : String(e)));
    // A disk the worker cannot recover (a damaged segment, a replay that diverges) is rebuilt
    // from the log, which holds everything acknowledged; its copy is kept aside.
    const why = unreadable !== null ? `local copy cannot be recovered: ${unreadable}` : await this.localDiffers(end, stored);
    if (why !== null) {
      this.opts.log.warn({ shard: this.shardId, why }, 'local copy of the shard differs from its replicated log; rebuilding it from the log');
      await this.rebuild(end, snapshotLsn);
    }
    const tail = transport.tailOf(this.shardId);
    // Checked: what the disk holds is the log's, so snapshots may cover it from now on.
    transport.confirmShard(this.shardId, tail.lsn);
    this.appliedLsn = tail.lsn;
    // An empty stream after a seeding snapshot: its first record will be the snapshot's lsn + 1.
    const offset = end.lastSeq > 0 ? end.offset : (snapshotLsn ?? 0);
    this.appliedSeq = tail.lsn - offset;
    this.appliedMsgId = this.appliedSeq === end.lastSeq ? end.lastMsgId : await this.log.msgIdAt(this.appliedSeq);
    this.follower = this.log.follow(this.appliedSeq + 1, (records) => this.apply(records));
    this.follower.done.catch((e: unknown) => {
      if (this.state !== 'following') return;
      this.opts.log.error({ shard: this.shardId, err: e }, 'following the shard log failed; starting over');
      void this.stopLocal().then(() => { this.restartFollowing = true; });
    });
    this.opts.log.info({ shard: this.shardId, lsn: tail.lsn, logLsn: end.lastLsn }, 'following the shard log');
  }

  /** Why this disk cannot continue the log (null when it can). */
  private async localDiffers(end: LogEnd, stored: { lsn: number; crc: number | null } | null): Promise<string | null> {
    const snapshotLsn = stored?.lsn ?? null;
    const tail = this.opts.transport.tailOf(this.shardId);
    // Nothing was ever written to the replicated log (an append always leaves a record, a
    // seed a snapshot): this disk is from before it, and its owner will seed the log with it.
    if (end.lastSeq === 0 && snapshotLsn === null) return null;
    const logLsn = end.lastSeq > 0 ? end.lastLsn : (snapshotLsn ?? 0);
    if (tail.lsn > logLsn) return `local log reaches lsn ${tail.lsn}, the replicated log only ${logLsn}`;
    if (end.lastSeq === 0) {
      if (tail.lsn !== logLsn) return `local log at lsn ${tail.lsn}, the stored snapshot at ${logLsn}`;
      return stored?.crc === null || stored?.crc === tail.crc ? null : `local record ${tail.lsn} differs from the stored snapshot's`;
    }
    const firstLsn = end.firstSeq + end.offset;
    if (tail.lsn < firstLsn - 1) return `local log at lsn ${tail.lsn}, the replicated log starts at ${firstLsn}`;
    if (tail.lsn === 0) return null;
    // The last record on disk (or the one its snapshot ends at) must be the log's record there:
    // a disk whose last record cannot be compared is not trusted.
    if (tail.crc === null) return `the record at local lsn ${tail.lsn} cannot be compared with the replicated log's`;
    if (tail.lsn < firstLsn) {
      // Just before the trimmed log's first record: the stored snapshot there is the comparison.
      if (stored !== null && stored.lsn === tail.lsn && stored.crc === tail.crc) return null;
      return `local log ends at lsn ${tail.lsn}, just before the replicated log's first record, with nothing to compare it to`;
    }
    const crc = await this.log!.crcOf(tail.lsn, end);
    if (crc !== tail.crc) return `record ${tail.lsn} differs from the replicated log's`;
    return null;
  }

  /** Replaces this disk by the stored snapshot (or nothing) and lets the log fill the rest. */
  private async rebuild(end: LogEnd, snapshotLsn: number | null): Promise<void> {
    await this.opts.transport.stopShard(this.shardId);
    this.unlock?.();
    this.unlock = null;
    // A copy that holds anything is kept aside (one per shard, the newest), never deleted
    // outright: an operator who started nodes in the wrong order can still get it back. An
    // empty one (a rebuild cut short) never replaces a kept copy.
    const aside = `${this.dir}.replaced`;
    if (await holdsLog(this.dir)) {
      await rm(aside, { recursive: true, force: true });
      await rename(this.dir, aside);
      this.opts.log.warn({ shard: this.shardId, keptAt: aside }, 'the replaced copy of the shard is kept until the next rebuild');
    } else {
      await rm(this.dir, { recursive: true, force: true });
    }
    const firstLsn = end.lastSeq > 0 ? end.firstSeq + end.offset : 1;
    if (snapshotLsn !== null) {
      const download = `${this.dir}.snapshot-download`;
      try {
        if (!(await this.log!.getSnapshot(download))) throw new Error('the stored snapshot disappeared while rebuilding');
        installSnapshotFile(this.dir, download);
      } finally {
        await rm(download, { force: true });
      }
    } else if (firstLsn > 1) {
      throw new Error(`the replicated log starts at lsn ${firstLsn} and no snapshot is stored: cannot rebuild`);
    }
    this.unlock = lockDataDir(this.dir);
    await this.opts.transport.startShard(this.shardId);
  }

  private async apply(records: FollowedRecord[]): Promise<void> {
    const fresh = records.filter((r) => r.lsn > this.appliedLsn);
    if (fresh.length === 0) return;
    if (fresh[0]!.lsn !== this.appliedLsn + 1) throw new Error(`the log jumps from lsn ${this.appliedLsn} to ${fresh[0]!.lsn}`);
    this.appliedLsn = await this.opts.transport.feedShard(this.shardId, fresh);
    this.appliedSeq = fresh[fresh.length - 1]!.seq;
    this.appliedMsgId = fresh[fresh.length - 1]!.msgId;
  }

  // ---- serving --------------------------------------------------------------------------

  /** We hold the lease: catch up with the whole log, then serve, fenced at its end. */
  private async promote(): Promise<void> {
    this.state = 'promoting';
    const { transport, log } = this.opts;
    log.info({ shard: this.shardId, lsn: this.appliedLsn }, 'took the shard lease; catching up with its log');
    try {
      const end = await this.log!.end();
      const deadline = Date.now() + (this.opts.catchUpMsMax ?? 10_000);
      let renewedAtMs = Date.now();
      while (this.appliedSeq < end.lastSeq) {
        if (Date.now() > deadline || !this.lease.held) throw new Error(`caught up to sequence ${this.appliedSeq} of ${end.lastSeq} only`);
        await new Promise((r) => setTimeout(r, 10));
        // The lease is kept while catching up (ticks wait for this), so the budget is catchUpMsMax.
        if (Date.now() - renewedAtMs >= this.tickMs) {
          renewedAtMs = Date.now();
          await this.lease.renew();
        }
      }
      await this.follower?.stop();
      this.follower = null;
      if (end.lastSeq === 0) {
        // An empty log: this disk (if it holds anything) becomes its starting point, and the
        // first record lands at sequence 1.
        if (this.appliedLsn > 0 && (await this.log!.snapshotLsn()) !== this.appliedLsn) await this.seed();
        this.appliedSeq = 0;
        this.appliedMsgId = null;
      }
      await transport.serveShard(this.shardId, this.log!.appender(this.appliedSeq, this.appliedMsgId, () => this.lease.held), Date.now() + this.lease.validForMs);
      if (!this.lease.held) throw new Error('lease lost while catching up');
      this.subs = [wireVersion, 1].map((v) => this.opts.nc.subscribe(shardSubject(this.opts.prefix, this.shardId, v), {
        // Nothing may throw out of here: NATS would close the connection's reader, and with it
        // every lease and subscription of this node.
        callback: (err, msg) => {
          if (err !== null) return;
          try {
            this.onRequest(msg);
          } catch (e) {
            this.opts.log.error({ shard: this.shardId, err: e }, 'a request on the shard subject failed');
          }
        },
      }));
      // The server has our subscriptions before we say we serve (a request sent right after
      // would otherwise meet "no responders").
      await this.opts.nc.flush();
      this.state = 'serving';
      log.info({ shard: this.shardId, lsn: this.appliedLsn, seq: end.lastSeq }, 'took the shard lease; serving');
    } catch (e) {
      log.warn({ shard: this.shardId, err: e }, 'could not start serving the shard; following again');
      await this.demote('start failed');
    }
  }

  /**
   * The log is empty but this disk is not (a deployment moving to the replicated log): its
   * state becomes the log's starting point, as a stored snapshot that other nodes install.
   */
  private async seed(): Promise<void> {
    const snap = await this.opts.transport.checkpointShard(this.shardId);
    if (snap === null || snap.lsn !== this.appliedLsn) throw new Error(`cannot seed the log: snapshot at ${snap?.lsn ?? 'none'}, disk at ${this.appliedLsn}`);
    await this.log!.putSnapshot(snap.lsn, snap.file, snap.crc);
    this.uploadedLsn = snap.lsn;
    this.opts.log.info({ shard: this.shardId, lsn: snap.lsn }, 'seeded the replicated log with this node\'s snapshot');
  }

  private onRequest(msg: Msg): void {
    if (this.state !== 'serving' || !this.lease.held) {
      msg.respond(encode({ k: 'unavailable', message: `shard ${this.shardId} is changing owner` } satisfies NatsReply));
      if (this.state === 'serving') void this.demote('lease expired');
      return;
    }
    const request = readRequest(msg.data);
    if ('error' in request) {
      msg.respond(encode({ k: 'malformed', message: request.error.slice(0, 200) } satisfies NatsReply));
      return;
    }
    const { transport } = this.opts;
    const respond = (make: () => Uint8Array): void => {
      try {
        msg.respond(make());
      } catch (e) {
        // NATS refuses what it cannot send (a reply over max_payload, a closed connection):
        // the asker hears nothing and answers shard_unavailable; this node goes on.
        this.opts.log.warn({ shard: this.shardId, err: e }, 'could not send a reply');
      }
    };
    if (request.k === 'stats') {
      transport.stats().then(
        (all) => respond(() => encode({ k: 'stats', stats: all.find((s) => s.shardId === this.shardId) ?? null } satisfies NatsReply)),
        (e: unknown) => this.opts.log.warn({ shard: this.shardId, err: e }, 'could not read the shard\'s figures'),
      );
      return;
    }
    // The gateway's batch stays one unit here: one entry in the shard's mailbox, one reply,
    // cut to fit in one NATS message (the answers that do not fit say so, one by one).
    const maxBytes = this.opts.nc.info?.max_payload ?? 1024 * 1024;
    transport.callMany(this.shardId, request.cmds).then(
      (outcomes) => respond(() => fitBatchReply(outcomes, maxBytes)),
      (e: unknown) => this.opts.log.error({ shard: this.shardId, err: e }, 'a batch failed in the shard transport'),
    );
  }

  /** A new local snapshot of acknowledged records: the owner ships it, and the log is trimmed behind it. */
  onSnapshot(lsn: number, file: string, crc: number | null): void {
    if (this.state !== 'serving' || this.uploading || lsn <= this.uploadedLsn || this.log === null) return;
    this.uploading = true;
    void this.log.putSnapshot(lsn, file, crc)
      .then(() => {
        this.uploadedLsn = lsn;
        this.opts.log.info({ shard: this.shardId, lsn }, 'stored the shard snapshot with the replicated log, and trimmed the log behind it');
      }, (e: unknown) => this.opts.log.warn({ shard: this.shardId, lsn, err: e }, 'could not store the shard snapshot; the log keeps its records'))
      .finally(() => { this.uploading = false; });
  }

  /** The worker stopped or was fenced off: serve no more, and follow again from a checked disk. */
  onLost(reason: string): void {
    if (this.state === 'stopping' || this.state === 'stopped') return;
    this.opts.log.warn({ shard: this.shardId, reason }, 'lost the shard');
    void this.demote(reason);
  }

  /** Stops serving (no new requests first), stops the worker, frees the lease, follows again. */
  async demote(reason: string): Promise<void> {
    if (this.state === 'stopping' || this.state === 'stopped') return;
    const wasServing = this.state === 'serving';
    this.state = 'stopping';
    for (const sub of this.subs) sub.unsubscribe();
    this.subs = [];
    try {
      await this.stopLocal();
    } finally {
      await this.lease.release();
      this.state = this.stopped ? 'stopped' : 'following';
      this.restartFollowing = true;
      if (wasServing) this.opts.log.warn({ shard: this.shardId, reason }, 'stopped serving the shard');
    }
  }

  /** Stops following and the local worker (what it applied stays on disk, checked when it starts again). */
  private async stopLocal(): Promise<void> {
    await this.follower?.stop();
    this.follower = null;
    await this.opts.transport.stopShard(this.shardId);
    this.unlock?.();
    this.unlock = null;
  }

  async stop(): Promise<void> {
    this.stopped = true;
    if (this.timer !== null) clearTimeout(this.timer);
    while (this.state === 'promoting') await new Promise((r) => setTimeout(r, 20));
    if (this.state === 'serving') await this.demote('shutdown');
    else await this.stopLocal();
    this.state = 'stopped';
  }
}

/** Whether a shard directory holds any record or snapshot (a non-empty segment, or a snapshot file). */
async function holdsLog(dir: string): Promise<boolean> {
  const names = await readdir(dir).catch(() => [] as string[]);
  for (const name of names) {
    if (name.startsWith('snap-')) return true;
    if (name.startsWith('wal-') && (await stat(join(dir, name))).size > 0) return true;
  }
  return false;
}

export class ShardNode {
  private readonly hosts = new Map<number, HostedShard>();

  constructor(private readonly opts: ShardNodeOptions) {}

  async start(): Promise<void> {
    const ttlMs = this.opts.leaseTtlMs ?? 3000;
    const bucket = leaseBucket(this.opts.prefix);
    const kv: KV = await new Kvm(this.opts.nc).create(bucket, { ttl: ttlMs, history: 1, replicas: this.opts.leaseReplicas ?? 1 });
    // An existing bucket keeps its own TTL. If it were shorter than ours, a standby could take
    // a lease while its owner still trusts it: two owners. Refuse to run rather than risk that.
    const bucketTtlMs = (await kv.status()).ttl;
    if (bucketTtlMs > 0 && bucketTtlMs < ttlMs) {
      throw new Error(`lease bucket ${bucket} expires keys after ${bucketTtlMs} ms, less than FLASH_LEASE_TTL_MS=${ttlMs}; use the bucket's TTL or recreate the bucket`);
    }
    for (const id of this.opts.shardIds) {
      const lease = new ShardLease(kv, `shard-${id}`, this.opts.nodeName, ttlMs);
      const host = new HostedShard(id, lease, this.opts, Math.max(50, Math.floor(ttlMs / 6)));
      this.hosts.set(id, host);
      host.run();
    }
  }

  /** Routed from the transport: a shard's worker ended or was fenced off. */
  shardLost(shardId: number, reason: string): void {
    this.hosts.get(shardId)?.onLost(reason);
  }

  /** Routed from the transport: a shard wrote a snapshot of acknowledged records. */
  shardSnapshot(shardId: number, lsn: number, file: string, crc: number | null): void {
    this.hosts.get(shardId)?.onSnapshot(lsn, file, crc);
  }

  status(): { serving: number[]; standby: number[] } {
    const hosts = [...this.hosts.values()];
    return {
      serving: hosts.filter((h) => h.state === 'serving').map((h) => h.shardId),
      standby: hosts.filter((h) => h.state !== 'serving').map((h) => h.shardId),
    };
  }

  async close(): Promise<void> {
    await Promise.all([...this.hosts.values()].map((h) => h.stop()));
  }
}
