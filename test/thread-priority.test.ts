// A worker thread lowers its own priority (the checkpointer's nice 19): only its own, only
// lower, and it reports that it is lower than the thread that started it, or why not.
import { getPriority } from 'node:os';
import { dirname, join } from 'node:path';
import { pathToFileURL } from 'node:url';
import { Worker } from 'node:worker_threads';
import { describe, expect, it } from 'vitest';
import { lowerThisThreadPriority } from '../src/engine/thread-priority.js';
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

describe('lowerThisThreadPriority', () => {
  it('never renices the main thread, and refuses a nice value outside 1..19', () => {
    const before = getPriority(process.pid);
    expect(lowerThisThreadPriority(19)).toEqual({ applied: false, why: 'the main thread is never reniced' });
    expect(lowerThisThreadPriority(0)).toMatchObject({ applied: false });
    expect(lowerThisThreadPriority(20)).toMatchObject({ applied: false });
    expect(lowerThisThreadPriority(2.5)).toMatchObject({ applied: false });
    expect(getPriority(process.pid)).toBe(before);
  });

  it.runIf(process.platform === 'linux')('lowers a worker thread alone: the process\'s main thread keeps its nice value', async () => {
    const before = getPriority(process.pid);
    expect(await inWorker([19])).toEqual([{ applied: true, nice: 19 }]);
    expect(getPriority(process.pid)).toBe(before);
  });

  it.runIf(process.platform === 'linux')('never raises a priority, and says it is not lower when it starts as low as asked (a thread started by one already at that nice value)', async () => {
    const out = await inWorker([10, 'nested', 5, 10, 19]);
    expect(out).toEqual([
      { applied: true, nice: 10 },
      // The nested thread inherited nice 10: asking for 5 or 10 makes it no lower than its parent.
      { applied: false, why: 'already at nice 10, no lower than the threads beside it' },
      { applied: false, why: 'already at nice 10, no lower than the threads beside it' },
      { applied: true, nice: 19 },
    ]);
  });
});
