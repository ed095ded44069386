// Reads a V8 .cpuprofile (from `node --cpu-prof`) and sums the self time of each function,
// to say where a thread spends its time. Run it alone as
// `node dist/bench/cpu-profile-summary.js <file.cpuprofile> [top]`; it only reads the file.

import { readFileSync } from 'node:fs';
import * as path from 'node:path';
import { pathToFileURL } from 'node:url';

interface ProfileNode {
  id: number;
  callFrame: { functionName: string; url: string; lineNumber: number };
}

interface CpuProfile {
  nodes: ProfileNode[];
  samples: number[];
  timeDeltas: number[];
}

export interface FunctionTime {
  fn: string;
  selfMs: number;
  /** Share of the busy time (all samples except "(idle)"). */
  busyPct: number;
}

export interface ProfileSummary {
  file: string;
  totalMs: number;
  idleMs: number;
  busyMs: number;
  top: FunctionTime[];
}

function label(f: ProfileNode['callFrame']): string {
  const name = f.functionName === '' ? '(anonymous)' : f.functionName;
  if (f.url === '') return name;
  const where = f.url.replace(/^file:\/\//, '').replace(/^.*\/(dist|node_modules)\//, '$1/');
  return `${name} ${where}:${f.lineNumber + 1}`;
}

export function summarizeProfile(file: string, topCount = 25): ProfileSummary {
  const profile = JSON.parse(readFileSync(file, 'utf8')) as CpuProfile;
  const labels = new Map(profile.nodes.map((n) => [n.id, label(n.callFrame)]));
  const selfUs = new Map<string, number>();
  let totalUs = 0;
  for (let i = 0; i < profile.samples.length; i++) {
    const key = labels.get(profile.samples[i]!) ?? '(unknown)';
    const us = profile.timeDeltas[i] ?? 0;
    selfUs.set(key, (selfUs.get(key) ?? 0) + us);
    totalUs += us;
  }
  const idleUs = selfUs.get('(idle)') ?? 0;
  const busyUs = Math.max(1, totalUs - idleUs);
  const top = [...selfUs]
    .filter(([fn]) => fn !== '(idle)')
    .sort((a, b) => b[1] - a[1])
    .slice(0, topCount)
    .map(([fn, us]) => ({ fn, selfMs: Math.round(us / 100) / 10, busyPct: Math.round((1000 * us) / busyUs) / 10 }));
  return { file, totalMs: Math.round(totalUs / 1000), idleMs: Math.round(idleUs / 1000), busyMs: Math.round(busyUs / 1000), top };
}

export function formatSummary(s: ProfileSummary): string {
  const head = `${path.basename(s.file)}: ${s.totalMs} ms sampled, ${s.busyMs} ms busy, ${s.idleMs} ms idle`;
  return [head, ...s.top.map((t) => `${t.selfMs.toFixed(1).padStart(9)} ms ${t.busyPct.toFixed(1).padStart(5)} %  ${t.fn}`)].join('\n');
}

const runAsMain = process.argv[1] !== undefined && import.meta.url === pathToFileURL(path.resolve(process.argv[1])).href;
if (runAsMain) {
  const file = process.argv[2];
  if (file === undefined) {
    process.stderr.write('usage: node dist/bench/cpu-profile-summary.js <file.cpuprofile> [top]\n');
    process.exit(2);
  }
  process.stdout.write(`${formatSummary(summarizeProfile(file, Number(process.argv[3] ?? 25)))}\n`);
}
