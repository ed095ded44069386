// Text as people write it, and bytes that are not text: a refund's reason keeps format
// characters (a zero-width joiner in an emoji, a zero-width non-joiner in Persian, a soft
// hyphen) and refuses control characters; a body that is not valid UTF-8 is refused whole
// instead of being decoded to U+FFFD and stored changed.

import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { api, startEngine, stopAllEngines, type Api, type Engine } from './support/engine-process.js';
import { bearer, rawRequest } from './support/http-raw.js';
import { createSku, expectError, reserveOk, uniq } from './support/http-kit.js';
import { TOKENS } from './support/engine-process.js';

let engine: Engine;
let a: Api;

beforeAll(async () => {
  engine = await startEngine({ env: { FLASH_BUYER_RPS: '1000' } });
  a = api(engine.url);
});

afterAll(async () => {
  await stopAllEngines();
});

async function paidOrder(sku: string, buyerId: string): Promise<string> {
  const held = await reserveOk(a, { sku, buyerId });
  expect((await a.post(`/v1/reservations/${held.reservationId}/pay`, {})).status).toBe(200);
  return held.reservationId as string;
}

describe('text in requests', () => {
  it('keeps format characters in a refund reason, and refuses control characters', async () => {
    const sku = uniq('reason');
    await createSku(a, sku, { stock: 10 });
    const reasons = ['می‌خواهم', '👨‍👩‍👧 returned', 'a\u00adb', 'line one\nline two\twith a tab'];
    for (const [i, reason] of reasons.entries()) {
      const id = await paidOrder(sku, `r${i}`);
      const r = await a.post(`/v1/reservations/${id}/refund`, { reason });
      expect(r.status, `${JSON.stringify(reason)}: ${r.text}`).toBe(200);
      expect(r.body.refundReason).toBe(reason);
    }
    const id = await paidOrder(sku, 'bad');
    for (const reason of ['nul\u0000byte', 'bell\u0007', 'lone \ud800 surrogate']) {
      expectError(await a.post(`/v1/reservations/${id}/refund`, { reason }), 400, 'invalid_request');
    }
    expect((await a.get(`/v1/reservations/${id}`)).body.status).toBe('paid');
  });

  it('refuses a body that is not valid UTF-8, changing nothing', async () => {
    const sku = uniq('utf8');
    await createSku(a, sku, { stock: 10 });
    const id = await paidOrder(sku, 'u1');
    const body = Buffer.concat([Buffer.from('{"reason":"caf'), Buffer.from([0xe9]), Buffer.from('"}')]);
    const r = await rawRequest(engine.port, `POST /v1/reservations/${id}/refund HTTP/1.1\r\nhost: x\r\n${bearer(TOKENS.payments)}\r\ncontent-type: application/json\r\ncontent-length: ${body.length}`, [body]);
    expect(r.status, r.text).toBe(400);
    expect(r.body.error.code).toBe('invalid_request');
    expect(r.body.error.message).toMatch(/UTF-8/);
    expect((await a.get(`/v1/reservations/${id}`)).body.status).toBe('paid');
  });
});
