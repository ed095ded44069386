// Human output of the `flash` tool: aligned tables and key/value blocks, times and ages.
// Machine output is `--json` (the API's JSON as answered), never these.

/** Columns padded to their widest cell; numbers (and `-`) right-aligned. */
export function table(headers: readonly string[], rows: readonly (readonly (string | number | null | undefined)[])[]): string[] {
  const cells = rows.map((r) => headers.map((_, i) => cell(r[i])));
  const numeric = headers.map((_, i) => rows.length > 0 && rows.every((r) => typeof r[i] === 'number' || r[i] === null || r[i] === undefined));
  const widths = headers.map((h, i) => Math.max(h.length, ...cells.map((r) => r[i]!.length)));
  const line = (r: readonly string[]): string =>
    r.map((c, i) => (numeric[i] ? c.padStart(widths[i]!) : i === r.length - 1 ? c : c.padEnd(widths[i]!))).join('  ').trimEnd();
  return [line(headers), ...cells.map(line)];
}

function cell(v: string | number | null | undefined): string {
  if (v === null || v === undefined) return '-';
  return typeof v === 'number' ? String(v) : v;
}

/** `key   value` lines, keys padded to the longest. */
export function keyValues(pairs: readonly (readonly [string, string | number | null | undefined])[]): string[] {
  const width = Math.max(0, ...pairs.map(([k]) => k.length));
  return pairs.map(([k, v]) => `${`${k}:`.padEnd(width + 1)}  ${cell(v)}`);
}

/** Epoch ms as `2026-11-30 12:00:00Z`; 0 or absent as `-`. */
export function time(ms: unknown): string {
  if (typeof ms !== 'number' || ms <= 0 || !Number.isFinite(ms)) return '-';
  const d = new Date(ms);
  return Number.isNaN(d.getTime()) ? String(ms) : `${d.toISOString().slice(0, 19).replace('T', ' ')}Z`;
}

/** `1h 02m`, `3m 05s`, `12s`, `850ms`. */
export function duration(ms: number): string {
  const abs = Math.abs(ms);
  if (abs < 1000) return `${Math.round(abs)}ms`;
  const s = Math.floor(abs / 1000);
  if (s < 60) return `${s}s`;
  const m = Math.floor(s / 60);
  if (m < 60) return `${m}m ${String(s % 60).padStart(2, '0')}s`;
  const h = Math.floor(m / 60);
  if (h < 48) return `${h}h ${String(m % 60).padStart(2, '0')}m`;
  return `${Math.floor(h / 24)}d ${String(h % 24).padStart(2, '0')}h`;
}

/** A time with how far it is from now: `2026-11-30 12:00:00Z (in 3m 05s)`. */
export function when(ms: unknown, nowMs = Date.now()): string {
  if (typeof ms !== 'number' || ms <= 0) return '-';
  const d = ms - nowMs;
  return `${time(ms)} (${d >= 0 ? `in ${duration(d)}` : `${duration(d)} ago`})`;
}

/** A compact JSON value for a one-line summary. */
export function compact(v: unknown): string {
  if (v === null || v === undefined) return String(v);
  return typeof v === 'string' ? v : JSON.stringify(v);
}
