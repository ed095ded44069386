// The route table against the contract: every route that shared/API.md names (its copy in
// test/contract/api-v2.md) is in the gateway's one table, or on the short list of routes whose
// issue has not landed yet; every route in the table is in the contract or is a documented
// extension; and each route's callers are the ones API.md's role table gives, written out
// by hand from API.md (test/support/role-matrix.ts) rather than read back from the table.

import { readFileSync } from 'node:fs';
import { describe, expect, it } from 'vitest';
import { matchRoute, routeLabel, routeTable } from '../src/gateway/routes.js';
import { expectedAccess } from './support/role-matrix.js';

const contract = readFileSync(new URL('./contract/api-v2.md', import.meta.url), 'utf8');

/** `GET /v1/skus/{sku}` for every route API.md names in backticks (queries dropped). */
function contractRoutes(): Set<string> {
  const found = new Set<string>();
  for (const m of contract.matchAll(/`(GET|PUT|POST|DELETE|PATCH) (\/[^`\s?]*)[^`]*`/g)) found.add(`${m[1]} ${m[2]}`);
  return found;
}

/** Routes of API.md v2 whose issues are still open: each must leave this list when it lands. */
const pending = new Map<string, string>([
]);

/** Routes the engine adds beyond API.md (documented in the README). */
const extensions = new Set([
  'POST /v1/admin/stock-import', 'GET /v1/admin/erp', 'HEAD /healthz',
  // The live console (API.md names it, "a web page served by the engine", but no route).
  'GET /console', 'GET /console/{file}', 'GET /v1/console/stream',
]);

describe('the route table', () => {
  const inTable = new Set(routeTable.map(routeLabel));

  it('holds every route of API.md, except the routes of issues still open', () => {
    const missing = [...contractRoutes()].filter((r) => !inTable.has(r) && !pending.has(r));
    expect(missing).toEqual([]);
  });

  it('lists as pending only routes that are really not built yet, and that API.md names', () => {
    const routes = contractRoutes();
    for (const r of pending.keys()) {
      expect(inTable.has(r), `${r} is built: take it off the pending list`).toBe(false);
      expect(routes.has(r), `${r} is not in API.md`).toBe(true);
    }
  });

  it('has no route that is neither in API.md nor a documented extension', () => {
    const routes = contractRoutes();
    expect([...inTable].filter((r) => !routes.has(r) && !extensions.has(r))).toEqual([]);
  });

  it('declares each route once', () => {
    expect(inTable.size).toBe(routeTable.length);
  });

  it('gives each route exactly the callers of API.md role table', () => {
    const actual = Object.fromEntries(routeTable.map((r) => [routeLabel(r), typeof r.access === 'string' ? r.access : [...r.access].sort()]));
    const expected = Object.fromEntries(Object.entries(expectedAccess).map(([k, v]) => [k, typeof v === 'string' ? v : [...v].sort()]));
    expect(actual).toEqual(expected);
  });

  it('reads a body only where the call takes one, and spends the reserve limits only on reserve', () => {
    for (const r of routeTable) {
      expect(r.body === 'none', routeLabel(r)).toBe(r.method === 'GET' || r.method === 'HEAD');
      expect(r.rateLimit === 'reserve', routeLabel(r)).toBe(routeLabel(r) === 'POST /v1/reservations');
    }
  });
});

describe('matching a request to a route', () => {
  it('finds each route with its percent-decoded path parameter', () => {
    const m = matchRoute('GET', '/v1/skus/sneaker%3A42?x=1');
    expect(m.kind === 'route' && routeLabel(m.route)).toBe('GET /v1/skus/{sku}');
    expect(m.kind === 'route' && m.params).toEqual(['sneaker:42']);
    const pay = matchRoute('POST', '/v1/reservations/1.abc/pay');
    expect(pay.kind === 'route' && [routeLabel(pay.route), pay.param]).toEqual(['POST /v1/reservations/{id}/pay', '1.abc']);
  });

  it('tells a known path with the wrong method (405 with allow) from an unknown path (404)', () => {
    expect(matchRoute('DELETE', '/v1/skus/a')).toEqual({ kind: 'method_not_allowed', allow: 'PUT, GET', path: '/v1/skus/{sku}' });
    expect(matchRoute('GET', '/v1/reservations')).toEqual({ kind: 'method_not_allowed', allow: 'POST', path: '/v1/reservations' });
    for (const path of ['/', '/v1', '/v1/sku', '/v1/skus/', '/v1/skus/a/b', '/v2/skus/a', 'v1/skus/a', '/healthz/', '/v1/reservations//pay']) {
      expect(matchRoute('GET', path).kind, path).toBe('not_found');
    }
  });

  it('marks a malformed percent-encoding on a known route, never throws, so the caller is authenticated before the 400', () => {
    const m = matchRoute('GET', '/v1/skus/%E0%A4%A');
    expect(m.kind === 'route' && [routeLabel(m.route), m.malformed]).toEqual(['GET /v1/skus/{sku}', true]);
    expect(matchRoute('GET', '/v1/skus/ok').kind === 'route' && (matchRoute('GET', '/v1/skus/ok') as { malformed: boolean }).malformed).toBe(false);
    expect(matchRoute('GET', '/v1/nowhere/%E0%A4%A').kind).toBe('not_found');
  });

  it('takes literal segments before parameters, so a SKU named like a route word still routes', () => {
    const m = matchRoute('GET', '/v1/skus/stock');
    expect(m.kind === 'route' && [routeLabel(m.route), m.param]).toEqual(['GET /v1/skus/{sku}', 'stock']);
    const admin = matchRoute('GET', '/v1/admin/erp');
    expect(admin.kind === 'route' && routeLabel(admin.route)).toBe('GET /v1/admin/erp');
  });
});
