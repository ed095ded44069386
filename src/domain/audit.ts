// The audit trail of a SKU (shared/API.md, "Operators"): every change of its policy or stock,
// with who made it (the caller token's name, carried in the logged command), when, what it
// was before and after, and why (the optional reason of the call). It is shard state, so it
// is logged, replayed and snapshotted with the SKU; the newest `auditEntriesPerSkuMax`
// entries of each SKU are kept.

import type { AuditView } from './commands.js';
import type { AuditEntry, SkuState } from './shard-state.js';

export const auditEntriesPerSkuMax = 1000;
/**
 * And at most this many bytes of entries (as JSON) per SKU: a policy of 64 channels makes an
 * entry of several kilobytes, so the count alone would let a few SKUs hold gigabytes.
 */
export const auditBytesPerSkuMax = 64 * 1024;


/** The SKU's policy and stock as its view names them (the fields an audit entry can show). */
export function auditedFields(s: SkuState): Record<string, unknown> {
  return {
    onHand: s.onHand,
    mode: s.mode,
    holdSeconds: s.holdSeconds,
    maxPerBuyer: s.maxPerBuyer,
    startsAt: s.startsAtMs,
    endsAt: s.endsAtMs,
    dropId: s.dropId,
    lowStockThreshold: s.lowStockThreshold,
    minAccountAgeSeconds: s.minAccountAgeSeconds,
    minPastOrders: s.minPastOrders,
    // Pairs [name, maxUnits], never an object keyed by name: a channel may be called __proto__.
    channels: s.channelCaps === null ? null : [...s.channelCaps].map(([name, maxUnits]) => [name, maxUnits]),
  };
}

/** The fields whose values differ (compared as JSON), before and after. */
export function changedFields(before: Record<string, unknown>, after: Record<string, unknown>): [Record<string, unknown>, Record<string, unknown>] {
  const b: Record<string, unknown> = {};
  const a: Record<string, unknown> = {};
  for (const k of Object.keys(after)) {
    if (JSON.stringify(before[k]) === JSON.stringify(after[k])) continue;
    b[k] = before[k];
    a[k] = after[k];
  }
  return [b, a];
}

/** An entry's size as the snapshot and the audit listing carry it, about. */
export function auditEntryBytes(e: AuditEntry): number {
  return JSON.stringify(e).length;
}

/** Appends an entry, then forgets the oldest while more than the count or the bytes are kept (never the newest). */
export function recordAudit(s: SkuState, entry: Omit<AuditEntry, 'seq'>): void {
  const seq = (s.audit.length === 0 ? s.auditSeqBase : s.audit[s.audit.length - 1]!.seq) + 1;
  const e: AuditEntry = { seq, ...entry };
  s.audit.push(e);
  s.auditBytes += auditEntryBytes(e);
  let drop = 0;
  while (s.audit.length - drop > 1 && (s.audit.length - drop > auditEntriesPerSkuMax || s.auditBytes > auditBytesPerSkuMax)) {
    s.auditBytes -= auditEntryBytes(s.audit[drop]!);
    drop++;
  }
  if (drop > 0) {
    s.auditSeqBase = s.audit[drop - 1]!.seq;
    s.audit.splice(0, drop);
  }
}

/** Newest first, from before `cursor` (a seq; null: the newest), at most `limit`; `next` continues. */
export function auditPage(s: SkuState, cursor: number | null, limit: number): { items: AuditView[]; next: string | null } {
  const items: AuditView[] = [];
  let i = s.audit.length - 1;
  if (cursor !== null) while (i >= 0 && s.audit[i]!.seq >= cursor) i--;
  for (; i >= 0 && items.length < limit; i--) {
    const e = s.audit[i]!;
    items.push({ at: e.atMs, actor: e.actor, action: e.action, before: e.before, after: e.after, reason: e.reason });
  }
  const last = i >= 0 && items.length > 0 ? s.audit[i + 1]!.seq : null;
  return { items, next: last === null ? null : String(last) };
}
