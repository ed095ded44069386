// The figures of one `npm run bench` run as goals (ratios between systems, in this run, on
// this machine: of the medians over the rounds, and per round) and markdown tables, one per
// scenario, systems side by side, of the medians. It only formats; every number comes from
// the run records it is given.

import { fmt, machineLine, markdownTable, type RunInfo } from './bench-report.js';
import type { LatencyMs } from './compare-load.js';
import type { ScenarioFigures } from './compare-scenarios.js';
import { scenarioTitles, settings, type ScenarioKey, type SystemKey } from './compare-settings.js';

/** What the tables and the chart show of one scenario on one system. */
export interface SystemRun {
  scenario: ScenarioKey;
  system: SystemKey;
  label: string;
  /** Why this system did not run this scenario (service absent, no state to check, ...). */
  skipped: string | null;
  /** Why the run broke off (the system could not be started or driven). */
  failed: string | null;
  settings: string;
  figures: ScenarioFigures | null;
}

/** One round's run of one scenario on one system. */
export interface RunRecord extends SystemRun {
  round: number;
  machineBusyBeforePct: number | null;
}

/** Every figure the median over the rounds (compare-rounds.ts); the check passed only if it passed in every round. */
export interface MedianRun extends SystemRun {
  roundsMeasured: number;
  machineBusyBeforePct: (number | null)[];
}

export interface Goal {
  goal: string;
  /** From the medians. */
  value: number | null;
  target: string;
  met: boolean | null;
  note: string;
  /** The same figure within each round, for how much it moved. */
  perRound: (number | null)[];
}

type Measured = { value: number; note: string } | { missing: string };

const find = (runs: SystemRun[], scenario: ScenarioKey, system: SystemKey): SystemRun | undefined =>
  runs.find((r) => r.scenario === scenario && r.system === system);

/** Why a figure could not be had from these runs. */
function whyMissing(runs: SystemRun[], scenario: ScenarioKey, systems: SystemKey[]): string {
  const why = systems.map((k) => {
    const r = find(runs, scenario, k);
    return r === undefined ? `${k} not run` : r.skipped ?? r.failed;
  }).filter((x) => x !== null);
  return `not measured: ${why.join('; ') || 'no figure'}`;
}

/** The engine's headline figure over another system's, in one scenario. */
const engineOver = (scenario: ScenarioKey, other: SystemKey) => (runs: SystemRun[]): Measured => {
  const a = find(runs, scenario, 'engine')?.figures;
  const b = find(runs, scenario, other)?.figures;
  if (!a || !b || b.headline <= 0) return { missing: whyMissing(runs, scenario, ['engine', other]) };
  return { value: a.headline / b.headline, note: `${fmt(a.headline)} / ${fmt(b.headline)} ${a.headlineUnit}` };
};

/** The engine's p99 (our histogram) in the fixed-rate scenario, whose rate is half its scenario-1 capacity. */
const engineP99AtHalfPeak = (runs: SystemRun[]): Measured => {
  const f = find(runs, 'fixed-rate', 'engine')?.figures;
  if (!f) return { missing: whyMissing(runs, 'fixed-rate', ['engine']) };
  const d = f.details as { offeredRate: number; capacity: number };
  return { value: f.load.latencyMs.p99, note: `p99 ${ms(f.load.latencyMs.p99)} ms at ${fmt(d.offeredRate)} req/s offered (${settings.fixedRateShare} x ${fmt(d.capacity)} 2xx/s)` };
};

/** Not a goal: the engine over PostgreSQL in grants per second until the hot SKU sold out. */
const sellOutOverPostgres = (runs: SystemRun[]): Measured => {
  const rate = (system: SystemKey): number | null => (find(runs, 'hot-sku', system)?.figures?.details.grantsPerSecUntilSoldOut as number | null | undefined) ?? null;
  const [a, b] = [rate('engine'), rate('postgres')];
  if (a === null || b === null || b <= 0) return { missing: 'not measured' };
  return { value: a / b, note: `${fmt(a)} / ${fmt(b)} grants/s` };
};

function goal(name: string, target: string, meets: ((v: number) => boolean) | null, measure: (runs: SystemRun[]) => Measured, medians: SystemRun[], runs: RunRecord[]): Goal {
  const m = measure(medians);
  const perRound = Array.from({ length: settings.rounds }, (_, i) => {
    const r = measure(runs.filter((x) => x.round === i + 1));
    return 'value' in r ? r.value : null;
  });
  if ('missing' in m) return { goal: name, value: null, target, met: null, note: m.missing, perRound };
  return { goal: name, value: m.value, target, met: meets === null ? null : meets(m.value), note: m.note, perRound };
}

/** The goals, from the medians over the rounds (each also per round); oversell counts every run of every round. */
export function goals(medians: SystemRun[], runs: RunRecord[]): Goal[] {
  const g = settings.goals;
  const atLeast = (min: number) => (v: number): boolean => v >= min;
  const checked = runs.filter((r) => r.figures !== null && r.system !== 'bare');
  const oversold = checked.filter((r) => r.figures!.check.oversold).map((r) => `${r.label} in ${scenarioTitles[r.scenario]}, round ${r.round}`);
  return [
    goal('engine / naive durable server, hot SKU answers/s (scenario 2)', `>= ${g.engineOverNaive}`, atLeast(g.engineOverNaive), engineOver('hot-sku', 'naive'), medians, runs),
    goal('engine / Redis + Lua, hot SKU answers/s (scenario 2)', `>= ${g.engineOverRedis}`, atLeast(g.engineOverRedis), engineOver('hot-sku', 'redis'), medians, runs),
    goal('engine / naive durable server, many SKUs reserves/s (scenario 1)', `>= ${g.engineOverNaive}`, atLeast(g.engineOverNaive), engineOver('many-skus', 'naive'), medians, runs),
    goal('engine / Redis + Lua, many SKUs reserves/s (scenario 1)', `>= ${g.engineOverRedis}`, atLeast(g.engineOverRedis), engineOver('many-skus', 'redis'), medians, runs),
    goal('engine / bare node:http, many SKUs reserves/s (scenario 1)', `>= ${g.engineOverBare}`, atLeast(g.engineOverBare), engineOver('many-skus', 'bare'), medians, runs),
    goal('engine p99 ms at half its peak rate (scenario 4)', `< ${g.engineP99AtHalfPeakMs}`, (v) => v < g.engineP99AtHalfPeakMs, engineP99AtHalfPeak, medians, runs),
    goal('engine / PostgreSQL, hot SKU grants/s until sold out (information, not a goal)', '-', null, sellOutOverPostgres, medians, runs),
    ...(settings.systems.includes('engine-node-http')
      ? [goal('engine / engine with its HTTP lane off, many SKUs reserves/s (information, not a goal)', '-', null, engineOver('many-skus', 'engine-node-http'), medians, runs),
        goal('engine / engine with its HTTP lane off, hot SKU answers/s (information, not a goal)', '-', null, engineOver('hot-sku', 'engine-node-http'), medians, runs)]
      : []),
    {
      goal: 'zero oversell in every run', value: oversold.length, target: '0 runs oversold',
      met: checked.length === 0 ? null : oversold.length === 0,
      note: checked.length === 0 ? 'no stateful run' : oversold.length === 0 ? `${checked.length} runs checked` : `OVERSOLD: ${oversold.join(', ')}`,
      perRound: Array.from({ length: settings.rounds }, (_, i) => checked.filter((r) => r.round === i + 1 && r.figures!.check.oversold).length),
    },
  ];
}

const ms = (x: number | undefined | null): string => (x === undefined || x === null ? '-' : fmt(x, x < 10 ? 2 : 1));
const lat3 = (l: LatencyMs | null): string => (l === null ? '-' : `${ms(l.p50)} / ${ms(l.p99)} / ${ms(l.p99_9)}`);
const statusText = (s: Record<string, number>): string => Object.entries(s).map(([k, n]) => `${k}: ${fmt(n)}`).join(', ');

function checkText(r: SystemRun): string {
  const c = r.figures!.check;
  if (c.oversold) return `**OVERSOLD**: ${c.problems.join('; ')}`;
  return c.ok ? 'ok' : `**FAILED**: ${c.problems.slice(0, 3).join('; ')}`;
}

/** One row per system; skipped and failed ones say why in the first figure's place. */
function rows(runs: SystemRun[], scenario: ScenarioKey, width: number, cells: (r: SystemRun, f: ScenarioFigures) => string[]): string[][] {
  return runs.filter((r) => r.scenario === scenario).map((r) => {
    if (r.figures === null) return [r.label, r.skipped !== null ? `skipped: ${r.skipped}` : `**FAILED**: ${r.failed}`, ...Array<string>(width - 2).fill('')];
    return [r.label, ...cells(r, r.figures)];
  });
}

const tables: Record<ScenarioKey, (runs: SystemRun[]) => string> = {
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
        `${rss.startMiB ?? '-'} -> ${rss.peakMiB ?? '-'}`, r.system === 'engine' || r.system === 'engine-node-http' ? `FLASH_MAILBOX_MAX=${settings.engineOverloadMailboxMax}` : '', checkText(r)];
    }),
  ),
};

function settingsLine(): string {
  const s = settings;
  return `autocannon: ${s.connections} connections (overload: ${s.overloadConnections}), pipelining 1, ${s.seconds} s per timed run, warm-up ${s.warmUpSeconds} s, timeout ${s.timeoutSeconds} s; `
    + `hot SKU: ${fmt(s.hot.stock)} units, ${fmt(s.hot.buyers)} buyers, maxPerBuyer ${s.hot.maxPerBuyer}; flows: pay ${s.flow.payPct} % / cancel ${s.flow.cancelPct} % / abandon ${100 - s.flow.payPct - s.flow.cancelPct} %, holds of ${s.flow.holdSeconds} s; `
    + `fixed rate ${s.fixedRateShare} x and overload ${s.overloadShare} x each system's scenario-1 capacity in the same round`;
}

const pct = (x: number | null): string => (x === null ? '-' : `${x} %`);
/** Ratios and milliseconds to two places; counts (runs oversold) as they are. */
export const twoPlaces = (x: number | null): string => (x === null ? '-' : Number.isInteger(x) ? fmt(x) : fmt(x, 2));

/** The headline figure of every round beside its median, to show how much the machine moved it. */
function perRoundTable(medians: MedianRun[], runs: RunRecord[]): string {
  const rounds = Array.from({ length: settings.rounds }, (_, i) => i + 1);
  return markdownTable(['scenario', 'system', 'unit', ...rounds.map((k) => `round ${k}`), 'median'],
    medians.filter((m) => m.figures !== null).map((m) => {
      const of = (k: number): string => {
        const r = runs.find((x) => x.round === k && x.scenario === m.scenario && x.system === m.system);
        return r?.figures ? fmt(r.figures.headline) : r?.failed !== null && r?.failed !== undefined ? 'failed' : '-';
      };
      return [scenarioTitles[m.scenario], m.label, m.figures!.headlineUnit, ...rounds.map(of), fmt(m.figures!.headline)];
    }));
}

export function markdown(info: RunInfo, medians: MedianRun[], runs: RunRecord[], gs: Goal[], chartFile: string): string {
  const rounds = Array.from({ length: settings.rounds }, (_, i) => `round ${i + 1}`).join(' / ');
  const out: string[] = [
    `# npm run bench: the engine against what you would otherwise build`, '',
    `- machine: ${machineLine(info)}`, `- command: \`${info.command}\`, started ${info.startedAt}`, `- settings: ${settingsLine()}`,
    settings.rounds === 1
      ? '- 1 round (BENCH_ROUNDS=1): every figure below is that round\'s, with no median to smooth the machine\'s noise'
      : `- ${settings.rounds} rounds, each running every system in another order; every figure below is the median over the rounds (per round: the JSON, and the headline table at the end)`, '',
    `![throughput and latency per system and scenario](${chartFile})`, '', '## Goals (ratios of medians in this run, on this machine)', '',
    markdownTable(['goal', 'median', 'target', 'met', rounds, 'from (medians)'],
      gs.map((g) => [g.goal, twoPlaces(g.value), g.target, g.met === null ? 'n/a' : g.met ? 'yes' : '**no**', g.perRound.map(twoPlaces).join(' / '), g.note])),
  ];
  for (const scenario of settings.scenarios) out.push('', `## ${scenarioTitles[scenario]}`, '', tables[scenario](medians));
  out.push('', '## Headline figure per round', '', perRoundTable(medians, runs));
  out.push('', '## Systems as run', '', markdownTable(['scenario', 'system', 'settings', `machine busy before (${rounds})`],
    medians.filter((r) => r.skipped === null).map((r) => [scenarioTitles[r.scenario], r.label, r.settings, r.machineBusyBeforePct.map(pct).join(' / ')])));
  return `${out.join('\n')}\n`;
}
