// A worker thread lowers its own priority (the checkpointer's nice 19): only its own, only
// lower, and it reports that it is lower than the thread that started it, or why not.
import { getPriority } from 'node:os';
import { dirname, join } from 'node:path';
import { pathToFileURL } from 'node:url';
import { isMainThread, Worker } from 'node:worker_threads';
import { describe, expect, it } from 'vitest';
import { backgroundCpuShare, lowerThisThreadPriority } from '../src/engine/thread-priority.js';
import { engineEntry } from './support/engine-process.js';

// The built module (a worker thread cannot load TypeScript), beside the engine the suites run.
const moduleUrl = pathToFileURL(join(dirname(engineEntry), 'engine', 'thread-priority.js')).href;

/**
 * Runs `steps` in a new worker thread: each asks for a nice value (a number) or starts a
 * nested worker that runs the rest (the string 'nested'); returns every outcome in order.
 */
function inWorker(steps: (number | 'nested')[]): Promise<unknown[]> {
  const source = `
    const { parentPort, workerData, Worker } = require('node:worker_threads');
    (async () => {
      const { lowerThisThreadPriority } = await import(workerData.moduleUrl);
      const out = [];
      for (let i = 0; i < workerData.steps.length; i++) {
        const step = workerData.steps[i];
        if (step === 'nested') {
          const nested = new Worker(workerData.source, { eval: true, workerData: { ...workerData, steps: workerData.steps.slice(i + 1) } });
          out.push(...await new Promise((resolve, reject) => { nested.once('message', resolve); nested.once('error', reject); }));
          break;
        }
        out.push(lowerThisThreadPriority(step));
      }
      parentPort.postMessage(out);
    })().catch((e) => parentPort.postMessage([{ error: String(e) }]));
  `;
  const w = new Worker(source, { eval: true, workerData: { moduleUrl, steps, source } });
  return new Promise((resolve, reject) => {
    w.once('message', (m: unknown[]) => { void w.terminate(); resolve(m); });
    w.once('error', reject);
  });
}

describe('backgroundCpuShare', () => {
  it('runs without rests only when the kernel yields for the thread; a share asked wins, within 5..100 %', () => {
    // Not yielding: not reniced at all, or (an engine under nice 10 whose checkpointer went to
    // 19) reniced but not far enough (review).
    expect(backgroundCpuShare(undefined, true)).toBe(1);
    expect(backgroundCpuShare(undefined, false)).toBe(0.25);
    expect(backgroundCpuShare(0.5, true)).toBe(0.5);
    expect(backgroundCpuShare(0.01, false)).toBe(0.05);
    expect(backgroundCpuShare(3, false)).toBe(1);
  });
});

describe('lowerThisThreadPriority', () => {
  // Run in vitest's main thread: with --pool=threads the test itself is a worker, and would renice itself.
  it.runIf(isMainThread)('never renices the main thread, and refuses a nice value outside 0..19', () => {
    const before = getPriority(process.pid);
    expect(lowerThisThreadPriority(19)).toEqual({ nice: null, yields: false, why: 'the main thread is never reniced' });
    for (const bad of [20, -1, 2.5]) expect(lowerThisThreadPriority(bad)).toMatchObject({ nice: null, yields: false });
    expect(getPriority(process.pid)).toBe(before);
  });

  it.runIf(process.platform === 'linux')('lowers a worker thread alone (the process\'s main thread keeps its nice value), and 0 leaves it as it is', async () => {
    const before = getPriority(process.pid);
    expect(await inWorker([19])).toEqual([{ nice: 19, yields: 19 - before >= 10, why: expect.stringMatching(/^nice 19, /) }]);
    expect(await inWorker([0])).toEqual([{ nice: before, yields: false, why: 'not asked (nice 0)' }]);
    expect(getPriority(process.pid)).toBe(before);
  });

  it.runIf(process.platform === 'linux' && getPriority(process.pid) === 0)('counts on the kernel only 10 nice steps below the thread that started it, and never raises a priority', async () => {
    const out = await inWorker([10, 'nested', 5, 10, 19]);
    expect(out).toEqual([
      { nice: 10, yields: true, why: 'nice 10, 10 below the thread that started it' },
      // The nested thread inherited nice 10 (an engine run under nice 10): 5 is not a raise, 10
      // is no lower, and 19 only 9 below: it must pace itself.
      { nice: 10, yields: false, why: 'nice 10, only 0 below the thread that started it (at 10; 10 needed)' },
      { nice: 10, yields: false, why: 'nice 10, only 0 below the thread that started it (at 10; 10 needed)' },
      { nice: 19, yields: false, why: 'nice 19, only 9 below the thread that started it (at 10; 10 needed)' },
    ]);
  });
});
