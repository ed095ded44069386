// What a rehearsal must show before a drop goes live, each a pass or a fail with the figures:
// every SKU conserved (onHand = available + reserved + sold, from GET /v1/skus/{sku}); no SKU
// the run created oversold, by the run's own count against the scenario's stock (not the
// engine's view: an engine that oversells may well report a consistent view); a sell-out
// granted and sold exactly its stock; every SKU the run created sold exactly the units it paid;
// every flow phase ran its flows in the mix; every phase answered mostly 2xx (a phase of
// refusals is no measurement); no 401 or 403 forbidden (a credential problem); no redirect; no
// 5xx but 503 overloaded (503 shard_unavailable counted on its own line); every request
// answered; the ERP backlog drained in the time the scenario states; and each stated target
// (p50 / p99 / p99.9 of the 2xx answers, at a rate) met.

import { seg } from './flash-client.js';
import type { Api } from './rehearse-http.js';
import { activeMs, type Ledger, type PhaseLog, type StepLog } from './rehearse-load.js';
import type { CreatedSku, Hold, SkuTally } from './rehearse-phases.js';
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
  /** Units this run got held (201s), cancelled, and held or sold at once at most (its own count). */
  heldByRun: number;
  cancelledByRun: number;
  /** The scenario's stock and hold time (SKUs the run created), and the most units this run certainly held or bought at one time (and when: s into the run). */
  scenarioStock: number | null;
  holdSeconds: number | null;
  maxHeldAtOnce: number | null;
  maxHeldAtS: number | null;
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

/**
 * The most units a SKU's holds and sales by this run certainly took at one time, by its own
 * count: a hold from its answer (the engine granted it by then) until its reserve was sent +
 * holdSeconds (it may expire from then on; cancelled ones are not counted), a paid one from its
 * answer on. More than the stock: oversold. Times in ms of the run's clock.
 */
export function heldAtOnce(tally: SkuTally | undefined, open: readonly Hold[], holdSeconds: number): { max: number; atMs: number | null } {
  const events: [number, number][] = [];
  for (const [from, units] of tally?.paidFromMs ?? []) events.push([from, units]);
  for (const h of open) {
    const until = h.sentMs + holdSeconds * 1000;
    if (h.atMs < until) events.push([h.atMs, h.qty], [until, -h.qty]);
  }
  // Ends before starts at the same time: a hold that may have expired is not counted with the next.
  events.sort((a, b) => a[0] - b[0] || a[1] - b[1]);
  let now = 0;
  let max = 0;
  let atMs: number | null = null;
  for (const [t, d] of events) {
    now += d;
    if (now > max) {
      max = now;
      atMs = t;
    }
  }
  return { max, atMs };
}

/** SKUs the run created, against the scenario's stock: onHand equal to it, and never more held or sold at once. */
export function stockCheck(skus: readonly SkuFigures[]): CheckResult | null {
  const mine = skus.filter((x) => x.created && x.scenarioStock !== null);
  if (mine.length === 0) return null;
  const bad: string[] = [];
  for (const x of mine) {
    const problems: string[] = [];
    if (x.onHand !== x.scenarioStock) problems.push(`onHand ${fmt(x.onHand)}, the scenario's stock ${fmt(x.scenarioStock!)}`);
    if (x.maxHeldAtOnce !== null && x.maxHeldAtOnce > x.scenarioStock!) {
      problems.push(`${fmt(x.maxHeldAtOnce)} units held or sold to this run at once (${x.maxHeldAtS === null ? '' : `${x.maxHeldAtS} s into the run, `}holds of ${x.holdSeconds} s) of a stock of ${fmt(x.scenarioStock!)}: oversold`);
    }
    if (problems.length > 0) bad.push(`${x.sku}: ${problems.join('; ')}`);
  }
  const held = mine.reduce((a, x) => a + x.heldByRun, 0);
  return {
    name: 'no SKU oversold (the run\'s own holds and sales against the scenario\'s stock)',
    ok: bad.length === 0,
    detail: bad.length === 0
      ? `${s(mine.length, 'SKU')}: onHand as the scenario put it, ${s(held, 'unit')} held over the run, never more at once than the stock`
      : `${s(bad.length, 'SKU')} of ${mine.length}: ${bad.slice(0, 5).join('; ')}`,
  };
}

export function selloutCheck(log: PhaseLog): CheckResult {
  const e = log.extra as {
    sku: string; stockAtStart: number; soldAtStart: number; reservedAtStart: number; grantedUnits: number; paidUnits: number | null;
    stockProblem: string | null; created: boolean;
    after: { available: number; reserved: number; sold: number };
  };
  const problems: string[] = [];
  if (e.stockProblem !== null) problems.push(e.stockProblem);
  if (e.stockAtStart <= 0) problems.push('no stock at the start: there was nothing to sell out');
  if (e.grantedUnits !== e.stockAtStart) problems.push(`${fmt(e.grantedUnits)} units held for ${fmt(e.stockAtStart)} ${e.created ? 'of the scenario\'s stock' : 'available at the start'}`);
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

const pct = (x: number): string => `${Number.isInteger(Math.round(x * 1000) / 10) ? Math.round(x * 100) : (x * 100).toFixed(1)} %`;

const statusOf = (k: string): number => Number(/^(\d{3})/.exec(k)?.[1] ?? 0);

/** Answers of a phase that are expected refusals, left out of its 2xx share: sold_out where selling out is the point, 503 overloaded (shed, checked apart). */
function expectedRefusal(kind: string, outcome: string): boolean {
  if (outcome === '503 overloaded') return true;
  return (kind === 'sellout' || kind === 'queue') && outcome === '409 sold_out';
}

/** The 2xx share of a phase's answers (expected refusals left out), and its refusals. */
export function okShareOf(log: { kind: string; outcomes: ReadonlyMap<string, number> }): { ok: number; counted: number; share: number | null; refused: number } {
  let ok = 0;
  let counted = 0;
  let refused = 0;
  for (const [k, v] of log.outcomes) {
    const st = statusOf(k);
    if (st === 0) continue;
    if (st >= 200 && st < 300) ok += v;
    else refused += v;
    if (!expectedRefusal(log.kind, k)) counted += v;
  }
  return { ok, counted, share: counted === 0 ? null : ok / counted, refused };
}

/** Every phase got 2xx answers, at least `minShare` of them (a phase of refusals measured nothing). */
export function answersCheck(ledger: Ledger, minShare: number): CheckResult {
  const bad: string[] = [];
  const good: string[] = [];
  for (const p of ledger.phases) {
    const o = okShareOf(p);
    const top = [...p.outcomes].filter(([k]) => !/^2/.test(k)).sort((a, b) => b[1] - a[1]).slice(0, 3).map(([k, v]) => `${k} ${fmt(v)}`).join(', ');
    if (o.ok === 0) bad.push(`${p.name}: no 2xx answer${top === '' ? '' : ` (${top})`}`);
    else if (o.share !== null && o.share < minShare) bad.push(`${p.name}: ${pct(o.share)} 2xx (${top})`);
    else good.push(`${p.name} ${o.share === null ? '-' : pct(o.share)}`);
  }
  return {
    name: `every phase answered 2xx (at least ${pct(minShare)} of its answers; sold_out of a sell-out or queue, and 503 overloaded, left out)`,
    ok: bad.length === 0,
    detail: bad.length === 0 ? `2xx share: ${good.join(', ')}` : bad.join('; '),
  };
}


/** 401, or 403 forbidden (the role may not make the call): a credential of the run is wrong. */
const credentialOutcome = (k: string): boolean => /^401\b/.test(k) || k === '403 forbidden' || k === '403 http_403';

export function credentialsCheck(ledger: Ledger): CheckResult {
  const bad = new Map<string, number>();
  for (const p of ledger.phases) for (const [k, v] of p.outcomes) if (credentialOutcome(k)) bad.set(`${p.name}: ${k}`, (bad.get(`${p.name}: ${k}`) ?? 0) + v);
  return {
    name: 'every credential accepted (no 401, no 403 forbidden)',
    ok: bad.size === 0,
    detail: bad.size === 0
      ? 'none refused'
      : `${[...bad].map(([k, v]) => `${fmt(v)} × ${k}`).join(', ')}: give the right shop, payments or buyer-token secret (FLASH_SHOP_TOKEN, FLASH_PAYMENTS_TOKEN, FLASH_BUYER_TOKEN_SECRET)`,
  };
}

export function redirectCheck(ledger: Ledger): CheckResult {
  const all = outcomesOf(ledger);
  const bad = [...all].filter(([k]) => statusOf(k) >= 300 && statusOf(k) < 400);
  return {
    name: 'answered by the engine itself (no redirect)',
    ok: bad.length === 0,
    detail: bad.length === 0 ? 'no 3xx' : `${bad.map(([k, v]) => `${fmt(v)} × ${k}`).join(', ')}: redirects are not followed; point --url at the engine itself`,
  };
}

/** A flow phase ran its flows: some started, and each fate of the mix came about for at least half the flows given it. */
export function flowsCheck(log: PhaseLog): CheckResult {
  const f = log.extra.flows as {
    planned: number; started: number; assigned: { pay: number; cancel: number; abandon: number }; noHold: number;
    pay: number; payOk: number; cancel: number; cancelOk: number; abandon: number;
  };
  const name = `flows ${log.name}: every started flow finished, in the mix`;
  if (f.started === 0) {
    return { name, ok: false, detail: `no flow started${f.planned === 0 ? ': the steps\' requests (rate x seconds) cannot carry one whole flow (a reserve and its pay or cancel)' : ''}` };
  }
  const done = { pay: f.payOk, cancel: f.cancelOk, abandon: f.abandon };
  const short: string[] = [];
  for (const fate of ['pay', 'cancel', 'abandon'] as const) {
    if (f.assigned[fate] > 0 && done[fate] < f.assigned[fate] * 0.5) short.push(`${fmt(done[fate])} of ${fmt(f.assigned[fate])} flows meant to ${fate} did`);
  }
  const figures = `${fmt(f.started)} flows started${f.planned > 0 ? ` of ${fmt(f.planned)} planned` : ''}: paid ${fmt(f.payOk)}, cancelled ${fmt(f.cancelOk)}, abandoned ${fmt(f.abandon)}, no hold ${fmt(f.noHold)}`;
  return { name, ok: short.length === 0, detail: short.length === 0 ? figures : `${short.join('; ')} (${figures})` };
}

/** Every answer of every phase, by outcome. */
export function outcomesOf(ledger: Ledger): Map<string, number> {
  const all = new Map<string, number>();
  for (const p of ledger.phases) for (const [k, v] of p.outcomes) all.set(k, (all.get(k) ?? 0) + v);
  return all;
}

export function serverErrorChecks(ledger: Ledger, shardUnavailableMax: number): CheckResult[] {
  const all = outcomesOf(ledger);
  const fivexx = [...all].filter(([k]) => statusOf(k) >= 500);
  const overloaded = all.get('503 overloaded') ?? 0;
  const shardUnavailable = all.get('503 shard_unavailable') ?? 0;
  const other = fivexx.filter(([k]) => k !== '503 overloaded' && k !== '503 shard_unavailable');
  const errors = [...all].filter(([k]) => statusOf(k) === 0);
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
  /** latencyMs: of the 2xx answers; refusedShare: the share of answers that were not 2xx. */
  measured: { rps: number; latencyMs: LatencyMs | null; steps: string[]; late: number; intended: number; ok: number; refusedShare: number };
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
  const empty = { rps: 0, latencyMs: null, steps: [], late: 0, intended: 0, ok: 0, refusedShare: 0 };
  if (log === undefined) return { target: t, ok: false, detail: `phase ${t.phase} did not run`, measured: empty };
  const steps = judgedSteps(log, t.atRps);
  if (steps.length === 0) return { target: t, ok: false, detail: `phase ${t.phase} never ran at ${fmt(t.atRps ?? 0)}/s or more`, measured: empty };
  // Latency of the 2xx answers: a refusal is quick and says nothing of how the engine serves.
  const h = latencyHistogram(3);
  for (const st of steps) h.add(st.okHist);
  const answered = steps.reduce((a, st) => a + st.answered, 0);
  const ok = steps.reduce((a, st) => a + st.ok, 0);
  const refusedShare = answered > 0 ? (answered - ok) / answered : 0;
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
  const percentiles = [['p50Ms', 'p50', 'p50'], ['p99Ms', 'p99', 'p99'], ['p999Ms', 'p99_9', 'p99.9']] as const;
  for (const [key, field, label] of percentiles) {
    const want = t[key];
    if (want === undefined) continue;
    if (lat === null) {
      problems.push(`no 2xx answer to measure ${label} on${answered > 0 ? ` (${fmt(answered)} answers, all refused)` : ''}`);
      continue;
    }
    const got = lat[field];
    if (got > want) problems.push(`${label} ${got} ms > ${want} ms`);
    else met.push(`${label} ${got} ms ≤ ${want} ms`);
  }
  const others = new Map<string, number>();
  for (const st of steps) for (const [k, v] of st.outcomes) if (!/^2\d\d$/.test(k)) others.set(k, (others.get(k) ?? 0) + v);
  const refused = ok > 0 && others.size > 0
    ? `; latency of the ${fmt(ok)} 2xx answers, not of ${[...others].sort((a, b) => b[1] - a[1]).slice(0, 3).map(([k, v]) => `${k} ${fmt(v)}`).join(', ')}`
    : '';
  return {
    target: t,
    ok: problems.length === 0,
    detail: problems.length === 0 ? `met: ${met.join(', ')}${refused}` : `missed: ${problems.join('; ')}${met.length > 0 ? ` (met: ${met.join(', ')})` : ''}${refused}`,
    measured: { rps, latencyMs: lat, steps: steps.map((st) => st.label), late, intended, ok, refusedShare },
  };
}

export function describeTarget(t: Target): string {
  const parts: string[] = [];
  if (t.p50Ms !== undefined) parts.push(`p50 ≤ ${t.p50Ms} ms`);
  if (t.p99Ms !== undefined) parts.push(`p99 ≤ ${t.p99Ms} ms`);
  if (t.p999Ms !== undefined) parts.push(`p99.9 ≤ ${t.p999Ms} ms`);
  return `${t.phase}: ${parts.join(', ')}${t.atRps !== undefined ? `${parts.length > 0 ? ' ' : ''}at ${fmt(t.atRps)}/s` : ''}`;
}

/** Reads the SKUs of the run (a few at a time) with the conservation figures and the run's own count beside them. */
export async function readSkus(
  api: Api, token: string | null, skus: readonly { sku: string; created: boolean }[],
  run: { tallies: ReadonlyMap<string, SkuTally>; holds: ReadonlyMap<string, Hold>; created: ReadonlyMap<string, CreatedSku> },
): Promise<SkuFigures[]> {
  const open = new Map<string, Hold[]>();
  for (const h of run.holds.values()) {
    if (!run.created.has(h.sku)) continue;
    let l = open.get(h.sku);
    if (l === undefined) open.set(h.sku, (l = []));
    l.push(h);
  }
  const out: SkuFigures[] = new Array(skus.length);
  let next = 0;
  const worker = async (): Promise<void> => {
    while (next < skus.length) {
      const i = next++;
      const { sku, created } = skus[i]!;
      const r = await api.expect(`GET /v1/skus/${sku}`, 'sku.get', 'GET', `/v1/skus/${seg(sku)}`, { token });
      const v = r.body as { onHand: number; available: number; reserved: number; sold: number };
      const conserved = [v.onHand, v.available, v.reserved, v.sold].every((x) => Number.isInteger(x) && x >= 0) && v.onHand === v.available + v.reserved + v.sold;
      const t = run.tallies.get(sku);
      const spec = created ? run.created.get(sku) : undefined;
      const once = spec === undefined ? null : heldAtOnce(t, open.get(sku) ?? [], spec.holdSeconds);
      out[i] = {
        sku, onHand: v.onHand, available: v.available, reserved: v.reserved, sold: v.sold, conserved, created, paidByRun: t?.paid ?? 0,
        heldByRun: t?.held ?? 0, cancelledByRun: t?.cancelled ?? 0, scenarioStock: spec?.stock ?? null, holdSeconds: spec?.holdSeconds ?? null,
        maxHeldAtOnce: once?.max ?? null, maxHeldAtS: once === null || once.atMs === null ? null : Math.round(once.atMs / 100) / 10,
      };
    }
  };
  await Promise.all(Array.from({ length: Math.min(16, skus.length) }, worker));
  return out;
}
