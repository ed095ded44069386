// Hosts shards for NATS gateways: for each shard id it may own, it holds a lease, runs
// the shard's worker thread, and answers `<prefix>.shard.<k>` requests. Until it takes
// the lease it stands by and does not subscribe (so gateways get "no responders" at once,
// never a second owner). Losing the lease stops serving at once: unsubscribe first, then
// drain and snapshot the worker, then release the shard directory's lock.

import { join } from 'node:path';
import type { NatsConnection, Msg, Subscription } from '@nats-io/transport-node';
import { Kvm, type KV } from '@nats-io/kv';
import type { Logger } from 'pino';
import { decode, encode } from '../engine/codec.js';
import { lockDataDir } from '../engine/data-dir.js';
import type { WorkerTransport } from '../engine/worker-transport.js';
import { leaseBucket, shardSubject, wireVersion } from './nats-connect.js';
import type { NatsReply, NatsRequest } from './nats-wire.js';
import { ShardLease } from './shard-lease.js';

export interface ShardNodeOptions {
  nc: NatsConnection;
  prefix: string;
  shardIds: number[];
  dataDir: string;
  transport: WorkerTransport;
  log: Logger;
  /** Lease time to live; a dead owner's shards are taken over after about this long. */
  leaseTtlMs?: number;
  /** Who we are, written into the lease (for operators reading the KV bucket). */
  nodeName: string;
  /** Replicas of the lease bucket when this node creates it (3 on a 3-node NATS cluster). */
  leaseReplicas?: number;
}

type HostState = 'standby' | 'starting' | 'serving' | 'stopping';

class HostedShard {
  state: HostState = 'standby';
  private subs: Subscription[] = [];
  private unlock: (() => void) | null = null;
  private timer: NodeJS.Timeout | null = null;
  private stopped = false;

  constructor(readonly shardId: number, private readonly lease: ShardLease, private readonly opts: ShardNodeOptions, private readonly tickMs: number) {}

  run(): void {
    const loop = async (): Promise<void> => {
      await this.tick().catch((e: unknown) => this.opts.log.error({ err: e, shard: this.shardId }, 'lease tick failed'));
      if (!this.stopped) this.timer = setTimeout(() => void loop(), this.tickMs);
    };
    void loop();
  }

  private async tick(): Promise<void> {
    if (this.state === 'starting' || this.state === 'serving') {
      if (!(await this.lease.renew())) await this.demote('lease lost');
    } else if (this.state === 'standby' && (await this.lease.acquire())) {
      void this.promote();
    }
  }

  private async promote(): Promise<void> {
    this.state = 'starting';
    const { transport, log } = this.opts;
    try {
      this.unlock = lockDataDir(join(this.opts.dataDir, `shard-${this.shardId}`));
      await transport.startShard(this.shardId);
      if (this.state !== 'starting' || !this.lease.held) throw new Error('lease lost during recovery');
      // The v1 subject too, so v1 gateways keep working while a deployment is upgraded
      // (shard nodes first): what they send carries no buyer or channel, exactly as v1 did.
      this.subs = [wireVersion, 1].map((v) => this.opts.nc.subscribe(shardSubject(this.opts.prefix, this.shardId, v), {
        callback: (err, msg) => { if (err === null) this.onRequest(msg); },
      }));
      this.state = 'serving';
      log.info({ shard: this.shardId }, 'took the shard lease; serving');
    } catch (e) {
      log.warn({ shard: this.shardId, err: e }, 'could not start serving the shard; standing by');
      await this.demote('start failed');
    }
  }

  private onRequest(msg: Msg): void {
    if (this.state !== 'serving' || !this.lease.held) {
      msg.respond(encode({ k: 'unavailable', message: `shard ${this.shardId} is changing owner` } satisfies NatsReply));
      if (this.state === 'serving') void this.demote('lease expired');
      return;
    }
    const request = decode<NatsRequest>(msg.data);
    const { transport } = this.opts;
    if (request.k === 'stats') {
      void transport.stats().then((all) => {
        const stats = all.find((s) => s.shardId === this.shardId) ?? null;
        msg.respond(encode({ k: 'stats', stats } satisfies NatsReply));
      });
      return;
    }
    void Promise.all(request.cmds.map((c) => transport.call(this.shardId, c))).then((outcomes) => {
      msg.respond(encode({ k: 'batch', outcomes } satisfies NatsReply));
    });
  }

  /** Stops serving: no new requests first, then drain and snapshot, then free the lease. */
  async demote(reason: string): Promise<void> {
    if (this.state === 'stopping' || this.state === 'standby') return;
    const wasServing = this.state === 'serving';
    this.state = 'stopping';
    for (const sub of this.subs) sub.unsubscribe();
    this.subs = [];
    try {
      await this.opts.transport.stopShard(this.shardId);
    } finally {
      this.unlock?.();
      this.unlock = null;
      await this.lease.release();
      this.state = 'standby';
      if (wasServing) this.opts.log.warn({ shard: this.shardId, reason }, 'stopped serving the shard');
    }
  }

  async stop(): Promise<void> {
    this.stopped = true;
    if (this.timer !== null) clearTimeout(this.timer);
    if (this.state === 'starting' || this.state === 'serving') {
      // Let a start in progress finish first, so its worker is stopped cleanly.
      while (this.state === 'starting') await new Promise((r) => setTimeout(r, 20));
      await this.demote('shutdown');
    }
  }
}

export class ShardNode {
  private readonly hosts: HostedShard[] = [];

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
      this.hosts.push(host);
      host.run();
    }
  }

  status(): { serving: number[]; standby: number[] } {
    return {
      serving: this.hosts.filter((h) => h.state === 'serving').map((h) => h.shardId),
      standby: this.hosts.filter((h) => h.state !== 'serving').map((h) => h.shardId),
    };
  }

  async close(): Promise<void> {
    await Promise.all(this.hosts.map((h) => h.stop()));
  }
}
