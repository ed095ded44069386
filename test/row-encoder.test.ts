// Snapshot rows written straight into a buffer (the checkpointer's encoder, MsgpackRowWriter):
// whatever the values, they decode to what msgpackr's own encoding of the made rows decodes
// to; a live state's reservations, idempotency keys and quotas come out as toSnapshot's rows,
// in chunks cut in halves past a size, and restore the same state.

import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { apply, createShardState, snapshotPieces, toSnapshot, type Command, type RowWriter, type ShardState, type UnmadeRows } from '../src/domain/index.js';
import { decode, encode } from '../src/engine/codec.js';
import { MsgpackRowWriter } from '../src/engine/row-encoder.js';
import { decodeSnapshotWithTail, encodeSnapshotPieces, ownChunks, restoreSnapshotChunks, reusingChunks } from '../src/engine/shard-runtime.js';

const T0 = 1_760_000_000_000;

type Value = string | number | boolean | null | Value[];

/** Writes a made value through a RowWriter, as a domain row writer would. */
function writeValue(v: Value, w: RowWriter): void {
  if (v === null) w.nil();
  else if (typeof v === 'string') w.string(v);
  else if (typeof v === 'number') w.number(v);
  else if (typeof v === 'boolean') w.boolean(v);
  else {
    w.array(v.length);
    for (const x of v) writeValue(x, w);
  }
}

function unmade(list: 'reservations', rows: Value[]): UnmadeRows {
  return { list, count: rows.length, row: (i) => rows[i], write: (i, w) => writeValue(rows[i]!, w) };
}

const numbers = fc.oneof(
  fc.integer({ min: -0x80000000, max: 0xffffffff }),
  fc.constantFrom(0, -0, 31, 32, 127, 128, 255, 256, 65_535, 65_536, -32, -33, -128, -129, -32_768, -32_769, 2 ** 32, -(2 ** 31) - 1, T0,
    Number.MAX_SAFE_INTEGER, Number.MIN_SAFE_INTEGER, 0.5, Number.NaN, Number.POSITIVE_INFINITY, Number.NEGATIVE_INFINITY, Number.MIN_VALUE),
  fc.double(),
  fc.maxSafeInteger(),
);
const strings = fc.oneof(
  fc.string({ maxLength: 80 }),
  fc.string({ unit: 'grapheme', maxLength: 40 }),
  fc.string({ unit: 'binary', maxLength: 70 }),
  fc.string({ minLength: 60, maxLength: 70_000 }),
  fc.constantFrom('', 'x'.repeat(31), 'x'.repeat(32), 'x'.repeat(64), 'x'.repeat(65), 'y'.repeat(255), 'y'.repeat(256), 'é'.repeat(16), '買家-😀', '\u0000'),
);
const scalar: fc.Arbitrary<Value> = fc.oneof(strings, numbers, fc.boolean(), fc.constant(null));
const { row } = fc.letrec<{ row: Value[]; value: Value }>((tie) => ({
  value: fc.oneof({ depthSize: 'small', withCrossShrink: true }, scalar, tie('row')),
  row: fc.array(tie('value'), { maxLength: 20 }),
}));

describe('MsgpackRowWriter', () => {
  it('writes any rows of strings, numbers, booleans, nulls and arrays so that they decode as msgpackr\'s encoding of them does', () => {
    const writer = new MsgpackRowWriter();
    fc.assert(
      fc.property(fc.array(row, { maxLength: 40 }), (rows) => {
        const written = writer.chunk(unmade('reservations', rows), 0, rows.length);
        expect(decode(written)).toEqual(decode(encode(['reservations', rows])));
      }),
      { numRuns: 400 },
    );
  });

  it('writes a slice [from, to) of the rows, and a chunk longer than its buffer (it grows, and a copy outlives the next chunk)', () => {
    const writer = new MsgpackRowWriter();
    const rows: Value[] = Array.from({ length: 70_000 }, (_, i) => [`row-${i}-${'z'.repeat(i % 50)}`, i, i * 1.5, i % 2 === 0, null]);
    const first = writer.chunk(unmade('reservations', rows), 10, 20, true);
    const big = writer.chunk(unmade('reservations', rows), 0, rows.length);
    expect(big.length).toBeGreaterThan(1024 * 1024);
    expect(decode(big)).toEqual(['reservations', rows]);
    expect(decode(first)).toEqual(['reservations', rows.slice(10, 20)]);
  });
});

/** Reservations of every shape: held, paid with a reference, cancelled, refunded with and without a reason, through channels, keys and buyers of any script; quotas of SKUs and of a drop. */
function variedState(): ShardState {
  const s = createShardState(0, 1);
  const ok = (c: Command, nowMs: number): void => {
    const a = apply(s, c, nowMs);
    if (!a.outcome.ok) throw new Error(`${c.t}: ${a.outcome.code} ${a.outcome.message}`);
  };
  ok({ t: 'erp.mode', enabled: true }, T0);
  ok({ t: 'sku.upsert', sku: 'tee', stock: 10_000, holdSeconds: 3600, channels: [['web', 500], ['app', null], ['default', null]] } as Command, T0);
  ok({ t: 'sku.upsert', sku: 'mug', stock: 10_000, holdSeconds: 60, mode: 'on_payment' } as Command, T0);
  ok({ t: 'sku.upsert', sku: 'cap', stock: 10_000, holdSeconds: 600, dropId: 'spring', maxPerBuyer: 5 } as Command, T0);
  const buyers = ['ascii', '買家', 'émile', 'b'.repeat(100), '😀-emoji'];
  for (let i = 0; i < 600; i++) {
    ok({
      t: 'res.reserve', sku: i % 4 === 0 ? 'mug' : i % 7 === 3 ? 'cap' : 'tee', buyerId: `${buyers[i % buyers.length]}-${i}`, qty: 1 + (i % 2), nonce: `n${i}`,
      ...(i % 3 === 0 ? { idemKey: `key-${'k'.repeat(i % 70)}-${i}` } : {}), ...(i % 5 === 1 ? { channel: 'web' } : i % 5 === 2 ? { channel: 'app' } : {}),
    }, T0 + 1 + i);
  }
  const ids = toSnapshot(s).reservations.map((r) => r[0]);
  for (let i = 0; i < ids.length; i += 4) ok({ t: 'res.pay', id: ids[i]!, ...(i % 8 === 0 ? { paymentRef: `pay-€-${i}` } : {}) }, T0 + 1_000);
  for (let i = 1; i < ids.length; i += 9) if (i % 4 !== 0) ok({ t: 'res.cancel', id: ids[i]! }, T0 + 1_001);
  for (let i = 0; i < ids.length; i += 12) ok({ t: 'res.refund', id: ids[i]!, restock: i % 24 === 0, ...(i % 36 === 0 ? { reason: 'déchiré' } : {}) }, T0 + 1_002);
  return s;
}

describe('a live state\'s reservations written straight into chunks', () => {
  const live = variedState();
  const whole = toSnapshot(live);
  const statuses = new Set(whole.reservations.map((r) => r[9]));
  const refunds = whole.reservations.map((r) => r[14]).filter((r) => r !== null && r !== undefined);

  it('covers every shape of row (statuses, refunds with and without a reason, channels, keys, quotas of SKUs and of a drop)', () => {
    expect(whole.idempotency.length).toBeGreaterThan(100);
    expect(whole.quotas.length).toBeGreaterThan(400);
    expect(whole.quotas.some(([scope]) => scope === 'd\u0001spring')).toBe(true);
    expect(whole.quotas.some(([scope]) => scope === 's\u0001tee')).toBe(true);
    expect([...statuses].sort()).toEqual(['cancelled', 'held', 'paid', 'refunded']);
    expect(refunds.some((r) => r![2] === null)).toBe(true);
    expect(refunds.some((r) => r![2] === 'déchiré')).toBe(true);
    expect(new Set(whole.reservations.map((r) => r[12]))).toEqual(new Set(['default', 'web', 'app']));
  });

  it('decode to toSnapshot\'s rows and restore the same state, own or reused chunks, for pieces of 1, 7 and 2,000 rows', () => {
    for (const rows of [1, 7, 2_000]) {
      for (const encoder of [ownChunks, reusingChunks()]) {
        const chunks: Uint8Array[] = [];
        for (const c of encodeSnapshotPieces(snapshotPieces(live, rows), 42, encoder)) if (c !== null) chunks.push(Uint8Array.from(c));
        expect(decodeSnapshotWithTail(chunks), `${rows} rows`).toEqual({ snapshot: whole, tailCrc: 42 });
        expect(toSnapshot(restoreSnapshotChunks(chunks, live.config).state)).toEqual(whole);
      }
    }
  });

  it('cuts a chunk that passes the size in halves until it fits or holds one row', () => {
    const target = 2_000;
    const chunks: Uint8Array[] = [];
    for (const c of encodeSnapshotPieces(snapshotPieces(live, 500), 7, reusingChunks(), target)) if (c !== null) chunks.push(Uint8Array.from(c));
    const reservationChunks = chunks.slice(1).map((c) => decode<[string, unknown[]]>(c)).filter(([name]) => name === 'reservations');
    expect(reservationChunks.length).toBeGreaterThan(600 / 20);
    for (let i = 1; i < chunks.length; i++) {
      const [, rows] = decode<[string, unknown[]]>(chunks[i]!);
      expect(chunks[i]!.length <= target || rows.length === 1).toBe(true);
    }
    expect(decodeSnapshotWithTail(chunks)).toEqual({ snapshot: whole, tailCrc: 7 });
  });
});
