// A shard ends a page of sku.list by size as well as by count (pageBytesMax), so that an
// answer fits in one NATS message (a review found 300 SKUs of 64 channels answered 503 over
// NATS, every time). The gateway merges the shards' pages: when a shard has more after its
// page, the merged page stops at that shard's last SKU, so following `next` lists every SKU
// once, in order, whatever the page sizes.

import { afterAll, describe, expect, it } from 'vitest';
import { apply, createShardState } from '../src/domain/index.js';
import { pageBytesMax, utf8Length } from '../src/domain/fields.js';
import { TOKENS, api, startEngine, stopAllEngines } from './support/engine-process.js';
import { inParallel, uniq } from './support/http-kit.js';
import { startNatsDeployment, stopAllNatsServers } from './support/nats-deployment.js';
import { T0 } from './support/domain-kit.js';

afterAll(async () => {
  await stopAllEngines();
  await stopAllNatsServers();
});

const channels = Object.fromEntries(Array.from({ length: 64 }, (_, i) => [`channel-${String(i).padStart(3, '0')}-abcdefghijklmn`, { maxUnits: 100 }]));

async function listAll(url: string): Promise<{ skus: string[]; pages: number }> {
  const skus: string[] = [];
  let pages = 0;
  for (let cursor: string | null = ''; cursor !== null; pages++) {
    const r = await api(url).get(`/v1/skus?limit=1000${cursor === '' ? '' : `&cursor=${cursor}`}`, TOKENS.viewer);
    expect(r.status, r.text.slice(0, 200)).toBe(200);
    skus.push(...(r.body.items as { sku: string }[]).map((v) => v.sku));
    cursor = r.body.next;
  }
  return { skus, pages };
}

describe('pages of the SKU list', () => {
  it('end by size in the core, and read back every SKU', () => {
    const s = createShardState(0, 1);
    const names = Array.from({ length: 300 }, (_, i) => `sku-${String(i).padStart(3, '0')}`);
    // The core takes a channel policy as [name, maxUnits] pairs (the gateway turns the API's map into them).
    const pairs = Object.entries(channels).map(([name, c]) => [name, c.maxUnits]);
    for (const sku of names) expect(apply(s, { t: 'sku.upsert', sku, stock: 10, channels: pairs } as never, T0).outcome).toMatchObject({ ok: true });
    const seen: string[] = [];
    let after: string | undefined;
    for (;;) {
      const o = apply(s, { t: 'sku.list', limit: 1000, ...(after === undefined ? {} : { after }) }, T0).outcome;
      if (!o.ok || o.skus === undefined) throw new Error('sku.list refused');
      const bytes = o.skus.items.slice(0, -1).reduce((n, v) => n + utf8Length(JSON.stringify(v)), 0);
      expect(bytes).toBeLessThan(pageBytesMax);
      seen.push(...o.skus.items.map((v) => v.sku));
      if (!o.skus.more) break;
      after = o.skus.items[o.skus.items.length - 1]!.sku;
    }
    expect(seen).toEqual(names);
  });

  it('list every SKU once, in order, through a gateway merging two shards whose pages end early', async () => {
    const e = await startEngine({ env: { FLASH_SHARDS: '2' } });
    const prefix = uniq('pg');
    const names = Array.from({ length: 500 }, (_, i) => `${prefix}-${String(i).padStart(3, '0')}`);
    const codes = await inParallel(names, 16, async (sku) => (await api(e.url).put(`/v1/skus/${sku}`, { stock: 10, channels }, TOKENS.operator)).status);
    expect(codes.every((c) => c === 201)).toBe(true);
    const { skus, pages } = await listAll(e.url);
    expect(pages).toBeGreaterThan(2);
    expect(skus.filter((s) => s.startsWith(prefix))).toEqual(names);
    expect(new Set(skus).size).toBe(skus.length);
  }, 120_000);

  it('answer 200 over NATS where one page would pass max_payload', async () => {
    const d = await startNatsDeployment({ shards: 1, nodes: [[0]] });
    const names = Array.from({ length: 300 }, (_, i) => `nats-${String(i).padStart(3, '0')}`);
    const codes = await inParallel(names, 16, async (sku) => (await api(d.url).put(`/v1/skus/${sku}`, { stock: 10, channels }, TOKENS.operator)).status);
    expect(codes.every((c) => c === 201)).toBe(true);
    const { skus } = await listAll(d.url);
    expect(skus).toEqual(names);
    await d.stopAll();
  }, 120_000);
});
