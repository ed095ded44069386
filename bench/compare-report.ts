// The figures of one `npm run bench` run as goals (ratios between systems, in this run, on
// this machine) and markdown tables, one per scenario, systems side by side. It only
// formats; every number comes from the run records it is given.

import { fmt, machineLine, markdownTable, type RunInfo } from './bench-report.js';
import type { LatencyMs } from './compare-load.js';
import type { ScenarioFigures } from './compare-scenarios.js';
import { scenarioTitles, settings, type ScenarioKey, type SystemKey } from './compare-settings.js';

export interface RunRecord {
  scenario: ScenarioKey;
  system: SystemKey;
  label: string;
  /** Why this system did not run this scenario (service absent, no state to check, ...). */
  skipped: string | null;
  /** Why the run broke off (the system could not be started or driven). */
  failed: string | null;
  settings: string;
  machineBusyBeforePct: number | null;
  figures: ScenarioFigures | null;
}

export interface Goal {
  goal: string;
  value: number | null;
  target: string;
  met: boolean | null;
  note: string;
}

const find = (runs: RunRecord[], scenario: ScenarioKey, system: SystemKey): RunRecord | undefined =>
  runs.find((r) => r.scenario === scenario && r.system === system);

function ratioGoal(runs: RunRecord[], goal: string, scenario: ScenarioKey, other: SystemKey, min: number): Goal {
  const e = find(runs, scenario, 'engine');
  const o = find(runs, scenario, other);
  const a = e?.figures?.headline;
  const b = o?.figures?.headline;
  if (a === undefined || b === undefined || b <= 0) {
    const why = [e, o].map((r, i) => (r === undefined ? `${i === 0 ? 'engine' : other} not run` : r.skipped ?? r.failed)).filter((x) => x !== null && x !== undefined);
    return { goal, value: null, target: `>= ${min}`, met: null, note: `not measured: ${why.join('; ') || 'no figure'}` };
  }
  const value = a / b;
  return { goal, value, target: `>= ${min}`, met: value >= min, note: `${fmt(a)} / ${fmt(b)} ${e!.figures!.headlineUnit}` };
}

/** Not a goal: the same two systems compared on grants per second until the SKU sold out. */
function sellOutInfo(runs: RunRecord[]): Goal {
  const rate = (system: SystemKey): number | null => (find(runs, 'hot-sku', system)?.figures?.details.grantsPerSecUntilSoldOut as number | null | undefined) ?? null;
  const [a, b] = [rate('engine'), rate('postgres')];
  const value = a === null || b === null || b <= 0 ? null : a / b;
  return {
    goal: 'engine / PostgreSQL, hot SKU grants/s until sold out (information, not a goal)', value, target: '-', met: null,
    note: value === null ? 'not measured' : `${fmt(a!)} / ${fmt(b!)} grants/s`,
  };
}

export function goals(runs: RunRecord[]): Goal[] {
  const g = settings.goals;
  const checked = runs.filter((r) => r.figures !== null && r.system !== 'bare');
  const oversold = checked.filter((r) => r.figures!.check.oversold).map((r) => `${r.label} in ${scenarioTitles[r.scenario]}`);
  return [
    ratioGoal(runs, 'engine / bare node:http, scenario 1', 'many-skus', 'bare', g.engineOverBare),
    ratioGoal(runs, 'engine / Redis + Lua, scenario 1', 'many-skus', 'redis', g.engineOverRedis),
    ratioGoal(runs, 'engine / PostgreSQL, hot SKU (scenario 2)', 'hot-sku', 'postgres', g.engineOverPostgresHot),
    sellOutInfo(runs),
    {
      goal: 'zero oversell everywhere', value: oversold.length, target: '0 runs oversold',
      met: checked.length === 0 ? null : oversold.length === 0,
      note: checked.length === 0 ? 'no stateful run' : oversold.length === 0 ? `${checked.length} runs checked` : `OVERSOLD: ${oversold.join(', ')}`,
    },
  ];
}

const ms = (x: number | undefined | null): string => (x === undefined || x === null ? '-' : fmt(x, x < 10 ? 2 : 1));
const lat3 = (l: LatencyMs | null): string => (l === null ? '-' : `${ms(l.p50)} / ${ms(l.p99)} / ${ms(l.p99_9)}`);
const statusText = (s: Record<string, number>): string => Object.entries(s).map(([k, n]) => `${k}: ${fmt(n)}`).join(', ');

function checkText(r: RunRecord): string {
  const c = r.figures!.check;
  if (c.oversold) return `**OVERSOLD**: ${c.problems.join('; ')}`;
  return c.ok ? 'ok' : `**FAILED**: ${c.problems.slice(0, 3).join('; ')}`;
}

/** One row per system; skipped and failed ones say why in the first figure's place. */
function rows(runs: RunRecord[], scenario: ScenarioKey, width: number, cells: (r: RunRecord, f: ScenarioFigures) => string[]): string[][] {
  return runs.filter((r) => r.scenario === scenario).map((r) => {
    if (r.figures === null) return [r.label, r.skipped !== null ? `skipped: ${r.skipped}` : `**FAILED**: ${r.failed}`, ...Array<string>(width - 2).fill('')];
    return [r.label, ...cells(r, r.figures)];
  });
}

const tables: Record<ScenarioKey, (runs: RunRecord[]) => string> = {
  'many-skus': (runs) => markdownTable(
    ['system', 'reserves/s (2xx)', 'p50 / p99 / p99.9 ms', 'statuses', 'errors / timeouts', 'check'],
    rows(runs, 'many-skus', 6, (r, f) => [fmt(f.headline), lat3(f.load.latencyMs), statusText(f.load.statuses), `${f.load.errors} / ${f.load.timeouts}`, checkText(r)]),
  ),
  'hot-sku': (runs) => markdownTable(
    ['system', 'answers/s', 'sold out after s (grants/s)', '201', 'refusals', 'after: onHand / reserved / sold / available', 'p99 ms', 'check'],
    rows(runs, 'hot-sku', 8, (r, f) => {
      const d = f.details as { created201: number; refusals: Record<string, number>; sellOutSeconds: number | null; grantsPerSecUntilSoldOut: number | null; after: Record<string, number> };
      const a = d.after;
      return [fmt(f.headline), d.sellOutSeconds === null ? '-' : `${fmt(d.sellOutSeconds, 2)} (${fmt(d.grantsPerSecUntilSoldOut ?? 0)})`, fmt(d.created201), statusText(d.refusals),
        `${a.onHand} / ${a.reserved} / ${a.sold} / ${a.available}`, ms(f.load.latencyMs.p99), checkText(r)];
    }),
  ),
  'full-flow': (runs) => markdownTable(
    ['system', 'flows/s', 'paid / cancelled / abandoned', 'answers/s', 'p50 / p99 / p99.9 ms', 'after the holds expired: reserved / sold', 'check'],
    rows(runs, 'full-flow', 7, (r, f) => {
      const d = f.details as { paid: number; cancelled: number; abandoned: number };
      const a = f.check.after ?? { reserved: NaN, sold: NaN };
      return [fmt(f.headline), `${fmt(d.paid)} / ${fmt(d.cancelled)} / ${fmt(d.abandoned)}`, fmt(f.load.responsesPerSec), lat3(f.load.latencyMs), `${fmt(a.reserved ?? NaN)} / ${fmt(a.sold ?? NaN)}`, checkText(r)];
    }),
  ),
  'fixed-rate': (runs) => markdownTable(
    ['system', 'capacity (2xx/s)', 'offered req/s', 'answered req/s', 'p50 / p99 / p99.9 ms (ours)', 'p99 ms (autocannon, CO-corrected)', 'statuses', 'check'],
    rows(runs, 'fixed-rate', 8, (r, f) => {
      const d = f.details as { capacity: number; offeredRate: number };
      return [fmt(d.capacity), fmt(d.offeredRate), fmt(f.load.responsesPerSec), lat3(f.load.latencyMs), ms(f.load.autocannonLatencyMs.p99), statusText(f.load.statuses), checkText(r)];
    }),
  ),
  overload: (runs) => markdownTable(
    ['system', 'offered req/s', 'admitted 2xx/s', '201 / 429 / 503 / other', 'errors / timeouts', 'p99 ms admitted (2xx)', 'p99 ms of 503s', 'RSS MiB start -> peak', 'setting', 'check'],
    rows(runs, 'overload', 10, (r, f) => {
      const d = f.details as { offeredRate: number; created201: number; rateLimited429: number; shed503: number; otherStatuses: number };
      const rss = f.load.rss;
      return [fmt(d.offeredRate), fmt(f.headline), `${fmt(d.created201)} / ${fmt(d.rateLimited429)} / ${fmt(d.shed503)} / ${fmt(d.otherStatuses)}`,
        `${f.load.errors} / ${f.load.timeouts}`, ms(f.load.latency2xxMs?.p99), ms(f.load.latency503Ms?.p99),
        `${rss.startMiB ?? '-'} -> ${rss.peakMiB ?? '-'}`, r.system === 'engine' ? `FLASH_MAILBOX_MAX=${settings.engineOverloadMailboxMax}` : '', checkText(r)];
    }),
  ),
};

function settingsLine(): string {
  const s = settings;
  return `autocannon: ${s.connections} connections (overload: ${s.overloadConnections}), pipelining 1, ${s.seconds} s per timed run, warm-up ${s.warmUpSeconds} s, timeout ${s.timeoutSeconds} s; `
    + `hot SKU: ${fmt(s.hot.stock)} units, ${fmt(s.hot.buyers)} buyers, maxPerBuyer ${s.hot.maxPerBuyer}; flows: pay ${s.flow.payPct} % / cancel ${s.flow.cancelPct} % / abandon ${100 - s.flow.payPct - s.flow.cancelPct} %, holds of ${s.flow.holdSeconds} s; `
    + `fixed rate ${s.fixedRateShare} x and overload ${s.overloadShare} x each system's scenario-1 capacity`;
}

export function markdown(info: RunInfo, runs: RunRecord[], gs: Goal[], chartFile: string): string {
  const out: string[] = [
    `# npm run bench: the engine against what you would otherwise build`, '',
    `- machine: ${machineLine(info)}`, `- command: \`${info.command}\`, started ${info.startedAt}`, `- settings: ${settingsLine()}`, '',
    `![throughput and latency per system and scenario](${chartFile})`, '', '## Goals (ratios in this run, on this machine)', '',
    markdownTable(['goal', 'value', 'target', 'met', 'from'], gs.map((g) => [g.goal, g.value === null ? '-' : fmt(g.value, 2), g.target, g.met === null ? 'n/a' : String(g.met), g.note])),
  ];
  for (const scenario of settings.scenarios) out.push('', `## ${scenarioTitles[scenario]}`, '', tables[scenario](runs));
  out.push('', '## Systems as run', '', markdownTable(['scenario', 'system', 'settings', 'machine busy before'],
    runs.filter((r) => r.skipped === null).map((r) => [scenarioTitles[r.scenario], r.label, r.settings, r.machineBusyBeforePct === null ? '-' : `${r.machineBusyBeforePct} %`])));
  return `${out.join('\n')}\n`;
}
