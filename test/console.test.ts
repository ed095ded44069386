// The live console's stream (GET /v1/console/stream) over real HTTP: who may open it, the
// event-stream answer, a tick carrying a SKU's figures (stock, drop, queue, reserve rate,
// refusals, latency, ERP backlog) after calls, a stock event after a sell-out in the format
// `flash events tail` reads, the bound on streams, and, in process, a slow client being let
// go while a reading one is kept. The page's own routes are checked here too (the browser
// test, test/console-browser.test.ts, drives the page itself).

import { createServer, type Server } from 'node:http';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { Command } from '../src/domain/index.js';
import type { CallOutcome, ShardStats, ShardTransport } from '../src/engine/shard-protocol.js';
import { ConsoleStream, consoleStreamsMax } from '../src/console/console-stream.js';
import { histogramQuantile } from '../src/console/console-tick.js';
import type { ShardRouter } from '../src/gateway/shard-router.js';
import { GatewayMetrics } from '../src/gateway/metrics.js';
import { listenOn } from '../src/gateway/request-io.js';
import { ADMIN_TOKEN, NO_TOKEN, TOKENS, api, buyerToken, startEngine, stopAllEngines, type Api, type Engine } from './support/engine-process.js';
import { createSku, expectError, reserveOk, uniq } from './support/http-kit.js';
import { SseClient } from './support/sse-client.js';

afterAll(async () => {
  await stopAllEngines();
});

/** A webhook ERP that refuses every delivery: paid orders stay in the outbox, owed. */
async function refusingErp(): Promise<{ url: string; server: Server }> {
  const server = createServer((_req, res) => {
    res.writeHead(503, { 'content-type': 'application/json' });
    res.end('{"error":"down for the test"}');
  });
  const port = await listenOn(server, 0, '127.0.0.1');
  return { url: `http://127.0.0.1:${port}/orders`, server };
}

describe('GET /v1/console/stream over HTTP', () => {
  let engine: Engine;
  let a: Api;
  let erp: { url: string; server: Server };
  let streamUrl: string;
  const open: SseClient[] = [];
  const stream = async (token: string): Promise<SseClient> => {
    const s = await SseClient.open(streamUrl, token);
    open.push(s);
    return s;
  };

  beforeAll(async () => {
    erp = await refusingErp();
    engine = await startEngine({
      env: { FLASH_BUYER_RPS: '1000', FLASH_ERP_WEBHOOK_URL: erp.url, FLASH_ERP_SECRET: 'console-test-secret-0123', FLASH_ERP_RETRY_BASE_MS: '50', FLASH_ERP_RETRY_MAX_MS: '500' },
    });
    a = api(engine.url);
    streamUrl = `${engine.url}/v1/console/stream`;
  });

  afterAll(() => {
    for (const s of open) s.close();
    erp.server.close();
  });

  it('needs a viewer, operator or admin token: 401 without one or with a bad one, 403 for other roles', async () => {
    for (const token of [NO_TOKEN, 'not-a-token-anyone-issued-42']) {
      const s = await stream(token);
      expectError({ status: s.status, body: await s.body() }, 401, 'unauthorized');
      expect(s.headers['www-authenticate']).toMatch(/^Bearer/);
    }
    for (const token of [TOKENS.shop, TOKENS.payments, buyerToken('console-buyer')]) {
      const s = await stream(token);
      expectError({ status: s.status, body: await s.body() }, 403, 'forbidden');
    }
    for (const token of [TOKENS.viewer, TOKENS.operator, ADMIN_TOKEN]) {
      const s = await stream(token);
      expect(s.status).toBe(200);
      expect(s.headers['content-type']).toBe('text/event-stream; charset=utf-8');
      expect(s.headers['cache-control']).toContain('no-cache');
      await s.waitFor((e) => e.event === 'tick', 20_000, 'a first tick');
      s.close();
    }
  });

  it('ticks with the SKU figures, its drop and queue, the reserve rate, refusals, latency and the ERP backlog', async () => {
    const s = await stream(TOKENS.viewer);
    expect(s.status).toBe(200);
    const drop = uniq('c-drop');
    expect((await a.put(`/v1/drops/${drop}`, { queue: { mode: 'fifo' } }, ADMIN_TOKEN)).status).toBe(201);
    expect((await a.post(`/v1/drops/${drop}/queue`, { buyerId: 'console-q-buyer' }, TOKENS.shop)).status).toBe(201);
    const queued = uniq('c-queued');
    await createSku(a, queued, { stock: 7, dropId: drop });
    const sku = uniq('c-sku');
    await createSku(a, sku, { stock: 10 });
    await reserveOk(a, { sku, buyerId: 'console-b1', qty: 3 });
    const paid = await reserveOk(a, { sku, buyerId: 'console-b2', qty: 2 });
    expect((await a.post(`/v1/reservations/${paid.reservationId}/pay`, {}, TOKENS.payments)).status).toBe(200);
    const refused = await a.post('/v1/reservations', { sku, buyerId: 'console-b3', qty: 6 }, TOKENS.shop);
    expectError(refused, 409, 'sold_out');

    const tick = await s.tick((t) => {
      const row = t.skus.find((x: any) => x.sku === sku);
      return row?.reserved === 3 && row.sold === 2 && t.erp.backlogOrders >= 1 && (t.refusals.sold_out ?? 0) >= 1;
    }, 30_000, `a tick with ${sku} reserved 3, sold 2, the ERP owing the paid order and a sold_out refusal`);
    expect(tick.skus.find((x: any) => x.sku === sku)).toEqual({ sku, dropId: null, onHand: 10, available: 5, reserved: 3, sold: 2, refunded: 0 });
    expect(tick.shards).toEqual({ answered: 2, of: 2 });
    expect(tick.reserve.total).toBeGreaterThanOrEqual(3);
    expect(tick.reserve.ok).toBeGreaterThanOrEqual(2);
    // The ERP refuses every delivery: the paid order stays owed, and its age counts from its pay.
    expect(tick.erp.shardsAnswered).toBe(true);
    expect(tick.erp.oldestUndeliveredAt).toBeLessThanOrEqual(tick.at);
    expect(tick.erp.oldestUndeliveredAgeSeconds).toBeGreaterThanOrEqual(0);

    const withDrop = await s.tick((t) => t.skus.some((x: any) => x.sku === queued && x.dropId === drop) && t.queues.some((q: any) => q.dropId === drop),
      20_000, `a tick with ${queued} in ${drop} and its queue`);
    expect(withDrop.queues.find((q: any) => q.dropId === drop)).toMatchObject({ dropId: drop, mode: 'fifo', entries: 1 });
    // Latency percentiles cover the reserves of the last 10 s: reserve until a tick has them
    // (however slow the machine, some reserve falls in some tick's window).
    const busy = uniq('c-busy');
    await createSku(a, busy, { stock: 1000 });
    const seen = s.events.length;
    let timed: any = null;
    for (let i = 0; i < 150 && timed === null; i++) {
      await reserveOk(a, { sku: busy, buyerId: `console-busy-${i}` });
      await new Promise((r) => setTimeout(r, 200));
      const e = s.events.slice(seen).reverse().find((x) => x.event === 'tick' && JSON.parse(x.data).reserve.p50Ms !== null);
      if (e !== undefined) timed = JSON.parse(e.data);
    }
    expect(timed, 'a tick with reserve latency').not.toBeNull();
    expect(timed.reserve.p50Ms).toBeGreaterThan(0);
    expect(timed.reserve.p99Ms).toBeGreaterThanOrEqual(timed.reserve.p50Ms);
    expect(timed.reserve.perSecond).toBeGreaterThanOrEqual(0);
    s.close();
  });

  it('sends a stock event when a SKU sells out, as event: stock with {"type","sku","at"}', async () => {
    const s = await stream(TOKENS.viewer);
    await s.waitFor((e) => e.event === 'tick', 20_000, 'a first tick');
    const sku = uniq('c-out');
    await createSku(a, sku, { stock: 2 });
    const before = Date.now();
    await reserveOk(a, { sku, buyerId: 'console-last', qty: 2 });
    const e = await s.waitFor((x) => x.event === 'stock' && JSON.parse(x.data).sku === sku, 20_000, `the sold_out of ${sku}`);
    const data = JSON.parse(e.data);
    expect(Object.keys(data)).toEqual(['type', 'sku', 'at']);
    expect(data.type).toBe('sold_out');
    expect(data.at).toBeGreaterThanOrEqual(before - 1000);
    expect(s.raw).toContain(`event: stock\ndata: ${e.data}\n\n`);
    // A restock: available goes from 0 to more.
    expect((await a.post(`/v1/skus/${sku}/stock`, { delta: 1 }, ADMIN_TOKEN)).status).toBe(200);
    await s.waitFor((x) => x.event === 'stock' && JSON.parse(x.data).sku === sku && JSON.parse(x.data).type === 'restocked', 20_000, `the restock of ${sku}`);
    s.close();
  });

  it('serves the page and the allow-listed files without a token, and nothing else under /console', async () => {
    const page = await fetch(`${engine.url}/console`);
    expect(page.status).toBe(200);
    expect(page.headers.get('content-type')).toBe('text/html; charset=utf-8');
    expect(page.headers.get('content-security-policy')).toContain("script-src 'self'");
    expect(await page.text()).toContain('console/console.js');
    for (const [file, type] of [['console.js', 'text/javascript'], ['console.css', 'text/css'], ['uPlot.iife.min.js', 'text/javascript'], ['uPlot.min.css', 'text/css']] as const) {
      const r = await fetch(`${engine.url}/console/${file}`);
      expect(r.status, file).toBe(200);
      expect(r.headers.get('content-type'), file).toContain(type);
      const etag = r.headers.get('etag')!;
      expect((await r.text()).length, file).toBeGreaterThan(100);
      expect((await fetch(`${engine.url}/console/${file}`, { headers: { 'if-none-match': etag } })).status, file).toBe(304);
    }
    for (const path of ['/console/package.json', '/console/..%2F..%2Fpackage.json', '/console/console.html', '/console/uPlot.cjs.js']) {
      const r = await a.get(path, NO_TOKEN);
      expectError(r, 404, 'not_found');
    }
    expectError(await a.get('/console', 'not-a-token-anyone-issued-42'), 401, 'unauthorized');
  });
});

describe('the bound on console streams', () => {
  it(`serves at most ${consoleStreamsMax} streams at once: the next is 503 overloaded, and a closed one frees its place`, async () => {
    const engine = await startEngine();
    const url = `${engine.url}/v1/console/stream`;
    const streams = await Promise.all(Array.from({ length: consoleStreamsMax }, () => SseClient.open(url, TOKENS.viewer)));
    try {
      expect(streams.map((s) => s.status)).toEqual(streams.map(() => 200));
      const over = await SseClient.open(url, TOKENS.viewer);
      expectError({ status: over.status, body: await over.body() }, 503, 'overloaded');
      expect(over.headers['retry-after']).toBe('5');
      // Every stream still gets the same ticks.
      await Promise.all(streams.map((s) => s.waitFor((e) => e.event === 'tick', 30_000, 'a tick on each stream')));
      streams.pop()!.close();
      // The engine notices the close on its own time: ask until the place is free.
      let again: SseClient | null = null;
      for (let i = 0; i < 100 && again === null; i++) {
        const s = await SseClient.open(url, TOKENS.viewer);
        if (s.status === 200) again = s;
        else await new Promise((r) => setTimeout(r, 100));
      }
      expect(again?.status).toBe(200);
      again?.close();
      // Ending streams does not stop the engine from stopping cleanly (SIGTERM, exit 0).
    } finally {
      for (const s of streams) s.close();
    }
    expect(await engine.stop()).toBe(0);
  });

  it('stops cleanly with streams open, ending them', async () => {
    const engine = await startEngine();
    const s = await SseClient.open(`${engine.url}/v1/console/stream`, TOKENS.viewer);
    await s.waitFor((e) => e.event === 'tick', 20_000, 'a first tick');
    expect(await engine.stop()).toBe(0);
    await new Promise<void>((resolve) => {
      const check = (): void => (s.ended ? resolve() : void setTimeout(check, 50));
      check();
    });
  });
});

/**
 * A transport of one shard holding `skuCount` SKUs (for the in-process tests); each stats call
 * sells a unit of the first `moving` SKUs.
 */
function fakeTransport(skuCount: number, moving = skuCount): ShardTransport {
  const skus = Array.from({ length: skuCount }, (_, i) => ({ sku: `fake-sku-${String(i).padStart(5, '0')}`, onHand: 1_000_000, available: 1_000_000, reserved: 0, sold: 0, refunded: 0 }));
  const stats = (): ShardStats => {
    for (const s of skus.slice(0, moving)) {
      s.sold++;
      s.available--;
    }
    return {
      shardId: 0, skuCount, skus: skus.map((s) => ({ ...s })), liveReservations: 0, reservations: 0, walCommits: 0, walRecords: 0, walFsyncMsTotal: 0, heapUsedBytes: 0, snapshotFailures: 0, queues: [],
    };
  };
  return {
    shardCount: 1,
    async call(_shardId: number, command: Command): Promise<CallOutcome> {
      if (command.t === 'erp.pending') return { ok: true, status: 'ok', paid: [], outboxLastSeq: 0 };
      if (command.t === 'sku.list') return { ok: true, status: 'ok', skus: { items: [], more: false } };
      return { ok: false, code: 'shard_unavailable', message: 'not in this fake' };
    },
    stats: async () => [stats()],
    inFlight: () => 0,
    close: async () => {},
  };
}

describe('the console stream in process', () => {
  it('disconnects a client that stops reading once it lags past its buffer, and keeps one that reads', async () => {
    const metrics = new GatewayMetrics();
    const stream = new ConsoleStream({ metrics, log: { info: () => {}, warn: () => {} }, clientBufferBytes: 64 * 1024, tickMs: 20, minTickMs: 10 });
    const router = { transport: fakeTransport(800) } as unknown as ShardRouter;
    const server = createServer((req, res) => void stream.handler({ req, res, router, caller: { kind: 'viewer', name: 'test', role: 'viewer', channel: null } }));
    const port = await listenOn(server, 0, '127.0.0.1');
    try {
      const url = `http://127.0.0.1:${port}/`;
      const slow = await SseClient.open(url, '');
      const reader = await SseClient.open(url, '');
      await slow.waitFor((e) => e.event === 'tick', 20_000, 'a first tick');
      slow.pause();
      // Every SKU changes at every tick, so each is about 100 KB: the socket buffers fill, then
      // the stream's own buffer passes 64 KiB.
      for (let i = 0; i < 600 && stream.size > 1; i++) await new Promise((r) => setTimeout(r, 50));
      expect(stream.size).toBe(1);
      const seen = reader.events.length;
      await reader.waitFor((_e) => reader.events.length > seen + 3, 20_000, 'more ticks on the reading stream');
      expect(reader.ended).toBe(false);
      reader.close();
      slow.close();
      for (let i = 0; i < 100 && stream.size > 0; i++) await new Promise((r) => setTimeout(r, 20));
      expect(stream.size).toBe(0);
    } finally {
      stream.close();
      server.closeAllConnections();
      server.close();
    }
  });
});

describe('ticks after the first', () => {
  it('list only the SKUs that changed: a stream gets every SKU first, then what moved', async () => {
    const metrics = new GatewayMetrics();
    const stream = new ConsoleStream({ metrics, log: { info: () => {}, warn: () => {} }, tickMs: 50, minTickMs: 10 });
    const router = { transport: fakeTransport(300, 2) } as unknown as ShardRouter;
    const server = createServer((req, res) => void stream.handler({ req, res, router, caller: { kind: 'viewer', name: 'test', role: 'viewer', channel: null } }));
    const port = await listenOn(server, 0, '127.0.0.1');
    try {
      const first = await SseClient.open(`http://127.0.0.1:${port}/`, '');
      await first.waitFor(() => first.ticks.length >= 3, 20_000, 'three ticks');
      const [full, ...later] = first.events.filter((e) => e.event === 'tick').map((e) => JSON.parse(e.data));
      expect(full.full).toBe(true);
      expect(full.skus).toHaveLength(300);
      for (const t of later) {
        expect(t.full).toBe(false);
        expect(t.skus.map((x: any) => x.sku)).toEqual(['fake-sku-00000', 'fake-sku-00001']);
        expect(t.removed).toEqual([]);
      }
      // A stream that opens later gets every SKU, as they are now, in its first tick.
      const second = await SseClient.open(`http://127.0.0.1:${port}/`, '');
      const seen = await second.waitFor((e) => e.event === 'tick', 20_000, 'a first tick');
      expect(JSON.parse(seen.data)).toMatchObject({ full: true });
      expect(JSON.parse(seen.data).skus).toHaveLength(300);
      expect(second.events[0]!.event).toBe('history');
      first.close();
      second.close();
    } finally {
      stream.close();
      server.closeAllConnections();
      server.close();
    }
  });
});

describe('histogramQuantile', () => {
  const buckets = (counts: number[], les = [0.001, 0.002, 0.005, Infinity]) => les.map((le, i) => ({ le, count: counts[i]! }));

  it('interpolates inside the bucket the rank falls in, as Prometheus does', () => {
    expect(histogramQuantile(0.5, buckets([10, 20, 20, 20]))).toBeCloseTo(0.001);
    expect(histogramQuantile(0.75, buckets([10, 20, 20, 20]))).toBeCloseTo(0.0015);
    expect(histogramQuantile(0.99, buckets([0, 0, 100, 100]))).toBeCloseTo(0.00497);
  });

  it('answers the last finite bound past it, and null for an empty histogram', () => {
    expect(histogramQuantile(0.99, buckets([0, 0, 1, 10]))).toBe(0.005);
    expect(histogramQuantile(0.5, buckets([0, 0, 0, 0]))).toBeNull();
    expect(histogramQuantile(0.5, [])).toBeNull();
  });
});
