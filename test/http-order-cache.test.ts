// GET /v1/drops/{id}/order pages through a shard's published order and keeps the hashes of
// the last 16 drops read. Driven here through the gateway's own method with a stand-in router
// (found by a review): an entry evicted by other reads while a read waits for its page must
// not cost the read its answer (a check added against forged pages answered 503 to it, and
// an older path answered an empty page); a page that does not follow is answered 503, not
// asked for again for ever; an order larger than a shard's page (pages end by size) is read
// whole.

import { describe, expect, it } from 'vitest';
import { createHash } from 'node:crypto';
import { HttpGateway } from '../src/gateway/http-gateway.js';

interface FakeRes { status: number; body: string; headersSent: boolean; destroyed: boolean; writeHead(s: number): void; end(b: string): void; setHeader(): void }

function fakeRes(): FakeRes {
  const r = { status: 0, body: '', headersSent: false, destroyed: false } as FakeRes;
  r.writeHead = (s: number) => { r.status = s; r.headersSent = true; };
  r.end = (b: string) => { r.body = b; };
  r.setHeader = () => undefined;
  return r;
}

const sha = (b: string): string => createHash('sha256').update(b, 'utf8').digest('hex');

/** A shard with a growing order T, 16 other drops, and pages of at most `pageMax` ids. */
function setup(pageMax = 100_000) {
  const orders = new Map<string, string[]>();
  orders.set('T', Array.from({ length: 10 }, (_, i) => `t${i}`));
  for (let k = 0; k < 16; k++) orders.set(`o${k}`, [`x${k}`]);
  let hook: (() => Promise<void>) | null = null;
  let forge: ((offset: number) => unknown) | null = null;
  const seeds = new Map<string, string>();
  let asked = 0;
  const router = {
    async callDrop(dropId: string, c: { offset: number; limit: number }) {
      if (dropId === 'T') asked++;
      if (hook !== null && dropId === 'T') {
        const h = hook;
        hook = null;
        await h();
      }
      if (forge !== null && dropId === 'T') return { ok: true, status: 'ok', order: forge(c.offset) };
      const all = orders.get(dropId)!;
      return { ok: true, status: 'ok', order: { dropId, seed: seeds.get(dropId) ?? `seed-${dropId}`, total: all.length, offset: c.offset, buyers: all.slice(c.offset, c.offset + Math.min(c.limit, pageMax)) } };
    },
  };
  const gw = Object.create(HttpGateway.prototype) as { orderCache: Map<string, unknown>; deps: unknown };
  gw.orderCache = new Map();
  gw.deps = { router };
  const read = async (dropId: string, query = ''): Promise<{ status: number; body: any }> => {
    const res = fakeRes();
    await (gw as any).order({ req: { url: `/v1/drops/${dropId}/order${query}` }, res, param: dropId, body: {}, caller: { kind: 'anonymous' } });
    return { status: res.status, body: res.body === '' ? null : JSON.parse(res.body) };
  };
  const readOthers = async (): Promise<void> => {
    for (let k = 0; k < 16; k++) await read(`o${k}`);
  };
  return { orders, seeds, read, readOthers, setHook: (h: () => Promise<void>) => { hook = h; }, setForge: (f: ((offset: number) => unknown) | null) => { forge = f; }, asked: () => asked };
}

describe('the published order through the gateway\'s cache', () => {
  it('answers a grown order whole when its entry is evicted while the read waits', async () => {
    const { orders, read, readOthers, setHook } = setup();
    expect((await read('T')).body.order).toHaveLength(10);
    orders.get('T')!.push('t10', 't11'); // late joiners of a random queue
    setHook(readOthers);
    const got = await read('T');
    expect(got.status).toBe(200);
    expect(got.body.order).toEqual(orders.get('T')!.map(sha));
  });

  it('answers a whole cached order when its entry is evicted while the read waits (it answered an empty page)', async () => {
    const { orders, read, readOthers, setHook } = setup();
    expect((await read('T')).status).toBe(200);
    setHook(readOthers);
    const got = await read('T');
    expect(got.status).toBe(200);
    expect(got.body.order).toEqual(orders.get('T')!.map(sha));
  });

  it('reads an order larger than a shard\'s page whole, and pages of it by offset', async () => {
    const { orders, read } = setup(997);
    orders.set('T', Array.from({ length: 12_345 }, (_, i) => `buyer-${i}`));
    const got = await read('T');
    expect(got.status).toBe(200);
    expect(got.body.order).toEqual(orders.get('T')!.map(sha));
    const page = await read('T', '?offset=5000&limit=20');
    expect(page.body).toMatchObject({ offset: 5000, total: 12_345, next: 5020 });
    expect(page.body.order).toEqual(orders.get('T')!.slice(5000, 5020).map(sha));
  });

  it('answers 503 to pages that do not follow what it asked for, and stops asking', async () => {
    const { read, setForge, asked } = setup();
    setForge(() => ({ dropId: 'T', seed: 's', total: 10, offset: 99, buyers: ['x'] }));
    const got = await read('T');
    expect(got.status).toBe(503);
    expect(got.body.error.code).toBe('shard_unavailable');
    expect(asked()).toBeLessThanOrEqual(3);
    setForge(() => ({ dropId: 'T', seed: 's', total: 10, offset: 0, buyers: [7] }));
    expect((await read('T')).status).toBe(503);
  });

  it('reads an order made again with a new seed from its start (it answered an empty page with next 0, found by a review)', async () => {
    const { orders, seeds, read } = setup();
    expect((await read('T')).body.order).toHaveLength(10);
    orders.set('T', ['n0', 'n1', 'n2']);
    seeds.set('T', 'seed-2');
    const got = await read('T');
    expect(got.status).toBe(200);
    expect(got.body).toMatchObject({ seed: 'seed-2' });
    expect(got.body.order).toEqual(['n0', 'n1', 'n2'].map(sha));
  });

  it('answers 503 to an order whose seed changes on every page', async () => {
    const { orders, seeds, read, setForge } = setup(2);
    expect((await read('T')).status).toBe(200);
    orders.set('T', Array.from({ length: 50 }, (_, i) => `m${i}`));
    let n = 0;
    setForge((offset) => ({ dropId: 'T', seed: `s${n++}`, total: 50, offset, buyers: orders.get('T')!.slice(offset, offset + 2) }));
    void seeds;
    expect((await read('T')).status).toBe(503);
  });
});
