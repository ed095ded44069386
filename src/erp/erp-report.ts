// The body of GET /v1/admin/erp, built from every shard's erp.reconcile answer: per SKU and
// in total, sold = deliveredUnits + undeliveredUnits + notQueuedUnits + uncountedUnits, where
// deliveredUnits counts only what a deliverer acknowledged after the ERP accepted it (shard
// state, logged at erp.ack). It never infers delivery: `complete` is true only when every
// shard answered and every unit sold was delivered.

import type { ReconcileRow, ReconcileUnits } from '../domain/index.js';
import type { CallOutcome } from '../engine/shard-protocol.js';

const unitKeys = ['sold', 'deliveredUnits', 'undeliveredUnits', 'undeliveredOrders', 'notQueuedUnits', 'uncountedUnits'] as const;

/**
 * A row as this version's shards answer it. A shard node of an earlier version (a rolling
 * upgrade) sends only sold and undelivered: what it sold outside its outbox is uncounted,
 * never delivered.
 */
function fullRow(r: Partial<ReconcileRow> & Pick<ReconcileRow, 'sku' | 'sold' | 'undeliveredUnits' | 'undeliveredOrders'>): ReconcileRow {
  if (r.deliveredUnits !== undefined && r.notQueuedUnits !== undefined && r.uncountedUnits !== undefined) return r as ReconcileRow;
  return { ...r, deliveredUnits: 0, notQueuedUnits: 0, uncountedUnits: r.sold - r.undeliveredUnits };
}

function zero(): ReconcileUnits {
  return { sold: 0, deliveredUnits: 0, undeliveredUnits: 0, undeliveredOrders: 0, notQueuedUnits: 0, uncountedUnits: 0 };
}

function add(into: ReconcileUnits, units: ReconcileUnits): void {
  for (const k of unitKeys) into[k] += units[k];
}

export interface ErpReport {
  /** Every shard answered, and everything sold was delivered. */
  complete: boolean;
  shardsAnswered: boolean;
  totals: ReconcileUnits;
  deliverer: Record<string, unknown> | null;
  shards: Record<string, unknown>[];
  skus: ReconcileRow[];
}

export function erpReport(answers: readonly CallOutcome[], deliverer: Record<string, unknown> | null): ErpReport {
  const totals = zero();
  const skus: ReconcileRow[] = [];
  const shards = answers.map((o, shardId): Record<string, unknown> => {
    if (!o.ok || o.reconcile === undefined) return { shardId, error: o.ok ? 'no answer' : `${o.code}: ${o.message}` };
    const rows = o.reconcile.rows.map(fullRow);
    skus.push(...rows);
    // Totals over every SKU of the shard (rows may be truncated); summed rows from an older node.
    const shardTotals = o.reconcile.totals ?? rows.reduce((t, r) => (add(t, r), t), zero());
    add(totals, shardTotals);
    return {
      shardId, backlogOrders: o.reconcile.outboxLength, lastEventSeq: o.outboxLastSeq ?? 0, truncated: o.reconcile.truncated,
      outboxEnabled: o.reconcile.outboxEnabled ?? null,
    };
  });
  const shardsAnswered = shards.every((s) => !('error' in s));
  const complete = shardsAnswered && totals.deliveredUnits === totals.sold;
  return { complete, shardsAnswered, totals, deliverer, shards, skus };
}
