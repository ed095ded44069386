// Lint rule of the house: src/domain is the pure core. It must not import node:*, any
// package, or any file outside src/domain, and must not read a clock or randomness.
// Exits 1 naming each offending line.
import { readdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';

const dir = new URL('../src/domain/', import.meta.url).pathname;
const rules = [
  [/from\s+['"](?!\.\/)[^'"]+['"]/, 'imports something outside src/domain'],
  [/import\(\s*['"](?!\.\/)/, 'dynamically imports something outside src/domain'],
  [/\brequire\s*\(/, 'uses require'],
  [/\bDate\.now\b|\bnew Date\b|\bperformance\.now\b|\bprocess\.hrtime\b/, 'reads a clock'],
  [/\bMath\.random\b|\bcrypto\b/, 'uses randomness'],
  [/\bprocess\.|\bsetTimeout\b|\bsetInterval\b|\bsetImmediate\b|\bconsole\./, 'touches the process, timers or console'],
];
let failures = 0;
for (const file of readdirSync(dir).filter((f) => f.endsWith('.ts'))) {
  const lines = readFileSync(join(dir, file), 'utf8').split('\n');
  lines.forEach((line, i) => {
    if (/^\s*(\/\/|\*|\/\*)/.test(line)) return; // comments may name what is forbidden
    for (const [pattern, why] of rules) {
      if (pattern.test(line)) {
        console.error(`src/domain/${file}:${i + 1}: ${why}: ${line.trim()}`);
        failures++;
      }
    }
  });
}
if (failures > 0) {
  console.error(`domain purity: ${failures} violation(s); the core must stay free of I/O, clocks and randomness`);
  process.exit(1);
}
console.log('domain purity: ok');
