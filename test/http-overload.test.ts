// Load shedding at the gateway: past FLASH_HTTP_INFLIGHT_MAX requests in progress, a new
// request is answered 503 overloaded at once, before its body is read, and changes nothing.

import { afterAll, expect, it } from 'vitest';
import { ADMIN_TOKEN, api, startEngine, stopAllEngines } from './support/engine-process.js';

afterAll(stopAllEngines);

it('sheds requests past the in-progress limit with 503 overloaded, and only admitted ones hold stock', async () => {
  const engine = await startEngine({ env: { FLASH_HTTP_INFLIGHT_MAX: '2', FLASH_BUYER_RPS: '0' } });
  const a = api(engine.url);
  expect((await a.put('/v1/skus/shed', { stock: 1000 }, ADMIN_TOKEN)).status).toBe(201);
  const replies = await Promise.all(Array.from({ length: 200 }, (_, i) => a.post('/v1/reservations', { sku: 'shed', buyerId: `b${i}` })));
  const created = replies.filter((r) => r.status === 201).length;
  const shed = replies.filter((r) => r.status === 503);
  expect(created + shed.length).toBe(200);
  expect(shed.length).toBeGreaterThan(0);
  for (const r of shed) expect(r.body).toMatchObject({ error: { code: 'overloaded' } });
  const view = await a.get('/v1/skus/shed');
  expect(view.body).toMatchObject({ reserved: created, available: 1000 - created });
});
