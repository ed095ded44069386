// Bytes on a shard subject are not trusted: they may come from another version, a bug, or
// anyone with access to the NATS account. A shard node answers what is not a request of ours
// `malformed` and goes on serving (an exception where NATS delivers a message closes the
// connection's reader: the node lost its lease and every subscription, from 3 bytes); a
// gateway reads a reply that is not one of ours as no reply (503 shard_unavailable), and a
// stats reply that is not one of ours as no figures, and goes on serving.

import { connect, type NatsConnection } from '@nats-io/transport-node';
import { afterAll, describe, expect, it } from 'vitest';
import { decode, encode } from '../src/engine/codec.js';
import { shardSubject } from '../src/nats/nats-connect.js';
import type { NatsReply, NatsRequest } from '../src/nats/nats-wire.js';
import { api, buyerToken, stopAllEngines } from './support/engine-process.js';
import { expectError, uniq } from './support/http-kit.js';
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
];

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
          { t: 'res.reserve', sku, buyerId: 'in-a-batch', qty: 1e300, nonce: 'abc' },
          { t: 'res.reserve', sku, buyerId: 'in-a-batch', qty: 1, nonce: 'abc' },
        ],
      };
      const reply = await ask(nc, shardSubject(d.prefix, 0), encode(mixed));
      expect(reply.k).toBe('batch');
      const outcomes = reply.k === 'batch' ? reply.outcomes : [];
      expect(outcomes.map((o) => (o.ok ? 'created' : o.code))).toEqual(['invalid_request', 'invalid_request', 'invalid_request', 'created']);
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
    expect(d.nodes[0]!.engine.logs()).not.toMatch(/reader closed|stopped serving/);
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
