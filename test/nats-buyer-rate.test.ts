// A buyer's rate limit holds for the whole deployment, not per gateway: three gateways over
// NATS in front of one shard node, one buyer firing through all three at once, and the
// reserves that got past the limit are at most what FLASH_BUYER_RPS allows in that time
// (the shard that owns the SKU holds the buyer's bucket). Each gateway alone would let
// three times as many through.

import { afterAll, describe, expect, it } from 'vitest';
import { api, stopAllEngines } from './support/engine-process.js';
import { createSku, uniq } from './support/http-kit.js';
import { startNatsDeployment, stopAllNatsServers } from './support/nats-deployment.js';

afterAll(async () => {
  await stopAllEngines();
  await stopAllNatsServers();
});

describe('FLASH_BUYER_RPS across gateways', () => {
  it('holds one buyer to FLASH_BUYER_RPS through three gateways at once', async () => {
    const rps = 5;
    const d = await startNatsDeployment({ shards: 2, nodes: [[0, 1]], env: { FLASH_BUYER_RPS: String(rps) } });
    const g2 = await d.startGateway();
    const g3 = await d.startGateway();
    const gateways = [d.url, g2.url, g3.url].map((u) => api(u));
    const sku = uniq('rps');
    await createSku(gateways[0]!, sku, { stock: 100_000 });

    const runMs = 3000;
    const started = Date.now();
    const statuses: number[] = [];
    let lastAnswerMs = started;
    // Four callers per gateway, each firing as fast as answers come back.
    await Promise.all(gateways.flatMap((g) => Array.from({ length: 4 }, async () => {
      while (Date.now() - started < runMs) {
        const r = await g.post('/v1/reservations', { sku, buyerId: 'hammer' });
        statuses.push(r.status);
        lastAnswerMs = Date.now();
        if (r.status !== 201 && r.status !== 429) throw new Error(`unexpected answer ${r.status} ${r.text}`);
      }
    })));
    const passed = statuses.filter((s) => s === 201).length;
    const limited = statuses.filter((s) => s === 429).length;
    const seconds = (lastAnswerMs - started) / 1000;
    // A full bucket (one second's worth) plus the refill over the run, and one for rounding.
    const allowedMax = rps + Math.ceil(rps * seconds) + 1;
    expect(limited, `${statuses.length} calls in ${seconds} s`).toBeGreaterThan(0);
    expect(passed, `${passed} reserves passed in ${seconds} s through 3 gateways; at most ${allowedMax} may`).toBeLessThanOrEqual(allowedMax);
    expect(passed).toBeGreaterThanOrEqual(rps);
    const view = (await gateways[1]!.get(`/v1/skus/${sku}`)).body;
    expect(view.reserved).toBe(passed);
  });
});
