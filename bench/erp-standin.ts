// A slow, flaky ERP for tests and demos: it takes the engine's `order.paid` and
// `order.refunded` webhooks with a configurable latency (plus jitter) and failure rate (500,
// 503 or a dropped connection), refuses a bad signature with 401 and an order.refunded whose
// order.paid it has not accepted with 409 (counted: the engine must never send one first),
// and records every accepted delivery by eventId (counting duplicates), the most calls it
// ever had in flight, and the most calls that started within any one second. It keeps
// everything in memory and never calls anyone.
// GET /stats, GET /deliveries[?bodies=1] and POST /deliveries/missing report; POST /faults
// changes latency and errors while it runs.

import { createHmac, timingSafeEqual } from 'node:crypto';
import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import { seededRandom } from './seeded-random.js';

export const FailureMode = { status500: '500', status503: '503', drop: 'drop' } as const;
export type FailureMode = (typeof FailureMode)[keyof typeof FailureMode];

export interface ErpFaults {
  /** Answer delay: latencyMs plus a uniform draw in [-jitterMs, +jitterMs], at least 0. */
  latencyMs: number;
  jitterMs: number;
  /** Share of valid calls that fail, 0..1; each failure picks one of `failureModes`. */
  errorRate: number;
  failureModes: readonly FailureMode[];
}

export interface ErpStandInOptions extends Partial<ErpFaults> {
  secret: string;
  port?: number;
  host?: string;
  /** Seeds the failure and latency draws, so a run can be repeated. */
  seed?: number;
}

export interface Delivery {
  /** Accepted (2xx) calls for this eventId; more than 1 = duplicates. */
  count: number;
  body: string;
  firstAtMs: number;
}

export interface ErpStandInStats {
  received: number;
  accepted: number;
  uniqueEvents: number;
  duplicates: number;
  /** Same eventId accepted again with a different body: must stay 0. */
  bodyMismatches: number;
  /** order.refunded calls that came before their order's order.paid was accepted (answered 409): must stay 0. */
  refundsBeforePaid: number;
  failuresInjected: Record<FailureMode, number>;
  badSignatures: number;
  badRequests: number;
  lastBadRequest: string | null;
  inFlight: number;
  maxConcurrency: number;
  /** Most calls that arrived within any window of one second (sliding). */
  maxStartsPerSecond: number;
}

export interface ErpStandIn {
  readonly url: string;
  readonly port: number;
  readonly deliveries: ReadonlyMap<string, Delivery>;
  stats(): ErpStandInStats;
  setFaults(faults: Partial<ErpFaults>): void;
  close(): Promise<void>;
}

const bodyBytesMax = 64 * 1024;
/** The exact keys, in order, of each event type's body. */
const paidKeys = ['type', 'eventId', 'reservationId', 'sku', 'buyerId', 'qty', 'paidAt', 'paymentRef', 'channel'];
const stockKeys = ['type', 'eventId', 'sku', 'dropId', 'available', 'onHand', 'at'].join(',');
const bodyKeys: Record<string, string> = {
  'order.paid': paidKeys.join(','),
  'order.refunded': [...paidKeys, 'refundedAt', 'restock', 'reason'].join(','),
  // The stock events webhook (FLASH_EVENTS_WEBHOOK_URL) posts these; the stand-in takes them too.
  'sku.low_stock': stockKeys,
  'sku.sold_out': stockKeys,
  'sku.restocked': stockKeys,
};


/** Counts arrivals within any sliding window of one second; keeps only the last second. */
class StartsWindow {
  private readonly atMs: number[] = [];
  private head = 0;
  max = 0;

  arrive(nowMs: number): void {
    this.atMs.push(nowMs);
    while ((this.atMs[this.head] as number) <= nowMs - 1000) this.head++;
    if (this.head > 4096) {
      this.atMs.splice(0, this.head);
      this.head = 0;
    }
    this.max = Math.max(this.max, this.atMs.length - this.head);
  }
}

class StandIn implements ErpStandIn {
  readonly deliveries = new Map<string, Delivery>();
  private readonly faults: ErpFaults;
  private readonly random: () => number;
  private readonly starts = new StartsWindow();
  private readonly counts = {
    received: 0, accepted: 0, duplicates: 0, bodyMismatches: 0, refundsBeforePaid: 0, badSignatures: 0, badRequests: 0, inFlight: 0, maxConcurrency: 0,
  };
  private readonly failuresInjected: Record<FailureMode, number> = { '500': 0, '503': 0, drop: 0 };
  private lastBadRequest: string | null = null;
  readonly server: Server;
  url = '';
  port = 0;

  constructor(private readonly opts: ErpStandInOptions) {
    this.faults = {
      latencyMs: opts.latencyMs ?? 0, jitterMs: opts.jitterMs ?? 0, errorRate: opts.errorRate ?? 0,
      failureModes: opts.failureModes ?? [FailureMode.status500, FailureMode.status503, FailureMode.drop],
    };
    this.random = seededRandom(opts.seed ?? Math.floor(Math.random() * 2 ** 32));
    this.server = createServer({ keepAliveTimeout: 30_000 }, (req, res) => this.handle(req, res));
  }

  setFaults(faults: Partial<ErpFaults>): void {
    Object.assign(this.faults, Object.fromEntries(Object.entries(faults).filter(([, v]) => v !== undefined)));
  }

  stats(): ErpStandInStats {
    const { received, accepted, duplicates, bodyMismatches, refundsBeforePaid, badSignatures, badRequests, inFlight, maxConcurrency } = this.counts;
    return {
      received, accepted, uniqueEvents: this.deliveries.size, duplicates, bodyMismatches, refundsBeforePaid,
      failuresInjected: { ...this.failuresInjected }, badSignatures, badRequests, lastBadRequest: this.lastBadRequest,
      inFlight, maxConcurrency, maxStartsPerSecond: this.starts.max,
    };
  }

  private handle(req: IncomingMessage, res: ServerResponse): void {
    const path = (req.url ?? '/').split('?')[0];
    if (req.method === 'GET' && path === '/stats') return this.json(res, 200, this.stats());
    if (req.method === 'GET' && path === '/deliveries') {
      // ?bodies=1 adds each accepted body (for tests that run the stand-in as a process).
      const bodies = /[?&]bodies=1\b/.test(req.url ?? '');
      return this.json(res, 200, [...this.deliveries].slice(0, 100_000).map(([eventId, d]) => ({ eventId, count: d.count, firstAtMs: d.firstAtMs, ...(bodies ? { body: d.body } : {}) })));
    }
    if (req.method === 'POST' && path === '/faults') return this.readBody(req, res, (text) => this.changeFaults(res, text));
    if (req.method === 'POST' && path === '/deliveries/missing') return this.readBody(req, res, (text) => this.missing(res, text));
    if (req.method !== 'POST') return this.json(res, 405, { error: { code: 'method_not_allowed', message: 'POST the webhook' } });
    this.counts.received++;
    this.starts.arrive(performance.now());
    this.counts.inFlight++;
    this.counts.maxConcurrency = Math.max(this.counts.maxConcurrency, this.counts.inFlight);
    res.on('close', () => this.counts.inFlight--);
    this.readBody(req, res, (text) => this.webhook(req, res, text));
  }

  private readBody(req: IncomingMessage, res: ServerResponse, done: (text: string) => void): void {
    const chunks: Buffer[] = [];
    let size = 0;
    req.on('data', (c: Buffer) => {
      size += c.length;
      if (size <= bodyBytesMax) chunks.push(c);
    });
    req.on('end', () => {
      if (size > bodyBytesMax) return this.bad(res, 413, 'body too large');
      done(Buffer.concat(chunks).toString('utf8'));
    });
    req.on('error', () => res.destroy());
  }

  private changeFaults(res: ServerResponse, text: string): void {
    try {
      this.setFaults(JSON.parse(text) as Partial<ErpFaults>);
      this.json(res, 200, this.faults);
    } catch {
      this.json(res, 400, { error: { code: 'invalid_request', message: 'body must be JSON faults' } });
    }
  }

  /** Answers which of the posted eventIds (a JSON array) were never accepted. */
  private missing(res: ServerResponse, text: string): void {
    try {
      const ids = JSON.parse(text) as unknown;
      if (!Array.isArray(ids)) throw new Error('not an array');
      this.json(res, 200, ids.filter((id) => typeof id !== 'string' || !this.deliveries.has(id)));
    } catch {
      this.json(res, 400, { error: { code: 'invalid_request', message: 'body must be a JSON array of eventIds' } });
    }
  }

  /** Why this call is not a well-formed, correctly signed order.paid or order.refunded, or null. */
  private problem(req: IncomingMessage, text: string): { status: number; why: string } | null {
    const signature = String(req.headers['x-flash-signature'] ?? '');
    const expected = `sha256=${createHmac('sha256', this.opts.secret).update(text).digest('hex')}`;
    if (signature.length !== expected.length || !timingSafeEqual(Buffer.from(signature), Buffer.from(expected))) {
      return { status: 401, why: 'bad signature' };
    }
    if (!String(req.headers['content-type'] ?? '').startsWith('application/json')) return { status: 400, why: 'content-type is not application/json' };
    let body: Record<string, unknown>;
    try {
      body = JSON.parse(text) as Record<string, unknown>;
    } catch {
      return { status: 400, why: 'body is not JSON' };
    }
    const keys = typeof body.type === 'string' && Object.prototype.hasOwnProperty.call(bodyKeys, body.type) ? bodyKeys[body.type] : undefined;
    if (keys === undefined) return { status: 400, why: 'type is not order.paid, order.refunded or a stock event (sku.low_stock, sku.sold_out, sku.restocked)' };
    if (Object.keys(body).join(',') !== keys) return { status: 400, why: `${String(body.type)} body keys are ${Object.keys(body).join(',')}` };
    if (req.headers['idempotency-key'] !== body.eventId) return { status: 400, why: 'idempotency-key differs from eventId' };
    return null;
  }

  /** A refund the ERP cannot apply yet: it has not accepted the order's order.paid. */
  private refundTooEarly(text: string): boolean {
    const body = JSON.parse(text) as Record<string, unknown>;
    return body.type === 'order.refunded' && !this.deliveries.has(`order.paid:${String(body.reservationId)}`);
  }

  private webhook(req: IncomingMessage, res: ServerResponse, text: string): void {
    const problem = this.problem(req, text);
    if (problem !== null) {
      if (problem.status === 401) this.counts.badSignatures++;
      return this.bad(res, problem.status, problem.why);
    }
    const { latencyMs, jitterMs } = this.faults;
    const delayMs = Math.max(0, latencyMs + (this.random() * 2 - 1) * jitterMs);
    setTimeout(() => this.answer(res, req.headers['idempotency-key'] as string, text), delayMs);
  }

  private answer(res: ServerResponse, eventId: string, text: string): void {
    const { errorRate, failureModes } = this.faults;
    if (failureModes.length > 0 && this.random() < errorRate) {
      const mode = failureModes[Math.floor(this.random() * failureModes.length)] as FailureMode;
      this.failuresInjected[mode]++;
      if (mode === FailureMode.drop) return void res.socket?.destroy();
      return this.json(res, Number(mode), { error: { code: 'erp_unavailable', message: 'injected failure' } });
    }
    if (this.refundTooEarly(text)) {
      this.counts.refundsBeforePaid++;
      return this.json(res, 409, { error: { code: 'unknown_order', message: 'order.refunded before its order.paid' } });
    }
    // The ERP commits before it answers: an order whose caller has already gone is still taken.
    const known = this.deliveries.get(eventId);
    if (known === undefined) this.deliveries.set(eventId, { count: 1, body: text, firstAtMs: Date.now() });
    else {
      known.count++;
      this.counts.duplicates++;
      if (known.body !== text) this.counts.bodyMismatches++;
    }
    this.counts.accepted++;
    this.json(res, 200, { ok: true, duplicate: known !== undefined });
  }

  private bad(res: ServerResponse, status: number, why: string): void {
    this.counts.badRequests++;
    this.lastBadRequest = why;
    this.json(res, status, { error: { code: status === 401 ? 'unauthorized' : 'invalid_request', message: why } });
  }

  private json(res: ServerResponse, status: number, value: unknown): void {
    if (res.headersSent || res.destroyed) return;
    const text = JSON.stringify(value);
    res.writeHead(status, { 'content-type': 'application/json', 'content-length': Buffer.byteLength(text) });
    res.end(text);
  }

  async close(): Promise<void> {
    this.server.closeAllConnections();
    await new Promise<void>((resolve) => this.server.close(() => resolve()));
  }
}

export async function startErpStandIn(opts: ErpStandInOptions): Promise<ErpStandIn> {
  const s = new StandIn(opts);
  const host = opts.host ?? '127.0.0.1';
  await new Promise<void>((resolve, reject) => {
    s.server.once('error', reject);
    s.server.listen(opts.port ?? 0, host, () => resolve());
  });
  const address = s.server.address();
  s.port = typeof address === 'object' && address !== null ? address.port : 0;
  s.url = `http://${host}:${s.port}/erp/orders`;
  return s;
}
