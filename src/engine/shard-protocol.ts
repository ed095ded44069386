// Messages between a gateway and a shard, whatever carries them (a worker MessagePort
// in one process, NATS across hosts). A batch goes one way and its answers come back in
// the same order in one reply; nothing here is transport-specific.

import type { Command, DomainEvent, Outcome, QueueFigures } from '../domain/index.js';

/** Refusals a transport adds to the core's: the shard could not take the command. */
export type TransportRefusal = 'overloaded' | 'shard_unavailable';

export type CallOutcome = Outcome | { ok: false; code: TransportRefusal; message: string };

export interface SkuStats {
  sku: string;
  onHand: number;
  available: number;
  reserved: number;
  sold: number;
  /** Units of refunded reservations (absent from a node of an earlier version). */
  refunded?: number;
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
  /** Snapshots that failed since the worker started (an alarm: the shard goes on serving). */
  snapshotFailures: number;
  /**
   * Commands logged since the newest snapshot the shard counts on (what a restart would
   * replay), and the interval after which one is due (absent from a node of an earlier version).
   */
  logCommandsSinceSnapshot?: number;
  snapshotEveryCommands?: number;
  /** Drops with a queue (at most `skuStatsMax`): entries by state (absent from a node of an earlier version). */
  queues?: QueueFigures[];
}

/** One record of a shard's log as it travels to or from the replicated log. */
export interface LogRecord {
  lsn: number;
  payload: Uint8Array;
}

export type ToShard =
  | { k: 'batch'; id: number; cmds: Command[] }
  | { k: 'stats'; id: number }
  | { k: 'shutdown'; id: number }
  /** Replicated log, follower: apply these records (each the next lsn) and make them durable. */
  | { k: 'records'; id: number; records: LogRecord[] }
  /** Replicated log: start serving (turns run while Date.now() < leaseUntilMs). */
  | { k: 'serve'; id: number; leaseUntilMs: number }
  | { k: 'lease'; untilMs: number }
  /** Replicated log: records up to lsn are acknowledged by it (snapshots may cover them). */
  | { k: 'acked'; lsn: number }
  /** A snapshot now, of what is acknowledged (a node seeding an empty replicated log). */
  | { k: 'checkpoint'; id: number }
  /** A new owner's first record, with no command (see ShardRuntime.appendMarker). */
  | { k: 'mark'; id: number };

export type FromShard =
  | {
      k: 'ready'; shardId: number;
      recovery: { snapshotLsn: number; recordsReplayed: number; commandsReplayed: number; lastLsn: number; ms: number };
      /** The last lsn on disk and its record's crc32c (null when the log ends at a snapshot). */
      tail: { lsn: number; crc: number | null };
    }
  /**
   * A batch's answers, sent once the local log is durable up to `needLsn` (the newest record
   * when the turn was applied): a replicated shard's parent also holds them until the
   * replicated log has `needLsn`. `events` and `commitMs` ride on a turn's first reply only.
   */
  | { k: 'reply'; id: number; outcomes: CallOutcome[]; events: DomainEvent[] | null; commitMs: number; needLsn: number }
  /** Replicated log: a turn's record, sent as soon as it is made (before it is durable here). */
  | { k: 'record'; record: LogRecord }
  | { k: 'stats'; id: number; stats: ShardStats }
  | { k: 'closed'; id: number }
  | { k: 'log'; level: 'info' | 'warn' | 'error'; msg: string; data: Record<string, unknown> }
  | { k: 'applied'; id: number; lsn: number }
  | { k: 'serving'; id: number; lsn: number }
  | { k: 'checkpointed'; id: number; snapshot: { lsn: number; file: string; crc: number | null } | null }
  | { k: 'marked'; id: number; record: LogRecord }
  /** A new local snapshot (replicated mode: of acknowledged records only). */
  | { k: 'snapshot'; lsn: number; file: string; crc: number | null };

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
