// Ownership of one shard, as a lease in a JetStream KV bucket whose entries live `ttlMs`.
// Taking it is create-if-absent; keeping it is an update checked against the revision we
// last wrote (so a lease someone else took can never be renewed by us); a key nobody
// renews disappears after the TTL and another node may then take it. We trust our lease
// only for `ttlMs / 2` after the start of the last successful write: the other half is
// the margin against pauses and clock drift before anyone else can hold it.

import { randomBytes } from 'node:crypto';
import type { KV } from '@nats-io/kv';

/** The part of KV a lease uses (a test can stand in for it). */
export type LeaseKv = Pick<KV, 'create' | 'update' | 'get' | 'delete'>;

export class ShardLease {
  private revision = 0;
  private validUntilMs = 0;
  /** Start of the earliest renewal since the last confirmed one whose answer never came (or null). */
  private unconfirmedSinceMs: number | null = null;
  /**
   * What we write: the node's name and a random incarnation, so that we can tell our own
   * write from anyone else's when an answer was lost (a renewal that timed out here but
   * landed on the server), and a restarted node is never mistaken for its former self.
   */
  readonly owner: string;

  constructor(
    private readonly kv: LeaseKv,
    readonly key: string,
    nodeName: string,
    private readonly ttlMs: number,
    private readonly clock: () => number = () => performance.now(),
  ) {
    this.owner = `${nodeName}#${randomBytes(6).toString('hex')}`;
  }

  /** How much longer we may act as the owner (0 when not at all). */
  get validForMs(): number {
    return this.revision > 0 ? Math.max(0, this.validUntilMs - this.clock()) : 0;
  }

  /** Whether we may act as the owner right now. */
  get held(): boolean {
    return this.revision > 0 && this.clock() < this.validUntilMs;
  }

  /** Tries to take the lease; false when another node holds it. */
  async acquire(): Promise<boolean> {
    const started = this.clock();
    try {
      this.revision = await this.kv.create(this.key, this.owner);
    } catch {
      return false; // exists (wrong last sequence) or NATS unreachable: either way, not ours
    }
    this.validUntilMs = started + this.ttlMs / 2;
    return true;
  }

  /** Renews the lease; false when it is lost (taken by another, or not renewable in time). */
  async renew(): Promise<boolean> {
    if (this.revision === 0) return false;
    const started = this.clock();
    try {
      this.revision = await this.kv.update(this.key, this.owner, this.revision, Math.max(250, this.ttlMs / 4));
      this.validUntilMs = started + this.ttlMs / 2;
      this.unconfirmedSinceMs = null;
      return true;
    } catch (e) {
      // A network error leaves us owner only until validUntilMs. A revision conflict means
      // the key changed since our last write we know of: someone else took it, or an
      // earlier renewal of ours landed after we stopped waiting for its answer.
      if (/wrong last sequence|revision|sequence/i.test((e as Error).message)) await this.adoptOwnWrite();
      else this.unconfirmedSinceMs ??= started;
      return this.held;
    }
  }

  /**
   * After a revision conflict: if the key still holds our own incarnation, an unanswered
   * renewal of ours landed, and its revision is adopted, trusted from the start of the
   * earliest unanswered renewal (that write landed after it); anything else means the lease
   * is gone for good.
   */
  private async adoptOwnWrite(): Promise<void> {
    const since = this.unconfirmedSinceMs;
    let entry: Awaited<ReturnType<LeaseKv['get']>> = null;
    try {
      entry = await this.kv.get(this.key);
    } catch {
      return; // unknown: keep trusting the lease only until validUntilMs
    }
    if (since !== null && entry !== null && entry.operation === 'PUT' && entry.string() === this.owner) {
      this.revision = entry.revision;
      this.validUntilMs = Math.max(this.validUntilMs, since + this.ttlMs / 2);
      this.unconfirmedSinceMs = null;
      return;
    }
    this.revision = 0;
  }

  /** Gives the lease up early (graceful stop), so a standby need not wait for the TTL. */
  async release(): Promise<void> {
    const revision = this.revision;
    this.revision = 0;
    this.validUntilMs = 0;
    if (revision === 0) return;
    // Bounded: while NATS is down the delete would wait for the JetStream default (5 s) and
    // hold up the hand-over; if it does not land in time, the TTL ends the lease anyway.
    let timer: NodeJS.Timeout | undefined;
    const timeout = new Promise<void>((resolve) => { timer = setTimeout(resolve, Math.max(250, this.ttlMs / 4)); });
    const deleted = this.kv.delete(this.key, { previousSeq: revision }).catch(() => undefined);
    await Promise.race([deleted, timeout]);
    clearTimeout(timer);
  }
}
