// The shard lease against a stand-in KV with JetStream's semantics (create-if-absent, update
// checked against the revision), including the case that made an owner give up a shard it
// still held: a renewal that timed out at the client but landed on the server.

import { describe, expect, it } from 'vitest';
import { ShardLease, type LeaseKv } from '../src/nats/shard-lease.js';

/** A one-key KV; `dropAnswers` makes the next n updates land but answer with a timeout. */
function fakeKv() {
  let value: string | null = null;
  let revision = 0;
  const kv = {
    dropAnswers: 0,
    async create(_k: string, v: string) {
      if (value !== null) throw new Error('wrong last sequence: 7');
      value = v;
      return ++revision;
    },
    async update(_k: string, v: string, rev: number) {
      if (rev !== revision) throw new Error(`wrong last sequence: ${revision}`);
      value = v;
      revision++;
      if (kv.dropAnswers > 0) {
        kv.dropAnswers--;
        throw new Error('TIMEOUT');
      }
      return revision;
    },
    async get() {
      if (value === null) return null;
      const v = value;
      return { operation: 'PUT', revision, string: () => v };
    },
    async delete() {
      value = null;
    },
    steal(v: string) {
      value = v;
      revision++;
    },
  };
  return kv;
}

describe('the shard lease', () => {
  it('keeps the shard when a renewal landed but its answer was lost', async () => {
    let now = 0;
    const kv = fakeKv();
    const lease = new ShardLease(kv as unknown as LeaseKv, 'shard-0', 'node-a', 3000, () => now);
    expect(await lease.acquire()).toBe(true);
    now = 500;
    kv.dropAnswers = 1;
    expect(await lease.renew()).toBe(true); // still within the trusted half of the TTL
    now = 1000;
    expect(await lease.renew()).toBe(true); // the conflict is our own write: adopted
    expect(lease.held).toBe(true);
    now = 1500;
    expect(await lease.renew()).toBe(true);
    now = 2900;
    expect(lease.held).toBe(true); // trusted until 1500 + 1500
  });

  it('trusts an adopted write only from the start of the renewal that made it', async () => {
    let now = 0;
    const kv = fakeKv();
    const lease = new ShardLease(kv as unknown as LeaseKv, 'shard-0', 'node-a', 3000, () => now);
    await lease.acquire();
    now = 400;
    kv.dropAnswers = 1;
    await lease.renew(); // lands at the server; answer lost; started at 400
    now = 1300;
    expect(await lease.renew()).toBe(true); // adopted, trusted until 400 + 1500
    now = 1899;
    expect(lease.held).toBe(true);
    now = 1900;
    expect(lease.held).toBe(false);
  });

  it('gives the shard up for good when another node took the key', async () => {
    let now = 0;
    const kv = fakeKv();
    const lease = new ShardLease(kv as unknown as LeaseKv, 'shard-0', 'node-a', 3000, () => now);
    await lease.acquire();
    kv.steal('node-b#123');
    now = 500;
    expect(await lease.renew()).toBe(false);
    expect(lease.held).toBe(false);
    now = 600;
    expect(await lease.renew()).toBe(false);
  });

  it('never takes a write of an earlier incarnation of the same node for its own', async () => {
    let now = 0;
    const kv = fakeKv();
    const before = new ShardLease(kv as unknown as LeaseKv, 'shard-0', 'node-a', 3000, () => now);
    await before.acquire();
    const after = new ShardLease(kv as unknown as LeaseKv, 'shard-0', 'node-a', 3000, () => now);
    expect(after.owner).not.toBe(before.owner);
    expect(await after.acquire()).toBe(false);
  });
});
