// Unit tests of routing.ts: the stable hash, routing keys, and reservation ids that name
// their shard. These values are fixed for the life of a data directory, so the tests pin
// exact numbers rather than properties alone.

import fc from 'fast-check';
import { describe, expect, test } from 'vitest';
import {
  fnv1a32, nonceLength, reservationId, routingHash, routingKey, shardForKey, shardForSku, shardOfReservationId,
} from '../src/domain/index.js';

describe('fnv1a32', () => {
  // Published FNV-1a 32-bit test vectors (ASCII input), plus pinned values of our own keys.
  const vectors: { key: string; hash: number }[] = [
    { key: '', hash: 0x811c9dc5 },
    { key: 'a', hash: 0xe40c292c },
    { key: 'foobar', hash: 0xbf9cf968 },
    { key: 's:tee', hash: fnvReference('s:tee') },
    { key: 'd:spring-drop', hash: fnvReference('d:spring-drop') },
  ];
  for (const { key, hash } of vectors) {
    test(`the hash of ${JSON.stringify(key)} is 0x${hash.toString(16)}`, () => {
      expect(fnv1a32(key)).toBe(hash);
    });
  }

  test('the hash is an unsigned 32-bit integer for any key, also non-ASCII ones', () => {
    for (const key of ['é', '漢字', '\u0000', 'x'.repeat(10_000), '🙂']) {
      const h = fnv1a32(key);
      expect(Number.isInteger(h) && h >= 0 && h <= 0xffff_ffff).toBe(true);
      expect(h).toBe(fnvReference(key));
    }
  });
});

/** An independent FNV-1a over UTF-16 code units, with BigInt arithmetic. */
function fnvReference(key: string): number {
  let h = 0x811c9dc5n;
  for (let i = 0; i < key.length; i++) {
    h ^= BigInt(key.charCodeAt(i));
    h = (h * 0x01000193n) & 0xffff_ffffn;
  }
  return Number(h);
}

/** murmur3's 32-bit finalizer over the FNV-1a hash, with BigInt arithmetic. */
function routingReference(key: string): number {
  const mask = 0xffff_ffffn;
  let h = BigInt(fnvReference(key));
  h ^= h >> 16n;
  h = (h * 0x85ebca6bn) & mask;
  h ^= h >> 13n;
  h = (h * 0xc2b2ae35n) & mask;
  h ^= h >> 16n;
  return Number(h);
}

describe('routingHash', () => {
  // Pinned: changing these strands every SKU of an existing data directory.
  const vectors: { key: string; hash: number }[] = [
    { key: '', hash: 0xab3e7c0b },
    { key: 'a', hash: 0x1a80b1b3 },
    { key: 's:tee', hash: 0xbbd96d41 },
    { key: 'd:spring-drop', hash: 0x2f5e1b15 },
  ];
  for (const { key, hash } of vectors) {
    test(`the routing hash of ${JSON.stringify(key)} is 0x${hash.toString(16)}`, () => {
      expect(routingHash(key)).toBe(hash);
    });
  }

  test('the routing hash is FNV-1a followed by the murmur3 finalizer, for any key', () => {
    for (const key of ['é', '漢字', 's:sku-1', 'x'.repeat(1000), '🙂']) expect(routingHash(key)).toBe(routingReference(key));
  });

  test('numbered SKUs spread over every shard, also for 2 and 4 shards', () => {
    for (const count of [2, 3, 4, 8]) {
      const perShard = new Array<number>(count).fill(0);
      for (let i = 0; i < 400; i++) perShard[shardForSku(`sku-${i}`, null, count)]! += 1;
      expect(Math.min(...perShard), `${count} shards: ${perShard.join(' ')}`).toBeGreaterThan(400 / count / 2);
    }
  });
});

describe('routing keys', () => {
  test('a SKU routes by its own name, or by its drop when it has one', () => {
    expect(routingKey('tee', null)).toBe('s:tee');
    expect(routingKey('tee', 'spring')).toBe('d:spring');
    expect(shardForSku('tee', null, 7)).toBe(routingReference('s:tee') % 7);
    expect(shardForSku('tee', 'spring', 7)).toBe(routingReference('d:spring') % 7);
    expect(shardForSku('cap', 'spring', 7)).toBe(shardForSku('tee', 'spring', 7));
    expect(shardForKey('anything', 1)).toBe(0);
  });
});

describe('reservation ids', () => {
  test('an id is the shard, a dot, the seq in base 36 and the nonce zero-padded to exactly 8 characters', () => {
    expect(nonceLength).toBe(8);
    expect(reservationId(3, 35, 'abc')).toBe('3.z00000abc');
    expect(reservationId(0, 36, '')).toBe('0.1000000000');
    expect(reservationId(12345, 1, 'q')).toBe('12345.10000000q');
    expect(reservationId(1, 1, 'abcdefgh')).toBe('1.1abcdefgh');
    expect(reservationId(2, 46_655, 'k9x2a1q7')).toBe('2.zzzk9x2a1q7');
  });

  test('ids of different seqs never collide, whatever the nonces (regression: "0.10" was seq 1 + nonce "0" and seq 36 + nonce "")', () => {
    expect(reservationId(0, 1, '0')).not.toBe(reservationId(0, 36, ''));
    const nonce = fc.stringMatching(/^[0-9a-z]{0,8}$/);
    fc.assert(fc.property(
      fc.integer({ min: 1, max: Number.MAX_SAFE_INTEGER }), fc.integer({ min: 1, max: Number.MAX_SAFE_INTEGER }), nonce, nonce,
      (seqA, seqB, nonceA, nonceB) => {
        fc.pre(seqA !== seqB);
        expect(reservationId(0, seqA, nonceA)).not.toBe(reservationId(0, seqB, nonceB));
      },
    ), { numRuns: 2000 });
  });

  test('an id gives back its shard, its seq and its padded nonce, and routes to its shard', () => {
    fc.assert(fc.property(
      fc.integer({ min: 0, max: 99_999 }), fc.integer({ min: 1, max: Number.MAX_SAFE_INTEGER }), fc.stringMatching(/^[0-9a-z]{0,8}$/),
      (shard, seq, nonce) => {
        const id = reservationId(shard, seq, nonce);
        const dot = id.indexOf('.');
        expect(id.slice(0, dot)).toBe(String(shard));
        expect(Number.parseInt(id.slice(dot + 1, -nonceLength), 36)).toBe(seq);
        expect(id.slice(-nonceLength)).toBe(nonce.padStart(nonceLength, '0'));
        expect(shardOfReservationId(id, 100_000)).toBe(shard);
        expect(shardOfReservationId(id, shard)).toBe(-1);
      },
    ), { numRuns: 1000 });
  });

  const valid: { id: string; count: number; shard: number }[] = [
    { id: '3.k9x2a1', count: 4, shard: 3 },
    { id: '0.1', count: 1, shard: 0 },
    { id: '10.abc', count: 11, shard: 10 },
    { id: '12345.a', count: 20_000, shard: 12345 },
    { id: `1.${'a'.repeat(62)}`, count: 2, shard: 1 },
  ];
  for (const { id, count, shard } of valid) {
    test(`${id.length > 20 ? `a ${id.length}-character id` : id} names shard ${shard} of ${count}`, () => {
      expect(shardOfReservationId(id, count)).toBe(shard);
    });
  }

  const malformed: { name: string; id: string; count?: number }[] = [
    { name: 'an id with no dot', id: '3k9x2a1' },
    { name: 'an id that starts with a dot', id: '.k9x2a1' },
    { name: 'an id with nothing after the dot', id: '3.' },
    { name: 'an empty id', id: '' },
    { name: 'a shard with a leading zero', id: '03.abc' },
    { name: 'a shard of 00', id: '00.abc' },
    { name: 'an uppercase letter after the dot', id: '3.aBc' },
    { name: 'a second dot', id: '3.ab.c' },
    { name: 'a dash after the dot', id: '3.ab-c' },
    { name: 'a space', id: '3.abc ' },
    { name: 'a negative shard', id: '-1.abc' },
    { name: 'a letter in the shard', id: '3a.abc' },
    { name: 'a non-ASCII digit in the shard', id: '٣.abc' },
    { name: 'a shard of six digits', id: '123456.a', count: 1_000_000 },
    { name: 'an id over 64 characters', id: `1.${'a'.repeat(63)}` },
    { name: 'a shard equal to the shard count', id: '4.abc', count: 4 },
    { name: 'a shard above the shard count', id: '9.abc', count: 4 },
  ];
  for (const { name, id, count = 8 } of malformed) {
    test(`${name} is not one of our ids`, () => {
      expect(shardOfReservationId(id, count)).toBe(-1);
    });
  }
});
