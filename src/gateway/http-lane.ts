// The gateway's own HTTP/1.1 lane for the JSON API, over node:net. node:http builds two
// streams, a header object and a handful of events for every request; on a reserve that is
// most of the gateway thread's own work (README, "where the time goes"). This lane reads
// requests straight off the socket's bytes, and answers each with one prebuilt head, so a
// keep-alive client of the API costs a parse and a write.
//
// It serves only what it can serve exactly as node:http would: HTTP/1.1, origin-form paths,
// a Host header, a Content-Length body (or none) within the body limit, no duplicate header,
// no Transfer-Encoding, Expect or Upgrade, and a route the gateway says the lane may take.
// Anything else (and every byte after it) is handed to the node:http server on the same
// connection once the lane's own answers are written, so an unusual or malformed request
// gets node:http's answer, in order. Answers go out in request order; a connection may have
// `pipelinedMax` requests in progress before the lane stops reading it.

import { createServer, type Server as NetServer, type Socket } from 'node:net';
import { STATUS_CODES, type IncomingHttpHeaders, type Server as HttpServer } from 'node:http';

/** A request the lane read whole: its body is every byte of it (possibly empty). */
export interface LaneRequest {
  readonly method: string;
  readonly url: string;
  readonly headers: IncomingHttpHeaders;
  readonly socket: Socket;
  readonly body: Buffer;
  /** performance.now() when its head was whole (node:http hands a request on at that moment). */
  readonly headAtMs: number;
}

export interface LaneOptions {
  /**
   * A longer head goes to node:http, which reads it (or answers 431) by its own count: 8 KiB,
   * half of node's --max-http-header-size, since Node versions count a head's size differently
   * (Node 24 refuses 2,000 short headers in 12.6 KB that Node 20 reads) and an API call's head
   * is far smaller.
   */
  headerBytesMax: number;
  /** Bodies over this go to node:http (which answers them 413 and drains them). */
  bodyBytesMax: number;
  /** Requests read and not yet answered per connection before the lane stops reading it. */
  pipelinedMax: number;
  /** An idle keep-alive connection is closed after this (node:http's keepAliveTimeout). */
  keepAliveMs: number;
  /** A request not received whole within this is answered 408 and closed (requestTimeout). */
  requestTimeoutMs: number;
}

export const laneDefaults: LaneOptions = {
  headerBytesMax: 8 * 1024,
  bodyBytesMax: 16 * 1024,
  pipelinedMax: 32,
  keepAliveMs: 65_000,
  requestTimeoutMs: 30_000,
};

export interface LaneHandler<M> {
  /** What the lane may serve of this method and target (null: node:http serves it). */
  route(method: string, url: string): M | null;
  /** Answers on `res` (writeHead and end, or setHeader first), now or later. */
  handle(req: LaneRequest, res: LaneResponse, match: M): void;
  /** The whole response (head and body) to a request not received in time; the lane closes the connection after it. */
  timeoutAnswer(): string;
}

/** `date: ...` as node:http writes it, made once a second. */
let dateLine = '';
let dateSecond = -1;
function currentDateLine(): string {
  const second = Math.floor(Date.now() / 1000);
  if (second !== dateSecond) {
    dateSecond = second;
    dateLine = `Date: ${new Date(second * 1000).toUTCString()}\r\n`;
  }
  return dateLine;
}

/** The subset of ServerResponse the gateway's answers use. */
export class LaneResponse {
  headersSent = false;
  /** Set once end() ran: the bytes wait here for the answers before them. */
  out: string | null = null;
  /** The answer asked to close the connection (the client's `connection: close`, shedding, draining). */
  closes: boolean;
  private extra = '';

  constructor(private readonly conn: LaneConnection, clientCloses: boolean) {
    this.closes = clientCloses;
  }

  get destroyed(): boolean {
    return this.conn.closed;
  }

  setHeader(name: string, value: string | number): this {
    if (name.toLowerCase() === 'connection') this.closes ||= String(value).toLowerCase() === 'close';
    else this.extra += `${name}: ${value}\r\n`;
    return this;
  }

  writeHead(status: number, headers: Record<string, string | number>): this {
    let head = `HTTP/1.1 ${status} ${STATUS_CODES[status] ?? 'unknown'}\r\n${this.extra}`;
    for (const name in headers) {
      if (name.toLowerCase() === 'connection') this.closes ||= String(headers[name]).toLowerCase() === 'close';
      else head += `${name}: ${headers[name]}\r\n`;
    }
    this.extra = head;
    this.headersSent = true;
    return this;
  }

  end(body = ''): this {
    if (this.out !== null) return this;
    if (!this.headersSent) this.writeHead(200, {});
    const keep = this.closes ? 'Connection: close\r\n' : this.conn.keepAliveLines;
    this.out = `${this.extra}${currentDateLine()}${keep}\r\n${body}`;
    this.conn.answered();
    return this;
  }
}

/** Bytes of a header name (RFC 9110 token characters). */
const tokenByte = new Uint8Array(256);
for (const c of "!#$%&'*+-.^_`|~0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ") tokenByte[c.charCodeAt(0)] = 1;
/** Bytes of a header value or a request target: visible ASCII, and space and tab in a value. */
const isVisible = (b: number): boolean => b > 0x20 && b < 0x7f;
const methods = ['GET', 'POST', 'PUT', 'DELETE', 'PATCH'];
/** Header names most requests carry, by length: matched in place, so no string is made for them. */
const commonNames = new Map<number, string[]>();
for (const name of ['host', 'accept', 'connection', 'user-agent', 'content-type', 'content-length', 'authorization', 'accept-encoding', 'x-forwarded-for', 'idempotency-key']) {
  commonNames.set(name.length, [...(commonNames.get(name.length) ?? []), name]);
}

/** buf[start, end) in lower case, as one of commonNames when it is one (no new string). */
function headerName(buf: Buffer, text: string, start: number, end: number): string {
  const candidates = commonNames.get(end - start);
  if (candidates !== undefined) {
    for (const name of candidates) {
      let k = 0;
      // | 0x20 lower-cases letters; the other token bytes of these names ('-') are unchanged by it.
      while (k < name.length && (buf[start + k]! | 0x20) === name.charCodeAt(k)) k++;
      if (k === name.length) return name;
    }
  }
  return text.slice(start, end).toLowerCase();
}

const version = ' HTTP/1.1';
/** Header lines a head the lane reads may have (node:http keeps 2000 names and values, 1,000 headers on Node 20). */
const headerLinesMax = 100;
const contentLength = /^[0-9]{1,9}$/;

interface Head {
  method: string;
  url: string;
  headers: IncomingHttpHeaders;
  bodyBytes: number;
  closes: boolean;
}

/**
 * The head in buf[0, end) (without its blank line), or null when node:http should read it:
 * any byte or shape it does not expect, a duplicate header, a body framed other than by a
 * Content-Length within `bodyBytesMax`, a request without Host.
 */
export function parseHead(buf: Buffer, end: number, bodyBytesMax: number): Head | null {
  // Bytes are scanned in the Buffer; strings are cut from one latin1 string of the head (each
  // Buffer.toString is a call into C++, and charCodeAt on that string is slower than buf[i]).
  const text = buf.toString('latin1', 0, end);
  // Request line: METHOD SP origin-form SP HTTP/1.1 CRLF.
  const space = text.indexOf(' ');
  const method = space > 0 && space < 8 ? text.slice(0, space) : '';
  if (!methods.includes(method) || buf[space + 1] !== 0x2f) return null;
  let i = space + 1;
  while (i < end && isVisible(buf[i]!)) i++;
  const url = text.slice(space + 1, i);
  if (!text.startsWith(version, i)) return null;
  i += version.length;
  const headers: Record<string, string> = {};
  let lines = 0;
  // Header lines, each CRLF name ":" OWS value OWS; the head ends at `end` (its last CRLF is the blank line's).
  while (i < end) {
    if (buf[i] !== 0x0d || buf[i + 1] !== 0x0a) return null;
    // node:http keeps the first maxHeadersCount (2000) names and values (1,000 headers on Node
    // 20) and drops the rest: a head with more than a client ever sends is node:http's to
    // read, its way.
    if (++lines > headerLinesMax) return null;
    i += 2;
    const nameStart = i;
    while (i < end && tokenByte[buf[i]!] === 1) i++;
    if (i === nameStart || buf[i] !== 0x3a) return null;
    const name = headerName(buf, text, nameStart, i);
    i++;
    // OWS is spaces only here: llhttp reads a tab in Content-Length or Connection its own way
    // (a 400, not a close), so a head with a tab anywhere is node:http's.
    while (i < end && buf[i] === 0x20) i++;
    const valueStart = i;
    let valueEnd = i;
    while (i < end) {
      const b = buf[i]!;
      if (isVisible(b)) valueEnd = i + 1;
      else if (b !== 0x20) break;
      i++;
    }
    if (headers[name] !== undefined) return null;
    headers[name] = text.slice(valueStart, valueEnd);
  }
  if (headers.host === undefined || headers['transfer-encoding'] !== undefined || headers.expect !== undefined || headers.upgrade !== undefined) return null;
  // llhttp reads Proxy-Connection as it reads Connection; the lane leaves both to it but Connection.
  if (headers['proxy-connection'] !== undefined) return null;
  let bodyBytes = 0;
  const declared = headers['content-length'];
  if (declared !== undefined) {
    if (!contentLength.test(declared)) return null;
    bodyBytes = Number(declared);
    if (bodyBytes > bodyBytesMax) return null;
  }
  let closes = false;
  const connection = headers.connection;
  if (connection !== undefined) {
    for (const token of connection.toLowerCase().split(',')) {
      const t = token.trim();
      if (t === 'upgrade') return null;
      if (t === 'close') closes = true;
    }
  }
  return { method, url, headers, bodyBytes, closes };
}

class LaneConnection {
  closed = false;
  /** Bytes read and not yet taken as a request. */
  private buf: Buffer | null = null;
  /** Answers in request order, written once every answer before them is. */
  private readonly queue: LaneResponse[] = [];
  /** node:http takes the connection once the answers in the queue are written. */
  private handingOver = false;
  /** An answer closed the connection: nothing after it is read. */
  private ending = false;
  private writeBlocked = false;
  private parsing = false;
  /** When the request the lane waits for the rest of began (0: none). */
  partialSinceMs = 0;
  /** A request timed out behind answers still owed: the 408 goes out after them, then the close. */
  private timedOut = false;
  /** performance.now() when the head of the request whose body is arriving was first whole (0: none). */
  private headAtMs = 0;
  lastActiveMs = Date.now();
  readonly keepAliveLines: string;
  private readonly onData = (chunk: Buffer): void => this.read(chunk);
  private readonly onDrain = (): void => {
    // Keep-alive counts from when the last answer is out, as node:http's does from 'finish'.
    this.lastActiveMs = Date.now();
    this.writeBlocked = false;
    this.flow();
  };
  private readonly onError = (): void => {
    this.socket.destroy();
  };
  private readonly onClose = (): void => {
    this.closed = true;
    this.lane.forget(this);
  };

  constructor(readonly socket: Socket, private readonly lane: HttpLane<unknown>) {
    this.keepAliveLines = `Connection: keep-alive\r\nKeep-Alive: timeout=${Math.round(lane.options.keepAliveMs / 1000)}\r\n`;
    socket.on('data', this.onData);
    socket.on('drain', this.onDrain);
    socket.on('error', this.onError);
    socket.on('close', this.onClose);
  }

  /**
   * Neither a request in progress, nor a partial one, nor an answer still being written out (the
   * keep-alive sweep closed those mid-answer, found by review): what closeIdleConnections closes.
   */
  get idle(): boolean {
    return this.queue.length === 0 && this.buf === null && this.socket.writableLength === 0;
  }

  private read(chunk: Buffer): void {
    // Bytes after an answer that closed the connection (or a 408) are not activity: a client
    // trickling them kept a half-open connection for ever.
    if (this.ending) return;
    this.buf = this.buf === null ? chunk : Buffer.concat([this.buf, chunk]);
    this.parse();
  }

  private parse(): void {
    if (this.parsing) return;
    this.parsing = true;
    try {
      const { options } = this.lane;
      while (this.buf !== null && !this.handingOver && !this.ending && !this.closed && this.queue.length < options.pipelinedMax) {
        // CR and LF before a request line are skipped, as llhttp does (RFC 9112 2.2: a client
        // may send a CRLF after a body), however they are cut into packets; kept, they were a
        // request that never came whole, answered 408 unasked and holding a draining gateway
        // for its whole grace. Nothing is then waited for: the clock of a partial request stops.
        let skip = 0;
        while (this.buf[skip] === 0x0d || this.buf[skip] === 0x0a) skip++;
        if (skip > 0) {
          this.buf = skip === this.buf.length ? null : this.buf.subarray(skip);
          if (this.buf === null) this.partialSinceMs = 0;
          continue;
        }
        const buf = this.buf;
        const headEnd = buf.indexOf('\r\n\r\n');
        if (headEnd < 0) {
          if (buf.length > options.headerBytesMax) this.handOver();
          else this.waitForHead();
          break;
        }
        const head = headEnd <= options.headerBytesMax ? parseHead(buf, headEnd, options.bodyBytesMax) : null;
        const match = head === null ? null : this.lane.handler.route(head.method, head.url);
        if (head === null || match === null) {
          this.handOver();
          break;
        }
        const end = headEnd + 4 + head.bodyBytes;
        if (this.headAtMs === 0) this.headAtMs = performance.now();
        if (buf.length < end) {
          this.waitForMore();
          break;
        }
        this.buf = end === buf.length ? null : buf.subarray(end);
        this.partialSinceMs = 0;
        // Keep-alive counts from the last request or answer (CR/LF alone is not activity).
        this.lastActiveMs = Date.now();
        const res = new LaneResponse(this, head.closes);
        this.queue.push(res);
        if (head.closes) this.ending = true;
        const req: LaneRequest = { method: head.method, url: head.url, headers: head.headers, socket: this.socket, body: buf.subarray(headEnd + 4, end), headAtMs: this.headAtMs };
        this.headAtMs = 0;
        this.lane.handler.handle(req, res, match);
      }
    } finally {
      this.parsing = false;
    }
    this.flow();
  }

  /** A head not whole yet: a line ended by a bare LF goes to node:http (the lane reads CRLF only). */
  private waitForHead(): void {
    const buf = this.buf!;
    for (let i = buf.indexOf(10); i >= 0; i = buf.indexOf(10, i + 1)) {
      if (i === 0 || buf[i - 1] !== 13) return this.handOver();
    }
    this.waitForMore();
  }

  private waitForMore(): void {
    this.lastActiveMs = Date.now();
    if (this.partialSinceMs === 0) this.partialSinceMs = Date.now();
  }

  /** Called by an answer when it ends: writes every finished answer at the queue's front. */
  answered(): void {
    let out = '';
    let closes = false;
    while (this.queue.length > 0 && this.queue[0]!.out !== null) {
      const res = this.queue.shift()!;
      out += res.out;
      if (res.closes) {
        closes = true;
        break;
      }
    }
    if (out === '' || this.closed) return;
    if (closes) {
      // Requests read after it are not answered: a client retries what it pipelined past a close
      // (and one still arriving, or timed out behind it, is never answered 408 nor counted).
      this.queue.length = 0;
      this.ending = true;
      this.buf = null;
      this.partialSinceMs = 0;
      this.timedOut = false;
      return this.endWith(out);
    }
    if (this.timedOut && this.queue.length === 0) return this.endWith(out + this.lane.handler.timeoutAnswer());
    this.lastActiveMs = Date.now();
    if (!this.socket.write(out)) this.writeBlocked = true;
    if (!this.parsing) {
      if (this.buf !== null && !this.handingOver) this.parse();
      else this.flow();
    }
  }

  /**
   * The last bytes, then the connection closes for good once they are out, as node:http's
   * destroySoon does (a client keeping its half open does not keep it).
   */
  private endWith(out: string): void {
    // Nothing the client sends from now on is read (a trickle kept the connection, found by
    // review). No cap on the time the last bytes take, as node:http sets none: a 10 s cap cut
    // large answers to clients reading them slowly but steadily (found by the next review).
    this.socket.pause();
    this.socket.end(out, () => this.socket.destroy());
  }

  /**
   * Whether a request is in progress here, which a draining gateway waits for within its grace:
   * answers owed, answers not yet written out to the client (a large page read slowly: ending
   * it at once cut it short), or a request arriving that is not node:http's to read.
   */
  get inProgress(): boolean {
    return this.queue.length > 0 || this.socket.writableLength > 0 || (this.buf !== null && !this.handingOver);
  }

  /** Reads while there is room for answers, and hands over once the lane's answers are out. */
  private flow(): void {
    if (this.closed) return;
    if (this.handingOver && this.queue.length === 0 && !this.writeBlocked) return this.giveToHttp();
    const wantsMore = !this.writeBlocked && !this.handingOver && !this.ending && this.queue.length < this.lane.options.pipelinedMax;
    if (wantsMore && this.socket.isPaused()) this.socket.resume();
    else if (!wantsMore && !this.socket.isPaused()) this.socket.pause();
  }

  private handOver(): void {
    this.handingOver = true;
    this.partialSinceMs = 0;
  }

  /** node:http reads the rest of this connection, starting with the bytes the lane holds. */
  private giveToHttp(): void {
    const rest = this.buf;
    this.buf = null;
    this.lane.forget(this);
    this.socket.removeListener('data', this.onData);
    this.socket.removeListener('drain', this.onDrain);
    this.socket.removeListener('error', this.onError);
    this.socket.removeListener('close', this.onClose);
    this.lane.handOver(this.socket);
    if (rest !== null) this.socket.emit('data', rest);
    if (this.socket.isPaused()) this.socket.resume();
  }

  /**
   * The request timeout: 408 (the handler's answer) and close, as node:http does; after the
   * answers owed to the requests before it (they have run), in order. Those were destroyed
   * with the connection before, unsent.
   */
  timeOut(): void {
    this.partialSinceMs = 0; // answered once: the sweeper must not time it out (and count it) again
    // An answer already closed the connection: whatever came after it is never answered.
    if (this.ending) return;
    this.ending = true;
    this.buf = null;
    if (this.queue.length === 0) return this.endWith(this.lane.handler.timeoutAnswer());
    this.timedOut = true;
    // Handlers always answer (a shard that does not is answered 503), but a connection is never held open on that alone.
    setTimeout(() => this.socket.destroy(), owedAnswersWaitMs).unref();
  }
}

/** At most this long a timed-out connection waits for the answers owed before its 408 (the gateway's wait after a client error). */
const owedAnswersWaitMs = 30_000;

export class HttpLane<M> {
  readonly server: NetServer;
  private readonly connections = new Set<LaneConnection>();
  private readonly sweeper: NodeJS.Timeout;

  constructor(
    /** Takes what the lane does not serve (it never listens itself). */
    readonly http: HttpServer,
    readonly handler: LaneHandler<M>,
    readonly options: LaneOptions = laneDefaults,
  ) {
    this.server = createServer({ noDelay: true }, (socket) => {
      this.connections.add(new LaneConnection(socket, this as HttpLane<unknown>));
    });
    // node:http starts tracking its connections (closeIdleConnections, closeAllConnections,
    // and the headersTimeout / requestTimeout checks) when it hears 'listening': it never
    // listens itself, so it hears it from the lane's server.
    this.server.on('listening', () => http.emit('listening'));
    // One timer for every connection: idle ones past keepAliveMs close, partial requests past
    // requestTimeoutMs get their 408.
    this.sweeper = setInterval(() => this.sweep(Date.now()), Math.min(1000, options.requestTimeoutMs, options.keepAliveMs));
    this.sweeper.unref();
  }

  /** Connections the lane still reads (not handed to node:http). */
  get connectionCount(): number {
    return this.connections.size;
  }

  forget(conn: LaneConnection): void {
    this.connections.delete(conn);
  }

  /** Connections given to node:http, until they close (closeAllConnections ends them too). */
  private readonly handedOver = new Set<Socket>();

  handOver(socket: Socket): void {
    this.handedOver.add(socket);
    socket.once('close', () => this.handedOver.delete(socket));
    this.http.emit('connection', socket);
  }

  private sweep(nowMs: number): void {
    for (const c of this.connections) {
      if (c.partialSinceMs > 0 && nowMs - c.partialSinceMs >= this.options.requestTimeoutMs) c.timeOut();
      else if (c.idle && nowMs - c.lastActiveMs >= this.options.keepAliveMs) c.socket.destroy();
    }
  }

  /**
   * Whether a connection has a request in progress, whole or still arriving (the lane hands
   * a request on only once it is whole, so a draining gateway also waits for these).
   */
  get busy(): boolean {
    for (const c of this.connections) if (c.inProgress) return true;
    return false;
  }

  /** Closes the connections with nothing in progress, here and in node:http. */
  closeIdleConnections(): void {
    for (const c of this.connections) if (c.idle) c.socket.destroy();
    this.http.closeIdleConnections();
  }

  closeAllConnections(): void {
    for (const c of this.connections) c.socket.destroy();
    for (const socket of this.handedOver) socket.destroy();
    this.http.closeAllConnections();
  }

  /** Stops accepting; calls back once every connection (the lane's and node:http's) is gone. */
  close(done: () => void): void {
    // The sweeper, and node:http's own checks of the connections handed to it, run on until the
    // last connection is gone: a draining gateway still answers a request that does not come
    // whole in time 408 (it held the drain for its whole grace). node:http never listened: its
    // close only stops its timers (its connections end with the lane's server).
    this.server.close(() => {
      clearInterval(this.sweeper);
      this.http.close(() => undefined);
      done();
    });
  }
}
