// CPU time a process (all its threads) has used, from /proc/<pid>/stat: what a run cost the
// whole engine, so that throughput can be stated per CPU-second as well as per second (on a
// shared 2-core machine the load generator takes one core, so req/s alone hides efficiency).

import { readFileSync } from 'node:fs';

/** Clock ticks per second of /proc's utime and stime (USER_HZ, 100 on Linux). */
const ticksPerSecond = 100;

/** User + system CPU seconds the process has used so far; null where /proc is not available. */
export function processCpuSeconds(pid: number | undefined): number | null {
  return pid === undefined ? null : cpuSecondsOf(`/proc/${pid}/stat`);
}

/** The same for one thread of it: its main thread when `tid` is the pid (a Node process's event loop). */
export function threadCpuSeconds(pid: number | undefined, tid: number | undefined = pid): number | null {
  return pid === undefined || tid === undefined ? null : cpuSecondsOf(`/proc/${pid}/task/${tid}/stat`);
}

function cpuSecondsOf(file: string): number | null {
  try {
    const stat = readFileSync(file, 'utf8');
    // Fields after the command name (which may hold spaces, inside parentheses): utime is the
    // 14th field and stime the 15th of the whole line, so the 12th and 13th after ") ".
    const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
    return (Number(fields[11]) + Number(fields[12])) / ticksPerSecond;
  } catch {
    return null;
  }
}
