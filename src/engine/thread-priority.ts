// A worker thread's own scheduling priority. On Linux each thread has its own nice value
// (setpriority(PRIO_PROCESS, tid) renices that thread alone), so a background thread can ask
// the kernel to run it only on what the busy threads leave: the kernel then yields for it at
// once, on every core, which no rest the thread takes by its own clock can match. Elsewhere
// (macOS, Windows) the same call would renice the whole process, so it is not made there.

import * as fs from 'node:fs';
import * as os from 'node:os';
import { isMainThread } from 'node:worker_threads';

export type PriorityOutcome = { applied: true; nice: number } | { applied: false; why: string };

/**
 * Lowers the calling worker thread's priority to `nice` (1..19; 0 leaves it), and says
 * whether it is now lower than the thread that started it. Never lowers a process's main
 * thread, and never raises a priority (that needs privileges, and is not ours to ask).
 * Call it after the process's thread pool is running (any asynchronous fs call starts it):
 * threads inherit the nice value of the thread that creates them, and the pool must keep
 * the shard's fdatasync at full priority.
 */
export function lowerThisThreadPriority(nice: number): PriorityOutcome {
  if (!Number.isInteger(nice) || nice < 0 || nice > 19) return { applied: false, why: `nice ${nice} is not an integer from 0 to 19` };
  if (nice === 0) return { applied: false, why: 'not asked (nice 0)' };
  if (isMainThread) return { applied: false, why: 'the main thread is never reniced' };
  if (process.platform !== 'linux') return { applied: false, why: `threads have no nice value of their own on ${process.platform}` };
  try {
    // "<pid>/task/<tid>": this thread's kernel id.
    const tid = Number(fs.readlinkSync('/proc/thread-self').split('/').at(-1));
    if (!Number.isInteger(tid) || tid <= 0 || tid === process.pid) return { applied: false, why: 'no thread id of its own' };
    // Inherited from the thread that started this one: if it is already this low (a whole
    // engine started under `nice 19`), this thread would be no lower than the others, and
    // the caller must not count on the kernel to yield for it.
    const before = os.getPriority(tid);
    if (before >= nice) return { applied: false, why: `already at nice ${before}, no lower than the threads beside it` };
    os.setPriority(tid, nice);
    return { applied: true, nice: os.getPriority(tid) };
  } catch (e) {
    return { applied: false, why: e instanceof Error ? e.message : String(e) };
  }
}
