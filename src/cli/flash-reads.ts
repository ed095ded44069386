// The `flash` commands that are one or a few calls: stock adjust, SKU views, listing and
// audit, a drop's status and a buyer's entry, the ERP backlog. Human output is aligned
// tables and key/value blocks; `--json` prints the API's JSON instead (one document).

import { Limits } from '../domain/index.js';
import { reason as reasonOf } from '../gateway/validate.js';
import { CliError, Exit, call, expectOk, guarded, isObject, seg, writeOnce, type Connection, type ExitCode, type FlashIo } from './flash-client.js';
import { compact, duration, keyValues, table, time, when } from './flash-format.js';

type Obj = Record<string, unknown>;

const print = (io: FlashIo, lines: readonly string[]): void => io.stdout(lines.length === 0 ? '' : `${lines.join('\n')}\n`);
const printJson = (io: FlashIo, v: unknown): void => io.stdout(`${JSON.stringify(v)}\n`);
const num = (v: unknown): number | null => (typeof v === 'number' ? v : null);

/** A --limit value: a positive integer, or undefined for no limit. */
export function limitOption(raw: string | undefined): number | undefined {
  if (raw === undefined) return undefined;
  if (!/^\d+$/.test(raw) || Number(raw) < 1) throw new CliError(Exit.usage, `--limit ${raw} must be a positive integer`);
  return Number(raw);
}

// ---------------------------------------------------------------------------------------
// Stock

export const stockAdjust = guarded(async (conn: Connection, io: FlashIo, sku: string, deltaRaw: string, reason: string, json: boolean): Promise<ExitCode> => {
  const delta = Number(deltaRaw);
  if (!/^[+-]?\d+$/.test(deltaRaw) || delta === 0 || Math.abs(delta) > Limits.stockMax) {
    throw new CliError(Exit.usage, `DELTA ${deltaRaw} must be a non-zero integer in -${Limits.stockMax}..${Limits.stockMax} (+50 restocks, -5 writes off)`);
  }
  try {
    reasonOf({ reason });
  } catch (e) {
    throw new CliError(Exit.usage, `--reason: ${(e as Error).message}`);
  }
  // Not an upsert: sent twice, +50 is +100. A lost answer says so rather than "try again".
  const view = await writeOnce(conn, `stock adjust ${sku} ${deltaRaw}`, 'POST', `/v1/skus/${seg(sku)}/stock`, { delta, reason },
    `flash sku audit ${sku} (or flash sku get ${sku})`);
  if (json) {
    printJson(io, view);
    return Exit.ok;
  }
  const onHand = num(view.onHand);
  const before = onHand === null ? '?' : String(onHand - delta);
  print(io, [`${sku}: ${delta > 0 ? '+' : ''}${delta} (${reason}): onHand ${before} → ${String(view.onHand)}, available ${String(view.available)}`]);
  return Exit.ok;
});

// ---------------------------------------------------------------------------------------
// SKUs

function channelsText(v: unknown): string {
  if (v === null || typeof v !== 'object' || Object.keys(v).length === 0) return 'any';
  return Object.entries(v as Record<string, Obj>)
    .map(([name, c]) => `${name} (${String(c.reserved ?? 0)} reserved, ${String(c.sold ?? 0)} sold, cap ${c.maxUnits === null || c.maxUnits === undefined ? 'none' : String(c.maxUnits)})`)
    .join(', ');
}

export function skuLines(v: Obj): string[] {
  const window = num(v.startsAt) || num(v.endsAt) ? `${time(v.startsAt)} .. ${time(v.endsAt)}` : 'open';
  return keyValues([
    ['sku', String(v.sku)],
    ['onHand', num(v.onHand)],
    ['available', num(v.available)],
    ['reserved', num(v.reserved)],
    ['sold', num(v.sold)],
    ['refunded', num(v.refunded)],
    ['mode', String(v.mode)],
    ['holdSeconds', num(v.holdSeconds)],
    ['maxPerBuyer', v.maxPerBuyer === 0 ? '0 (no limit)' : num(v.maxPerBuyer)],
    ['sale window', window],
    ['dropId', v.dropId === null ? '-' : String(v.dropId)],
    ['lowStockThreshold', v.lowStockThreshold === 0 ? '0 (off)' : num(v.lowStockThreshold)],
    ['minAccountAgeSeconds', v.minAccountAgeSeconds === 0 ? '0 (off)' : num(v.minAccountAgeSeconds)],
    ['minPastOrders', v.minPastOrders === 0 ? '0 (off)' : num(v.minPastOrders)],
    ['channels', channelsText(v.channels)],
    ['created', time(v.createdAt)],
    ['updated', time(v.updatedAt)],
  ]);
}

export const skuGet = guarded(async (conn: Connection, io: FlashIo, sku: string, json: boolean): Promise<ExitCode> => {
  const v = await expectOk(conn, `sku get ${sku}`, 'GET', `/v1/skus/${seg(sku)}`) as Obj;
  if (json) printJson(io, v);
  else print(io, skuLines(v));
  return Exit.ok;
});

/** Follows `next` until `limit` items (or the end); returns the items and the cursor after them. */
async function pages(conn: Connection, what: string, base: string, limit: number | undefined): Promise<{ items: Obj[]; next: string | null }> {
  const items: Obj[] = [];
  let cursor: string | null = null;
  for (;;) {
    const want = Math.min(1000, limit === undefined ? 1000 : limit - items.length);
    const q = new URLSearchParams({ limit: String(want) });
    if (cursor !== null) q.set('cursor', cursor);
    const page = await expectOk(conn, what, 'GET', `${base}?${q.toString()}`);
    if (!Array.isArray(page.items)) throw new CliError(Exit.unreachable, `${what} failed: the answer from ${conn.url} is not a listing (no items): is --url (or FLASH_URL) the engine's address?`);
    const got = page.items.filter(isObject);
    items.push(...got);
    cursor = typeof page.next === 'string' ? page.next : null;
    if (cursor === null || (limit !== undefined && items.length >= limit) || got.length === 0) return { items, next: cursor };
  }
}

export const skuList = guarded(async (conn: Connection, io: FlashIo, limit: number | undefined, json: boolean): Promise<ExitCode> => {
  const { items, next } = await pages(conn, 'sku list', '/v1/skus', limit);
  if (json) {
    printJson(io, { items, next });
    return Exit.ok;
  }
  if (items.length === 0) {
    print(io, ['no SKUs yet (create some with flash apply FILE or flash stock import FILE)']);
    return Exit.ok;
  }
  print(io, table(['SKU', 'ON HAND', 'AVAILABLE', 'RESERVED', 'SOLD', 'MODE', 'MAX/BUYER', 'DROP'],
    items.map((v) => [String(v.sku), num(v.onHand), num(v.available), num(v.reserved), num(v.sold), String(v.mode), num(v.maxPerBuyer), v.dropId === null ? null : String(v.dropId)])));
  if (next !== null) io.stderr(`flash: more SKUs follow; raise --limit to list them\n`);
  return Exit.ok;
});

function changeText(before: unknown, after: unknown): string {
  if (before === null || typeof before !== 'object') {
    if (after === null || typeof after !== 'object') return '';
    return Object.entries(after as Obj).filter(([, v]) => v !== 0 && v !== null && !(Array.isArray(v) && v.length === 0))
      .map(([k, v]) => `${k} ${compact(v)}`).join(', ');
  }
  const keys = new Set([...Object.keys(before), ...Object.keys((after ?? {}) as Obj)]);
  return [...keys].map((k) => `${k} ${compact((before as Obj)[k])} → ${compact(((after ?? {}) as Obj)[k])}`).join(', ');
}

export const skuAudit = guarded(async (conn: Connection, io: FlashIo, sku: string, limit: number | undefined, json: boolean): Promise<ExitCode> => {
  const { items, next } = await pages(conn, `sku audit ${sku}`, `/v1/skus/${seg(sku)}/audit`, limit);
  if (json) {
    printJson(io, { items, next });
    return Exit.ok;
  }
  if (items.length === 0) {
    print(io, [`no change of ${sku} is recorded`]);
    return Exit.ok;
  }
  print(io, table(['AT', 'ACTOR', 'ACTION', 'CHANGE', 'REASON'],
    items.map((e) => [time(e.at), String(e.actor), String(e.action), changeText(e.before, e.after), typeof e.reason === 'string' ? e.reason : null])));
  if (next !== null) io.stderr(`flash: older changes follow; raise --limit to list them\n`);
  return Exit.ok;
});

// ---------------------------------------------------------------------------------------
// Drops

export const dropStatus = guarded(async (conn: Connection, io: FlashIo, dropId: string, json: boolean): Promise<ExitCode> => {
  const v = await expectOk(conn, `drop status ${dropId}`, 'GET', `/v1/drops/${seg(dropId)}`) as Obj;
  if (json) {
    printJson(io, v);
    return Exit.ok;
  }
  const skus = Array.isArray(v.skus) ? (v.skus as string[]) : [];
  const q = (v.queue ?? null) as Obj | null;
  const lines = keyValues([
    ['drop', String(v.dropId)],
    ['skus', skus.length === 0 ? '-' : skus.join(', ')],
    ['queue', q === null ? 'none (anyone may reserve)' : String(q.mode)],
  ]);
  if (q !== null) {
    const draw = q.mode === 'draw';
    const now = Date.now();
    const pairs: [string, string | number | null][] = [['opens', when(q.opensAt, now)]];
    if (draw) pairs.push(['closes', when(q.closesAt, now)], ['qtyPerWinner', num(q.qtyPerWinner)]);
    else pairs.push(['pace', `${String(q.admitPerSecond)} buyers/s, ${String(q.admitSeconds)} s to reserve once admitted`]);
    if (q.mode === 'random') pairs.push(['randomized until', when(num(q.opensAt)! + num(q.randomizeSeconds)! * 1000, now)]);
    pairs.push(['entries', num(q.entries)]);
    if (draw) pairs.push(['won', num(q.won)], ['lost', num(q.lost)]);
    else pairs.push(['waiting', num(q.waiting)], ['admitted', num(q.admitted)], ['used', num(q.used)], ['lapsed', num(q.lapsed)]);
    pairs.push(['seedSha256', String(q.seedSha256)]);
    pairs.push(['seed', typeof q.seed === 'string' ? `${q.seed} (revealed: verify with GET /v1/drops/${dropId}/order)` : q.mode === 'fifo' ? 'not used (fifo)' : 'not revealed yet']);
    lines.push(...keyValues(pairs).map((l) => `  ${l}`));
  }
  // The drop's SKUs, as a shop page would show them (public reads).
  const views = await Promise.all(skus.slice(0, 200).map(async (sku) => {
    const a = await call(conn, 'GET', `/v1/skus/${seg(sku)}`);
    return a.status === 200 && isObject(a.body) ? a.body : { sku };
  }));
  if (views.length > 0) {
    lines.push('', ...table(['SKU', 'ON HAND', 'AVAILABLE', 'RESERVED', 'SOLD', 'MAX/BUYER'],
      views.map((s) => [String(s.sku), num(s.onHand), num(s.available), num(s.reserved), num(s.sold), num(s.maxPerBuyer)])));
  }
  print(io, lines);
  return Exit.ok;
});

export const dropEntry = guarded(async (conn: Connection, io: FlashIo, dropId: string, buyerId: string, json: boolean): Promise<ExitCode> => {
  const v = await expectOk(conn, `drop entry ${dropId} ${buyerId}`, 'GET', `/v1/drops/${seg(dropId)}/queue/${seg(buyerId)}`) as Obj;
  if (json) {
    printJson(io, v);
    return Exit.ok;
  }
  const pairs: [string, string | number | null][] = [['drop', String(v.dropId ?? dropId)], ['buyer', String(v.buyerId ?? buyerId)], ['state', String(v.state)]];
  if (v.position !== undefined) pairs.push(['position', num(v.position)]);
  if (v.etaSeconds !== undefined) pairs.push(['eta', duration(num(v.etaSeconds)! * 1000)]);
  pairs.push(['joined', time(v.joinedAt)]);
  if (v.admittedAt !== undefined) pairs.push(['admitted', time(v.admittedAt)]);
  if (v.admittedUntil !== undefined) pairs.push(['admitted until', when(v.admittedUntil)]);
  if (v.reservationId !== undefined) pairs.push(['reservation', String(v.reservationId)]);
  print(io, keyValues(pairs));
  return Exit.ok;
});

// ---------------------------------------------------------------------------------------
// ERP

interface DelivererStatus {
  /** Its figures (DelivererStats), when it runs or ran in this process; null: none yet. */
  stats: Obj | null;
  /** Over NATS, this node's part (standby, delivering, ...); null when embedded. */
  role: string | null;
}

function delivererStatus(d: Obj): DelivererStatus | null {
  const stats = typeof d.deliveredTotal === 'number' ? d : null;
  const role = typeof d.role === 'string' ? d.role : null;
  return stats === null && role === null ? null : { stats, role };
}

/**
 * GET /v1/admin/erp's `deliverer`: null (none here), the ERP deliverer's status, and with
 * FLASH_EVENTS_WEBHOOK_URL an `eventsWebhook` key holding the stock events deliverer's (alone
 * when no ERP sink is configured).
 */
function deliverers(d: unknown): { erp: DelivererStatus | null; events: DelivererStatus | null } {
  if (!isObject(d)) return { erp: null, events: null };
  const { eventsWebhook, ...erp } = d;
  return { erp: delivererStatus(erp), events: isObject(eventsWebhook) ? delivererStatus(eventsWebhook) ?? { stats: null, role: null } : null };
}

function roleText(role: string | null): string {
  return role === null ? 'configured, no figures yet' : `${role} on this node (another node holds the deliverer lease, or it is starting)`;
}

function lastErrorText(stats: Obj | null): string {
  const e = stats?.lastError;
  return isObject(e) ? `${time(e.atMs)} ${String(e.kind)}: ${String(e.message)}` : '-';
}

export const erpStatus = guarded(async (conn: Connection, io: FlashIo, json: boolean): Promise<ExitCode> => {
  const r = await expectOk(conn, 'erp', 'GET', '/v1/admin/erp') as Obj;
  if (json) {
    printJson(io, r);
    return Exit.ok;
  }
  const totals = isObject(r.totals) ? r.totals : {};
  const shards = Array.isArray(r.shards) ? r.shards.filter(isObject) : [];
  const backlogOrders = shards.reduce((n, s) => n + (num(s.backlogOrders) ?? 0), 0);
  const { erp, events } = deliverers(r.deliverer);
  const stats = erp?.stats ?? null;
  const pairs: [string, string | number | null][] = [
    ['complete', r.complete === true ? 'yes: every paid and refunded order was delivered' : r.shardsAnswered === false ? 'no: some shard did not answer' : 'no: some orders are not delivered yet'],
    ['backlog', `${backlogOrders} event${backlogOrders === 1 ? '' : 's'} in the shards' outboxes`],
    ['oldest undelivered', stats === null ? '-' : num(stats.oldestUndeliveredAgeMs) ? `${duration(num(stats.oldestUndeliveredAgeMs)!)} old` : 'none'],
    ['delivered', stats === null ? '-' : num(stats.deliveredTotal)],
    ['deliverer', erp === null ? 'none in this process (no ERP sink configured here, or another gateway runs it)'
      : erp.stats === null ? roleText(erp.role)
      : `${erp.role === null ? '' : `${erp.role}: `}${String(erp.stats.callsInFlight)} calls in flight, cap ${String(erp.stats.maxRps)}/s and ${String(erp.stats.concurrency)} at once, ${String(erp.stats.failuresTotal)} failures`],
    ['last error', lastErrorText(stats)],
  ];
  // The stock events webhook (FLASH_EVENTS_WEBHOOK_URL) has a deliverer of its own.
  if (events !== null) {
    const e = events.stats;
    pairs.push(
      ['events webhook', e === null ? roleText(events.role)
        : `${events.role === null ? '' : `${events.role}: `}${String(e.deliveredTotal)} delivered, ${String(num(e.backlogEvents) ?? 0)} in backlog${e.backlogMayHaveMore === true ? ' (or more)' : ''}${num(e.oldestUndeliveredAgeMs) ? `, oldest ${duration(num(e.oldestUndeliveredAgeMs)!)} old` : ''}, ${String(num(e.failuresTotal) ?? 0)} failures`],
      ['events last error', lastErrorText(e)],
    );
  }
  pairs.push(
    ['units sold', num(totals.sold)],
    ['units delivered', num(totals.deliveredUnits)],
    ['units undelivered', num(totals.undeliveredUnits)],
    ['units refunded', num(totals.refundedUnits)],
  );
  const lines = keyValues(pairs);
  for (const s of shards) if (typeof s.error === 'string') lines.push(`shard ${String(s.shardId)} did not answer: ${s.error}`);
  const skus = Array.isArray(r.skus) ? r.skus.filter(isObject) : [];
  if (skus.length > 0) {
    lines.push('', ...table(['SKU', 'SOLD', 'DELIVERED', 'UNDELIVERED', 'NOT QUEUED', 'REFUNDED', 'REFUNDS DELIVERED'],
      [...skus].sort((a, b) => String(a.sku).localeCompare(String(b.sku)))
        .map((s) => [String(s.sku), num(s.sold), num(s.deliveredUnits), num(s.undeliveredUnits), num(s.notQueuedUnits), num(s.refundedUnits), num(s.refundsDeliveredUnits)])));
  }
  print(io, lines);
  return Exit.ok;
});
