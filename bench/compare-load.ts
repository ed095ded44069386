// One autocannon run of `npm run bench`, with the latency of every response recorded by
// us into hdr-histogram-js (microseconds; all responses, 2xx only, 503 only), statuses
// counted per response, and the server's resident memory sampled from /proc while it runs.
// autocannon's own figures are kept beside ours as a cross-check, never instead of them.

import autocannon from 'autocannon';
import { emptyLatency, latencyHistogram as histogram, latencySummary as summary, type LatencyMs } from '../src/cli/report-kit.js';
import { startRssSampler, type RssFigures } from './rss-sampler.js';
import { shopToken } from './engine-under-test.js';
import { toLastAnswerSeconds } from './http-load.js';

export type { LatencyMs } from '../src/cli/report-kit.js';

export interface LoadPlan {
  title: string;
  url: string;
  connections: number;
  /** Seconds; ignored when amount is set. */
  durationSeconds: number;
  amount?: number;
  /** autocannon overallRate: requests per second over all connections; none = as fast as answered. */
  overallRate?: number;
  timeoutSeconds: number;
  requests: autocannon.Request[];
  /** Processes whose VmRSS is summed and sampled during the run. */
  pids: number[];
}

export interface LoadResult {
  title: string;
  connections: number;
  overallRate: number | null;
  /**
   * Wall-clock seconds from the start to autocannon's end, or, for a run of a fixed `amount`
   * where every request was answered, to the last answer (toLastAnswerSeconds in http-load.ts).
   */
  seconds: number;
  responses: number;
  responsesPerSec: number;
  /** 2xx responses per second: the work a system admitted and did. */
  admittedPerSec: number;
  statuses: Record<string, number>;
  errors: number;
  timeouts: number;
  /** Our histograms: every response, 2xx only, 503 only (null when there was none). */
  latencyMs: LatencyMs;
  latency2xxMs: LatencyMs | null;
  latency503Ms: LatencyMs | null;
  /** autocannon's histogram (2xx only; corrected for coordinated omission when rate-limited). */
  autocannonLatencyMs: { p50: number; p99: number; p99_9: number };
  rss: RssFigures;
}

export async function runPlan(plan: LoadPlan): Promise<LoadResult> {
  const all = histogram();
  const ok2xx = histogram();
  const shed503 = histogram();
  const statuses: Record<string, number> = {};
  const rss = startRssSampler(plan.pids);
  const started = performance.now();
  let lastAnswerAt = started;
  const result = await new Promise<autocannon.Result>((resolve, reject) => {
    const instance = autocannon({
      url: plan.url,
      title: plan.title,
      connections: plan.connections,
      pipelining: 1,
      duration: plan.durationSeconds,
      ...(plan.amount === undefined ? {} : { amount: plan.amount }),
      ...(plan.overallRate === undefined ? {} : { overallRate: plan.overallRate }),
      timeout: plan.timeoutSeconds,
      requests: plan.requests,
    }, (err: unknown, res: autocannon.Result) => (err ? reject(err instanceof Error ? err : new Error(String(err))) : resolve(res)));
    instance.on('response', (_client: unknown, statusCode: number, _bytes: number, responseTimeMs: number) => {
      statuses[statusCode] = (statuses[statusCode] ?? 0) + 1;
      lastAnswerAt = performance.now();
      const us = Math.min(120_000_000, Math.max(1, Math.round(responseTimeMs * 1000)));
      all.recordValue(us);
      if (statusCode >= 200 && statusCode < 300) ok2xx.recordValue(us);
      else if (statusCode === 503) shed503.recordValue(us);
    });
  });
  const responses = Object.values(statuses).reduce((a, b) => a + b, 0);
  const seconds = toLastAnswerSeconds(plan.amount, responses, result, started, lastAnswerAt) ?? (performance.now() - started) / 1000;
  const admitted = Object.entries(statuses).filter(([s]) => s.startsWith('2')).reduce((a, [, n]) => a + n, 0);
  return {
    title: plan.title,
    connections: plan.connections,
    overallRate: plan.overallRate ?? null,
    seconds,
    responses,
    responsesPerSec: responses / seconds,
    admittedPerSec: admitted / seconds,
    statuses,
    errors: result.errors,
    timeouts: result.timeouts,
    latencyMs: summary(all) ?? emptyLatency,
    latency2xxMs: summary(ok2xx),
    latency503Ms: summary(shed503),
    autocannonLatencyMs: { p50: result.latency.p50, p99: result.latency.p99, p99_9: result.latency.p99_9 },
    rss: rss.stop(),
  };
}

/** A fresh buyer per request from a run-wide counter, so no two requests of a run share one. */
let buyerCounter = 0;
export const nextBuyer = (prefix: string): string => `${prefix}${(buyerCounter++).toString(36)}`;

/** POST /v1/reservations with qty 1 for the SKU `skuOf(n)` and a fresh buyer. */
export function reserveRequest(skuOf: (n: number) => string, buyerPrefix: string): autocannon.Request {
  let n = 0;
  return {
    method: 'POST',
    path: '/v1/reservations',
    // The shop backend's token; the baselines ignore it, the engine checks it on every call.
    headers: { 'content-type': 'application/json', authorization: `Bearer ${shopToken}` },
    setupRequest: (req) => ({ ...req, body: `{"sku":"${skuOf(n++)}","buyerId":"${nextBuyer(buyerPrefix)}","qty":1}` }),
  };
}
