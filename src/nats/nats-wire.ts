// What travels over NATS between gateways and shard nodes: msgpackr-encoded requests
// (a batch of commands, or a stats query) and their replies. One request carries many
// commands, because NATS request/reply costs far more per message than per byte.
//
// Both ends read what arrives as untrusted bytes: anything on a subject may have been sent
// by another version, a bug, or anyone with access to the NATS account. A request that is
// not one of ours is answered `malformed` (nothing of it applied); a reply that is not one of
// ours is read as no reply. Neither may throw where NATS delivers a message: an exception in
// a subscription callback closes the connection's reader, and the node with it.

import type { Command, DomainEvent } from '../domain/index.js';
import { decode, encode } from '../engine/codec.js';
import type { CallOutcome, ShardStats } from '../engine/shard-protocol.js';

export type NatsRequest = { k: 'batch'; cmds: Command[] } | { k: 'stats' };

export type NatsReply =
  | { k: 'batch'; outcomes: CallOutcome[] }
  | { k: 'stats'; stats: ShardStats | null }
  /** The node is not (or no longer) the shard's owner: nothing in the batch was applied. */
  | { k: 'unavailable'; message: string }
  /** The request could not be read as a batch or a stats query: nothing in it was applied. */
  | { k: 'malformed'; message: string };

const isRecord = (v: unknown): v is Record<string, unknown> => typeof v === 'object' && v !== null && !Array.isArray(v);

/** The bytes decoded, or why they could not be: the one place the readers below decode (it never throws). */
function decodeUntrusted(bytes: Uint8Array): { value: unknown } | { error: string } {
  try {
    return { value: decode<unknown>(bytes) };
  } catch (e) {
    return { error: `not msgpack: ${e instanceof Error ? e.message : String(e)}` };
  }
}

/** The bytes as a request, or why they are not one. Each command is an object; its fields are the shard's to check. */
export function readRequest(bytes: Uint8Array): NatsRequest | { error: string } {
  const read = decodeUntrusted(bytes);
  if ('error' in read) return read;
  const value = read.value;
  if (!isRecord(value)) return { error: 'a request is a map with k "batch" or "stats"' };
  if (value.k === 'stats') return { k: 'stats' };
  if (value.k !== 'batch') return { error: 'k must be "batch" or "stats"' };
  const cmds = value.cmds;
  if (!Array.isArray(cmds)) return { error: 'cmds must be an array of commands' };
  for (let i = 0; i < cmds.length; i++) {
    if (!isRecord(cmds[i])) return { error: `cmds[${i}] must be a map (a command)` };
    // A command is logged as it came: anything in it must be what JSON can hold (no bigint,
    // binary, date, extension type or cycle), or writing it could fail the shard's turn.
    if (!isPlainData(cmds[i], 0)) return { error: `cmds[${i}] holds a value that is not plain data (strings, finite numbers, booleans, null, lists and maps, ${plainDepthMax} deep at most)` };
  }
  return { k: 'batch', cmds: cmds as Command[] };
}

const plainDepthMax = 8;

/** Whether `v` is JSON's kind of data: strings, finite numbers, booleans, null, arrays and plain maps, at most plainDepthMax deep. */
function isPlainData(v: unknown, depth: number): boolean {
  switch (typeof v) {
    case 'string':
    case 'boolean':
      return true;
    case 'number':
      return Number.isFinite(v);
    case 'object': {
      if (v === null) return true;
      if (depth >= plainDepthMax) return false;
      if (Array.isArray(v)) {
        for (const x of v) if (!isPlainData(x, depth + 1)) return false;
        return true;
      }
      const proto = Object.getPrototypeOf(v) as unknown;
      if (proto !== Object.prototype && proto !== null) return false;
      for (const key in v) if (!isPlainData((v as Record<string, unknown>)[key], depth + 1)) return false;
      return true;
    }
    default:
      return false;
  }
}

/** A batch's outcomes from a reply, or why there are none (`count` outcomes, each a success with a status or a refusal with a code). */
export function readBatchReply(bytes: Uint8Array, count: number): CallOutcome[] | { error: string } {
  const read = decodeUntrusted(bytes);
  const reply = 'error' in read ? null : read.value;
  if (!isRecord(reply)) return { error: 'malformed reply' };
  if (reply.k === 'unavailable' || reply.k === 'malformed') {
    return { error: typeof reply.message === 'string' ? reply.message.slice(0, 200) : `${reply.k} reply` };
  }
  const outcomes = reply.outcomes;
  if (reply.k !== 'batch' || !Array.isArray(outcomes) || outcomes.length !== count) return { error: 'malformed reply' };
  for (const o of outcomes) {
    if (!isRecord(o) || !(o.ok === true ? typeof o.status === 'string' : o.ok === false && typeof o.code === 'string')) return { error: 'malformed reply' };
    if (o.json !== undefined && typeof o.json !== 'string') return { error: 'malformed reply' };
  }
  return outcomes as CallOutcome[];
}

/**
 * A stats reply's figures, or null (no owner, nothing hosted, or not a stats reply). Rebuilt
 * field by field: what feeds the gateway's gauges is a number where a number is expected, and
 * a SKU or queue row that is not one is left out.
 */
export function readStatsReply(bytes: Uint8Array): ShardStats | null {
  const read = decodeUntrusted(bytes);
  const reply = 'error' in read ? null : read.value;
  if (!isRecord(reply) || reply.k !== 'stats' || !isRecord(reply.stats)) return null;
  const s = reply.stats;
  const numbers = ['shardId', 'skuCount', 'liveReservations', 'reservations', 'walCommits', 'walRecords', 'walFsyncMsTotal', 'heapUsedBytes', 'snapshotFailures'] as const;
  for (const k of numbers) if (!isNumber(s[k])) return null;
  if (!Array.isArray(s.skus)) return null;
  const stats: ShardStats = {
    shardId: s.shardId as number, skuCount: s.skuCount as number, liveReservations: s.liveReservations as number,
    reservations: s.reservations as number, walCommits: s.walCommits as number, walRecords: s.walRecords as number,
    walFsyncMsTotal: s.walFsyncMsTotal as number, heapUsedBytes: s.heapUsedBytes as number, snapshotFailures: s.snapshotFailures as number,
    skus: s.skus.filter((k): k is ShardStats['skus'][number] => isRecord(k) && typeof k.sku === 'string'
      && isNumber(k.onHand) && isNumber(k.available) && isNumber(k.reserved) && isNumber(k.sold) && (k.refunded === undefined || isNumber(k.refunded))),
  };
  if (isNumber(s.logCommandsSinceSnapshot)) stats.logCommandsSinceSnapshot = s.logCommandsSinceSnapshot;
  if (isNumber(s.snapshotEveryCommands)) stats.snapshotEveryCommands = s.snapshotEveryCommands;
  if (Array.isArray(s.queues)) {
    const figures = ['entries', 'waiting', 'admitted', 'used', 'lapsed', 'won', 'lost'] as const;
    stats.queues = s.queues.filter((q): q is NonNullable<ShardStats['queues']>[number] => isRecord(q)
      && typeof q.dropId === 'string' && typeof q.mode === 'string' && figures.every((f) => isNumber(q[f])));
  }
  return stats;
}

const isNumber = (v: unknown): v is number => typeof v === 'number' && Number.isFinite(v);

/** What a shard node says in place of an answer that does not fit in the reply (its command did run). */
export const tooLargeRefusal: CallOutcome = {
  ok: false, code: 'shard_unavailable',
  message: 'the answer did not fit in one NATS message with the others of its batch (the servers\' max_payload); retry',
};

/**
 * A batch reply that fits in `maxBytes`: as it is when it does, else the outcomes in order
 * while they fit and tooLargeRefusal for each that does not (an outcome smaller than the
 * refusal is always kept). A reply NATS refuses would leave every command of the batch
 * unanswered. Only when even that smallest reply is over `maxBytes` (a server configured
 * with a tiny max_payload) is the result still too large.
 */
export function fitBatchReply(outcomes: CallOutcome[], maxBytes: number): Uint8Array {
  const whole = encode({ k: 'batch', outcomes } satisfies NatsReply);
  if (whole.length <= maxBytes) return whole;
  const refusalBytes = encode(tooLargeRefusal).length;
  const sizes = outcomes.map((o) => encode(o).length);
  // The reply's own framing (its map, keys and list header) is under 32 bytes.
  const budget = maxBytes - 32;
  // The smallest the rest of the reply can be: each outcome kept if no larger than a refusal.
  let restMin = 0;
  for (const n of sizes) restMin += Math.min(n, refusalBytes);
  let used = 0;
  const fitted: CallOutcome[] = [];
  for (let i = 0; i < outcomes.length; i++) {
    const n = sizes[i]!;
    restMin -= Math.min(n, refusalBytes);
    if (n <= refusalBytes || used + n + restMin <= budget) {
      fitted.push(outcomes[i]!);
      used += n;
    } else {
      fitted.push(tooLargeRefusal);
      used += refusalBytes;
    }
  }
  return encode({ k: 'batch', outcomes: fitted } satisfies NatsReply);
}

/** Stock events relayed by another node, those of our kind only (each a flat map of a string type and sku, and plain values). */
export function readRelayedEvents(bytes: Uint8Array): { node: string; events: DomainEvent[] } | null {
  const read = decodeUntrusted(bytes);
  const value = 'error' in read ? null : read.value;
  if (!isRecord(value) || typeof value.node !== 'string' || !Array.isArray(value.events)) return null;
  const events = value.events.filter((e): e is DomainEvent => isRecord(e) && typeof e.type === 'string' && typeof e.sku === 'string'
    && Object.values(e).every((v) => v === null || typeof v === 'string' || typeof v === 'boolean' || (typeof v === 'number' && Number.isFinite(v))));
  return { node: value.node, events };
}
