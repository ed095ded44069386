// Token buckets keyed by buyer or client IP: `ratePerSec` tokens per second, refilled
// continuously, with a burst of one second's worth. It owns the buckets and their memory
// bound, and it must never stall the request path: no take() walks more than
// `entriesPerTakeMax` buckets, and no Map it keeps is large enough for V8 to stall on
// rehashing it. Forgetting a bucket must only ever make the limiter kinder, never stricter.

/** Work bound of one take(): sweep steps (a bucket examined, or the end of a partition
 * reached) plus buckets evicted at the cap. */
export const entriesPerTakeMax = 4;

/** A bucket idle this long has refilled to its burst, so forgetting it changes nothing. */
const idleForgetMs = 1000;

/** Tokens are kept in thousandths: with integer rates and an integer-ms clock every figure
 * is an exact integer, so the wait we answer is never a rounding error short of a token. */
const milliTokensPerToken = 1000;

/** V8 rehashes a Map's whole table when it grows or compacts away deleted entries: measured
 * here at ~85 ms for one Map of 1,000,000 buckets under churn, under 1 ms for 128 Maps of
 * ~7,800. So buckets are spread over enough Maps that none holds more than this. */
const partitionKeysMax = 8192;

interface Bucket {
  /** Kept here so the sweep and eviction can delete what they visit without an entry pair. */
  readonly key: string;
  milliTokens: number;
  updatedMs: number;
}

/** Counters for tests and benches; a few adds per take keep them cheap. */
export interface RateLimiterWork {
  takes: number;
  /** Sweep steps plus evictions, over all takes. */
  entriesExamined: number;
  entriesExaminedMaxPerTake: number;
  evictions: number;
  /** Complete walks of the sweep cursor over every partition. */
  sweepPasses: number;
}

// Why the incremental sweep alone bounds memory below the cap. Each take adds at most one
// bucket and, unless it evicts, makes N = 4 sweep steps. A pass of the cursor over L buckets
// in P partitions takes L + P steps plus one per bucket added meanwhile, so it ends within
// about (L + P)/(N - 1) takes: the cursor gains N - 1 a take on the newcomers. A bucket still
// there when a pass ends was added during the pass, or examined during it while idle < 1 s;
// either way it was touched in the last 1 s + D, D being the pass's duration. In the worst
// case, every take a new key at R takes/s (repeats add no bucket but still drive the sweep),
// D ≤ (L + P)/(3R), so the size when a pass ends is L' ≤ R·1 s + (L + P)/3 + 1: from an empty
// limiter L stays ≤ 1.5·R·1 s + P/2 + 2, and within a pass the size reaches at most
// L + (L + P)/3 + 1 ≤ 2·R·1 s + P + 4, the distinct keys of the last two seconds plus a
// little. With N = 2 the same reasoning gives L' ≤ R + L + P, which bounds nothing (a uniform
// flood happens to settle anyway, measured at 1.5·R; N = 1 grows without end), hence 4. The
// cap is the backstop for the rest, e.g. a clock stepped back, which makes buckets look young.

export class RateLimiter {
  /** A key's partition is a hash of it. Within a partition insertion order is eviction order:
   * at its share of keysMax a partition drops its oldest bucket, which for keysMax ≤ 8,192
   * (one partition) is the oldest of all, and otherwise one of the oldest. Skewed or hostile
   * keys can fill one partition early: that only forgets sooner, and no Map grows past its cap. */
  private readonly partitions: Map<string, Bucket>[];
  private readonly partitionMask: number;
  /** keysMax split evenly; partitions × this never exceeds keysMax. */
  private readonly partitionCap: number;
  private readonly burstMilliTokens: number;
  private bucketCount = 0;
  /** Persistent: a Map iterator tolerates deletions and sees later insertions. */
  private sweepCursor: Iterator<Bucket> | null = null;
  private sweepPartition = 0;
  /** Persistent per partition: a fresh iterator would walk again, inside the engine, the
   * holes left by every eviction since that table was last compacted. */
  private readonly evictCursors: (Iterator<Bucket> | null)[];
  private readonly counters: RateLimiterWork = {
    takes: 0, entriesExamined: 0, entriesExaminedMaxPerTake: 0, evictions: 0, sweepPasses: 0,
  };

  constructor(
    private readonly ratePerSec: number,
    keysMax = 1_000_000,
  ) {
    const cap = Math.max(1, Math.floor(keysMax));
    let count = 1;
    while (Math.ceil(cap / count) > partitionKeysMax) count *= 2;
    this.partitionMask = count - 1;
    this.partitionCap = Math.max(1, Math.floor(cap / count));
    // A disabled limiter stores nothing, not even empty partitions.
    this.partitions = ratePerSec > 0 ? Array.from({ length: count }, () => new Map<string, Bucket>()) : [];
    this.evictCursors = this.partitions.map(() => null);
    this.burstMilliTokens = ratePerSec * milliTokensPerToken;
  }

  get enabled(): boolean {
    return this.ratePerSec > 0;
  }

  get size(): number {
    return this.bucketCount;
  }

  /** A copy of the work counters (for tests and benches; the gateway never reads them). */
  get work(): RateLimiterWork {
    return { ...this.counters };
  }

  /**
   * 0 when the call may proceed (a token is taken), else milliseconds until one is free:
   * at least 1, at most ceil(1000 / ratePerSec), and exact for integer clocks, so a caller
   * that retries after exactly that long (and made no other call on this key) gets its token.
   */
  take(key: string, nowMs: number): number {
    if (this.ratePerSec <= 0) return 0;
    let examined = 0;
    const p = this.partitionMask === 0 ? 0 : partitionOf(key, this.partitionMask);
    const part = this.partitions[p] as Map<string, Bucket>;
    let b = part.get(key);
    if (b === undefined) {
      if (part.size >= this.partitionCap) examined += this.evictOldest(p, part);
      b = { key, milliTokens: this.burstMilliTokens, updatedMs: nowMs };
      part.set(key, b);
      this.bucketCount++;
    } else {
      // A clock stepped back refills nothing, and takes nothing away either.
      const elapsedMs = nowMs - b.updatedMs;
      if (elapsedMs > 0) b.milliTokens = Math.min(this.burstMilliTokens, b.milliTokens + elapsedMs * this.ratePerSec);
      b.updatedMs = nowMs;
    }
    // After the bucket's own update, so the sweep never forgets the bucket it answers for.
    examined += this.sweep(nowMs, entriesPerTakeMax - examined);
    const c = this.counters;
    c.takes++;
    c.entriesExamined += examined;
    if (examined > c.entriesExaminedMaxPerTake) c.entriesExaminedMaxPerTake = examined;
    if (b.milliTokens >= milliTokensPerToken) {
      b.milliTokens -= milliTokensPerToken;
      return 0;
    }
    return Math.ceil((milliTokensPerToken - b.milliTokens) / this.ratePerSec);
  }

  /** Drops the oldest-inserted bucket of a full partition in O(1) amortized; returns 1. */
  private evictOldest(p: number, part: Map<string, Bucket>): number {
    // Every bucket before this cursor has been deleted (newcomers go to the end), so its
    // next bucket is the partition's first. The partition is full, so one restart suffices.
    let cursor = this.evictCursors[p] ?? part.values();
    let step = cursor.next();
    if (step.done) {
      cursor = part.values();
      step = cursor.next();
    }
    this.evictCursors[p] = cursor;
    if (step.done) return 0; // unreachable: a full partition is not empty
    part.delete(step.value.key);
    this.bucketCount--;
    this.counters.evictions++;
    return 1;
  }

  /** Makes at most `budget` steps from where the last take left off, forgetting idle buckets. */
  private sweep(nowMs: number, budget: number): number {
    let steps = 0;
    while (steps < budget) {
      steps++;
      const part = this.partitions[this.sweepPartition] as Map<string, Bucket>;
      if (this.sweepCursor === null) this.sweepCursor = part.values();
      const step = this.sweepCursor.next();
      if (step.done) {
        // An idle eviction cursor would keep alive every table its partition has outgrown.
        if (part.size < this.partitionCap) this.evictCursors[this.sweepPartition] = null;
        this.sweepCursor = null;
        this.sweepPartition = (this.sweepPartition + 1) & this.partitionMask;
        if (this.sweepPartition === 0) this.counters.sweepPasses++;
        continue;
      }
      const b = step.value;
      if (nowMs - b.updatedMs >= idleForgetMs) {
        part.delete(b.key);
        this.bucketCount--;
      }
    }
    return steps;
  }
}

/** FNV-1a over the UTF-16 units, then murmur3's finalizer: FNV alone mixes its low bits poorly. */
function partitionOf(key: string, mask: number): number {
  let h = 0x811c9dc5;
  for (let i = 0; i < key.length; i++) h = Math.imul(h ^ key.charCodeAt(i), 0x01000193);
  h ^= h >>> 16;
  h = Math.imul(h, 0x85ebca6b);
  h ^= h >>> 13;
  h = Math.imul(h, 0xc2b2ae35);
  h ^= h >>> 16;
  return h & mask;
}
