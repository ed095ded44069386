// The README's code blocks, run as a newcomer would: the first sale (a shell block) against
// an engine started as `npm start` starts it (no FLASH_* setting, data in ./data of the
// working directory), and the buyer-token minting snippet against that engine. Only the
// port is changed (the test cannot take 8080 on a shared machine).

import { execFileSync } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { api, startEngine, stopAllEngines } from './support/engine-process.js';

const readme = readFileSync(new URL('../README.md', import.meta.url), 'utf8');
const work = mkdtempSync(join(tmpdir(), 'flash-readme-'));

afterAll(async () => {
  await stopAllEngines();
  rmSync(work, { recursive: true, force: true });
});

/** The first fenced block of `lang` after `heading`. */
function block(heading: string, lang: string): string {
  const at = readme.indexOf(heading);
  expect(at, heading).toBeGreaterThanOrEqual(0);
  const fence = '```' + lang + '\n';
  const start = readme.indexOf(fence, at);
  return readme.slice(start + fence.length, readme.indexOf('```', start + fence.length));
}

describe('the README', () => {
  it('makes a first sale when its block is pasted into a shell after a plain first start', async () => {
    const bare = { FLASH_ADMIN_TOKEN: '', FLASH_TOKENS_FILE: '', FLASH_BUYER_TOKEN_SECRET: '' };
    const engine = await startEngine({ dataDir: join(work, 'data'), env: bare });
    const script = block('A first sale', 'sh').replaceAll('localhost:8080', `localhost:${engine.port}`);
    expect(script).toContain('. data/credentials/tokens.env');
    const out = execFileSync('bash', ['-e', '-c', script], { cwd: work, encoding: 'utf8', timeout: 30_000 });
    const lines = out.trim().split('\n').map((l) => l.trim()).filter((l) => l.startsWith('{'));
    const answers = lines.map((l) => JSON.parse(l) as Record<string, unknown>);
    expect(answers[0]).toMatchObject({ sku: 'moutai-2026', onHand: 10000, maxPerBuyer: 2 });
    expect(answers[1]).toMatchObject({ sku: 'moutai-2026', buyerId: 'u-17', status: 'held' });
    expect(answers[2]).toMatchObject({ reservationId: answers[1]!.reservationId, status: 'paid', paymentRef: 'alipay-123' });

    // The minting snippet, with the secret the first start generated, makes a token the engine takes.
    const mint = block('Minting a buyer token', 'js').replace(/^ {2}/gm, '');
    const file = join(work, 'mint.mjs');
    writeFileSync(file, `${mint}\nprocess.stdout.write(buyerToken('u-18', process.env.BUYER_TOKEN_SECRET, { channel: 'web' }));\n`);
    const token = execFileSync('bash', ['-c', `. data/credentials/tokens.env && BUYER_TOKEN_SECRET=$BUYER_TOKEN_SECRET node ${file}`], { cwd: work, encoding: 'utf8' });
    const r = await api(engine.url).post('/v1/reservations', { sku: 'moutai-2026' }, token);
    expect(r.status, r.text).toBe(201);
    expect(r.body).toMatchObject({ buyerId: 'u-18', channel: 'web' });
  });
});
