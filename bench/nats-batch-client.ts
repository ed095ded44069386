// bench:nats part (c): reserve commands sent straight to the shard subjects, without HTTP,
// in the engine's own wire format (src/nats/nats-wire.ts, msgpackr via src/engine/codec.ts):
// request {k:'batch', cmds:[{t:'res.reserve', sku, buyerId, qty, nonce}]}, reply
// {k:'batch', outcomes}. Several batches per shard are kept in flight. This is what a
// gateway could reach at best on this machine, the HTTP layer taken away.

import { connect, type NatsConnection } from '@nats-io/transport-node';
import type { Command } from '../src/domain/index.js';
import { decode, encode } from '../src/engine/codec.js';
import type { CallOutcome } from '../src/engine/shard-protocol.js';
import type { NatsReply, NatsRequest } from '../src/nats/nats-wire.js';
import { shardSubject } from '../src/nats/nats-connect.js';

export interface BatchSettings {
  seconds: number;
  batchSize: number;
  /** Batches in flight per shard. */
  inFlightPerShard: number;
}

export interface BatchFigures {
  settings: BatchSettings;
  seconds: number;
  commands: number;
  commandsPerSec: number;
  created: number;
  createdPerSec: number;
  refusals: Record<string, number>;
  batches: number;
  /** Replies that were not a batch of outcomes (unavailable, malformed) or requests that failed. */
  failedBatches: number;
  batchLatencyMs: { p50: number; p99: number; max: number };
}

/** 8 characters of [0-9a-z], as the gateway's nonces are. */
function nonce(): string {
  return Math.floor(Math.random() * 36 ** 8).toString(36).padStart(8, '0');
}

function percentile(sorted: number[], p: number): number {
  if (sorted.length === 0) return 0;
  return sorted[Math.min(sorted.length - 1, Math.floor((p / 100) * sorted.length))]!;
}

export async function connectBench(url: string): Promise<NatsConnection> {
  return connect({ servers: url, noAsyncTraces: true, name: 'bench-nats-batch' });
}

/** Sends one batch; answers its outcomes, or null when the batch was not answered with outcomes. */
export async function sendBatch(nc: NatsConnection, subject: string, cmds: Command[], timeoutMs = 10_000): Promise<CallOutcome[] | null> {
  try {
    const msg = await nc.request(subject, encode({ k: 'batch', cmds } satisfies NatsRequest), { timeout: timeoutMs });
    const reply = decode<NatsReply>(msg.data);
    return reply.k === 'batch' && reply.outcomes.length === cmds.length ? reply.outcomes : null;
  } catch {
    return null;
  }
}

/**
 * Keeps `inFlightPerShard` batches of `batchSize` reserves in flight on every shard for
 * `seconds`, each reserve by a new buyer on one of that shard's SKUs.
 */
export async function runBatchLoad(nc: NatsConnection, prefix: string, skusByShard: string[][], buyerPrefix: string, s: BatchSettings): Promise<BatchFigures> {
  let commands = 0;
  let created = 0;
  let batches = 0;
  let failedBatches = 0;
  let buyer = 0;
  const refusals: Record<string, number> = {};
  const latencies: number[] = [];
  const started = performance.now();
  const deadline = started + s.seconds * 1000;
  const worker = async (shard: number, skus: string[]): Promise<void> => {
    const subject = shardSubject(prefix, shard);
    while (performance.now() < deadline) {
      const cmds: Command[] = new Array(s.batchSize);
      for (let i = 0; i < s.batchSize; i++) {
        const n = buyer++;
        cmds[i] = { t: 'res.reserve', sku: skus[n % skus.length]!, buyerId: `${buyerPrefix}${n}`, qty: 1, nonce: nonce() };
      }
      const t0 = performance.now();
      const outcomes = await sendBatch(nc, subject, cmds);
      latencies.push(performance.now() - t0);
      batches++;
      if (outcomes === null) {
        failedBatches++;
        continue;
      }
      commands += outcomes.length;
      for (const o of outcomes) {
        if (o.ok) created++;
        else refusals[o.code] = (refusals[o.code] ?? 0) + 1;
      }
    }
  };
  const workers: Promise<void>[] = [];
  for (const [shard, skus] of skusByShard.entries()) {
    if (skus.length === 0) continue;
    for (let k = 0; k < s.inFlightPerShard; k++) workers.push(worker(shard, skus));
  }
  await Promise.all(workers);
  const seconds = (performance.now() - started) / 1000;
  latencies.sort((a, b) => a - b);
  return {
    settings: s, seconds, commands, commandsPerSec: commands / seconds, created, createdPerSec: created / seconds, refusals,
    batches, failedBatches,
    batchLatencyMs: { p50: percentile(latencies, 50), p99: percentile(latencies, 99), max: latencies[latencies.length - 1] ?? 0 },
  };
}
