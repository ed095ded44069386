// Every error code the HTTP API can answer, in one table: its status, whether retrying the
// same request can help, and what it means. `sendError` takes only codes from here, the
// README's table of codes is checked against it by a test, and the error body is the one
// shape of shared/API.md: {"error":{"code","message"}}. Renaming a code breaks clients.

import type { Refusal } from '../domain/index.js';

export interface ErrorSpec {
  status: number;
  /** Whether the same request, sent again later, can succeed (after a wait or a change elsewhere). */
  retry: boolean;
  /** One sentence for the README and operators. */
  meaning: string;
}

export const errorCodes = {
  invalid_request: { status: 400, retry: false, meaning: 'Malformed JSON, a missing field, a wrong type or an out-of-range value; the message names the field. Nothing changed.' },
  unauthorized: { status: 401, retry: false, meaning: 'No token, or one that is unknown, malformed, expired or badly signed; the message says which. Answered with `www-authenticate: Bearer`.' },
  forbidden: { status: 403, retry: false, meaning: "The token is valid but its role may not make this call (or a buyer token names another buyer)." },
  buyer_blocked: { status: 403, retry: false, meaning: 'A risk rule of the SKU (minAccountAgeSeconds, minPastOrders) refused the buyer, or its signal is absent.' },
  channel_not_allowed: { status: 403, retry: false, meaning: "The SKU's channel policy does not list the caller's channel (or, with no policy, the SKU already counts 256 channels)." },
  not_admitted: { status: 403, retry: true, meaning: "The SKU's drop has a queue and this buyer is not admitted now (still waiting, its admission used or run out, or the drop is a draw)." },
  unknown_drop: { status: 404, retry: false, meaning: 'No drop with that id.' },
  unknown_entry: { status: 404, retry: false, meaning: "No entry of that buyer in the drop's queue that this caller may see." },
  not_found: { status: 404, retry: false, meaning: 'No such route (the path matches none of the API).' },
  unknown_sku: { status: 404, retry: false, meaning: 'No SKU with that name.' },
  unknown_reservation: { status: 404, retry: false, meaning: 'No reservation with that id that this caller may see.' },
  method_not_allowed: { status: 405, retry: false, meaning: 'The path exists but not with this method; `allow` lists the methods.' },
  sold_out: { status: 409, retry: true, meaning: 'Not enough units available now; a cancel, an expiry or a restock can free some.' },
  channel_sold_out: { status: 409, retry: true, meaning: "The caller's channel has reached its maxUnits for this SKU (held + sold)." },
  quota_exceeded: { status: 409, retry: false, meaning: 'The buyer would hold or buy more than maxPerBuyer units of the SKU or its drop.' },
  not_on_sale: { status: 409, retry: true, meaning: "Outside the SKU's sale window (startsAt, endsAt)." },
  insufficient_stock: { status: 409, retry: false, meaning: 'A write-off would take available units below zero.' },
  reservation_cancelled: { status: 409, retry: false, meaning: 'The reservation was cancelled; it cannot be paid.' },
  already_paid: { status: 409, retry: false, meaning: 'The reservation was paid (and may since be refunded); it cannot be cancelled: refund it instead.' },
  not_paid: { status: 409, retry: false, meaning: 'A refund of a reservation that is not paid (held, cancelled or expired); only a paid one can be refunded.' },
  drop_mismatch: { status: 409, retry: false, meaning: "A SKU's dropId cannot change once set." },
  queue_not_open: { status: 409, retry: true, meaning: "The drop's queue has not opened yet (before opensAt), or the drop has no queue." },
  queue_closed: { status: 409, retry: false, meaning: 'The draw closed its entries (after closesAt).' },
  queue_locked: { status: 409, retry: false, meaning: "The queue has opened: its mode, opensAt, randomizeSeconds and closesAt cannot change (the pace and admitSeconds can)." },
  order_not_fixed: { status: 409, retry: true, meaning: "The drop's order is not published: a random order before opensAt + randomizeSeconds, a draw before it ran, or a fifo queue." },
  import_incomplete: { status: 409, retry: true, meaning: 'A stock import was valid but some SKUs could not be applied (listed); re-running the same import is safe.' },
  request_timeout: { status: 408, retry: true, meaning: 'The request was not received whole in time (FLASH_HTTP_REQUEST_TIMEOUT_MS, 30 s by default: a stalled upload or a half-sent head); nothing was done and the connection is closed.' },
  reservation_expired: { status: 410, retry: false, meaning: 'The hold expired before it was paid; its units went back to stock.' },
  payload_too_large: { status: 413, retry: false, meaning: 'The body is over 16 KiB (8 MiB for a stock import).' },
  headers_too_large: { status: 431, retry: false, meaning: "The request's headers are over Node's limit (16 KiB by default); the connection is closed." },
  rate_limited: { status: 429, retry: true, meaning: 'Too many reservation calls for this buyer or client IP; `retry-after` says when.' },
  internal_error: { status: 500, retry: true, meaning: 'A fault of the engine, never bad input; it is logged.' },
  overloaded: { status: 503, retry: true, meaning: 'The engine or a shard is at its limit of requests in flight; nothing was done. Retry with the same idempotencyKey.' },
  shard_unavailable: { status: 503, retry: true, meaning: 'The shard is restarting or changing owner, or did not answer in time. Retry with the same idempotencyKey.' },
  shard_full: { status: 503, retry: true, meaning: 'The shard holds its maximum number of live reservations; holds must settle first.' },
  shutting_down: { status: 503, retry: true, meaning: 'This node is shutting down; retry on another.' },
} as const satisfies Record<string, ErrorSpec>;

export type ErrorCode = keyof typeof errorCodes;

/** Core refusals that reach HTTP as themselves (`moved` is internal: the router follows it). */
type _EveryRefusalIsAnError = Exclude<Refusal, 'moved'> extends ErrorCode ? true : never;
const _check: _EveryRefusalIsAnError = true;
void _check;

export function isErrorCode(code: string): code is ErrorCode {
  return Object.prototype.hasOwnProperty.call(errorCodes, code);
}

export function errorBody(code: ErrorCode, message: string): string {
  return JSON.stringify({ error: { code, message } });
}
