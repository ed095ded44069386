// The house's lint scripts, on a copy of src/ with one offending file added at a time: every
// spelling of an import the compiler accepts is seen (comments inside, no space, a line break,
// `export ... from`, import types, `import()`, `require`, createRequire, triple-slash
// references), a computed `import()` is refused outright, and the domain's purity rule holds
// in its sub-folders and against every way of reaching a clock or randomness.

import { execFileSync } from 'node:child_process';
import { cpSync, mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';

const project = new URL('..', import.meta.url).pathname;
const copies: string[] = [];
afterAll(() => {
  for (const c of copies) rmSync(c, { recursive: true, force: true });
});

/** Runs a lint script on a copy of src/ with `files` added; its exit code and output. */
function lint(script: 'check-layers' | 'check-domain-purity', files: Record<string, string>): { code: number; out: string } {
  const root = mkdtempSync(join(tmpdir(), 'lint-'));
  copies.push(root);
  cpSync(join(project, 'src'), join(root, 'src'), { recursive: true });
  for (const [path, text] of Object.entries(files)) {
    mkdirSync(join(root, path, '..'), { recursive: true });
    writeFileSync(join(root, path), text);
  }
  try {
    const out = execFileSync(process.execPath, [join(project, 'scripts', `${script}.mjs`), root], { encoding: 'utf8', stdio: 'pipe' });
    return { code: 0, out };
  } catch (e) {
    const err = e as { status: number; stdout: string; stderr: string };
    return { code: err.status, out: `${err.stdout}${err.stderr}` };
  }
}

describe('the layering check', () => {
  it('passes the tree as it is', () => {
    expect(lint('check-layers', {})).toMatchObject({ code: 0 });
  });

  const upward: Record<string, string> = {
    'a plain import': `import { x } from '../gateway/routes.js';`,
    'export ... from': `export { routeTable } from '../gateway/routes.js';`,
    'an import type': `import type { Role } from '../gateway/routes.js';`,
    'a comment before the path': `import { x } from /* later */ '../console/console.js';`,
    'no space': `import {x}from'../gateway/routes.js';`,
    'the path on the next line': `import { x } from\n  '../gateway/routes.js';`,
    'import()': `export const m = () => import('../gateway/routes.js');`,
    'import() with a comment': `export const m = () => import(/* lazy */ '../gateway/routes.js');`,
    'import() of a template literal': "export const m = () => import(`../gateway/routes.js`);",
    'a type query import': `export type R = typeof import('../gateway/routes.js');`,
    'a triple-slash reference': `/// <reference path="../gateway/routes.ts" />\nexport const y = 1;`,
  };
  it('refuses an engine file pointing up, however the import is spelled', () => {
    // One run over a copy with one offending file per spelling: each must be named.
    const files = Object.fromEntries(Object.values(upward).map((text, i) => [`src/engine/zz-up-${i}.ts`, text]));
    const r = lint('check-layers', files);
    expect(r.code, r.out).toBe(1);
    Object.keys(upward).forEach((what, i) => expect(r.out, what).toContain(`src/engine/zz-up-${i}.ts`));
  });

  it('refuses what it cannot follow: a computed import(), createRequire', () => {
    for (const text of ["const p = '../gateway/routes.js'; export const m = () => import(p);", "import { createRequire } from 'node:module'; export const r = createRequire(import.meta.url)('../gateway/routes.js');"]) {
      const r = lint('check-layers', { 'src/engine/zz-computed.ts': text });
      expect(r.code, r.out).toBe(1);
      expect(r.out).toMatch(/cannot follow/);
    }
  });
});

describe('the domain purity check', () => {
  it('passes the core as it is', () => {
    expect(lint('check-domain-purity', {})).toMatchObject({ code: 0 });
  });

  const impure: Record<string, string> = {
    'a node import with no space': `import{readFileSync}from'node:fs'; export const f = readFileSync;`,
    'a package on the next line': `import { x } from\n  'msgpackr';`,
    'an import after a block comment on its line': `/* a */ import { x } from 'node:fs';`,
    'import () with a space': `export const m = () => import ('node:fs');`,
    'a file outside the domain': `import { x } from '../../../src/engine/codec.js';`,
    'new Date()': `export const now = () => new Date();`,
    'Date.now': `export const now = () => Date.now();`,
    "Date['now']": `export const now = () => Date['now']();`,
    'globalThis': `export const now = () => new globalThis.Date();`,
    'Math.random': `export const r = () => Math.random();`,
    "Math['random']": `export const r = () => Math['random']();`,
    'performance.now': `export const t = () => performance.now();`,
    'process.env': `export const e = () => process.env.X;`,
    'setTimeout': `export const s = (f: () => void) => setTimeout(f, 1);`,
    'console': `export const l = () => console.log('x');`,
  };
  it('refuses every way of reaching outside the core, a clock or randomness, in its sub-folders too', () => {
    const files: Record<string, string> = {};
    Object.values(impure).forEach((text, i) => {
      files[`src/domain/zz-impure-${i}.ts`] = text;
      files[`src/domain/deeper/zz-impure-${i}.ts`] = text;
    });
    const r = lint('check-domain-purity', files);
    expect(r.code, r.out).toBe(1);
    Object.keys(impure).forEach((what, i) => {
      expect(r.out, what).toContain(`src/domain/zz-impure-${i}.ts`);
      expect(r.out, what).toContain(`src/domain/deeper/zz-impure-${i}.ts`);
    });
  });

  it('lets a property or a type use those names', () => {
    const r = lint('check-domain-purity', { 'src/domain/zz-names.ts': `export interface T { process: number; console: string }\nexport const o = { Date: 1 };\nexport const p = (x: { performance: number }) => x.performance;` });
    expect(r, r.out).toMatchObject({ code: 0 });
  });
});
