// Matches a method and path to a route of shared/API.md. Known paths with the wrong
// method are told apart from unknown paths (405 with `allow`, not 404).

export type RouteName =
  | 'healthz' | 'metrics' | 'sku.put' | 'sku.get' | 'sku.stock'
  | 'reservation.create' | 'reservation.get' | 'reservation.pay' | 'reservation.cancel'
  | 'admin.stock-import' | 'admin.erp';

export type Match =
  | { kind: 'route'; name: RouteName; param: string }
  | { kind: 'method_not_allowed'; allow: string }
  | { kind: 'not_found' }
  | { kind: 'bad_path' };

function decode(segment: string): string | null {
  if (!segment.includes('%')) return segment;
  try {
    return decodeURIComponent(segment);
  } catch {
    return null;
  }
}

function pick(method: string, allowed: Partial<Record<string, RouteName>>, param: string): Match {
  const name = allowed[method];
  if (name !== undefined) return { kind: 'route', name, param };
  return { kind: 'method_not_allowed', allow: Object.keys(allowed).join(', ') };
}

export function matchRoute(method: string, url: string): Match {
  const q = url.indexOf('?');
  const path = q < 0 ? url : url.slice(0, q);
  const parts = path.split('/');
  // parts[0] is '' for a path starting with '/'.
  if (parts[0] !== '' || parts.length < 2) return { kind: 'not_found' };
  if (parts.length === 2) {
    if (parts[1] === 'healthz') return pick(method, { GET: 'healthz', HEAD: 'healthz' }, '');
    if (parts[1] === 'metrics') return pick(method, { GET: 'metrics' }, '');
    return { kind: 'not_found' };
  }
  if (parts[1] !== 'v1') return { kind: 'not_found' };
  if (parts.length === 4 && parts[2] === 'admin' && parts[3] === 'stock-import') return pick(method, { POST: 'admin.stock-import' }, '');
  if (parts.length === 4 && parts[2] === 'admin' && parts[3] === 'erp') return pick(method, { GET: 'admin.erp' }, '');
  if (parts.length === 3 && parts[2] === 'reservations') return pick(method, { POST: 'reservation.create' }, '');
  if (parts.length < 4 || parts.length > 5) return { kind: 'not_found' };
  const param = decode(parts[3] as string);
  if (param === null) return { kind: 'bad_path' };
  if (parts[2] === 'skus') {
    if (parts.length === 4 && param !== '') return pick(method, { GET: 'sku.get', PUT: 'sku.put' }, param);
    if (parts[4] === 'stock' && param !== '') return pick(method, { POST: 'sku.stock' }, param);
    return { kind: 'not_found' };
  }
  if (parts[2] === 'reservations') {
    if (parts.length === 4 && param !== '') return pick(method, { GET: 'reservation.get' }, param);
    if (parts[4] === 'pay' && param !== '') return pick(method, { POST: 'reservation.pay' }, param);
    if (parts[4] === 'cancel' && param !== '') return pick(method, { POST: 'reservation.cancel' }, param);
  }
  return { kind: 'not_found' };
}
