// What a shard keeps of settled reservations, and the one place one leaves it: by age (at a
// res.expire, settledRetentionMs after it settled) or by count (at the settle that makes more
// than settledReservationsMax). A drop never touches quota use or SKU counters, so a dropped
// paid reservation stays counted in sold and in its buyer's quota. It also sheds the index
// garbage settling leaves behind, which no answer or snapshot may ever depend on.

import { assert } from './assert.js';
import { idempotencyKey, type ShardState } from './shard-state.js';

/**
 * Stale index entries tolerated beyond the live ones before a shedding pass. A pass costs
 * O(live + stale) and runs only once stale entries outnumber live ones by this much, so it
 * is O(1) amortized per settle, and each index stays within 2 * live + this many entries.
 */
const indexSlackCount = 1024;

/** Drops the oldest settled reservation: out of the table, with any idempotency key still naming it. */
function dropOldestSettled(state: ShardState): void {
  const r = state.settled.shift();
  assert(r !== undefined && r.status !== 'held', 'the settled queue holds a live reservation');
  state.reservations.delete(r);
  if (r.idemKey === null) return;
  const key = idempotencyKey(r.buyerId, r.sku.quotaScope, r.idemKey);
  if (state.idempotency.get(key)?.reservation !== r) return;
  state.idempotency.delete(key);
  // The key's queue entry is now stale: pruneIdempotency would skip it without a change, and
  // snapshots leave it out. A reserve+cancel loop with keys makes one per settle, so shed them.
  const queue = state.idempotencyQueue;
  if (queue.length > 2 * state.idempotency.size + indexSlackCount) {
    queue.retain((entry) => state.idempotency.get(entry.key) === entry);
  }
}

/** Drops the settled reservations past settledRetentionMs, oldest first; returns how many. */
export function pruneSettledByAge(state: ShardState, nowMs: number): number {
  const retentionMs = state.config.settledRetentionMs;
  let pruned = 0;
  for (let r = state.settled.peek(); r !== undefined && r.settledAtMs + retentionMs <= nowMs; r = state.settled.peek()) {
    dropOldestSettled(state);
    pruned++;
  }
  return pruned;
}

/**
 * Called by settle once it has queued a reservation. Past settledReservationsMax it drops
 * the oldest settled first (at least 1 is kept, so never the one just settled: the settling
 * command still answers it). Being part of the settle, the drop is replayed with it.
 */
export function boundSettled(state: ShardState): void {
  while (state.settled.length > state.config.settledReservationsMax) dropOldestSettled(state);
  // Pay and cancel leave the settled hold in the expiry heap (lazy deletion). Without time
  // passing, a reserve+cancel loop would grow the heap by one entry per loop.
  const heap = state.expiry;
  if (heap.size > 2 * state.liveCount + indexSlackCount) heap.retain((r) => r.status === 'held');
}
