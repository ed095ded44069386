// The gateway's side of NATS: commands for a shard go through a ShardMailbox (the same
// batching and bounds as the worker transport), each batch one request on
// `<prefix>.shard.<k>`, answered in one reply. A
// shard with no owner answers at once (NATS "no responders"); a lost or slow reply ends
// in shard_unavailable after requestTimeoutMs. It never resends a command by itself, so
// nothing is applied twice; clients retry with their idempotency key.

import type { NatsConnection } from '@nats-io/transport-node';
import type { Command } from '../domain/index.js';
import { encode } from '../engine/codec.js';
import type { CallOutcome, ShardStats, ShardTransport } from '../engine/shard-protocol.js';
import { ShardMailbox, type Resolve } from '../engine/shard-mailbox.js';
import { shardSubject } from './nats-connect.js';
import { readBatchReply, readStatsReply, type NatsRequest } from './nats-wire.js';

export interface NatsTransportOptions {
  shardCount: number;
  prefix: string;
  /** Commands in flight to one shard before new ones are refused `overloaded`. */
  mailboxMax?: number;
  batchMax?: number;
  /** Batches to one shard awaiting their reply before new commands wait to go as one. */
  batchesInFlightMax?: number;
  requestTimeoutMs?: number;
}

export class NatsTransport implements ShardTransport {
  private readonly mailboxes: ShardMailbox[];
  private closed = false;

  constructor(private readonly nc: NatsConnection, private readonly opts: NatsTransportOptions) {
    this.mailboxes = Array.from({ length: opts.shardCount }, (_, shardId) => new ShardMailbox({
      mailboxMax: opts.mailboxMax ?? 20_000,
      batchMax: opts.batchMax ?? 256,
      // A round trip over NATS is longer than the shard's pipeline is deep: several batches
      // in flight keep a shard node busy (its own mailbox batches them again).
      batchesInFlightMax: opts.batchesInFlightMax ?? 8,
      overloadedMessage: `shard ${shardId} has too many calls in flight; retry shortly`,
      send: (cmds, resolves) => this.send(shardId, cmds, resolves),
      sendAlone: (cmd, resolve) => this.sendAlone(shardId, cmd, resolve),
    }));
  }

  get shardCount(): number {
    return this.opts.shardCount;
  }

  call(shardId: number, command: Command): Promise<CallOutcome> {
    return new Promise((resolve) => {
      const mailbox = this.mailboxes[shardId];
      if (mailbox === undefined || this.closed) return resolve(unavailable(shardId, 'no such shard or transport closed'));
      if (pageReads.has(command.t)) mailbox.callAlone(command, resolve);
      else mailbox.call(command, resolve);
    });
  }

  /**
   * A read whose answer is a page (up to pageBytesMax, fields.ts) goes in a request of its
   * own: batched with others, several pages would pass max_payload together, and those cut
   * from the reply would answer shard_unavailable (five readers of a large order at once did).
   */
  private sendAlone(shardId: number, command: Command, resolve: Resolve): void {
    this.ask(shardId, [command], (outcomes, failure) => resolve(outcomes?.[0] ?? unavailable(shardId, failure)));
  }

  private send(shardId: number, cmds: Command[], resolves: Resolve[]): void {
    const mailbox = this.mailboxes[shardId]!;
    this.ask(shardId, cmds, (outcomes, failure) => {
      mailbox.batchReturned();
      mailbox.answered(resolves.length);
      for (let i = 0; i < resolves.length; i++) resolves[i]!(outcomes?.[i] ?? unavailable(shardId, failure));
    });
  }

  /** One request to the shard's owner: `settle` gets its outcomes, or null and why there are none. */
  private ask(shardId: number, cmds: Command[], settle: (outcomes: CallOutcome[] | null, failure: string) => void): void {
    const request: NatsRequest = { k: 'batch', cmds };
    this.nc.request(shardSubject(this.opts.prefix, shardId), encode(request), { timeout: this.opts.requestTimeoutMs ?? 1000 }).then(
      (msg) => {
        // Bytes that are not a reply of ours answer every command shard_unavailable (whether
        // any was applied is unknown, as after a lost reply), and never throw here.
        const read = readBatchReply(msg.data, cmds.length);
        if (Array.isArray(read)) settle(read, '');
        else settle(null, read.error);
      },
      (err: Error) => settle(null, err.message),
    );
  }

  inFlight(shardId: number): number {
    return this.mailboxes[shardId]?.inFlight ?? 0;
  }

  async stats(): Promise<ShardStats[]> {
    const request = encode({ k: 'stats' } satisfies NatsRequest);
    const replies = await Promise.all(
      Array.from({ length: this.opts.shardCount }, (_, k) =>
        this.nc.request(shardSubject(this.opts.prefix, k), request, { timeout: 1000 }).then(
          (m) => readStatsReply(m.data),
          () => null,
        ),
      ),
    );
    return replies.filter((r): r is ShardStats => r !== null);
  }

  /** The connection belongs to the caller; this only stops taking calls. */
  async close(): Promise<void> {
    this.closed = true;
    for (const mailbox of this.mailboxes) mailbox.flush();
  }
}

/** Commands whose answer is a page of a listing or of an order: sent one per request. */
const pageReads: ReadonlySet<string> = new Set<Command['t']>(['sku.list', 'drop.order']);

function unavailable(shardId: number, why: string): CallOutcome {
  return { ok: false, code: 'shard_unavailable', message: `shard ${shardId} did not answer (${why}); retry shortly` };
}
