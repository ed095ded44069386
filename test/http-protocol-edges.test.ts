// What Node's HTTP layer answers on its own, made to follow the API: "100 Continue" only
// after the caller is authenticated and authorized, and the JSON error body (counted in
// flash_refusals_total) for requests the parser refuses: headers over the limit, broken HTTP.

import { connect, type Socket } from 'node:net';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { TOKENS, api, startEngine, stopAllEngines, type Engine } from './support/engine-process.js';
import { createSku, metricValue, uniq } from './support/http-kit.js';

let engine: Engine;

beforeAll(async () => {
  engine = await startEngine();
});

afterAll(async () => {
  await stopAllEngines();
});

/** A socket and everything it has received so far; `until` waits for a pattern. */
function open(): Promise<{ socket: Socket; received: () => string; until: (re: RegExp) => Promise<string> }> {
  return new Promise((resolve, reject) => {
    const socket = connect(engine.port, '127.0.0.1');
    let text = '';
    const waiters: (() => void)[] = [];
    socket.on('data', (d: Buffer) => {
      text += d.toString('latin1');
      for (const w of waiters.splice(0)) w();
    });
    socket.on('end', () => { for (const w of waiters.splice(0)) w(); });
    socket.once('error', reject);
    socket.once('connect', () => resolve({
      socket,
      received: () => text,
      until: (re) => new Promise((res, rej) => {
        const timer = setTimeout(() => rej(new Error(`no ${re} within 10 s; got ${JSON.stringify(text)}`)), 10_000);
        const check = (): void => {
          if (re.test(text)) {
            clearTimeout(timer);
            res(text);
          } else waiters.push(check);
        };
        check();
      }),
    }));
  });
}

const jsonOf = (response: string): any => JSON.parse(response.slice(response.indexOf('\r\n\r\n') + 4));

describe('HTTP edges', () => {
  it('answers 401 instead of "100 Continue" to a caller with no token, and sends the body nowhere', async () => {
    const c = await open();
    c.socket.write('POST /v1/reservations HTTP/1.1\r\nhost: x\r\ncontent-type: application/json\r\ncontent-length: 30\r\nexpect: 100-continue\r\n\r\n');
    const answer = await c.until(/\r\n\r\n\{.*\}$/s);
    expect(answer).toMatch(/^HTTP\/1\.1 401 /);
    expect(answer).not.toContain('100 Continue');
    expect(jsonOf(answer).error.code).toBe('unauthorized');
    c.socket.destroy();
  });

  it('sends "100 Continue" to an authorized caller, then takes the body', async () => {
    const sku = uniq('continue');
    await createSku(api(engine.url), sku, { stock: 2 });
    const body = JSON.stringify({ sku, buyerId: 'cc' });
    const c = await open();
    c.socket.write(`POST /v1/reservations HTTP/1.1\r\nhost: x\r\nauthorization: Bearer ${TOKENS.shop}\r\ncontent-type: application/json\r\ncontent-length: ${Buffer.byteLength(body)}\r\nexpect: 100-continue\r\n\r\n`);
    await c.until(/^HTTP\/1\.1 100 Continue\r\n\r\n/);
    c.socket.write(body);
    const answer = await c.until(/HTTP\/1\.1 201 [^]*\r\n\r\n\{.*\}$/s);
    expect(jsonOf(answer.slice(answer.indexOf('HTTP/1.1 201')))).toMatchObject({ sku, buyerId: 'cc', status: 'held' });
    c.socket.destroy();
  });

  it('answers headers over the limit with 431 headers_too_large in the API\'s JSON, counted as a refusal', async () => {
    const metric = async (): Promise<number> => metricValue(await (await fetch(`${engine.url}/metrics`)).text(), 'flash_refusals_total', { route: 'unknown', code: 'headers_too_large' }) ?? 0;
    const before = await metric();
    const c = await open();
    c.socket.write(`GET /v1/skus/a HTTP/1.1\r\nhost: x\r\nx-big: ${'a'.repeat(20_000)}\r\n\r\n`);
    const answer = await c.until(/\r\n\r\n\{.*\}$/s);
    expect(answer).toMatch(/^HTTP\/1\.1 431 /);
    expect(jsonOf(answer)).toEqual({ error: { code: 'headers_too_large', message: expect.any(String) } });
    expect(await metric()).toBe(before + 1);
  });

  it('answers broken HTTP with 400 invalid_request in the API\'s JSON, and closes the connection', async () => {
    const c = await open();
    c.socket.write('POST /v1/reservations HTTP/1.1\r\nhost: x\r\ncontent-length: -1\r\n\r\n');
    const answer = await c.until(/\r\n\r\n\{.*\}$/s);
    expect(answer).toMatch(/^HTTP\/1\.1 400 /);
    expect(answer.toLowerCase()).toContain('connection: close');
    expect(jsonOf(answer).error.code).toBe('invalid_request');
  });
});
