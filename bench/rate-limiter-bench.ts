// Worst single take() and mean cost of the gateway's rate limiter, against the version it
// replaced (OldRateLimiter, copied from before the rewrite), on the same calls in the same
// process. It owns only in-memory limiters and a simulated clock; it must never read the
// wall clock into a limiter, so both see exactly the same calls. Prints plain lines.
//
//   node dist/bench/rate-limiter-bench.js            (after npx tsc -p tsconfig.json)

import { PerformanceObserver, type PerformanceEntry } from 'node:perf_hooks';
import { RateLimiter, type RateLimiterWork } from '../src/engine/rate-limiter.js';

// ---- the implementation before the rewrite, verbatim but for its name ----

interface OldBucket {
  tokens: number;
  updatedMs: number;
}

export class OldRateLimiter {
  private readonly buckets = new Map<string, OldBucket>();
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

// ---- scenarios ----

interface Limiter {
  take(key: string, nowMs: number): number;
  readonly size: number;
}

interface Scenario {
  name: string;
  ratePerSec: number;
  keysMax: number;
  /** Taken once each at t0 before the clock starts. */
  prefill: string[];
  /** The timed calls, in order; call i happens at t0 + floor(i / callsPerMs). */
  calls: string[];
  callsPerMs: number;
}

const t0Ms = 1_700_000_000_000;
const callsTimed = 3_000_000;
const liveBuckets = 1_000_000;

/** 1,000,000 live buckets at the cap: a pool cycled every 0.84 simulated s (never idle) plus
 * one new key per 100 calls. Every new key meets a full map, and the returning pool keys
 * then keep it full: eviction on (nearly) every call, the old forced sweep every 100k. */
function atCapScenario(): Scenario {
  const pool = Array.from({ length: liveBuckets }, (_, i) => `buyer-${i.toString(36).padStart(6, '0')}`);
  const calls = new Array<string>(callsTimed);
  let next = 0;
  for (let i = 0; i < callsTimed; i++) {
    calls[i] = i % 100 === 99 ? `fresh-${i.toString(36)}` : (pool[next++ % liveBuckets] as string);
  }
  return { name: '1M live buckets at keysMax, 1% new keys', ratePerSec: 20, keysMax: liveBuckets, prefill: pool, calls, callsPerMs: 1200 };
}

/** Only distinct keys, 100,000 a simulated second for 30 s: the old periodic sweep fires,
 * and the new limiter's size shows its bound (about two seconds' worth of keys). */
function floodScenario(): Scenario {
  const calls = Array.from({ length: callsTimed }, (_, i) => `flood-${i.toString(36)}`);
  return { name: '3M distinct keys at 100k/s simulated', ratePerSec: 20, keysMax: liveBuckets, prefill: [], calls, callsPerMs: 100 };
}

// ---- measurement ----

/** Every scenario runs this many times per implementation, each on a fresh limiter. A
 * busy machine preempts random calls; V8's and our own stalls recur at the same call. */
const runs = 3;

interface RunFigures {
  /** Per call, the fastest of the runs; then the slowest call: what recurs, not preemption. */
  worstCallMs: number;
  /** The slowest call of any run, preemption and GC pauses included. */
  rawWorstCallMs: number;
  p999Us: number;
  p9999Us: number;
  callsOver1Ms: number;
  /** Best of the runs, each timed as one loop, so without the per-call clock reads. */
  meanNsPerCall: number;
  sizeMax: number;
  sizeEnd: number;
  gcPauseMaxMs: number;
  /** The new limiter's own count of its work, from the first run; null for the old one. */
  work: RateLimiterWork | null;
}

/** The longest GC pause while `run` runs, so a reader can tell a collector pause from our own work. */
async function withGcWatch<T>(run: () => T): Promise<{ result: T; gcPauseMaxMs: number }> {
  let gcPauseMaxMs = 0;
  const obs = new PerformanceObserver((list) => {
    for (const e of list.getEntries() as PerformanceEntry[]) gcPauseMaxMs = Math.max(gcPauseMaxMs, e.duration);
  });
  obs.observe({ entryTypes: ['gc'] });
  const result = run();
  // GC entries are delivered asynchronously: let them arrive before reading the maximum.
  await new Promise((resolve) => setTimeout(resolve, 50));
  obs.disconnect();
  return { result, gcPauseMaxMs };
}

function prefill(l: Limiter, s: Scenario): void {
  for (const key of s.prefill) l.take(key, t0Ms);
}

/** Each call timed on its own, keeping per call the fastest so far. Returns the run's slowest call. */
function timedEach(l: Limiter, s: Scenario, fastestNs: Float64Array): { sizeMax: number; slowestNs: number } {
  let sizeMax = l.size;
  let slowestNs = 0;
  const calls = s.calls;
  for (let i = 0; i < calls.length; i++) {
    const nowMs = t0Ms + Math.floor(i / s.callsPerMs);
    const startNs = process.hrtime.bigint();
    l.take(calls[i] as string, nowMs);
    const ns = Number(process.hrtime.bigint() - startNs);
    if (ns < (fastestNs[i] as number)) fastestNs[i] = ns;
    if (ns > slowestNs) slowestNs = ns;
    if (l.size > sizeMax) sizeMax = l.size;
  }
  return { sizeMax, slowestNs };
}

/** The same calls timed as one loop: the mean without the per-call clock reads. */
function timedWhole(l: Limiter, s: Scenario): number {
  const calls = s.calls;
  const startNs = process.hrtime.bigint();
  for (let i = 0; i < calls.length; i++) l.take(calls[i] as string, t0Ms + Math.floor(i / s.callsPerMs));
  return Number(process.hrtime.bigint() - startNs) / calls.length;
}

async function measure(make: () => Limiter, s: Scenario): Promise<RunFigures> {
  const fastestNs = new Float64Array(s.calls.length).fill(Number.POSITIVE_INFINITY);
  let rawWorstNs = 0;
  let sizeMax = 0;
  let sizeEnd = 0;
  let gcPauseMaxMs = 0;
  let work: RateLimiterWork | null = null;
  let meanNsPerCall = Number.POSITIVE_INFINITY;
  for (let run = 0; run < runs; run++) {
    let limiter = make();
    prefill(limiter, s);
    const each = await withGcWatch(() => timedEach(limiter, s, fastestNs));
    rawWorstNs = Math.max(rawWorstNs, each.result.slowestNs);
    sizeMax = Math.max(sizeMax, each.result.sizeMax);
    gcPauseMaxMs = Math.max(gcPauseMaxMs, each.gcPauseMaxMs);
    sizeEnd = limiter.size;
    if (run === 0 && limiter instanceof RateLimiter) work = limiter.work;
    limiter = make();
    prefill(limiter, s);
    meanNsPerCall = Math.min(meanNsPerCall, timedWhole(limiter, s));
  }
  const sorted = fastestNs.slice().sort();
  const at = (q: number): number => sorted[Math.min(sorted.length - 1, Math.floor(q * sorted.length))] as number;
  let callsOver1Ms = 0;
  for (const ns of fastestNs) if (ns > 1e6) callsOver1Ms++;
  return {
    worstCallMs: (sorted[sorted.length - 1] as number) / 1e6,
    rawWorstCallMs: rawWorstNs / 1e6,
    p999Us: at(0.999) / 1e3,
    p9999Us: at(0.9999) / 1e3,
    callsOver1Ms,
    meanNsPerCall,
    sizeMax,
    sizeEnd,
    gcPauseMaxMs,
    work,
  };
}

function line(impl: string, f: RunFigures): string {
  const w = f.work;
  const work = w === null ? '' : `\n       ${impl}: at most ${w.entriesExaminedMaxPerTake} buckets examined in one take, ` +
    `${(w.entriesExamined / w.takes).toFixed(2)} on average; ${w.evictions} evictions, ${w.sweepPasses} sweep passes`;
  return `  ${impl.padEnd(4)} worst call ${f.worstCallMs.toFixed(3)} ms (raw ${f.rawWorstCallMs.toFixed(1)} ms); ` +
    `p99.9 ${f.p999Us.toFixed(1)} µs; p99.99 ${f.p9999Us.toFixed(1)} µs; calls > 1 ms: ${f.callsOver1Ms}; ` +
    `mean ${f.meanNsPerCall.toFixed(0)} ns/call; size max ${f.sizeMax}, end ${f.sizeEnd}; longest GC pause ${f.gcPauseMaxMs.toFixed(1)} ms` + work;
}

async function main(): Promise<void> {
  console.log(`rate limiter bench: node ${process.version}, ${callsTimed} timed calls per run, ${runs} runs per implementation`);
  console.log('worst call: per call the fastest of the runs, then the slowest call (raw: slowest of any run, preemption included);');
  console.log('p99.9, p99.99 and calls > 1 ms are of the same per-call figures; mean: best run, timed as one loop');
  for (const build of [atCapScenario, floodScenario]) {
    const s = build();
    console.log(`${s.name} (rate ${s.ratePerSec}/s, keysMax ${s.keysMax}, prefill ${s.prefill.length})`);
    console.log(line('new', await measure(() => new RateLimiter(s.ratePerSec, s.keysMax), s)));
    console.log(line('old', await measure(() => new OldRateLimiter(s.ratePerSec, s.keysMax), s)));
  }
}

await main();
