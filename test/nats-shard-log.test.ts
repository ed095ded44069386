// The replicated log's fence and store, against a real nats-server (found by an adversarial
// review): an older owner's pipelined appends never land after a newer owner's record, not
// even those that expected the newer record's sequence; a stream that lost records it had
// acknowledged stops its owner at once instead of leaving it retrying forever; a late upload
// of an older snapshot never replaces a newer one.

import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { jetstreamManager } from '@nats-io/jetstream';
import { connect, type NatsConnection } from '@nats-io/transport-node';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { FencedError, ShardLog } from '../src/nats/shard-log.js';
import { startNatsServer, stopAllNatsServers, type NatsServer } from './support/nats-deployment.js';

let nats: NatsServer;
let nc: NatsConnection;
const work = mkdtempSync(join(tmpdir(), 'flash-shard-log-'));
let prefixes = 0;

beforeAll(async () => {
  nats = await startNatsServer({ own: true });
  nc = await connect({ servers: nats.url });
});

afterAll(async () => {
  await nc?.close();
  await stopAllNatsServers();
  rmSync(work, { recursive: true, force: true });
});

const record = (lsn: number): { lsn: number; payload: Uint8Array } => ({ lsn, payload: Buffer.from(`record ${lsn}`) });
const open = (prefix: string, owner: string): Promise<ShardLog> => ShardLog.open({ nc, prefix, shardId: 0, replicas: 1, owner });
const freshPrefix = (): string => `sl${process.pid.toString(36)}x${(++prefixes).toString(36)}`;

async function owners(prefix: string): Promise<string[]> {
  const jsm = await jetstreamManager(nc);
  const info = await jsm.streams.info(`${prefix}_log_0`);
  const out: string[] = [];
  for (let seq = info.state.first_seq; seq <= info.state.last_seq; seq++) {
    const m = await jsm.streams.getMessage(`${prefix}_log_0`, { seq });
    out.push(`${seq}:${m?.header.get('Flash-Owner')}:${m?.header.get('Flash-Lsn')}`);
  }
  return out;
}

describe('the shard log on JetStream', () => {
  it('refuses every pipelined append of an older owner once a newer owner appended, even one expecting that newer sequence', async () => {
    const prefix = freshPrefix();
    const a = await open(prefix, 'A');
    const appendA = a.appender(0, null, () => true);
    await appendA.append(record(1));
    await appendA.append(record(2));
    // B takes over after A's record 2 and appends its own first record at sequence 3.
    const b = await open(prefix, 'B');
    const end = await b.end();
    const appendB = b.appender(end.lastSeq, end.lastMsgId, () => true);
    await appendB.append(record(3));
    // A, unaware, had records 3 and 4 in flight: 3 expects sequence 2, 4 expects sequence 3,
    // which B's record holds. Neither may land.
    const three = appendA.append(record(3));
    const four = appendA.append(record(4));
    await expect(three).rejects.toBeInstanceOf(FencedError);
    await expect(four).rejects.toBeInstanceOf(FencedError);
    expect(await owners(prefix)).toEqual(['1:A:1', '2:A:2', '3:B:3']);
    // And B goes on.
    await appendB.append(record(4));
    expect((await owners(prefix)).at(-1)).toBe('4:B:4');
  });

  it('stops its owner at once when the stream lost records it had acknowledged', async () => {
    const prefix = freshPrefix();
    const a = await open(prefix, 'A');
    const append = a.appender(0, null, () => true);
    for (let lsn = 1; lsn <= 3; lsn++) await append.append(record(lsn));
    // The store comes back shorter (a power loss of a single-replica server restores an older
    // copy): here, the stream made again with only the first two records.
    const jsm = await jetstreamManager(nc);
    await jsm.streams.delete(`${prefix}_log_0`);
    const again = await open(prefix, 'A');
    const refill = again.appender(0, null, () => true);
    await refill.append(record(1));
    await refill.append(record(2));
    const started = Date.now();
    await expect(append.append(record(4))).rejects.toThrow(/lost records|another node/);
    expect(Date.now() - started).toBeLessThan(10_000);
  });

  it('hands a follower every record of a log that stopped growing, up to its last one (the consumer\'s own pull requests never hold back a batch)', async () => {
    // Found by the 3-node fault test: the follower waited for "more pending" that was only the
    // client's queued pull request, so the last batch of a log whose owner had died was never
    // applied and the standby could not catch up to serve.
    const prefix = freshPrefix();
    const a = await open(prefix, 'A');
    const append = a.appender(0, null, () => true);
    const total = 1500;
    for (let lsn = 1; lsn <= total; lsn++) await append.append(record(lsn));
    for (const batchMax of [512, 64, 7]) {
      const seen: number[] = [];
      const follower = a.follow(1, async (records) => {
        for (const r of records) seen.push(r.lsn);
        await new Promise((r) => setTimeout(r, 2)); // a local write per batch
      }, batchMax);
      // Waits only for the last record to arrive; the deadline is there to end a failing run.
      for (let waited = 0; seen.length < total && waited < 600; waited++) await new Promise((r) => setTimeout(r, 50));
      await follower.stop();
      expect(seen.length, `batchMax ${batchMax}`).toBe(total);
      expect(seen.every((lsn, i) => lsn === i + 1)).toBe(true);
    }
  });

  it('settles a stop() that comes while the consumer is being set up, on a log that stopped growing (found by a review)', async () => {
    const prefix = freshPrefix();
    const log = await ShardLog.open({ nc, prefix, shardId: 0, replicas: 1, owner: 'A' });
    await log.appender(0, null, () => true).append({ lsn: 1, payload: Buffer.from('r1') });
    // The follower starts past the end (it applied record 1): nothing more will come.
    // Widen the window between consumers.get() and consume() resolving (a slow server round
    // trip): consume() resolves 200 ms late, as it may under load.
    const js = (log as unknown as { js: { consumers: { get: (...a: unknown[]) => Promise<any> } } }).js;
    const realGet = js.consumers.get.bind(js.consumers);
    let consumeCalled!: () => void;
    const consuming = new Promise<void>((r) => { consumeCalled = r; });
    js.consumers.get = async (...a: unknown[]) => {
      const consumer = await realGet(...a);
      const realConsume = consumer.consume.bind(consumer);
      consumer.consume = async (...b: unknown[]) => {
        consumeCalled();
        const iter = await realConsume(...b);
        await new Promise((r) => setTimeout(r, 200));
        return iter;
      };
      return consumer;
    };
    const applied: number[] = [];
    const follower = log.follow(2, async (records) => { for (const r of records) applied.push(r.lsn); });
    await consuming;
    const stopped = await Promise.race([follower.stop().then(() => 'stopped'), new Promise((r) => setTimeout(() => r('still waiting after 5 s'), 5000))]);
    expect(stopped).toBe('stopped');
  }, 20_000);

  it('keeps the newest snapshot when an older one is uploaded late, and trims behind the older of the two newest', async () => {
    const prefix = freshPrefix();
    const a = await open(prefix, 'A');
    const append = a.appender(0, null, () => true);
    for (let lsn = 1; lsn <= 30; lsn++) await append.append(record(lsn));
    const file = (lsn: number): string => {
      const f = join(work, `${prefix}-${lsn}.snap`);
      writeFileSync(f, `snapshot at ${lsn}`);
      return f;
    };
    await a.putSnapshot(10, file(10), 111);
    await a.putSnapshot(20, file(20), 222);
    await a.putSnapshot(5, file(5), 55); // a deposed owner's late upload
    expect(await a.snapshotInfo()).toEqual({ lsn: 20, crc: 222 });
    const got = join(work, `${prefix}-got`);
    expect(await a.getSnapshot(got)).toBe(true);
    const { readFileSync } = await import('node:fs');
    expect(readFileSync(got, 'utf8')).toBe('snapshot at 20');
    // The stream keeps every record after the older kept snapshot (10), so a follower one
    // snapshot behind catches up from the stream.
    const end = await a.end();
    expect(end.firstSeq + end.offset).toBe(11);
    expect(end.lastLsn).toBe(30);
  });

  it('reads an object in the snapshot store whose description is not ours as no snapshot, instead of failing to follow the shard', async () => {
    const prefix = freshPrefix();
    const a = await open(prefix, 'A');
    const append = a.appender(0, null, () => true);
    for (let lsn = 1; lsn <= 3; lsn++) await append.append(record(lsn));
    const f = join(work, `${prefix}-3.snap`);
    writeFileSync(f, 'snapshot at 3');
    await a.putSnapshot(3, f, 33);
    const { Objm } = await import('@nats-io/obj');
    const { snapshotBucket } = await import('../src/nats/shard-log.js');
    const store = await new Objm(nc).open(snapshotBucket(prefix));
    for (const [name, description] of [['shard-0-ffffffffffffffff', 'not json'], ['shard-0-fffffffffffffffe', 'null'], ['shard-0-fffffffffffffffd', '"a string"']]) {
      await store.putBlob({ name: name!, description }, Buffer.from('not a snapshot'));
    }
    expect(await a.snapshotInfo()).toEqual({ lsn: 3, crc: 33 });
  });
});
