// The error codes in one registry (src/gateway/errors.ts), the README's table of codes, the
// codes shared/API.md names (test/contract/api-v2.md) and the codes the sources answer with
// must agree: a code answered but undocumented, documented but unknown, or with another
// status or retry advice in the README fails here (fastify's errors-documented test).

import { readFileSync, readdirSync, statSync } from 'node:fs';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { Refusal } from '../src/domain/index.js';
import { errorCodes, isErrorCode } from '../src/gateway/errors.js';

const root = new URL('..', import.meta.url).pathname;
const readme = readFileSync(join(root, 'README.md'), 'utf8');
const contract = readFileSync(join(root, 'test/contract/api-v2.md'), 'utf8');

/** The README's "Error codes" table: code -> [status, retry helps]. */
function readmeTable(): Map<string, { status: number; retry: boolean; meaning: string }> {
  const start = readme.indexOf('## Error codes');
  expect(start, 'the README has an "## Error codes" section').toBeGreaterThan(0);
  const section = readme.slice(start, readme.indexOf('\n## ', start + 1));
  const rows = new Map<string, { status: number; retry: boolean; meaning: string }>();
  for (const m of section.matchAll(/^\| `([a-z_]+)` \| (\d{3}) \| (yes|no) \| (.+) \|$/gm)) {
    expect(rows.has(m[1]!), `${m[1]} is listed twice`).toBe(false);
    rows.set(m[1]!, { status: Number(m[2]), retry: m[3] === 'yes', meaning: m[4]! });
  }
  return rows;
}

/** Codes of API.md v2 whose issues are still open (they enter the registry when built). */
const pendingCodes = new Set<string>([]);

function sourceFiles(dir: string): string[] {
  return readdirSync(dir).flatMap((name) => {
    const path = join(dir, name);
    return statSync(path).isDirectory() ? sourceFiles(path) : path.endsWith('.ts') ? [path] : [];
  });
}

describe('error codes', () => {
  it('are documented in the README with the status and retry advice of the registry, and nothing else is', () => {
    const table = readmeTable();
    const registry = Object.fromEntries(Object.entries(errorCodes).map(([code, s]) => [code, { status: s.status, retry: s.retry }]));
    const documented = Object.fromEntries([...table].map(([code, s]) => [code, { status: s.status, retry: s.retry }]));
    expect(documented).toEqual(registry);
    for (const [code, s] of table) expect(s.meaning.length, code).toBeGreaterThan(20);
  });

  it('cover every refusal of the core, with the status API.md gives', () => {
    for (const code of Object.values(Refusal)) {
      if (code === 'moved') continue; // internal: the router follows it
      expect(isErrorCode(code), code).toBe(true);
    }
  });

  it('include every code API.md names, with its status, except those of issues still open', () => {
    const named = new Map<string, number | null>();
    for (const m of contract.matchAll(/(\d{3}) `([a-z][a-z_]*)`/g)) named.set(m[2]!, Number(m[1]));
    for (const m of contract.matchAll(/`([a-z]+_[a-z_]+)`/g)) if (!named.has(m[1]!)) named.set(m[1]!, null);
    const notCodes = new Set(['pre_deduct', 'on_order', 'on_payment', '__proto__']);
    for (const [code, status] of named) {
      if (notCodes.has(code) || pendingCodes.has(code)) continue;
      expect(isErrorCode(code), `${code} is in API.md but not in the registry`).toBe(true);
      if (status !== null && isErrorCode(code)) expect(errorCodes[code].status, code).toBe(status);
    }
    for (const code of pendingCodes) expect(isErrorCode(code), `${code} is built: take it off the pending list`).toBe(false);
  });

  it('are the only codes the sources answer with', () => {
    const used = new Set<string>();
    const calls = /\b(?:sendError\([^,]+,|refused\(|errorJson\(\d+,|code: )\s*'([a-z_]+)'/g;
    // The command line tools are clients: their codes name what they saw, they answer nothing.
    for (const file of sourceFiles(join(root, 'src')).filter((f) => !f.includes('/src/cli/'))) {
      for (const m of readFileSync(file, 'utf8').matchAll(calls)) used.add(m[1]!);
    }
    expect(used.size).toBeGreaterThan(15);
    const unknown = [...used].filter((c) => !isErrorCode(c) && c !== 'moved');
    expect(unknown).toEqual([]);
  });
});
