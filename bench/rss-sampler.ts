// Samples the resident memory (VmRSS in /proc/<pid>/status) of the processes of a system
// under test every 100 ms while a load runs, and reports the peak of their sum. It only
// reads /proc; a process that is gone counts as 0. On a system without /proc it reports null.

import { readFileSync } from 'node:fs';

export interface RssFigures {
  /** Sum over the sampled processes, in MiB; null when /proc could not be read. */
  startMiB: number | null;
  peakMiB: number | null;
  endMiB: number | null;
  samples: number;
  pids: number[];
}

function rssKiB(pid: number): number | null {
  try {
    const m = /^VmRSS:\s+(\d+)\s+kB/m.exec(readFileSync(`/proc/${pid}/status`, 'utf8'));
    return m === null ? 0 : Number(m[1]);
  } catch {
    return null;
  }
}

function total(pids: number[]): number | null {
  let sum = 0;
  let seen = false;
  for (const pid of pids) {
    const kib = rssKiB(pid);
    if (kib !== null) {
      seen = true;
      sum += kib;
    }
  }
  return seen ? sum : null;
}

export function startRssSampler(pids: number[], everyMs = 100): { stop(): RssFigures } {
  const start = total(pids);
  let peak = start;
  let last = start;
  let samples = start === null ? 0 : 1;
  const timer = setInterval(() => {
    last = total(pids);
    if (last === null) return;
    samples++;
    if (peak === null || last > peak) peak = last;
  }, everyMs);
  const mib = (kib: number | null): number | null => (kib === null ? null : Math.round(kib / 102.4) / 10);
  return {
    stop(): RssFigures {
      clearInterval(timer);
      const end = total(pids);
      if (end !== null && (peak === null || end > peak)) peak = end;
      return { startMiB: mib(start), peakMiB: mib(peak), endMiB: mib(end), samples, pids };
    },
  };
}
