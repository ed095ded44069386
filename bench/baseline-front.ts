// The node:http front every baseline of `npm run bench` shares: the engine's own routing,
// body reading and validation (imported from src/gateway, so parsing costs the same), the
// engine's JSON shapes and statuses for reserve, pay, cancel and reads, and a store behind
// it. It holds no state of its own and never retries: the store decides every answer.

import { randomBytes } from 'node:crypto';
import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import { BodyError, listenOn, readJson, sendError, sendJson } from '../src/gateway/request-io.js';
import { matchRoute } from '../src/gateway/routes.js';
import { InvalidRequest, asObject, payCommand, reserveCommand, skuName, upsertCommand } from '../src/gateway/validate.js';
import type { ReservationRecord, ReservationStore, SettleResult, SkuCounters } from './baseline-store.js';

/** The engine's reservation view (src/domain/views.ts), field for field. */
export function reservationJson(r: ReservationRecord): string {
  const view: Record<string, unknown> = {
    reservationId: r.id, sku: r.sku, buyerId: r.buyerId, qty: r.qty, status: r.status,
    mode: 'pre_deduct', createdAt: r.createdAtMs, expiresAt: r.expiresAtMs,
  };
  if (r.status === 'paid') view.paidAt = r.settledAtMs;
  if (r.status === 'cancelled') view.cancelledAt = r.settledAtMs;
  if (r.status === 'expired') view.expiredAt = r.settledAtMs;
  if (r.paymentRef !== null) view.paymentRef = r.paymentRef;
  return JSON.stringify(view);
}

const skuJson = (c: SkuCounters): string => JSON.stringify(c);

/** Reservation ids: a random per-process prefix and a counter, so they never repeat. */
class IdSource {
  private readonly prefix = `b${randomBytes(5).readUIntBE(0, 5).toString(36)}`;
  private seq = 0;
  next(): string {
    return `${this.prefix}.${(++this.seq).toString(36)}`;
  }
}

/** How pay and cancel answer each settle result, as the engine's applyPay / applyCancel do. */
function settleAnswer(res: ServerResponse, action: 'pay' | 'cancel', result: SettleResult): number {
  if (result === null) return sendError(res, 'unknown_reservation', 'no reservation with that id');
  const r = result.record;
  if (result.kind === 'settled') return ok(res, 200, reservationJson(r));
  if (action === 'pay') {
    if (result.kind === 'expired_now' || r.status === 'expired') return sendError(res, 'reservation_expired', `reservation ${r.id} expired at ${r.expiresAtMs}`);
    if (r.status === 'cancelled') return sendError(res, 'reservation_cancelled', `reservation ${r.id} was cancelled`);
    return ok(res, 200, reservationJson(r), { 'idempotent-replayed': 'true' });
  }
  if (r.status === 'paid') return sendError(res, 'already_paid', `reservation ${r.id} is paid; it cannot be cancelled`);
  return ok(res, 200, reservationJson(r));
}

function ok(res: ServerResponse, status: number, json: string, extra?: Record<string, string>): number {
  sendJson(res, status, json, extra);
  return status;
}

export class BaselineFront {
  readonly server: Server;
  private readonly ids = new IdSource();
  private faults = 0;

  /** `info` is added to /healthz (the bench reads the store's durability settings there). */
  constructor(private readonly store: ReservationStore, private readonly info: Record<string, string> = {}) {
    this.server = createServer({ keepAliveTimeout: 65_000, headersTimeout: 30_000, requestTimeout: 30_000 }, (req, res) => this.handle(req, res));
  }

  private handle(req: IncomingMessage, res: ServerResponse): void {
    if (req.url?.startsWith('/bench/audit') === true) {
      const focus = new URL(req.url, 'http://x').searchParams.get('sku') ?? undefined;
      return void this.store.audit(focus).then((a) => ok(res, 200, JSON.stringify(a)), (e: unknown) => this.failure(res, e));
    }
    const match = matchRoute(req.method ?? 'GET', req.url ?? '/');
    if (match.kind === 'method_not_allowed') return void sendError(res, 'method_not_allowed', `use ${match.allow} on this path`, { allow: match.allow });
    if (match.kind !== 'route') return void sendError(res, 'not_found', 'no such route');
    if (match.malformed) return void sendError(res, 'invalid_request', 'path has a malformed percent-encoding');
    const run = (body: unknown): void => {
      Promise.resolve().then(() => this.route(match.route.name, match.param, body, res)).catch((e: unknown) => this.failure(res, e));
    };
    if (req.method === 'GET' || req.method === 'HEAD') return run({});
    readJson(req, (err, body) => (err !== null ? void sendError(res, err.code, err.message) : run(body)));
  }

  private async route(name: string, param: string, body: unknown, res: ServerResponse): Promise<number> {
    const now = Date.now();
    switch (name) {
      case 'healthz': return ok(res, 200, JSON.stringify({ status: 'ok', store: this.store.name, ...this.info }));
      case 'reservation.create': return this.reserve(res, body, now);
      case 'reservation.pay': return settleAnswer(res, 'pay', await this.store.settle(param, 'pay', payCommand(asObject(body), param).paymentRef ?? null, now));
      case 'reservation.cancel': return settleAnswer(res, 'cancel', await this.store.settle(param, 'cancel', null, now));
      case 'reservation.get': {
        const r = await this.store.getReservation(param);
        return r === null ? sendError(res, 'unknown_reservation', 'no reservation with that id') : ok(res, 200, reservationJson(r));
      }
      case 'sku.get': {
        const c = await this.store.getSku(skuName(param));
        return c === null ? sendError(res, 'unknown_sku', `no sku ${param}`) : ok(res, 200, skuJson(c));
      }
      case 'sku.put': return this.putSku(res, param, body, now);
      default: return sendError(res, 'not_found', 'this baseline does not serve that route');
    }
  }

  private async reserve(res: ServerResponse, body: unknown, now: number): Promise<number> {
    // The baselines trust the body's buyerId, as the engine does for a shop token.
    const cmd = reserveCommand(asObject(body), '', { buyerId: null, channel: null, signals: null });
    const input = { id: this.ids.next(), sku: cmd.sku, buyerId: cmd.buyerId, qty: cmd.qty, ...(cmd.idemKey === undefined ? {} : { idemKey: cmd.idemKey }) };
    const out = await this.store.reserve(input, now);
    if (!out.ok) return sendError(res, out.code, out.message);
    return ok(res, 201, reservationJson(out.record), out.replayed ? { 'idempotent-replayed': 'true' } : undefined);
  }

  /** Setup only (no admin token: the baselines listen on 127.0.0.1 for one benchmark run). */
  private async putSku(res: ServerResponse, param: string, body: unknown, now: number): Promise<number> {
    const cmd = upsertCommand(asObject(body), skuName(param));
    const unsupported = (['startsAtMs', 'endsAtMs', 'dropId', 'minAccountAgeSeconds', 'minPastOrders'] as const).filter((k) => cmd[k] !== undefined && cmd[k] !== 0 && cmd[k] !== null);
    if ((cmd.mode !== undefined && cmd.mode !== 'pre_deduct') || unsupported.length > 0) {
      return sendError(res, 'invalid_request', `this baseline supports mode pre_deduct with stock, holdSeconds and maxPerBuyer only (got ${[cmd.mode ?? '', ...unsupported].join(' ')})`);
    }
    const policy = {
      ...(cmd.stock === undefined ? {} : { stock: cmd.stock }),
      ...(cmd.maxPerBuyer === undefined ? {} : { maxPerBuyer: cmd.maxPerBuyer }),
      ...(cmd.holdSeconds === undefined ? {} : { holdSeconds: cmd.holdSeconds }),
    };
    const out = await this.store.upsertSku(cmd.sku, policy, now);
    return ok(res, out.created ? 201 : 200, skuJson(out.counters));
  }

  private failure(res: ServerResponse, e: unknown): void {
    if (e instanceof InvalidRequest) return void sendError(res, 'invalid_request', e.message);
    if (e instanceof BodyError) return void sendError(res, e.code, e.message);
    // Printed for the first few only: under overload a store can fail thousands of calls.
    if (++this.faults <= 5) process.stderr.write(`${this.store.name}: ${e instanceof Error ? e.message : String(e)}${this.faults === 5 ? ' (further faults not printed)' : ''}\n`);
    sendError(res, 'internal_error', 'the store failed to handle this request');
  }

  listen(port: number, host: string): Promise<number> {
    return listenOn(this.server, port, host);
  }

  close(): Promise<void> {
    return new Promise((resolve) => {
      this.server.close(() => resolve());
      this.server.closeAllConnections();
    });
  }
}
