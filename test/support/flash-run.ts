// The `flash` command line run in-process, as the CLI suites drive it: its output captured,
// files read from disk, the environment given (and nothing of the caller's own).
import { readFileSync } from 'node:fs';
import { runFlash, type FlashIo } from '../../src/cli/flash.js';

export interface Ran {
  code: number;
  out: string;
  err: string;
}

/** runFlash(args) with exactly `env`; `onOut` sees stdout so far after each write. */
export async function runFlashCaptured(
  args: string[], env: Record<string, string | undefined>,
  opts: { progress?: NodeJS.WritableStream; signal?: AbortSignal; onOut?: (out: string) => void } = {},
): Promise<Ran> {
  let out = '';
  let err = '';
  const io: FlashIo = {
    stdout: (t) => {
      out += t;
      opts.onOut?.(out);
    },
    stderr: (t) => {
      err += t;
    },
    readFile: (p) => readFileSync(p, 'utf8'),
    env,
    progress: opts.progress ?? null,
    signal: opts.signal,
  };
  const code = await runFlash(args, io);
  return { code, out, err };
}
