// Bytes on a shard subject are not trusted: they may come from another version, a bug, or
// anyone with access to the NATS account. A shard node answers what is not a request of ours
// `malformed` and goes on serving (an exception where NATS delivers a message closes the
// connection's reader: the node lost its lease and every subscription, from 3 bytes); a
// gateway reads a reply that is not one of ours as no reply (503 shard_unavailable), and a
// stats reply that is not one of ours as no figures, and goes on serving.

import { request as httpRequest } from 'node:http';
import { connect, type NatsConnection } from '@nats-io/transport-node';
import { Packr } from 'msgpackr';
import { afterAll, describe, expect, it } from 'vitest';
import { decode, encode } from '../src/engine/codec.js';
import { shardSubject } from '../src/nats/nats-connect.js';
import type { NatsReply, NatsRequest } from '../src/nats/nats-wire.js';
import { ADMIN_TOKEN, TOKENS, api, buyerToken, sleep, stopAllEngines } from './support/engine-process.js';
import { expectError, inParallel, uniq } from './support/http-kit.js';
import { startNatsDeployment, stopAllNatsServers } from './support/nats-deployment.js';

afterAll(async () => {
  await stopAllEngines();
  await stopAllNatsServers();
});

/** Requests that are not a batch or a stats query of ours, each with the reason a node gives. */
const notRequests: [string, Uint8Array, RegExp][] = [
  ['bytes that are not msgpack', Uint8Array.from([0xc1, 0xff, 0x00]), /not msgpack/],
  ['no bytes', new Uint8Array(0), /not msgpack/],
  ['nil', encode(null), /a request is a map/],
  ['a list', encode([1, 2]), /a request is a map/],
  ['an unknown kind', encode({ k: 'drop-everything' }), /k must be/],
  ['a batch without cmds', encode({ k: 'batch' }), /cmds must be an array/],
  ['cmds as a string', encode({ k: 'batch', cmds: 'res.reserve' }), /cmds must be an array/],
  ['cmds as a map with a length', encode({ k: 'batch', cmds: { length: 3 } }), /cmds must be an array/],
  ['a nil command', encode({ k: 'batch', cmds: [null] }), /cmds\[0\] must be a map/],
  ['a number as the second command', encode({ k: 'batch', cmds: [{ t: 'sku.get', sku: 'x' }, 5] }), /cmds\[1\] must be a map/],
  ['a list as a command', encode({ k: 'batch', cmds: [['res.reserve']] }), /cmds\[0\] must be a map/],
  // Found by a review: commands that passed as maps and then failed the shard's turn (the
  // worker ended, the node gave up the shard): a field holding a bigint, a cycle.
  ['a bigint in a command', new Packr({ useRecords: false, useBigIntExtension: true }).pack({ k: 'batch', cmds: [{ t: 'res.reserve', sku: 'x', buyerId: 'b', qty: 1, nonce: 'abc', x: 2n ** 100n }] }), /cmds\[0\] holds a value that is not plain data/],
  ['a cycle in a command', (() => {
    const loop: unknown[] = [1];
    loop.push(loop);
    return new Packr({ useRecords: false, structuredClone: true }).pack({ k: 'batch', cmds: [{ t: 'res.reserve', sku: 'x', buyerId: 'b', qty: 1, nonce: 'abc', x: loop }] });
  })(), /cmds\[0\] holds a value that is not plain data/],
  ['a binary in a command', encode({ k: 'batch', cmds: [{ t: 'res.reserve', sku: 'x', buyerId: 'b', qty: 1, nonce: 'abc', x: Buffer.from('ab') }] }), /not plain data/],
];

/** A raw GET with the admin token: the status and the first bytes of the body (a stream's first event), or why none came. */
function firstBytes(url: string, path: string, timeoutMs = 5000): Promise<string> {
  return new Promise((resolve) => {
    const req = httpRequest(url + path, { headers: { authorization: `Bearer ${ADMIN_TOKEN}` } }, (res) => {
      res.once('data', (c: Buffer) => {
        resolve(`${res.statusCode} ${c.toString().slice(0, 200)}`);
        req.destroy();
      });
      res.once('end', () => resolve(`${res.statusCode} (empty)`));
    });
    req.setTimeout(timeoutMs, () => {
      resolve(`no answer within ${timeoutMs} ms`);
      req.destroy();
    });
    req.on('error', (e) => resolve(`client error: ${e.message}`));
    req.end();
  });
}

async function ask(nc: NatsConnection, subject: string, data: Uint8Array): Promise<NatsReply> {
  return decode<NatsReply>((await nc.request(subject, data, { timeout: 5000 })).data);
}

describe('a shard node and bytes that are not a request', () => {
  it('answers each malformed, applies nothing of it, and keeps serving on both subjects', async () => {
    const d = await startNatsDeployment({ shards: 1, nodes: [[0]] });
    const sku = uniq('hostile');
    expect((await api(d.url).put(`/v1/skus/${sku}`, { stock: 5, maxPerBuyer: 1 })).status).toBe(201);
    const nc = await connect({ servers: d.nats.url });
    try {
      for (const version of [2, 1]) {
        for (const [what, bytes, reason] of notRequests) {
          const reply = await ask(nc, shardSubject(d.prefix, 0, version), bytes);
          expect(reply, `${what} on v${version}`).toMatchObject({ k: 'malformed' });
          expect(reply.k === 'malformed' ? reply.message : '', `${what} on v${version}`).toMatch(reason);
        }
      }
      // Commands that are maps but not commands are the shard's to refuse, one by one.
      const mixed: NatsRequest = {
        k: 'batch',
        cmds: [
          { t: 'res.reserve', sku: 5, buyerId: 'b', qty: 1, nonce: 'abc' } as never,
          { t: 'no.such.command' } as never,
          { t: { toString: 1 } } as never,
          { t: 'res.reserve', sku, buyerId: 'in-a-batch', qty: 1e300, nonce: 'abc' },
          { t: 'res.reserve', sku, buyerId: 'in-a-batch', qty: 1, nonce: 'abc' },
        ],
      };
      const reply = await ask(nc, shardSubject(d.prefix, 0), encode(mixed));
      expect(reply.k).toBe('batch');
      const outcomes = reply.k === 'batch' ? reply.outcomes : [];
      expect(outcomes.map((o) => (o.ok ? 'created' : o.code))).toEqual(['invalid_request', 'invalid_request', 'invalid_request', 'invalid_request', 'created']);
    } finally {
      await nc.close();
    }
    // Still the owner, still serving through the gateway, and nothing but the one good reserve was applied.
    expect((await d.nodes[0]!.health()).serving).toEqual([0]);
    expect(d.nodes[0]!.engine.child.exitCode).toBeNull();
    const r = await api(d.url).post('/v1/reservations', { sku, buyerId: 'after-garbage', qty: 1 });
    expect(r.status).toBe(201);
    const view = await api(d.url).get(`/v1/skus/${sku}`);
    expect(view.body).toMatchObject({ onHand: 5, reserved: 2, available: 3 });
    expect(d.nodes[0]!.engine.logs()).not.toMatch(/reader closed|stopped serving|worker ended|lost the shard/);
    await d.stopAll();
  });

  it('cuts a reply that would pass NATS max_payload to fit: the answers that do not fit say shard_unavailable, and the node lives', async () => {
    // Found by a review: NATS refused the reply, the rejection went unhandled and the process exited.
    const d = await startNatsDeployment({ shards: 1, nodes: [[0]] });
    const sku = uniq('big');
    expect((await api(d.url).put(`/v1/skus/${sku}`, { stock: 5 })).status).toBe(201);
    const nc = await connect({ servers: d.nats.url });
    const cmds = Array.from({ length: 5000 }, () => ({ t: 'sku.get', sku }));
    const message = await nc.request(shardSubject(d.prefix, 0), encode({ k: 'batch', cmds }), { timeout: 10_000 });
    await nc.close();
    expect(message.data.length).toBeLessThanOrEqual(1024 * 1024);
    const reply = decode<NatsReply>(message.data);
    const outcomes = reply.k === 'batch' ? reply.outcomes : [];
    expect(outcomes).toHaveLength(5000);
    const fitted = outcomes.filter((o) => o.ok).length;
    expect(fitted).toBeGreaterThan(1000);
    expect(fitted).toBeLessThan(5000);
    expect(outcomes.slice(0, fitted).every((o) => o.ok)).toBe(true);
    expect(outcomes.slice(fitted).every((o) => !o.ok && o.code === 'shard_unavailable' && /max_payload/.test(o.message))).toBe(true);
    expect(d.nodes[0]!.engine.child.exitCode).toBeNull();
    expect((await api(d.url).get(`/v1/skus/${sku}`)).status).toBe(200);
    await d.stopAll();
  });

  it('lives through public reads whose batched answers pass max_payload: each read answers 200 or 503', async () => {
    // Found by a review: 2,000 concurrent GETs of a SKU with 64 channels (5.5 KB a view) made
    // a gateway batch whose reply passed 1 MB, and the shard node exited.
    const d = await startNatsDeployment({ shards: 1, nodes: [[0]] });
    const sku = uniq('chan');
    const channels = Object.fromEntries(Array.from({ length: 64 }, (_, i) => [`ch-${String(i).padStart(2, '0')}-${'x'.repeat(26)}`, { maxUnits: 1_000_000_000 }]));
    expect((await api(d.url).put(`/v1/skus/${sku}`, { stock: 5, channels })).status).toBe(201);
    const statuses = await Promise.all(Array.from({ length: 2000 }, () => api(d.url).get(`/v1/skus/${sku}`).then((r) => r.status, (e: Error) => e.message)));
    const counts: Record<string, number> = {};
    for (const st of statuses) counts[st] = (counts[st] ?? 0) + 1;
    expect(Object.keys(counts).every((st) => st === '200' || st === '503'), JSON.stringify(counts)).toBe(true);
    expect(counts['200']).toBeGreaterThan(0);
    expect(d.nodes[0]!.engine.child.exitCode).toBeNull();
    expect((await d.nodes[0]!.health()).serving).toEqual([0]);
    expect((await api(d.url).get(`/v1/skus/${sku}`)).status).toBe(200);
    await d.stopAll();
  });
});

describe('a gateway and replies that are not ours', () => {
  // No shard node hosts shard 0: the stand-in below is the only responder on its subject.
  const badReplies: [string, Uint8Array][] = [
    ['bytes that are not msgpack', Uint8Array.from([0xc1])],
    ['nil', encode(null)],
    ['a batch without outcomes', encode({ k: 'batch' })],
    ['outcomes as a map', encode({ k: 'batch', outcomes: { 0: { ok: true } } })],
    ['a nil outcome', encode({ k: 'batch', outcomes: [null] })],
    ['an outcome without ok', encode({ k: 'batch', outcomes: [{ status: 'created', json: '{}' }] })],
    ['a success without a status', encode({ k: 'batch', outcomes: [{ ok: true }] })],
    ['a refusal without a code', encode({ k: 'batch', outcomes: [{ ok: false, message: 'no' }] })],
    ['too many outcomes', encode({ k: 'batch', outcomes: [{ ok: true, status: 'created', json: '{}' }, { ok: true, status: 'created', json: '{}' }] })],
    ['an unknown kind', encode({ k: 'hello' })],
  ];

  it('answers 503 shard_unavailable to each, and keeps serving', async () => {
    const d = await startNatsDeployment({ shards: 1, nodes: [] as number[][] });
    const nc = await connect({ servers: d.nats.url });
    let next = 0;
    nc.subscribe(shardSubject(d.prefix, 0), {
      callback: (_err, msg) => {
        const request = decode<NatsRequest>(msg.data);
        msg.respond(request.k === 'stats' ? encode({ k: 'stats', stats: null }) : badReplies[next++ % badReplies.length]![1]);
      },
    });
    await nc.flush();
    try {
      for (const [what] of badReplies) {
        const r = await api(d.url).post('/v1/reservations', { sku: 'any', buyerId: 'b', qty: 1 });
        expect(r.status, what).toBe(503);
        expectError(r, 503, 'shard_unavailable');
      }
      // A reply of a node that is not the owner (or no longer) still reads as one.
      next = 0;
      const cancel = await api(d.url).post('/v1/reservations/0.1abcdefgh/cancel', {}, buyerToken('bob'));
      expectError(cancel, 503, 'shard_unavailable');
    } finally {
      await nc.close();
    }
    expect((await fetch(`${d.url}/healthz`)).status).toBe(200);
    expect(d.gateway.child.exitCode).toBeNull();
    await d.stopAll();
  });

  it('answers 503 to outcomes whose fields are not ours, and never caches a dropId that is not a string (found by a review)', async () => {
    const d = await startNatsDeployment({ shards: 1, nodes: [] as number[][] });
    const nc = await connect({ servers: d.nats.url });
    let current: unknown = null;
    nc.subscribe(shardSubject(d.prefix, 0), {
      callback: (_err, msg) => {
        const request = decode<NatsRequest>(msg.data);
        msg.respond(encode(request.k === 'stats' ? { k: 'stats', stats: null } : { k: 'batch', outcomes: request.cmds.map(() => current) }));
      },
    });
    await nc.flush();
    try {
      const forged: [string, unknown][] = [
        ['code toString', { ok: false, code: 'toString', message: 'x' }],
        ['code __proto__', { ok: false, code: '__proto__', message: 'x' }],
        ['code bogus', { ok: false, code: 'bogus', message: 'x' }],
        ['json a number', { ok: true, status: 'ok', json: 5 }],
      ];
      for (const [what, outcome] of forged) {
        current = outcome;
        // Raw, so that a status line the client cannot parse ("HTTP/1.1 undefined") shows as such.
        expect(await firstBytes(d.url, '/v1/skus/any'), what).toMatch(/^503 .*shard_unavailable/);
      }
      // A moved whose dropId is a map: answered 503, and the SKU is not routed by it after.
      current = { ok: false, code: 'moved', message: 'moved', dropId: { toString: 1 } };
      expect((await api(d.url).get('/v1/skus/victim')).status).toBe(503);
      current = { ok: true, status: 'ok', json: '{"sku":"victim"}' };
      for (let i = 0; i < 3; i++) expect((await api(d.url).get('/v1/skus/victim')).status).toBe(200);
      // A drop.order page past the end of what the gateway has cached: answered, not asked again for ever.
      current = { ok: true, status: 'ok', order: { dropId: 'd1', seed: 's', total: 10, offset: 99, buyers: ['x'] } };
      expect(await firstBytes(d.url, '/v1/drops/d1/order')).toMatch(/^503 .*shard_unavailable/);
    } finally {
      await nc.close();
    }
    expect(d.gateway.child.exitCode).toBeNull();
    await d.stopAll();
  });

  it('drops relayed stock events that are not ours: a console stream still opens with its history (found by a review)', async () => {
    const d = await startNatsDeployment({ shards: 1, nodes: [] as number[][] });
    const nc = await connect({ servers: d.nats.url });
    const bigints = new Packr({ useRecords: false, useBigIntExtension: true });
    nc.publish(`${d.prefix}.events.stock`, bigints.pack({ node: 'someone', events: [{ type: 'low_stock', sku: 2n ** 63n - 1n, available: 1, threshold: 2 }] }));
    nc.publish(`${d.prefix}.events.stock`, encode({ node: 'someone', events: [{ type: 'low_stock', sku: 'relayed-sku', available: 1, threshold: 2 }, null, 7] }));
    await nc.flush();
    await sleep(300);
    await nc.close();
    const first = await firstBytes(d.url, '/v1/console/stream');
    expect(first).toMatch(/^200 /);
    expect(first).toMatch(/event: history/);
    await d.stopAll();
  });

  it('reads a stats reply that is not ours as no figures: /metrics answers 200 with the good rows', async () => {
    const d = await startNatsDeployment({ shards: 2, nodes: [] as number[][] });
    const nc = await connect({ servers: d.nats.url });
    const good = {
      shardId: 1, skuCount: 2, liveReservations: 3, reservations: 4, walCommits: 5, walRecords: 6, walFsyncMsTotal: 7, heapUsedBytes: 8, snapshotFailures: 0,
      skus: [{ sku: 'good-sku', onHand: 9, available: 8, reserved: 1, sold: 0 }, null, { sku: 'half-sku', onHand: 'nine' }],
      queues: [{ dropId: 'good-drop', mode: 'fifo', entries: 2, waiting: 1, admitted: 1, used: 0, lapsed: 0, won: 0, lost: 0 }, 7],
    };
    const replies: Record<number, Uint8Array> = {
      0: encode({ k: 'stats', stats: { shardId: 'zero', skus: [null] } }),
      1: encode({ k: 'stats', stats: good }),
    };
    for (const shard of [0, 1]) {
      nc.subscribe(shardSubject(d.prefix, shard), { callback: (_err, msg) => { msg.respond(replies[shard]!); } });
    }
    await nc.flush();
    try {
      const m = await api(d.url).get('/metrics');
      expect(m.status, m.text.slice(0, 300)).toBe(200);
      const text = { body: m.text };
      expect(text.body).toMatch(/flash_sku_on_hand\{sku="good-sku"\} 9/);
      expect(text.body).not.toMatch(/half-sku/);
      expect(text.body).toMatch(/flash_queue_entries\{drop="good-drop",state="waiting"\} 1/);
      expect(text.body).toMatch(/flash_shard_live_reservations\{shard="1"\} 3/);
      expect(text.body).not.toMatch(/shard="zero"/);
    } finally {
      await nc.close();
    }
    expect(d.gateway.child.exitCode).toBeNull();
    await d.stopAll();
  });
});

describe('a published order larger than one NATS message', () => {
  it('reads whole over NATS: shards end a page by size, the gateway reads on (found by a review: it answered 503 for ever)', async () => {
    const d = await startNatsDeployment({ shards: 1, nodes: [[0]] });
    const a = api(d.url);
    const dropId = uniq('bigorder');
    const put = await a.put(`/v1/drops/${dropId}`, { queue: { mode: 'random', opensAt: Date.now(), randomizeSeconds: 0 } }, TOKENS.operator);
    expect(put.status, put.text).toBe(201);
    // 9,000 ids of 125 characters: about 1.1 MB of ids, past the default max_payload of 1 MiB.
    const buyers = Array.from({ length: 9000 }, (_, i) => `${String(i).padStart(5, '0')}-${'b'.repeat(119)}`);
    const codes = await inParallel(buyers, 32, async (b) => (await a.post(`/v1/drops/${dropId}/queue`, { buyerId: b }, TOKENS.shop)).status);
    expect(codes.filter((c) => c !== 201)).toEqual([]);
    const r = await a.get(`/v1/drops/${dropId}/order`, '');
    expect(r.status, r.text.slice(0, 300)).toBe(200);
    expect(r.body.order).toHaveLength(9000);
    expect(new Set(r.body.order).size).toBe(9000);
    // Five readers at once on a gateway that has cached nothing: their pages go in requests
    // of their own (batched, five pages passed max_payload together; found by a review).
    const cold = await d.startGateway();
    const reads = await Promise.all(Array.from({ length: 5 }, () => api(cold.url).get(`/v1/drops/${dropId}/order`, '')));
    expect(reads.map((x) => x.status)).toEqual([200, 200, 200, 200, 200]);
    for (const x of reads) expect(x.body.order).toEqual(r.body.order);
    expect(d.nodes[0]!.engine.child.exitCode).toBeNull();
    await d.stopAll();
  }, 120_000);

  it('answers 2,000 buyers reading a published order at once (found by a review: page reads under one bound of 256 answered 503 overloaded)', async () => {
    const d = await startNatsDeployment({ shards: 1, nodes: [[0]] });
    const a = api(d.url);
    const dropId = uniq('burst');
    expect((await a.put(`/v1/drops/${dropId}`, { queue: { mode: 'random', opensAt: Date.now(), randomizeSeconds: 0 } }, TOKENS.operator)).status).toBe(201);
    await inParallel(Array.from({ length: 50 }, (_, i) => `buyer-${i}`), 16, async (b) => (await a.post(`/v1/drops/${dropId}/queue`, { buyerId: b }, TOKENS.shop)).status);
    const first = await a.get(`/v1/drops/${dropId}/order`, '');
    expect(first.status).toBe(200);
    const reads = await Promise.all(Array.from({ length: 2000 }, () => a.get(`/v1/drops/${dropId}/order`, '')));
    const bad = reads.filter((r) => r.status !== 200).map((r) => `${r.status} ${r.text.slice(0, 80)}`);
    expect(bad.slice(0, 3)).toEqual([]);
    expect(reads.every((r) => JSON.stringify(r.body.order) === JSON.stringify(first.body.order))).toBe(true);
    await d.stopAll();
  }, 120_000);
});
