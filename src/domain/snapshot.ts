// Converts a shard's state to plain arrays (for a msgpackr snapshot) and back. The
// round trip is exact: restoring a snapshot gives a state whose own snapshot is equal,
// including map iteration orders and queue orders, so recovery is checkable bit for bit.

import type { QuotaTable } from './quota-table.js';
import { InvariantError, assert } from './assert.js';
import type { Mode, Status } from './codes.js';
import type { OutboxEvent, StockEvent } from './commands.js';
import { nonceLength, spellsReservationId } from './routing.js';
import { DropState, EntryState, QueueState, type EntryStateCode, type QueuePolicy } from './drop-state.js';
import { auditEntryBytes } from './audit.js';
import { defaultChannel, type ChannelCaps } from './fields.js';
import { Reservation, ShardState, SkuState, addSku, type AuditEntry, channelUnitsOf, quotaFor, type IdempotencyEntry, type ShardConfig } from './shard-state.js';

type SkuRow = [
  sku: string, dropId: string | null, createdAtMs: number, updatedAtMs: number,
  onHand: number, reserved: number, sold: number, mode: Mode, holdSeconds: number,
  maxPerBuyer: number, startsAtMs: number, endsAtMs: number, lowStockThreshold: number,
  minAccountAgeSeconds: number, minPastOrders: number, lowStockSignaled: boolean,
  // Since v2: the channel policy, and every channel's counted units in first-use order.
  channelCaps?: ChannelCaps | null, channelUnits?: [name: string, reserved: number, sold: number][],
  // Since v3: the ERP's share of sold (delivered, never queued, sold before it was counted).
  erpUnits?: [delivered: number, notQueued: number, uncounted: number],
  // Since v4: units refunded, and the ERP's share of them (delivered, never queued).
  refunds?: [refunded: number, delivered: number, notQueued: number],
  // Since v5: the audit trail (the seq of the newest entry dropped, then the entries kept, oldest first).
  audit?: [seqBase: number, entries: AuditEntry[]],
];
type ReservationRow = [
  id: string, seq: number, sku: string, buyerId: string, qty: number, mode: Mode,
  createdAtMs: number, expiresAtMs: number, idemKey: string | null, status: Status,
  settledAtMs: number, paymentRef: string | null,
  /** Since v2; absent in v1 (every reservation then was on the default channel). */
  channel?: string,
  /** Since v4: whether its pay entered the outbox (absent: unknown for a paid one), and its refund. */
  erpQueued?: boolean | null,
  refund?: [atMs: number, restock: boolean, reason: string | null] | null,
];

/** A queue without its entries: its policy, secrets and where its clock stands. */
interface QueueHead {
  policy: QueuePolicy;
  seed: string;
  seedSha256: string;
  secret: string;
  fixed: boolean;
  drawn: boolean;
  drawCursor: number;
  admitHead: number;
  lastAdmitMs: number;
  window: [number, number][];
}

/**
 * One queue entry, in a top-level list of its own (so a snapshot with millions of entries is
 * cut into chunks like reservations are); the drop by its index in `drops`, entries of each
 * queue in joining order. The order is not stored: it is the ranks.
 */
type QueueEntryRow = [
  drop: number, buyerId: string, joinedAt: number, state: number, admittedAt: number, admittedUntil: number,
  rank: number, key: number, hold: string | null, channel: string | null,
];

type DropRow = [dropId: string, createdAtMs: number, updatedAtMs: number, queue: QueueHead | null];

export interface ShardSnapshot {
  /**
   * 1: before channels (still read); 2: channels in SKU and reservation rows (still read);
   * 3: the outbox's logged mode and the ERP's per-SKU units (still read); 4: refunds (the
   * SKU's refunded units, a reservation's refund and whether its pay was queued, and
   * order.refunded events in the outbox); 5: drops and their queues.
   */
  v: 1 | 2 | 3 | 4 | 5;
  shardId: number;
  shardCount: number;
  seq: number;
  lastNowMs: number;
  skus: SkuRow[];
  links: [string, string][];
  /** In map order (creation order). */
  reservations: ReservationRow[];
  /** Indexes into `reservations` of settled ones, in the order they settled. */
  settledOrder: number[];
  /** [scope, buyer, units]: the SKUs' own scopes in SKU order, then the drops' in drop order. */
  quotas: [string, string, number][];
  /** [key, reservation index, reviewAtMs] in queue order. */
  idempotency: [string, number, number][];
  /** Events not yet acknowledged by the ERP, and the last event seq assigned. */
  outbox: OutboxEvent[];
  outboxLastSeq: number;
  /** Since v3: whether pays enter the outbox (null: no erp.mode logged yet). */
  outboxEnabled?: boolean | null;
  /** Since v5: drops in creation order, with their queues' heads, and every queue entry. */
  drops?: DropRow[];
  queueEntries?: QueueEntryRow[];
  /** Since v5: the stock event log for the events webhook. */
  stockEvents?: { enabled: boolean | null; lastSeq: number; dropped: number; queue: StockEvent[] };
}

function queueHead(q: QueueState): QueueHead {
  return {
    policy: { ...q.policy }, seed: q.seedHex, seedSha256: q.seedSha256, secret: q.secretHex, fixed: q.fixed, drawn: q.drawn,
    drawCursor: q.drawCursor, admitHead: q.admitHead, lastAdmitMs: q.lastAdmitMs, window: q.window.map(([t, k]) => [t, k]),
  };
}

function restoreQueue(head: QueueHead): QueueState {
  const q = new QueueState(head.policy, head.seed, head.seedSha256, head.secret);
  Object.assign(q, {
    fixed: head.fixed, drawn: head.drawn, drawCursor: head.drawCursor, admitHead: head.admitHead, lastAdmitMs: head.lastAdmitMs, window: head.window,
  });
  return q;
}

/** Puts entries back in their queues (orderQueues, once all are back, orders them). */
function restoreQueueEntries(queues: (QueueState | null)[], rows: QueueEntryRow[]): void {
  for (const [k, buyerId, joinedAt, st, admittedAt, admittedUntil, rank, key, hold, channel] of rows) {
    const q = queues[k];
    assert(q !== null && q !== undefined, `snapshot queue entry of ${buyerId} names drop ${k}, which has no queue`);
    const i = q.addEntry(buyerId, joinedAt, st as EntryStateCode);
    q.admittedAt.data[i] = admittedAt;
    q.admittedUntil.data[i] = admittedUntil;
    q.key.data[i] = key;
    q.rank.data[i] = rank;
    if (hold !== null) q.holds.set(i, hold);
    if (channel !== null) q.channels.set(i, channel);
  }
}

/** Once every entry is back: each queue's order (from the ranks) and its admitted heap. */
function orderQueues(queues: (QueueState | null)[]): void {
  for (const q of queues) {
    if (q === null) continue;
    let ranked = 0;
    for (let i = 0; i < q.count; i++) if (q.rank.data[i]! >= 0) ranked++;
    q.order.ensure(ranked);
    for (let i = 0; i < q.count; i++) {
      const r = q.rank.data[i]!;
      if (r >= 0) q.order.data[r] = i;
      if (q.states.data[i] === EntryState.admitted) q.pushAdmitted(i);
    }
    q.ranked = ranked;
  }
}

function skuRow(s: SkuState): SkuRow {
  return [s.sku, s.dropId, s.createdAtMs, s.updatedAtMs, s.onHand, s.reserved, s.sold, s.mode, s.holdSeconds,
    s.maxPerBuyer, s.startsAtMs, s.endsAtMs, s.lowStockThreshold, s.minAccountAgeSeconds, s.minPastOrders, s.lowStockSignaled,
    s.channelCaps === null ? null : [...s.channelCaps], [...s.channelUnits.values()].map((u) => [u.name, u.reserved, u.sold]),
    [s.erpDeliveredUnits, s.erpNotQueuedUnits, s.erpUncountedUnits], [s.refunded, s.erpRefundsDeliveredUnits, s.erpRefundsNotQueuedUnits],
    [s.auditSeqBase, s.audit.map((e) => ({ ...e }))]];
}

/** The lists of a snapshot, each of which may be given in pieces. */
export type SnapshotListName = 'skus' | 'links' | 'reservations' | 'settledOrder' | 'quotas' | 'idempotency' | 'outbox' | 'drops' | 'queueEntries';

/**
 * What a row can be written through instead of being made: an encoder that writes rows
 * straight into its buffer (the checkpointer's) makes no array or object per row. A row is
 * written depth first, as `array(n)` followed by its n values, each a scalar or an array.
 */
export interface RowWriter {
  array(length: number): void;
  string(value: string): void;
  number(value: number): void;
  boolean(value: boolean): void;
  nil(): void;
}

/**
 * Rows of a list not made yet: `row(i)` makes row i, `write(i, w)` writes the same row
 * through `w`. Valid only until the next piece is asked for (the rows refer to a buffer the
 * stream reuses).
 */
export interface UnmadeRows {
  list: SnapshotListName;
  count: number;
  row(i: number): unknown;
  write(i: number, w: RowWriter): void;
}

/**
 * A snapshot in pieces: first its head (every field, each list empty), then rows of one list
 * at a time, in order within each list, made (`rows`) or not made yet (UnmadeRows). Appending
 * each piece's rows to the head's list gives the snapshot (toSnapshot does exactly that).
 */
export type SnapshotPiece = { head: ShardSnapshot } | { list: SnapshotListName; rows: unknown[] } | UnmadeRows;

/** The rows of a piece, made (for a reader that wants values). */
export function rowsOf(piece: Exclude<SnapshotPiece, { head: ShardSnapshot }>): unknown[] {
  if ('rows' in piece) return piece.rows;
  const rows = new Array<unknown>(piece.count);
  for (let i = 0; i < piece.count; i++) rows[i] = piece.row(i);
  return rows;
}

export function toSnapshot(state: ShardState): ShardSnapshot {
  let snap: ShardSnapshot | null = null;
  for (const piece of snapshotPieces(state, Number.POSITIVE_INFINITY)) {
    if (piece === null) continue;
    if ('head' in piece) {
      snap = piece.head;
      continue;
    }
    const list = snap![piece.list] as unknown[];
    for (const row of rowsOf(piece)) list.push(row);
  }
  return snap!;
}

/**
 * The snapshot of `state` as a stream of pieces of at most `rowsPerPiece` rows, made as they
 * are asked for: no list of every row is ever held, so a caller that writes each piece as it
 * comes (the checkpointer) holds one piece at a time, not a second copy of the state, and
 * gives its GC almost nothing to do. It yields null after each `rowsPerPiece` rows looked at
 * that made no piece yet, so such a caller can rest between steps and leave the cores to
 * others. The state must not change until the stream ends.
 *
 * Settled reservations and idempotency keys refer to reservations by their place in the
 * reservation list; only the reservations so referred to are indexed, before the list is
 * walked.
 */
export function* snapshotPieces(state: ShardState, rowsPerPiece: number): Generator<SnapshotPiece | null, void, void> {
  let n = 0;
  const tick = (): boolean => {
    if (++n < rowsPerPiece) return false;
    n = 0;
    return true;
  };
  const head: ShardSnapshot = {
    v: 5, shardId: state.config.shardId, shardCount: state.config.shardCount, seq: state.seq, lastNowMs: state.lastNowMs,
    skus: [], links: [], reservations: [], settledOrder: [], quotas: [], idempotency: [], outbox: [], outboxLastSeq: state.outboxLastSeq,
    outboxEnabled: state.outboxEnabled, drops: [], queueEntries: [],
    stockEvents: { enabled: state.stockEvents.enabled, lastSeq: state.stockEvents.lastSeq, dropped: state.stockEvents.dropped, queue: [...state.stockEvents.queue] },
  };
  yield { head };
  // Each list is given in pieces of rowsPerPiece rows; an item that makes no row (undefined)
  // still counts as a row looked at, so a long stretch of them has steps to rest at too.
  function* list(name: SnapshotListName, items: Iterable<unknown>): Generator<SnapshotPiece | null, void, void> {
    let rows: unknown[] = [];
    for (const row of items) {
      if (row !== undefined) rows.push(row);
      if (rows.length >= rowsPerPiece) {
        yield { list: name, rows };
        rows = [];
        n = 0;
      } else if (tick()) {
        yield null;
      }
    }
    if (rows.length > 0) yield { list: name, rows };
  }
  yield* list('skus', mapped(state.skus.values(), skuRow));
  yield* list('links', state.links);
  // The reservations referred to by place, and (once the list is walked) their places.
  const place = new Map<Reservation, number>();
  for (const r of state.settled) {
    place.set(r, -1);
    if (tick()) yield null;
  }
  for (const e of state.idempotencyQueue) {
    if (state.idempotency.get(e.key) === e) place.set(e.reservation, -1);
    if (tick()) yield null;
  }
  // The reservations, the most numerous rows by far, are handed over unmade: an encoder that
  // writes them straight into its buffer then makes no array per hold (for a million holds,
  // a second of scavenges on the checkpointer's thread and on the process's GC helpers).
  let at = 0;
  // Rows not made are kept in arrays filled by index and reused from piece to piece (emptying
  // an array gives its memory back, and refilling it takes it again: a scavenge's worth per
  // few hundred thousand rows).
  let filled = 0;
  const batch: Reservation[] = [];
  const reservations: UnmadeRows = {
    list: 'reservations',
    count: 0,
    row: (i) => reservationRow(batch[i]!),
    write: (i, w) => writeReservationRow(batch[i]!, w),
  };
  for (const r of state.reservations.values()) {
    if (place.has(r)) place.set(r, at);
    at++;
    batch[filled++] = r;
    if (filled >= rowsPerPiece) {
      reservations.count = filled;
      yield reservations;
      filled = 0;
      n = 0;
    }
  }
  if (filled > 0) {
    reservations.count = filled;
    yield reservations;
    filled = 0;
  }
  yield* list('settledOrder', mapped(state.settled, (r) => {
    const i = place.get(r) ?? -1;
    return i >= 0 ? i : undefined;
  }));
  // Keys and quotas can be as many as the holds (a key per reserve, a quota row per buyer):
  // unmade too, in parallel arrays rather than an object per row.
  const texts: string[] = [];
  const moreTexts: string[] = [];
  const numbers: number[] = [];
  const moreNumbers: number[] = [];
  // [key, place, reviewAtMs]
  const keys: UnmadeRows = {
    list: 'idempotency',
    count: 0,
    row: (i) => [texts[i], numbers[i], moreNumbers[i]],
    write: (i, w) => {
      w.array(3);
      w.string(texts[i]!);
      w.number(numbers[i]!);
      w.number(moreNumbers[i]!);
    },
  };
  for (const e of state.idempotencyQueue) {
    const i = place.get(e.reservation) ?? -1;
    if (state.idempotency.get(e.key) === e && i >= 0) {
      texts[filled] = e.key;
      numbers[filled] = i;
      moreNumbers[filled++] = e.reviewAtMs;
      if (filled >= rowsPerPiece) {
        keys.count = filled;
        yield keys;
        filled = 0;
        n = 0;
        continue;
      }
    }
    if (tick()) yield null;
  }
  if (filled > 0) {
    keys.count = filled;
    yield keys;
    filled = 0;
  }
  place.clear();
  // [scope, buyer, units]: the SKUs' own scopes in SKU order, then the drops' in drop order.
  const quotas: UnmadeRows = {
    list: 'quotas',
    count: 0,
    row: (i) => [texts[i], moreTexts[i], numbers[i]],
    write: (i, w) => {
      w.array(3);
      w.string(texts[i]!);
      w.string(moreTexts[i]!);
      w.number(numbers[i]!);
    },
  };
  function* quotaPieces(scope: string, table: QuotaTable): Generator<SnapshotPiece | null, void, void> {
    for (let slot = 0; slot < table.slotsUsed; slot++) {
      const buyer = table.keyAt(slot);
      if (buyer === undefined) continue;
      texts[filled] = scope;
      moreTexts[filled] = buyer;
      numbers[filled++] = table.unitsAt(slot);
      if (filled >= rowsPerPiece) {
        quotas.count = filled;
        yield quotas;
        filled = 0;
        n = 0;
      }
    }
  }
  for (const s of state.skus.values()) {
    if (s.dropId === null) yield* quotaPieces(s.quotaScope, s.quota);
  }
  for (const [dropId, quota] of state.dropQuotas) yield* quotaPieces(`d\u0001${dropId}`, quota);
  if (filled > 0) {
    quotas.count = filled;
    yield quotas;
    filled = 0;
  }
  yield* list('outbox', state.outbox);
  const drops = [...state.drops.values()];
  yield* list('drops', drops.map((d): DropRow => [d.dropId, d.createdAtMs, d.updatedAtMs, d.queue === null ? null : queueHead(d.queue)]));
  yield* list('queueEntries', queueEntryRows(drops));
}

function reservationRow(r: Reservation): ReservationRow {
  return [r.id, r.seq, r.sku.sku, r.buyerId, r.qty, r.mode, r.createdAtMs, r.expiresAtMs, r.idemKey,
    r.status, r.settledAtMs, r.paymentRef, r.channel.name, r.erpQueued, r.refund === null ? null : [r.refund.atMs, r.refund.restock, r.refund.reason]];
}

/** reservationRow through a RowWriter: the same values, in the same order (a test holds them equal). */
function writeReservationRow(r: Reservation, w: RowWriter): void {
  w.array(15);
  w.string(r.id);
  w.number(r.seq);
  w.string(r.sku.sku);
  w.string(r.buyerId);
  w.number(r.qty);
  w.string(r.mode);
  w.number(r.createdAtMs);
  w.number(r.expiresAtMs);
  stringOrNull(w, r.idemKey);
  w.string(r.status);
  w.number(r.settledAtMs);
  stringOrNull(w, r.paymentRef);
  w.string(r.channel.name);
  if (r.erpQueued === null) w.nil();
  else w.boolean(r.erpQueued);
  const refund = r.refund;
  if (refund === null) {
    w.nil();
    return;
  }
  w.array(3);
  w.number(refund.atMs);
  w.boolean(refund.restock);
  stringOrNull(w, refund.reason);
}

function stringOrNull(w: RowWriter, value: string | null): void {
  if (value === null) w.nil();
  else w.string(value);
}

function* mapped<T, R>(items: Iterable<T>, f: (item: T) => R): Generator<R, void, void> {
  for (const item of items) yield f(item);
}

function* queueEntryRows(drops: DropState[]): Generator<QueueEntryRow, void, void> {
  for (let k = 0; k < drops.length; k++) {
    const q = drops[k]!.queue;
    if (q === null) continue;
    for (let i = 0; i < q.count; i++) {
      yield [k, q.buyers[i]!, q.joinedAt.data[i]!, q.states.data[i]!, q.admittedAt.data[i]!, q.admittedUntil.data[i]!,
        q.rank.data[i]!, q.key.data[i]!, q.holds.get(i) ?? null, q.channels.get(i) ?? null];
    }
  }
}

function restoreSku(state: ShardState, row: SkuRow): SkuState {
  const [sku, dropId, createdAtMs, updatedAtMs, onHand, reserved, sold, mode, holdSeconds, maxPerBuyer,
    startsAtMs, endsAtMs, lowStockThreshold, minAccountAgeSeconds, minPastOrders, lowStockSignaled, channelCaps, channelUnits, erpUnits, refunds, audit] = row;
  const s = new SkuState(sku, dropId, createdAtMs, quotaFor(state, dropId));
  Object.assign(s, { updatedAtMs, onHand, reserved, sold, mode, holdSeconds, maxPerBuyer, startsAtMs, endsAtMs,
    lowStockThreshold, minAccountAgeSeconds, minPastOrders, lowStockSignaled });
  s.channelCaps = channelCaps === undefined || channelCaps === null ? null : new Map(channelCaps);
  if (channelUnits !== undefined) {
    for (const [name, held, paid] of channelUnits) Object.assign(channelUnitsOf(s, name), { reserved: held, sold: paid });
  } else if (reserved + sold > 0) {
    // A v1 snapshot: everything was sold through the default channel.
    Object.assign(channelUnitsOf(s, defaultChannel), { reserved, sold });
  }
  if (erpUnits !== undefined) [s.erpDeliveredUnits, s.erpNotQueuedUnits, s.erpUncountedUnits] = erpUnits;
  if (refunds !== undefined) [s.refunded, s.erpRefundsDeliveredUnits, s.erpRefundsNotQueuedUnits] = refunds;
  if (audit !== undefined) {
    s.auditSeqBase = audit[0];
    s.audit = audit[1].map((e) => ({ ...e }));
    s.auditBytes = s.audit.reduce((n, e) => n + auditEntryBytes(e), 0);
  }
  return s;
}

/**
 * A v1/v2 snapshot did not count what the ERP got. Its sold units that are not in the
 * outbox were either delivered or never queued, which it cannot tell apart (its process's
 * settings decided), unless no event was ever queued: then none was delivered. They are
 * reported as such, never as delivered.
 */
function restoreLegacyErpUnits(state: ShardState): void {
  const queued = new Map<string, number>();
  for (const e of state.outbox) queued.set(e.sku, (queued.get(e.sku) ?? 0) + e.qty);
  const everQueued = state.outboxLastSeq > 0;
  for (const s of state.skus.values()) {
    const rest = s.sold - (queued.get(s.sku) ?? 0);
    assert(rest >= 0, `snapshot sku ${s.sku}: the outbox holds more units than were sold`);
    if (everQueued) s.erpUncountedUnits = rest;
    else s.erpNotQueuedUnits = rest;
  }
}

/** The lists each list's rows refer to: those must be restored before its rows are. */
const listNeeds: Readonly<Record<SnapshotListName, readonly SnapshotListName[]>> = {
  skus: [], links: [], reservations: ['skus'], settledOrder: ['reservations'], idempotency: ['reservations'],
  quotas: ['skus'], outbox: [], drops: [], queueEntries: ['drops'],
};
const listNames = Object.keys(listNeeds) as SnapshotListName[];

function isListName(name: string): name is SnapshotListName {
  return Object.hasOwn(listNeeds, name);
}

/**
 * Builds a shard's state from a snapshot given as its head, then its lists in pieces (the
 * order a snapshot file holds them in): each piece is restored as it comes, so a caller that
 * decodes a file a chunk at a time holds one chunk's rows, never a decoded copy of the whole
 * snapshot beside the state it builds (recovery of a million holds spent 41 % of its time in
 * GC doing that). A list whose rows refer to one that has not come yet (a hand-made or
 * older snapshot whose lists are in another order) is kept until that one has come.
 * `fromSnapshot` is this, fed a whole snapshot.
 */
export class SnapshotRestorer {
  private readonly state: ShardState;
  /** The reservations in list order: settled order and idempotency keys name them by place. */
  private readonly rows: Reservation[] = [];
  private readonly queues: (QueueState | null)[] = [];
  /** Lists whose every row has come (a list's pieces come together). */
  private readonly complete = new Set<SnapshotListName>();
  private current: SnapshotListName | null = null;
  /** Rows of lists that came before a list they refer to. */
  private readonly waiting = new Map<SnapshotListName, (readonly unknown[])[]>();
  /** restoreQuotas' last scope and its map (rows of one scope come together). */
  private quotaScope = '';
  private quota: QuotaTable | undefined;
  private finished = false;

  constructor(private readonly head: ShardSnapshot, config: ShardConfig) {
    assert(head.v >= 1 && head.v <= 5, `unknown snapshot version ${String(head.v)}`);
    if (head.shardId !== config.shardId || head.shardCount !== config.shardCount) {
      throw new Error(`snapshot is of shard ${head.shardId}/${head.shardCount}, not ${config.shardId}/${config.shardCount}; FLASH_SHARDS must not change for a data directory`);
    }
    // Every version has these lists; drops and queue entries came with v5. A list the head
    // does not have may not come in a chunk either.
    for (const name of listNames) {
      const rows = (head as unknown as Record<string, unknown>)[name];
      const optional = name === 'drops' || name === 'queueEntries';
      assert(Array.isArray(rows) || (optional && rows === undefined), `snapshot list ${name} is ${rows === undefined ? 'missing' : 'not a list'}`);
    }
    const state = new ShardState(config);
    state.seq = head.seq;
    state.lastNowMs = head.lastNowMs;
    this.state = state;
    // Lists the head still holds come first, in its own order (a whole snapshot holds all).
    for (const [name, rows] of Object.entries(head)) {
      if (isListName(name) && Array.isArray(rows) && rows.length > 0) this.add(name, rows);
    }
  }

  /** The next rows of list `name`, in order. */
  add(name: string, rows: readonly unknown[]): void {
    assert(!this.finished, 'snapshot restore already finished');
    assert(isListName(name) && Array.isArray((this.head as unknown as Record<string, unknown>)[name]), `snapshot chunk names ${name}, not a list of the snapshot`);
    if (name !== this.current) {
      assert(!this.complete.has(name), `snapshot list ${name} comes in two places`);
      if (this.current !== null) this.completed(this.current);
      this.current = name;
    }
    if (!this.waiting.has(name) && this.ready(name)) this.restore(name, rows);
    else {
      const kept = this.waiting.get(name) ?? [];
      kept.push(rows);
      this.waiting.set(name, kept);
    }
  }

  /** The state, once every piece has been added. */
  finish(): ShardState {
    assert(!this.finished, 'snapshot restore already finished');
    if (this.current !== null) this.completed(this.current);
    // What still waits refers to a list the snapshot does not have (an empty one), or to one
    // that waits itself: in the order of listNames, every list comes after those it names.
    for (const name of listNames) this.restoreWaiting(name);
    this.finished = true;
    const { state, head } = this;
    state.outboxLastSeq = head.outboxLastSeq;
    // An older snapshot did not record whether each paid order was queued: an order still in
    // the outbox was; with nothing ever queued, none was; the rest stays unknown.
    if (head.v < 4) {
      const inOutbox = new Set<string>();
      for (const e of state.outbox) if ((e as { type?: string }).type !== 'order.refunded') inOutbox.add(e.reservationId);
      for (const r of this.rows) {
        if (r.erpQueued !== null) continue;
        if (inOutbox.has(r.id)) r.erpQueued = true;
        else if (head.outboxLastSeq === 0) r.erpQueued = false;
      }
    }
    state.outboxEnabled = head.outboxEnabled ?? null;
    if (head.v < 3) restoreLegacyErpUnits(state);
    if (head.stockEvents !== undefined) {
      const log = state.stockEvents;
      log.enabled = head.stockEvents.enabled;
      log.lastSeq = head.stockEvents.lastSeq;
      log.dropped = head.stockEvents.dropped;
      for (const e of head.stockEvents.queue) log.queue.push(e);
    }
    orderQueues(this.queues);
    return state;
  }

  /** Whether every list `name` refers to has come and been restored. */
  private ready(name: SnapshotListName): boolean {
    return listNeeds[name].every((n) => this.complete.has(n) && !this.waiting.has(n));
  }

  private completed(name: SnapshotListName): void {
    this.complete.add(name);
    // Restoring one waiting list can make another ready (one that waits for it).
    for (let progress = true; progress;) {
      progress = false;
      for (const other of listNames) {
        if (this.waiting.has(other) && this.ready(other)) {
          this.restoreWaiting(other);
          progress = true;
        }
      }
    }
  }

  private restoreWaiting(name: SnapshotListName): void {
    const kept = this.waiting.get(name);
    if (kept === undefined) return;
    this.waiting.delete(name);
    for (const rows of kept) this.restore(name, rows);
  }

  private restore(name: SnapshotListName, rows: readonly unknown[]): void {
    const state = this.state;
    switch (name) {
      case 'skus':
        for (const row of rows as SkuRow[]) addSku(state, restoreSku(state, row));
        return;
      case 'links':
        for (const [sku, dropId] of rows as [string, string][]) state.links.set(sku, dropId);
        return;
      case 'reservations':
        for (const row of rows as ReservationRow[]) this.reservation(row);
        return;
      case 'settledOrder':
        for (const i of rows as number[]) state.settled.push(this.reservationAt(i, 'settled order'));
        return;
      case 'idempotency':
        for (const [key, i, reviewAtMs] of rows as [string, number, number][]) {
          const entry: IdempotencyEntry = { key, reservation: this.reservationAt(i, `idempotency key ${key}`), reviewAtMs };
          state.idempotency.set(key, entry);
          state.idempotencyQueue.push(entry);
        }
        return;
      case 'quotas':
        for (const [scope, buyer, units] of rows as [string, string, number][]) {
          if (scope !== this.quotaScope) {
            const scopeName = scope.slice(2);
            this.quota = scope.startsWith('d') ? state.dropQuotas.get(scopeName) : state.skus.get(scopeName)?.quota;
            this.quotaScope = scope;
          }
          assert(this.quota !== undefined, `snapshot quota scope ${scope} is unknown`);
          this.quota.set(buyer, units);
        }
        return;
      case 'outbox':
        for (const e of rows as OutboxEvent[]) state.outbox.push(e);
        return;
      case 'drops':
        for (const [dropId, createdAtMs, updatedAtMs, queue] of rows as DropRow[]) {
          const drop = new DropState(dropId, createdAtMs, updatedAtMs);
          drop.queue = queue === null ? null : restoreQueue(queue);
          this.queues.push(drop.queue);
          state.drops.set(dropId, drop);
        }
        return;
      case 'queueEntries':
        restoreQueueEntries(this.queues, rows as QueueEntryRow[]);
        return;
    }
  }

  private reservation(row: ReservationRow): void {
    const state = this.state;
    const [id, seq, skuName, buyerId, qty, mode, createdAtMs, expiresAtMs, idemKey, status, settledAtMs, paymentRef, channel, erpQueued, refund] = row;
    const sku = state.skus.get(skuName);
    if (sku === undefined) throw new InvariantError(`snapshot reservation ${id} names unknown sku ${skuName}`);
    const units = channelUnitsOf(sku, channel ?? defaultChannel);
    const r = new Reservation(state.idPrefix, seq, id.slice(-nonceLength), sku, buyerId, qty, units, mode, expiresAtMs, expiresAtMs - createdAtMs, idemKey);
    if (!spellsReservationId(id, state.idPrefix, seq, r.nonce)) throw new InvariantError(`snapshot reservation ${id} does not spell its own id`);
    r.status = status;
    r.settledAtMs = settledAtMs;
    r.paymentRef = paymentRef;
    // Before v4 nobody recorded whether a pay was queued: unknown for a paid reservation.
    r.erpQueued = erpQueued !== undefined ? erpQueued : status === 'paid' ? null : false;
    if (refund !== undefined && refund !== null) r.refund = { atMs: refund[0], restock: refund[1], reason: refund[2] };
    state.reservations.add(r);
    this.rows.push(r);
    if (status === 'held') {
      state.liveCount++;
      state.expiry.push(r);
    }
  }

  private reservationAt(i: number, what: string): Reservation {
    const r = this.rows[i];
    if (r === undefined) throw new InvariantError(`snapshot ${what} names reservation ${i} of ${this.rows.length}`);
    return r;
  }
}

export function fromSnapshot(snap: ShardSnapshot, config: ShardConfig): ShardState {
  return new SnapshotRestorer(snap, config).finish();
}
