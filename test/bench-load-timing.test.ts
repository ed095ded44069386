// How the benchmarks time a run of a fixed number of requests (bench/compare-load.ts for the
// kit, bench/http-load.ts for bench:http and bench:nats). autocannon ends such a run only at
// its next whole-second tick, so a run whose requests were all answered is timed to its last
// answer; one with a request that was never answered (an error, a timeout, a connection the
// server closed) is timed whole, its wait included, and one with no answer at all gives 0/s,
// never NaN. Only lower bounds of time are asserted (a run cannot end before the wait it
// includes), never how fast anything was.

import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { afterEach, describe, expect, it } from 'vitest';
import { runPlan } from '../bench/compare-load.js';
import { runLoad } from '../bench/http-load.js';

let server: Server | null = null;

afterEach(async () => {
  const s = server;
  server = null;
  if (s !== null) await new Promise<void>((resolve) => { s.closeAllConnections(); s.close(() => resolve()); });
});

/**
 * A server that answers every request but the 10th, which it answers too (`answered`), never
 * answers (`silent`), or whose connection it closes unanswered after 500 ms (`closed`).
 * Over one connection, the 10th request is the last: its wait comes after every other answer.
 */
async function serve(tenth: 'answered' | 'silent' | 'closed'): Promise<string> {
  let n = 0;
  const s = createServer((req, res) => {
    req.resume();
    req.on('end', () => {
      if (++n === 10 && tenth !== 'answered') {
        if (tenth === 'closed') setTimeout(() => req.socket.end(), 500);
        return;
      }
      res.writeHead(201, { 'content-type': 'application/json' }).end('{}');
    });
  });
  server = s;
  await new Promise<void>((resolve) => s.listen(0, '127.0.0.1', resolve));
  return `http://127.0.0.1:${(s.address() as AddressInfo).port}`;
}

const request = { method: 'POST' as const, path: '/v1/reservations', body: '{}' };

describe('the kit times a run of a fixed amount (compare-load)', () => {
  it('to the end of the run, timeout included, when a request was never answered', async () => {
    const url = await serve('silent');
    const r = await runPlan({ title: 't', url, connections: 1, durationSeconds: 0, amount: 10, timeoutSeconds: 1, requests: [request], pids: [] });
    expect(r.timeouts).toBe(1);
    expect(r.responses).toBe(9);
    expect(r.seconds).toBeGreaterThanOrEqual(1);
    expect(r.responsesPerSec).toBeLessThanOrEqual(9);
  });

  it('to the end of the run when the server closed a connection instead of answering (neither an error nor a timeout to autocannon)', async () => {
    const url = await serve('closed');
    const r = await runPlan({ title: 't', url, connections: 1, durationSeconds: 0, amount: 10, timeoutSeconds: 10, requests: [request], pids: [] });
    expect(r.responses).toBe(9);
    expect(r.seconds).toBeGreaterThanOrEqual(0.5);
    expect(r.responsesPerSec).toBeLessThanOrEqual(18);
  });

  it('to its last answer when every request was answered: no more than the run itself', async () => {
    const url = await serve('answered');
    const started = performance.now();
    const r = await runPlan({ title: 't', url, connections: 4, durationSeconds: 0, amount: 200, timeoutSeconds: 10, requests: [request], pids: [] });
    const wallSeconds = (performance.now() - started) / 1000;
    expect(r.responses).toBe(200);
    expect(r.statuses['201']).toBe(200);
    expect(r.seconds).toBeGreaterThan(0);
    expect(r.seconds).toBeLessThanOrEqual(wallSeconds);
    expect(r.responsesPerSec).toBeCloseTo(200 / r.seconds, 6);
  });

  it('as 0 answers/s, not NaN, when nothing answered at all', async () => {
    const url = await serve('answered');
    const port = new URL(url).port;
    await new Promise<void>((resolve) => { server!.close(() => resolve()); });
    server = null;
    const r = await runPlan({ title: 't', url: `http://127.0.0.1:${port}`, connections: 1, durationSeconds: 0, amount: 3, timeoutSeconds: 1, requests: [request], pids: [] });
    expect(r.responses).toBe(0);
    expect(r.seconds).toBeGreaterThan(0);
    expect(r.responsesPerSec).toBe(0);
    expect(r.admittedPerSec).toBe(0);
  });
});

describe('bench:http times a run of a fixed amount (http-load)', () => {
  it('keeps autocannon figures, timeout included, when a request was never answered', async () => {
    const url = await serve('silent');
    const f = await runLoad('t', url, { connections: 1, pipelining: 1, durationSeconds: 0, amount: 10, timeoutSeconds: 1 }, { skuOf: () => 's', buyerPrefix: 'b' });
    expect(f.timeouts).toBe(1);
    expect(f.requests).toBe(9);
    expect(f.durationSeconds).toBeGreaterThanOrEqual(1);
    expect(f.requestsPerSecMean).toBeLessThanOrEqual(9);
  });

  it('keeps autocannon figures when the server closed a connection instead of answering', async () => {
    const url = await serve('closed');
    const f = await runLoad('t', url, { connections: 1, pipelining: 1, durationSeconds: 0, amount: 10, timeoutSeconds: 10 }, { skuOf: () => 's', buyerPrefix: 'b' });
    expect(f.requests).toBe(9);
    expect(f.durationSeconds).toBeGreaterThanOrEqual(0.5);
  });

  it('counts answers over the time to the last one when every request was answered', async () => {
    const url = await serve('answered');
    const f = await runLoad('t', url, { connections: 4, pipelining: 1, durationSeconds: 0, amount: 200, timeoutSeconds: 10 }, { skuOf: () => 's', buyerPrefix: 'b' });
    expect(f.requests).toBe(200);
    expect(f.durationSeconds).toBeGreaterThan(0);
    expect(f.requestsPerSecMean).toBeCloseTo(200 / f.durationSeconds, 6);
  });
});
