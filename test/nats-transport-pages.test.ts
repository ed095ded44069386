// A gateway sends page reads (sku.list, drop.order) over NATS one per request, so that
// pages never share a reply; they still go through their shard's mailbox: counted in its
// depth (/metrics), bounded by its FLASH_MAILBOX_MAX, one shard's slowness never refusing
// another's. A review found the first version counting them apart, under one bound of 256
// for all shards (2,000 buyers reading a published order at once got 503 overloaded).

import { describe, expect, it } from 'vitest';
import type { Command } from '../src/domain/index.js';
import { NatsTransport } from '../src/nats/nats-transport.js';

/** A NATS connection on which shard 0 never answers (its requests time out) and shard 1 has no responder. */
function fakeNc(): { nc: ConstructorParameters<typeof NatsTransport>[0]; sent: number[] } {
  const sent: number[] = [];
  const nc = {
    info: { max_payload: 1024 * 1024 },
    request(subject: string, data: Uint8Array, opts: { timeout: number }): Promise<never> {
      sent.push(data.length);
      return new Promise((_resolve, reject) => {
        if (subject.includes('.shard.0.')) setTimeout(() => reject(new Error('TIMEOUT')), opts.timeout);
        else reject(new Error('no responders'));
      });
    },
  };
  return { nc: nc as unknown as ConstructorParameters<typeof NatsTransport>[0], sent };
}

const order = { t: 'drop.order', dropId: 'd', offset: 0, limit: 10 } as Command;
const list = { t: 'sku.list', limit: 10 } as Command;

describe('page reads over NATS', () => {
  it('count in their shard\'s mailbox depth while in flight, and free it after', async () => {
    const { nc } = fakeNc();
    const t = new NatsTransport(nc, { shardCount: 2, prefix: 'flash', requestTimeoutMs: 200 });
    const pending = t.call(0, order);
    expect(t.inFlight(0)).toBe(1);
    expect(await pending).toMatchObject({ ok: false, code: 'shard_unavailable' });
    expect(t.inFlight(0)).toBe(0);
  });

  it('go one per request, never batched with each other or with other commands', async () => {
    const { nc, sent } = fakeNc();
    const t = new NatsTransport(nc, { shardCount: 2, prefix: 'flash', requestTimeoutMs: 50 });
    await Promise.all([t.call(1, order), t.call(1, order), t.call(1, list), t.call(1, { t: 'sku.get', sku: 'a' } as Command), t.call(1, { t: 'sku.get', sku: 'b' } as Command)]);
    // Three page reads alone, and the two sku.get in one batch.
    expect(sent).toHaveLength(4);
  });

  it('are bounded by the shard\'s mailboxMax, and a shard that does not answer refuses no other shard\'s', async () => {
    const { nc } = fakeNc();
    const t = new NatsTransport(nc, { shardCount: 2, prefix: 'flash', requestTimeoutMs: 300, mailboxMax: 300 });
    const stuck = Array.from({ length: 300 }, () => t.call(0, order));
    expect(await t.call(0, order)).toMatchObject({ ok: false, code: 'overloaded' });
    expect(await t.call(1, list)).toMatchObject({ ok: false, code: 'shard_unavailable' });
    expect((await Promise.all(stuck)).every((o) => !o.ok && o.code === 'shard_unavailable')).toBe(true);
    expect(t.inFlight(0)).toBe(0);
  });
});
