// The chart of a rehearsal, a standalone SVG drawn by hand (no chart library), on one time
// axis with each phase shaded: answers per second (all, and 2xx) with each step's planned rate
// dashed; p50 / p99 / p99.9 per second on a log scale with the stated targets in red; and each
// phase's answers by outcome (2xx, each refusal code, 503 overloaded, 503 shard_unavailable,
// other 5xx, no answer) as one stacked bar.

import type { RehearsalReport } from './rehearse-report.js';
import { compactNumber, svgLine, svgNum, svgPath, svgRect, svgText } from './report-kit.js';

const W = 1000;
const left = 70;
const right = 24;
const plotW = W - left - right;

const fixedColors: Record<string, string> = {
  '503 overloaded': '#6b7fa3', '503 shard_unavailable': '#8e5bb5', '409 sold_out': '#f2c36b', '429 rate_limited': '#e0a526',
  '403 not_admitted': '#c9a0dc', '409 quota_exceeded': '#d98b5f', timeout: '#7b1e1e', 'connection error': '#5a1616', 'connection closed': '#5a1616',
};
const spare = ['#9cc3e6', '#e6a3a3', '#b5d99c', '#d6c27a', '#a3a3e6', '#8fd1c5', '#e6c3a3', '#c0c0c0'];

/** A stable colour for an outcome: 2xx greens, 4xx warm, 503s blue-grey, other 5xx red, no answer dark red. */
export function outcomeColor(key: string, index: number): string {
  if (fixedColors[key] !== undefined) return fixedColors[key]!;
  if (/^20[01]$/.test(key)) return key === '201' ? '#4caf6a' : '#8fd19e';
  if (/^2\d\d$/.test(key)) return '#b7e4c0';
  if (/^5\d\d/.test(key)) return '#c0392b';
  if (!/^\d/.test(key)) return '#5a1616';
  return spare[index % spare.length]!;
}

/** Outcomes in the order they are stacked: 2xx first, then refusals, then 5xx, then no answer. */
function order(keys: Iterable<string>): string[] {
  const rank = (k: string): number => (/^2/.test(k) ? 0 : /^4/.test(k) ? 1 : k === '503 overloaded' ? 2 : k === '503 shard_unavailable' ? 3 : /^5/.test(k) ? 4 : 5);
  return [...new Set(keys)].sort((a, b) => rank(a) - rank(b) || a.localeCompare(b));
}

function niceMax(v: number): number {
  if (v <= 0) return 1;
  const p = 10 ** Math.floor(Math.log10(v));
  for (const m of [1, 2, 2.5, 5, 10]) if (m * p >= v) return m * p;
  return 10 * p;
}

export function renderRehearsalChart(r: RehearsalReport): string {
  const phases = r.phases;
  const t0 = phases.length === 0 ? 0 : Math.floor(Math.min(...phases.map((p) => p.startS)));
  const t1 = phases.length === 0 ? 1 : Math.max(t0 + 1, Math.ceil(Math.max(...phases.map((p) => p.endS))));
  const x = (t: number): number => left + ((t - t0) / (t1 - t0)) * plotW;
  const out: string[] = [];
  const verdictColor = r.verdict === 'pass' ? '#2e7d32' : '#c62828';
  out.push(svgText(20, 26, `flash rehearse: ${r.scenario.name}`, { size: 16, weight: 'bold' }));
  out.push(svgRect(W - 150, 10, 130, 24, verdictColor, ' rx="4"'), svgText(W - 85, 27, r.verdict === 'pass' ? 'PASSED' : r.verdict === 'interrupted' ? 'INTERRUPTED' : r.verdict === 'unreachable' ? 'STOPPED (exit 3)' : `FAILED (exit ${r.exitCode})`, { size: 12, anchor: 'middle', weight: 'bold', fill: '#fff' }));
  out.push(svgText(20, 44, `${r.target.url} (${r.target.deployment}), ${r.startedAt.replace('T', ' ').slice(0, 19)}Z, run ${r.runId}`, { size: 10, fill: '#555' }));
  const failed = r.checks.filter((c) => !c.ok).map((c) => c.name).concat(r.targets.filter((t) => !t.ok).map((t) => `target ${t.target.phase}`));
  out.push(svgText(20, 58, failed.length === 0 ? `all ${r.checks.length} checks and ${r.targets.length} targets met` : `failed: ${failed.join('; ')}`.slice(0, 170), { size: 10, fill: failed.length === 0 ? '#2e7d32' : '#c62828' }));

  const shade = (top: number, height: number, labels: boolean): void => {
    phases.forEach((p, i) => {
      out.push(svgRect(x(p.startS), top, x(p.endS) - x(p.startS), height, i % 2 === 0 ? '#eef3fa' : '#faf5ec'));
      if (labels) out.push(svgText((x(p.startS) + x(p.endS)) / 2, top + 11, p.name, { size: 10, anchor: 'middle', weight: 'bold', fill: '#445' }));
    });
  };
  const timeAxis = (base: number): void => {
    out.push(svgLine(left, base, left + plotW, base, '#888'));
    const step = niceMax((t1 - t0) / 10);
    for (let t = Math.ceil(t0 / step) * step; t <= t1; t += step) {
      out.push(svgLine(x(t), base, x(t), base + 4, '#888'), svgText(x(t), base + 14, `${Math.round(t)} s`, { size: 9, anchor: 'middle', fill: '#666' }));
    }
  };

  // 1. Throughput, each phase on its own scale (an overload would flatten every other phase).
  {
    const top = 74;
    const h = 170;
    const base = top + h;
    out.push(svgText(left, top - 4, 'answers per second, each phase on its own scale (dashed: planned rate)', { size: 11, weight: 'bold' }));
    shade(top, h, true);
    for (const p of phases) {
      const peak = niceMax(Math.max(1, ...p.series.map((s) => s.perSecond), ...p.steps.map((s) => (s.mode === 'constant rate' ? s.rps ?? 0 : 0))) * 1.05);
      const y = (v: number): number => base - (v / peak) * (h - 34);
      const x0 = x(p.startS);
      const x1 = x(p.endS);
      out.push(svgLine(x0, y(peak), x1, y(peak), '#d5d9e0'), svgLine(x0, y(peak / 2), x1, y(peak / 2), '#e6e9ee'));
      if (x1 - x0 >= 34) out.push(svgText(x0 + 2, y(peak) - 2, `${compactNumber(peak)}/s`, { size: 8, fill: '#777' }));
      for (const s of p.steps) if (s.rps !== null && s.mode === 'constant rate') out.push(svgLine(x(s.startS), y(s.rps), x(s.startS + s.seconds), y(s.rps), '#777', ' stroke-dasharray="5 3"'));
      out.push(svgPath(p.series.map((s) => ({ x: x(s.t + 0.5), y: y(s.perSecond) })), '#1f5fbf'));
      out.push(svgPath(p.series.map((s) => ({ x: x(s.t + 0.5), y: y(s.okPerSecond) })), '#3f8f3a'));
      // A phase shorter than two seconds has one point: a dot.
      if (p.series.length === 1) out.push(`<circle cx="${svgNum(x(p.series[0]!.t + 0.5))}" cy="${svgNum(y(p.series[0]!.perSecond))}" r="2.5" fill="#1f5fbf"/>`);
      if (x1 - x0 >= 50) out.push(svgText((x0 + x1) / 2, base - 4, `mean ${compactNumber(p.achievedRps)}/s`, { size: 9, anchor: 'middle', fill: '#445' }));
    }
    timeAxis(base);
    out.push(svgRect(left + plotW - 170, top - 12, 10, 3, '#1f5fbf'), svgText(left + plotW - 156, top - 8, 'all answers', { size: 9 }));
    out.push(svgRect(left + plotW - 90, top - 12, 10, 3, '#3f8f3a'), svgText(left + plotW - 76, top - 8, '2xx', { size: 9 }));
  }

  // 2. Latency, log scale.
  {
    const top = 290;
    const h = 190;
    const base = top + h;
    const values = phases.flatMap((p) => p.series.flatMap((s) => [s.p50, s.p99, s.p999])).filter((v): v is number => v !== null && v > 0);
    const targets = r.targets.flatMap((t) => [t.target.p50Ms, t.target.p99Ms, t.target.p999Ms]).filter((v): v is number => v !== undefined);
    const lo = 10 ** Math.floor(Math.log10(Math.max(0.001, Math.min(1, ...values, ...targets))));
    const hi = 10 ** Math.ceil(Math.log10(Math.max(10, ...values, ...targets)));
    const y = (v: number): number => base - ((Math.log10(Math.max(v, lo)) - Math.log10(lo)) / (Math.log10(hi) - Math.log10(lo))) * (h - 16);
    out.push(svgText(left, top - 4, 'latency per second, ms, log scale: p50, p99, p99.9 (red: targets)', { size: 11, weight: 'bold' }));
    shade(top, h, false);
    for (let v = lo; v <= hi * 1.001; v *= 10) out.push(svgLine(left, y(v), left + plotW, y(v), '#e3e3e3'), svgText(left - 6, y(v) + 3, compactNumber(v), { size: 9, anchor: 'end', fill: '#666' }));
    const lines: [keyof RehearsalReport['phases'][number]['series'][number], string, string][] = [['p50', '#8fb3e8', 'p50'], ['p99', '#1f5fbf', 'p99'], ['p999', '#0b2d66', 'p99.9']];
    for (const p of phases) {
      for (const [key, color] of lines) {
        out.push(svgPath(p.series.map((s) => (typeof s[key] === 'number' && (s[key] as number) > 0 ? { x: x(s.t + 0.5), y: y(s[key] as number) } : null)), color));
      }
    }
    for (const t of r.targets) {
      const p = phases.find((ph) => ph.name === t.target.phase);
      if (p === undefined) continue;
      for (const [v, label] of [[t.target.p50Ms, 'p50'], [t.target.p99Ms, 'p99'], [t.target.p999Ms, 'p99.9']] as const) {
        if (v === undefined) continue;
        out.push(svgLine(x(p.startS), y(v), x(p.endS), y(v), '#d32f2f', ' stroke-dasharray="4 3"'), svgText(x(p.startS) + 2, y(v) - 3, `${label} target ${v} ms`, { size: 8, fill: '#d32f2f' }));
      }
    }
    timeAxis(base);
    lines.forEach(([, color, label], i) => out.push(svgRect(left + plotW - 210 + i * 60, top - 12, 10, 3, color), svgText(left + plotW - 196 + i * 60, top - 8, label, { size: 9 })));
  }

  // 3. Answers by outcome, one bar per phase.
  const top = 520;
  out.push(svgText(left, top - 4, 'answers by outcome per phase', { size: 11, weight: 'bold' }));
  const keys = order(phases.flatMap((p) => Object.keys(p.outcomes)));
  const rowH = 22;
  const labelW = 110;
  const barX = left + labelW - 60;
  const barW = plotW - labelW - 90;
  phases.forEach((p, i) => {
    const ry = top + 8 + i * rowH;
    const total = Object.values(p.outcomes).reduce((a, b) => a + b, 0);
    out.push(svgText(barX - 6, ry + 14, p.name, { size: 10, anchor: 'end' }));
    let cx = barX;
    for (const k of keys) {
      const n = p.outcomes[k] ?? 0;
      if (n === 0 || total === 0) continue;
      const w = (barW * n) / total;
      out.push(svgRect(cx, ry + 3, w, rowH - 6, outcomeColor(k, keys.indexOf(k))));
      if (w > 46) out.push(svgText(cx + w / 2, ry + 15, compactNumber(n), { size: 9, anchor: 'middle' }));
      cx += w;
    }
    out.push(svgText(barX + barW + 6, ry + 15, `${compactNumber(total)} answers`, { size: 9, fill: '#555' }));
  });
  const legendY = top + 16 + phases.length * rowH;
  let lx = left;
  let ly = legendY;
  keys.forEach((k, i) => {
    const w = 22 + k.length * 6;
    if (lx + w > W - right) {
      lx = left;
      ly += 16;
    }
    out.push(svgRect(lx, ly, 10, 10, outcomeColor(k, i)), svgText(lx + 14, ly + 9, k, { size: 9 }));
    lx += w;
  });
  const height = ly + 24;
  return `<svg xmlns="http://www.w3.org/2000/svg" width="${W}" height="${height}" viewBox="0 0 ${W} ${height}" font-family="Helvetica, Arial, sans-serif">${svgRect(0, 0, W, height, '#fff')}${out.join('')}</svg>\n`;
}
