// The embedded transport over real worker threads (built code from dist/): batching,
// the bounded mailbox, crash-restart with replay, and graceful close.
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import type { WorkerTransport as WorkerTransportType } from '../src/engine/worker-transport.js';
import type { CallOutcome } from '../src/engine/shard-protocol.js';
import type { Command } from '../src/domain/index.js';
import { shardForSku } from '../src/domain/index.js';

const { WorkerTransport } = (await import(new URL('../dist/src/engine/worker-transport.js', import.meta.url).href)) as {
  WorkerTransport: typeof WorkerTransportType;
};

const dirs: string[] = [];
const open: WorkerTransportType[] = [];
afterEach(async () => {
  await Promise.all(open.splice(0).map((t) => t.close().catch(() => undefined)));
  for (const d of dirs.splice(0)) rmSync(d, { recursive: true, force: true });
});

async function start(opts: Partial<ConstructorParameters<typeof WorkerTransport>[0]> = {}, dataDir?: string) {
  const dir = dataDir ?? mkdtempSync(join(tmpdir(), 'flash-wt-'));
  if (dataDir === undefined) dirs.push(dir);
  const t = new WorkerTransport({ dataDir: dir, shardCount: 2, ...opts });
  await t.start();
  open.push(t);
  return { t, dir };
}

/** The view a shard answered, which crosses the thread boundary as JSON text. */
function viewOf<T = Record<string, any>>(o: CallOutcome): T {
  if (!o.ok || o.json === undefined) throw new Error(`expected a view, got ${JSON.stringify(o)}`);
  return JSON.parse(o.json) as T;
}

const reserve = (sku: string, buyerId: string): Command => ({ t: 'res.reserve', sku, buyerId, qty: 1, nonce: 'n0000000' });

describe('the worker transport', () => {
  it('answers a burst of commands in order, each exactly once', async () => {
    const { t } = await start();
    const shard = shardForSku('S1', null, 2);
    expect((await t.call(shard, { t: 'sku.upsert', sku: 'S1', stock: 500 })).ok).toBe(true);
    const outcomes = await Promise.all(Array.from({ length: 600 }, (_, i) => t.call(shard, reserve('S1', `b${i}`))));
    const ok = outcomes.filter((o) => o.ok).length;
    expect(ok).toBe(500);
    expect(outcomes.filter((o) => !o.ok && o.code === 'sold_out').length).toBe(100);
    const ids = new Set(outcomes.flatMap((o) => (o.ok ? [viewOf(o).reservationId] : [])));
    expect(ids.size).toBe(500);
  });

  it('refuses with overloaded at once when a shard mailbox is full, and changes nothing for those', async () => {
    const { t } = await start({ mailboxMax: 10 });
    const shard = shardForSku('S2', null, 2);
    await t.call(shard, { t: 'sku.upsert', sku: 'S2', stock: 1000 });
    const outcomes = await Promise.all(Array.from({ length: 100 }, (_, i) => t.call(shard, reserve('S2', `b${i}`))));
    const overloaded = outcomes.filter((o) => !o.ok && o.code === 'overloaded').length;
    const ok = outcomes.filter((o) => o.ok).length;
    expect(overloaded).toBeGreaterThan(0);
    expect(ok + overloaded).toBe(100);
    const view = await t.call(shard, { t: 'sku.get', sku: 'S2' });
    expect(viewOf(view).reserved).toBe(ok);
  });

  it('restarts a crashed shard from its log; in-flight calls get shard_unavailable, never a hang', async () => {
    const { t } = await start();
    const shard = shardForSku('S3', null, 2);
    await t.call(shard, { t: 'sku.upsert', sku: 'S3', stock: 100_000 });
    const before = await Promise.all(Array.from({ length: 200 }, (_, i) => t.call(shard, reserve('S3', `a${i}`))));
    expect(before.every((o) => o.ok)).toBe(true);
    const burst = Array.from({ length: 2000 }, (_, i) => t.call(shard, reserve('S3', `c${i}`)));
    await t.killShard(shard);
    const during = await Promise.all(burst);
    for (const o of during) expect(o.ok || o.code === 'shard_unavailable').toBe(true);
    expect(during.some((o) => !o.ok)).toBe(true);
    // Wait for the restart, then every acknowledged reservation must still be there.
    let view: CallOutcome = { ok: false, code: 'shard_unavailable', message: '' };
    for (let i = 0; i < 100 && !view.ok; i++) {
      await new Promise((r) => setTimeout(r, 50));
      view = await t.call(shard, { t: 'sku.get', sku: 'S3' });
    }
    expect(view.ok).toBe(true);
    const acked = [...before, ...during].filter((o) => o.ok);
    for (const o of acked) {
      const id = viewOf(o).reservationId as string;
      const got = await t.call(shard, { t: 'res.get', id });
      expect(viewOf(got).status).toBe('held');
    }
    // Commands that were durable but unanswered at the crash may exist too; never fewer.
    expect(viewOf(view).reserved).toBeGreaterThanOrEqual(acked.length);
  });

  it('never restarts a shard that crashed and was then stopped while it waited to restart', async () => {
    const { t, dir } = await start({ restartDelayMsMax: 300 });
    const shard = shardForSku('S5', null, 2);
    await t.call(shard, { t: 'sku.upsert', sku: 'S5', stock: 10, holdSeconds: 1 });
    // A hold that falls due after the stop: a worker that came back would expire it, and write.
    expect((await t.call(shard, reserve('S5', 'due-soon'))).ok).toBe(true);
    await t.killShard(shard);
    await t.stopShard(shard); // inside the restart back-off: another node may own it now
    const { readdirSync, statSync } = await import('node:fs');
    const shardDir = join(dir, `shard-${shard}`);
    const sizes = (): string => readdirSync(shardDir).map((f) => `${f}:${statSync(join(shardDir, f)).size}`).sort().join(',');
    const before = sizes();
    await new Promise((r) => setTimeout(r, 1800)); // past the back-off and the hold's expiry
    expect(t.hosts(shard)).toBe(false);
    expect(sizes()).toBe(before);
    expect((await t.call(shard, { t: 'sku.get', sku: 'S5' })).ok).toBe(false);
  });

  it('fenced off by its replicated log, it answers nothing more and never lets a late turn\'s record escape as an unhandled rejection', async () => {
    const lost: string[] = [];
    const { t } = await start({ replicated: true, onShardLost: (_id, reason) => lost.push(reason) });
    const shard = shardForSku('F1', null, 2);
    await t.startShard(shard);
    let appended = 0;
    const replicator = {
      append: (record: { lsn: number }): Promise<void> => {
        appended++;
        // A newer owner took the log after the first two records (the serving mark and the upsert).
        // The refusal comes back late, as a server's answer does: later turns' records are
        // made meanwhile and reach this node after the fence.
        if (appended <= 2) return Promise.resolve();
        return new Promise((_, reject) => setTimeout(() => reject(new Error(`record ${record.lsn} fenced`)), 30));
      },
    };
    const unhandled: unknown[] = [];
    const onUnhandled = (e: unknown): void => { unhandled.push(e); };
    process.on('unhandledRejection', onUnhandled);
    try {
      await t.serveShard(shard, replicator as never, Date.now() + 60_000);
      await t.call(shard, { t: 'sku.upsert', sku: 'F1', stock: 1000, holdSeconds: 60 });
      // Many turns in flight: their replies keep arriving after the fence dropped the log.
      const calls: Promise<CallOutcome>[] = [];
      for (let i = 0; i < 300; i++) {
        calls.push(t.call(shard, reserve('F1', `b${i}`)));
        if (i % 10 === 9) await new Promise((r) => setTimeout(r, 2));
      }
      const outcomes = await Promise.all(calls);
      await new Promise((r) => setTimeout(r, 200)); // let any late reply land
      // No turn after the fence is answered as done; every call is refused, none left hanging.
      expect(outcomes.filter((o) => o.ok)).toEqual([]);
      expect(outcomes.every((o) => !o.ok && o.code === 'shard_unavailable')).toBe(true);
      expect(lost.length).toBe(1);
      expect(lost[0]).toMatch(/fenced/);
      expect(unhandled).toEqual([]);
    } finally {
      process.off('unhandledRejection', onUnhandled);
    }
  });

  it('closes with a snapshot and reopens to the same state', async () => {
    const { t, dir } = await start();
    const shard = shardForSku('S4', null, 2);
    await t.call(shard, { t: 'sku.upsert', sku: 'S4', stock: 50 });
    const r = await t.call(shard, reserve('S4', 'x'));
    const id = viewOf(r).reservationId as string;
    await t.call(shard, { t: 'res.pay', id, paymentRef: 'pay-1' });
    await t.close();
    open.splice(open.indexOf(t), 1);
    const { t: t2 } = await start({}, dir);
    const view = await t2.call(shard, { t: 'sku.get', sku: 'S4' });
    expect([viewOf(view).sold, viewOf(view).available]).toEqual([1, 49]);
    const got = await t2.call(shard, { t: 'res.get', id });
    expect(viewOf(got).paymentRef).toBe('pay-1');
  });
});
