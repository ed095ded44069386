// Gateways and shard nodes of different versions never meet on a subject where one would
// ignore what the other relies on: a v2 gateway sends on `<prefix>.shard.<k>.v2`, so a v1
// shard node (which would ignore a buyer's name on cancel, or a reservation's channel) never
// receives its commands and the gateway answers 503 at once; a v2 shard node also answers
// the v1 subject, so v1 gateways keep working while shard nodes are upgraded first.

import { connect } from '@nats-io/transport-node';
import { afterAll, describe, expect, it } from 'vitest';
import { decode, encode } from '../src/engine/codec.js';
import { shardSubject } from '../src/nats/nats-connect.js';
import type { NatsReply, NatsRequest } from '../src/nats/nats-wire.js';
import { api, buyerToken, stopAllEngines } from './support/engine-process.js';
import { expectError, uniq } from './support/http-kit.js';
import { startNatsDeployment, startNatsServer, stopAllNatsServers } from './support/nats-deployment.js';

afterAll(async () => {
  await stopAllEngines();
  await stopAllNatsServers();
});

describe('the wire version between gateways and shard nodes', () => {
  it('keeps a v2 gateway away from a v1 shard node: 503 at once, and the old node sees nothing', async () => {
    const nats = await startNatsServer();
    const d = await startNatsDeployment({ nats, shards: 1, nodes: [] as number[][] });
    const nc = await connect({ servers: nats.url });
    const seen: string[] = [];
    // A stand-in for a v1 shard node of shard 0: it would apply anything it is sent.
    nc.subscribe(shardSubject(d.prefix, 0, 1), {
      callback: (_err, msg) => {
        seen.push(msg.subject);
        msg.respond(encode({ k: 'unavailable', message: 'a v1 node' } satisfies NatsReply));
      },
    });
    await nc.flush();
    const r = await api(d.url).post(`/v1/reservations/0.1abcdefgh/cancel`, {}, buyerToken('bob'));
    expectError(r, 503, 'shard_unavailable');
    expect(seen).toEqual([]);
    await nc.close();
  });

  it('lets a v1 gateway reach a v2 shard node on the v1 subject', async () => {
    const d = await startNatsDeployment({ shards: 1, nodes: [[0]] });
    const sku = uniq('v1gw');
    expect((await api(d.url).put(`/v1/skus/${sku}`, { stock: 3 })).status).toBe(201);
    const nc = await connect({ servers: d.nats.url });
    const request: NatsRequest = { k: 'batch', cmds: [{ t: 'res.reserve', sku, buyerId: 'old-client', qty: 1, nonce: 'abc' }] };
    const reply = decode<NatsReply>((await nc.request(shardSubject(d.prefix, 0, 1), encode(request), { timeout: 5000 })).data);
    expect(reply.k).toBe('batch');
    const outcome = reply.k === 'batch' ? reply.outcomes[0] : undefined;
    expect(outcome).toMatchObject({ ok: true, status: 'created' });
    expect(JSON.parse((outcome as { json: string }).json)).toMatchObject({ buyerId: 'old-client', channel: 'default' });
    await nc.close();
  });
});
