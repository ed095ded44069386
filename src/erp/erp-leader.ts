// The deployment's one ERP deliverer over NATS. Every shard node with an ERP configured
// competes for the lease `erp-deliverer` in the bucket that holds the shard leases; the
// holder alone drains every shard's outbox through NATS (erp.pending / erp.ack to each
// shard's owner), so FLASH_ERP_MAX_RPS and FLASH_ERP_CONCURRENCY hold for the deployment,
// not per process. It must never deliver without the lease: a lapse halts its calls at once.

import type { NatsConnection } from '@nats-io/transport-node';
import { Kvm, type KV } from '@nats-io/kv';
import type { Logger } from 'pino';
import type { Registry } from 'prom-client';
import { TransportOutbox, TransportStockOutbox } from './transport-outbox.js';
import type { DelivererStats } from './deliverer.js';
import type { ErpConfig } from './erp-config.js';
import { startErpHandOff, type ErpHandOff } from './erp-hand-off.js';
import { registerErpMetrics } from './erp-metrics.js';
import { leaseBucket } from '../nats/nats-connect.js';
import { NatsTransport } from '../nats/nats-transport.js';
import { ShardLease } from '../nats/shard-lease.js';

/** The key of the deliverer's lease, beside `shard-<k>` in `<prefix>_leases`. */
export const erpLeaseKey = 'erp-deliverer';
/** The key of the stock events deliverer's lease. */
export const eventsLeaseKey = 'events-deliverer';

export interface ErpLeaderOptions {
  nc: NatsConnection;
  prefix: string;
  shardCount: number;
  nodeName: string;
  /** The shard leases' TTL (FLASH_LEASE_TTL_MS): the bucket expires keys after it. */
  leaseTtlMs: number;
  leaseReplicas?: number;
  erp: ErpConfig;
  /**
   * What it delivers: the ERP's orders (default: lease `erp-deliverer`, the shards' outbox) or
   * the stock events (lease `events-deliverer`, the shards' stock event log), each with a
   * lease of its own so a slow receiver of one never holds back the other.
   */
  kind?: 'erp' | 'events';
  /** Calls in flight to one shard before the transport refuses more. */
  mailboxMax?: number;
  log: Logger;
  /** Where the hand-off's metrics go (registered once; they read whoever delivers now). */
  registry?: Registry;
}

export type ErpLeaderRole = 'standby' | 'starting' | 'delivering' | 'stopping';

export interface ErpLeaderStatus {
  role: ErpLeaderRole;
  lease: string;
  /** Wall-clock ms since this node delivers (null when it does not). */
  deliveringSinceMs: number | null;
  /** The figures of this node's deliverer: the current one, else the last it ran (null: never). */
  deliverer: DelivererStats | null;
}

/** The lease bucket, created as the shard nodes create it; refuses a bucket whose TTL is shorter than ours. */
async function openLeaseBucket(nc: NatsConnection, prefix: string, ttlMs: number, replicas: number): Promise<KV> {
  const bucket = leaseBucket(prefix);
  const kv = await new Kvm(nc).create(bucket, { ttl: ttlMs, history: 1, replicas });
  const bucketTtlMs = (await kv.status()).ttl;
  if (bucketTtlMs > 0 && bucketTtlMs < ttlMs) {
    throw new Error(`lease bucket ${bucket} expires keys after ${bucketTtlMs} ms, less than FLASH_LEASE_TTL_MS=${ttlMs}; use the bucket's TTL or recreate the bucket`);
  }
  return kv;
}

export class ErpLeader {
  private role: ErpLeaderRole = 'standby';
  private lease: ShardLease | null = null;
  private handOff: ErpHandOff | null = null;
  private lastStats: DelivererStats | null = null;
  private deliveringSinceMs: number | null = null;
  private tickTimer: NodeJS.Timeout | null = null;
  private watchTimer: NodeJS.Timeout | null = null;
  /** No new acquisition (a graceful stop is under way). */
  private closing = false;
  /** The lease loop has ended. */
  private stopped = false;
  private ticking: Promise<void> | null = null;
  private readonly transport: NatsTransport;

  private get leaseKey(): string {
    return this.opts.kind === 'events' ? eventsLeaseKey : erpLeaseKey;
  }

  private get what(): string {
    return this.opts.kind === 'events' ? 'stock events' : 'ERP';
  }

  constructor(private readonly opts: ErpLeaderOptions) {
    this.transport = new NatsTransport(opts.nc, { shardCount: opts.shardCount, prefix: opts.prefix, mailboxMax: opts.mailboxMax });
    if (opts.registry !== undefined) registerErpMetrics(opts.registry, () => this.handOff?.deliverer ?? null);
  }

  async start(): Promise<void> {
    const { nc, prefix, leaseTtlMs, nodeName } = this.opts;
    const kv = await openLeaseBucket(nc, prefix, leaseTtlMs, this.opts.leaseReplicas ?? 1);
    this.lease = new ShardLease(kv, this.leaseKey, nodeName, leaseTtlMs);
    const tickMs = Math.max(50, Math.floor(leaseTtlMs / 6));
    const loop = async (): Promise<void> => {
      this.ticking = this.tick().catch((e: unknown) => this.opts.log.error({ err: e }, 'ERP deliverer lease tick failed'));
      await this.ticking;
      this.ticking = null;
      if (!this.stopped) this.tickTimer = setTimeout(() => void loop(), tickMs);
    };
    void loop();
    // Between renewals the lease can lapse (NATS unreachable): stop within 50 ms of that,
    // long before another node can take it (the key lives a whole TTL after our last write).
    this.watchTimer = setInterval(() => {
      if ((this.role === 'starting' || this.role === 'delivering') && !this.lease!.held) void this.demote('lease lapsed');
    }, Math.min(50, Math.floor(leaseTtlMs / 10)));
  }

  private async tick(): Promise<void> {
    const lease = this.lease!;
    if (this.role === 'starting' || this.role === 'delivering') {
      if (!(await lease.renew())) await this.demote('lease lost');
    } else if (this.role === 'standby' && !this.closing && (await lease.acquire())) {
      if (this.closing) await lease.release();
      else await this.promote();
    }
  }

  private async promote(): Promise<void> {
    this.role = 'starting';
    const { log, shardCount } = this.opts;
    let handOff: ErpHandOff;
    try {
      const shardIds = Array.from({ length: shardCount }, (_, k) => k);
      // The deliverer starts its first call one rate window from now (quietFirstWindow), so
      // the calls of the last holder, which stopped before its lease ran out, never share a
      // one-second window with ours.
      // And it starts no call unless the lease is held at that instant (a process that stood
      // still past its lease may run a timer before the watchdog).
      const lease = this.lease!;
      const source = this.opts.kind === 'events' ? new TransportStockOutbox(this.transport, shardIds) : new TransportOutbox(this.transport, shardIds);
      handOff = await startErpHandOff({ config: this.opts.erp, source, log, mayStart: () => lease.held });
    } catch (e) {
      log.error({ err: e }, 'could not start the ERP deliverer; giving its lease up');
      this.role = 'stopping';
      await this.lease!.release();
      this.role = 'standby';
      return;
    }
    if (this.role !== 'starting') {
      // The lease lapsed while the sink was being made.
      await handOff.halt();
      return;
    }
    this.handOff = handOff;
    this.role = 'delivering';
    this.deliveringSinceMs = Date.now();
    log.info({ lease: this.leaseKey, node: this.opts.nodeName }, `took the ${this.what} deliverer lease; delivering for every shard`);
  }

  /** Stops delivering at once (calls in flight aborted), then frees the lease. */
  private async demote(reason: string): Promise<void> {
    if (this.role === 'standby' || this.role === 'stopping') return;
    const wasDelivering = this.role === 'delivering';
    this.role = 'stopping';
    const handOff = this.handOff;
    this.handOff = null;
    this.deliveringSinceMs = null;
    if (handOff !== null) {
      this.lastStats = handOff.deliverer.stats();
      await handOff.halt();
    }
    await this.lease!.release();
    this.role = 'standby';
    if (wasDelivering) this.opts.log.warn({ reason, lease: this.leaseKey }, `stopped delivering ${this.what}`);
  }

  /** Resolves once no start or demote is under way. */
  private async settled(): Promise<void> {
    const busy = (): boolean => this.role === 'starting' || this.role === 'stopping';
    while (busy()) await new Promise((r) => setTimeout(r, 20));
  }

  status(): ErpLeaderStatus {
    // A lapsed lease starts nothing more, even before the watchdog has run.
    const role = this.role === 'delivering' && this.lease?.held !== true ? 'stopping' : this.role;
    return {
      role, lease: this.leaseKey, deliveringSinceMs: this.deliveringSinceMs,
      deliverer: this.handOff?.deliverer.stats() ?? this.lastStats,
    };
  }

  /**
   * Graceful stop: calls in flight finish (up to graceMs) and are acknowledged, then the
   * lease is given up. The lease is renewed meanwhile, and watched: should it lapse, the
   * calls still in flight are aborted (the next holder may start a second later).
   */
  async close(graceMs: number): Promise<void> {
    this.closing = true;
    await this.ticking;
    // A start, or a demote the watchdog began, finishes first.
    await this.settled();
    const handOff = this.handOff;
    if (this.role === 'delivering' && handOff !== null) {
      await handOff.stop(graceMs);
      if (this.handOff === handOff) {
        this.lastStats = handOff.deliverer.stats();
        this.handOff = null;
        this.deliveringSinceMs = null;
      }
    }
    this.stopped = true;
    if (this.tickTimer !== null) clearTimeout(this.tickTimer);
    if (this.watchTimer !== null) clearInterval(this.watchTimer);
    await this.ticking;
    await this.settled();
    this.role = 'stopping';
    await this.lease?.release();
    this.role = 'standby';
    await this.transport.close();
  }
}
