// The HTTP front of shared/API.md: routing by the route table, authentication and roles
// (before any body is read), rate limits, validation, and the mapping of shard outcomes to
// statuses. It holds no stock state: every state question
// goes to the owning shard. Bad input is answered 4xx before anything is sent to a shard.

import { createHash, randomBytes, randomFillSync } from 'node:crypto';
import { createServer, IncomingMessage, ServerResponse, type Server } from 'node:http';
import { Server as NetServer } from 'node:net';
import type { Duplex } from 'node:stream';
import { errorBody, errorCodes, isErrorCode } from './errors.js';
import type { Logger } from 'pino';
import type { EngineConfig } from '../config.js';
import type { CallOutcome } from '../engine/shard-protocol.js';
import { nameError, spellNonce, type SkuView } from '../domain/index.js';
import type { GatewayMetrics } from './metrics.js';
import { RateLimiter } from '../engine/rate-limiter.js';
import { Authenticator, type Caller } from './callers.js';
import { BodyError, bodyBytesMax, drainBytesMax, errorCodeOf, listenOn, parseJsonBody, readJson, sendError, sendJson, type Asked, type Reply } from './request-io.js';
import { HttpLane, laneDefaults, type LaneRequest } from './http-lane.js';
import { matchRoute, routeLabel, type Match, type RouteName, type RouteSpec } from './routes.js';
import type { ShardRouter } from './shard-router.js';
import {
  InvalidRequest, adjustCommand, asObject, dropPutCommand, field, joinCommand, pageQuery, payCommand, refundCommand, reserveCommand, skuName, upsertCommand,
  type ReserveIdentity,
} from './validate.js';

/** A buyer reads and cancels only its own reservations: the shard answers another's as unknown. */
function ownerOf(caller: Caller): { buyerId?: string } {
  return caller.kind === 'buyer' ? { buyerId: caller.claims.buyerId } : {};
}

/** Drops whose published order a gateway keeps hashed. */
const orderCacheDrops = 16;
/**
 * At most this long a refused connection waits for the answers owed before its error: handlers
 * answer within their shard's timeout, whatever FLASH_HTTP_REQUEST_TIMEOUT_MS is (tying the
 * two dropped the answers of requests that had run, found by review).
 */
const clientErrorWaitMs = 30_000;
/** Entries of an order in one answer (and in one read from the shard). */
const orderPageMax = 100_000;
/** And this long for its error answer to be read before it is closed all the same. */
const refusedFlushMs = 10_000;

export interface GatewayDeps {
  config: EngineConfig;
  /** null on a shard node (FLASH_ROLE=shards): it serves only /healthz and /metrics. */
  router: ShardRouter | null;
  /** Who may call: caller tokens, buyer tokens, FLASH_DEV. */
  auth: Authenticator;
  /** Extra fields for /healthz (e.g. which shards a node serves). */
  health?: () => Record<string, unknown>;
  /** Extra fields for /healthz asked from this machine only (a FLASH_REUSE_PORT gateway's deployment). */
  localHealth?: () => Record<string, unknown>;
  /**
   * Routes served by features above the gateway (stock import, the ERP report, the console):
   * main wires them in, so the gateway imports no feature. A route without one answers 404.
   */
  features?: Partial<Record<FeatureRoute, FeatureHandler>>;
  metrics: GatewayMetrics;
  log: Logger;
}

/** Routes whose handlers a feature provides (see GatewayDeps.features). */
export const featureRoutes = ['admin.stock-import', 'admin.erp', 'console.page', 'console.asset', 'console.stream'] as const satisfies readonly RouteName[];
export type FeatureRoute = (typeof featureRoutes)[number];
const isFeatureRoute = (name: RouteName): name is FeatureRoute => (featureRoutes as readonly RouteName[]).includes(name);

/**
 * A feature's handler: answers the call on `res` (sendJson, sendError of request-io.ts) and
 * returns the status. It runs after authentication and roles; a throw becomes 400 (bad input) or 500.
 */
export type FeatureHandler = (call: { req: IncomingMessage; res: ServerResponse; caller: Caller; router: ShardRouter }) => Promise<number>;

/** One authenticated, authorized call on its way to a handler. */
interface Call {
  req: Asked;
  res: Reply;
  /** The route's path parameter (sku or reservation id), already percent-decoded. */
  param: string;
  /** Every path parameter, in order (a drop's entry: dropId, buyerId). */
  params: string[];
  body: Record<string, unknown>;
  caller: Caller;
}

type Handler = (call: Call) => Promise<number>;
type ApiRoute = Exclude<RouteName, 'healthz' | 'metrics' | FeatureRoute>;

/** Random id suffixes, drawn from a pooled buffer: 40 bits as 8 base-36 digits. */
export class NonceSource {
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
    return spellNonce(n);
  }
}

type RouteMatch = Extract<Match, { kind: 'route' }>;

export class HttpGateway {
  readonly server: Server;
  /** The lane in front of node:http (FLASH_HTTP_LANE, on by default; http-lane.ts), or null. */
  private readonly lane: HttpLane<RouteMatch> | null;
  private readonly buyerLimiter: RateLimiter;
  private readonly ipLimiter: RateLimiter;
  private readonly nonces = new NonceSource();
  /** Published orders, as sha256(buyerId) hex, of the drops read last (see order()). */
  private readonly orderCache = new Map<string, { seed: string; hashes: string[] }>();
  private draining = false;
  /** performance.now() when the drain began: a lane request whose head was whole before it is still served. */
  private drainingSinceMs = Infinity;
  private inFlight = 0;
  private drainWaiters: (() => void)[] = [];
  private readonly handlers: Record<ApiRoute, Handler>;

  constructor(private readonly deps: GatewayDeps) {
    const { config } = deps;
    this.buyerLimiter = new RateLimiter(config.buyerRps);
    this.ipLimiter = new RateLimiter(config.ipRps);
    this.handlers = {
      'sku.put': (c) => this.answer(c.res, this.router.upsertSku(upsertCommand(c.body, skuName(c.param), c.caller.name)), 'sku'),
      'sku.list': (c) => this.listSkus(c),
      'sku.audit': (c) => this.audit(c),
      'sku.get': (c) => this.answer(c.res, this.router.callSku(skuName(c.param), { t: 'sku.get', sku: c.param }), 'sku'),
      'sku.stock': (c) => this.answer(c.res, this.router.callSku(c.param, adjustCommand(c.body, skuName(c.param), c.caller.name)), 'sku'),
      'reservation.create': (c) => this.reserve(c),
      'reservation.get': (c) => this.reservationCall(c.res, c.param, { t: 'res.get', id: c.param, ...ownerOf(c.caller) }),
      'reservation.pay': (c) => this.reservationCall(c.res, c.param, payCommand(c.body, c.param)),
      'reservation.cancel': (c) => this.reservationCall(c.res, c.param, { t: 'res.cancel', id: c.param, ...ownerOf(c.caller) }),
      'reservation.refund': (c) => this.reservationCall(c.res, c.param, refundCommand(c.body, c.param, c.caller.name)),
      'drop.put': (c) => this.answer(c.res, this.router.callDrop(c.param, dropPutCommand(c.body, c.param, randomBytes(32).toString('hex'), randomBytes(16).toString('hex'))), 'drop'),
      'drop.get': (c) => this.answer(c.res, this.router.callDrop(skuName(c.param, 'dropId'), { t: 'drop.get', dropId: c.param }), 'drop'),
      'drop.join': (c) => this.join(c),
      'drop.entry': (c) => this.entry(c),
      'drop.order': (c) => this.order(c),
    };
    const requestTimeout = config.httpRequestTimeoutMs;
    // node:http looks for requests past their time every connectionsCheckingInterval (30 s by
    // default): a shorter timeout is looked for more often, so it is answered near its time.
    const connectionsCheckingInterval = Math.min(30_000, Math.max(250, Math.floor(requestTimeout / 4)));
    this.server = createServer({ keepAliveTimeout: 65_000, headersTimeout: requestTimeout, requestTimeout, connectionsCheckingInterval }, (req, res) => this.handle(req, res));
    // Without this listener Node answers "100 Continue" before we have seen who is asking.
    this.server.on('checkContinue', (req, res) => this.handle(req, res));
    this.server.on('clientError', (err: NodeJS.ErrnoException, socket) => this.clientError(err, socket));
    // Without a listener node:http destroys a CONNECT's socket at once, with the answers of the
    // requests before it on the connection (which have run) still unwritten.
    this.server.on('connect', (_req: IncomingMessage, socket: Duplex) => this.clientError(Object.assign(new Error('CONNECT is not served here'), { code: 'FLASH_CONNECT' }), socket));
    this.lane = config.httpLane
      ? new HttpLane(this.server, { route: (method, url) => this.laneRoute(method, url), handle: (req, res, match) => this.handle(req, res, match), timeoutAnswer: () => this.timeoutAnswer() }, { ...laneDefaults, bodyBytesMax, requestTimeoutMs: requestTimeout })
      : null;
  }

  /** The API's own routes go by the lane; probes, metrics and features (streams, imports) by node:http. */
  private laneRoute(method: string, url: string): RouteMatch | null {
    const match = matchRoute(method, url);
    return match.kind === 'route' && match.route.name in this.handlers ? match : null;
  }

  /** 408 `request_timeout` as API.md's JSON error, counted like any refusal; the connection closes after it. */
  private timeoutAnswer(): string {
    const body = errorBody('request_timeout', `the request was not received whole within ${this.deps.config.httpRequestTimeoutMs} ms`);
    this.deps.metrics.countRequest('unknown', 408);
    this.deps.metrics.countRefusal('unknown', 'request_timeout');
    return `HTTP/1.1 408 Request Timeout\r\ncontent-type: application/json; charset=utf-8\r\ncontent-length: ${Buffer.byteLength(body)}\r\nconnection: close\r\n\r\n${body}`;
  }

  /**
   * A request Node's parser refused (malformed HTTP, headers over the limit, a request not
   * whole in time) gets the API's JSON error and is counted like any refusal, instead of
   * Node's empty 400. Requests read whole before it on the connection may still be running (a
   * reserve that has taken a unit): their answers go out first, then this one, then the
   * connection closes. (Node's own handler, and ours before a review found it, closed at once
   * and dropped them: a client was told 400 of a reserve that had gone through.) The request
   * still being read, if any, is never waited for: it cannot be answered.
   */
  private clientError(err: NodeJS.ErrnoException, socket: Duplex): void {
    // node:http takes its own error listener off a CONNECT's socket (and the lane has taken its
    // own off a socket it handed over): a reset then while the answer is written was an
    // unhandled 'error' that ended the whole engine (found by review: any client could).
    if (!this.refusedSockets.has(socket)) socket.on('error', () => socket.destroy());
    if (err.code === 'ECONNRESET' || !socket.writable) return void socket.destroy();
    // The parser stays broken and may report the same error for every later chunk: answered once.
    if (this.refusedSockets.has(socket)) return;
    this.refusedSockets.add(socket);
    // node:http forgets a CONNECT's socket, so closeAllConnections would not end it: a draining
    // gateway ends these itself (it waited up to clientErrorWaitMs past its grace).
    this.refusedOpen.add(socket);
    socket.once('close', () => this.refusedOpen.delete(socket));
    let answer: string;
    if (err.code === 'ERR_HTTP_REQUEST_TIMEOUT') answer = this.timeoutAnswer();
    else {
      const tooLarge = err.code === 'HPE_HEADER_OVERFLOW';
      const code = tooLarge ? 'headers_too_large' : 'invalid_request';
      const body = errorBody(code, tooLarge ? 'the request headers are over the limit' : err.code === 'FLASH_CONNECT' ? 'CONNECT is not served here' : 'the request is not valid HTTP');
      const { status } = errorCodes[code];
      this.deps.metrics.countRequest('unknown', status);
      this.deps.metrics.countRefusal('unknown', code);
      answer = `HTTP/1.1 ${status} ${tooLarge ? 'Request Header Fields Too Large' : 'Bad Request'}\r\ncontent-type: application/json; charset=utf-8\r\ncontent-length: ${Buffer.byteLength(body)}\r\nconnection: close\r\n\r\n${body}`;
    }
    const owed = [...(this.openAnswers.get(socket) ?? [])].filter((res) => res.req.complete);
    // Handlers always answer (a shard that does not is answered 503), but a connection is never
    // held open on that promise alone.
    const guard = setTimeout(() => socket.destroy(), clientErrorWaitMs);
    guard.unref();
    const send = (): void => {
      clearTimeout(guard);
      // node:http's own 'finish' listener (added first) has moved on to the next answer; the
      // bytes of every answer owed are on the socket, in order, before this one.
      process.nextTick(() => {
        // An answer before it closed the connection (its request said `connection: close`): nothing more is said.
        if (!socket.writable) return void socket.destroy();
        // Closed for good once the answer is out (node:http's sockets are half-open: a client
        // keeping its side open must not keep the connection), or after a while if the client
        // does not read it. Closing ends the request still being read, if any (a body broken or
        // never whole): its handler stops waiting and leaves the in-flight count.
        socket.end(answer, () => socket.destroy());
        setTimeout(() => socket.destroy(), refusedFlushMs).unref();
      });
    };
    if (owed.length === 0) return send();
    let left = owed.length;
    for (const res of owed) {
      let counted = false;
      const done = (): void => {
        if (counted) return;
        counted = true;
        if (--left === 0) send();
      };
      res.once('finish', done);
      res.once('close', done);
    }
  }

  private readonly refusedSockets = new WeakSet<Duplex>();
  /** Refused connections still open (answers owed, or the refusal being read). */
  private readonly refusedOpen = new Set<Duplex>();
  /** node:http's answers not yet finished, per connection, in request order (for clientError). */
  private readonly openAnswers = new WeakMap<Duplex, Set<ServerResponse>>();

  private trackAnswer(socket: Duplex, res: ServerResponse): void {
    let open = this.openAnswers.get(socket);
    if (open === undefined) {
      open = new Set();
      this.openAnswers.set(socket, open);
    }
    const set = open;
    set.add(res);
    const forget = (): void => void set.delete(res);
    res.once('finish', forget);
    res.once('close', forget);
  }

  private get router(): ShardRouter {
    return this.deps.router!; // handlers run only when a router exists (checked in handle)
  }

  private clientIp(req: Asked): string {
    if (this.deps.config.trustProxy) {
      const xff = req.headers['x-forwarded-for'];
      const raw = Array.isArray(xff) ? xff[xff.length - 1] : xff;
      // The right-most entry is the one our own proxy appended; the rest is client-supplied.
      const last = raw?.split(',').pop()?.trim();
      if (last) return last;
    }
    return req.socket.remoteAddress ?? 'unknown';
  }

  private handle(req: IncomingMessage | LaneRequest, res: Reply, match: Match = matchRoute(req.method ?? 'GET', req.url ?? '/')): void {
    const started = performance.now();
    let name = 'unknown';
    let label = 'unknown';
    /** `status` 0: nothing was answered (the connection is gone): nothing is counted. */
    const finish = (status: number): void => {
      if (status > 0) this.deps.metrics.countRequest(name, status);
      if (status >= 400 && status < 500) this.deps.metrics.countRefusal(label, errorCodeOf(res) ?? 'unknown');
      else if (status >= 500) this.deps.metrics.countError(label, errorCodeOf(res) ?? 'unknown');
      if (name === 'reservation.create' && status > 0) this.deps.metrics.reserveSeconds.observe((performance.now() - started) / 1000);
      if (--this.inFlight === 0 && this.draining) for (const w of this.drainWaiters.splice(0)) w();
    };
    this.inFlight++;
    if (res instanceof ServerResponse) this.trackAnswer(req.socket, res);
    if (this.draining) res.setHeader('connection', 'close');
    if (match.kind === 'method_not_allowed') {
      label = `${req.method ?? 'GET'} ${match.path}`;
      return finish(sendError(res, 'method_not_allowed', `use ${match.allow} on this path`, { allow: match.allow }));
    }
    if (match.kind === 'not_found') return finish(sendError(res, 'not_found', 'no such route'));
    const { route } = match;
    name = route.name;
    label = routeLabel(route);
    if (route.access === 'open') {
      // Probes need no token; one that is sent is still checked (a scraper may send a viewer's),
      // except on a shard node (FLASH_ROLE=shards): it holds no credential to check one against,
      // and serves nothing but the probes.
      if (req.headers.authorization !== undefined && this.deps.router !== null) {
        const caller = this.admit(req, res, route);
        if (typeof caller === 'number') return finish(caller);
      }
    }
    if (route.name === 'healthz') return finish(this.healthz(req, res));
    if (route.name === 'metrics') return void this.metrics(res).then(finish);
    if (this.deps.router === null) return finish(sendError(res, 'not_found', 'this node serves only /healthz and /metrics (FLASH_ROLE=shards)'));
    if (this.inFlight > this.deps.config.httpInFlightMax) {
      // Shed before reading the body: past this bound every request would only wait longer.
      res.setHeader('connection', 'close');
      return finish(sendError(res, 'overloaded', 'the engine is at its limit of requests in progress; retry shortly'));
    }
    const takenBeforeDrain = !(req instanceof IncomingMessage) && req.headAtMs < this.drainingSinceMs;
    if (this.draining && !takenBeforeDrain) return finish(sendError(res, 'shutting_down', 'the engine is shutting down; retry on another node'));
    const caller = this.admit(req, res, route);
    if (typeof caller === 'number') return finish(caller);
    if (match.malformed) return finish(sendError(res, 'invalid_request', 'path has a malformed percent-encoding'));
    if (route.rateLimit === 'reserve' && this.ipLimiter.enabled) {
      const waitMs = this.ipLimiter.take(this.clientIp(req), Date.now());
      if (waitMs > 0) return finish(this.rateLimited(res, waitMs, 'client IP'));
    }
    // A client that waits for "100 Continue" gets it only now, after authentication and roles.
    if (route.body !== 'none' && req.headers.expect?.toLowerCase() === '100-continue' && res instanceof ServerResponse) res.writeContinue();
    if (isFeatureRoute(route.name)) {
      const feature = this.deps.features?.[route.name];
      if (feature === undefined) return finish(sendError(res, 'not_found', `this engine does not serve ${routeLabel(route)}`));
      // The lane hands features to node:http (laneRoute): they stream, and read their own bodies.
      if (!(req instanceof IncomingMessage) || !(res instanceof ServerResponse)) return finish(sendError(res, 'internal_error', `${routeLabel(route)} reached the HTTP lane`));
      return void Promise.resolve().then(() => feature({ req, res, caller, router: this.router })).then(finish, (e: unknown) => finish(this.failure(res, e)));
    }
    const handler = this.handlers[route.name as ApiRoute];
    // Validation throws synchronously inside handlers; run them so that every throw
    // becomes an answer (400 for bad input), never an uncaught exception.
    const run = (body: unknown): void => {
      Promise.resolve()
        .then(() => handler({ req, res, param: match.param, params: match.params, body: asObject(body), caller }))
        .then(finish, (e: unknown) => finish(this.failure(res, e)));
    };
    if (route.body === 'none') return run({});
    const bodyRead = (err: BodyError | null, body: unknown): void => {
      // The body broke off with its connection (the client left, or a 408 closed it): nobody
      // hears an answer, so none is counted (its 400 was counted beside the 408).
      if (err !== null && req.socket.destroyed) return finish(0);
      if (err !== null) {
        // Node reads and drops the rest of a declared body once we have answered; past
        // drainBytesMax that is not worth it, so the connection is closed instead.
        if (err.code === 'payload_too_large' && Number(req.headers['content-length'] ?? 0) > drainBytesMax) res.setHeader('connection', 'close');
        return finish(sendError(res, err.code, err.message));
      }
      run(body);
    };
    if (req instanceof IncomingMessage) return readJson(req, bodyRead);
    const { err, body } = parseJsonBody(req.body);
    bodyRead(err, body);
  }

  /**
   * Authenticates (401) and authorizes (403) before any body is read: the caller, or the
   * status already answered. A presented token is checked even on a public route.
   */
  private admit(req: Asked, res: Reply, route: RouteSpec): Caller | number {
    const auth = this.deps.auth.authenticate(req.headers.authorization, Date.now());
    // Exactly `www-authenticate: Bearer`, as API.md writes it, whatever went wrong: RFC 6750's
    // optional `error="invalid_token"` would fail a client that compares the header whole, and
    // the message already says which (missing, expired, bad signature, ...).
    if (!auth.ok) return sendError(res, 'unauthorized', auth.message, { 'www-authenticate': 'Bearer' });
    const { caller } = auth;
    if (route.access === 'public' || route.access === 'open' || Authenticator.allowed(caller, route.access)) return caller;
    if (caller.kind === 'anonymous') {
      return sendError(res, 'unauthorized', 'this call needs a token: header authorization: Bearer <token>', { 'www-authenticate': 'Bearer' });
    }
    const who = caller.kind === 'buyer' ? 'a buyer token' : `the ${caller.kind} token ${caller.name}`;
    return sendError(res, 'forbidden', `${who} may not call ${routeLabel(route)}; it is open to ${route.access.join(', ')}`);
  }


  /**
   * `GET /v1/skus`: every shard's SKUs after the cursor, merged in sku order. Each shard
   * answers at most `limit` after the cursor, so the first `limit` of the merge are exact.
   */
  private async listSkus({ req, res }: Call): Promise<number> {
    const { cursor, limit } = pageQuery(req.url ?? '');
    let after: string | undefined;
    if (cursor !== null) {
      after = Buffer.from(cursor, 'base64url').toString('utf8');
      if (nameError(after, 'cursor') !== null) throw new InvalidRequest('cursor', 'cursor must be a `next` this listing answered');
    }
    const { transport } = this.router;
    const answers = await Promise.all(Array.from({ length: transport.shardCount }, (_, k) => transport.call(k, { t: 'sku.list', limit, ...(after === undefined ? {} : { after }) })));
    const items: SkuView[] = [];
    let more = false;
    // A shard with more after its page (a page ends by size too) may have SKUs that sort
    // before other shards' last ones: the merged page stops at the first such shard's last
    // SKU, so that the next page, from there, skips none of them.
    let bound: string | null = null;
    for (const a of answers) {
      if (!a.ok) return this.answer(res, Promise.resolve(a), 'sku');
      const got = a.skus?.items ?? [];
      items.push(...got);
      if (a.skus?.more === true) {
        more = true;
        const last = got[got.length - 1]?.sku;
        if (last !== undefined && (bound === null || last < bound)) bound = last;
      }
    }
    items.sort((x, y) => (x.sku < y.sku ? -1 : x.sku > y.sku ? 1 : 0));
    const upTo = bound === null ? items.length : items.findIndex((v) => v.sku > bound!);
    const page = items.slice(0, Math.min(limit, upTo === -1 ? items.length : upTo));
    more ||= items.length > page.length;
    const next = more && page.length > 0 ? Buffer.from(page[page.length - 1]!.sku, 'utf8').toString('base64url') : null;
    sendJson(res, 200, JSON.stringify({ items: page, next }));
    return 200;
  }

  /** `GET /v1/skus/{sku}/audit`: the SKU's changes, newest first, paged. */
  private async audit({ req, res, param }: Call): Promise<number> {
    const sku = skuName(param);
    const { cursor, limit } = pageQuery(req.url ?? '');
    let seq: number | undefined;
    if (cursor !== null) {
      seq = Number(cursor);
      if (!/^\d{1,15}$/.test(cursor)) throw new InvalidRequest('cursor', 'cursor must be a `next` this listing answered');
    }
    const outcome = await this.router.callSku(sku, { t: 'sku.audit', sku, limit, ...(seq === undefined ? {} : { cursor: seq }) });
    if (!outcome.ok || outcome.audit === undefined) return this.answer(res, Promise.resolve(outcome), 'sku');
    sendJson(res, 200, JSON.stringify(outcome.audit));
    return 200;
  }


  private failure(res: Reply, e: unknown): number {
    if (e instanceof InvalidRequest) return sendError(res, 'invalid_request', e.message);
    if (e instanceof BodyError) return sendError(res, e.code, e.message);
    this.deps.log.error({ err: e }, 'unexpected error while handling a request');
    return sendError(res, 'internal_error', 'the engine failed to handle this request');
  }

  private rateLimited(res: Reply, waitMs: number, by: string): number {
    const seconds = String(Math.max(1, Math.ceil(waitMs / 1000)));
    return sendError(res, 'rate_limited', `too many reservation calls for this ${by}; retry after ${seconds} s`, { 'retry-after': seconds });
  }

  /** Who a reserve or a join is for: a buyer token's own buyer and signed signals, else the body's. null: a buyer token naming another buyer. */
  private identity(body: Record<string, unknown>, caller: Caller): ReserveIdentity | null {
    if (caller.kind !== 'buyer') return { buyerId: null, channel: caller.kind === 'anonymous' ? null : caller.channel, signals: null };
    const { claims } = caller;
    const named = field(body, 'buyerId');
    if (named !== undefined && named !== claims.buyerId) return null;
    const signals: ReserveIdentity['signals'] = {};
    if (claims.accountCreatedAtMs !== undefined) signals.accountCreatedAtMs = claims.accountCreatedAtMs;
    if (claims.pastOrders !== undefined) signals.pastOrders = claims.pastOrders;
    return { buyerId: claims.buyerId, channel: claims.channel, signals };
  }

  private async join({ res, body, caller, param }: Call): Promise<number> {
    const who = this.identity(body, caller);
    if (who === null) return sendError(res, 'forbidden', 'a buyer token may join only for its own buyer (buyerId must equal the token\'s sub, or be omitted)');
    const cmd = joinCommand(body, param, who);
    return this.answer(res, this.router.callDrop(cmd.dropId, cmd), 'entry');
  }

  private async entry({ res, caller, params }: Call): Promise<number> {
    const dropId = skuName(params[0], 'dropId');
    const buyerId = params[1] ?? '';
    // A buyer reads only its own entry; another's is answered as if it did not exist.
    if (caller.kind === 'buyer' && caller.claims.buyerId !== buyerId) return sendError(res, 'unknown_entry', `no entry of buyer ${buyerId} that this token may read`);
    return this.answer(res, this.router.callDrop(dropId, { t: 'q.entry', dropId, buyerId }), 'entry');
  }

  /**
   * The fixed order, as sha256(buyerId) hex in order: the shard lists the buyer ids, this
   * gateway hashes them (node:crypto), so that no buyer id leaves the engine. A fixed order
   * only grows at its end (late joiners of a random queue) and its seed never changes once
   * revealed, so the hashes are kept here (for the last orderCacheDrops drops read) and the
   * shard is asked only for what follows them, a page at a time. `?offset=&limit=` page
   * through it; one answer lists at most orderPageMax entries (every entry of any order up to
   * that size, as API.md says), with `next` (the offset to ask for) when more follow.
   */
  private async order({ req, res, param }: Call): Promise<number> {
    const dropId = skuName(param, 'dropId');
    const query = new URLSearchParams((req.url ?? '').split('?')[1] ?? '');
    const num = (name: string, fallback: number, min: number, max: number): number => {
      const raw = query.get(name);
      if (raw === null || raw === '') return fallback; // an empty `limit=` is absent, as on the listings
      const v = Number(raw);
      if (!/^\d{1,15}$/.test(raw) || v < min || v > max) throw new InvalidRequest(name, `${name} must be an integer in ${min}..${max}`);
      return v;
    };
    const offset = num('offset', 0, 0, Number.MAX_SAFE_INTEGER);
    const limit = num('limit', orderPageMax, 1, orderPageMax);
    // This read's entry: kept here while it pages, so that another read evicting it from the
    // cache (16 drops) or replacing it costs nothing but a copy's place.
    let entry = this.orderCache.get(dropId);
    let total = -1;
    let seed = '';
    let reseeds = 0;
    // Read what the entry lacks up to the page asked for (and at least once, to learn the
    // order's length now and that it is still published). Shards end a page by count and by
    // size (fields.ts pageBytesMax), so a large order takes several.
    do {
      const from = entry?.hashes.length ?? 0;
      const seedBefore = entry?.seed;
      const outcome = await this.router.callDrop(dropId, { t: 'drop.order', dropId, offset: from, limit: orderPageMax });
      if (!outcome.ok || outcome.order === undefined) return this.answer(res, Promise.resolve(outcome), 'drop');
      const o = outcome.order;
      if (!Array.isArray(o.buyers) || !o.buyers.every((b) => typeof b === 'string') || typeof o.total !== 'number' || typeof o.seed !== 'string' || typeof o.offset !== 'number') {
        return sendError(res, 'shard_unavailable', 'the shard\'s answer could not be read; retry');
      }
      ({ total, seed } = o);
      // Another read may have gone further meanwhile: its entry is taken if it is longer.
      const shared = this.orderCache.get(dropId);
      if (shared !== undefined && shared.seed === o.seed && (entry?.seed !== o.seed || shared.hashes.length > entry.hashes.length)) entry = shared;
      if (entry === undefined || entry.seed !== o.seed) {
        // A new seed (the drop made again after its shard lost it): read it from its start,
        // once; an order that keeps changing under the read is answered 503.
        if (entry !== undefined && ++reseeds > 1) return sendError(res, 'shard_unavailable', 'the order changed while it was read; retry');
        entry = { seed: o.seed, hashes: [] };
      }
      // Add only what is still missing.
      if (o.offset <= entry.hashes.length) {
        for (let k = entry.hashes.length - o.offset; k < o.buyers.length; k++) entry.hashes.push(createHash('sha256').update(o.buyers[k]!, 'utf8').digest('hex'));
      }
      this.orderCache.delete(dropId);
      this.orderCache.set(dropId, entry);
      if (this.orderCache.size > orderCacheDrops) this.orderCache.delete(this.orderCache.keys().next().value as string);
      // An empty page ends the order only if it follows this read's entry: after a new seed it
      // says nothing (the page asked for was past the new order's end), so read again from 0.
      if (o.buyers.length === 0) {
        if (seedBefore === undefined || seedBefore === o.seed) break;
        continue;
      }
      // A page of the same order must add to the entry, or this loop would ask again for ever
      // (only a reply that is not a shard's can do that: a page past what it asked for).
      if (seedBefore === o.seed && entry.hashes.length <= from) {
        return sendError(res, 'shard_unavailable', 'the shard answered a page of the order that does not follow; retry');
      }
    } while (entry.hashes.length < Math.min(total, offset + limit));
    const hashes = entry.hashes;
    const order = hashes.slice(offset, Math.min(total, offset + limit));
    const end = offset + order.length;
    const page = offset === 0 && end >= total ? {} : { offset, total, next: end < total ? end : null };
    sendJson(res, 200, JSON.stringify({ dropId, seed, ...page, order }));
    return 200;
  }

  private async reserve({ res, body, caller }: Call): Promise<number> {
    const who = this.identity(body, caller);
    if (who === null) return sendError(res, 'forbidden', 'a buyer token may reserve only for its own buyer (buyerId must equal the token\'s sub, or be omitted)');
    const cmd = reserveCommand(body, this.nonces.next(), who);
    if (this.buyerLimiter.enabled) {
      const waitMs = this.buyerLimiter.take(cmd.buyerId, Date.now());
      if (waitMs > 0) return this.rateLimited(res, waitMs, 'buyer');
    }
    return this.answer(res, this.router.callSku(cmd.sku, cmd), 'reservation');
  }

  private reservationCall(res: Reply, id: string, cmd: Parameters<ShardRouter['callReservation']>[1]): Promise<number> {
    const call = this.router.callReservation(id, cmd);
    if (call === null) return Promise.resolve(sendError(res, 'unknown_reservation', 'no reservation with that id'));
    return this.answer(res, call, 'reservation');
  }

  private async answer(res: Reply, call: Promise<CallOutcome>, view: 'sku' | 'reservation' | 'drop' | 'entry'): Promise<number> {
    const outcome = await call;
    if (!outcome.ok) {
      if (outcome.code === 'moved') return sendError(res, 'shard_unavailable', 'the SKU moved while routing; retry');
      // Over NATS anyone may answer: a code that is not one of ours is no answer.
      if (!isErrorCode(outcome.code)) return sendError(res, 'shard_unavailable', 'the shard\'s answer could not be read; retry');
      if (outcome.code === 'rate_limited') return this.rateLimited(res, outcome.retryAfterMs ?? 1000, 'buyer');
      return sendError(res, outcome.code, outcome.message);
    }
    const status = outcome.status === 'created' ? 201 : 200;
    const body = outcome.json ?? JSON.stringify((view === 'sku' ? outcome.sku : view === 'drop' ? outcome.drop : view === 'entry' ? outcome.entry : outcome.reservation) ?? {});
    const extra = outcome.replayed === true && view === 'reservation' ? { 'idempotent-replayed': 'true' } : undefined;
    sendJson(res, status, body, extra);
    return status;
  }

  private healthz(req: Asked, res: Reply): number {
    if (this.draining) return sendError(res, 'shutting_down', 'the engine is shutting down');
    const addr = req.socket.remoteAddress ?? '';
    const local = addr === '::1' || addr.startsWith('127.') || addr.startsWith('::ffff:127.');
    sendJson(res, 200, JSON.stringify({ status: 'ok', role: this.deps.config.role, ...this.deps.health?.(), ...(local ? this.deps.localHealth?.() : {}) }));
    return 200;
  }

  private async metrics(res: Reply): Promise<number> {
    try {
      const text = await this.deps.metrics.registry.metrics();
      res.writeHead(200, { 'content-type': this.deps.metrics.registry.contentType });
      res.end(text);
      return 200;
    } catch (e) {
      return this.failure(res, e);
    }
  }

  listen(port: number, host: string, reusePort = false): Promise<number> {
    this.sharesPort = reusePort;
    return listenOn(this.lane?.server ?? this.server, port, host, reusePort);
  }

  /** Listening with reusePort: other gateways serve the same port. */
  private sharesPort = false;

  /** Stops accepting, lets in-flight calls finish (up to graceMs), closes idle sockets. */
  async drain(graceMs: number): Promise<void> {
    // Stop accepting. node:http's close would also stop its checks of requests past their time
    // (FLASH_HTTP_REQUEST_TIMEOUT_MS), so a request still arriving held the drain for the whole
    // grace, unanswered: only the listener is closed now, and node:http's close comes last.
    const closed = new Promise<void>((resolve) => (this.lane === null ? NetServer.prototype.close.call(this.server, () => resolve()) : this.lane.close(resolve)));
    // The grace counts from SIGTERM, the hand-over pause included.
    const deadline = Date.now() + graceMs;
    if (this.sharesPort) {
      // Other gateways take the port's new connections from now on. Connections this one
      // accepted just before (their request not read yet, so "idle") are served for a moment
      // rather than reset or answered 503: a hand-over loses nothing.
      await new Promise<void>((resolve) => setTimeout(resolve, Math.min(1000, graceMs)).unref());
    }
    this.draining = true;
    this.drainingSinceMs = performance.now();
    (this.lane ?? this.server).closeIdleConnections();
    if (this.inFlight > 0) {
      await Promise.race([
        new Promise<void>((resolve) => this.drainWaiters.push(resolve)),
        new Promise<void>((resolve) => setTimeout(resolve, Math.max(0, deadline - Date.now())).unref()),
      ]);
    }
    // A request the lane is still receiving is in progress too (node:http would have counted
    // it in inFlight from its head): it is answered (503 shutting_down, or its own answer if
    // it was taken before the drain) within the same grace.
    while (this.lane?.busy === true && Date.now() < deadline) {
      await new Promise<void>((resolve) => setTimeout(resolve, 20).unref());
    }
    (this.lane ?? this.server).closeAllConnections();
    for (const socket of this.refusedOpen) socket.destroy();
    await closed;
    if (this.lane === null) this.server.close(() => undefined);
  }
}
