// `npm run bench` (through run-all): the engine against what a team would otherwise build,
// in one run on one machine. Every scenario runs against every system, one after the
// other, each on a fresh process and namespace with the same autocannon settings, in
// BENCH_ROUNDS rounds that each take the systems in another order (compare-rounds.ts);
// then every figure's median over the rounds is taken, the goals are computed from ratios
// of those medians, and a markdown report, a JSON file (with every round's figures) and an
// SVG chart are written under bench/results/ (and as latest.*). Progress goes to stderr,
// the JSON to stdout. It exits 1 when a system oversold, a check failed, or a run broke off.

import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { cpuBusyPct, machineLine, progress, resultsDir, runInfo } from './bench-report.js';
import { goals, markdown, twoPlaces, type RunRecord } from './compare-report.js';
import { medianRuns, roundOrder } from './compare-rounds.js';
import { atRate, fullFlow, hotSku, manySkus, warmUp, type ScenarioFigures } from './compare-scenarios.js';
import { scenarioTitles, settings, type ScenarioKey, type SystemKey } from './compare-settings.js';
import { newRunId, systems, type RunningSystem, type SystemSpec } from './compare-systems.js';
import { renderChart } from './svg-chart.js';

interface RunContext {
  tmp: string;
  runId: string;
  unavailable: Map<SystemKey, string | null>;
  /** Scenario 1's 2xx/s per system in this round: the capacity that scenarios 4 and 5 take shares of. */
  capacity: Map<SystemKey, number>;
}

/** The system running now, so that an interrupt can still stop it and drop its namespace. */
let current: RunningSystem | null = null;

function scenarioOf(sys: RunningSystem, spec: SystemSpec, scenario: ScenarioKey, ctx: RunContext): Promise<ScenarioFigures> {
  switch (scenario) {
    case 'many-skus': return manySkus(sys, spec.stateful);
    case 'hot-sku': return hotSku(sys);
    case 'full-flow': return fullFlow(sys);
    default: return atRate(sys, spec.stateful, scenario, ctx.capacity.get(spec.key));
  }
}

async function runOne(spec: SystemSpec, scenario: ScenarioKey, round: number, ctx: RunContext): Promise<RunRecord> {
  const base: RunRecord = { round, scenario, system: spec.key, label: spec.label, skipped: null, failed: null, settings: '', machineBusyBeforePct: null, figures: null };
  const why = ctx.unavailable.get(spec.key);
  if (why) return { ...base, skipped: why };
  if (!spec.stateful && (scenario === 'hot-sku' || scenario === 'full-flow')) {
    return { ...base, skipped: 'keeps no stock: nothing to sell out or settle (it is the ceiling of scenarios 1, 4 and 5)' };
  }
  const busy = await cpuBusyPct(500);
  progress(`round ${round}, ${scenarioTitles[scenario]} / ${spec.label}: machine ${busy} % busy before it${busy > 10 ? ' (other processes are running: figures will be low and noisy)' : ''}`);
  let sys: RunningSystem | null = null;
  try {
    // A namespace per round too: a round never meets what an earlier one failed to drop.
    sys = await spec.start({ tmp: ctx.tmp, runId: `${ctx.runId}r${round}`, scenario });
    current = sys;
    await warmUp(sys, spec.stateful);
    const figures = await scenarioOf(sys, spec, scenario, ctx);
    if (scenario === 'many-skus') ctx.capacity.set(spec.key, figures.load.admittedPerSec);
    if (figures.check.oversold) progress(`!!! ${spec.label} OVERSOLD in ${scenarioTitles[scenario]}: ${figures.check.problems.join('; ')}`);
    else if (!figures.check.ok) progress(`${spec.label}: CHECK FAILED in ${scenarioTitles[scenario]}: ${figures.check.problems.join('; ')}`);
    return { ...base, settings: sys.settings, machineBusyBeforePct: busy, figures };
  } catch (e) {
    const message = e instanceof Error ? e.message : String(e);
    progress(`${spec.label}: FAILED in ${scenarioTitles[scenario]}: ${message}`);
    return { ...base, settings: sys?.settings ?? '', machineBusyBeforePct: busy, failed: message };
  } finally {
    current = null;
    if (sys !== null) await sys.stop().catch((e: unknown) => progress(`${spec.label}: stop failed: ${String(e)}`));
  }
}

function writeOutputs(result: object, md: (chart: string) => string, svg: string): string[] {
  mkdirSync(resultsDir, { recursive: true });
  const stamp = new Date().toISOString().replace(/[:.]/g, '-');
  const files: [string, string][] = [
    [`compare-${stamp}.json`, `${JSON.stringify(result, null, 2)}\n`], [`compare-${stamp}.md`, md(`compare-${stamp}.svg`)], [`compare-${stamp}.svg`, svg],
    ['latest.json', `${JSON.stringify(result, null, 2)}\n`], ['latest.md', md('latest.svg')], ['latest.svg', svg],
  ];
  for (const [name, text] of files) writeFileSync(path.join(resultsDir, name), text);
  return files.map(([name]) => path.relative(process.cwd(), path.join(resultsDir, name)));
}

async function probe(): Promise<Map<SystemKey, string | null>> {
  const unavailable = new Map<SystemKey, string | null>();
  for (const key of settings.systems) {
    const why = await systems[key].unavailable();
    unavailable.set(key, why);
    progress(`${systems[key].label}: ${why === null ? 'available' : `SKIPPED: ${why}`}`);
  }
  return unavailable;
}

async function main(): Promise<void> {
  const info = runInfo();
  progress(`bench (comparison) on ${machineLine(info)}`);
  progress(`command: ${info.command}; systems ${settings.systems.join(', ')}; scenarios ${settings.scenarios.join(', ')}; ${settings.rounds} rounds; ${settings.seconds} s per timed run`);
  const tmp = mkdtempSync(path.join(os.tmpdir(), 'flash-bench-compare-'));
  const ctx: RunContext = { tmp, runId: newRunId(), unavailable: await probe(), capacity: new Map() };
  const started = performance.now();
  const runs: RunRecord[] = [];
  try {
    for (let round = 1; round <= settings.rounds; round++) {
      const order = roundOrder(settings.systems, round);
      ctx.capacity.clear();
      for (const scenario of settings.scenarios) {
        progress(`== round ${round} of ${settings.rounds}, ${scenarioTitles[scenario]}: ${order.join(', ')}`);
        for (const key of order) runs.push(await runOne(systems[key], scenario, round, ctx));
      }
    }
  } finally {
    rmSync(tmp, { recursive: true, force: true });
  }
  const medians = medianRuns(runs);
  const gs = goals(medians, runs);
  const oversold = runs.some((r) => r.figures?.check.oversold === true);
  // Goals are figures to compare, printed with met true/false; only broken checks fail the run.
  const ok = !oversold && runs.every((r) => r.failed === null && (r.figures === null || r.figures.check.ok));
  const result = { bench: 'compare', ...info, seconds: Math.round((performance.now() - started) / 1000), settings, goals: gs, ok, oversold, medians, runs };
  const md = (chart: string): string => markdown(info, medians, runs, gs, chart);
  const files = writeOutputs(result, md, renderChart(medians, `${machineLine(info)}; ${settings.seconds} s per timed run; medians of ${settings.rounds} round${settings.rounds === 1 ? '' : 's'}`));
  process.stderr.write(`\n${md('latest.svg')}\nsaved ${files.join(', ')}\n`);
  for (const g of gs) progress(`goal ${g.goal}: median ${twoPlaces(g.value)} (${g.target}) met: ${g.met === null ? 'n/a' : g.met}; per round ${g.perRound.map(twoPlaces).join(' / ')}; ${g.note}`);
  process.stdout.write(`${JSON.stringify(result, null, 2)}\n`);
  if (oversold) progress('!!! OVERSOLD: at least one system sold more than it had; see the report');
  if (!ok) process.exitCode = 1;
}

for (const signal of ['SIGINT', 'SIGTERM'] as const) {
  process.once(signal, () => {
    progress(`${signal}: stopping the system under test and dropping its namespace`);
    void (current?.stop() ?? Promise.resolve()).finally(() => process.exit(130));
  });
}

main().catch((e: unknown) => {
  process.stderr.write(`bench failed: ${e instanceof Error ? e.stack : String(e)}\n`);
  process.exitCode = 1;
});
