// Reading bodies and writing JSON answers over node:http. Bodies are capped at 16 KiB
// (checked against content-length first, then while streaming) and parsed as JSON; an
// empty body reads as {}. Every answer is JSON with an explicit content-length.

import { isUtf8 } from 'node:buffer';
import type { IncomingHttpHeaders, IncomingMessage } from 'node:http';
import type { Server } from 'node:net';
import { errorBody, errorCodes, type ErrorCode } from './errors.js';

export const bodyBytesMax = 16 * 1024;
/**
 * How much of an oversized body is read and dropped, so that a client still sending can
 * read its 413 instead of failing on a reset socket; a larger body gets its connection cut.
 */
export const drainBytesMax = 1024 * 1024;

export class BodyError extends Error {
  constructor(readonly code: Extract<ErrorCode, 'payload_too_large' | 'invalid_request'>, message: string) {
    super(message);
  }
}

/** What the gateway reads of a request, from node:http or the lane (http-lane.ts). */
export interface Asked {
  readonly method?: string | undefined;
  readonly url?: string | undefined;
  readonly headers: IncomingHttpHeaders;
  readonly socket: { readonly remoteAddress?: string | undefined };
}

/** What the gateway's answers use of a response, from node:http or the lane. */
export interface Reply {
  readonly headersSent: boolean;
  readonly destroyed: boolean;
  setHeader(name: string, value: string | number): unknown;
  writeHead(status: number, headers: Record<string, string | number>): unknown;
  end(body?: string): unknown;
}

/** A whole body as JSON: an empty one reads as {}; not UTF-8 or not JSON is a BodyError. */
export function parseJsonBody(bytes: Buffer): { err: BodyError | null; body: unknown } {
  // Invalid UTF-8 would be decoded to U+FFFD and stored, silently changed: refused instead.
  if (!isUtf8(bytes)) return { err: new BodyError('invalid_request', 'body is not valid UTF-8'), body: undefined };
  const text = bytes.toString('utf8');
  if (text.trim() === '') return { err: null, body: {} };
  try {
    return { err: null, body: JSON.parse(text) };
  } catch {
    return { err: new BodyError('invalid_request', 'body is not valid JSON'), body: undefined };
  }
}

/** Calls back once with the parsed body or a BodyError. */
export function readJson(req: IncomingMessage, done: (err: BodyError | null, body: unknown) => void): void {
  const declared = req.headers['content-length'];
  if (declared !== undefined && Number(declared) > bodyBytesMax) {
    return done(new BodyError('payload_too_large', `request body is over ${bodyBytesMax} bytes`), undefined);
  }
  const chunks: Buffer[] = [];
  let size = 0;
  let finished = false;
  req.on('data', (chunk: Buffer) => {
    size += chunk.length;
    if (finished) {
      // Past the limit the 413 is already answered. Keep reading (and dropping) a while so a
      // client still sending can read that answer instead of failing on a reset socket;
      // past drainBytesMax, cut it off.
      if (size > drainBytesMax) req.socket.destroy();
      return;
    }
    if (size > bodyBytesMax) {
      finished = true;
      return done(new BodyError('payload_too_large', `request body is over ${bodyBytesMax} bytes`), undefined);
    }
    chunks.push(chunk);
  });
  req.on('end', () => {
    if (finished) return;
    finished = true;
    const { err, body } = parseJsonBody(chunks.length === 1 ? (chunks[0] as Buffer) : Buffer.concat(chunks));
    done(err, body);
  });
  req.on('error', () => {
    if (finished) return;
    finished = true;
    done(new BodyError('invalid_request', 'request body could not be read'), undefined);
  });
}

/** Listens and resolves with the bound port (the real one when `port` is 0). */
/**
 * Listens on host:port. `reusePort` (SO_REUSEPORT, Node 22.12 or later on Linux): several
 * processes may listen on the same port, and the kernel spreads new connections over them.
 */
export function listenOn(server: Server, port: number, host: string, reusePort = false): Promise<number> {
  return new Promise((resolve, reject) => {
    server.once('error', reject);
    server.listen({ port, host, ...(reusePort ? { reusePort: true } : {}) }, () => {
      const address = server.address();
      resolve(typeof address === 'object' && address !== null ? address.port : port);
    });
  });
}

export function sendJson(res: Reply, status: number, json: string, extra?: Record<string, string>): void {
  if (res.headersSent || res.destroyed) return;
  const headers: Record<string, string | number> = {
    'content-type': 'application/json; charset=utf-8',
    'content-length': Buffer.byteLength(json),
  };
  if (extra !== undefined) Object.assign(headers, extra);
  res.writeHead(status, headers);
  res.end(json);
}

/** The code of the error a response answered (read by the gateway's refusal counter). */
const answeredCode = new WeakMap<Reply, ErrorCode>();

export function errorCodeOf(res: Reply): ErrorCode | undefined {
  return answeredCode.get(res);
}

/** Answers `{"error":{"code","message"}}` with the status of the code's registry entry. */
export function sendError(res: Reply, code: ErrorCode, message: string, extra?: Record<string, string>): number {
  const { status } = errorCodes[code];
  answeredCode.set(res, code);
  sendJson(res, status, errorBody(code, message), extra);
  return status;
}

/** Marks a response written another way (e.g. a stock import's own JSON) as answering `code`. */
export function noteErrorCode(res: Reply, code: ErrorCode): void {
  answeredCode.set(res, code);
}
