// The replicated log's ways in for a node that never saw the owner's disk: a deployment moving
// from local logs (its first owner seeds the stream with a snapshot of its disk, which a new
// node installs), and a node with an empty data directory after the owner stored snapshots
// and trimmed the stream behind them (it downloads the snapshot, then follows the stream).
// Both end with the owner killed and the new node serving every acknowledged change.

import { afterAll, describe, expect, it } from 'vitest';
import { api, makeDataDir, sleep, startEngine, stopAllEngines } from './support/engine-process.js';
import { createSku, uniq } from './support/http-kit.js';
import { startNatsDeployment, stopAllNatsServers } from './support/nats-deployment.js';

afterAll(async () => {
  await stopAllEngines();
  await stopAllNatsServers();
});

const leaseTtlMs = 1500;

/** Reserves `n` units for distinct buyers; returns the reservation ids. */
async function reserveMany(url: string, sku: string, n: number, tag: string): Promise<string[]> {
  const a = api(url);
  const ids: string[] = [];
  for (let i = 0; i < n; i++) {
    const r = await a.post('/v1/reservations', { sku, buyerId: `${tag}-${i}`, idempotencyKey: `${tag}-${i}` });
    expect(r.status, r.text).toBe(201);
    ids.push(r.body.reservationId as string);
  }
  return ids;
}

async function expectAllHeld(url: string, ids: string[]): Promise<void> {
  const a = api(url);
  for (const id of ids) {
    // A 503 says "retry shortly" (a lease renewed late on a busy machine moves the shard for a
    // moment): a client retries, and so does this check, for a while.
    let r = await a.get(`/v1/reservations/${id}`);
    for (let tries = 0; r.status === 503 && tries < 100; tries++) {
      await sleep(100);
      r = await a.get(`/v1/reservations/${id}`);
    }
    expect(r.status, `${id}: ${r.text}`).toBe(200);
    expect(r.body.status).toBe('held');
  }
}

describe('the replicated log', () => {
  it('is seeded from the disk of a deployment that ran on local logs, and a node that never saw that disk takes over with all of it', async () => {
    const dataDir = makeDataDir();
    const embedded = await startEngine({ dataDir, env: { FLASH_SHARDS: '1' } });
    const sku = uniq('seed');
    await createSku(api(embedded.url), sku, { stock: 100, holdSeconds: 3600 });
    const before = await reserveMany(embedded.url, sku, 5, 'old');
    expect(await embedded.stop()).toBe(0);

    const d = await startNatsDeployment({ shards: 1, nodes: [], leaseTtlMs });
    const owner = await d.startNode([0], { dataDir });
    expect(owner.engine.logs()).toContain('seeded the replicated log');
    const after = await reserveMany(d.url, sku, 3, 'new');
    const standby = await d.startNode([0], { waitServing: false });
    await sleep(500);
    await owner.engine.kill9();
    await standby.waitServing([0], leaseTtlMs + 10_000);
    await expectAllHeld(d.url, [...before, ...after]);
    expect((await api(d.url).get(`/v1/skus/${sku}`)).body).toMatchObject({ reserved: 8, available: 92 });
  });

  it('lets a node with an empty disk take over after the owner stored snapshots and trimmed the stream behind them', async () => {
    const d = await startNatsDeployment({ shards: 1, nodes: [[0]], leaseTtlMs, env: { FLASH_SNAPSHOT_EVERY: '20' } });
    const owner = d.nodes[0]!;
    const sku = uniq('trim');
    await createSku(api(d.url), sku, { stock: 1000, holdSeconds: 3600 });
    const ids: string[] = [];
    for (let round = 0; round < 6; round++) {
      ids.push(...(await reserveMany(d.url, sku, 10, `r${round}`)));
      await sleep(150); // idle moments: the owner snapshots, stores the snapshot and trims
    }
    expect(owner.engine.logs()).toContain('stored the shard snapshot');
    const standby = await d.startNode([0], { waitServing: false });
    await sleep(500);
    await owner.engine.kill9();
    await standby.waitServing([0], leaseTtlMs + 10_000);
    // Its empty disk is behind the trimmed stream: it installed the stored snapshot first.
    expect(standby.engine.logs()).toContain('rebuilding it from the log');
    await expectAllHeld(d.url, ids);
    expect((await api(d.url).get(`/v1/skus/${sku}`)).body).toMatchObject({ reserved: ids.length });
  });

  it('rebuilds an old disk started after another node already wrote the log (the wrong order), keeping the old copy aside', async () => {
    const dataDir = makeDataDir();
    const embedded = await startEngine({ dataDir, env: { FLASH_SHARDS: '1' } });
    const sku = uniq('order');
    await createSku(api(embedded.url), sku, { stock: 100, holdSeconds: 3600 });
    await reserveMany(embedded.url, sku, 3, 'old');
    expect(await embedded.stop()).toBe(0); // the disk ends at a snapshot
    const d = await startNatsDeployment({ shards: 1, nodes: [[0]], leaseTtlMs });
    const first = d.nodes[0]!;
    const later = uniq('order-new');
    await createSku(api(d.url), later, { stock: 100, holdSeconds: 3600 });
    const acknowledged = await reserveMany(d.url, later, 4, 'new');
    const old = await d.startNode([0], { dataDir, waitServing: false });
    // Waits for the rebuild, however busy the machine (the deadline only ends a failing run).
    for (let waited = 0; !old.engine.logs().includes('the replaced copy of the shard is kept') && waited < 300; waited++) await sleep(50);
    expect(old.engine.logs()).toContain('rebuilding it from the log');
    expect(old.engine.logs()).toContain('the replaced copy of the shard is kept');
    const { existsSync, readdirSync } = await import('node:fs');
    const { join } = await import('node:path');
    expect(existsSync(join(dataDir, 'shard-0.replaced'))).toBe(true);
    expect(readdirSync(join(dataDir, 'shard-0.replaced')).some((f) => f.startsWith('snap-'))).toBe(true);
    await first.engine.kill9();
    await old.waitServing([0], leaseTtlMs + 10_000);
    await expectAllHeld(d.url, acknowledged);
  });

  it('rebuilds a disk whose log cannot be recovered (a damaged segment) from the replicated log', async () => {
    const d = await startNatsDeployment({ shards: 1, nodes: [[0]], leaseTtlMs });
    const owner = d.nodes[0]!;
    const standby = await d.startNode([0], { waitServing: false });
    const sku = uniq('damaged');
    await createSku(api(d.url), sku, { stock: 100, holdSeconds: 3600 });
    const ids = await reserveMany(d.url, sku, 20, 'dmg');
    await sleep(500); // the standby has followed
    expect(await standby.engine.stop()).toBe(0);
    const { readdirSync, readFileSync, writeFileSync } = await import('node:fs');
    const { join } = await import('node:path');
    const shardDir = join(standby.dataDir, 'shard-0');
    const segment = join(shardDir, readdirSync(shardDir).filter((f) => f.startsWith('wal-')).sort()[0]!);
    const bytes = readFileSync(segment);
    bytes[Math.floor(bytes.length / 3)]! ^= 0xff; // a flipped byte in the middle: not a torn tail
    writeFileSync(segment, bytes);
    const again = await d.startNode([0], { dataDir: standby.dataDir, waitServing: false });
    for (let waited = 0; !/cannot be recovered/.test(again.engine.logs()) && waited < 300; waited++) await sleep(50);
    expect(again.engine.logs()).toMatch(/cannot be recovered/);
    await owner.engine.kill9();
    await again.waitServing([0], leaseTtlMs + 10_000);
    await expectAllHeld(d.url, ids);
  });
});
