// One shard's mailbox on the gateway's side, shared by every transport (worker threads in
// this process, NATS to shard nodes): commands gather into batches (one message each way per
// batch), a batch goes at the end of the event-loop turn or once it is full, at most
// `batchesInFlightMax` batches wait for answers at a time (what gathers meanwhile goes as one
// when a batch comes back, so batches grow with load and a lone command still goes at once),
// and the commands in flight are bounded: past `mailboxMax` a call is answered `overloaded`
// at once instead of queueing without end.

import type { Command } from '../domain/index.js';
import type { CallOutcome } from './shard-protocol.js';

export type Resolve = (o: CallOutcome) => void;

export interface ShardMailboxOptions {
  /** Commands accepted and not yet answered, past which calls are refused `overloaded`. */
  mailboxMax: number;
  /** Commands per batch; a larger burst goes as several batches. */
  batchMax: number;
  /** Batches sent and not yet come back, past which commands wait here for one. */
  batchesInFlightMax: number;
  /** The `overloaded` refusal's message. */
  overloadedMessage: string;
  /**
   * Sends one batch; the transport calls batchReturned() when the shard's answer (or the
   * failure) for it arrives, and answered() once it has answered its commands.
   */
  send: (cmds: Command[], resolves: Resolve[]) => void;
  /**
   * Sends one command by itself, now (see callAlone); `resolve` answers it. Absent: callAlone
   * batches like call.
   */
  sendAlone?: (cmd: Command, resolve: Resolve) => void;
}

export class ShardMailbox {
  private pendingCmds: Command[] = [];
  private pendingResolves: Resolve[] = [];
  private flushScheduled = false;
  private batchesOut = 0;
  /** Commands accepted and not yet answered (pending here, in a batch, or held by the transport). */
  inFlight = 0;

  constructor(private readonly o: ShardMailboxOptions) {}

  /** Takes one command (refusing it `overloaded` when the mailbox is full). */
  call(cmd: Command, resolve: Resolve): void {
    if (this.inFlight >= this.o.mailboxMax) return resolve({ ok: false, code: 'overloaded', message: this.o.overloadedMessage });
    this.inFlight++;
    this.pendingCmds.push(cmd);
    this.pendingResolves.push(resolve);
    this.schedule();
  }

  /**
   * Takes one command whose answer is large (a page of a listing or of an order): it counts
   * toward the mailbox's bound and its depth like any, but goes by itself, at once, so that
   * pages never share one reply (over NATS, several would pass max_payload together).
   */
  callAlone(cmd: Command, resolve: Resolve): void {
    const sendAlone = this.o.sendAlone;
    if (sendAlone === undefined) return this.call(cmd, resolve);
    if (this.inFlight >= this.o.mailboxMax) return resolve({ ok: false, code: 'overloaded', message: this.o.overloadedMessage });
    this.inFlight++;
    sendAlone(cmd, (o) => {
      this.inFlight--;
      resolve(o);
    });
  }

  /**
   * Takes several commands as one unit (a batch that came over NATS): all of them are
   * accepted or, when the mailbox has no room for all, all refused `overloaded`; `done`
   * gets their outcomes in order.
   */
  callMany(cmds: readonly Command[], done: (outcomes: CallOutcome[]) => void): void {
    const outcomes: CallOutcome[] = new Array(cmds.length);
    if (cmds.length === 0) return done(outcomes);
    if (this.inFlight + cmds.length > this.o.mailboxMax) {
      outcomes.fill({ ok: false, code: 'overloaded', message: this.o.overloadedMessage });
      return done(outcomes);
    }
    let left = cmds.length;
    this.inFlight += cmds.length;
    for (let i = 0; i < cmds.length; i++) {
      this.pendingCmds.push(cmds[i]!);
      this.pendingResolves.push((o) => {
        outcomes[i] = o;
        if (--left === 0) done(outcomes);
      });
    }
    this.schedule();
  }

  private schedule(): void {
    if (this.pendingCmds.length >= this.o.batchMax) this.flush();
    else if (!this.flushScheduled && this.batchesOut < this.o.batchesInFlightMax) {
      this.flushScheduled = true;
      setImmediate(() => this.flush());
    }
  }

  /** Sends what is pending now (also past the in-flight bound: a full batch, a close). */
  flush(): void {
    this.flushScheduled = false;
    while (this.pendingCmds.length > 0) {
      const n = Math.min(this.pendingCmds.length, this.o.batchMax);
      const cmds = n === this.pendingCmds.length ? this.pendingCmds : this.pendingCmds.splice(0, n);
      const resolves = n === this.pendingResolves.length ? this.pendingResolves : this.pendingResolves.splice(0, n);
      if (cmds === this.pendingCmds) {
        this.pendingCmds = [];
        this.pendingResolves = [];
      }
      this.batchesOut++;
      this.o.send(cmds, resolves);
    }
  }

  /** A batch came back (answered or failed): what gathered meanwhile goes now, as one. */
  batchReturned(): void {
    this.batchesOut--;
    if (this.pendingCmds.length > 0 && !this.flushScheduled && this.batchesOut < this.o.batchesInFlightMax) this.flush();
  }

  /** `count` commands were answered: their room in the mailbox is free again. */
  answered(count: number): void {
    this.inFlight -= count;
  }

  /** Answers every pending (unsent) command with `outcome`; sent batches are the transport's to answer. */
  failPending(outcome: CallOutcome): void {
    const resolves = this.pendingResolves;
    this.pendingCmds = [];
    this.pendingResolves = [];
    this.inFlight -= resolves.length;
    for (const r of resolves) r(outcome);
  }

  /** Forgets every sent batch (their worker is gone; the transport answered their commands). */
  reset(): void {
    this.batchesOut = 0;
    this.inFlight = this.pendingResolves.length;
  }
}
