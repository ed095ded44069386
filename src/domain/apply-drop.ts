// Drops and their waiting rooms: create or update a drop, join its queue, read an entry,
// the drop and the fixed order; the queue's clock work (fixing a random order, running a
// draw, lapsing admissions, admitting at the set pace), which runs inside res.expire so
// that it is logged and replayed like expiry; and the admission check of a reserve, in the
// same turn as the hold it allows. The randomness (the seed and the secret) is chosen by
// the adapter and carried in drop.put; every order is a keyed hash computed here.

import { pageBytesMax, utf8Length } from './fields.js';
import type { Applied, Command, DomainEvent, DropView, EntryView, QueueInput } from './commands.js';
import { DropState, EntryState, QueueState, entryStateNames, type QueuePolicy } from './drop-state.js';
import { Limits, defaultChannel } from './fields.js';
import { nonceLength } from './routing.js';
import { fromHex, sha256, toHex, utf8 } from './sha256.js';
import type { ShardState, SkuState } from './shard-state.js';
import { answered, refused } from './views.js';

type DropPut = Extract<Command, { t: 'drop.put' }>;
type Join = Extract<Command, { t: 'q.join' }>;

/** Admission runs at most this often per queue; each step admits a tenth of a second's pace. */
export const admitStepMs = 100;

export const queueDefaults = { admitPerSecond: 100, admitSeconds: 300, randomizeSeconds: 0, qtyPerWinner: 1 } as const;

/**
 * Entries the queues of one shard take at most, together: about 115 bytes each in memory with
 * 16-character buyer ids, 300 with 128 (and as much again in the checkpointer's copy); past
 * it joins answer shard_full.
 */
export const queueEntriesMax = 5_000_000;

export const QueueLimits = {
  admitPerSecondMax: 100_000,
  admitSecondsMax: 86_400,
  randomizeSecondsMax: 7 * 86_400,
} as const;

/** The drop's SKUs that live in this shard (all of them: a drop lives in one shard). */
export function dropSkus(state: ShardState, dropId: string): SkuState[] {
  return state.dropSkus.get(dropId) ?? [];
}

function hasAvailable(skus: SkuState[]): boolean {
  for (const s of skus) if (s.available > 0) return true;
  return false;
}

/** No unit of the drop available or held: waiting buyers read `sold_out`. */
function soldOut(skus: SkuState[]): boolean {
  // A drop whose SKUs are not created yet is not sold out: there is nothing to sell yet.
  if (skus.length === 0) return false;
  for (const s of skus) if (s.available > 0 || s.reserved > 0) return false;
  return true;
}

// ---------------------------------------------------------------------------------------
// drop.put

/** The first problem with a queue body, or null (also the core's guard of drop.put). */
export function queueInputError(q: QueueInput | null | undefined): string | null {
  if (q === undefined || q === null) return null;
  if (typeof q !== 'object' || Array.isArray(q)) return 'queue must be an object or null';
  const int = (v: unknown, name: string, min: number, max: number): string | null => {
    if (v === undefined) return null;
    return typeof v === 'number' && Number.isSafeInteger(v) && v >= min && v <= max ? null : `queue.${name} must be an integer in ${min}..${max}`;
  };
  if (q.mode !== undefined && q.mode !== 'fifo' && q.mode !== 'random' && q.mode !== 'draw') return 'queue.mode must be fifo, random or draw';
  return int(q.opensAt, 'opensAt', 0, Limits.timeMsMax)
    ?? int(q.closesAt, 'closesAt', 0, Limits.timeMsMax)
    ?? int(q.randomizeSeconds, 'randomizeSeconds', 0, QueueLimits.randomizeSecondsMax)
    ?? int(q.admitPerSecond, 'admitPerSecond', 1, QueueLimits.admitPerSecondMax)
    ?? int(q.admitSeconds, 'admitSeconds', 1, QueueLimits.admitSecondsMax)
    ?? int(q.qtyPerWinner, 'qtyPerWinner', 1, Limits.qtyMax);
}

function policyFrom(q: QueueInput, before: QueuePolicy | null, nowMs: number): QueuePolicy | string {
  const mode = q.mode ?? before?.mode;
  if (mode === undefined) return 'queue.mode is required for a new queue';
  const p: QueuePolicy = {
    mode,
    opensAtMs: q.opensAt ?? before?.opensAtMs ?? nowMs,
    randomizeSeconds: q.randomizeSeconds ?? before?.randomizeSeconds ?? queueDefaults.randomizeSeconds,
    admitPerSecond: q.admitPerSecond ?? before?.admitPerSecond ?? queueDefaults.admitPerSecond,
    admitSeconds: q.admitSeconds ?? before?.admitSeconds ?? queueDefaults.admitSeconds,
    closesAtMs: q.closesAt ?? before?.closesAtMs ?? 0,
    qtyPerWinner: q.qtyPerWinner ?? before?.qtyPerWinner ?? queueDefaults.qtyPerWinner,
  };
  if (mode === 'draw') {
    if (p.closesAtMs === 0) return 'queue.closesAt is required for a draw';
    if (p.closesAtMs <= p.opensAtMs) return 'queue.closesAt must be after queue.opensAt';
  }
  return p;
}

export function applyDropPut(state: ShardState, c: DropPut, nowMs: number): Applied {
  const seed = fromHex(c.seed);
  if (seed === null || seed.length !== 32) return refused('invalid_request', 'seed must be 32 bytes of hex');
  if (fromHex(c.secret)?.length !== 16) return refused('invalid_request', 'secret must be 16 bytes of hex');
  const existing = state.drops.get(c.dropId);
  const q = existing?.queue ?? null;
  let policy: QueuePolicy | null = q?.policy ?? null;
  if (c.queue === null) {
    if (q !== null && nowMs >= q.policy.opensAtMs) return refused('queue_locked', `the queue of drop ${c.dropId} has opened; it cannot be removed`);
    policy = null;
  } else if (c.queue !== undefined) {
    const next = policyFrom(c.queue, q?.policy ?? null, nowMs);
    if (typeof next === 'string') return refused('invalid_request', next);
    if (q !== null && nowMs >= q.policy.opensAtMs) {
      const p = q.policy;
      const locked = next.mode !== p.mode ? 'mode' : next.opensAtMs !== p.opensAtMs ? 'opensAt'
        : next.randomizeSeconds !== p.randomizeSeconds ? 'randomizeSeconds' : next.closesAtMs !== p.closesAtMs ? 'closesAt'
          : next.qtyPerWinner !== p.qtyPerWinner ? 'qtyPerWinner' : null;
      if (locked !== null) return refused('queue_locked', `the queue of drop ${c.dropId} has opened: ${locked} cannot change (admitPerSecond and admitSeconds can)`);
    }
    policy = next;
  }
  const drop = existing ?? new DropState(c.dropId, nowMs, nowMs);
  if (existing === undefined) state.drops.set(c.dropId, drop);
  drop.updatedAtMs = nowMs;
  if (policy === null) drop.queue = null;
  else if (q === null) drop.queue = new QueueState(policy, c.seed.toLowerCase(), toHex(sha256(seed)), c.secret.toLowerCase());
  else {
    // Before opening the queue has no entry (joining is refused until then): any change is safe.
    q.policy = policy;
    if (policy.mode === 'fifo') q.fixed = true;
    else if (q.count === 0) q.fixed = false;
  }
  return answered({ ok: true, status: existing === undefined ? 'created' : 'ok', drop: dropView(state, drop, nowMs) }, true);
}

// ---------------------------------------------------------------------------------------
// Reads.

export function dropView(state: ShardState, drop: DropState, nowMs: number): DropView {
  const q = drop.queue;
  const view: DropView = {
    dropId: drop.dropId,
    skus: dropSkus(state, drop.dropId).map((s) => s.sku),
    queue: null,
    createdAt: drop.createdAtMs,
    updatedAt: drop.updatedAtMs,
  };
  if (q !== null) {
    const p = q.policy;
    const admittedNow = countAdmittedNow(q, nowMs);
    view.queue = {
      mode: p.mode,
      opensAt: p.opensAtMs,
      randomizeSeconds: p.randomizeSeconds,
      admitPerSecond: p.admitPerSecond,
      admitSeconds: p.admitSeconds,
      ...(p.mode === 'draw' ? { closesAt: p.closesAtMs, qtyPerWinner: p.qtyPerWinner } : {}),
      entries: q.count,
      waiting: q.counts[EntryState.waiting]!,
      admitted: admittedNow,
      used: q.counts[EntryState.used]!,
      lapsed: q.counts[EntryState.lapsed]! + (q.counts[EntryState.admitted]! - admittedNow),
      ...(p.mode === 'draw' ? { won: q.counts[EntryState.won]!, lost: drawLost(state, drop, q) } : {}),
      seedSha256: q.seedSha256,
      ...(q.revealed ? { seed: q.seedHex } : {}),
    };
  }
  return view;
}

/**
 * Admitted entries whose admission has not run out by `nowMs`: the stored count less those
 * past due that the clock has not lapsed yet. Those are found by walking only the heap's
 * nodes due by now (below a node due later, every node is due later), so the cost is the
 * number past due (none or few between two ticks), never the number admitted.
 */
function countAdmittedNow(q: QueueState, nowMs: number): number {
  let n = q.counts[EntryState.admitted]!;
  if (n === 0) return 0;
  const until = q.admittedUntil.data;
  const states = q.states.data;
  const heap = q.admittedHeap;
  const stack = heap.length > 0 ? [0] : [];
  while (stack.length > 0) {
    const k = stack.pop()!;
    const i = heap[k]!;
    if (until[i]! > nowMs) continue;
    if (states[i] === EntryState.admitted) n--;
    const l = 2 * k + 1;
    if (l < heap.length) stack.push(l);
    if (l + 1 < heap.length) stack.push(l + 1);
  }
  return n;
}

export function entryView(state: ShardState, drop: DropState, q: QueueState, i: number, nowMs: number): EntryView {
  const stored = q.states.data[i]!;
  let name: EntryView['state'] = entryStateNames[stored]!;
  if (stored === EntryState.admitted && q.admittedUntil.data[i]! <= nowMs) name = 'lapsed';
  else if (stored === EntryState.entered && q.drawn && (q.rank.data[i]! < q.drawCursor || !drawCanGoOn(state, drop, q))) name = 'lost';
  else if (stored === EntryState.waiting && soldOut(dropSkus(state, drop.dropId))) name = 'sold_out';
  const view: EntryView = { dropId: drop.dropId, buyerId: q.buyers[i]!, state: name, joinedAt: q.joinedAt.data[i]! };
  const rank = q.rank.data[i]!;
  if (stored === EntryState.waiting && rank >= 0) {
    view.position = rank - q.admitHead + 1;
    view.etaSeconds = Math.ceil(view.position / q.policy.admitPerSecond);
  }
  if (stored === EntryState.admitted || stored === EntryState.used || stored === EntryState.lapsed) {
    view.admittedAt = q.admittedAt.data[i]!;
    view.admittedUntil = q.admittedUntil.data[i]!;
  }
  const hold = q.holds.get(i);
  if (hold !== undefined) view.reservationId = hold;
  return view;
}

function findDrop(state: ShardState, dropId: string): DropState | Applied {
  return state.drops.get(dropId) ?? refused('unknown_drop', `no drop named ${dropId}`);
}

export function applyDropGet(state: ShardState, dropId: string, nowMs: number): Applied {
  const drop = findDrop(state, dropId);
  if (!(drop instanceof DropState)) return drop;
  return answered({ ok: true, status: 'ok', drop: dropView(state, drop, nowMs) }, false);
}

export function applyEntryGet(state: ShardState, dropId: string, buyerId: string, nowMs: number): Applied {
  const drop = state.drops.get(dropId);
  // No drop, no queue or no entry: the same answer (shared/API.md names only unknown_entry here).
  if (drop === undefined) return refused('unknown_entry', `no drop named ${dropId}, so no entry of buyer ${buyerId}`);
  const q = drop.queue;
  const i = q?.index.get(buyerId);
  if (q === null || i === undefined) return refused('unknown_entry', `buyer ${buyerId} has no entry in the queue of drop ${dropId}`);
  return answered({ ok: true, status: 'ok', entry: entryView(state, drop, q, i, nowMs) }, false);
}

/** The fixed order as buyer ids (the gateway publishes their sha256), from `offset`, at most `limit` (and about pageBytesMax bytes). */
export function applyOrderGet(state: ShardState, dropId: string, offset: number, limit: number): Applied {
  const drop = findDrop(state, dropId);
  if (!(drop instanceof DropState)) return drop;
  const q = drop.queue;
  if (q === null || !q.revealed) return refused('order_not_fixed', `the order of drop ${dropId} is not fixed yet (random: at opensAt + randomizeSeconds; draw: once it ran; fifo: never published)`);
  const end = Math.min(q.ranked, offset + limit);
  const buyers: string[] = [];
  // A page also ends at pageBytesMax bytes of buyer ids as UTF-8 (at least one id): an
  // answer must fit in one NATS message (1 MiB by default), and 100,000 ids of up to 128
  // characters would not. The gateway reads on from where a page ended.
  let bytes = 0;
  for (let r = offset; r < end && (buyers.length === 0 || bytes < pageBytesMax); r++) {
    const buyer = q.buyers[q.order.data[r]!]!;
    buyers.push(buyer);
    bytes += utf8Length(buyer) + 8;
  }
  return answered({ ok: true, status: 'ok', order: { dropId, seed: q.seedHex, total: q.ranked, offset, buyers } }, false);
}

// ---------------------------------------------------------------------------------------
// Joining.

export function applyJoin(state: ShardState, c: Join, nowMs: number): Applied {
  const drop = findDrop(state, c.dropId);
  if (!(drop instanceof DropState)) return drop;
  const q = drop.queue;
  if (q === null) return refused('queue_not_open', `drop ${c.dropId} has no queue`);
  const known = q.index.get(c.buyerId);
  if (known !== undefined) return answered({ ok: true, status: 'ok', entry: entryView(state, drop, q, known, nowMs), replayed: true }, false);
  const p = q.policy;
  let entries = 0;
  for (const d of state.drops.values()) entries += d.queue?.count ?? 0;
  if (entries >= queueEntriesMax) return refused('shard_full', `the queues of this shard hold their maximum of ${queueEntriesMax} entries`);
  if (nowMs < p.opensAtMs) return refused('queue_not_open', `the queue of drop ${c.dropId} opens at ${p.opensAtMs}`);
  if (p.mode === 'draw' && nowMs >= p.closesAtMs) return refused('queue_closed', `the draw of drop ${c.dropId} closed at ${p.closesAtMs}`);
  for (const s of dropSkus(state, c.dropId)) {
    if (s.minAccountAgeSeconds > 0) {
      const created = c.accountCreatedAtMs;
      if (created === undefined || nowMs - created < s.minAccountAgeSeconds * 1000) {
        return refused('buyer_blocked', `sku ${s.sku} of drop ${c.dropId} requires an account older than ${s.minAccountAgeSeconds} s`);
      }
    }
    if (s.minPastOrders > 0 && (c.pastOrders === undefined || c.pastOrders < s.minPastOrders)) {
      return refused('buyer_blocked', `sku ${s.sku} of drop ${c.dropId} requires at least ${s.minPastOrders} past orders`);
    }
  }
  // A random order due to be fixed is fixed first: a later joiner goes behind it.
  if (p.mode === 'random' && !q.fixed && nowMs >= q.revealAtMs) fixOrder(q);
  const i = q.addEntry(c.buyerId, nowMs, p.mode === 'draw' ? EntryState.entered : EntryState.waiting);
  if (c.channel !== undefined && c.channel !== defaultChannel) q.channels.set(i, c.channel);
  if (p.mode !== 'fifo') q.key.data[i] = orderKey(q, c.buyerId);
  if (q.fixed) q.appendRank(i);
  return answered({ ok: true, status: 'created', entry: entryView(state, drop, q, i, nowMs) }, true);
}

/** The first 48 bits of HMAC-SHA256(seed, buyerId), exact in a double. */
function orderKey(q: QueueState, buyerId: string): number {
  const d = q.orderHmac.digest(utf8(buyerId));
  return ((d[0]! << 8) | d[1]!) * 2 ** 32 + (((d[2]! << 24) | (d[3]! << 16) | (d[4]! << 8) | d[5]!) >>> 0);
}

/** Byte order of the full HMACs, for the rare entries whose first 48 bits tie. */
function compareFull(q: QueueState, a: number, b: number): number {
  const da = q.orderHmac.digest(utf8(q.buyers[a]!));
  const db = q.orderHmac.digest(utf8(q.buyers[b]!));
  for (let k = 0; k < 32; k++) if (da[k] !== db[k]) return da[k]! - db[k]!;
  return 0;
}

/** Orders every unranked entry by its keyed hash and ranks them (a random queue at its reveal, a draw at close). */
function fixOrder(q: QueueState): void {
  const unranked: number[] = [];
  const rank = q.rank.data;
  for (let i = 0; i < q.count; i++) if (rank[i] === -1) unranked.push(i);
  const idx = Int32Array.from(unranked);
  const key = q.key.data;
  idx.sort((a, b) => key[a]! - key[b]! || compareFull(q, a, b));
  for (const i of idx) q.appendRank(i);
  q.fixed = true;
}

// ---------------------------------------------------------------------------------------
// Admission, checked by a reserve in the same turn as its hold.

/** Why this buyer may not reserve a SKU of this drop now, or null. */
export function admissionRefusal(state: ShardState, dropId: string, buyerId: string, nowMs: number): Applied | null {
  const q = state.drops.get(dropId)?.queue ?? null;
  if (q === null) return null;
  if (q.policy.mode === 'draw') return refused('not_admitted', `drop ${dropId} is a draw: its holds are made by the draw`);
  const i = q.index.get(buyerId);
  if (i === undefined) return refused('not_admitted', `buyer ${buyerId} has not joined the queue of drop ${dropId}`);
  const st = q.states.data[i]!;
  if (st === EntryState.admitted && q.admittedUntil.data[i]! > nowMs) return null;
  const why = st === EntryState.waiting ? 'is still waiting' : st === EntryState.used ? 'has used its admission'
    : 'was admitted, but its admission has run out';
  return refused('not_admitted', `buyer ${buyerId} ${why} in the queue of drop ${dropId}`);
}

/** After a reserve that admissionRefusal let through made its hold: the entry is used. */
export function markUsed(state: ShardState, dropId: string, buyerId: string, reservationId: string): void {
  const q = state.drops.get(dropId)?.queue ?? null;
  if (q === null) return;
  const i = q.index.get(buyerId)!;
  q.setState(i, EntryState.used);
  q.holds.set(i, reservationId);
}

// ---------------------------------------------------------------------------------------
// The clock's work, inside res.expire.

/** A hold for a draw's winner: made by the reserve path (injected, to avoid an import cycle). */
export type MakeHold = (state: ShardState, s: SkuState, buyerId: string, qty: number, channel: string, nonce: string, nowMs: number) => { id: string; events: DomainEvent[] | null } | null;

/** When this queue next has clock work, or null (none until something else changes). */
export function queueDueAtMs(state: ShardState, drop: DropState, nowMs: number): number | null {
  const q = drop.queue;
  if (q === null) return null;
  const p = q.policy;
  let due = Number.POSITIVE_INFINITY;
  if (p.mode !== 'fifo' && !q.fixed && !q.drawn) due = Math.min(due, q.revealAtMs);
  if (p.mode === 'draw' && q.drawn && drawCanGoOn(state, drop, q)) due = Math.min(due, nowMs);
  const top = q.peekAdmitted();
  if (top >= 0) due = Math.min(due, q.admittedUntil.data[top]!);
  if (p.mode !== 'draw' && q.fixed && q.admitHead < q.ranked && hasAvailable(dropSkus(state, drop.dropId))) {
    due = Math.min(due, roomAt(q, Math.max(p.opensAtMs, q.lastAdmitMs + admitStepMs)));
  }
  return due === Number.POSITIVE_INFINITY ? null : due;
}

/**
 * The first moment from `at` on when the pace allows another admission: when enough of the
 * last second's admissions have left the window (the pace may have been lowered since).
 */
function roomAt(q: QueueState, at: number): number {
  const rate = q.policy.admitPerSecond;
  let used = 0;
  for (const [t, n] of q.window) if (t > at - 1000) used += n;
  if (rate - used > 0) return at;
  for (const [t, n] of q.window) {
    if (t <= at - 1000) continue;
    used -= n;
    if (rate - used > 0) return t + 1000;
  }
  return at;
}

/** Admissions the pace still allows in the second ending at `nowMs`. */
function windowRoom(q: QueueState, nowMs: number): number {
  let used = 0;
  for (const [t, n] of q.window) if (t > nowMs - 1000) used += n;
  return q.policy.admitPerSecond - used;
}

/** Does the queue's clock work due at `nowMs`; returns how many entries it changed (0: nothing). */
export function queueTick(state: ShardState, drop: DropState, nowMs: number, makeHold: MakeHold): { changed: number; events: DomainEvent[] | null } {
  const q = drop.queue;
  if (q === null) return { changed: 0, events: null };
  const p = q.policy;
  let changed = 0;
  let events: DomainEvent[] | null = null;
  if (p.mode === 'random' && !q.fixed && nowMs >= q.revealAtMs) {
    fixOrder(q);
    changed++;
  }
  if (p.mode === 'draw' && nowMs >= q.revealAtMs && (!q.drawn || drawCanGoOn(state, drop, q))) {
    if (!q.drawn) {
      fixOrder(q);
      q.drawn = true;
    }
    events = drawStep(state, drop, q, nowMs, makeHold);
    changed++;
  }
  // Admissions that ran out.
  const until = q.admittedUntil.data;
  for (let top = q.peekAdmitted(); top >= 0 && until[top]! <= nowMs; top = q.peekAdmitted()) {
    q.popAdmitted();
    if (q.states.data[top] === EntryState.admitted) {
      q.setState(top, EntryState.lapsed);
      changed++;
    }
  }
  // Admission at the pace: a tenth of a second's worth per step, never more than
  // admitPerSecond in any second, and only while a unit is available.
  if (p.mode !== 'draw' && q.fixed && nowMs >= p.opensAtMs && q.admitHead < q.ranked && nowMs >= q.lastAdmitMs + admitStepMs
      && hasAvailable(dropSkus(state, drop.dropId))) {
    q.window = q.window.filter(([t]) => t > nowMs - 1000);
    const room = windowRoom(q, nowMs);
    const n = Math.min(room, Math.ceil(p.admitPerSecond * admitStepMs / 1000), q.ranked - q.admitHead);
    if (n > 0) {
      const admitMs = p.admitSeconds * 1000;
      for (let k = 0; k < n; k++) {
        const i = q.order.data[q.admitHead++]!;
        q.setState(i, EntryState.admitted);
        q.admittedAt.data[i] = nowMs;
        until[i] = nowMs + admitMs;
        q.pushAdmitted(i);
      }
      q.window.push([nowMs, n]);
      q.lastAdmitMs = nowMs;
      changed += n;
    }
  }
  return { changed, events };
}

/** Entries that lost (so far: a second chance may still make some of them win). */
function drawLost(state: ShardState, drop: DropState, q: QueueState): number {
  if (!q.drawn) return 0;
  const untried = drawCanGoOn(state, drop, q) ? q.ranked - q.drawCursor : 0;
  return q.counts[EntryState.entered]! - untried;
}

/** The SKU a draw holds units of: a draw drop has one (should it have several, the first created). */
function drawSku(state: ShardState, drop: DropState): SkuState | undefined {
  return dropSkus(state, drop.dropId)[0];
}

/**
 * Whether a draw that ran has entries left to try and units for the next one: the first pass
 * stopped at its step bound, or units came back since (a winner's hold expired or was
 * cancelled, a restock): the next entries in the seeded order get them (a second chance).
 */
function drawCanGoOn(state: ShardState, drop: DropState, q: QueueState): boolean {
  if (q.drawCursor >= q.ranked) return false;
  const sku = drawSku(state, drop);
  return sku !== undefined && sku.available >= q.policy.qtyPerWinner;
}

/**
 * One step of the draw: the entries from the cursor on, in seeded order, each given a hold of
 * qtyPerWinner while the SKU has the units and its quota allows (else it loses and the next is
 * tried), at most expireBatchMax entries per step so that a turn stays short; the clock takes
 * the next step at once.
 */
function drawStep(state: ShardState, drop: DropState, q: QueueState, nowMs: number, makeHold: MakeHold): DomainEvent[] | null {
  const sku = drawSku(state, drop);
  if (sku === undefined) {
    q.drawCursor = q.ranked;
    return null;
  }
  const qty = q.policy.qtyPerWinner;
  let events: DomainEvent[] | null = null;
  const end = Math.min(q.ranked, q.drawCursor + state.config.expireBatchMax);
  for (; q.drawCursor < end && sku.available >= qty; q.drawCursor++) {
    const i = q.order.data[q.drawCursor]!;
    if (q.states.data[i] !== EntryState.entered) continue;
    const buyerId = q.buyers[i]!;
    const d = q.nonceHmac.digest(utf8(buyerId));
    const n = d[0]! * 2 ** 32 + (((d[1]! << 24) | (d[2]! << 16) | (d[3]! << 8) | d[4]!) >>> 0);
    const nonce = n.toString(36).padStart(nonceLength, '0').slice(-nonceLength);
    const made = makeHold(state, sku, buyerId, qty, q.channels.get(i) ?? defaultChannel, nonce, nowMs);
    if (made === null) continue; // its quota (or its channel) cannot take it: it loses
    q.setState(i, EntryState.won);
    q.holds.set(i, made.id);
    if (made.events !== null) (events ??= []).push(...made.events);
  }
  return events;
}

/** Per drop with a queue (at most `max`): its entries by state now, for metrics. */
export function queueFigures(state: ShardState, nowMs: number, max: number): QueueFigures[] {
  const out: QueueFigures[] = [];
  for (const drop of state.drops.values()) {
    if (out.length >= max) break;
    const q = dropView(state, drop, nowMs).queue;
    if (q === null) continue;
    out.push({ dropId: drop.dropId, mode: q.mode, entries: q.entries, waiting: q.waiting, admitted: q.admitted, used: q.used, lapsed: q.lapsed, won: q.won ?? 0, lost: q.lost ?? 0 });
  }
  return out;
}

export interface QueueFigures {
  dropId: string;
  mode: string;
  entries: number;
  waiting: number;
  admitted: number;
  used: number;
  lapsed: number;
  won: number;
  lost: number;
}
