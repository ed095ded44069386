// One autocannon run and the figures bench:http reports from it. Every run sends
// POST /v1/reservations with a body built per request (a unique buyerId from a counter),
// so the client does the same work whatever server it loads. Statuses are counted by a
// per-response hook, not only from autocannon's summary.

import autocannon from 'autocannon';

export interface LoadSettings {
  connections: number;
  pipelining: number;
  /** Seconds; ignored when amount is set. */
  durationSeconds: number;
  amount?: number;
  timeoutSeconds: number;
}

export interface LoadFigures {
  title: string;
  durationSeconds: number;
  requests: number;
  /**
   * autocannon's mean of its per-second counts; for a run of a fixed `amount` where every
   * request was answered, the answers over the seconds to the last one instead
   * (toLastAnswerSeconds).
   */
  requestsPerSecMean: number;
  latencyMs: { mean: number; p50: number; p90: number; p99: number; p99_9: number; max: number };
  non2xx: number;
  errors: number;
  timeouts: number;
  /** Counted by our own response hook: status -> responses. */
  statuses: Record<string, number>;
  /** Error codes of non-2xx bodies (only when bodies were collected): code -> responses. */
  errorCodes?: Record<string, number>;
}

export interface ReserveBodySource {
  skuOf(n: number): string;
  /** Distinct from every buyer of every other run against the same server. */
  buyerPrefix: string;
  /** A caller token sent with every request (the shop backend's); absent: none. */
  token?: string;
  /**
   * Buyer tokens, one per request in turn (their `sub` is the buyer; the body names none).
   * Minted before the run, so the client's cost of minting is not in the figures.
   */
  buyerTokens?: readonly string[];
}

/**
 * The seconds a run of a fixed `amount` took to its last answer, or null when the run is to be
 * timed whole. autocannon ends such a run only at its next whole-second tick (50,000 answers
 * received in 1.44 s were reported at 2.01 s), which made every system finishing within the
 * same second equally fast. Only a run whose every request was answered is timed to its last
 * answer: a request that failed, timed out, or whose connection the server closed (autocannon
 * counts that as neither an error nor a timeout, and reconnects) has no answer to time, so
 * such a run, like one with no `amount`, is timed whole, its wait included.
 */
export function toLastAnswerSeconds(
  amount: number | undefined, answers: number, result: Pick<autocannon.Result, 'errors' | 'timeouts'>, startedAt: number, lastAnswerAt: number,
): number | null {
  if (amount === undefined || answers !== amount || result.errors !== 0 || result.timeouts !== 0) return null;
  const seconds = (lastAnswerAt - startedAt) / 1000;
  return seconds > 0 ? seconds : null;
}

let requestCounter = 0;

function bodyOf(source: ReserveBodySource, n: number): string {
  if (source.buyerTokens !== undefined) return `{"sku":"${source.skuOf(n)}","qty":1}`;
  return `{"sku":"${source.skuOf(n)}","buyerId":"${source.buyerPrefix}${n}","qty":1}`;
}

function setupOf(source: ReserveBodySource): autocannon.Request['setupRequest'] {
  const base = { 'content-type': 'application/json' };
  const tokens = source.buyerTokens;
  if (tokens !== undefined) {
    let i = 0;
    return (req) => {
      const n = requestCounter++;
      const headers = { ...base, authorization: `Bearer ${tokens[i++ % tokens.length]}` };
      return { ...req, headers, body: bodyOf(source, n) };
    };
  }
  const headers = source.token === undefined ? base : { ...base, authorization: `Bearer ${source.token}` };
  return (req) => ({ ...req, headers, body: bodyOf(source, requestCounter++) });
}

function errorCodeOf(body: string): string {
  try {
    return (JSON.parse(body) as { error?: { code?: string } }).error?.code ?? '(no code)';
  } catch {
    return '(not json)';
  }
}

export async function runLoad(title: string, url: string, settings: LoadSettings, source: ReserveBodySource, collectErrorCodes = false): Promise<LoadFigures> {
  const statuses: Record<string, number> = {};
  const errorCodes: Record<string, number> = {};
  const request: autocannon.Request = {
    method: 'POST',
    path: '/v1/reservations',
    headers: { 'content-type': 'application/json' },
    setupRequest: setupOf(source),
  };
  if (collectErrorCodes) {
    request.onResponse = (status, body) => {
      if (status >= 300) errorCodes[errorCodeOf(body)] = (errorCodes[errorCodeOf(body)] ?? 0) + 1;
    };
  }
  const started = performance.now();
  let lastAnswerAt = started;
  const result = await new Promise<autocannon.Result>((resolve, reject) => {
    const instance = autocannon({
      url,
      title,
      connections: settings.connections,
      pipelining: settings.pipelining,
      duration: settings.durationSeconds,
      ...(settings.amount === undefined ? {} : { amount: settings.amount }),
      timeout: settings.timeoutSeconds,
      requests: [request],
    }, (err: unknown, res: autocannon.Result) => (err ? reject(err instanceof Error ? err : new Error(String(err))) : resolve(res)));
    instance.on('response', (_client, statusCode) => {
      statuses[statusCode] = (statuses[statusCode] ?? 0) + 1;
      lastAnswerAt = performance.now();
    });
  });
  const l = result.latency;
  const requests = Object.values(statuses).reduce((a, b) => a + b, 0);
  // Timed whole, autocannon's own figures stand.
  const toLast = toLastAnswerSeconds(settings.amount, requests, result, started, lastAnswerAt);
  return {
    title,
    durationSeconds: toLast ?? result.duration,
    requests,
    requestsPerSecMean: toLast === null ? result.requests.average : requests / toLast,
    latencyMs: { mean: l.average, p50: l.p50, p90: l.p90, p99: l.p99, p99_9: l.p99_9, max: l.max },
    non2xx: result.non2xx,
    errors: result.errors,
    timeouts: result.timeouts,
    statuses,
    ...(collectErrorCodes ? { errorCodes } : {}),
  };
}
