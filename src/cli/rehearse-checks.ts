// What a rehearsal must show before a drop goes live, each a pass or a fail with the figures:
// every SKU conserved (onHand = available + reserved + sold, from GET /v1/skus/{sku}); a sell-out
// granted and sold exactly its stock; every SKU the run created sold exactly the units it paid;
// no 5xx but 503 overloaded (503 shard_unavailable counted on its own line); every request
// answered; the ERP backlog drained in the time the scenario states; and each stated target
// (p50 / p99 / p99.9 at a rate) met.

import { seg } from './flash-client.js';
import type { Api } from './rehearse-http.js';
import { activeMs, type Ledger, type PhaseLog, type StepLog } from './rehearse-load.js';
import type { Target } from './rehearse-scenario.js';
import { fmt, latencyHistogram, latencySummary, type LatencyMs } from './report-kit.js';

type Obj = Record<string, unknown>;

export interface CheckResult {
  name: string;
  ok: boolean;
  detail: string;
}

export interface SkuFigures {
  sku: string;
  onHand: number;
  available: number;
  reserved: number;
  sold: number;
  conserved: boolean;
  /** Created by this run (so every unit it sold was paid by this run). */
  created: boolean;
  paidByRun: number;
}

const s = (n: number, one: string, many = `${one}s`): string => `${fmt(n)} ${n === 1 ? one : many}`;

export function conservationCheck(skus: readonly SkuFigures[]): CheckResult {
  const bad = skus.filter((x) => !x.conserved);
  return {
    name: 'every SKU conserved (onHand = available + reserved + sold)',
    ok: bad.length === 0,
    detail: bad.length === 0
      ? `${s(skus.length, 'SKU')}: all conserved`
      : `${s(bad.length, 'SKU')} of ${skus.length} not: ${bad.slice(0, 5).map((x) => `${x.sku} onHand ${x.onHand} != available ${x.available} + reserved ${x.reserved} + sold ${x.sold}`).join('; ')}`,
  };
}

export function paidCheck(skus: readonly SkuFigures[]): CheckResult | null {
  const mine = skus.filter((x) => x.created);
  if (mine.length === 0) return null;
  const bad = mine.filter((x) => x.sold !== x.paidByRun);
  const paid = mine.reduce((a, x) => a + x.paidByRun, 0);
  return {
    name: 'sold = units this run paid (SKUs it created)',
    ok: bad.length === 0,
    detail: bad.length === 0
      ? `${s(paid, 'unit')} paid, ${s(paid, 'unit')} sold over ${s(mine.length, 'SKU')}`
      : bad.slice(0, 5).map((x) => `${x.sku} sold ${x.sold}, paid ${x.paidByRun}`).join('; '),
  };
}

export function selloutCheck(log: PhaseLog): CheckResult {
  const e = log.extra as {
    sku: string; stockAtStart: number; soldAtStart: number; reservedAtStart: number; grantedUnits: number; paidUnits: number | null;
    after: { available: number; reserved: number; sold: number };
  };
  const problems: string[] = [];
  if (e.grantedUnits !== e.stockAtStart) problems.push(`${fmt(e.grantedUnits)} units held for ${fmt(e.stockAtStart)} available at the start`);
  if (e.after.available !== 0) problems.push(`${fmt(e.after.available)} still available`);
  if (e.paidUnits !== null) {
    if (e.paidUnits !== e.stockAtStart) problems.push(`${fmt(e.paidUnits)} units paid`);
    if (e.after.sold - e.soldAtStart !== e.stockAtStart) problems.push(`sold went from ${fmt(e.soldAtStart)} to ${fmt(e.after.sold)}`);
  } else if (e.after.reserved + e.after.sold - e.reservedAtStart - e.soldAtStart !== e.stockAtStart) {
    problems.push(`reserved + sold went up by ${fmt(e.after.reserved + e.after.sold - e.reservedAtStart - e.soldAtStart)}`);
  }
  return {
    name: `sell-out ${log.name}: exactly the stock ${e.paidUnits !== null ? 'sold' : 'held'}`,
    ok: problems.length === 0,
    detail: problems.length === 0
      ? `${e.sku}: ${fmt(e.stockAtStart)} units, ${fmt(e.grantedUnits)} held${e.paidUnits !== null ? `, ${fmt(e.paidUnits)} paid, sold ${fmt(e.after.sold)}` : ''}, available 0`
      : `${e.sku}: ${problems.join('; ')}`,
  };
}

/** Every answer of every phase, by outcome. */
export function outcomesOf(ledger: Ledger): Map<string, number> {
  const all = new Map<string, number>();
  for (const p of ledger.phases) for (const [k, v] of p.outcomes) all.set(k, (all.get(k) ?? 0) + v);
  return all;
}

const statusOfKey = (k: string): number => Number(/^(\d{3})/.exec(k)?.[1] ?? 0);

export function serverErrorChecks(ledger: Ledger, shardUnavailableMax: number): CheckResult[] {
  const all = outcomesOf(ledger);
  const fivexx = [...all].filter(([k]) => statusOfKey(k) >= 500);
  const overloaded = all.get('503 overloaded') ?? 0;
  const shardUnavailable = all.get('503 shard_unavailable') ?? 0;
  const other = fivexx.filter(([k]) => k !== '503 overloaded' && k !== '503 shard_unavailable');
  const errors = [...all].filter(([k]) => statusOfKey(k) === 0);
  const cut = ledger.phases.flatMap((p) => p.steps).reduce((a, st) => a + st.cutOff, 0);
  return [
    {
      name: 'no 5xx but 503 overloaded',
      ok: other.length === 0,
      detail: other.length === 0
        ? `${fmt(overloaded)} × 503 overloaded (shed, as designed), no other 5xx`
        : other.map(([k, v]) => `${fmt(v)} × ${k}`).join(', '),
    },
    {
      name: `503 shard_unavailable at most ${fmt(shardUnavailableMax)}`,
      ok: shardUnavailable <= shardUnavailableMax,
      detail: `${fmt(shardUnavailable)} × 503 shard_unavailable (a shard restarting, moving, or not answering in time)`,
    },
    {
      name: 'every request answered',
      ok: errors.length === 0,
      detail: errors.length === 0
        ? `no timeout, no connection error${cut > 0 ? ` (${fmt(cut)} cut off unanswered when a timed step ended, by design)` : ''}`
        : errors.map(([k, v]) => `${fmt(v)} × ${k}`).join(', '),
    },
  ];
}

/** Polls GET /v1/admin/erp until every paid order is delivered, or the time runs out. */
export async function erpCheck(api: Api, token: string | null, withinSeconds: number, signal?: AbortSignal): Promise<{ check: CheckResult; report: Obj | null }> {
  const started = Date.now();
  const name = `ERP backlog drained within ${withinSeconds} s`;
  let last: Obj | null = null;
  let firstBacklog: number | null = null;
  for (;;) {
    const r = await api.tryCall('admin.erp', 'GET', '/v1/admin/erp', { token });
    if (r.status !== 200) {
      return { check: { name, ok: false, detail: `GET /v1/admin/erp answered ${r.status} ${r.code ?? ''}: an operator or viewer token can read it` }, report: null };
    }
    last = r.body as Obj;
    const shards = Array.isArray(last.shards) ? (last.shards as Obj[]) : [];
    const backlog = shards.reduce((n, x) => n + (typeof x.backlogOrders === 'number' ? x.backlogOrders : 0), 0);
    firstBacklog ??= backlog;
    const waited = (Date.now() - started) / 1000;
    if (last.complete === true) {
      return { check: { name, ok: true, detail: `drained in ${waited.toFixed(1)} s (backlog ${fmt(firstBacklog)} events when the load ended)` }, report: last };
    }
    if (waited >= withinSeconds || signal?.aborted) {
      const totals = (last.totals ?? {}) as Obj;
      const noSink = shards.length > 0 && shards.every((x) => x.outboxEnabled === false);
      return {
        check: { name, ok: false, detail: `not drained after ${waited.toFixed(1)} s: ${fmt(backlog)} events in the outboxes, ${String(totals.undeliveredUnits ?? '?')} units undelivered, ${String(totals.notQueuedUnits ?? '?')} not queued${last.shardsAnswered === false ? '; some shard did not answer' : ''}${noSink ? '; the engine hands no order to an ERP (FLASH_ERP_WEBHOOK_URL unset?)' : ''}` },
        report: last,
      };
    }
    await new Promise((res) => setTimeout(res, 250));
  }
}

export interface TargetResult {
  target: Target;
  ok: boolean;
  detail: string;
  measured: { rps: number; latencyMs: LatencyMs | null; steps: string[]; late: number; intended: number };
}

/** The load steps of a phase a target is judged on (follow-up calls such as paying after a sell-out left out). */
function judgedSteps(log: PhaseLog, atRps: number | undefined): StepLog[] {
  const load = log.steps.filter((st) => st.mode !== 'calls');
  const steps = load.length > 0 ? load : log.steps;
  if (atRps === undefined) return steps;
  return steps.filter((st) => st.rps === null || st.rps >= atRps);
}

export function targetCheck(ledger: Ledger, t: Target): TargetResult {
  const log = ledger.phases.find((p) => p.name === t.phase);
  const empty = { rps: 0, latencyMs: null, steps: [], late: 0, intended: 0 };
  if (log === undefined) return { target: t, ok: false, detail: `phase ${t.phase} did not run`, measured: empty };
  const steps = judgedSteps(log, t.atRps);
  if (steps.length === 0) return { target: t, ok: false, detail: `phase ${t.phase} never ran at ${fmt(t.atRps ?? 0)}/s or more`, measured: empty };
  const h = latencyHistogram(3);
  for (const st of steps) h.add(st.hist);
  const answered = steps.reduce((a, st) => a + st.answered, 0);
  const ms = steps.reduce((a, st) => a + activeMs(st), 0);
  const rps = ms > 0 ? (answered * 1000) / ms : 0;
  const late = steps.reduce((a, st) => a + st.late, 0);
  const intended = steps.reduce((a, st) => a + (st.rps === null ? 0 : st.intended ?? 0), 0);
  const lat = latencySummary(h);
  const problems: string[] = [];
  const met: string[] = [];
  if (t.atRps !== undefined) {
    if (rps < t.atRps * 0.95) problems.push(`ran at ${fmt(rps)}/s, short of ${fmt(t.atRps)}/s`);
    else met.push(`${fmt(rps)}/s`);
    if (intended > 0 && late > intended * 0.01) problems.push(`the rate was not held: ${fmt(late)} of ${fmt(intended)} requests sent late (connections waiting on slow answers)`);
  }
  const pct = [['p50Ms', 'p50', 'p50'], ['p99Ms', 'p99', 'p99'], ['p999Ms', 'p99_9', 'p99.9']] as const;
  for (const [key, field, label] of pct) {
    const want = t[key];
    if (want === undefined) continue;
    if (lat === null) {
      problems.push(`no answer to measure ${label} on`);
      continue;
    }
    const got = lat[field];
    if (got > want) problems.push(`${label} ${got} ms > ${want} ms`);
    else met.push(`${label} ${got} ms ≤ ${want} ms`);
  }
  return {
    target: t,
    ok: problems.length === 0,
    detail: problems.length === 0 ? `met: ${met.join(', ')}` : `missed: ${problems.join('; ')}${met.length > 0 ? ` (met: ${met.join(', ')})` : ''}`,
    measured: { rps, latencyMs: lat, steps: steps.map((st) => st.label), late, intended },
  };
}

export function describeTarget(t: Target): string {
  const parts: string[] = [];
  if (t.p50Ms !== undefined) parts.push(`p50 ≤ ${t.p50Ms} ms`);
  if (t.p99Ms !== undefined) parts.push(`p99 ≤ ${t.p99Ms} ms`);
  if (t.p999Ms !== undefined) parts.push(`p99.9 ≤ ${t.p999Ms} ms`);
  return `${t.phase}: ${parts.join(', ')}${t.atRps !== undefined ? `${parts.length > 0 ? ' ' : ''}at ${fmt(t.atRps)}/s` : ''}`;
}

/** Reads the SKUs of the run (a few at a time) with the conservation figures. */
export async function readSkus(api: Api, token: string | null, skus: readonly { sku: string; created: boolean }[], paidUnits: ReadonlyMap<string, number>): Promise<SkuFigures[]> {
  const out: SkuFigures[] = new Array(skus.length);
  let next = 0;
  const worker = async (): Promise<void> => {
    while (next < skus.length) {
      const i = next++;
      const { sku, created } = skus[i]!;
      const r = await api.expect(`GET /v1/skus/${sku}`, 'sku.get', 'GET', `/v1/skus/${seg(sku)}`, { token });
      const v = r.body as { onHand: number; available: number; reserved: number; sold: number };
      const conserved = [v.onHand, v.available, v.reserved, v.sold].every((x) => Number.isInteger(x) && x >= 0) && v.onHand === v.available + v.reserved + v.sold;
      out[i] = { sku, onHand: v.onHand, available: v.available, reserved: v.reserved, sold: v.sold, conserved, created, paidByRun: paidUnits.get(sku) ?? 0 };
    }
  };
  await Promise.all(Array.from({ length: Math.min(16, skus.length) }, worker));
  return out;
}
