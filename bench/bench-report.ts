// What every benchmark reports besides its figures: the machine, the Node version, the
// commit and the exact command, plus the file under bench/results/ that keeps the run.
// Progress and tables go to stderr; stdout carries only the final JSON object, so that a
// caller (run-all, CI) can parse it.

import { execFileSync } from 'node:child_process';
import { mkdirSync, readdirSync, readFileSync, writeFileSync } from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { fileURLToPath } from 'node:url';
import { fmt } from '../src/cli/report-kit.js';

/** bench/results/ in the repository, whether run from bench/ (tsx) or dist/bench/ (tsc). */
const benchDir = fileURLToPath(new URL('.', import.meta.url));
export const repoDir = path.resolve(benchDir, path.basename(path.dirname(benchDir)) === 'dist' ? '../..' : '..');
export const resultsDir = path.join(repoDir, 'bench', 'results');

export interface Machine {
  cpuModel: string;
  cores: number;
  totalMemoryBytes: number;
  platform: string;
  release: string;
  /** The kernel's memory access monitor, when one runs (see kernelMonitor), else null. */
  kernelMonitor: string | null;
}

export interface RunInfo {
  machine: Machine;
  node: string;
  gitCommit: string | null;
  /** True when the work tree has changes not in gitCommit (so the commit alone does not name the code). */
  gitDirty: boolean | null;
  command: string;
  startedAt: string;
}

export function machine(): Machine {
  const cpus = os.cpus();
  return {
    cpuModel: cpus[0]?.model.trim() ?? 'unknown',
    cores: cpus.length,
    totalMemoryBytes: os.totalmem(),
    platform: os.platform(),
    release: os.release(),
    kernelMonitor: kernelMonitor(),
  };
}

/**
 * Linux DAMON, when a kdamond runs, and how often it samples: on a kernel without preemption
 * each sample holds a core for 10-40 ms, and a thread woken there waits (bench:floor).
 */
export function kernelMonitor(): string | null {
  const root = '/sys/kernel/mm/damon/admin/kdamonds';
  try {
    for (const k of readdirSync(root)) {
      if (!/^\d+$/.test(k) || readFileSync(`${root}/${k}/state`, 'utf8').trim() !== 'on') continue;
      const sampleUs = Number(readFileSync(`${root}/${k}/contexts/0/monitoring_attrs/intervals/sample_us`, 'utf8').trim());
      return `kernel memory monitor DAMON on, sampling every ${fmt(sampleUs / 1000)} ms`;
    }
  } catch {
    // no DAMON here, or not Linux
  }
  return null;
}

function git(args: string[]): string | null {
  try {
    return execFileSync('git', args, { encoding: 'utf8', stdio: ['ignore', 'pipe', 'ignore'], timeout: 5000 }).trim();
  } catch {
    return null;
  }
}

export function runInfo(): RunInfo {
  // --no-optional-locks: status must not refresh (write) the index; the bench only reads.
  const status = git(['--no-optional-locks', 'status', '--porcelain']);
  const script = process.env.npm_lifecycle_event;
  const direct = [path.basename(process.execPath), ...process.execArgv, path.relative(process.cwd(), process.argv[1] ?? '')].join(' ');
  return {
    machine: machine(),
    node: process.version,
    gitCommit: git(['rev-parse', '--short', 'HEAD']),
    gitDirty: status === null ? null : status.length > 0,
    command: script !== undefined ? `npm run ${script} (${direct})` : direct,
    startedAt: new Date().toISOString(),
  };
}

export function progress(message: string): void {
  process.stderr.write(`[${new Date().toISOString().slice(11, 19)}] ${message}\n`);
}

/** Writes bench/results/<name>-<timestamp>.json and returns its path. */
export function saveResult(name: string, result: unknown): string {
  mkdirSync(resultsDir, { recursive: true });
  const stamp = new Date().toISOString().replace(/[:.]/g, '-');
  const file = path.join(resultsDir, `${name}-${stamp}.json`);
  writeFileSync(file, `${JSON.stringify(result, null, 2)}\n`);
  return file;
}

export { fmt, markdownTable } from '../src/cli/report-kit.js';

export function machineLine(info: RunInfo): string {
  const m = info.machine;
  const commit = info.gitCommit === null ? 'unknown commit' : `commit ${info.gitCommit}${info.gitDirty ? ' (+ uncommitted changes)' : ''}`;
  return `${m.cpuModel}, ${m.cores} cores, ${fmt(m.totalMemoryBytes / 2 ** 30, 1)} GiB${m.kernelMonitor === null ? '' : ` (${m.kernelMonitor})`}, Node ${info.node}, ${commit}`;
}

/** Prints the markdown table and the JSON (stdout), saves the JSON, and returns the file. */
export function finish(name: string, result: unknown, table: string): string {
  const file = saveResult(name, result);
  process.stderr.write(`\n${table}\n\nsaved ${path.relative(process.cwd(), file)}\n`);
  process.stdout.write(`${JSON.stringify(result, null, 2)}\n`);
  return file;
}

function cpuTimes(): { idle: number; total: number } {
  let idle = 0;
  let total = 0;
  for (const c of os.cpus()) {
    idle += c.times.idle;
    total += c.times.idle + c.times.user + c.times.nice + c.times.sys + c.times.irq;
  }
  return { idle, total };
}

/**
 * Share of the machine's CPU in use over `ms`, while this bench is idle: what other
 * processes take. A busy machine makes every figure lower and noisier, so it is reported.
 */
export async function cpuBusyPct(ms = 1000): Promise<number> {
  const a = cpuTimes();
  await new Promise((r) => setTimeout(r, ms));
  const b = cpuTimes();
  const total = b.total - a.total;
  return total <= 0 ? 0 : Math.round((1000 * (1 - (b.idle - a.idle) / total))) / 10;
}

/** A bench setting from the environment: an integer in min..max, or `fallback` when unset. */
export function envInt(name: string, fallback: number, min: number, max: number): number {
  const raw = process.env[name];
  if (raw === undefined || raw.trim() === '') return fallback;
  const n = Number(raw);
  if (!Number.isInteger(n) || n < min || n > max) throw new Error(`${name}=${raw} must be an integer in ${min}..${max}`);
  return n;
}

/** The middle value (the mean of the two middle ones for an even count). */
export function median(xs: number[]): number {
  const s = [...xs].sort((a, b) => a - b);
  const mid = Math.floor(s.length / 2);
  return s.length % 2 === 1 ? s[mid]! : (s[mid - 1]! + s[mid]!) / 2;
}
