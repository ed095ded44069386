// The HTTP front of shared/API.md: routing, admin auth, rate limits, validation, and the
// mapping of shard outcomes to statuses. It holds no stock state: every state question
// goes to the owning shard. Bad input is answered 4xx before anything is sent to a shard.

import { createHash, randomFillSync, timingSafeEqual } from 'node:crypto';
import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import type { Logger } from 'pino';
import type { EngineConfig } from '../config.js';
import type { CallOutcome } from '../engine/shard-protocol.js';
import type { GatewayMetrics } from './metrics.js';
import { RateLimiter } from './rate-limiter.js';
import { BodyError, drainBytesMax, listenOn, readJson, sendError, sendJson } from './request-io.js';
import { matchRoute, type RouteName } from './routes.js';
import type { ShardRouter } from './shard-router.js';
import { readStockImport, runStockImport } from '../erp/stock-import-endpoint.js';
import { InvalidRequest, adjustCommand, asObject, payCommand, reserveCommand, skuName, upsertCommand } from './validate.js';

export interface GatewayDeps {
  config: EngineConfig;
  /** null on a shard node (FLASH_ROLE=shards): it serves only /healthz and /metrics. */
  router: ShardRouter | null;
  /** Extra fields for /healthz (e.g. which shards a node serves). */
  health?: () => Record<string, unknown>;
  /** The ERP deliverer's own figures, where this process runs one (else null). */
  erpStatus?: () => Record<string, unknown> | null;
  metrics: GatewayMetrics;
  log: Logger;
}

type Handler = (req: IncomingMessage, res: ServerResponse, param: string, body: unknown) => Promise<number>;

/** Random id suffixes, drawn from a pooled buffer: 40 bits as 8 base-36 digits. */
class NonceSource {
  private readonly pool = Buffer.alloc(5 * 1024);
  private offset = this.pool.length;

  next(): string {
    if (this.offset + 5 > this.pool.length) {
      randomFillSync(this.pool);
      this.offset = 0;
    }
    const p = this.pool;
    const o = this.offset;
    this.offset += 5;
    const low32 = ((p[o + 1]! << 24) | (p[o + 2]! << 16) | (p[o + 3]! << 8) | p[o + 4]!) >>> 0;
    const n = p[o]! * 2 ** 32 + low32;
    return n.toString(36).padStart(8, '0');
  }
}

export class HttpGateway {
  readonly server: Server;
  private readonly buyerLimiter: RateLimiter;
  private readonly ipLimiter: RateLimiter;
  private readonly nonces = new NonceSource();
  private readonly adminDigest: Buffer | null;
  private draining = false;
  private inFlight = 0;
  private drainWaiters: (() => void)[] = [];
  private readonly handlers: Record<Exclude<RouteName, 'healthz' | 'metrics' | 'admin.stock-import'>, Handler>;

  constructor(private readonly deps: GatewayDeps) {
    const { config } = deps;
    this.buyerLimiter = new RateLimiter(config.buyerRps);
    this.ipLimiter = new RateLimiter(config.ipRps);
    this.adminDigest = config.adminToken === null ? null : createHash('sha256').update(config.adminToken).digest();
    this.handlers = {
      'sku.put': (_q, res, sku, body) => this.answer(res, this.router.upsertSku(upsertCommand(asObject(body), skuName(sku))), 'sku'),
      'sku.get': (_q, res, sku) => this.answer(res, this.router.callSku(skuName(sku), { t: 'sku.get', sku }), 'sku'),
      'sku.stock': (_q, res, sku, body) => {
        const cmd = adjustCommand(asObject(body), skuName(sku));
        return this.answer(res, this.router.callSku(sku, cmd), 'sku');
      },
      'reservation.create': (req, res, _p, body) => this.reserve(req, res, body),
      'admin.erp': (_q, res) => this.erpReport(res),
      'reservation.get': (_q, res, id) => this.reservationCall(res, id, { t: 'res.get', id }),
      'reservation.pay': (_q, res, id, body) => this.reservationCall(res, id, payCommand(asObject(body), id)),
      'reservation.cancel': (_q, res, id, body) => {
        asObject(body);
        return this.reservationCall(res, id, { t: 'res.cancel', id });
      },
    };
    this.server = createServer({ keepAliveTimeout: 65_000, headersTimeout: 30_000, requestTimeout: 30_000 }, (req, res) => this.handle(req, res));
  }

  private get router(): ShardRouter {
    return this.deps.router!; // handlers run only when a router exists (checked in handle)
  }

  private clientIp(req: IncomingMessage): string {
    if (this.deps.config.trustProxy) {
      const xff = req.headers['x-forwarded-for'];
      const raw = Array.isArray(xff) ? xff[xff.length - 1] : xff;
      // The right-most entry is the one our own proxy appended; the rest is client-supplied.
      const last = raw?.split(',').pop()?.trim();
      if (last) return last;
    }
    return req.socket.remoteAddress ?? 'unknown';
  }

  private isAdmin(req: IncomingMessage): boolean {
    if (this.adminDigest === null) return this.deps.config.devMode;
    const header = req.headers.authorization;
    if (header === undefined || !header.startsWith('Bearer ')) return false;
    const given = createHash('sha256').update(header.slice(7)).digest();
    return timingSafeEqual(given, this.adminDigest);
  }

  private handle(req: IncomingMessage, res: ServerResponse): void {
    const started = performance.now();
    const match = matchRoute(req.method ?? 'GET', req.url ?? '/');
    let route = 'unknown';
    const finish = (status: number): void => {
      this.deps.metrics.countRequest(route, status);
      if (route === 'reservation.create') this.deps.metrics.reserveSeconds.observe((performance.now() - started) / 1000);
      if (--this.inFlight === 0 && this.draining) for (const w of this.drainWaiters.splice(0)) w();
    };
    this.inFlight++;
    if (this.draining) res.setHeader('connection', 'close');
    if (match.kind !== 'route') {
      if (match.kind === 'method_not_allowed') return finish(sendError(res, 'method_not_allowed', `use ${match.allow} on this path`, { allow: match.allow }));
      if (match.kind === 'bad_path') return finish(sendError(res, 'invalid_request', 'path has a malformed percent-encoding'));
      return finish(sendError(res, 'not_found', 'no such route'));
    }
    route = match.name;
    if (route === 'healthz') return finish(this.healthz(res));
    if (route === 'metrics') return void this.metrics(res).then(finish);
    if (this.deps.router === null) return finish(sendError(res, 'not_found', 'this node serves only /healthz and /metrics (FLASH_ROLE=shards)'));
    if (this.inFlight > this.deps.config.httpInFlightMax) {
      // Shed before reading the body: past this bound every request would only wait longer.
      res.setHeader('connection', 'close');
      return finish(sendError(res, 'overloaded', 'the engine is at its limit of requests in progress; retry shortly'));
    }
    if (this.draining) return finish(sendError(res, 'shutting_down', 'the engine is shutting down; retry on another node'));
    if ((route === 'sku.put' || route === 'sku.stock' || route.startsWith('admin.')) && !this.isAdmin(req)) {
      return finish(sendError(res, 'unauthorized', 'admin calls need header authorization: Bearer <FLASH_ADMIN_TOKEN>'));
    }
    if (route === 'reservation.create' && this.ipLimiter.enabled) {
      const waitMs = this.ipLimiter.take(this.clientIp(req), Date.now());
      if (waitMs > 0) return finish(this.rateLimited(res, waitMs, 'client IP'));
    }
    if (route === 'admin.stock-import') return this.stockImport(req, res, finish);
    const handler = this.handlers[match.name as keyof typeof this.handlers];
    // Validation throws synchronously inside handlers; run them so that every throw
    // becomes an answer (400 for bad input), never an uncaught exception.
    const run = (body: unknown): void => {
      Promise.resolve().then(() => handler(req, res, match.param, body)).then(finish, (e: unknown) => finish(this.failure(res, e)));
    };
    if (req.method === 'GET') return run({});
    readJson(req, (err, body) => {
      if (err !== null) {
        // Node reads and drops the rest of a declared body once we have answered; past
        // drainBytesMax that is not worth it, so the connection is closed instead.
        if (err.code === 'payload_too_large' && Number(req.headers['content-length'] ?? 0) > drainBytesMax) res.setHeader('connection', 'close');
        return finish(sendError(res, err.code, err.message));
      }
      run(body);
    });
  }

  /**
   * The ERP hand-off at a glance: every shard's outbox (backlog), the deliverer's figures
   * where this process runs it (last error, failures), and per SKU sold = delivered +
   * undelivered units. A shard that does not answer is listed with its error.
   */
  private async erpReport(res: ServerResponse): Promise<number> {
    const { transport } = this.router;
    const answers = await Promise.all(Array.from({ length: transport.shardCount }, (_, k) => transport.call(k, { t: 'erp.reconcile' })));
    const totals = { sold: 0, deliveredUnits: 0, undeliveredUnits: 0, undeliveredOrders: 0 };
    const skus: Record<string, unknown>[] = [];
    const shards = answers.map((o, shardId) => {
      if (!o.ok || o.reconcile === undefined) return { shardId, error: o.ok ? 'no answer' : `${o.code}: ${o.message}` };
      for (const r of o.reconcile.rows) {
        const deliveredUnits = r.sold - r.undeliveredUnits;
        totals.sold += r.sold;
        totals.deliveredUnits += deliveredUnits;
        totals.undeliveredUnits += r.undeliveredUnits;
        totals.undeliveredOrders += r.undeliveredOrders;
        skus.push({ ...r, deliveredUnits });
      }
      return { shardId, backlogOrders: o.reconcile.outboxLength, lastEventSeq: o.outboxLastSeq ?? 0, truncated: o.reconcile.truncated };
    });
    const complete = shards.every((s) => !('error' in s));
    sendJson(res, 200, JSON.stringify({ complete, totals, deliverer: this.deps.erpStatus?.() ?? null, shards, skus }));
    return 200;
  }

  /** A whole stock file (CSV or JSON, up to 8 MiB): validated completely, then applied. */
  private stockImport(req: IncomingMessage, res: ServerResponse, finish: (status: number) => void): void {
    void readStockImport(req).then(async (file) => {
      const a = 'status' in file ? file : await runStockImport(file, (c) => this.router.upsertSku(c));
      if (a.status === 413) res.setHeader('connection', 'close');
      sendJson(res, a.status, a.json);
      return a.status;
    }).then(finish, (e: unknown) => finish(this.failure(res, e)));
  }

  private failure(res: ServerResponse, e: unknown): number {
    if (e instanceof InvalidRequest) return sendError(res, 'invalid_request', e.message);
    if (e instanceof BodyError) return sendError(res, e.code, e.message);
    this.deps.log.error({ err: e }, 'unexpected error while handling a request');
    return sendError(res, 'internal_error', 'the engine failed to handle this request');
  }

  private rateLimited(res: ServerResponse, waitMs: number, by: string): number {
    const seconds = String(Math.max(1, Math.ceil(waitMs / 1000)));
    return sendError(res, 'rate_limited', `too many reservation calls for this ${by}; retry after ${seconds} s`, { 'retry-after': seconds });
  }

  private async reserve(_req: IncomingMessage, res: ServerResponse, body: unknown): Promise<number> {
    const cmd = reserveCommand(asObject(body), this.nonces.next());
    if (this.buyerLimiter.enabled) {
      const waitMs = this.buyerLimiter.take(cmd.buyerId, Date.now());
      if (waitMs > 0) return this.rateLimited(res, waitMs, 'buyer');
    }
    return this.answer(res, this.router.callSku(cmd.sku, cmd), 'reservation');
  }

  private reservationCall(res: ServerResponse, id: string, cmd: Parameters<ShardRouter['callReservation']>[1]): Promise<number> {
    const call = this.router.callReservation(id, cmd);
    if (call === null) return Promise.resolve(sendError(res, 'unknown_reservation', 'no reservation with that id'));
    return this.answer(res, call, 'reservation');
  }

  private async answer(res: ServerResponse, call: Promise<CallOutcome>, view: 'sku' | 'reservation'): Promise<number> {
    const outcome = await call;
    if (!outcome.ok) {
      if (outcome.code === 'moved') return sendError(res, 'shard_unavailable', 'the SKU moved while routing; retry');
      return sendError(res, outcome.code, outcome.message);
    }
    const status = outcome.status === 'created' ? 201 : 200;
    const body = outcome.json ?? JSON.stringify((view === 'sku' ? outcome.sku : outcome.reservation) ?? {});
    const extra = outcome.replayed === true && view === 'reservation' ? { 'idempotent-replayed': 'true' } : undefined;
    sendJson(res, status, body, extra);
    return status;
  }

  private healthz(res: ServerResponse): number {
    if (this.draining) return sendError(res, 'shutting_down', 'the engine is shutting down');
    sendJson(res, 200, JSON.stringify({ status: 'ok', role: this.deps.config.role, ...this.deps.health?.() }));
    return 200;
  }

  private async metrics(res: ServerResponse): Promise<number> {
    try {
      const text = await this.deps.metrics.registry.metrics();
      res.writeHead(200, { 'content-type': this.deps.metrics.registry.contentType });
      res.end(text);
      return 200;
    } catch (e) {
      return this.failure(res, e);
    }
  }

  listen(port: number, host: string): Promise<number> {
    return listenOn(this.server, port, host);
  }

  /** Stops accepting, lets in-flight calls finish (up to graceMs), closes idle sockets. */
  async drain(graceMs: number): Promise<void> {
    this.draining = true;
    const closed = new Promise<void>((resolve) => this.server.close(() => resolve()));
    this.server.closeIdleConnections();
    if (this.inFlight > 0) {
      await Promise.race([
        new Promise<void>((resolve) => this.drainWaiters.push(resolve)),
        new Promise<void>((resolve) => setTimeout(resolve, graceMs).unref()),
      ]);
    }
    this.server.closeAllConnections();
    await closed;
  }
}

