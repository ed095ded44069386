// Sends each command to the shard that owns it. A SKU lives in the shard of its routing
// key (its dropId, else itself); a gateway learns a SKU's drop from answers and caches it
// (a SKU's drop never changes, so the cache is never stale). On a miss it asks the SKU's
// home shard, which either serves the command or answers `moved` with the drop to follow.

import { routingKey, shardForKey, shardOfReservationId, type Command } from '../domain/index.js';
import type { CallOutcome, ShardTransport } from '../engine/shard-protocol.js';

const dropCacheMax = 200_000;

export class ShardRouter {
  /** sku -> dropId, for SKUs that belong to a drop. */
  private readonly drops = new Map<string, string>();

  constructor(readonly transport: ShardTransport) {}

  private ownerOf(sku: string): number {
    const dropId = this.drops.get(sku);
    return shardForKey(routingKey(sku, dropId ?? null), this.transport.shardCount);
  }

  private learn(sku: string, outcome: CallOutcome): void {
    // Only drops are cached: a SKU without one routes by its own name, the default.
    const dropId = outcome.ok ? (outcome.sku?.dropId ?? outcome.dropId) : outcome.code === 'moved' ? outcome.dropId : undefined;
    // A dropId that is not a string is not a shard's (over NATS, anyone may answer): never cached.
    if (typeof dropId !== 'string' || this.drops.get(sku) === dropId) return;
    if (this.drops.size >= dropCacheMax) this.drops.clear();
    this.drops.set(sku, dropId);
  }

  /** A command about one SKU (reserve, get, upsert, adjust). Follows one `moved`. */
  async callSku(sku: string, command: Command): Promise<CallOutcome> {
    const first = await this.transport.call(this.ownerOf(sku), command);
    this.learn(sku, first);
    if (first.ok || first.code !== 'moved' || typeof first.dropId !== 'string') return first;
    const second = await this.transport.call(shardForKey(routingKey(sku, first.dropId), this.transport.shardCount), command);
    this.learn(sku, second);
    return second;
  }

  /** Creates or updates a SKU; a new SKU in a drop is first linked at its home shard. */
  async upsertSku(command: Extract<Command, { t: 'sku.upsert' }>): Promise<CallOutcome> {
    const { sku, dropId } = command;
    if (dropId === undefined || dropId === null) return this.callSku(sku, command);
    const count = this.transport.shardCount;
    const home = shardForKey(routingKey(sku, null), count);
    const owner = shardForKey(routingKey(sku, dropId), count);
    if (home !== owner) {
      const linked = await this.transport.call(home, { t: 'sku.link', sku, dropId });
      if (!linked.ok) return linked;
    }
    const outcome = await this.transport.call(owner, command);
    this.learn(sku, outcome);
    return outcome;
  }

  /** A command about one drop: the drop's shard (where its SKUs live too). */
  callDrop(dropId: string, command: Command): Promise<CallOutcome> {
    return this.transport.call(shardForKey(routingKey('', dropId), this.transport.shardCount), command);
  }

  /** A command about one reservation: its id names the shard. */
  callReservation(id: string, command: Command): Promise<CallOutcome> | null {
    const shard = shardOfReservationId(id, this.transport.shardCount);
    return shard < 0 ? null : this.transport.call(shard, command);
  }
}
