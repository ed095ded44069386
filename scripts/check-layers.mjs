// Lint rule of the house, part two: the folders of src/ are layers, and an import may only
// point down (or stay inside its own folder):
//
//   domain  <-  wal  <-  engine  <-  nats, gateway  <-  erp, admin, console  <-  cli, main
//
// (config.ts sits just above domain: everything may read the configuration.) Folders of one
// layer do not import each other, so the folder graph has no cycle. Every reference to a
// module is found by the TypeScript parser (scripts/lint-kit.mjs): imports, `export ...
// from`, import types, `import()`, `require()`, `/// <reference path>`; one whose target
// cannot be read off the code (a computed `import()`, createRequire) is refused outright.
// Run by `npm run lint` after the domain purity check; exits 1 naming each offending import.
import { dirname, join, relative, resolve } from 'node:path';
import { moduleRefs, parse, tsFiles } from './lint-kit.mjs';

const root = process.argv[2] !== undefined ? resolve(process.argv[2]) : new URL('..', import.meta.url).pathname;
const src = join(root, 'src');
/** Layer of each top-level entry of src/ (a folder, or a file at the root). */
const layers = {
  domain: 0,
  'config.ts': 0.5,
  wal: 1,
  engine: 2,
  nats: 3,
  gateway: 3,
  erp: 4,
  admin: 4,
  console: 4,
  cli: 5,
  'main.ts': 5,
};

/** The top-level entry of src/ that `path` is in (a `.js` import names its `.ts` file). */
const top = (path) => relative(src, path).split('/')[0].replace(/\.js$/, '.ts');

let failures = 0;
const edges = new Set();
for (const file of tsFiles(src)) {
  const from = top(file);
  const where = `src/${relative(src, file)}`;
  if (!(from in layers)) {
    console.error(`${where}: src/${from} has no layer; add it to scripts/check-layers.mjs`);
    failures++;
    continue;
  }
  for (const ref of moduleRefs(parse(file))) {
    if (ref.spec === null) {
      console.error(`${where}:${ref.line}: ${ref.why}: the layering cannot follow it; import a literal path`);
      failures++;
      continue;
    }
    if (!ref.spec.startsWith('.')) continue; // a package (the domain's purity check keeps the core free of them)
    const target = resolve(dirname(file), ref.spec);
    if (relative(src, target).startsWith('..')) {
      console.error(`${where}:${ref.line}: imports ${ref.spec}, outside src/`);
      failures++;
      continue;
    }
    const to = top(target);
    if (to === from) continue;
    edges.add(`${from} -> ${to}`);
    if (!(to in layers) || layers[to] >= layers[from]) {
      console.error(`${where}:${ref.line}: imports ${ref.spec}: ${from} (layer ${layers[from]}) may not import ${to} (layer ${layers[to] ?? '?'})`);
      failures++;
    }
  }
}
if (failures > 0) {
  console.error(`layers: ${failures} violation(s); imports point down only: domain <- wal <- engine <- nats, gateway <- erp, admin, console <- cli, main`);
  process.exit(1);
}
console.log(`layers: ok (${edges.size} folder edges, all pointing down)`);
