// A fake flash engine for the tests of `flash rehearse` (adapted from an adversarial review's):
// it stands in where a real engine cannot misbehave on cue. Just enough of the API: /healthz,
// SKUs (PUT, GET, stock), drops (PUT, GET), reservations (create, pay, cancel); /metrics is 404.
// MODE (comma-separated):
//   redirect=<base>  every /v1 call answers 307 to <base><path>
//   redirectreserve=<base>  only reserves answer 307 to <base><path>
//   oversell         grants every reserve (no stock limit); its views lie: onHand inflated to
//                    what it granted, so onHand = available + reserved + sold still holds
//   stall=<ms>@<s>   every reserve arriving in the <ms> from <s> s after the first reserve is
//                    held until those <ms> are over
//   hangfirst=<n>    never answers the first <n> reserves
//   closefirst=<n>   closes the connection of each of the first <n> reserves, unanswered
//   overloadclose=<n> answers the first <n> reserves 503 overloaded with `connection: close`,
//                    as the engine's gateway does when it sheds
//   die=<s>          the process exits <s> s after the first reserve (its port then refuses)
// BASE: a base path the API is served under (anything else is 404). PORT: the port. It prints
// `LISTENING <port>` once up, and its counts by route on SIGTERM.
import { createServer } from 'node:http';

const port = Number(process.env.PORT ?? 0);
const base = (process.env.BASE ?? '').replace(/\/+$/, '');
const modes = new Map((process.env.MODE ?? '').split(',').filter(Boolean).map((m) => {
  const [k, v] = m.split('=');
  return [k, v ?? ''];
}));
const skus = new Map();
const drops = new Map();
const holds = new Map();
let nres = 0;
let hungSoFar = 0;
let closedSoFar = 0;
let shedSoFar = 0;
let firstReserve = null;
const counts = {};
const bump = (k) => (counts[k] = (counts[k] ?? 0) + 1);

function send(res, status, body) {
  const t = JSON.stringify(body);
  res.writeHead(status, { 'content-type': 'application/json', 'content-length': Buffer.byteLength(t) });
  res.end(t);
}
const notFound = (res, code = 'not_found') => send(res, 404, { error: { code, message: 'no' } });

const server = createServer((req, res) => {
  let data = '';
  req.on('data', (c) => (data += c));
  req.on('end', async () => {
    const url = new URL(req.url, 'http://x');
    if (!url.pathname.startsWith(`${base}/`)) return notFound(res);
    const p = url.pathname.slice(base.length);
    bump(`${req.method} ${p.replace(/\/v1\/(skus|reservations|drops)\/[^/]+/, '/v1/$1/:id')}`);
    if (modes.has('redirect') && p.startsWith('/v1')) {
      res.writeHead(307, { location: modes.get('redirect') + req.url });
      return res.end();
    }
    if (p === '/healthz') return send(res, 200, { ok: true });
    if (p === '/metrics') return notFound(res);
    let m;
    if ((m = /^\/v1\/drops\/([^/]+)$/.exec(p))) {
      const id = decodeURIComponent(m[1]);
      if (req.method === 'PUT') {
        const b = data ? JSON.parse(data) : {};
        const created = !drops.has(id);
        drops.set(id, { dropId: id, queue: b.queue ?? null });
        return send(res, created ? 201 : 200, drops.get(id));
      }
      return drops.has(id) ? send(res, 200, drops.get(id)) : notFound(res, 'unknown_drop');
    }
    if ((m = /^\/v1\/skus\/([^/]+)$/.exec(p))) {
      const sku = decodeURIComponent(m[1]);
      if (req.method === 'PUT') {
        const b = JSON.parse(data || '{}');
        const created = !skus.has(sku);
        if (created) skus.set(sku, { sku, stock: b.stock ?? 0, reserved: 0, sold: 0 });
        return send(res, created ? 201 : 200, { sku });
      }
      const s = skus.get(sku);
      if (!s) return notFound(res, 'unknown_sku');
      if (modes.has('oversell')) {
        const onHand = Math.max(s.stock, s.reserved + s.sold);
        return send(res, 200, { sku, onHand, available: Math.max(0, s.stock - s.reserved - s.sold), reserved: s.reserved, sold: s.sold });
      }
      return send(res, 200, { sku, onHand: s.stock, available: s.stock - s.reserved - s.sold, reserved: s.reserved, sold: s.sold });
    }
    if ((m = /^\/v1\/skus\/([^/]+)\/stock$/.exec(p))) {
      const s = skus.get(decodeURIComponent(m[1]));
      if (!s) return notFound(res, 'unknown_sku');
      s.stock += JSON.parse(data || '{}').delta;
      return send(res, 200, {});
    }
    if (p === '/v1/reservations' && req.method === 'POST') {
      if (modes.has('redirectreserve')) {
        res.writeHead(307, { location: modes.get('redirectreserve') + req.url });
        return res.end();
      }
      const now = Date.now();
      firstReserve ??= now;
      if (modes.has('die') && now - firstReserve > Number(modes.get('die')) * 1000) process.exit(0);
      if (modes.has('hangfirst') && ++hungSoFar <= Number(modes.get('hangfirst'))) return;
      if (modes.has('closefirst') && ++closedSoFar <= Number(modes.get('closefirst'))) return req.socket.destroy();
      if (modes.has('overloadclose') && ++shedSoFar <= Number(modes.get('overloadclose'))) {
        const t = JSON.stringify({ error: { code: 'overloaded', message: 'busy' } });
        res.writeHead(503, { 'content-type': 'application/json', 'content-length': Buffer.byteLength(t), connection: 'close' });
        return res.end(t);
      }
      if (modes.has('stall')) {
        const [ms, at] = modes.get('stall').split('@').map(Number);
        const from = firstReserve + at * 1000;
        if (now >= from && now < from + ms) await new Promise((r) => setTimeout(r, from + ms - now));
      }
      const b = JSON.parse(data || '{}');
      const s = skus.get(b.sku);
      nres++;
      if (!s) return notFound(res, 'unknown_sku');
      const qty = b.qty ?? 1;
      if (!modes.has('oversell') && s.stock - s.reserved - s.sold < qty) return send(res, 409, { error: { code: 'sold_out', message: 'sold out' } });
      s.reserved += qty;
      const id = `r${nres}`;
      holds.set(id, { sku: b.sku, qty });
      return send(res, 201, { reservationId: id, sku: b.sku, qty });
    }
    if ((m = /^\/v1\/reservations\/([^/]+)\/(pay|cancel)$/.exec(p))) {
      const h = holds.get(m[1]);
      if (!h) return notFound(res, 'unknown_reservation');
      holds.delete(m[1]);
      const s = skus.get(h.sku);
      s.reserved -= h.qty;
      if (m[2] === 'pay') s.sold += h.qty;
      return send(res, 200, { state: m[2] === 'pay' ? 'paid' : 'cancelled' });
    }
    notFound(res);
  });
});
server.listen(port, process.env.HOST ?? '127.0.0.1', () => console.log('LISTENING', server.address().port));
process.on('SIGTERM', () => {
  console.log('COUNTS', JSON.stringify(counts));
  process.exit(0);
});
