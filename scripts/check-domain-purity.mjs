// Lint rule of the house: src/domain is the pure core. No file in it (or in a folder under
// it) may import node:*, any package, or any file outside src/domain, nor read a clock or
// randomness, nor touch the process, timers, the console or the global object. The code is
// read by the TypeScript parser (scripts/lint-kit.mjs), so no spelling of an import or a
// call slips past. Exits 1 naming each offending line.
import { dirname, join, relative, resolve } from 'node:path';
import { isValueUse, lineOf, moduleRefs, parse, ts, tsFiles } from './lint-kit.mjs';

// The project's root: this script's parent, or the folder given (tests lint a copy).
const root = process.argv[2] !== undefined ? resolve(process.argv[2]) : new URL('..', import.meta.url).pathname;
const dir = join(root, 'src', 'domain');
/** Globals the core must not read: clocks, randomness, I/O, timers, the process, the global object. */
const forbidden = new Map([
  ['Date', 'reads a clock'], ['performance', 'reads a clock'],
  ['crypto', 'uses randomness'],
  ['process', 'touches the process'], ['require', 'uses require'], ['globalThis', 'reaches the global object'], ['global', 'reaches the global object'],
  ['setTimeout', 'uses timers'], ['setInterval', 'uses timers'], ['setImmediate', 'uses timers'], ['queueMicrotask', 'uses timers'],
  ['clearTimeout', 'uses timers'], ['clearInterval', 'uses timers'], ['console', 'writes to the console'],
  ['fetch', 'does I/O'], ['Atomics', 'shares memory'], ['SharedArrayBuffer', 'shares memory'],
]);
let failures = 0;
const fail = (file, line, why) => {
  console.error(`src/domain/${relative(dir, file)}:${line}: ${why}`);
  failures++;
};
for (const file of tsFiles(dir)) {
  const source = parse(file);
  for (const ref of moduleRefs(source)) {
    if (ref.spec === null) fail(file, ref.line, ref.why);
    else if (!ref.spec.startsWith('./') && !ref.spec.startsWith('../')) fail(file, ref.line, `imports ${ref.spec}, outside src/domain`);
    else if (relative(dir, resolve(dirname(file), ref.spec)).startsWith('..')) fail(file, ref.line, `imports ${ref.spec}, outside src/domain`);
  }
  const visit = (node) => {
    if (ts.isIdentifier(node) && forbidden.has(node.text) && isValueUse(node)) fail(file, lineOf(source, node), `${forbidden.get(node.text)}: ${node.text}`);
    // Math.random, Math['random']
    if ((ts.isPropertyAccessExpression(node) && ts.isIdentifier(node.expression) && node.expression.text === 'Math' && node.name.text === 'random')
      || (ts.isElementAccessExpression(node) && ts.isIdentifier(node.expression) && node.expression.text === 'Math')) {
      fail(file, lineOf(source, node), 'uses randomness: Math.random');
    }
    ts.forEachChild(node, visit);
  };
  visit(source);
}
if (failures > 0) {
  console.error(`domain purity: ${failures} violation(s); the core must stay free of I/O, clocks and randomness`);
  process.exit(1);
}
console.log('domain purity: ok');
