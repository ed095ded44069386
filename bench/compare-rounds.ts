// Rounds of `npm run bench`: every system runs every scenario once per round, each round
// in another order, so that a noisy stretch of a shared machine falls on the systems alike
// rather than on whichever ran during it; the report then gives the median of each figure
// over the rounds. The medians of one row may come from different rounds, so a row is a
// set of typical figures, not one run.

import { median } from './bench-report.js';
import type { MedianRun, RunRecord } from './compare-report.js';
import type { CheckDetail, ScenarioFigures } from './compare-scenarios.js';

/** Round r (1-based) starts r - 1 places further along, so each system takes each place in turn. */
export function roundOrder<T>(keys: readonly T[], round: number): T[] {
  const shift = (round - 1) % Math.max(1, keys.length);
  return [...keys.slice(shift), ...keys.slice(0, shift)];
}


/**
 * The median of the numbers found at the same place in each value (null and undefined
 * skipped), recursing through objects; any other leaf is taken from the first value.
 */
export function deepMedian(values: unknown[]): unknown {
  const present = values.filter((v) => v !== undefined && v !== null);
  if (present.length === 0) return values[0];
  if (present.every((v) => typeof v === 'number')) return median(present as number[]);
  if (!present.every((v) => typeof v === 'object' && !Array.isArray(v))) return present[0];
  const out: Record<string, unknown> = {};
  for (const key of new Set(present.flatMap((v) => Object.keys(v as object)))) {
    const column = present.map((v) => (v as Record<string, unknown>)[key]);
    // A count missing from one round's map (a status that round never got) is a zero there.
    const counts = column.every((x) => x === undefined || typeof x === 'number');
    out[key] = deepMedian(counts ? column.map((x) => x ?? 0) : column);
  }
  return out;
}

/** Passed only if every round passed; a breach or a failure in any round is kept, named by its round. */
function combinedCheck(rounds: RunRecord[]): CheckDetail {
  const withFigures = rounds.filter((r) => r.figures !== null);
  const median = deepMedian(withFigures.map((r) => r.figures!.check)) as CheckDetail;
  const problems = rounds.flatMap((r) => [
    ...(r.failed === null ? [] : [`round ${r.round}: failed: ${r.failed}`]),
    ...(r.figures?.check.problems ?? []).map((p) => `round ${r.round}: ${p}`),
  ]);
  return {
    ...median, problems,
    ok: rounds.every((r) => r.failed === null && (r.figures === null || r.figures.check.ok)),
    oversold: withFigures.some((r) => r.figures!.check.oversold),
  };
}

/** One record per scenario and system, in the order first run, with each figure's median over the rounds. */
export function medianRuns(runs: RunRecord[]): MedianRun[] {
  const groups = new Map<string, RunRecord[]>();
  for (const r of runs) {
    const k = `${r.scenario}\u0000${r.system}`;
    groups.set(k, [...(groups.get(k) ?? []), r]);
  }
  return [...groups.values()].map((rounds) => {
    const first = rounds[0]!;
    const measured = rounds.filter((r) => r.figures !== null);
    const failed = rounds.filter((r) => r.failed !== null).map((r) => `round ${r.round}: ${r.failed}`);
    const figures = measured.length === 0 ? null : { ...(deepMedian(measured.map((r) => r.figures)) as ScenarioFigures), check: combinedCheck(rounds) };
    return {
      scenario: first.scenario, system: first.system, label: first.label,
      skipped: rounds.every((r) => r.skipped !== null) ? first.skipped : null,
      failed: failed.length === 0 ? null : failed.join('; '),
      settings: measured[0]?.settings ?? first.settings,
      roundsMeasured: measured.length,
      machineBusyBeforePct: rounds.map((r) => r.machineBusyBeforePct),
      figures,
    };
  });
}
