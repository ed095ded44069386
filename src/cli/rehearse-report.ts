// The report of a rehearsal: one JSON document with every figure (report.json), the page a
// person reads (report.md, with the chart), and the chart itself (chart.svg, rehearse-chart.ts).

import { mkdirSync, writeFileSync } from 'node:fs';
import * as os from 'node:os';
import { join } from 'node:path';
import type { CheckResult, SkuFigures, TargetResult } from './rehearse-checks.js';
import { describeTarget, okShareOf } from './rehearse-checks.js';
import type { EngineCounters } from './rehearse-http.js';
import { bucketQuantileMs, counterDelta } from './rehearse-http.js';
import { activeMs, type Ledger, type PhaseLog } from './rehearse-load.js';
import { fmt, latencySummary, markdownTable, type LatencyMs } from './report-kit.js';

type Obj = Record<string, unknown>;

export interface StepReport {
  label: string;
  mode: string;
  rps: number | null;
  connections: number;
  startS: number;
  seconds: number;
  intended: number | null;
  sent: number;
  answered: number;
  late: number;
  cutOff: number;
  errors: number;
  achievedRps: number;
  latencyMs: LatencyMs | null;
  /** Latency of the 2xx answers alone (what targets are judged on). */
  okLatencyMs: LatencyMs | null;
  outcomes: Record<string, number>;
}

export interface SecondReport {
  /** Seconds since the run started. */
  t: number;
  answers: number;
  ok: number;
  /** Answers (and 2xx) per second over the part of this second the phase ran (its first and last are partial). */
  perSecond: number;
  okPerSecond: number;
  p50: number | null;
  p99: number | null;
  p999: number | null;
  outcomes: Record<string, number>;
}

export interface PhaseReport {
  name: string;
  kind: string;
  description: string;
  startS: number;
  endS: number;
  answers: number;
  achievedRps: number;
  latencyMs: LatencyMs | null;
  okLatencyMs: LatencyMs | null;
  /** 2xx answers, and their share of the answers (sold_out of a sell-out or queue, and 503 overloaded, left out); null: none to count. */
  ok: number;
  okShare: number | null;
  outcomes: Record<string, number>;
  routes: Record<string, Record<string, number>>;
  steps: StepReport[];
  series: SecondReport[];
  extra: Obj;
  notes: string[];
}

export interface EngineComparison {
  role: string | null;
  version: string | null;
  rows: { route: string; status: number; rehearsal: number; engine: number }[];
  refusals: { code: string; rehearsal: number; engine: number }[];
  /** Upper bounds (ms) of the buckets holding the engine's reserve p50 and p99 over the run. */
  reserveBucketMs: { p50: number | null; p99: number | null; count: number };
  note: string;
}

export interface RehearsalReport {
  tool: 'flash rehearse';
  version: 1;
  scenario: { file: string; name: string };
  target: { url: string; deployment: string };
  runId: string;
  prefix: string;
  startedAt: string;
  finishedAt: string;
  seconds: number;
  machine: string;
  /** unreachable: the engine stopped answering mid-run (exit 3); the report holds what the run got. */
  verdict: 'pass' | 'fail' | 'interrupted' | 'unreachable';
  exitCode: number;
  checks: CheckResult[];
  targets: TargetResult[];
  phases: PhaseReport[];
  skus: SkuFigures[];
  /** What this run sent and got answered, by route and status (setup, load, checks, cleanup). */
  requests: Record<string, Record<string, number>>;
  unanswered: Record<string, number>;
  engine: EngineComparison | null;
  erp: Obj | null;
  cleanup: Obj | null;
}

const obj = <V>(m: ReadonlyMap<string | number, V>): Record<string, V> => Object.fromEntries([...m].map(([k, v]) => [String(k), v]));
const round = (n: number, d = 1): number => Math.round(n * 10 ** d) / 10 ** d;

function phaseReport(p: PhaseLog): PhaseReport {
  const secs = [...p.seconds.keys()].sort((a, b) => a - b);
  const series = secs.map((t): SecondReport => {
    const b = p.seconds.get(t)!;
    const l = latencySummary(b.hist);
    const covered = Math.max(0.05, Math.min(t + 1, p.endMs / 1000) - Math.max(t, p.startMs / 1000));
    return {
      t, answers: b.answers, ok: b.ok, perSecond: round(b.answers / covered), okPerSecond: round(b.ok / covered),
      p50: l?.p50 ?? null, p99: l?.p99 ?? null, p999: l?.p99_9 ?? null, outcomes: obj(b.outcomes),
    };
  });
  const steps = p.steps.map((s): StepReport => {
    const seconds = Math.max(0, (s.endMs - s.startMs) / 1000);
    const active = activeMs(s) / 1000;
    return {
      label: s.label, mode: s.mode, rps: s.rps, connections: s.connections, startS: round(s.startMs / 1000, 3), seconds: round(seconds, 3),
      intended: s.intended, sent: s.sent, answered: s.answered, late: s.late, cutOff: s.cutOff, errors: s.errors,
      achievedRps: active > 0 ? round(s.answered / active) : 0, latencyMs: latencySummary(s.hist), okLatencyMs: latencySummary(s.okHist), outcomes: obj(s.outcomes),
    };
  });
  const answers = steps.reduce((a, s) => a + s.answered, 0);
  // The phase's rate is over its steps' own time (without the reads between steps).
  const seconds = p.steps.reduce((a, s) => a + activeMs(s), 0) / 1000;
  const routes: Record<string, Record<string, number>> = {};
  for (const [route, statuses] of p.routes) routes[route] = obj(statuses);
  const share = okShareOf(p);
  return {
    name: p.name, kind: p.kind, description: p.description, startS: round(p.startMs / 1000, 3), endS: round(p.endMs / 1000, 3), answers,
    achievedRps: seconds > 0 ? round(answers / seconds) : 0, latencyMs: latencySummary(p.hist), okLatencyMs: latencySummary(p.okHist),
    ok: share.ok, okShare: share.share === null ? null : round(share.share, 4), outcomes: obj(p.outcomes), routes, steps, series,
    extra: p.extra, notes: p.notes,
  };
}

/** Routes the engine counts that are not part of the comparison (the scrapes and probes themselves). */
const notCompared = new Set(['metrics', 'healthz']);

export function engineComparison(ledger: Ledger, before: EngineCounters | null, after: EngineCounters | null): EngineComparison | null {
  if (before === null || after === null) return null;
  const delta = counterDelta(before, after);
  const keys = new Set<string>();
  for (const [route, m] of ledger.requests) for (const status of m.keys()) keys.add(`${route} ${status}`);
  for (const [route, m] of delta.requests) for (const status of m.keys()) keys.add(`${route} ${status}`);
  const rows = [...keys].map((k) => {
    const [route, status] = k.split(' ') as [string, string];
    return { route, status: Number(status), rehearsal: ledger.requests.get(route)?.get(Number(status)) ?? 0, engine: delta.requests.get(route)?.get(Number(status)) ?? 0 };
  }).filter((r) => !notCompared.has(r.route)).sort((a, b) => a.route.localeCompare(b.route) || a.status - b.status);
  const ours = new Map<string, number>(ledger.refusals);
  for (const p of ledger.phases) {
    for (const [k, v] of p.outcomes) {
      const m = /^4\d\d (\S+)$/.exec(k);
      if (m !== null) ours.set(m[1]!, (ours.get(m[1]!) ?? 0) + v);
    }
  }
  const codes = new Set([...ours.keys(), ...delta.refusals.keys()]);
  const refusals = [...codes].sort().map((code) => ({ code, rehearsal: ours.get(code) ?? 0, engine: delta.refusals.get(code) ?? 0 }));
  const total = delta.reserveBuckets[delta.reserveBuckets.length - 1]?.count ?? 0;
  return {
    role: after.role, version: after.version, rows, refusals,
    reserveBucketMs: { p50: bucketQuantileMs(delta.reserveBuckets, 0.5), p99: bucketQuantileMs(delta.reserveBuckets, 0.99), count: total },
    note: 'the engine counts at the gateway this run talked to, from just before the run to just after it; anything else that called it meanwhile is in its figures too',
  };
}

export function deploymentOf(role: string | null): string {
  if (role === 'all') return 'embedded engine (gateway and shards in one process)';
  if (role === 'gateway') return 'gateway, shards over NATS';
  return role === null ? 'unknown (GET /metrics not readable)' : `role ${role}`;
}

export function machineLine(): string {
  const cpus = os.cpus();
  return `${cpus[0]?.model.trim() ?? 'unknown CPU'}, ${cpus.length} cores, ${fmt(os.totalmem() / 2 ** 30, 1)} GiB, Node ${process.version}, ${os.platform()} ${os.release()}`;
}

export function buildReport(args: Omit<RehearsalReport, 'tool' | 'version' | 'phases' | 'requests' | 'unanswered' | 'seconds' | 'finishedAt'> & { ledger: Ledger }): RehearsalReport {
  const { ledger, ...rest } = args;
  const requests: Record<string, Record<string, number>> = {};
  for (const [route, m] of [...ledger.requests].sort((a, b) => a[0].localeCompare(b[0]))) requests[route] = obj(m);
  return {
    tool: 'flash rehearse', version: 1, ...rest,
    finishedAt: new Date().toISOString(),
    seconds: round(ledger.now() / 1000, 2),
    phases: ledger.phases.map(phaseReport),
    requests,
    unanswered: obj(ledger.unanswered),
  };
}

// ---------------------------------------------------------------------------------------
// Markdown

const ms = (v: number | null | undefined): string => (v === null || v === undefined ? '-' : v === Infinity ? '> max bucket' : v >= 100 ? fmt(v) : v >= 10 ? fmt(v, 1) : fmt(v, 2));
const pf = (ok: boolean): string => (ok ? 'pass' : '**FAIL**');

function refusalsText(outcomes: Record<string, number>): string {
  const r = Object.entries(outcomes).filter(([k]) => !/^2\d\d$/.test(k)).sort((a, b) => b[1] - a[1]);
  return r.length === 0 ? '-' : r.map(([k, v]) => `${k} ${fmt(v)}`).join(', ');
}

const count2xx = (o: Record<string, number>): number => Object.entries(o).filter(([k]) => /^2\d\d$/.test(k)).reduce((a, [, v]) => a + v, 0);

function phaseExtra(p: PhaseReport): string[] {
  const e = p.extra as Obj;
  const out: string[] = [];
  if (p.kind === 'sellout' && e.after !== undefined) {
    const after = e.after as Obj;
    out.push(`Sell-out of \`${String(e.sku)}\`: ${fmt(Number(e.stockAtStart))} units to sell at the start (${e.created === true ? `the scenario's stock less what the run held and paid; the engine showed ${fmt(Number(e.engineAvailableAtStart))} available` : 'the engine\'s view of an existing SKU'}), ${fmt(Number(e.buyers))} buyers; ${fmt(Number(e.grantedUnits))} units held` +
      `${e.paidUnits === null ? '' : `, ${fmt(Number(e.paidUnits))} paid`}; afterwards available ${String(after.available)}, reserved ${String(after.reserved)}, sold ${String(after.sold)}.`);
  }
  if (p.kind === 'flow' && e.flows !== undefined) {
    const f = e.flows as Record<string, number>;
    out.push(`Flows: ${fmt(f.started ?? 0)} started${(f.planned ?? 0) > 0 ? ` of ${fmt(f.planned ?? 0)} planned (each step's rate x seconds requests, whole flows only)` : ''}; ${fmt(f.pay ?? 0)} paid (${fmt(f.payOk ?? 0)} answered 200), ${fmt(f.cancel ?? 0)} cancelled (${fmt(f.cancelOk ?? 0)} answered 200), ${fmt(f.abandon ?? 0)} abandoned (left to expire), ${fmt(f.noHold ?? 0)} got no hold.`);
  }
  if (p.kind === 'queue') {
    const w = e.joinToAdmittedMs as Obj | null;
    out.push(`Queue \`${String(e.drop)}\` (${String(e.mode)}, admitPerSecond ${String(e.admitPerSecond)}): ${fmt(Number(e.joined))} of ${fmt(Number(e.buyers))} joined; ` +
      `end states ${Object.entries(e.states as Obj).map(([k, v]) => `${k} ${String(v)}`).join(', ') || '-'}; reserves ${Object.entries(e.reserves as Obj).map(([k, v]) => `${k} ${String(v)}`).join(', ') || '-'}; ` +
      `${fmt(Number(e.stillWaiting))} still waiting at the end; at most ${String(e.admittedSeenPerSecondMax)} admitted in any second (engine's admittedAt)` +
      `${w === null ? '' : `; join to admission p50 ${ms(Number(w.p50))} ms, p99 ${ms(Number(w.p99))} ms`}.`);
  }
  if (typeof e.capacityPerSecond === 'number') out.push(`Capacity measured by the probe: ${fmt(e.capacityPerSecond)} answers/s.`);
  for (const n of p.notes) out.push(`Note: ${n}.`);
  return out;
}

export function renderMarkdown(r: RehearsalReport, chartFile: string | null): string {
  const lines: string[] = [];
  const verdict = r.verdict === 'pass' ? 'PASSED' : r.verdict === 'interrupted' ? 'INTERRUPTED' : r.verdict === 'unreachable' ? 'STOPPED: the engine stopped answering (a partial report)' : 'FAILED';
  lines.push(`# Drop rehearsal: ${r.scenario.name}: ${verdict}`, '');
  lines.push(`Target ${r.target.url} (${r.target.deployment}); scenario \`${r.scenario.file}\`; run \`${r.runId}\`, names prefixed \`${r.prefix}\`; ` +
    `${r.startedAt.replace('T', ' ').slice(0, 19)}Z, ${fmt(r.seconds, 1)} s; ${r.machine}. Exit status ${r.exitCode}.`, '');
  if (chartFile !== null) lines.push(`![throughput, latency and answers per phase](${chartFile})`, '');
  lines.push('## Checks', '', markdownTable(['', 'check', 'figures'], r.checks.map((c) => [pf(c.ok), c.name, c.detail])), '');
  if (r.targets.length > 0) {
    lines.push('## Targets', '', markdownTable(['', 'target', 'measured', 'detail'], r.targets.map((t) => [
      pf(t.ok), describeTarget(t.target),
      `${fmt(t.measured.rps)}/s; 2xx p50 ${ms(t.measured.latencyMs?.p50)} / p99 ${ms(t.measured.latencyMs?.p99)} / p99.9 ${ms(t.measured.latencyMs?.p99_9)} ms, ${fmt(t.measured.refusedShare * 100, 1)} % not 2xx, over ${t.measured.steps.join(', ') || '-'}`,
      t.detail,
    ])), '');
  }
  lines.push('## Phases', '');
  lines.push('Latency in ms, of every answer (targets are judged on the 2xx answers alone). At a rate each request is sent at its own planned time and measured from it, so a stall counts the wait of every request due during it (coordinated omission corrected, as wrk2 does); a flow\'s pay or cancel, and a step as fast as answered, from when it was sent. The 2xx share leaves out sold_out of a sell-out or queue, and 503 overloaded.', '');
  lines.push(markdownTable(['phase', 'answers', 'per s', '2xx', '2xx share', 'refusals and errors', 'p50', 'p99', 'p99.9', 'max'], r.phases.map((p) => [
    p.name, fmt(p.answers), fmt(p.achievedRps), fmt(count2xx(p.outcomes)), p.okShare === null ? '-' : `${fmt(p.okShare * 100, 1)} %`, refusalsText(p.outcomes),
    ms(p.latencyMs?.p50), ms(p.latencyMs?.p99), ms(p.latencyMs?.p99_9), ms(p.latencyMs?.max),
  ])), '');
  for (const p of r.phases) {
    lines.push(`### ${p.name} (${p.kind})`, '', `${p.description}.`, '');
    lines.push(markdownTable(['step', 'load', 'planned', 'sent', 'answered', 'late', 'per s', 'p50', 'p99', 'p99.9', 'outcomes'], p.steps.map((s) => [
      s.label, s.mode === 'constant rate' ? `${fmt(s.rps ?? 0)}/s, ${s.connections} conn.` : s.mode === 'closed loop' ? `max, ${s.connections} conn.` : `calls, ${s.connections} at once`,
      s.intended === null ? '-' : fmt(s.intended), fmt(s.sent), fmt(s.answered), s.mode === 'constant rate' ? fmt(s.late) : '-', fmt(s.achievedRps),
      ms(s.latencyMs?.p50), ms(s.latencyMs?.p99), ms(s.latencyMs?.p99_9),
      Object.entries(s.outcomes).sort((a, b) => b[1] - a[1]).map(([k, v]) => `${k} ${fmt(v)}`).join(', ') + (s.cutOff > 0 ? `; ${fmt(s.cutOff)} cut off at the end` : ''),
    ])), '');
    const extra = phaseExtra(p);
    if (extra.length > 0) lines.push(...extra, '');
  }
  lines.push('## SKUs', '');
  const shown = r.skus.length <= 30 ? r.skus : [...r.skus.filter((s) => !s.conserved), ...r.skus.filter((s) => s.conserved).slice(0, 10)];
  lines.push(markdownTable(['sku', 'onHand', 'available', 'reserved', 'sold', 'paid by this run', 'conserved'], shown.map((s) => [
    s.sku, fmt(s.onHand), fmt(s.available), fmt(s.reserved), fmt(s.sold), s.created ? fmt(s.paidByRun) : '(existing)', s.conserved ? 'yes' : '**NO**',
  ])));
  if (shown.length < r.skus.length) lines.push('', `(${r.skus.length - shown.length} more SKUs, all conserved, in report.json)`);
  lines.push('');
  if (r.engine !== null) {
    const e = r.engine;
    lines.push('## Beside the engine\'s own counters', '');
    lines.push(`Every call of this run (setup, load, checks, cleanup) against the change of \`flash_http_requests_total\` on the engine (${e.note}).`, '');
    lines.push(markdownTable(['route', 'status', 'answers this run got', 'the engine counted', ''], e.rows.map((x) => [
      x.route, x.status, fmt(x.rehearsal), fmt(x.engine), x.rehearsal === x.engine ? 'same' : x.engine > x.rehearsal ? `engine +${fmt(x.engine - x.rehearsal)}` : `run +${fmt(x.rehearsal - x.engine)}`,
    ])), '');
    if (e.refusals.length > 0) {
      lines.push(`Refusals by code (4xx), every call of this run (the setup's look for the names it creates included) against \`flash_refusals_total\`: ${e.refusals.map((x) => `${x.code} ${fmt(x.rehearsal)} / ${fmt(x.engine)}`).join(', ')}.`, '');
    }
    if (e.reserveBucketMs.count > 0) {
      lines.push(`\`flash_reserve_duration_seconds\` over the run (${fmt(e.reserveBucketMs.count)} reserves, measured inside the engine, so without the network and the client): p50 ≤ ${ms(e.reserveBucketMs.p50)} ms, p99 ≤ ${ms(e.reserveBucketMs.p99)} ms (bucket bounds).`, '');
    }
    const unanswered = Object.entries(r.unanswered);
    if (unanswered.length > 0) lines.push(`Sent without an answer (timeouts, connection errors, cut off at the end of a timed step; the engine may have counted them): ${unanswered.map(([k, v]) => `${k} ${fmt(v)}`).join(', ')}.`, '');
  } else {
    lines.push('## Beside the engine\'s own counters', '', 'GET /metrics could not be read (protected from this host?): no comparison.', '');
  }
  if (r.erp !== null) {
    const t = (r.erp.totals ?? {}) as Obj;
    lines.push('## ERP hand-off', '', `complete: ${String(r.erp.complete)}; sold ${String(t.sold)}, delivered ${String(t.deliveredUnits)}, undelivered ${String(t.undeliveredUnits)}, not queued ${String(t.notQueuedUnits)} units.`, '');
  }
  if (r.cleanup !== null) {
    const c = r.cleanup;
    const n = (k: string): string => fmt(Number(c[k] ?? 0));
    lines.push('## Cleanup', '', `Holds cancelled: ${n('holdsCancelled')} (${n('holdsNotCancelled')} not: already expired, paid or gone). ` +
      `Stock written off: ${n('unitsWrittenOff')} units over ${n('skusZeroed')} SKUs${Number(c.skusNotZeroed) > 0 ? ` (${n('skusNotZeroed')} SKUs could not be zeroed: ${String(c.problems)})` : ''}. ` +
      `Paid units stay sold (${n('unitsLeftSold')}); the SKUs and drops stay, with nothing available.`, '');
  }
  return `${lines.join('\n')}\n`;
}

/** Writes report.json, report.md and chart.svg into `dir`; returns their paths. */
export function writeReport(dir: string, report: RehearsalReport, svg: string): { json: string; md: string; svg: string } {
  mkdirSync(dir, { recursive: true });
  const paths = { json: join(dir, 'report.json'), md: join(dir, 'report.md'), svg: join(dir, 'chart.svg') };
  writeFileSync(paths.svg, svg);
  writeFileSync(paths.json, `${JSON.stringify(report, null, 2)}\n`);
  writeFileSync(paths.md, renderMarkdown(report, 'chart.svg'));
  return paths;
}
