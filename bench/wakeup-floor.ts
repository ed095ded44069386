// `npm run bench:floor`: the floor this machine puts under any answer that crosses threads.
// Two threads of one process play ping-pong (a message there and back, then 1 ms of rest,
// for BENCH_FLOOR_SECONDS), once in a small process and once with BENCH_FLOOR_MIB of live
// objects held by the worker, about what a shard of a million holds keeps. No engine code
// runs: every wait it reports is the kernel's, not ours.
//
// Why it exists: on the machine these benchmarks were written on, the kernel's memory access
// monitor (DAMON's kdamond, sampling physical memory every 500 ms to page out cold memory)
// holds one of the two cores for 10-40 ms at each sample, and the kernel is built without
// preemption (PREEMPT_NONE), so a thread woken on that core waits until the sample is done.
// A bare one-thread HTTP server seldom sleeps on a wake-up from another thread; the engine
// crosses threads several times per answer (gateway, shard, the thread pool's fdatasync), so
// those waits land in its p99. Every p99 and worst answer a benchmark reports on such a
// machine has this floor under it; this probe measures it, side by side with a small process.

import { Worker } from 'node:worker_threads';
import * as path from 'node:path';
import { pathToFileURL } from 'node:url';
import { finish, fmt, machineLine, markdownTable, median, progress, runInfo, envInt } from './bench-report.js';
import { emptyLatency, latencyHistogram, latencySummary, recordUs } from '../src/cli/report-kit.js';

export interface WakeupFloor {
  /** MiB of live objects the worker held. */
  heldMiB: number;
  rssMiB: number;
  roundTrips: number;
  p50Ms: number;
  p99Ms: number;
  p999Ms: number;
  worstMs: number;
  /** Stalls: runs of round trips slower than 10 ms (one stall may hold several), and the median time from one to the next (ms). */
  stalls: number;
  stallEveryMs: number | null;
}

/** The worker's side: holds `objects` small objects (like holds), then echoes every message. */
const workerSource = `
const { parentPort, workerData } = require('node:worker_threads');
const keep = [];
for (let i = 0; i < workerData.objects; i++) keep.push({ id: 'r' + i, sku: 's' + (i % 100), n: i, at: 1700000000000 + i });
parentPort.on('message', (m) => parentPort.postMessage(m));
parentPort.postMessage(keep.length);
`;

/** About 150 bytes of heap per held object (measured: 5,000,000 of them made a 794 MiB process). */
const bytesPerObject = 150;

export async function wakeupFloor(seconds: number, heldMiB: number): Promise<WakeupFloor> {
  const objects = Math.floor((heldMiB * 1024 * 1024) / bytesPerObject);
  const worker = new Worker(workerSource, { eval: true, workerData: { objects }, resourceLimits: { maxOldGenerationSizeMb: Math.max(256, heldMiB * 4) } });
  try {
    await new Promise((resolve, reject) => {
      worker.once('message', resolve);
      worker.once('error', reject);
    });
    // The worker's heap settles (the collections that follow building it) before the clock starts.
    await new Promise((r) => setTimeout(r, 2000));
    const lat = latencyHistogram();
    const slowAt: number[] = [];
    let lastSlowEnd = 0;
    const start = performance.now();
    await new Promise<void>((resolve) => {
      const once = (): void => {
        const sent = performance.now();
        worker.once('message', () => {
          const ms = performance.now() - sent;
          recordUs(lat, ms * 1000);
          // A new stall, or more of the one before (a slow round trip within 100 ms of it).
          if (ms > 10 && !(slowAt.length > 0 && sent - lastSlowEnd < 100)) slowAt.push(sent);
          if (ms > 10) lastSlowEnd = sent + ms;
          if (performance.now() - start < seconds * 1000) setTimeout(once, 1);
          else resolve();
        });
        worker.postMessage(0);
      };
      once();
    });
    const l = latencySummary(lat) ?? emptyLatency;
    const gaps = slowAt.slice(1).map((t, i) => t - slowAt[i]!);
    return {
      heldMiB, rssMiB: Math.round(process.memoryUsage().rss / 2 ** 20), roundTrips: l.count,
      p50Ms: l.p50, p99Ms: l.p99, p999Ms: l.p99_9, worstMs: l.max,
      stalls: slowAt.length, stallEveryMs: gaps.length === 0 ? null : median(gaps),
    };
  } finally {
    await worker.terminate();
  }
}

async function main(): Promise<void> {
  const run = runInfo();
  const seconds = envInt('BENCH_FLOOR_SECONDS', 10, 2, 600);
  const heldMiB = envInt('BENCH_FLOOR_MIB', 800, 16, 16_384);
  progress(`bench:floor on ${machineLine(run)}`);
  const rows: WakeupFloor[] = [];
  for (const mib of [0, heldMiB]) {
    progress(`ping-pong between two threads for ${seconds} s, the worker holding ${fmt(mib)} MiB`);
    rows.push(await wakeupFloor(seconds, mib));
  }
  const monitor = run.machine.kernelMonitor;
  const f = (x: number): string => fmt(x, x < 10 ? 2 : 0);
  const table = markdownTable(['live objects in the worker', 'process RSS', 'round trips', 'p50 ms', 'p99 ms', 'p99.9 ms', 'worst ms', 'stalls (round trips over 10 ms)', 'median time from one to the next'],
    rows.map((r) => [`${fmt(r.heldMiB)} MiB`, `${fmt(r.rssMiB)} MiB`, fmt(r.roundTrips), f(r.p50Ms), f(r.p99Ms), f(r.p999Ms), f(r.worstMs), fmt(r.stalls), r.stallEveryMs === null ? '-' : `${fmt(r.stallEveryMs)} ms`]));
  finish('floor', { bench: 'floor', ...run, seconds, kernelMonitor: monitor, rows },
    `bench:floor: ${machineLine(run)}\ncommand: ${run.command}\n${monitor ?? 'no kernel memory monitor found'}\n\n${table}`);
}

const runAsMain = process.argv[1] !== undefined && import.meta.url === pathToFileURL(path.resolve(process.argv[1])).href;
if (runAsMain) {
  main().catch((e: unknown) => {
    process.stderr.write(`bench:floor failed: ${e instanceof Error ? e.stack : String(e)}\n`);
    process.exitCode = 1;
  });
}
