// The shards' ERP outboxes as the deliverer sees them (OutboxSource), read and acknowledged
// through the same transport as every other command: the worker threads of this process
// (embedded), or NATS requests to each shard's owner (the deployment's one deliverer). A
// transport that hosts only some shards simply has nothing pending for the others.

import type { OutboxSource, OutboxEvent } from './outbox-source.js';
import type { ShardTransport } from '../engine/shard-protocol.js';

interface HostingTransport extends ShardTransport {
  hosts?(shardId: number): boolean;
}

export class TransportOutbox implements OutboxSource {
  constructor(private readonly transport: HostingTransport, readonly shardIds: readonly number[]) {}

  async pending(shardId: number, afterSeq: number, max: number): Promise<OutboxEvent[]> {
    if (this.transport.hosts !== undefined && !this.transport.hosts(shardId)) return [];
    const o = await this.transport.call(shardId, { t: 'erp.pending', afterSeq, max, refunds: true });
    if (!o.ok) throw new Error(`shard ${shardId} outbox read failed: ${o.code}: ${o.message}`);
    return o.paid ?? [];
  }

  async ack(shardId: number, upToSeq: number): Promise<void> {
    const o = await this.transport.call(shardId, { t: 'erp.ack', upToSeq });
    if (!o.ok) throw new Error(`shard ${shardId} outbox ack failed: ${o.code}: ${o.message}`);
  }
}

/** The shards' stock event logs (ev.pending, ev.ack) as the events deliverer sees them. */
export class TransportStockOutbox implements OutboxSource {
  constructor(private readonly transport: HostingTransport, readonly shardIds: readonly number[]) {}

  async pending(shardId: number, afterSeq: number, max: number): Promise<OutboxEvent[]> {
    if (this.transport.hosts !== undefined && !this.transport.hosts(shardId)) return [];
    const o = await this.transport.call(shardId, { t: 'ev.pending', afterSeq, max });
    if (!o.ok) throw new Error(`shard ${shardId} stock event read failed: ${o.code}: ${o.message}`);
    return o.stockEvents ?? [];
  }

  async ack(shardId: number, upToSeq: number): Promise<void> {
    const o = await this.transport.call(shardId, { t: 'ev.ack', upToSeq });
    if (!o.ok) throw new Error(`shard ${shardId} stock event ack failed: ${o.code}: ${o.message}`);
  }
}
