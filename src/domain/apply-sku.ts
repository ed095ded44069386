// Catalogue commands of a shard: create or update a SKU's policy, restock or write off,
// record where a drop's SKU lives, and read a SKU. Policy changes never touch live
// reservations: each reservation keeps the mode and expiry it was created with.

import { Limits, pageBytesMax, utf8Length, windowError } from './fields.js';
import type { Applied, Command, SkuView } from './commands.js';
import { assertSkuInvariants } from './invariants.js';
import { shardForSku } from './routing.js';
import { SkuState, addSku, quotaFor, type ShardState } from './shard-state.js';
import { stockEvents } from './stock-events.js';
import { answered, refused, skuView } from './views.js';
import { auditPage, auditedFields, changedFields, recordAudit } from './audit.js';

type Upsert = Extract<Command, { t: 'sku.upsert' }>;
type Adjust = Extract<Command, { t: 'sku.adjust' }>;
type Link = Extract<Command, { t: 'sku.link' }>;

/** The SKU if it lives here, or the refusal that tells the caller where to go. */
export function findSku(state: ShardState, sku: string): SkuState | Applied {
  const s = state.skus.get(sku);
  if (s !== undefined) return s;
  const dropId = state.links.get(sku);
  if (dropId !== undefined) return movedTo(sku, dropId);
  return refused('unknown_sku', `no sku named ${sku}`);
}

function movedTo(sku: string, dropId: string): Applied {
  const message = `sku ${sku} lives in the shard of drop ${dropId}`;
  return { outcome: { ok: false, code: 'moved', message, dropId }, mutated: false, events: null };
}

function applyPolicy(s: SkuState, c: Upsert): void {
  if (c.mode !== undefined) s.mode = c.mode;
  if (c.holdSeconds !== undefined) s.holdSeconds = c.holdSeconds;
  if (c.maxPerBuyer !== undefined) s.maxPerBuyer = c.maxPerBuyer;
  if (c.startsAtMs !== undefined) s.startsAtMs = c.startsAtMs;
  if (c.endsAtMs !== undefined) s.endsAtMs = c.endsAtMs;
  if (c.lowStockThreshold !== undefined) s.lowStockThreshold = c.lowStockThreshold;
  if (c.minAccountAgeSeconds !== undefined) s.minAccountAgeSeconds = c.minAccountAgeSeconds;
  if (c.minPastOrders !== undefined) s.minPastOrders = c.minPastOrders;
  // The policy is replaced whole; the units counted per channel stay (they are facts, not policy).
  if (c.channels !== undefined) s.channelCaps = c.channels === null ? null : new Map(c.channels);
}

export function applyUpsert(state: ShardState, c: Upsert, nowMs: number): Applied {
  const existing = state.skus.get(c.sku);
  if (existing !== undefined) {
    if (c.dropId !== undefined && c.dropId !== existing.dropId) {
      return refused('drop_mismatch', `sku ${c.sku} belongs to drop ${existing.dropId ?? '(none)'}; dropId cannot change`);
    }
    const bad = windowError(c.startsAtMs ?? existing.startsAtMs, c.endsAtMs ?? existing.endsAtMs);
    if (bad !== null) return refused('invalid_request', bad);
    const thresholdBefore = existing.lowStockThreshold;
    const fieldsBefore = auditedFields(existing);
    applyPolicy(existing, c);
    existing.updatedAtMs = nowMs;
    const [before, after] = changedFields(fieldsBefore, auditedFields(existing));
    if (Object.keys(after).length > 0) recordAudit(existing, { atMs: nowMs, actor: c.actor ?? 'unknown', action: 'update', before, after, reason: c.reason ?? null });
    // A new threshold is judged afresh: at or under it counts as already signalled.
    if (existing.lowStockThreshold !== thresholdBefore) {
      existing.lowStockSignaled = existing.lowStockThreshold > 0 && existing.available <= existing.lowStockThreshold;
    }
    return answered({ ok: true, status: 'ok', sku: skuView(existing) }, true);
  }
  const linked = state.links.get(c.sku);
  if (linked !== undefined) {
    if (c.dropId !== undefined && c.dropId !== linked) {
      return refused('drop_mismatch', `sku ${c.sku} belongs to drop ${linked}; dropId cannot change`);
    }
    return movedTo(c.sku, linked);
  }
  const dropId = c.dropId ?? null;
  if (shardForSku(c.sku, dropId, state.config.shardCount) !== state.config.shardId) {
    return refused('invalid_request', `sku ${c.sku} does not route to shard ${state.config.shardId}`);
  }
  const bad = windowError(c.startsAtMs ?? 0, c.endsAtMs ?? 0);
  if (bad !== null) return refused('invalid_request', bad);
  const s = new SkuState(c.sku, dropId, nowMs, quotaFor(state, dropId));
  s.onHand = c.stock ?? 0;
  applyPolicy(s, c);
  assertSkuInvariants(s);
  addSku(state, s);
  recordAudit(s, { atMs: nowMs, actor: c.actor ?? 'unknown', action: 'create', before: null, after: auditedFields(s), reason: c.reason ?? null });
  // A new SKU crosses no threshold; its level shows in the stock gauges.
  s.lowStockSignaled = s.lowStockThreshold > 0 && s.available <= s.lowStockThreshold;
  return answered({ ok: true, status: 'created', sku: skuView(s) }, true);
}

export function applyAdjust(state: ShardState, c: Adjust, nowMs: number): Applied {
  const found = findSku(state, c.sku);
  if (!(found instanceof SkuState)) return found;
  const s = found;
  const before = s.available;
  if (before + c.delta < 0) {
    return refused('insufficient_stock', `only ${before} units of ${c.sku} are available to write off`);
  }
  if (s.onHand + c.delta > Limits.stockMax) {
    return refused('invalid_request', `delta would take onHand past ${Limits.stockMax}`);
  }
  const onHandBefore = s.onHand;
  s.onHand += c.delta;
  s.updatedAtMs = nowMs;
  assertSkuInvariants(s);
  recordAudit(s, {
    atMs: nowMs, actor: c.actor ?? 'unknown', action: 'stock', reason: c.reason ?? null,
    before: { onHand: onHandBefore, available: before }, after: { onHand: s.onHand, available: s.available },
  });
  const events = stockEvents(s, before, null);
  return answered({ ok: true, status: 'ok', sku: skuView(s) }, true, events);
}

export function applyLink(state: ShardState, c: Link): Applied {
  const { shardId, shardCount } = state.config;
  if (shardForSku(c.sku, null, shardCount) !== shardId) {
    return refused('invalid_request', `sku ${c.sku} does not have its home in shard ${shardId}`);
  }
  // A drop that lives in the SKU's home shard needs no link: the SKU itself will be here.
  if (shardForSku(c.sku, c.dropId, shardCount) === shardId) return answered({ ok: true, status: 'ok' }, false);
  const local = state.skus.get(c.sku);
  if (local !== undefined) {
    if (local.dropId === c.dropId) return answered({ ok: true, status: 'ok' }, false);
    return refused('drop_mismatch', `sku ${c.sku} belongs to drop ${local.dropId ?? '(none)'}; dropId cannot change`);
  }
  const linked = state.links.get(c.sku);
  if (linked === c.dropId) return answered({ ok: true, status: 'ok' }, false);
  if (linked !== undefined) {
    return refused('drop_mismatch', `sku ${c.sku} belongs to drop ${linked}; dropId cannot change`);
  }
  state.links.set(c.sku, c.dropId);
  return answered({ ok: true, status: 'ok' }, true);
}

export function applyGetSku(state: ShardState, sku: string): Applied {
  const found = findSku(state, sku);
  if (!(found instanceof SkuState)) return found;
  return answered({ ok: true, status: 'ok', sku: skuView(found) }, false);
}

export function applyAudit(state: ShardState, sku: string, cursor: number | undefined, limit: number): Applied {
  const found = findSku(state, sku);
  if (!(found instanceof SkuState)) return found;
  return answered({ ok: true, status: 'ok', audit: auditPage(found, cursor ?? null, limit) }, false);
}

/** The SKUs that live here, in sku order (names are ASCII, so this is byte order), after `after`. */
export function applyList(state: ShardState, after: string | undefined, limit: number): Applied {
  const names = sortedSkuNames(state);
  let lo = 0;
  if (after !== undefined) {
    let hi = names.length;
    while (lo < hi) {
      const mid = (lo + hi) >>> 1;
      if (names[mid]! <= after) lo = mid + 1;
      else hi = mid;
    }
  }
  // A page also ends at pageBytesMax bytes of views as JSON (at least one view): an answer
  // must fit in one NATS message, and 1,000 views of SKUs with many channels would not.
  const items: SkuView[] = [];
  let bytes = 0;
  let i = lo;
  for (; i < names.length && items.length < limit && (items.length === 0 || bytes < pageBytesMax); i++) {
    const view = skuView(state.skus.get(names[i]!)!);
    items.push(view);
    bytes += utf8Length(JSON.stringify(view));
  }
  return answered({ ok: true, status: 'ok', skus: { items, more: i < names.length } }, false);
}


/** SKU names sorted: built once, then kept up to date as SKUs are added (an index, not state; SKUs are never removed). */
function sortedSkuNames(state: ShardState): string[] {
  state.sortedSkuNames ??= [...state.skus.keys()].sort((a, b) => (a < b ? -1 : a > b ? 1 : 0));
  return state.sortedSkuNames;
}
