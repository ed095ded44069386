// The gateway's token-bucket rate limiter on a simulated clock: the rate and burst hold
// exactly, the wait it answers is the time to the next token, keys do not interfere,
// forgetting idle buckets never changes an answer, memory stays bounded under a flood of
// distinct keys and at keysMax, and no take() does more than a constant amount of work.
// Work is counted, never timed: a busy machine must not fail these tests.

import fc from 'fast-check';
import { describe, expect, test } from 'vitest';
import { RateLimiter, entriesPerTakeMax } from '../src/engine/rate-limiter.js';

const t0Ms = 1_700_000_000_000;

/** The limiter's own arithmetic with nothing ever forgotten: what every answer must equal. */
class UnboundedBuckets {
  private readonly buckets = new Map<string, { milliTokens: number; updatedMs: number }>();
  constructor(private readonly ratePerSec: number) {}
  take(key: string, nowMs: number): number {
    const burst = this.ratePerSec * 1000;
    const b = this.buckets.get(key) ?? { milliTokens: burst, updatedMs: nowMs };
    b.milliTokens = Math.min(burst, b.milliTokens + Math.max(0, nowMs - b.updatedMs) * this.ratePerSec);
    b.updatedMs = nowMs;
    this.buckets.set(key, b);
    if (b.milliTokens >= 1000) {
      b.milliTokens -= 1000;
      return 0;
    }
    return Math.ceil((1000 - b.milliTokens) / this.ratePerSec);
  }
}

describe('rate and burst', () => {
  test('one key calling every millisecond for ten simulated seconds gets its burst plus ten seconds of rate', () => {
    const limiter = new RateLimiter(20);
    let allowed = 0;
    for (let ms = 0; ms < 10_000; ms++) if (limiter.take('buyer-1', t0Ms + ms) === 0) allowed++;
    expect(allowed).toBeGreaterThanOrEqual(20 + 20 * 10 - 1);
    expect(allowed).toBeLessThanOrEqual(20 + 20 * 10 + 1);
  });

  test('the burst is one second of rate and no more, however long the key was idle', () => {
    const limiter = new RateLimiter(5);
    limiter.take('k', t0Ms);
    let allowed = 0;
    for (let i = 0; i < 20; i++) if (limiter.take('k', t0Ms + 3_600_000) === 0) allowed++;
    expect(allowed).toBe(5);
  });

  test('the wait answered is the time until the next token, and a retry after exactly that long is allowed', () => {
    const limiter = new RateLimiter(20);
    for (let i = 0; i < 20; i++) expect(limiter.take('k', t0Ms)).toBe(0);
    expect(limiter.take('k', t0Ms)).toBe(50); // one token every 50 ms
    expect(limiter.take('k', t0Ms + 30)).toBe(20);
    expect(limiter.take('k', t0Ms + 49)).toBe(1);
    expect(limiter.take('k', t0Ms + 50)).toBe(0);
    expect(limiter.take('k', t0Ms + 50)).toBe(50);

    // 1000/3 ms per token is not whole: the wait rounds up, never down.
    const thirds = new RateLimiter(3);
    for (let i = 0; i < 3; i++) thirds.take('k', t0Ms);
    expect(thirds.take('k', t0Ms)).toBe(334);
    expect(thirds.take('k', t0Ms + 333)).toBe(1);
    expect(thirds.take('k', t0Ms + 334)).toBe(0);
  });

  test('a retry after exactly the answered wait gets a token, for any rate and any history', () => {
    fc.assert(
      fc.property(fc.integer({ min: 1, max: 100_000 }), fc.array(fc.nat(2_000), { minLength: 1, maxLength: 200 }), (rate, gapsMs) => {
        const limiter = new RateLimiter(rate);
        let nowMs = t0Ms;
        for (const gapMs of gapsMs) {
          nowMs += gapMs;
          const waitMs = limiter.take('k', nowMs);
          if (waitMs === 0) continue;
          expect(waitMs).toBeGreaterThanOrEqual(1);
          expect(waitMs).toBeLessThanOrEqual(Math.ceil(1000 / rate));
          nowMs += waitMs;
          expect(limiter.take('k', nowMs)).toBe(0);
        }
      }),
      { numRuns: 300 },
    );
  });

  test('a clock that steps back takes no tokens away and never answers more than one token of wait', () => {
    const limiter = new RateLimiter(10);
    for (let i = 0; i < 10; i++) limiter.take('k', t0Ms + 60_000);
    const waitMs = limiter.take('k', t0Ms); // a minute earlier
    expect(waitMs).toBe(100);
    expect(limiter.take('k', t0Ms + 100)).toBe(0);
  });

  test('distinct keys do not share a bucket', () => {
    const limiter = new RateLimiter(2);
    expect(limiter.take('a', t0Ms)).toBe(0);
    expect(limiter.take('a', t0Ms)).toBe(0);
    expect(limiter.take('a', t0Ms)).toBeGreaterThan(0);
    expect(limiter.take('b', t0Ms)).toBe(0);
    expect(limiter.take('b', t0Ms)).toBe(0);
    expect(limiter.take('b', t0Ms)).toBeGreaterThan(0);
    expect(limiter.take('a', t0Ms)).toBeGreaterThan(0);
  });

  test('a disabled limiter allows everything and stores nothing', () => {
    const limiter = new RateLimiter(0);
    expect(limiter.enabled).toBe(false);
    for (let i = 0; i < 10_000; i++) expect(limiter.take(`k${i % 7}`, t0Ms)).toBe(0);
    expect(limiter.size).toBe(0);
    expect(new RateLimiter(1).enabled).toBe(true);
  });
});

describe('forgetting idle buckets', () => {
  test('forgetting idle buckets never changes an answer', () => {
    const call = fc.record({ key: fc.nat(30), gapMs: fc.oneof(fc.nat(5), fc.integer({ min: 900, max: 1_100 })) });
    fc.assert(
      fc.property(fc.integer({ min: 1, max: 50 }), fc.array(call, { minLength: 1, maxLength: 400 }), (rate, calls) => {
        const limiter = new RateLimiter(rate);
        const reference = new UnboundedBuckets(rate);
        let nowMs = t0Ms;
        for (const { key, gapMs } of calls) {
          nowMs += gapMs;
          expect(limiter.take(`k${key}`, nowMs)).toBe(reference.take(`k${key}`, nowMs));
        }
      }),
      { numRuns: 200 },
    );
  });

  test('an idle bucket is forgotten, and its key then gets a full burst as it would have anyway', () => {
    const limiter = new RateLimiter(2);
    limiter.take('idle', t0Ms);
    limiter.take('idle', t0Ms);
    // The sweep walks 128 (mostly empty) partitions four steps a take: a pass every ~33 takes.
    for (let ms = 0; ms <= 1_200; ms++) limiter.take('busy', t0Ms + ms);
    expect(limiter.size).toBe(1); // 'idle' was swept; 'busy' is kept
    expect(limiter.take('idle', t0Ms + 1_200)).toBe(0);
    expect(limiter.take('idle', t0Ms + 1_200)).toBe(0);
    expect(limiter.take('idle', t0Ms + 1_200)).toBe(500);
  });

  test('a key hammering through a flood of other keys keeps its bucket and its rate', () => {
    const limiter = new RateLimiter(20);
    let allowed = 0;
    let n = 0;
    for (let ms = 0; ms < 10_000; ms++) {
      if (limiter.take('hammer', t0Ms + ms) === 0) allowed++;
      for (let i = 0; i < 100; i++) limiter.take(`other-${n++}`, t0Ms + ms);
    }
    expect(allowed).toBeGreaterThanOrEqual(20 + 20 * 10 - 1);
    expect(allowed).toBeLessThanOrEqual(20 + 20 * 10 + 1);
  });
});

describe('bounded memory and bounded work', () => {
  test('two million distinct keys at 100,000 a simulated second keep the size within two seconds of keys', () => {
    // The bound derived in rate-limiter.ts: with R new keys a second and P partitions, the size
    // never exceeds 2·R·1 s + P + 4. The default keysMax (1,000,000) gives 128 partitions of at
    // most 7,812 buckets, a cap this flood never reaches, so only the sweep bounds memory here.
    const keysPerSec = 100_000;
    const partitions = 128;
    const sizeBound = 2 * keysPerSec + partitions + 4;
    const limiter = new RateLimiter(20);
    let sizeMax = 0;
    for (let i = 0; i < 2_000_000; i++) {
      limiter.take(`flood-${i}`, t0Ms + Math.floor(i / (keysPerSec / 1000)));
      if (limiter.size > sizeMax) sizeMax = limiter.size;
    }
    expect(sizeMax).toBeLessThanOrEqual(sizeBound);
    // Nothing touched in the last second may be forgotten: all of its keys are still there.
    expect(limiter.size).toBeGreaterThanOrEqual(keysPerSec);
    const work = limiter.work;
    expect(work.evictions).toBe(0);
    expect(work.entriesExaminedMaxPerTake).toBeLessThanOrEqual(entriesPerTakeMax);
  });

  test('at keysMax the oldest key is dropped, a key seen again keeps its bucket, and the size never exceeds keysMax', () => {
    const keysMax = 1_000; // one partition: the oldest of its partition is the oldest of all
    const limiter = new RateLimiter(1, keysMax);
    for (let i = 0; i < keysMax; i++) expect(limiter.take(`k${i}`, t0Ms)).toBe(0);
    expect(limiter.size).toBe(keysMax);
    expect(limiter.take('k0', t0Ms)).toBe(1000); // seen again: still its empty bucket

    expect(limiter.take('newcomer', t0Ms)).toBe(0);
    expect(limiter.size).toBe(keysMax);
    expect(limiter.take('k0', t0Ms)).toBe(0); // k0 was the oldest: dropped, so a full bucket
    expect(limiter.take('k2', t0Ms)).toBe(1000); // k0's return dropped k1, not k2
    expect(limiter.take('k1', t0Ms)).toBe(0);
    expect(limiter.size).toBe(keysMax);

    let sizeMax = 0;
    for (let i = 0; i < 50_000; i++) {
      limiter.take(`more-${i}`, t0Ms);
      sizeMax = Math.max(sizeMax, limiter.size);
    }
    expect(sizeMax).toBe(keysMax);
    const work = limiter.work;
    expect(work.evictions).toBe(50_003);
    expect(work.entriesExaminedMaxPerTake).toBeLessThanOrEqual(entriesPerTakeMax);
  });

  test('with many partitions the size never exceeds keysMax and the buckets dropped are the oldest', () => {
    const keysMax = 100_000;
    const limiter = new RateLimiter(1, keysMax);
    const keys = 300_000;
    let sizeMax = 0;
    for (let i = 0; i < keys; i++) {
      limiter.take(`k${i}`, t0Ms); // never idle: only the cap can forget
      if (limiter.size > sizeMax) sizeMax = limiter.size;
    }
    expect(sizeMax).toBeLessThanOrEqual(keysMax);
    expect(limiter.size).toBeGreaterThan(keysMax * 0.99);
    // The last keys are far younger than any partition's oldest bucket: all still limited.
    for (let i = keys - 10_000; i < keys; i++) expect(limiter.take(`k${i}`, t0Ms)).toBe(1000);
    // The first keys were the oldest everywhere: all forgotten, so all allowed again.
    for (let i = 0; i < 10_000; i++) expect(limiter.take(`k${i}`, t0Ms)).toBe(0);
    expect(limiter.work.entriesExaminedMaxPerTake).toBeLessThanOrEqual(entriesPerTakeMax);
  });

  test(`no take examines more than ${entriesPerTakeMax} buckets, whatever the mix of keys, idleness and cap`, () => {
    const limiter = new RateLimiter(5, 2_000);
    let nowMs = t0Ms;
    let examinedBefore = 0;
    let examinedMax = 0;
    let sizeMax = 0;
    for (let i = 0; i < 200_000; i++) {
      // Bursts of new keys, repeats, and pauses long enough for whole swathes to go idle.
      if (i % 50_000 === 0) nowMs += 5_000;
      else if (i % 7 === 0) nowMs += 1;
      const key = i % 3 === 0 ? `repeat-${i % 500}` : `new-${i}`;
      limiter.take(key, nowMs);
      // Counted from outside too, so a wrong maximum in the limiter's own counter cannot hide a call.
      const examined = limiter.work.entriesExamined;
      examinedMax = Math.max(examinedMax, examined - examinedBefore);
      examinedBefore = examined;
      sizeMax = Math.max(sizeMax, limiter.size);
    }
    expect(examinedMax).toBeLessThanOrEqual(entriesPerTakeMax);
    expect(sizeMax).toBeLessThanOrEqual(2_000);
    const work = limiter.work;
    expect(work.entriesExaminedMaxPerTake).toBe(examinedMax);
    expect(work.evictions).toBeGreaterThan(0);
    expect(work.sweepPasses).toBeGreaterThan(0);
  });
});
