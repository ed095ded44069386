// Low-level HTTP clients for what fetch cannot do: a raw TCP request (exact bytes, chunked
// bodies, paths that a URL parser would rewrite) and a keep-alive node:http client with a
// bounded socket pool, for firing thousands of requests at once. The engine is closed by
// default (shared/API.md v2): a raw request names its token in its head (`bearer()`), and
// the load client sends, like engine-process.ts's `api()`, the token of the caller that
// would make each call (`defaultTokenFor`) unless the call's headers carry one.

import { Agent, request } from 'node:http';
import { connect } from 'node:net';
import { NO_TOKEN, defaultTokenFor } from './engine-process.js';

/** The header lines of a raw request head that present `token`: one `authorization` line, none for NO_TOKEN. */
export function bearerLines(token: string): string[] {
  return token === NO_TOKEN ? [] : [`authorization: Bearer ${token}`];
}

/** The `authorization` header line of a raw request head for `token`. */
export function bearer(token: string): string {
  if (token === NO_TOKEN) throw new Error('bearer(NO_TOKEN): leave the header out instead (bearerLines)');
  return `authorization: Bearer ${token}`;
}

export interface RawReply {
  status: number;
  headers: Record<string, string>;
  text: string;
  body: any;
}

/**
 * Sends `head` (request line and headers, without the blank line) and then each body
 * part in order, and reads one response. Resolves as soon as the whole response has
 * arrived; a connection reset after a complete response is not an error.
 */
export function rawRequest(port: number, head: string, bodyParts: (string | Buffer)[] = [], timeoutMs = 10_000): Promise<RawReply> {
  return new Promise((resolve, reject) => {
    const socket = connect(port, '127.0.0.1');
    let buf = Buffer.alloc(0);
    let done = false;
    const finish = (err: Error | null, reply?: RawReply): void => {
      if (done) return;
      done = true;
      clearTimeout(timer);
      socket.destroy();
      if (err) reject(err);
      else resolve(reply!);
    };
    const timer = setTimeout(() => finish(new Error(`no complete response within ${timeoutMs} ms; got: ${buf.toString('latin1')}`)), timeoutMs);
    const tryParse = (final: boolean): void => {
      const sep = buf.indexOf('\r\n\r\n');
      if (sep < 0) {
        if (final) finish(new Error(`connection ended without a response head; got: ${JSON.stringify(buf.toString('latin1'))}`));
        return;
      }
      const lines = buf.subarray(0, sep).toString('latin1').split('\r\n');
      const status = Number(lines[0]!.split(' ')[1]);
      const headers: Record<string, string> = {};
      for (const line of lines.slice(1)) {
        const i = line.indexOf(':');
        headers[line.slice(0, i).trim().toLowerCase()] = line.slice(i + 1).trim();
      }
      const rest = buf.subarray(sep + 4);
      const length = headers['content-length'] === undefined ? null : Number(headers['content-length']);
      if (length !== null && rest.length < length && !final) return;
      if (length === null && !final) return;
      const text = rest.subarray(0, length ?? rest.length).toString('utf8');
      let body: unknown;
      try {
        body = JSON.parse(text);
      } catch {
        body = undefined;
      }
      finish(null, { status, headers, text, body });
    };
    socket.on('data', (chunk: Buffer) => {
      buf = Buffer.concat([buf, chunk]);
      tryParse(false);
    });
    socket.on('end', () => tryParse(true));
    socket.on('close', () => tryParse(true));
    socket.on('error', (e) => {
      if (buf.length > 0) tryParse(true);
      if (!done) finish(e);
    });
    socket.on('connect', () => {
      socket.write(`${head}\r\n\r\n`);
      for (const part of bodyParts) {
        if (socket.destroyed) break;
        socket.write(part);
      }
    });
  });
}

/** Encodes `payload` as HTTP/1.1 chunks of `chunkBytes`, with the terminating chunk. */
export function chunked(payload: Buffer, chunkBytes = 4096): Buffer[] {
  const parts: Buffer[] = [];
  for (let o = 0; o < payload.length; o += chunkBytes) {
    const c = payload.subarray(o, o + chunkBytes);
    parts.push(Buffer.concat([Buffer.from(`${c.length.toString(16)}\r\n`), c, Buffer.from('\r\n')]));
  }
  parts.push(Buffer.from('0\r\n\r\n'));
  return parts;
}

export interface LoadReply {
  status: number;
  headers: Record<string, string | string[] | undefined>;
  body: any;
}

/**
 * A JSON client over one keep-alive agent with at most `sockets` connections. A call whose
 * headers carry no `authorization` sends the token of the caller that would make it
 * (`defaultTokenFor`: the shop for reserve, get and cancel, payments for pay, none for the
 * public SKU read, admin for the rest); an `authorization` of NO_TOKEN sends none.
 */
export class LoadClient {
  readonly agent: Agent;

  constructor(readonly port: number, sockets = 256) {
    this.agent = new Agent({ keepAlive: true, maxSockets: sockets, maxFreeSockets: sockets });
  }

  call(method: string, path: string, body?: unknown, headers: Record<string, string> = {}, timeoutMs = 30_000): Promise<LoadReply> {
    const payload = body === undefined ? undefined : Buffer.from(JSON.stringify(body));
    const sent: Record<string, string | number> = { ...headers };
    const named = Object.keys(sent).find((k) => k.toLowerCase() === 'authorization');
    if (named === undefined) {
      const token = defaultTokenFor(method, path);
      if (token !== undefined) sent.authorization = `Bearer ${token}`;
    } else if (sent[named] === NO_TOKEN) delete sent[named];
    return new Promise((resolve, reject) => {
      const req = request(
        {
          host: '127.0.0.1', port: this.port, method, path, agent: this.agent, timeout: timeoutMs,
          headers: { ...sent, ...(payload ? { 'content-type': 'application/json', 'content-length': payload.length } : {}) },
        },
        (res) => {
          const chunks: Buffer[] = [];
          res.on('data', (c: Buffer) => chunks.push(c));
          res.on('end', () => {
            const text = Buffer.concat(chunks).toString('utf8');
            let parsed: unknown;
            try {
              parsed = text === '' ? undefined : JSON.parse(text);
            } catch {
              parsed = undefined;
            }
            resolve({ status: res.statusCode ?? 0, headers: res.headers, body: parsed });
          });
          res.on('error', reject);
        },
      );
      req.on('timeout', () => req.destroy(new Error(`${method} ${path} timed out after ${timeoutMs} ms`)));
      req.on('error', reject);
      req.end(payload);
    });
  }

  close(): void {
    this.agent.destroy();
  }
}
