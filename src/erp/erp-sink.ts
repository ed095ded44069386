// What the deliverer hands paid events to: the ERP's webhook, or a PostgreSQL table. A sink
// delivers one batch per call and either resolves (every event of the batch is delivered)
// or throws a DeliveryFailure naming the kind of failure; it never retries by itself
// (retries, pacing and acks belong to the deliverer) and never keeps events after a call.

import type { OutboxEvent } from './outbox-source.js';

export interface ErpSink {
  /** For logs and metrics: `webhook` or `postgres`. */
  readonly name: string;
  /** Events per call; 1 for the webhook (one POST per order). */
  readonly batchEventsMax: number;
  /**
   * Resolves once every event in `events` is delivered; throws DeliveryFailure otherwise.
   * Abort = give up at once. Calls `sent` when the request has really left this process
   * (the rate cap counts from then).
   */
  deliver(events: readonly OutboxEvent[], signal: AbortSignal, sent?: () => void): Promise<void>;
  close(): Promise<void>;
}

export class DeliveryFailure extends Error {
  override readonly name = 'DeliveryFailure';
  /**
   * A short, bounded label for metrics: `http_503`, `timeout`, `connection_reset`,
   * `pg_57P01`, ... `status` is the HTTP status when there was one.
   */
  constructor(readonly kind: string, message: string, readonly status: number | null = null) {
    super(message);
  }
}

/** The kind of any thrown value: a DeliveryFailure's own, else `error`. */
export function failureKind(e: unknown): string {
  return e instanceof DeliveryFailure ? e.kind : 'error';
}

/** Maps a Node.js network error code to a failure kind (a short, bounded label). */
export function networkFailureKind(code: string | undefined): string {
  switch (code) {
    case 'ECONNRESET': case 'EPIPE': return 'connection_reset';
    case 'ECONNREFUSED': return 'connection_refused';
    case 'ETIMEDOUT': case 'ESOCKETTIMEDOUT': return 'timeout';
    case 'ENOTFOUND': case 'EAI_AGAIN': return 'dns';
    case 'EHOSTUNREACH': case 'ENETUNREACH': return 'unreachable';
    default: return 'network_error';
  }
}
