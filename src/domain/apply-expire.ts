// The shard's housekeeping command: expire due holds (releasing their units and quota),
// forget idempotency keys past their window, and drop settled reservations past their
// retention (retention.ts). It is logged like any other command, so replay does exactly the
// same.

import type { Applied, DomainEvent } from './commands.js';
import { drawHold, settle } from './apply-reservation.js';
import { queueDueAtMs, queueTick } from './apply-drop.js';
import { pruneSettledByAge } from './retention.js';
import type { ShardState } from './shard-state.js';
import { answered } from './views.js';

/** The time the next hold falls due, or null when none is held (for the adapter's timer). */
export function nextExpiryAtMs(state: ShardState): number | null {
  const heap = state.expiry;
  for (;;) {
    const top = heap.peek();
    if (top === undefined) return null;
    if (top.status === 'held') return top.expiresAtMs;
    heap.pop(); // lazily drop settled entries; not a state change (the heap is an index)
  }
}

/** When a queue next has clock work (admission, a lapse, a reveal, a draw), or null. */
export function nextQueueDueAtMs(state: ShardState, nowMs: number): number | null {
  let due: number | null = null;
  for (const drop of state.drops.values()) {
    if (drop.queue === null) continue;
    const at = queueDueAtMs(state, drop, nowMs);
    if (at !== null && (due === null || at < due)) due = at;
  }
  return due;
}

/** When the shard's timer should next run a res.expire: the next hold due or the next queue work. */
export function nextDueAtMs(state: ShardState, nowMs: number): number | null {
  const hold = nextExpiryAtMs(state);
  const queue = nextQueueDueAtMs(state, nowMs);
  return hold === null ? queue : queue === null ? hold : Math.min(hold, queue);
}

/** Whether a res.expire would change anything now. */
export function housekeepingDue(state: ShardState, nowMs: number): boolean {
  const next = nextExpiryAtMs(state);
  if (next !== null && next <= nowMs) return true;
  if (state.drops.size > 0) {
    const queue = nextQueueDueAtMs(state, nowMs);
    if (queue !== null && queue <= nowMs) return true;
  }
  const idem = state.idempotencyQueue.peek();
  if (idem !== undefined && idem.reviewAtMs + state.config.idempotencyWindowMs <= nowMs) return true;
  const settled = state.settled.peek();
  return settled !== undefined && settled.settledAtMs + state.config.settledRetentionMs <= nowMs;
}

function expireHolds(state: ShardState, nowMs: number): { count: number; events: DomainEvent[] | null } {
  let count = 0;
  let events: DomainEvent[] | null = null;
  const heap = state.expiry;
  while (count < state.config.expireBatchMax) {
    const top = heap.peek();
    if (top === undefined || top.expiresAtMs > nowMs) break;
    heap.pop();
    if (top.status !== 'held') continue;
    const more = settle(state, top, 'expired', nowMs);
    if (more !== null) (events ??= []).push(...more);
    count++;
  }
  return { count, events };
}

/**
 * Forgets idempotency keys past their window. A key whose hold is still live, or settled
 * less than a window ago, goes to the back of the queue reviewed as of now: every entry is
 * pushed with the current time, so the queue stays in time order and one pass never sees
 * an entry twice. Returns the entries it touched (requeued or removed): both change state.
 */
function pruneIdempotency(state: ShardState, nowMs: number): number {
  const windowMs = state.config.idempotencyWindowMs;
  const queue = state.idempotencyQueue;
  let touched = 0;
  for (let entry = queue.peek(); entry !== undefined && entry.reviewAtMs + windowMs <= nowMs; entry = queue.peek()) {
    queue.shift();
    // A stale entry (its key was forgotten or replaced) is index garbage, not state: like the
    // expiry heap's lazy pops it is dropped without counting as a change.
    if (state.idempotency.get(entry.key) !== entry) continue;
    touched++;
    const r = entry.reservation;
    if (r.status === 'held' || r.settledAtMs + windowMs > nowMs) {
      entry.reviewAtMs = nowMs;
      queue.push(entry);
    } else {
      state.idempotency.delete(entry.key);
    }
  }
  return touched;
}

export function applyExpire(state: ShardState, nowMs: number): Applied {
  const expired = expireHolds(state, nowMs);
  let events = expired.events;
  let changed = expired.count;
  // After expiry: units it released let admission resume in the same turn.
  for (const drop of state.drops.values()) {
    if (drop.queue === null) continue;
    const tick = queueTick(state, drop, nowMs, drawHold);
    changed += tick.changed;
    if (tick.events !== null) (events ??= []).push(...tick.events);
  }
  const pruned = pruneIdempotency(state, nowMs) + pruneSettledByAge(state, nowMs);
  return answered({ ok: true, status: 'ok', expired: expired.count }, changed + pruned > 0, events);
}
