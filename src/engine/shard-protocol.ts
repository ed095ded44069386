// Messages between a gateway and a shard, whatever carries them (a worker MessagePort
// in one process, NATS across hosts). A batch goes one way and its answers come back in
// the same order in one reply; nothing here is transport-specific.

import type { Command, DomainEvent, Outcome } from '../domain/index.js';

/** Refusals a transport adds to the core's: the shard could not take the command. */
export type TransportRefusal = 'overloaded' | 'shard_unavailable';

export type CallOutcome = Outcome | { ok: false; code: TransportRefusal; message: string };

export interface SkuStats {
  sku: string;
  onHand: number;
  available: number;
  reserved: number;
  sold: number;
}

export interface ShardStats {
  shardId: number;
  skuCount: number;
  /** At most `skuStatsMax` SKUs, to bound metric cardinality. */
  skus: SkuStats[];
  liveReservations: number;
  reservations: number;
  walCommits: number;
  walRecords: number;
  walFsyncMsTotal: number;
  heapUsedBytes: number;
}

export type ToShard =
  | { k: 'batch'; id: number; cmds: Command[] }
  | { k: 'stats'; id: number }
  | { k: 'shutdown'; id: number };

export type FromShard =
  | { k: 'ready'; shardId: number; recovery: { snapshotLsn: number; recordsReplayed: number; commandsReplayed: number; lastLsn: number; ms: number } }
  | { k: 'reply'; id: number; outcomes: Outcome[]; events: DomainEvent[] | null; commitMs: number }
  | { k: 'stats'; id: number; stats: ShardStats }
  | { k: 'closed'; id: number }
  | { k: 'log'; level: 'info' | 'warn' | 'error'; msg: string; data: Record<string, unknown> };

/** How a gateway reaches shards. The in-process and NATS transports both implement it. */
export interface ShardTransport {
  readonly shardCount: number;
  call(shardId: number, command: Command): Promise<CallOutcome>;
  stats(): Promise<ShardStats[]>;
  /** Commands sent and not yet answered, per shard (the mailbox depth). */
  inFlight(shardId: number): number;
  /** Drains, snapshots and stops every shard this transport owns. */
  close(): Promise<void>;
}

export interface ShardObserver {
  onEvents?(shardId: number, events: DomainEvent[]): void;
  onCommit?(shardId: number, commitMs: number): void;
  onRestart?(shardId: number, reason: string): void;
  onLog?(shardId: number, level: 'info' | 'warn' | 'error', msg: string, data: Record<string, unknown>): void;
}
