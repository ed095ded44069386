// The embedded transport: one worker thread per shard in this process. Each shard's commands
// go through a ShardMailbox (batches, at most two in flight: the depth of the shard's commit
// pipeline, and `overloaded` at once when full), and a crashed worker is restarted, its
// in-flight commands answered `shard_unavailable` rather than left hanging.

import { Worker } from 'node:worker_threads';
import { mkdirSync } from 'node:fs';
import { join } from 'node:path';
import type { Command, DomainEvent, ShardConfig } from '../domain/index.js';
import type { CallOutcome, FromShard, LogRecord, ShardObserver, ShardStats, ShardTransport, ToShard } from './shard-protocol.js';
import { ShardMailbox, type Resolve } from './shard-mailbox.js';
import type { ShardWorkerData } from './shard-worker.js';

export interface WorkerTransportOptions {
  dataDir: string;
  shardCount: number;
  /** Commands in flight to one shard before new ones are refused `overloaded`. */
  mailboxMax?: number;
  /** Commands per postMessage; a larger burst goes as several batches. */
  batchMax?: number;
  config?: Partial<ShardConfig>;
  snapshotEveryCommands?: number;
  /** Snapshots by a checkpointer thread per shard (default true); false: on the shard's thread. */
  checkpointer?: boolean;
  /** The share of one core (percent) a checkpoint's encoding and writing may take; default 100 when the checkpointer's priority is lowered, else 25. */
  checkpointCpuPercent?: number;
  /** The checkpointer thread's nice value (1..19, default 19; 0 leaves its priority as it is). */
  checkpointNice?: number;
  observer?: ShardObserver;
  restartDelayMsMax?: number;
  /** FLASH_BUYER_RPS, held in each shard for every gateway (0 = off). */
  buyerRps?: number;
  /**
   * The shards' logs are replicated (NATS shard nodes): a shard starts as a follower, serves
   * only after serveShard(), answers a turn only once the replicated log holds its record,
   * and a shard that crashes or is fenced off is not restarted here (`onShardLost` says so:
   * its owner decides, after checking this disk against the replicated log).
   */
  replicated?: boolean;
  onShardLost?: (shardId: number, reason: string) => void;
  /** Replicated: a new local snapshot of acknowledged records, which the node may ship. */
  onSnapshot?: (shardId: number, lsn: number, file: string, crc: number | null) => void;
}

/** Where a serving shard's records go before its turns are answered (the replicated log). */
export interface Replicator {
  /**
   * Appends one record; calls resolve in the order they were made. Rejects when this node may
   * no longer write the shard's log (fenced off by a newer owner) or cannot reach it in time.
   */
  append(record: LogRecord): Promise<void>;
}

/** Replies held until the replicated log holds the record of their turn (and all before it). */
interface Held {
  /** The batch's callers (none for a turn with no batch: a timer's expiry). */
  resolves: Resolve[];
  outcomes: CallOutcome[];
  events: DomainEvent[] | null;
  commitMs: number;
  needLsn: number;
}

/** Young-generation size of a shard worker (the same as node --max-semi-space-size=32). */
const youngGenerationMb = 96;

const unavailable = (shardId: number): CallOutcome => ({ ok: false, code: 'shard_unavailable', message: `shard ${shardId} is restarting; retry shortly` });

/**
 * Batches a shard has unanswered before more commands wait to go as one: as deep as its
 * commit pipeline (one turn in its fdatasync, the next one applied), so that under load
 * commands gather into a few large batches instead of many small ones.
 */
const batchesInFlightMax = 2;

class WorkerShard {
  private worker: Worker | null = null;
  private ready = false;
  private stopping = false;
  private nextId = 1;
  /** Crashes since the last successful start: drives the restart backoff. */
  private failures = 0;
  private everReady = false;
  private readonly mailbox: ShardMailbox;
  private readonly inflight = new Map<number, Resolve[]>();
  private readonly statsWaiters = new Map<number, (s: ShardStats | null) => void>();
  private closeWaiter: (() => void) | null = null;
  /** The restart after a crash, while it waits out its back-off. */
  private restartTimer: NodeJS.Timeout | null = null;
  /** Replicated log: where records go while serving (null: a follower, or not replicated). */
  private replicator: Replicator | null = null;
  private serving: boolean;
  private held: Held[] = [];
  private ackedLsn = 0;
  /** The disk's tail when the worker became ready. */
  tail: { lsn: number; crc: number | null } = { lsn: 0, crc: null };
  private readonly waiters = new Map<number, { resolve: (m: FromShard) => void; reject: (e: Error) => void }>();
  private readyWaiters: { resolve: () => void; reject: (e: Error) => void }[] = [];

  constructor(readonly shardId: number, private readonly opts: WorkerTransportOptions) {
    this.serving = opts.replicated !== true;
    this.mailbox = new ShardMailbox({
      mailboxMax: opts.mailboxMax ?? 20_000, batchMax: opts.batchMax ?? 1024, batchesInFlightMax,
      overloadedMessage: `shard ${shardId} mailbox is full; retry shortly`,
      send: (cmds, resolves) => this.send(cmds, resolves),
    });
  }

  /** Commands accepted and not yet answered. */
  get inFlightCount(): number {
    return this.mailbox.inFlight;
  }

  start(): Promise<void> {
    // A stopped shard never starts again: another node may own it now, and its log with it.
    if (this.stopping) return Promise.reject(new Error(`shard ${this.shardId} is stopped`));
    const dir = join(this.opts.dataDir, `shard-${this.shardId}`);
    mkdirSync(dir, { recursive: true });
    const data: ShardWorkerData = {
      dir, shardId: this.shardId, shardCount: this.opts.shardCount, config: this.opts.config,
      snapshotEveryCommands: this.opts.snapshotEveryCommands, buyerRps: this.opts.buyerRps, checkpointer: this.opts.checkpointer,
      checkpointCpuPercent: this.opts.checkpointCpuPercent, checkpointNice: this.opts.checkpointNice,
      replicated: this.opts.replicated === true,
    };
    // A larger young generation: a shard allocates a few short-lived objects per command, and
    // fewer scavenges over its large live set measurably raise its throughput.
    const worker = new Worker(new URL('./shard-worker.js', import.meta.url), {
      workerData: data, resourceLimits: { maxYoungGenerationSizeMb: youngGenerationMb },
    });
    this.worker = worker;
    worker.on('message', (m: FromShard) => this.onMessage(m));
    worker.on('error', (err) => this.onExit(`error: ${err.message}`, err));
    worker.on('exit', (code) => this.onExit(`exit code ${code}`));
    return new Promise((resolve, reject) => this.readyWaiters.push({ resolve, reject }));
  }

  call(cmd: Command, resolve: Resolve): void {
    if (!this.ready || !this.serving) return resolve(unavailable(this.shardId));
    this.mailbox.call(cmd, resolve);
  }

  callMany(cmds: readonly Command[], done: (outcomes: CallOutcome[]) => void): void {
    if (!this.ready || !this.serving) return done(cmds.map(() => unavailable(this.shardId)));
    this.mailbox.callMany(cmds, done);
  }

  private send(cmds: Command[], resolves: Resolve[]): void {
    if (this.worker === null) {
      // The worker ended after these were accepted: answered now, never left waiting.
      this.mailbox.batchReturned();
      return this.answer(resolves, cmds.map(() => unavailable(this.shardId)));
    }
    const id = this.nextId++;
    this.inflight.set(id, resolves);
    this.post({ k: 'batch', id, cmds });
  }

  private post(m: ToShard): void {
    this.worker?.postMessage(m);
  }

  private onMessage(m: FromShard): void {
    switch (m.k) {
      case 'ready':
        this.ready = true;
        this.everReady = true;
        this.failures = 0;
        this.tail = m.tail;
        this.ackedLsn = m.tail.lsn;
        // Which snapshot it started from and how much log it replayed: the operator's view of recovery.
        this.opts.observer?.onLog?.(this.shardId, 'info', 'shard recovered', { ...m.recovery });
        for (const w of this.readyWaiters.splice(0)) w.resolve();
        break;
      case 'record':
        void this.replicate(m.record);
        break;
      case 'reply': {
        let resolves: Resolve[] = [];
        if (m.id >= 0) {
          const batch = this.inflight.get(m.id);
          if (batch === undefined) break; // failed already (a fence, a crash)
          this.inflight.delete(m.id);
          this.mailbox.batchReturned();
          resolves = batch;
        }
        const held: Held = { resolves, outcomes: m.outcomes, events: m.events, commitMs: m.commitMs, needLsn: m.needLsn };
        if (this.opts.replicated === true && m.needLsn > this.ackedLsn) {
          // What this turn answers, and its stock events, may rest on records the replicated
          // log does not hold yet: nothing of it is shown before it does.
          this.held.push(held);
          break;
        }
        this.release(held);
        break;
      }
      case 'applied':
      case 'serving':
      case 'checkpointed':
      case 'marked':
        this.waiters.get(m.id)?.resolve(m);
        this.waiters.delete(m.id);
        break;
      case 'snapshot':
        this.opts.onSnapshot?.(this.shardId, m.lsn, m.file, m.crc);
        break;
      case 'stats':
        this.statsWaiters.get(m.id)?.(m.stats);
        this.statsWaiters.delete(m.id);
        break;
      case 'closed':
        this.closeWaiter?.();
        break;
      case 'log':
        this.opts.observer?.onLog?.(this.shardId, m.level, m.msg, m.data);
        break;
    }
  }

  /** A turn is durable wherever it must be: its events are observed and its callers answered. */
  private release(h: Held): void {
    if (h.events !== null) this.opts.observer?.onEvents?.(this.shardId, h.events);
    if (h.commitMs > 0) this.opts.observer?.onCommit?.(this.shardId, h.commitMs);
    if (h.resolves.length > 0) this.answer(h.resolves, h.outcomes);
  }

  private answer(resolves: Resolve[], outcomes: CallOutcome[]): void {
    this.mailbox.answered(resolves.length);
    for (let i = 0; i < resolves.length; i++) resolves[i]!(outcomes[i]!);
  }

  /**
   * Sends a turn's record to the replicated log; its turn (and later ones) wait for it.
   * Resolves once the log holds it; on failure the shard is fenced off (and it rejects).
   */
  private replicate(record: LogRecord): Promise<void> {
    const replicator = this.replicator;
    if (replicator === null) {
      // A turn that ran before a fence's terminate took effect (a timer's expiry, a queued
      // batch): its record is dropped, its turn was failed by the fence, and the refusal is
      // its caller's to see (serve() awaits it), never an unhandled rejection.
      this.fence(`record ${record.lsn} made while not serving`);
      const refused = Promise.reject(new Error('not serving'));
      refused.catch(() => undefined);
      return refused;
    }
    const appended = replicator.append(record).then(() => {
      if (this.replicator !== replicator) throw new Error('fenced off meanwhile');
      this.ackedLsn = record.lsn;
      this.post({ k: 'acked', lsn: record.lsn });
      while (this.held.length > 0 && this.held[0]!.needLsn <= this.ackedLsn) {
        this.release(this.held.shift()!);
      }
    }, (e: unknown) => {
      this.fence(e instanceof Error ? e.message : String(e));
      throw e;
    });
    appended.catch(() => undefined); // a turn's caller learns of it through fence()
    return appended;
  }

  /**
   * This node may no longer write the shard (a newer owner appended, or the log could not be
   * reached in time): nothing held is answered as done, and the worker stops at once; what is
   * on this disk past the replicated log is discarded when the shard is next followed.
   */
  fence(reason: string): void {
    if (this.stopping) return;
    this.stopping = true;
    this.replicator = null;
    this.serving = false;
    this.failInflight();
    void this.worker?.terminate();
    this.opts.onShardLost?.(this.shardId, `fenced: ${reason}`);
  }

  /** Replicated: applies records another node wrote (a follower); resolves with the new last lsn. */
  feed(records: LogRecord[]): Promise<number> {
    return this.request({ k: 'records', id: this.nextId++, records }).then((m) => (m.k === 'applied' ? m.lsn : -1));
  }

  /**
   * Replicated: starts serving, with records going to `replicator`; resolves with the last lsn
   * once a first record with no command is in the replicated log: its append fences off any
   * older owner that still has appends in flight, before this node answers anything.
   */
  async serve(replicator: Replicator, leaseUntilMs: number): Promise<number> {
    this.replicator = replicator;
    const served = await this.request({ k: 'serve', id: this.nextId++, leaseUntilMs });
    const marked = await this.request({ k: 'mark', id: this.nextId++ });
    if (served.k !== 'serving' || marked.k !== 'marked') throw new Error(`shard ${this.shardId} did not start serving`);
    await this.replicate(marked.record);
    this.serving = true;
    return marked.record.lsn;
  }

  lease(untilMs: number): void {
    this.post({ k: 'lease', untilMs });
  }

  confirm(lsn: number): void {
    this.ackedLsn = Math.max(this.ackedLsn, lsn);
    this.post({ k: 'acked', lsn });
  }

  /** A snapshot of what is acknowledged, now (or the newest one when nothing changed since). */
  checkpoint(): Promise<{ lsn: number; file: string; crc: number | null } | null> {
    return this.request({ k: 'checkpoint', id: this.nextId++ }).then((m) => (m.k === 'checkpointed' ? m.snapshot : null));
  }

  private request(m: Extract<ToShard, { id: number }>): Promise<FromShard> {
    if (this.worker === null) return Promise.reject(new Error(`shard ${this.shardId} has no worker`));
    return new Promise((resolve, reject) => {
      this.waiters.set(m.id, { resolve, reject });
      this.post(m);
    });
  }

  private onExit(reason: string, err?: Error): void {
    if (this.worker === null) return;
    this.worker = null;
    const wasReady = this.ready;
    this.ready = false;
    this.failInflight();
    if (this.opts.replicated === true) {
      // Not restarted here: the node checks this disk against the replicated log first.
      const ended = err ?? new Error(`shard ${this.shardId} worker ended: ${reason}`);
      for (const w of this.readyWaiters.splice(0)) w.reject(ended);
      for (const w of this.waiters.values()) w.reject(ended);
      this.waiters.clear();
      if (!this.stopping) this.opts.onShardLost?.(this.shardId, `worker ended: ${reason}`);
      return void this.closeWaiter?.();
    }
    const startError = err ?? new Error(`shard ${this.shardId} failed to start: ${reason}`);
    for (const w of this.readyWaiters.splice(0)) w.reject(startError);
    // A shard that never started (e.g. a corrupt WAL) is not retried: the engine refuses to run.
    if (!this.everReady || this.stopping) return void this.closeWaiter?.();
    if (!wasReady) this.failures++;
    this.opts.observer?.onRestart?.(this.shardId, reason);
    const delayMs = Math.min(this.opts.restartDelayMsMax ?? 5000, 50 * 2 ** Math.min(this.failures, 7));
    this.restartTimer = setTimeout(() => {
      this.restartTimer = null;
      void this.start().catch(() => undefined);
    }, delayMs);
    this.restartTimer.unref();
  }

  private failInflight(): void {
    const answer = unavailable(this.shardId);
    const sent = [...this.inflight.values(), ...this.held.map((h) => h.resolves)];
    this.inflight.clear();
    this.held = [];
    this.mailbox.reset();
    this.mailbox.failPending(answer);
    for (const resolves of sent) for (const r of resolves) r(answer);
    for (const w of this.statsWaiters.values()) w(null);
    this.statsWaiters.clear();
  }

  /** Ends the worker as a crash would; it is restarted and replays its log. */
  kill(): Promise<number> {
    return this.worker?.terminate() ?? Promise.resolve(0);
  }

  stats(): Promise<ShardStats | null> {
    if (!this.ready || this.worker === null) return Promise.resolve(null);
    const id = this.nextId++;
    return new Promise((resolve) => {
      this.statsWaiters.set(id, resolve);
      this.post({ k: 'stats', id });
    });
  }

  async close(): Promise<void> {
    this.stopping = true;
    // A crashed worker waiting to restart must not come back after its shard was stopped.
    if (this.restartTimer !== null) clearTimeout(this.restartTimer);
    this.restartTimer = null;
    this.mailbox.flush();
    if (this.worker === null) return;
    const worker = this.worker;
    await new Promise<void>((resolve) => {
      this.closeWaiter = resolve;
      this.post({ k: 'shutdown', id: this.nextId++ });
    });
    await worker.terminate();
  }
}

export class WorkerTransport implements ShardTransport {
  /** The shards this process hosts now (all of them in the embedded role). */
  private readonly shards = new Map<number, WorkerShard>();

  constructor(private readonly opts: WorkerTransportOptions) {}

  get shardCount(): number {
    return this.opts.shardCount;
  }

  /** Whether the shards' logs are replicated (NATS shard nodes). */
  get replicatedLog(): boolean {
    return this.opts.replicated === true;
  }

  /** Starts every shard of the deployment (the embedded role). */
  async start(): Promise<void> {
    await Promise.all(Array.from({ length: this.opts.shardCount }, (_, i) => this.startShard(i)));
  }

  /** Starts one shard's worker (recovering its log); resolves once it serves. */
  async startShard(shardId: number): Promise<void> {
    if (this.shards.has(shardId)) return;
    const shard = new WorkerShard(shardId, this.opts);
    this.shards.set(shardId, shard);
    try {
      await shard.start();
    } catch (e) {
      this.shards.delete(shardId);
      throw e;
    }
  }

  /** Drains, snapshots and stops one shard's worker. */
  async stopShard(shardId: number): Promise<void> {
    const shard = this.shards.get(shardId);
    if (shard === undefined) return;
    this.shards.delete(shardId);
    await shard.close();
  }

  hosts(shardId: number): boolean {
    return this.shards.has(shardId);
  }

  call(shardId: number, command: Command): Promise<CallOutcome> {
    const shard = this.shards.get(shardId);
    if (shard === undefined) return Promise.resolve(unavailable(shardId));
    return new Promise((resolve) => shard.call(command, resolve));
  }

  /** Several commands for one shard as one unit (see ShardMailbox.callMany), answered in order. */
  callMany(shardId: number, commands: readonly Command[]): Promise<CallOutcome[]> {
    const shard = this.shards.get(shardId);
    if (shard === undefined) return Promise.resolve(commands.map(() => unavailable(shardId)));
    return new Promise((resolve) => shard.callMany(commands, resolve));
  }

  inFlight(shardId: number): number {
    return this.shards.get(shardId)?.inFlightCount ?? 0;
  }

  async stats(): Promise<ShardStats[]> {
    const all = await Promise.all([...this.shards.values()].map((s) => s.stats()));
    return all.filter((s): s is ShardStats => s !== null);
  }

  private hosted(shardId: number): WorkerShard {
    const shard = this.shards.get(shardId);
    if (shard === undefined) throw new Error(`shard ${shardId} is not hosted here`);
    return shard;
  }

  /** Replicated: the last lsn on this node's disk for the shard, and its record's crc32c. */
  tailOf(shardId: number): { lsn: number; crc: number | null } {
    return this.hosted(shardId).tail;
  }

  /** Replicated, follower: applies records another node wrote; resolves with the new last lsn. */
  feedShard(shardId: number, records: LogRecord[]): Promise<number> {
    return this.hosted(shardId).feed(records);
  }

  /** Replicated: the shard serves from now on, its records going to `replicator`. */
  serveShard(shardId: number, replicator: Replicator, leaseUntilMs: number): Promise<number> {
    return this.hosted(shardId).serve(replicator, leaseUntilMs);
  }

  /** A snapshot of the shard's acknowledged state now (null when it has none and nothing to take). */
  checkpointShard(shardId: number): Promise<{ lsn: number; file: string; crc: number | null } | null> {
    return this.hosted(shardId).checkpoint();
  }

  /** Replicated: the node checked this disk up to `lsn` against the replicated log (snapshots may cover it). */
  confirmShard(shardId: number, lsn: number): void {
    this.hosted(shardId).confirm(lsn);
  }

  /** Replicated: the lease's new end (wall clock); no turn runs past it. */
  leaseShard(shardId: number, untilMs: number): void {
    this.shards.get(shardId)?.lease(untilMs);
  }

  /** Replicated: stops the shard at once, answering nothing held (see WorkerShard.fence). */
  fenceShard(shardId: number, reason: string): void {
    const shard = this.shards.get(shardId);
    if (shard === undefined) return;
    this.shards.delete(shardId);
    shard.fence(reason);
  }

  /** Fault injection for tests and drills: terminates one shard's worker like a crash. */
  killShard(shardId: number): Promise<number> {
    return this.shards.get(shardId)?.kill() ?? Promise.resolve(0);
  }

  async close(): Promise<void> {
    const all = [...this.shards.values()];
    this.shards.clear();
    await Promise.all(all.map((s) => s.close()));
  }
}
