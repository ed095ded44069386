// Every route of the HTTP API, declared once with what the gateway needs to know before it
// reads a body: who may call it, which rate limit it spends, and what kind of body it takes
// (as fastify and hono declare a route with its options). The matcher reads this table; a
// known path with the wrong method is told apart from an unknown path (405 with `allow`).

/** Who a caller is: a role of a caller token, or a buyer (a verified buyer token). */
export const Roles = ['admin', 'operator', 'viewer', 'shop', 'payments'] as const;
export type Role = (typeof Roles)[number];
export type CallerKind = Role | 'buyer';

export type RouteName =
  | 'healthz' | 'metrics' | 'sku.put' | 'sku.get' | 'sku.stock'
  | 'reservation.create' | 'reservation.get' | 'reservation.pay' | 'reservation.cancel' | 'reservation.refund'
  | 'admin.stock-import' | 'admin.erp'
  | 'drop.put' | 'drop.get' | 'drop.join' | 'drop.entry' | 'drop.order'
  | 'sku.list' | 'sku.audit'
  | 'console.page' | 'console.asset' | 'console.stream';

export interface RouteSpec {
  name: RouteName;
  method: 'GET' | 'HEAD' | 'PUT' | 'POST';
  /** The path template of shared/API.md; `{x}` is one path segment. */
  path: string;
  /**
   * Who may call it. `public`: anyone, no token needed (a token that is presented is still
   * checked). `open`: not authenticated at all (probes; protect on the network).
   */
  access: 'open' | 'public' | readonly CallerKind[];
  /** The rate limits the call spends: the reserve limits (per buyer and per client IP), or none. */
  rateLimit: 'reserve' | null;
  /** `json`: a JSON object up to 16 KiB; `none`: no body is read; `import`: a stock file up to 8 MiB. */
  body: 'json' | 'none' | 'import';
}

const reads = ['admin', 'operator', 'viewer'] as const;

export const routeTable: readonly RouteSpec[] = [
  { name: 'healthz', method: 'GET', path: '/healthz', access: 'open', rateLimit: null, body: 'none' },
  { name: 'healthz', method: 'HEAD', path: '/healthz', access: 'open', rateLimit: null, body: 'none' },
  { name: 'metrics', method: 'GET', path: '/metrics', access: 'open', rateLimit: null, body: 'none' },
  { name: 'sku.put', method: 'PUT', path: '/v1/skus/{sku}', access: ['admin', 'operator'], rateLimit: null, body: 'json' },
  { name: 'sku.get', method: 'GET', path: '/v1/skus/{sku}', access: 'public', rateLimit: null, body: 'none' },
  { name: 'sku.list', method: 'GET', path: '/v1/skus', access: reads, rateLimit: null, body: 'none' },
  { name: 'sku.audit', method: 'GET', path: '/v1/skus/{sku}/audit', access: reads, rateLimit: null, body: 'none' },
  { name: 'sku.stock', method: 'POST', path: '/v1/skus/{sku}/stock', access: ['admin', 'operator'], rateLimit: null, body: 'json' },
  { name: 'reservation.create', method: 'POST', path: '/v1/reservations', access: ['admin', 'shop', 'buyer'], rateLimit: 'reserve', body: 'json' },
  { name: 'reservation.get', method: 'GET', path: '/v1/reservations/{id}', access: ['admin', 'operator', 'shop', 'payments', 'buyer'], rateLimit: null, body: 'none' },
  { name: 'reservation.pay', method: 'POST', path: '/v1/reservations/{id}/pay', access: ['admin', 'payments'], rateLimit: null, body: 'json' },
  { name: 'reservation.cancel', method: 'POST', path: '/v1/reservations/{id}/cancel', access: ['admin', 'shop', 'payments', 'buyer'], rateLimit: null, body: 'json' },
  { name: 'reservation.refund', method: 'POST', path: '/v1/reservations/{id}/refund', access: ['admin', 'payments'], rateLimit: null, body: 'json' },
  { name: 'admin.stock-import', method: 'POST', path: '/v1/admin/stock-import', access: ['admin', 'operator'], rateLimit: null, body: 'import' },
  { name: 'admin.erp', method: 'GET', path: '/v1/admin/erp', access: reads, rateLimit: null, body: 'none' },
  { name: 'drop.put', method: 'PUT', path: '/v1/drops/{dropId}', access: ['admin', 'operator'], rateLimit: null, body: 'json' },
  { name: 'drop.get', method: 'GET', path: '/v1/drops/{dropId}', access: 'public', rateLimit: null, body: 'none' },
  { name: 'drop.join', method: 'POST', path: '/v1/drops/{dropId}/queue', access: ['admin', 'shop', 'buyer'], rateLimit: null, body: 'json' },
  { name: 'drop.entry', method: 'GET', path: '/v1/drops/{dropId}/queue/{buyerId}', access: ['admin', 'operator', 'viewer', 'shop', 'buyer'], rateLimit: null, body: 'none' },
  { name: 'drop.order', method: 'GET', path: '/v1/drops/{dropId}/order', access: 'public', rateLimit: null, body: 'none' },
  // The live console: a page with no data (it asks for a token), its files, and the event stream it reads.
  { name: 'console.page', method: 'GET', path: '/console', access: 'public', rateLimit: null, body: 'none' },
  { name: 'console.asset', method: 'GET', path: '/console/{file}', access: 'public', rateLimit: null, body: 'none' },
  { name: 'console.stream', method: 'GET', path: '/v1/console/stream', access: reads, rateLimit: null, body: 'none' },
];

export type Match =
  /**
   * `param` is the first path parameter (sku, reservation id, drop id); `params` all of them,
   * in order. `malformed`: a parameter's percent-encoding is broken (400 once the caller is
   * known: authentication comes first).
   */
  | { kind: 'route'; route: RouteSpec; param: string; params: string[]; malformed: boolean }
  /** `path`: the template of the known path, for metrics. */
  | { kind: 'method_not_allowed'; allow: string; path: string }
  | { kind: 'not_found' };

interface PathNode {
  /** Routes at this exact path, by method. */
  methods: Map<string, RouteSpec>;
  literal: Map<string, PathNode>;
  param: PathNode | null;
}

const newNode = (): PathNode => ({ methods: new Map(), literal: new Map(), param: null });

function buildTree(routes: readonly RouteSpec[]): PathNode {
  const root = newNode();
  for (const r of routes) {
    let node = root;
    for (const segment of r.path.split('/').slice(1)) {
      if (segment.startsWith('{')) node = node.param ??= newNode();
      else {
        let next = node.literal.get(segment);
        if (next === undefined) node.literal.set(segment, (next = newNode()));
        node = next;
      }
    }
    node.methods.set(r.method, r);
  }
  return root;
}

const tree = buildTree(routeTable);

function decode(segment: string): string | null {
  if (!segment.includes('%')) return segment;
  try {
    return decodeURIComponent(segment);
  } catch {
    return null;
  }
}

/** The route for a method and URL (query ignored), with its path parameters percent-decoded. */
export function matchRoute(method: string, url: string): Match {
  const q = url.indexOf('?');
  const path = q < 0 ? url : url.slice(0, q);
  if (path.charCodeAt(0) !== 47 /* / */) return { kind: 'not_found' };
  const segments = path.split('/');
  let node: PathNode = tree;
  const params: string[] = [];
  let malformed = false;
  for (let i = 1; i < segments.length; i++) {
    const segment = segments[i] as string;
    const literal = node.literal.get(segment);
    if (literal !== undefined) {
      node = literal;
      continue;
    }
    if (node.param === null || segment === '') return { kind: 'not_found' };
    const decoded = decode(segment);
    if (decoded === '') return { kind: 'not_found' };
    if (decoded === null) malformed = true;
    params.push(decoded ?? segment);
    node = node.param;
  }
  if (node.methods.size === 0) return { kind: 'not_found' };
  const route = node.methods.get(method);
  if (route !== undefined) return { kind: 'route', route, param: params[0] ?? '', params, malformed };
  const any = node.methods.values().next().value as RouteSpec;
  return { kind: 'method_not_allowed', allow: [...node.methods.keys()].join(', '), path: any.path };
}

/** `POST /v1/reservations`: the route's name in metrics (bounded: one per table row). */
export function routeLabel(route: RouteSpec): string {
  return `${route.method} ${route.path}`;
}
