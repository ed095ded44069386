// CRC32C against published vectors, a bit-by-bit reference, and its chaining contract.

import { describe, expect, it } from 'vitest';
import { crc32c } from '../src/wal/crc32c.js';

const ascii = (s: string): Uint8Array => new TextEncoder().encode(s);
const bytesOf = (length: number, byteAt: (i: number) => number): Uint8Array =>
  Uint8Array.from({ length }, (_, i) => byteAt(i));

describe('crc32c', () => {
  // The first two are the standard check values; the four 32-byte vectors are from RFC 3720
  // (iSCSI), appendix B.4.
  const vectors: { name: string; input: Uint8Array; crc: number }[] = [
    { name: 'the ASCII digits 1 to 9', input: ascii('123456789'), crc: 0xe3069283 },
    { name: 'empty input', input: new Uint8Array(0), crc: 0 },
    { name: 'the single letter a', input: ascii('a'), crc: 0xc1d04330 },
    { name: 'the quick brown fox sentence', input: ascii('The quick brown fox jumps over the lazy dog'), crc: 0x22620404 },
    { name: '32 zero bytes', input: new Uint8Array(32), crc: 0x8a9136aa },
    { name: '32 bytes of 0xff', input: bytesOf(32, () => 0xff), crc: 0x62a8ab43 },
    { name: '32 ascending bytes', input: bytesOf(32, (i) => i), crc: 0x46dd794e },
    { name: '32 descending bytes', input: bytesOf(32, (i) => 31 - i), crc: 0x113fdb5c },
  ];

  it.each(vectors)('matches the known value for $name', ({ input, crc }) => {
    expect(crc32c(input)).toBe(crc);
  });

  it('returns an unsigned 32-bit number', () => {
    const crc = crc32c(ascii('123456789'));
    expect(crc).toBeGreaterThan(0x7fffffff);
    expect(Number.isInteger(crc)).toBe(true);
  });

  it('gives the same result when computed in chunks, each seeded with the previous result', () => {
    const data = bytesOf(1000, (i) => (i * 2654435761) >>> 24);
    const oneShot = crc32c(data);
    for (const cuts of [[0], [1], [7], [8], [9], [3, 17, 500], [999], [1000], [1, 2, 3, 4, 5, 6, 7, 8, 9]]) {
      let crc = 0;
      let start = 0;
      for (const end of [...cuts, data.length]) {
        crc = crc32c(data, start, end, crc);
        start = end;
      }
      expect(crc, `cuts ${cuts.join(',')}`).toBe(oneShot);
    }
  });

  it('computes the checksum of the range from start to end only', () => {
    const data = bytesOf(300, (i) => (i * 97) & 0xff);
    for (const [start, end] of [[0, 0], [5, 5], [1, 299], [13, 14], [100, 300], [7, 71]] as const) {
      expect(crc32c(data, start, end)).toBe(crc32c(data.slice(start, end)));
    }
  });

  it('treats a seed as the checksum of data that came before', () => {
    expect(crc32c(ascii('56789'), 0, 5, crc32c(ascii('1234')))).toBe(0xe3069283);
  });

  it('rejects a range outside the input and a seed that is not a u32', () => {
    const data = new Uint8Array(10);
    expect(() => crc32c(data, 0, 11)).toThrow(RangeError);
    expect(() => crc32c(data, 5, 4)).toThrow(RangeError);
    expect(() => crc32c(data, -1, 4)).toThrow(RangeError);
    expect(() => crc32c(data, 0, 10, -1)).toThrow(RangeError);
    expect(() => crc32c(data, 0, 10, 2 ** 32)).toThrow(RangeError);
  });

  it('agrees with a bit-by-bit reference implementation on random inputs', () => {
    const reference = (data: Uint8Array): number => {
      let crc = ~0;
      for (const byte of data) {
        crc ^= byte;
        for (let bit = 0; bit < 8; bit++) crc = crc & 1 ? (crc >>> 1) ^ 0x82f63b78 : crc >>> 1;
      }
      return ~crc >>> 0;
    };
    let seed = 12345;
    const next = (): number => (seed = (seed * 1103515245 + 12345) >>> 0) >>> 24;
    for (let length = 0; length < 100; length++) {
      const data = bytesOf(length, next);
      expect(crc32c(data)).toBe(reference(data));
    }
  });
});
