// Restoring a snapshot a chunk at a time (recovery, the checkpointer and a standby load
// snapshots this way): the state is the one the whole snapshot gives, whatever the chunk size
// and whatever order the snapshot's lists come in; a damaged snapshot is refused with a reason.

import fc from 'fast-check';
import { afterEach, describe, expect, it } from 'vitest';
import { SnapshotRestorer, apply, createShardState, fromSnapshot, snapshotPieces, toSnapshot, type Command, type ShardSnapshot, type ShardState, type SnapshotListName } from '../src/domain/index.js';
import { shardForSku, spellReservationId, spellsReservationId } from '../src/domain/routing.js';
import { encode } from '../src/engine/codec.js';
import { ShardRuntime, decodeSnapshotWithTail, encodeSnapshotPieces, restoreSnapshotChunks, snapshotChunks } from '../src/engine/shard-runtime.js';
import { makeTempDir, openWal, removeTempDirs } from './wal-test-kit.js';

const T0 = 1_760_000_000_000;

/** Applies `cmds`; refusals other than `allowed` codes fail the setup. */
function run(s: ShardState, cmds: Command[], nowMs: number, allowed: string[] = ['quota_exceeded']): void {
  for (const c of cmds) {
    const a = apply(s, c, nowMs);
    if (!a.outcome.ok && !allowed.includes(a.outcome.code)) throw new Error(`${c.t}: ${a.outcome.code} ${a.outcome.message}`);
  }
}

/** A shard with something in every list: SKUs (one in a drop with a queue), links, held, paid, cancelled and refunded reservations, keys, quotas, the outbox and stock events. */
/** The first name `prefix<i>` that `fits`. */
function pick(prefix: string, fits: (name: string) => boolean): string {
  for (let i = 0; ; i++) if (fits(`${prefix}${i}`)) return `${prefix}${i}`;
}

/** Shard 0 of 2, so that it can hold a link (a SKU of its own in a drop homed on shard 1). */
const home = (sku: string, dropId: string | null = null): number => shardForSku(sku, dropId, 2);
const tee = pick('tee', (n) => home(n) === 0);
const mug = pick('mug', (n) => home(n) === 0);
const drop = pick('d', (d) => home('cap', d) === 0);
const linked = pick('linked', (n) => home(n) === 0 && home(n, 'far') === 1);

function richState(): ShardState {
  const s = createShardState(0, 2, { settledReservationsMax: 40 });
  run(s, [
    { t: 'erp.mode', enabled: true, events: true },
    { t: 'sku.upsert', sku: tee, stock: 500, holdSeconds: 3600, maxPerBuyer: 3 },
    { t: 'sku.upsert', sku: mug, stock: 500, holdSeconds: 60, lowStockThreshold: 490 },
    { t: 'sku.upsert', sku: 'cap', stock: 50, holdSeconds: 3600, dropId: drop },
    { t: 'sku.link', sku: linked, dropId: 'far' },
    { t: 'drop.put', dropId: drop, seed: 'a1'.repeat(32), secret: 'b2'.repeat(16), queue: { mode: 'fifo', admitPerSecond: 10, admitSeconds: 60 } } as Command,
  ], T0);
  const cmds: Command[] = [];
  for (let i = 0; i < 300; i++) cmds.push({ t: 'res.reserve', sku: i % 3 === 0 ? mug : tee, buyerId: `b${i % 120}`, qty: 1, nonce: `n${i}`, ...(i % 2 === 0 ? { idemKey: `k${i}` } : {}) });
  for (let i = 0; i < 200; i++) cmds.push({ t: 'q.join', dropId: drop, buyerId: `q${i}` });
  run(s, cmds, T0 + 1);
  const ids = toSnapshot(s).reservations.map((row) => row[0]);
  const settle: Command[] = [];
  for (let i = 0; i < ids.length; i += 5) settle.push({ t: 'res.pay', id: ids[i]!, paymentRef: `p${i}` });
  for (let i = 1; i < ids.length; i += 7) if (i % 5 !== 0) settle.push({ t: 'res.cancel', id: ids[i]! });
  // Past 40 settled, the oldest are dropped: a later cancel of one finds nothing.
  run(s, settle, T0 + 2, ['unknown_reservation']);
  run(s, [{ t: 'res.refund', id: ids[Math.floor((ids.length - 1) / 5) * 5]!, restock: true, reason: 'damaged' }], T0 + 3);
  return s;
}

/** The snapshot's lists as pieces of `rows` rows, in the order given (every list, whole, in turn). */
function piecesInOrder(snap: ShardSnapshot, order: readonly SnapshotListName[], rows: number): { head: ShardSnapshot; pieces: [SnapshotListName, unknown[]][] } {
  const head = { ...snap } as unknown as Record<string, unknown>;
  const pieces: [SnapshotListName, unknown[]][] = [];
  for (const name of order) {
    const list = (snap[name] ?? []) as unknown[];
    head[name] = [];
    for (let i = 0; i < list.length; i += rows) pieces.push([name, list.slice(i, i + rows)]);
  }
  return { head: head as unknown as ShardSnapshot, pieces };
}

const lists: SnapshotListName[] = ['skus', 'links', 'reservations', 'settledOrder', 'idempotency', 'quotas', 'outbox', 'drops', 'queueEntries'];

describe('restoring a snapshot a chunk at a time', () => {
  const live = richState();
  const whole = toSnapshot(live);

  it('has something in every list (so that each is restored from chunks)', () => {
    for (const name of lists) expect((whole[name] as unknown[] | undefined)?.length ?? 0, name).toBeGreaterThan(0);
    expect(whole.stockEvents?.queue.length).toBeGreaterThan(0);
  });

  it('gives the state the whole snapshot gives, for chunks of 1, 7 and 2,000 rows and the checkpointer\'s streamed chunks', () => {
    for (const rows of [1, 7, 2_000]) {
      const chunks = [...snapshotChunks(whole, 99, rows)];
      const restored = restoreSnapshotChunks(chunks, live.config);
      expect(restored.tailCrc).toBe(99);
      expect(toSnapshot(restored.state), `${rows} rows a chunk`).toEqual(whole);
    }
    const streamed = [...encodeSnapshotPieces(snapshotPieces(live, 3), 5)].filter((c): c is Uint8Array => c !== null);
    expect(toSnapshot(restoreSnapshotChunks(streamed, live.config).state)).toEqual(whole);
    expect(toSnapshot(fromSnapshot(decodeSnapshotWithTail(streamed).snapshot, live.config))).toEqual(whole);
  });

  it('gives the same state whatever order the lists come in (a list whose rows name another waits for it)', () => {
    fc.assert(fc.property(fc.shuffledSubarray(lists, { minLength: lists.length, maxLength: lists.length }), fc.integer({ min: 1, max: 400 }), (order, rows) => {
      const { head, pieces } = piecesInOrder(whole, order, rows);
      const chunks = [encode(head), ...pieces.map((p) => encode(p))];
      expect(toSnapshot(restoreSnapshotChunks(chunks, live.config).state)).toEqual(whole);
      // And a whole snapshot object whose keys are in that order.
      const reordered: Record<string, unknown> = { ...head };
      for (const name of order) delete reordered[name];
      for (const name of order) reordered[name] = whole[name];
      expect(toSnapshot(fromSnapshot(reordered as unknown as ShardSnapshot, live.config))).toEqual(whole);
    }), { numRuns: 60 });
  });

  it('refuses a damaged snapshot with its reason: a list in two places, a chunk of no list, a settled or keyed reservation that is not there', () => {
    const { head, pieces } = piecesInOrder(whole, lists, 100);
    const restoring = (edit: (p: [string, unknown[]][]) => [string, unknown[]][]): (() => void) => () => {
      const r = new SnapshotRestorer(structuredClone(head), live.config);
      for (const [name, rows] of edit(structuredClone(pieces))) r.add(name, rows);
      r.finish();
    };
    expect(restoring((p) => p)).not.toThrow();
    expect(restoring((p) => [...p, ['skus', [...whole.skus.slice(0, 1)]]])).toThrow(/skus comes in two places/);
    expect(restoring((p) => [['nonsense', [1]], ...p])).toThrow(/names nonsense, not a list/);
    expect(restoring((p) => p.map(([n, rows]) => [n, n === 'settledOrder' ? rows.map(() => whole.reservations.length + 3) : rows]))).toThrow(/settled order names reservation/);
    expect(restoring((p) => p.map(([n, rows]) => [n, n === 'idempotency' ? rows.map((row) => [(row as unknown[])[0], -1, 0]) : rows]))).toThrow(/idempotency key .* names reservation -1/);
    expect(restoring((p) => p.map(([n, rows]) => [n, n === 'reservations' ? rows.map((row) => { const x = [...(row as unknown[])]; x[1] = Number(x[1]) + 1; return x; }) : rows]))).toThrow(/does not spell its own id/);
    expect(restoring((p) => p.filter(([n]) => n !== 'skus'))).toThrow(/unknown sku/);
  });
});

describe('spellsReservationId', () => {
  it('is true exactly when the id is the one spellReservationId spells', () => {
    const prefix = fc.constantFrom('0.', '7.', '12.', '1023.');
    const nonce = fc.stringMatching(/^[0-9a-z]{8}$/);
    const seq = fc.oneof(fc.integer({ min: 0, max: 100 }), fc.integer({ min: 0, max: 2 ** 40 }), fc.constantFrom(35, 36, 1295, 1296, 2 ** 53 - 1));
    fc.assert(fc.property(prefix, seq, nonce, fc.integer({ min: 0, max: 6 }), fc.integer({ min: 0, max: 40 }), (p, n, nn, how, at) => {
      const id = spellReservationId(p, n, nn);
      const variants = [
        id,
        spellReservationId(p, n + 1, nn),
        `${p}0${n.toString(36)}${nn}`,
        id.slice(0, at) + id.slice(at + 1),
        id.slice(0, at) + 'z' + id.slice(at + 1),
        `x${id}`,
        id.toUpperCase(),
      ];
      const candidate = variants[how]!;
      expect(spellsReservationId(candidate, p, n, nn)).toBe(candidate === id);
    }), { numRuns: 2_000 });
  });
});

describe('a crafted snapshot file (review: each refused by the build before the chunked restore)', () => {
  /** A data dir whose newest snapshot (at lsn 1) is `chunks`; then recovery. */
  function recoverFrom(chunks: Uint8Array[]): ShardRuntime {
    const dir = makeTempDir();
    const rt = ShardRuntime.open({ dir, shardId: 0, shardCount: 1 });
    rt.execute([{ t: 'sku.upsert', sku: 'tee', stock: 10, holdSeconds: 600 }], T0);
    rt.close();
    const { wal } = openWal({ dir });
    wal.writeSnapshot(1, chunks);
    wal.close();
    return ShardRuntime.open({ dir, shardId: 0, shardCount: 1 });
  }

  /** A shard with SKU tee (10 units) and one hold of 3, as a snapshot object. */
  function held(): Record<string, unknown> {
    const s = createShardState(0, 1);
    run(s, [{ t: 'sku.upsert', sku: 'tee', stock: 10, holdSeconds: 600 }, { t: 'res.reserve', sku: 'tee', buyerId: 'b1', qty: 3, nonce: 'abc' }], T0);
    return toSnapshot(s) as unknown as Record<string, unknown>;
  }

  afterEach(() => removeTempDirs());

  it('is restored when whole (the control)', () => {
    const rt = recoverFrom([encode(held())]);
    expect(toSnapshot(rt.state)).toEqual(held());
    rt.close();
  });

  it('is refused when a list in its head is not a list (it would keep 3 units reserved by no hold)', () => {
    expect(() => recoverFrom([encode({ ...held(), reservations: {} })])).toThrow(/snapshot list reservations is not a list/);
  });

  it('is refused when its head lacks a list every version has', () => {
    for (const name of ['skus', 'links', 'reservations', 'settledOrder', 'idempotency', 'quotas', 'outbox']) {
      const head = held();
      delete head[name];
      expect(() => recoverFrom([encode(head)]), name).toThrow(new RegExp(`snapshot list ${name} is missing`));
    }
  });

  it('is refused when a chunk brings a list its head does not have (drops in a v4 snapshot)', () => {
    const head: Record<string, unknown> = { ...held(), v: 4 };
    delete head.drops;
    delete head.queueEntries;
    delete head.stockEvents;
    expect(() => recoverFrom([encode(head)])).not.toThrow();
    expect(() => recoverFrom([encode(head), encode(['drops', [['d1', T0, T0, null]]])])).toThrow(/names drops, not a list of the snapshot/);
  });
});
