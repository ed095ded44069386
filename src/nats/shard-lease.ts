// Ownership of one shard, as a lease in a JetStream KV bucket whose entries live `ttlMs`.
// Taking it is create-if-absent; keeping it is an update checked against the revision we
// last wrote (so a lease someone else took can never be renewed by us); a key nobody
// renews disappears after the TTL and another node may then take it. We trust our lease
// only for `ttlMs / 2` after the start of the last successful write: the other half is
// the margin against pauses and clock drift before anyone else can hold it.

import type { KV } from '@nats-io/kv';

export class ShardLease {
  private revision = 0;
  private validUntilMs = 0;

  constructor(
    private readonly kv: KV,
    readonly key: string,
    private readonly owner: string,
    private readonly ttlMs: number,
    private readonly clock: () => number = () => performance.now(),
  ) {}

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
      return true;
    } catch (e) {
      // A revision conflict means someone else owns it now; give it up for good. A network
      // error leaves us owner only until validUntilMs.
      if (/wrong last sequence|revision|sequence/i.test((e as Error).message)) this.revision = 0;
      return this.held;
    }
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
