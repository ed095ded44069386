// The shards as this process hosts them, with one duty added for the ERP outbox: before the
// first command this process sends to a shard it serves (after every start of the shard
// here: at boot, or when this node takes it over), the shard's logged outbox mode is brought
// to what this process is configured with (FLASH_ERP_*), by an erp.mode that command waits
// for. It goes through the shard's normal write path, so it is logged (and replicated) like
// any command and replay never depends on configuration. A shard that only follows a log
// here gets no command, so it never writes one.

import type { Logger } from 'pino';
import type { Command } from '../domain/index.js';
import type { CallOutcome } from './shard-protocol.js';
import { WorkerTransport, type WorkerTransportOptions } from './worker-transport.js';

/** One start of a shard here, and its erp.mode: pending until the shard answers it. */
interface ModeEpoch {
  state: 'pending' | 'set';
  /** Resolves with null once the mode is logged, or with the refusal that stopped it. */
  ready: Promise<CallOutcome | null>;
}

export class ErpModeTransport extends WorkerTransport {
  private readonly modes = new Map<number, ModeEpoch>();

  constructor(
    opts: WorkerTransportOptions,
    /** Whether this process delivers to an ERP: paid orders then enter the outbox. */
    private readonly outboxEnabled: boolean,
    private readonly log: Pick<Logger, 'info' | 'warn'>,
    /** Whether this process delivers stock events (FLASH_EVENTS_WEBHOOK_URL): they are then recorded. */
    private readonly eventsEnabled = false,
  ) {
    super(opts);
  }

  override async startShard(shardId: number): Promise<void> {
    this.modes.delete(shardId);
    await super.startShard(shardId);
  }

  override async stopShard(shardId: number): Promise<void> {
    this.modes.delete(shardId);
    await super.stopShard(shardId);
  }

  override call(shardId: number, command: Command): Promise<CallOutcome> {
    const epoch = this.modes.get(shardId);
    if (epoch?.state === 'set' || command.t === 'erp.mode') return super.call(shardId, command);
    // The first commands of this start wait for the mode (in arrival order), so none is
    // applied before it and the mode never takes a mailbox slot one of them needs.
    const current = epoch ?? this.applyMode(shardId);
    return current.ready.then((refusal) => {
      if (this.modes.get(shardId) !== current && this.modes.has(shardId)) return this.call(shardId, command);
      return refusal ?? super.call(shardId, command);
    });
  }

  /** A NATS batch: like call(), its commands wait for the mode on a shard's first start. */
  override callMany(shardId: number, commands: readonly Command[]): Promise<CallOutcome[]> {
    const epoch = this.modes.get(shardId);
    if (epoch?.state === 'set') return super.callMany(shardId, commands);
    const current = epoch ?? this.applyMode(shardId);
    return current.ready.then((refusal) => {
      if (this.modes.get(shardId) !== current && this.modes.has(shardId)) return this.callMany(shardId, commands);
      return refusal !== null ? commands.map(() => refusal) : super.callMany(shardId, commands);
    });
  }

  private applyMode(shardId: number): ModeEpoch {
    const epoch: ModeEpoch = { state: 'pending', ready: Promise.resolve(null) };
    this.modes.set(shardId, epoch);
    epoch.ready = super.call(shardId, { t: 'erp.mode', enabled: this.outboxEnabled, events: this.eventsEnabled }).then((o) => {
      if (!o.ok) {
        // Not applied (the worker is restarting, or full): the commands waiting get the same
        // answer, and the next command tries again.
        if (this.modes.get(shardId) === epoch) this.modes.delete(shardId);
        return o;
      }
      epoch.state = 'set';
      const previous = o.erpMode?.previous ?? null;
      if (previous !== this.outboxEnabled) this.logChange(shardId, previous);
      const eventsPrevious = o.erpMode?.eventsPrevious ?? null;
      if (eventsPrevious !== this.eventsEnabled && (eventsPrevious !== null || this.eventsEnabled)) {
        this.log.info({ shard: shardId, eventsEnabled: this.eventsEnabled, previous: eventsPrevious }, `stock events ${this.eventsEnabled ? 'recorded for the events webhook' : 'no longer recorded (no FLASH_EVENTS_WEBHOOK_URL); those queued are kept'}`);
      }
      return null;
    });
    return epoch;
  }

  private logChange(shardId: number, previous: boolean | null): void {
    const data = { shard: shardId, outboxEnabled: this.outboxEnabled, previous };
    if (previous === null) {
      this.log.info(data, `ERP outbox ${this.outboxEnabled ? 'on' : 'off'} for this shard (its first logged mode)`);
    } else if (this.outboxEnabled) {
      this.log.warn(data, 'ERP outbox turned on by this node\'s FLASH_ERP_* settings: orders paid from now on are queued; those paid while it was off never will be');
    } else {
      this.log.warn(data, 'ERP outbox turned off by this node\'s settings (no FLASH_ERP_WEBHOOK_URL / FLASH_ERP_PG_URL): queued orders are kept for a deliverer; orders paid from now on are not queued');
    }
  }
}
