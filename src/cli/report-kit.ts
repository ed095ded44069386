// What the load reports of this repository share, whether a benchmark (bench/) or an operator's
// rehearsal (`flash rehearse`) writes them: latency histograms in microseconds
// (hdr-histogram-js) and their summary in milliseconds, markdown tables and numbers, and the
// primitives of a hand-drawn SVG chart. bench/ imports these from here; src never imports bench.

import * as hdr from 'hdr-histogram-js';

export type Histogram = ReturnType<typeof hdr.build>;

export interface LatencyMs {
  count: number;
  mean: number;
  p50: number;
  p90: number;
  p99: number;
  p99_9: number;
  max: number;
}

/** Highest latency a histogram tracks: 120 s, in microseconds. */
export const latencyUsMax = 120_000_000;

/** A latency histogram: 1 us .. 120 s at `digits` significant digits (3: 0.1 %; 2: 1 %, smaller). */
export function latencyHistogram(digits: 1 | 2 | 3 | 4 | 5 = 3): Histogram {
  return hdr.build({ lowestDiscernibleValue: 1, highestTrackableValue: latencyUsMax, numberOfSignificantValueDigits: digits });
}

/** Records a latency given in microseconds, clamped to the histogram's range. */
export function recordUs(h: Histogram, us: number): void {
  h.recordValue(Math.min(latencyUsMax, Math.max(1, Math.round(us))));
}

/** The summary in milliseconds (three decimals), or null when nothing was recorded. */
export function latencySummary(h: Histogram): LatencyMs | null {
  if (h.totalCount === 0) return null;
  const ms = (us: number): number => Math.round(us) / 1000;
  return {
    count: h.totalCount, mean: ms(h.mean), p50: ms(h.getValueAtPercentile(50)), p90: ms(h.getValueAtPercentile(90)),
    p99: ms(h.getValueAtPercentile(99)), p99_9: ms(h.getValueAtPercentile(99.9)), max: ms(h.maxValue),
  };
}

export const emptyLatency: LatencyMs = { count: 0, mean: 0, p50: 0, p90: 0, p99: 0, p99_9: 0, max: 0 };

/** A GitHub-flavoured markdown table; cells are printed as given. */
export function markdownTable(header: string[], rows: (string | number)[][]): string {
  const line = (cells: (string | number)[]): string => `| ${cells.map(String).join(' | ')} |`;
  return [line(header), line(header.map(() => '---')), ...rows.map(line)].join('\n');
}

/** 1234567.8 -> "1,234,568". */
export function fmt(n: number, digits = 0): string {
  return n.toLocaleString('en-US', { maximumFractionDigits: digits, minimumFractionDigits: digits });
}

/** 12345 -> "12.3k" (for chart labels). */
export function compactNumber(n: number): string {
  if (n >= 1e6) return `${(n / 1e6).toFixed(1)}M`;
  if (n >= 1e4) return `${(n / 1e3).toFixed(0)}k`;
  if (n >= 1e3) return `${(n / 1e3).toFixed(1)}k`;
  return n >= 10 ? n.toFixed(0) : n.toFixed(1);
}

// ---------------------------------------------------------------------------------------
// SVG primitives: a chart drawn by hand, embeddable in a README or opened in a browser.

export const svgEsc = (s: string): string => s.replace(/&/g, '&amp;').replace(/</g, '&lt;').replace(/>/g, '&gt;').replace(/"/g, '&quot;');
export const svgNum = (n: number): string => String(Math.round(n * 10) / 10);

export interface TextStyle {
  size?: number;
  anchor?: 'start' | 'middle' | 'end';
  weight?: string;
  fill?: string;
}

export function svgText(x: number, y: number, s: string, o: TextStyle = {}): string {
  return `<text x="${svgNum(x)}" y="${svgNum(y)}" font-size="${o.size ?? 11}" text-anchor="${o.anchor ?? 'start'}"${o.weight ? ` font-weight="${o.weight}"` : ''} fill="${o.fill ?? '#222'}">${svgEsc(s)}</text>`;
}

export const svgRect = (x: number, y: number, w: number, h: number, fill: string, extra = ''): string =>
  `<rect x="${svgNum(x)}" y="${svgNum(y)}" width="${svgNum(Math.max(0, w))}" height="${svgNum(Math.max(0, h))}" fill="${fill}"${extra}/>`;

export const svgLine = (x1: number, y1: number, x2: number, y2: number, stroke = '#ccc', extra = ''): string =>
  `<line x1="${svgNum(x1)}" y1="${svgNum(y1)}" x2="${svgNum(x2)}" y2="${svgNum(y2)}" stroke="${stroke}" stroke-width="1"${extra}/>`;

/** A polyline through the points (gaps where a point is null). */
export function svgPath(points: readonly ({ x: number; y: number } | null)[], stroke: string, extra = ''): string {
  let d = '';
  let pen = false;
  for (const p of points) {
    if (p === null) {
      pen = false;
      continue;
    }
    d += `${pen ? 'L' : 'M'}${svgNum(p.x)} ${svgNum(p.y)}`;
    pen = true;
  }
  return d === '' ? '' : `<path d="${d}" fill="none" stroke="${stroke}" stroke-width="1.5"${extra}/>`;
}
