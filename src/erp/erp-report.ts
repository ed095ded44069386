// The body of GET /v1/admin/erp, built from every shard's erp.reconcile answer. Per SKU and
// in total, the units ever paid are accounted for by where their order.paid is,
//   sold + refundedUnits = deliveredUnits + undeliveredUnits + notQueuedUnits + uncountedUnits,
// and the units refunded by where their order.refunded is,
//   refundedUnits = refundsDeliveredUnits + refundsUndeliveredUnits + refundsNotQueuedUnits,
// where delivered counts only what a deliverer acknowledged after the ERP accepted it (shard
// state, logged at erp.ack). It never infers delivery: `complete` is true only when every
// shard answered and every order.paid and order.refunded was delivered.

import type { ReconcileRow, ReconcileUnits } from '../domain/index.js';
import type { CallOutcome } from '../engine/shard-protocol.js';
import type { FeatureHandler } from '../gateway/http-gateway.js';
import { sendJson } from '../gateway/request-io.js';

const unitKeys = [
  'sold', 'deliveredUnits', 'undeliveredUnits', 'undeliveredOrders', 'notQueuedUnits', 'uncountedUnits',
  'refundedUnits', 'refundsDeliveredUnits', 'refundsUndeliveredUnits', 'refundsUndeliveredOrders', 'refundsNotQueuedUnits',
] as const;

type OlderRow = Partial<ReconcileRow> & Pick<ReconcileRow, 'sku' | 'sold' | 'undeliveredUnits' | 'undeliveredOrders'>;

/**
 * A row as this version's shards answer it. A shard node of an earlier version (a rolling
 * upgrade) may send only sold and undelivered: what it sold outside its outbox is uncounted,
 * never delivered; and one from before refunds refunded nothing.
 */
function fullRow(r: OlderRow): ReconcileRow {
  const counted = r.deliveredUnits !== undefined && r.notQueuedUnits !== undefined && r.uncountedUnits !== undefined
    ? {} : { deliveredUnits: 0, notQueuedUnits: 0, uncountedUnits: r.sold - r.undeliveredUnits };
  const refunds = r.refundedUnits !== undefined ? {} : {
    refundedUnits: 0, refundsDeliveredUnits: 0, refundsUndeliveredUnits: 0, refundsUndeliveredOrders: 0, refundsNotQueuedUnits: 0,
  };
  return { ...r, ...counted, ...refunds } as ReconcileRow;
}

function zero(): ReconcileUnits {
  return Object.fromEntries(unitKeys.map((k) => [k, 0])) as unknown as ReconcileUnits;
}

function add(into: ReconcileUnits, units: ReconcileUnits): void {
  for (const k of unitKeys) into[k] += units[k] ?? 0;
}

export interface ErpReport {
  /** Every shard answered, and every order.paid and order.refunded was delivered. */
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
    const shardTotals = o.reconcile.totals === undefined ? rows.reduce((t, r) => (add(t, r), t), zero()) : fullRow({ sku: '', ...o.reconcile.totals });
    add(totals, shardTotals);
    return {
      shardId, backlogOrders: o.reconcile.outboxLength, lastEventSeq: o.outboxLastSeq ?? 0, truncated: o.reconcile.truncated,
      outboxEnabled: o.reconcile.outboxEnabled ?? null,
    };
  });
  const shardsAnswered = shards.every((s) => !('error' in s));
  const complete = shardsAnswered && totals.deliveredUnits === totals.sold + totals.refundedUnits
    && totals.refundsDeliveredUnits === totals.refundedUnits;
  return { complete, shardsAnswered, totals, deliverer, shards, skus };
}

/**
 * `GET /v1/admin/erp` for the gateway: every shard's outbox (backlog), the deliverer's figures
 * where this process runs it (`status`), and per SKU sold = delivered + undelivered + not
 * queued (+ uncounted) units. A shard that does not answer is listed with its error, and the
 * report is then not complete.
 */
export function erpReportRoute(status: () => Record<string, unknown> | null): FeatureHandler {
  return async ({ res, router }) => {
    const { transport } = router;
    const answers = await Promise.all(Array.from({ length: transport.shardCount }, (_, k) => transport.call(k, { t: 'erp.reconcile' })));
    sendJson(res, 200, JSON.stringify(erpReport(answers, status())));
    return 200;
  };
}
