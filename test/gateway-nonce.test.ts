import { describe, expect, it } from 'vitest';
import fc from 'fast-check';
import { NonceSource } from '../src/gateway/http-gateway.js';
import { nonceLength, spellNonce } from '../src/domain/routing.js';

describe('reservation id nonces', () => {
  it('spells every 40-bit number exactly as toString(36) padded to 8 digits', () => {
    for (const n of [0, 1, 35, 36, 1295, 1296, 1296 ** 2 - 1, 1296 ** 2, 1296 ** 3 - 1, 1296 ** 3, 2 ** 32, 2 ** 40 - 1, 36 ** 8 - 1]) {
      expect(spellNonce(n)).toBe(n.toString(36).padStart(8, '0'));
    }
    fc.assert(fc.property(fc.integer({ min: 0, max: 2 ** 40 - 1 }), (n) => spellNonce(n) === n.toString(36).padStart(8, '0')), { numRuns: 20_000 });
  });

  it('draws nonces of exactly nonceLength base-36 digits, over the whole 40-bit range', () => {
    const source = new NonceSource();
    const seen = new Set<string>();
    let max = 0;
    for (let i = 0; i < 5_000; i++) {
      const nonce = source.next();
      expect(nonce).toMatch(/^[0-9a-z]+$/);
      expect(nonce).toHaveLength(nonceLength);
      seen.add(nonce);
      max = Math.max(max, parseInt(nonce, 36));
    }
    expect(seen.size).toBe(5_000);
    expect(max).toBeLessThan(2 ** 40);
    // 5,000 uniform draws below 2^40 all below 2^39 has odds 2^-5000: the top bit is drawn.
    expect(max).toBeGreaterThanOrEqual(2 ** 39);
  });
});
