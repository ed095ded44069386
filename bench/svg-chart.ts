// The chart of one `npm run bench` run as a standalone SVG, drawn by hand (no chart
// library): one panel per scenario with a throughput bar per system (each panel on its own
// linear scale, values printed on the bars), the fixed-rate latency percentiles on a log
// scale, and how each system answered the overload. A README can embed the file as is.

import { compactNumber, svgLine, svgRect, svgText } from '../src/cli/report-kit.js';
import type { SystemRun } from './compare-report.js';
import { scenarioKeys, scenarioTitles, systemKeys, type ScenarioKey, type SystemKey } from './compare-settings.js';

const colors: Record<SystemKey, string> = {
  bare: '#9e9e9e', engine: '#1f5fbf', 'engine-node-http': '#7fa6e0', 'engine-nats': '#22a3b8', naive: '#8e5bb5', redis: '#d0452f', postgres: '#3f8f3a',
};
const labels: Record<SystemKey, string> = {
  bare: 'bare node:http', engine: 'engine (embedded)', 'engine-node-http': 'engine, lane off (node:http)', 'engine-nats': 'engine over NATS', naive: 'naive durable server', redis: 'Redis + Lua', postgres: 'PostgreSQL',
};
/** Short enough for a fifth of the width and for the latency panel's axis. */
const panelTitles: Record<ScenarioKey, string> = {
  'many-skus': '1. many SKUs', 'hot-sku': '2. hot SKU sell-out', 'full-flow': '3. full flow',
  'fixed-rate': '4. fixed rate (0.5 x capacity)', overload: '5. overload (2 x capacity)',
};
const shortLabels: Record<SystemKey, string> = {
  bare: 'bare', engine: 'engine', 'engine-node-http': 'engine/node:http', 'engine-nats': 'engine/NATS', naive: 'naive', redis: 'Redis+Lua', postgres: 'PostgreSQL',
};
const outcomeColors = { '2xx': '#6cbf84', '429': '#e0a526', '503': '#6b7fa3', failed: '#c0392b' } as const;

const text = svgText;
const rect = svgRect;
const line = (x1: number, y1: number, x2: number, y2: number, stroke = '#ccc'): string => svgLine(x1, y1, x2, y2, stroke);
/** 12345 -> "12.3k". */
export const compact = compactNumber;

function systemsIn(runs: SystemRun[]): SystemKey[] {
  return systemKeys.filter((k) => runs.some((r) => r.system === k));
}

/** One scenario's throughput: a bar per system on the panel's own scale. */
function throughputPanel(runs: SystemRun[], scenario: ScenarioKey, x: number, y: number, w: number, h: number): string {
  const systems = systemsIn(runs);
  const cells = systems.map((k) => runs.find((r) => r.scenario === scenario && r.system === k));
  const values = cells.map((r) => r?.figures?.headline ?? null);
  const unit = cells.find((r) => r?.figures)?.figures?.headlineUnit ?? '';
  const max = Math.max(1, ...values.map((v) => v ?? 0));
  const top = y + 46;
  const base = y + h - 18;
  const slot = w / Math.max(1, systems.length);
  const out = [text(x + w / 2, y + 12, panelTitles[scenario], { size: 11, anchor: 'middle', weight: 'bold' }), text(x + w / 2, y + 25, unit, { size: 10, anchor: 'middle', fill: '#666' }), line(x, base, x + w, base, '#888')];
  values.forEach((v, i) => {
    const bx = x + i * slot + slot * 0.15;
    const bw = slot * 0.7;
    if (v === null) {
      out.push(text(bx + bw / 2, base - 4, cells[i]?.skipped ? 'skip' : 'n/a', { size: 9, anchor: 'middle', fill: '#999' }));
      return;
    }
    const bh = ((base - top) * v) / max;
    const bad = cells[i]?.figures?.check.oversold === true;
    out.push(rect(bx, base - bh, bw, bh, colors[systems[i]!], bad ? ' stroke="#c00" stroke-width="2"' : ''));
    out.push(text(bx + bw / 2, base - bh - 3, compact(v), { size: 9, anchor: 'middle' }));
  });
  return out.join('');
}

/** Scenario 4's p50 / p99 / p99.9 per system on a log scale of milliseconds. */
function latencyPanel(runs: SystemRun[], x: number, y: number, w: number, h: number): string {
  const systems = systemsIn(runs);
  const lat = systems.map((k) => runs.find((r) => r.scenario === 'fixed-rate' && r.system === k)?.figures?.load.latencyMs ?? null);
  const all = lat.flatMap((l) => (l === null ? [] : [l.p50, l.p99, l.p99_9])).filter((v) => v > 0);
  const lo = Math.pow(10, Math.floor(Math.log10(Math.max(0.01, Math.min(...all, 1)))));
  const hi = Math.pow(10, Math.ceil(Math.log10(Math.max(...all, 10))));
  const top = y + 34;
  const base = y + h - 18;
  const left = x + 44;
  const yOf = (v: number): number => base - ((Math.log10(Math.max(v, lo)) - Math.log10(lo)) / (Math.log10(hi) - Math.log10(lo))) * (base - top);
  const out = [text(x + w / 2, y + 12, `${scenarioTitles['fixed-rate']}: latency`, { size: 11, anchor: 'middle', weight: 'bold' }),
    text(x + w / 2, y + 25, 'ms, log scale; bars p50 / p99 / p99.9', { size: 10, anchor: 'middle', fill: '#666' })];
  for (let v = lo; v <= hi * 1.001; v *= 10) out.push(line(left, yOf(v), x + w, yOf(v), '#e3e3e3'), text(left - 4, yOf(v) + 3, compact(v), { size: 9, anchor: 'end', fill: '#666' }));
  const slot = (x + w - left) / Math.max(1, systems.length);
  lat.forEach((l, i) => {
    const sx = left + i * slot;
    out.push(text(sx + slot / 2, base + 12, shortLabels[systems[i]!], { size: 9, anchor: 'middle' }));
    if (l === null) return void out.push(text(sx + slot / 2, base - 4, 'n/a', { size: 9, anchor: 'middle', fill: '#999' }));
    [l.p50, l.p99, l.p99_9].forEach((v, j) => {
      const bw = (slot * 0.7) / 3;
      const bx = sx + slot * 0.15 + j * bw;
      out.push(rect(bx, yOf(v), bw - 1, base - yOf(v), colors[systems[i]!], ` fill-opacity="${[0.45, 0.75, 1][j]}"`));
      out.push(text(bx + bw / 2, yOf(v) - 2, compact(v), { size: 8, anchor: 'middle' }));
    });
  });
  return out.join('');
}

/** Scenario 5: each system's answers as shares of 2xx / 429 / 503 / failed, with p99 and peak memory. */
function overloadPanel(runs: SystemRun[], x: number, y: number, w: number, h: number): string {
  const systems = systemsIn(runs);
  const out = [text(x + w / 2, y + 12, `${scenarioTitles.overload}: how each system answered`, { size: 11, anchor: 'middle', weight: 'bold' })];
  // Spelled out: Object.keys would put the integer-like '429' and '503' first.
  const keys: (keyof typeof outcomeColors)[] = ['2xx', '429', '503', 'failed'];
  keys.forEach((k, i) => out.push(rect(x + 10 + i * 80, y + 20, 10, 10, outcomeColors[k]), text(x + 24 + i * 80, y + 29, k, { size: 9 })));
  const left = x + 110;
  const barW = w - 110 - 150;
  const rowH = (h - 44) / Math.max(1, systems.length);
  systems.forEach((k, i) => {
    const ry = y + 40 + i * rowH;
    out.push(text(left - 6, ry + rowH / 2 + 3, labels[k], { size: 9, anchor: 'end' }));
    const f = runs.find((r) => r.scenario === 'overload' && r.system === k)?.figures;
    if (!f) return void out.push(text(left, ry + rowH / 2 + 3, 'n/a', { size: 9, fill: '#999' }));
    const s = f.load.statuses;
    const ok = Object.entries(s).filter(([c]) => c.startsWith('2')).reduce((a, [, n]) => a + n, 0);
    const parts = { '2xx': ok, '429': s['429'] ?? 0, '503': s['503'] ?? 0, failed: f.load.responses - ok - (s['429'] ?? 0) - (s['503'] ?? 0) + f.load.errors };
    const total = Math.max(1, Object.values(parts).reduce((a, b) => a + b, 0));
    let cx = left;
    for (const key of keys) {
      const pw = (barW * parts[key]) / total;
      out.push(rect(cx, ry + rowH * 0.2, pw, rowH * 0.6, outcomeColors[key]));
      cx += pw;
    }
    const p99 = f.load.latency2xxMs?.p99;
    out.push(text(left + barW + 6, ry + rowH / 2 + 3, `p99 2xx ${p99 === undefined ? '-' : compact(p99)} ms, RSS ${f.load.rss.peakMiB ?? '-'} MiB`, { size: 9 }));
  });
  return out.join('');
}

export function renderChart(runs: SystemRun[], subtitle: string): string {
  const W = 1000;
  const systems = systemsIn(runs);
  const scenarios = scenarioKeys.filter((s) => runs.some((r) => r.scenario === s));
  const parts: string[] = [rect(0, 0, W, 600, '#fff'), text(20, 26, 'npm run bench: throughput and latency per system and scenario (medians over the rounds of one run)', { size: 15, weight: 'bold' }), text(20, 44, subtitle, { size: 10, fill: '#555' })];
  systems.forEach((k, i) => parts.push(rect(20 + i * 160, 56, 12, 12, colors[k]), text(37, 66, labels[k], { size: 11 }).replace('x="37"', `x="${37 + i * 160}"`)));
  const pw = (W - 40) / Math.max(1, scenarios.length);
  scenarios.forEach((s, i) => parts.push(throughputPanel(runs, s, 20 + i * pw + 6, 84, pw - 12, 230)));
  if (scenarios.includes('fixed-rate')) parts.push(latencyPanel(runs, 20, 330, 470, 250));
  if (scenarios.includes('overload')) parts.push(overloadPanel(runs, 510, 330, 470, 250));
  return `<svg xmlns="http://www.w3.org/2000/svg" width="${W}" height="600" viewBox="0 0 ${W} 600" font-family="Helvetica, Arial, sans-serif">${parts.join('')}</svg>\n`;
}
