// One shard's durable state machine: the pure core plus its write-ahead log. A batch of
// commands is applied in order, the mutating ones are appended as ONE log record carrying
// the batch's nowMs, and one fdatasync makes them durable before any answer leaves. It
// never answers a command whose change is not on disk; any I/O error is thrown and must
// end the owning thread (memory is then ahead of the log, so it must be rebuilt by replay).

import {
  apply, createShardState, fromSnapshot, housekeepingDue, toSnapshot,
  type Applied, type Command, type ShardConfig, type ShardSnapshot, type ShardState,
} from '../domain/index.js';
import { assert } from '../domain/assert.js';
import { FileWal, type WalEvent } from '../wal/file-wal.js';
import { decode, encode } from './codec.js';
import { RateLimiter } from './rate-limiter.js';

export interface ShardRuntimeOptions {
  dir: string;
  shardId: number;
  shardCount: number;
  config?: Partial<ShardConfig>;
  /**
   * A snapshot is due after this many logged commands (default 1,000,000): the owner takes
   * it when idle (snapshotIfDue). At four times as many, execute takes it at once, busy or
   * not, to bound the log and so the replay time.
   */
  snapshotEveryCommands?: number;
  onWalEvent?: (e: WalEvent) => void;
  /**
   * Reserve calls per second one buyer may make to this shard (0 = off). Every reserve of a
   * buyer for a SKU or drop reaches this shard whatever gateway it came through, so the limit
   * holds for any number of gateways. A limited reserve is answered without touching the core.
   */
  buyerRps?: number;
}

/** A reserve refused by the shard's per-buyer limit: an adapter's answer, never the core's. */
function rateLimited(waitMs: number): Applied {
  const message = `too many reservation calls for this buyer; retry after ${Math.max(1, Math.ceil(waitMs / 1000))} s`;
  return { outcome: { ok: false, code: 'rate_limited', message, retryAfterMs: waitMs }, mutated: false, events: null };
}

// TEST-ONLY FAULT, never set in production or anywhere but test/history-faults.test.ts:
// FLASH_TEST_FAULT=ack_before_log makes execute() return (so the shard answers) BEFORE the
// turn's record is written, and writes it 20-50 ms later. A kill -9 in that window loses
// acknowledged changes: the planted bug the history checker must catch. Read once, when
// the module loads (at worker start).
const testFaultAckBeforeLog = process.env.FLASH_TEST_FAULT === 'ack_before_log';

/** A log record: the batch's clock and its mutating commands, in apply order. */
type WalRecord = [nowMs: number, commands: Command[]];

export interface RecoveryReport {
  snapshotLsn: number;
  recordsReplayed: number;
  commandsReplayed: number;
  lastLsn: number;
  ms: number;
}

export class ShardRuntime {
  private commandsSinceSnapshot = 0;
  private readonly snapshotEveryCommands: number;
  private readonly buyerLimiter: RateLimiter;

  private constructor(
    readonly state: ShardState,
    private readonly wal: FileWal,
    readonly recovery: RecoveryReport,
    snapshotEveryCommands: number,
    buyerRps: number,
  ) {
    this.snapshotEveryCommands = snapshotEveryCommands;
    this.buyerLimiter = new RateLimiter(buyerRps);
  }

  static open(opts: ShardRuntimeOptions): ShardRuntime {
    const started = performance.now();
    const wal = new FileWal({ dir: opts.dir, onEvent: opts.onWalEvent });
    let state = createShardState(opts.shardId, opts.shardCount, opts.config);
    let commandsReplayed = 0;
    const result = wal.recover(
      (snap) => {
        if (snap !== null) state = fromSnapshot(decode<ShardSnapshot>(snap.payload), state.config);
      },
      (lsn, payload) => {
        const [nowMs, commands] = decode<WalRecord>(payload);
        for (const c of commands) {
          const applied = apply(state, c, nowMs);
          assert(applied.mutated, `replay of record ${lsn} diverged: ${c.t} changed nothing`);
        }
        commandsReplayed += commands.length;
      },
    );
    const recovery: RecoveryReport = {
      snapshotLsn: result.snapshotLsn, recordsReplayed: result.recordsReplayed, commandsReplayed,
      lastLsn: result.lastLsn, ms: performance.now() - started,
    };
    const runtime = new ShardRuntime(state, wal, recovery, opts.snapshotEveryCommands ?? 1_000_000, opts.buyerRps ?? 0);
    runtime.commandsSinceSnapshot = commandsReplayed;
    return runtime;
  }

  /**
   * Applies a batch; returns after the mutating part is durable. Throws on I/O failure. A
   * reserve past its buyer's rate is answered `rate_limited` (with retryAfterMs) unapplied.
   */
  execute(commands: readonly Command[], nowMs: number): Applied[] {
    const results: Applied[] = new Array(commands.length);
    let logged: Command[] | null = null;
    const limiting = this.buyerLimiter.enabled;
    for (let i = 0; i < commands.length; i++) {
      const c = commands[i] as Command;
      if (limiting && c.t === 'res.reserve' && typeof c.buyerId === 'string') {
        const waitMs = this.buyerLimiter.take(c.buyerId, nowMs);
        if (waitMs > 0) {
          results[i] = rateLimited(waitMs);
          continue;
        }
      }
      const applied = apply(this.state, c, nowMs);
      results[i] = applied;
      if (applied.mutated) (logged ??= []).push(c);
    }
    if (logged !== null) {
      const record: WalRecord = [nowMs, logged];
      this.wal.append(encode(record));
      if (testFaultAckBeforeLog) this.commitLaterForTestFault();
      else this.wal.commit();
      this.commandsSinceSnapshot += logged.length;
      if (this.commandsSinceSnapshot >= 4 * this.snapshotEveryCommands) this.snapshot();
    }
    return results;
  }

  private testFaultTimer: NodeJS.Timeout | null = null;

  /** TEST-ONLY (FLASH_TEST_FAULT=ack_before_log): the pending records are written in order, later. */
  private commitLaterForTestFault(): void {
    if (this.testFaultTimer !== null) return;
    this.testFaultTimer = setTimeout(() => {
      this.testFaultTimer = null;
      this.wal.commit();
    }, 20 + Math.floor(Math.random() * 31));
  }

  /** Whether expiry or retention work is due; the caller then executes a res.expire. */
  housekeepingDue(nowMs: number): boolean {
    return housekeepingDue(this.state, nowMs);
  }

  /**
   * Takes the snapshot if one is due. A snapshot of a large shard stops it for a while
   * (about 1.5 s for a million reservations), so owners call this when no command waits.
   */
  snapshotIfDue(): boolean {
    if (this.commandsSinceSnapshot < this.snapshotEveryCommands) return false;
    this.snapshot();
    return true;
  }

  /** Writes a durable snapshot of the current (fully committed) state. */
  snapshot(): void {
    this.wal.commit();
    this.wal.writeSnapshot(this.wal.durableLsn, encode(toSnapshot(this.state)));
    this.commandsSinceSnapshot = 0;
  }

  get walStats(): FileWal['stats'] {
    return this.wal.stats;
  }

  close(): void {
    if (this.testFaultTimer !== null) clearTimeout(this.testFaultTimer); // TEST-ONLY fault: close() commits what is pending
    this.wal.close();
  }
}
