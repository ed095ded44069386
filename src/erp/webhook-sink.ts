// Delivers each paid or refunded order as one signed `POST` to the ERP's webhook over keep-alive
// connections (an agent with exactly `concurrency` sockets). A 2xx answer is delivered;
// any other status, a network error or no full answer within `timeoutMs` is a
// DeliveryFailure. It never reads more than a small, bounded part of an answer.

import { Agent as HttpAgent, request as httpRequest, type IncomingMessage } from 'node:http';
import { Agent as HttpsAgent, request as httpsRequest } from 'node:https';
import { DeliveryFailure, networkFailureKind, type ErpSink } from './erp-sink.js';
import type { OutboxEvent } from './outbox-source.js';
import { eventBody, signatureHeader } from './webhook-body.js';

export interface WebhookSinkOptions {
  url: string;
  secret: string;
  /** Whole call: connect, send, and the full answer. */
  timeoutMs: number;
  /** Sockets kept open to the ERP; the deliverer never has more calls in flight. */
  concurrency: number;
}

/** Bytes of an answer body kept for the error message; the rest is read and dropped. */
const answerBytesKept = 512;

export class WebhookSink implements ErpSink {
  readonly name = 'webhook';
  readonly batchEventsMax = 1;
  private readonly url: URL;
  private readonly agent: HttpAgent;
  private readonly send: typeof httpRequest;

  constructor(private readonly opts: WebhookSinkOptions) {
    this.url = new URL(opts.url);
    const https = this.url.protocol === 'https:';
    const agentOptions = { keepAlive: true, maxSockets: opts.concurrency, maxFreeSockets: opts.concurrency, scheduling: 'lifo' as const };
    this.agent = https ? new HttpsAgent(agentOptions) : new HttpAgent(agentOptions);
    this.send = https ? httpsRequest : httpRequest;
  }

  async deliver(events: readonly OutboxEvent[], signal: AbortSignal, sent?: () => void): Promise<void> {
    for (const e of events) await this.post(e, signal, sent);
  }

  private post(e: OutboxEvent, signal: AbortSignal, sent: (() => void) | undefined): Promise<void> {
    const body = Buffer.from(eventBody(e), 'utf8');
    return new Promise<void>((resolve, reject) => {
      let settled = false;
      const settle = (err: DeliveryFailure | null): void => {
        if (settled) return;
        settled = true;
        clearTimeout(timer);
        signal.removeEventListener('abort', onAbort);
        if (err === null) resolve();
        else reject(err);
      };
      const req = this.send(this.url, {
        method: 'POST', agent: this.agent,
        headers: {
          'content-type': 'application/json',
          'content-length': body.length,
          'idempotency-key': e.eventId,
          'x-flash-signature': signatureHeader(this.opts.secret, body),
        },
      }, (res) => this.readAnswer(res, settle));
      const timer = setTimeout(() => {
        settle(new DeliveryFailure('timeout', `no full answer from the ERP within ${this.opts.timeoutMs} ms`));
        req.destroy();
      }, this.opts.timeoutMs);
      const onAbort = (): void => {
        settle(new DeliveryFailure('aborted', 'the deliverer stopped during the call'));
        req.destroy();
      };
      if (signal.aborted) return onAbort();
      signal.addEventListener('abort', onAbort, { once: true });
      req.on('error', (err: NodeJS.ErrnoException) => {
        settle(new DeliveryFailure(networkFailureKind(err.code), `webhook call failed: ${err.message}`));
      });
      // 'finish': the whole request is handed to the socket, so it has left this process.
      if (sent !== undefined) req.once('finish', sent);
      req.end(body);
    });
  }

  /** Reads the answer to its end (so the socket can be reused) and settles on its status. */
  private readAnswer(res: IncomingMessage, settle: (err: DeliveryFailure | null) => void): void {
    const status = res.statusCode ?? 0;
    let kept = '';
    res.setEncoding('utf8');
    res.on('data', (chunk: string) => {
      if (kept.length < answerBytesKept) kept += chunk.slice(0, answerBytesKept - kept.length);
    });
    res.on('end', () => {
      if (status >= 200 && status < 300) return settle(null);
      settle(new DeliveryFailure(`http_${status}`, `the ERP answered ${status}: ${kept.trim() || '(empty body)'}`, status));
    });
    res.on('error', (err: NodeJS.ErrnoException) => {
      settle(new DeliveryFailure(networkFailureKind(err.code), `webhook answer broke off: ${err.message}`));
    });
    res.on('close', () => {
      if (!res.complete) settle(new DeliveryFailure('connection_reset', 'the ERP closed the connection mid-answer'));
    });
  }

  async close(): Promise<void> {
    this.agent.destroy();
  }
}
