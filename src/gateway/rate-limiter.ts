// Token buckets keyed by buyer or client IP: `rate` tokens per second, a burst of one
// second's worth. Memory is bounded: idle buckets (full again) are swept, and past
// `keysMax` the oldest keys are dropped first, which can only make the limiter kinder.

interface Bucket {
  tokens: number;
  updatedMs: number;
}

export class RateLimiter {
  private readonly buckets = new Map<string, Bucket>();
  private lastSweepMs = 0;

  constructor(
    private readonly ratePerSec: number,
    private readonly keysMax = 1_000_000,
  ) {}

  get enabled(): boolean {
    return this.ratePerSec > 0;
  }

  get size(): number {
    return this.buckets.size;
  }

  /** 0 when the call may proceed (a token is taken), else milliseconds until one is free. */
  take(key: string, nowMs: number): number {
    if (this.ratePerSec <= 0) return 0;
    const burst = this.ratePerSec;
    let b = this.buckets.get(key);
    if (b === undefined) {
      if (this.buckets.size >= this.keysMax) this.sweep(nowMs, true);
      b = { tokens: burst, updatedMs: nowMs };
      this.buckets.set(key, b);
    } else {
      const refill = ((nowMs - b.updatedMs) * this.ratePerSec) / 1000;
      b.tokens = Math.min(burst, b.tokens + refill);
      b.updatedMs = nowMs;
    }
    if (nowMs - this.lastSweepMs > 10_000) this.sweep(nowMs, false);
    if (b.tokens >= 1) {
      b.tokens -= 1;
      return 0;
    }
    return Math.ceil(((1 - b.tokens) * 1000) / this.ratePerSec);
  }

  private sweep(nowMs: number, force: boolean): void {
    this.lastSweepMs = nowMs;
    const fullAfterMs = 1000; // a bucket idle for a second is full again: forget it
    for (const [key, b] of this.buckets) {
      if (nowMs - b.updatedMs >= fullAfterMs) this.buckets.delete(key);
    }
    if (force) {
      // Still full of active keys: drop the oldest tenth (Map order is insertion order).
      let drop = Math.ceil(this.buckets.size / 10);
      for (const key of this.buckets.keys()) {
        if (drop-- <= 0) break;
        this.buckets.delete(key);
      }
    }
  }
}
