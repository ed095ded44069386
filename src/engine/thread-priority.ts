// A worker thread's own scheduling priority. On Linux each thread has its own nice value
// (setpriority(PRIO_PROCESS, tid) renices that thread alone), so a background thread can ask
// the kernel to run it only on what the busy threads leave: the kernel then yields for it at
// once, on every core, which no rest the thread takes by its own clock can match. Elsewhere
// (macOS, Windows) the same call would renice the whole process, so it is not made there.

import * as fs from 'node:fs';
import * as os from 'node:os';
import { isMainThread } from 'node:worker_threads';

export interface PriorityOutcome {
  /** This thread's nice value after the call (null: not known here, or the main thread). */
  nice: number | null;
  /**
   * Whether the thread is now far enough below the one that started it for the kernel to
   * give it only what the others leave (yieldGapMin nice steps); if not, it must pace itself.
   */
  yields: boolean;
  why: string;
}

/**
 * Nice steps below the threads beside it from which a thread gets only what they leave: each
 * step is a weight about 1.25 times smaller, so 10 steps about 9 times. An engine started
 * under `nice -n 18` whose checkpointer goes to 19 is one step lower: nearly an equal.
 */
export const yieldGapMin = 10;

/**
 * The share of a core a background thread's work runs at: the one asked, else all of it
 * when the kernel yields for the thread (PriorityOutcome.yields), a quarter when it does not.
 */
export function backgroundCpuShare(asked: number | undefined, kernelYields: boolean): number {
  return Math.min(1, Math.max(0.05, asked ?? (kernelYields ? 1 : 0.25)));
}

/**
 * Lowers the calling worker thread's priority to `nice` (1..19; 0 leaves it), and says
 * whether it is now far enough below the thread that started it to count on the kernel.
 * Never lowers a process's main thread, and never raises a priority (that needs privileges,
 * and is not ours to ask). Call it after the process's thread pool is running (any
 * asynchronous fs call starts it): threads inherit the nice value of the thread that creates
 * them, and the pool must keep the shard's fdatasync at full priority.
 */
export function lowerThisThreadPriority(nice: number): PriorityOutcome {
  if (!Number.isInteger(nice) || nice < 0 || nice > 19) return { nice: null, yields: false, why: `nice ${nice} is not an integer from 0 to 19` };
  if (isMainThread) return { nice: null, yields: false, why: 'the main thread is never reniced' };
  if (process.platform !== 'linux') return { nice: null, yields: false, why: `threads have no nice value of their own on ${process.platform}` };
  try {
    // "<pid>/task/<tid>": this thread's kernel id.
    const tid = Number(fs.readlinkSync('/proc/thread-self').split('/').at(-1));
    if (!Number.isInteger(tid) || tid <= 0 || tid === process.pid) return { nice: null, yields: false, why: 'no thread id of its own' };
    // Inherited from the thread that started this one.
    const before = os.getPriority(tid);
    if (nice > before) os.setPriority(tid, nice);
    const after = os.getPriority(tid);
    const gap = after - before;
    if (gap >= yieldGapMin) return { nice: after, yields: true, why: `nice ${after}, ${gap} below the thread that started it` };
    const why = nice === 0 ? 'not asked (nice 0)' : `nice ${after}, only ${gap} below the thread that started it (at ${before}; ${yieldGapMin} needed)`;
    return { nice: after, yields: false, why };
  } catch (e) {
    return { nice: null, yields: false, why: e instanceof Error ? e.message : String(e) };
  }
}
