// The HTTP status of every outcome code, and the one error body shape of shared/API.md:
// {"error":{"code","message"}}. Codes are stable; statuses follow the contract.

export const statusOfCode: Record<string, number> = {
  invalid_request: 400,
  unauthorized: 401,
  buyer_blocked: 403,
  not_found: 404,
  unknown_sku: 404,
  unknown_reservation: 404,
  method_not_allowed: 405,
  sold_out: 409,
  quota_exceeded: 409,
  not_on_sale: 409,
  insufficient_stock: 409,
  reservation_cancelled: 409,
  already_paid: 409,
  idempotency_conflict: 409,
  drop_mismatch: 409,
  import_incomplete: 409,
  reservation_expired: 410,
  payload_too_large: 413,
  rate_limited: 429,
  overloaded: 503,
  shard_unavailable: 503,
  shard_full: 503,
  shutting_down: 503,
  internal_error: 500,
};

export function errorBody(code: string, message: string): string {
  return JSON.stringify({ error: { code, message } });
}
