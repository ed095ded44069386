// Lint rule of the house, part two: the folders of src/ are layers, and an import may only
// point down (or stay inside its own folder):
//
//   domain  <-  wal  <-  engine  <-  nats, gateway  <-  erp, admin, console  <-  cli, main
//
// (config.ts sits just above domain: everything may read the configuration.) Folders of one
// layer do not import each other, so the folder graph has no cycle. Run by `npm run lint`
// after the domain purity check; exits 1 naming each offending import.
import { readdirSync, readFileSync, statSync } from 'node:fs';
import { dirname, join, relative } from 'node:path';

const src = new URL('../src/', import.meta.url).pathname;
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

function files(dir) {
  return readdirSync(dir).flatMap((name) => {
    const path = join(dir, name);
    return statSync(path).isDirectory() ? files(path) : path.endsWith('.ts') ? [path] : [];
  });
}

/** The top-level entry of src/ that `path` is in. */
const top = (path) => relative(src, path).split('/')[0];

let failures = 0;
const edges = new Set();
for (const file of files(src)) {
  const from = top(file);
  if (!(from in layers)) {
    console.error(`src/${relative(src, file)}: src/${from} has no layer; add it to scripts/check-layers.mjs`);
    failures++;
    continue;
  }
  const text = readFileSync(file, 'utf8');
  for (const m of text.matchAll(/(?:from|import)\s*\(?\s*['"](\.{1,2}\/[^'"]+)['"]/g)) {
    const target = join(dirname(file), m[1]);
    const to = top(target).replace(/\.js$/, '.ts');
    if (to === from) continue;
    edges.add(`${from} -> ${to}`);
    if (!(to in layers) || layers[to] >= layers[from]) {
      console.error(`src/${relative(src, file)}: imports ${m[1]}: ${from} (layer ${layers[from]}) may not import ${to} (layer ${layers[to] ?? '?'})`);
      failures++;
    }
  }
}
if (failures > 0) {
  console.error(`layers: ${failures} violation(s); imports point down only: domain <- wal <- engine <- nats, gateway <- erp, admin, console <- cli, main`);
  process.exit(1);
}
console.log(`layers: ok (${edges.size} folder edges, all pointing down)`);
