// Runs the ERP stand-in as a separate process, as a real ERP would be, so that its clock
// of arrivals is not held back by the test's own event loop (in one process, a burst of
// sends delays the server's reads and makes it see starts bunched up). The stand-in's two
// files are transpiled once into a temporary directory; the child is killed on close().

import { spawn } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import ts from 'typescript';
import type { Delivery, ErpStandInStats } from '../../bench/erp-standin.js';

const benchDir = resolve(dirname(fileURLToPath(import.meta.url)), '..', '..', 'bench');
let builtDir: string | null = null;

function build(): string {
  if (builtDir !== null) return builtDir;
  const dir = mkdtempSync(join(tmpdir(), 'erp-standin-'));
  writeFileSync(join(dir, 'package.json'), '{"type":"module"}');
  for (const name of ['erp-standin', 'erp-standin-main', 'seeded-random']) {
    const source = readFileSync(join(benchDir, `${name}.ts`), 'utf8');
    const out = ts.transpileModule(source, { compilerOptions: { module: ts.ModuleKind.ESNext, target: ts.ScriptTarget.ES2022 } });
    writeFileSync(join(dir, `${name}.js`), out.outputText);
  }
  process.once('exit', () => rmSync(dir, { recursive: true, force: true }));
  builtDir = dir;
  return dir;
}

export interface StandInProcess {
  readonly url: string;
  stats(): Promise<ErpStandInStats>;
  deliveries(): Promise<Map<string, Pick<Delivery, 'count' | 'body' | 'firstAtMs'>>>;
  /** Which of these eventIds the ERP never accepted. */
  missing(eventIds: readonly string[]): Promise<string[]>;
  close(): Promise<void>;
}

export async function startStandInProcess(opts: { secret: string; latencyMs: number; jitterMs: number; errorRate: number; seed: number }): Promise<StandInProcess> {
  const child = spawn(process.execPath, [
    join(build(), 'erp-standin-main.js'), '--port', '0', '--latency-ms', String(opts.latencyMs), '--jitter-ms', String(opts.jitterMs),
    '--error-rate', String(opts.errorRate), '--seed', String(opts.seed),
  ], { env: { ...process.env, FLASH_ERP_SECRET: opts.secret }, stdio: ['ignore', 'pipe', 'inherit'] });
  const exited = new Promise<void>((r) => child.once('exit', () => r()));
  const url = await new Promise<string>((resolveUrl, reject) => {
    let out = '';
    const timer = setTimeout(() => reject(new Error(`the ERP stand-in did not start: ${out}`)), 10_000);
    child.stdout.on('data', (c: Buffer) => {
      out += c.toString();
      const m = /listening on (\S+)/.exec(out);
      if (m !== null) {
        clearTimeout(timer);
        resolveUrl(m[1] as string);
      }
    });
    child.once('exit', (code) => reject(new Error(`the ERP stand-in exited with ${code}: ${out}`)));
  });
  const origin = new URL(url).origin;
  return {
    url,
    stats: async () => (await (await fetch(`${origin}/stats`)).json()) as ErpStandInStats,
    deliveries: async () => {
      const list = (await (await fetch(`${origin}/deliveries?bodies=1`)).json()) as { eventId: string; count: number; body: string; firstAtMs: number }[];
      return new Map(list.map((d) => [d.eventId, { count: d.count, body: d.body, firstAtMs: d.firstAtMs }]));
    },
    missing: async (eventIds) => (await (await fetch(`${origin}/deliveries/missing`, { method: 'POST', body: JSON.stringify(eventIds) })).json()) as string[],
    close: async () => {
      child.kill('SIGTERM');
      await exited;
    },
  };
}
