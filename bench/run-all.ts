// `npm run bench`: the comparison kit (compare.ts: the engine against bare node:http,
// Redis + Lua, PostgreSQL and itself over NATS, five scenarios), in its own process, with
// its progress passed through and its JSON result kept. BENCH_SUITES=core,http,compare
// also runs bench:core and bench:http first, and BENCH_SUITES=...,queue bench:queue last
// (each in its own process: core and queue need --expose-gc, and none should inherit
// another's heap). Exits 1 if any of them failed.

import { spawn } from 'node:child_process';
import * as path from 'node:path';
import { fmt, progress, repoDir, saveResult } from './bench-report.js';

interface Step {
  name: string;
  args: string[];
}

const known: Step[] = [
  { name: 'core', args: ['--expose-gc', path.join(repoDir, 'dist/bench/core.js')] },
  { name: 'http', args: [path.join(repoDir, 'dist/bench/http.js')] },
  { name: 'compare', args: [path.join(repoDir, 'dist/bench/compare.js')] },
  { name: 'queue', args: ['--expose-gc', path.join(repoDir, 'dist/bench/queue.js')] },
];

function chosenSteps(): Step[] {
  const raw = process.env.BENCH_SUITES?.trim() || 'compare';
  const names = raw.split(',').map((s) => s.trim()).filter((s) => s !== '');
  for (const n of names) if (!known.some((s) => s.name === n)) throw new Error(`BENCH_SUITES: ${n} is not one of ${known.map((s) => s.name).join(', ')}`);
  return known.filter((s) => names.includes(s.name));
}

function runStep(step: Step): Promise<{ code: number | null; result: unknown }> {
  return new Promise((resolve, reject) => {
    progress(`bench ${step.name}: node ${step.args.map((a) => path.relative(repoDir, a) || a).join(' ')}`);
    const child = spawn(process.execPath, step.args, { stdio: ['ignore', 'pipe', 'inherit'] });
    let out = '';
    child.stdout.setEncoding('utf8');
    child.stdout.on('data', (chunk: string) => {
      out += chunk;
    });
    child.once('error', reject);
    child.once('exit', (code) => {
      let result: unknown = null;
      try {
        result = JSON.parse(out);
      } catch {
        progress(`bench ${step.name}: its stdout was not one JSON object`);
      }
      resolve({ code, result });
    });
  });
}

async function main(): Promise<void> {
  const started = performance.now();
  const results: Record<string, unknown> = {};
  const codes: Record<string, number | null> = {};
  for (const step of chosenSteps()) {
    const { code, result } = await runStep(step);
    results[step.name] = result;
    codes[step.name] = code;
    if (code !== 0) progress(`bench ${step.name} exited with ${code}`);
  }
  const ok = Object.values(codes).every((c) => c === 0);
  const all = { bench: 'all', ok, exitCodes: codes, seconds: Math.round((performance.now() - started) / 1000), ...results };
  // One suite keeps its own result file; several get one file holding them all.
  const saved = Object.keys(codes).length > 1 ? `; saved ${path.relative(process.cwd(), saveResult('all', all))}` : '';
  progress(`bench: ${ok ? 'all passed' : 'FAILED'} in ${fmt(all.seconds)} s${saved}`);
  process.stdout.write(`${JSON.stringify(all, null, 2)}\n`);
  if (!ok) process.exitCode = 1;
}

main().catch((e: unknown) => {
  process.stderr.write(`bench failed: ${e instanceof Error ? e.stack : String(e)}\n`);
  process.exitCode = 1;
});
