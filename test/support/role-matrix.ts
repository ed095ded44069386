// Who may call each route, written out by hand from shared/API.md v2 "Callers and what each
// may do" (not read back from the gateway's table): admin everything; operator SKU and stock
// changes, imports and all reads (reservations included); viewer reads but not reservations;
// shop reserves for anyone and gets and cancels any reservation; payments pays, cancels,
// refunds and gets any reservation; a buyer reserves for itself and gets and cancels its own. `public`:
// anyone, no token needed; `open`: probes, never authenticated.

import type { CallerKind } from '../../src/gateway/routes.js';

export const expectedAccess: Record<string, 'open' | 'public' | CallerKind[]> = {
  'GET /healthz': 'open',
  'HEAD /healthz': 'open',
  'GET /metrics': 'open',
  'GET /v1/skus/{sku}': 'public',
  'PUT /v1/skus/{sku}': ['admin', 'operator'],
  'POST /v1/skus/{sku}/stock': ['admin', 'operator'],
  'POST /v1/reservations': ['admin', 'shop', 'buyer'],
  'GET /v1/reservations/{id}': ['admin', 'operator', 'shop', 'payments', 'buyer'],
  'POST /v1/reservations/{id}/pay': ['admin', 'payments'],
  'POST /v1/reservations/{id}/cancel': ['admin', 'shop', 'payments', 'buyer'],
  'POST /v1/reservations/{id}/refund': ['admin', 'payments'],
  'POST /v1/admin/stock-import': ['admin', 'operator'],
  'GET /v1/admin/erp': ['admin', 'operator', 'viewer'],
  'GET /v1/skus': ['admin', 'operator', 'viewer'],
  'GET /v1/skus/{sku}/audit': ['admin', 'operator', 'viewer'],
  // Drops: operators create them; anyone reads one and its published order; a buyer (or the
  // shop for a buyer) joins; that buyer, the shop and viewers read an entry.
  'PUT /v1/drops/{dropId}': ['admin', 'operator'],
  'GET /v1/drops/{dropId}': 'public',
  'POST /v1/drops/{dropId}/queue': ['admin', 'shop', 'buyer'],
  'GET /v1/drops/{dropId}/queue/{buyerId}': ['admin', 'operator', 'viewer', 'shop', 'buyer'],
  'GET /v1/drops/{dropId}/order': 'public',
  // The live console: its page and files hold no data (public); its stream is a read ("viewer:
  // ... console").
  'GET /console': 'public',
  'GET /console/{file}': 'public',
  'GET /v1/console/stream': ['admin', 'operator', 'viewer'],
};
