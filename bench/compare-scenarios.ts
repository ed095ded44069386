// The five scenarios of `npm run bench`, each one run against one freshly started system:
// warm-up on SKUs of its own, the measured autocannon run, then the checks against the
// system's state. A scenario returns figures and a check; it throws only when the system
// could not be driven at all (the caller records that as a failed run).

import type autocannon from 'autocannon';
import { progress, fmt } from './bench-report.js';
import { createSkus, skuOf, skuSums, unitsCheck, withAudit, type Check, type SkuSet } from './compare-checks.js';
import { reserveRequest, runPlan, type LoadPlan, type LoadResult } from './compare-load.js';
import { settings, type ScenarioKey } from './compare-settings.js';
import type { RunningSystem } from './compare-systems.js';
import { paymentsToken, shopToken } from './engine-under-test.js';

export interface ScenarioFigures {
  load: LoadResult;
  /** The figure charted and compared for this scenario, in `headlineUnit`. */
  headline: number;
  headlineUnit: string;
  details: Record<string, unknown>;
  check: CheckDetail;
}

/** A check and what it was computed from. */
export interface CheckDetail extends Check {
  units?: number;
  acked201?: number;
  slack?: number;
  audit?: unknown;
  after?: Record<string, number>;
  created201?: number;
  waitedMs?: number;
}

interface FlowContext {
  fate?: Fate;
  id?: string;
}

const manySet: SkuSet = { ...settings.manySkus };
const flowSet: SkuSet = { ...settings.flow };
const warmSet: SkuSet = { ...settings.warmSkus };

const codeOf = (body: string): string => {
  try {
    return (JSON.parse(body) as { error?: { code?: string } }).error?.code ?? '(no code)';
  } catch {
    return '(not json)';
  }
};

const twoXx = (l: LoadResult): number => Object.entries(l.statuses).filter(([s]) => s.startsWith('2')).reduce((a, [, n]) => a + n, 0);
const slackOf = (l: LoadResult): number => l.connections + l.timeouts + l.errors;

function plan(sys: RunningSystem, title: string, requests: autocannon.Request[], extra: Partial<LoadPlan> = {}): LoadPlan {
  return {
    title, url: sys.url, connections: settings.connections, durationSeconds: settings.seconds,
    timeoutSeconds: settings.timeoutSeconds, requests, pids: sys.pids, ...extra,
  };
}

function describe(sys: RunningSystem, l: LoadResult): string {
  const lat = l.latencyMs;
  return `${sys.key}: ${fmt(l.responsesPerSec)} answers/s (${fmt(l.admittedPerSec)} 2xx/s), p50 ${lat.p50} ms, p99 ${lat.p99} ms, statuses ${JSON.stringify(l.statuses)}, errors ${l.errors}, timeouts ${l.timeouts}`;
}

/** Creates the warm-up SKUs and loads them, so that every measured run meets warm code. */
export async function warmUp(sys: RunningSystem, stateful: boolean): Promise<void> {
  if (stateful) await createSkus(sys, warmSet);
  if (settings.warmUpSeconds === 0) return;
  progress(`${sys.key}: warm-up ${settings.warmUpSeconds} s`);
  await runPlan(plan(sys, 'warm-up', [reserveRequest((n) => skuOf(warmSet, n % warmSet.count), 'w')], { durationSeconds: settings.warmUpSeconds }));
}

/** Scenario 1: reserves spread over 1000 SKUs, a fresh buyer each; every reserve must be granted. */
export async function manySkus(sys: RunningSystem, stateful: boolean): Promise<ScenarioFigures> {
  if (stateful) await createSkus(sys, manySet);
  const load = await runPlan(plan(sys, 'many SKUs', [reserveRequest((n) => skuOf(manySet, n % manySet.count), 'm')]));
  progress(describe(sys, load));
  const check = stateful ? await unitsCheck(sys, manySet, load.statuses['201'] ?? 0, slackOf(load)) : { ok: true, oversold: false, problems: [] };
  return { load, headline: load.admittedPerSec, headlineUnit: 'reserves/s', details: {}, check };
}

/** Scenario 2: 100,000 distinct buyers for 10,000 units, maxPerBuyer 1: exactly 10,000 x 201. */
export async function hotSku(sys: RunningSystem): Promise<ScenarioFigures> {
  const hot = settings.hot;
  const put = await sys.call('PUT', `/v1/skus/${hot.sku}`, { stock: hot.stock, maxPerBuyer: hot.maxPerBuyer });
  if (put.status !== 201) throw new Error(`${sys.key}: PUT ${hot.sku} answered ${put.status}: ${JSON.stringify(put.json)}`);
  const codes: Record<string, number> = {};
  let lastGrantMs = 0;
  const started = performance.now();
  const request = reserveRequest(() => hot.sku, 'h');
  request.onResponse = (status: number, body: string) => {
    if (status === 201) lastGrantMs = performance.now();
    else codes[codeOf(body)] = (codes[codeOf(body)] ?? 0) + 1;
  };
  progress(`${sys.key}: ${fmt(hot.buyers)} buyers for ${fmt(hot.stock)} units of ${hot.sku}`);
  const load = await runPlan(plan(sys, 'hot SKU', [request], { amount: hot.buyers }));
  const sellOutSeconds = lastGrantMs === 0 ? null : (lastGrantMs - started) / 1000;
  progress(`${describe(sys, load)}; sold out after ${sellOutSeconds === null ? '-' : fmt(sellOutSeconds, 2)} s`);
  const { json: v } = await sys.call('GET', `/v1/skus/${hot.sku}`);
  const after = { onHand: v.onHand as number, reserved: v.reserved as number, sold: v.sold as number, available: v.available as number };
  const created = load.statuses['201'] ?? 0;
  const problems: string[] = [];
  if (created !== hot.stock) problems.push(`${created} reserve calls got 201, expected exactly ${hot.stock}`);
  if (after.reserved + after.sold !== hot.stock) problems.push(`after the run reserved ${after.reserved} + sold ${after.sold} != stock ${hot.stock}`);
  if (after.available !== 0) problems.push(`available is ${after.available} after the sell-out, expected 0`);
  if (load.responses !== hot.buyers) problems.push(`${load.responses} answers for ${hot.buyers} requests`);
  const others = Object.entries(codes).filter(([c]) => c !== 'sold_out');
  if (others.length > 0) problems.push(`refusals other than sold_out: ${JSON.stringify(Object.fromEntries(others))}`);
  const oversold = created > hot.stock || after.reserved + after.sold > after.onHand || after.available < 0;
  const check = await withAudit(sys, { ok: problems.length === 0 && !oversold, oversold, problems }, hot.sku);
  const records = check.audit?.focus;
  if (records !== undefined && records.heldUnits + records.paidUnits !== created) {
    check.ok = false;
    check.oversold ||= records.heldUnits + records.paidUnits > hot.stock;
    check.problems.push(`the store's records of ${hot.sku} hold ${records.heldUnits + records.paidUnits} units for ${created} acknowledged reserves`);
  }
  return {
    load, headline: load.responsesPerSec, headlineUnit: 'answers/s',
    details: { created201: created, refusals: codes, after, sellOutSeconds, grantsPerSecUntilSoldOut: sellOutSeconds === null ? null : created / sellOutSeconds },
    check: { ...check, created201: created, after },
  };
}

type Fate = 'pay' | 'cancel' | 'abandon';

interface FlowTally {
  reserve: Record<string, number>;
  pay: Record<string, number>;
  cancel: Record<string, number>;
  abandoned: number;
}

const bump = (m: Record<string, number>, k: number): void => void (m[k] = (m[k] ?? 0) + 1);

/** Reserve, then (by a run-wide counter) pay 60 %, cancel 20 % or abandon 20 % of the holds. */
function flowRequests(tally: FlowTally): autocannon.Request[] {
  let n = 0;
  const fateOf = (i: number): Fate => (i % 100 < settings.flow.payPct ? 'pay' : i % 100 < settings.flow.payPct + settings.flow.cancelPct ? 'cancel' : 'abandon');
  const headers = { 'content-type': 'application/json', authorization: `Bearer ${shopToken}` };
  const payHeaders = { 'content-type': 'application/json', authorization: `Bearer ${paymentsToken}` };
  let buyer = 0;
  return [
    {
      method: 'POST', path: '/v1/reservations', headers,
      setupRequest: (req, context) => {
        const ctx = context as FlowContext;
        const i = n++;
        ctx.fate = fateOf((i * 37) % 100);
        ctx.id = undefined;
        return { ...req, body: `{"sku":"${skuOf(flowSet, i % flowSet.count)}","buyerId":"f${(buyer++).toString(36)}","qty":1}` };
      },
      onResponse: (status, body, context) => {
        const ctx = context as FlowContext;
        bump(tally.reserve, status);
        if (status !== 201) return;
        if (ctx.fate === 'abandon') tally.abandoned++;
        else ctx.id = (JSON.parse(body) as { reservationId: string }).reservationId;
      },
    },
    {
      method: 'POST', path: '/', headers,
      // No id (refused or abandoned): autocannon skips this step and starts the next flow.
      setupRequest: ((req: autocannon.Request, ctx: Record<string, unknown>) => (ctx.id === undefined ? null : {
        ...req, path: `/v1/reservations/${String(ctx.id)}/${String(ctx.fate)}`, body: ctx.fate === 'pay' ? `{"paymentRef":"pay-${String(ctx.id)}"}` : '{}',
        headers: ctx.fate === 'pay' ? payHeaders : headers,
      })) as unknown as autocannon.Request['setupRequest'],
      onResponse: (status, _body, ctx) => bump((ctx as FlowContext).fate === 'pay' ? tally.pay : tally.cancel, status),
    },
  ];
}

/** Scenario 3: full flows with holds of a few seconds; afterwards every abandoned hold must have come back. */
export async function fullFlow(sys: RunningSystem): Promise<ScenarioFigures> {
  await createSkus(sys, flowSet);
  const tally: FlowTally = { reserve: {}, pay: {}, cancel: {}, abandoned: 0 };
  const load = await runPlan(plan(sys, 'full flow', flowRequests(tally)));
  const paid = tally.pay['200'] ?? 0;
  const cancelled = tally.cancel['200'] ?? 0;
  const flows = paid + cancelled + tally.abandoned;
  const flowsPerSec = flows / load.seconds;
  progress(`${sys.key}: ${fmt(flowsPerSec)} flows/s (paid ${paid}, cancelled ${cancelled}, abandoned ${tally.abandoned}); reserve ${JSON.stringify(tally.reserve)}, pay ${JSON.stringify(tally.pay)}, cancel ${JSON.stringify(tally.cancel)}`);
  const waitMs = settings.flow.holdSeconds * 1000 + 2500;
  progress(`${sys.key}: waiting ${fmt(waitMs / 1000, 1)} s for the abandoned holds to expire`);
  await new Promise((r) => setTimeout(r, waitMs));
  const sums = await skuSums(sys, flowSet);
  const slack = slackOf(load);
  const problems: string[] = sums.broken.map((b) => `counters break the contract: ${b}`);
  if (sums.reserved !== 0) problems.push(`${sums.reserved} units still reserved ${fmt(waitMs / 1000, 1)} s after the run: expired holds did not all come back`);
  if (sums.sold < paid) problems.push(`sold ${sums.sold} < ${paid} acknowledged payments`);
  if (sums.sold > paid + slack) problems.push(`sold ${sums.sold} > ${paid} acknowledged payments (+${slack} in flight at most)`);
  const check = await withAudit(sys, { ok: problems.length === 0, oversold: sums.broken.length > 0, problems });
  return {
    load, headline: flowsPerSec, headlineUnit: 'flows/s',
    details: { flows, paid, cancelled, abandoned: tally.abandoned, reserveStatuses: tally.reserve, payStatuses: tally.pay, cancelStatuses: tally.cancel },
    check: { ...check, after: { reserved: sums.reserved, sold: sums.sold, onHand: sums.onHand }, waitedMs: waitMs },
  };
}

/** Scenario 1's 2xx/s for this system, or (when 1 did not run) a short closed-loop measurement now. */
async function capacityOf(sys: RunningSystem, known: number | undefined): Promise<{ capacity: number; calibration: LoadResult | null }> {
  if (known !== undefined && known > 0) return { capacity: known, calibration: null };
  const seconds = Math.min(3, settings.seconds);
  progress(`${sys.key}: no capacity from scenario 1 in this run; measuring ${seconds} s closed-loop`);
  const calibration = await runPlan(plan(sys, 'calibration', [reserveRequest((n) => skuOf(manySet, n % manySet.count), 'c')], { durationSeconds: seconds }));
  return { capacity: calibration.admittedPerSec, calibration };
}

/** Scenarios 4 and 5: many SKUs at a fixed share of capacity (overallRate), latency from our histograms. */
export async function atRate(sys: RunningSystem, stateful: boolean, scenario: ScenarioKey, known: number | undefined): Promise<ScenarioFigures> {
  if (stateful) await createSkus(sys, manySet);
  const { capacity, calibration } = await capacityOf(sys, known);
  const overload = scenario === 'overload';
  const rate = Math.max(1, Math.round(capacity * (overload ? settings.overloadShare : settings.fixedRateShare)));
  const connections = overload ? settings.overloadConnections : settings.connections;
  progress(`${sys.key}: ${fmt(rate)} requests/s offered (${overload ? settings.overloadShare : settings.fixedRateShare} x ${fmt(capacity)}), ${connections} connections`);
  const load = await runPlan(plan(sys, scenario, [reserveRequest((n) => skuOf(manySet, n % manySet.count), overload ? 'o' : 'r')], { overallRate: rate, connections }));
  progress(`${describe(sys, load)}; p99.9 ${load.latencyMs.p99_9} ms; peak RSS ${load.rss.peakMiB ?? '-'} MiB`);
  const acked = (load.statuses['201'] ?? 0) + (calibration?.statuses['201'] ?? 0);
  const slack = slackOf(load) + (calibration === null ? 0 : slackOf(calibration));
  const check = stateful ? await unitsCheck(sys, manySet, acked, slack) : { ok: true, oversold: false, problems: [] };
  const s = load.statuses;
  const known2 = ['201', '429', '503'];
  const otherStatuses = Object.entries(s).filter(([k]) => !known2.includes(k)).reduce((a, [, n]) => a + n, 0);
  return {
    load, headline: overload ? load.admittedPerSec : load.responsesPerSec, headlineUnit: overload ? '2xx/s' : 'answers/s',
    details: {
      capacity, capacityFrom: calibration === null ? 'scenario 1' : 'calibration run', offeredRate: rate, connections,
      created201: s['201'] ?? 0, rateLimited429: s['429'] ?? 0, shed503: s['503'] ?? 0, otherStatuses,
      twoXx: twoXx(load), calibration,
    },
    check,
  };
}
