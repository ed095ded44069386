// The gateway's side of NATS: commands for a shard are grouped per event-loop turn (or
// up to batchMax) into one request on `<prefix>.shard.<k>`, answered in one reply. A
// shard with no owner answers at once (NATS "no responders"); a lost or slow reply ends
// in shard_unavailable after requestTimeoutMs. It never resends a command by itself, so
// nothing is applied twice; clients retry with their idempotency key.

import type { NatsConnection } from '@nats-io/transport-node';
import type { Command } from '../domain/index.js';
import { decode, encode } from '../engine/codec.js';
import type { CallOutcome, ShardStats, ShardTransport } from '../engine/shard-protocol.js';
import { shardSubject } from './nats-connect.js';
import type { NatsReply, NatsRequest } from './nats-wire.js';

export interface NatsTransportOptions {
  shardCount: number;
  prefix: string;
  /** Commands in flight to one shard before new ones are refused `overloaded`. */
  mailboxMax?: number;
  batchMax?: number;
  requestTimeoutMs?: number;
}

type Resolve = (o: CallOutcome) => void;

interface Pending {
  cmds: Command[];
  resolves: Resolve[];
  scheduled: boolean;
}

export class NatsTransport implements ShardTransport {
  private readonly pending: Pending[];
  private readonly inFlightCounts: number[];
  private closed = false;

  constructor(private readonly nc: NatsConnection, private readonly opts: NatsTransportOptions) {
    this.pending = Array.from({ length: opts.shardCount }, () => ({ cmds: [], resolves: [], scheduled: false }));
    this.inFlightCounts = new Array<number>(opts.shardCount).fill(0);
  }

  get shardCount(): number {
    return this.opts.shardCount;
  }

  call(shardId: number, command: Command): Promise<CallOutcome> {
    return new Promise((resolve) => this.enqueue(shardId, command, resolve));
  }

  private enqueue(shardId: number, command: Command, resolve: Resolve): void {
    const p = this.pending[shardId];
    if (p === undefined || this.closed) return resolve(unavailable(shardId, 'no such shard or transport closed'));
    if ((this.inFlightCounts[shardId] ?? 0) >= (this.opts.mailboxMax ?? 20_000)) {
      return resolve({ ok: false, code: 'overloaded', message: `shard ${shardId} has too many calls in flight; retry shortly` });
    }
    this.inFlightCounts[shardId]!++;
    p.cmds.push(command);
    p.resolves.push(resolve);
    if (p.cmds.length >= (this.opts.batchMax ?? 256)) this.flush(shardId);
    else if (!p.scheduled) {
      p.scheduled = true;
      setImmediate(() => this.flush(shardId));
    }
  }

  private flush(shardId: number): void {
    const p = this.pending[shardId]!;
    p.scheduled = false;
    if (p.cmds.length === 0) return;
    const { cmds, resolves } = p;
    p.cmds = [];
    p.resolves = [];
    const request: NatsRequest = { k: 'batch', cmds };
    const settle = (outcomes: CallOutcome[] | null, failure: string): void => {
      this.inFlightCounts[shardId]! -= resolves.length;
      for (let i = 0; i < resolves.length; i++) resolves[i]!(outcomes?.[i] ?? unavailable(shardId, failure));
    };
    this.nc.request(shardSubject(this.opts.prefix, shardId), encode(request), { timeout: this.opts.requestTimeoutMs ?? 1000 }).then(
      (msg) => {
        const reply = decode<NatsReply>(msg.data);
        if (reply.k === 'batch' && reply.outcomes.length === cmds.length) settle(reply.outcomes, '');
        else settle(null, reply.k === 'unavailable' ? reply.message : 'malformed reply');
      },
      (err: Error) => settle(null, err.message),
    );
  }

  inFlight(shardId: number): number {
    return this.inFlightCounts[shardId] ?? 0;
  }

  async stats(): Promise<ShardStats[]> {
    const request = encode({ k: 'stats' } satisfies NatsRequest);
    const replies = await Promise.all(
      Array.from({ length: this.opts.shardCount }, (_, k) =>
        this.nc.request(shardSubject(this.opts.prefix, k), request, { timeout: 1000 }).then(
          (m) => decode<NatsReply>(m.data),
          () => null,
        ),
      ),
    );
    return replies.flatMap((r) => (r !== null && r.k === 'stats' && r.stats !== null ? [r.stats] : []));
  }

  /** The connection belongs to the caller; this only stops taking calls. */
  async close(): Promise<void> {
    this.closed = true;
    for (let k = 0; k < this.opts.shardCount; k++) this.flush(k);
  }
}

function unavailable(shardId: number, why: string): CallOutcome {
  return { ok: false, code: 'shard_unavailable', message: `shard ${shardId} did not answer (${why}); retry shortly` };
}
