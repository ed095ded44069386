// Turns a stock file (CSV with a header, or a JSON array of objects) into validated
// `sku.upsert` commands, with the very rules of PUT /v1/skus (validate.ts), before a drop.
// It is all or nothing: one bad line and no command comes out, and every error found is
// reported (the first 100) with its line and field. It parses and validates only; applying
// the commands belongs to the caller (the CLI, or the gateway's admin endpoint).

import { skuFields, type Command } from '../domain/index.js';
import { InvalidRequest, skuName, upsertCommand } from '../gateway/validate.js';
import { splitCsvLine } from './csv-line.js';

export type SkuUpsert = Extract<Command, { t: 'sku.upsert' }>;
export type StockImportFormat = 'csv' | 'json';

/** `sku`, then every importable field of the domain's one field table (src/domain/fields.ts). */
export const stockImportColumns: readonly string[] = ['sku', ...skuFields.filter((f) => f.csv !== null).map((f) => f.wire)];
/** Columns whose CSV cells are read as numbers. */
const integerColumns = new Set(skuFields.filter((f) => f.csv === 'int').map((f) => f.wire));
const requiredColumns = ['sku', 'stock'] as const;

export const stockImportLimits = { rowsMax: 100_000, errorsMax: 100 } as const;

export interface StockImportError {
  /** 1-based line of the file. */
  line: number;
  /** The column or key at fault, or null for the line as a whole. */
  field: string | null;
  message: string;
}

export type StockImportResult =
  | { ok: true; commands: SkuUpsert[]; lines: number[] }
  | { ok: false; errors: StockImportError[]; errorCount: number };

/** `line 3, stock: stock must be an integer in 0..1000000000` */
export function formatImportError(e: StockImportError): string {
  return e.field === null ? `line ${e.line}: ${e.message}` : `line ${e.line}, ${e.field}: ${e.message}`;
}

/** Errors of a file are found in two passes (syntax, then rules); this many are sorted by line. */
const errorsSortedMax = 10_000;

/** Collects errors: all are counted; the first `errorsMax` by line are reported. */
class Errors {
  private readonly found: StockImportError[] = [];
  count = 0;

  add(line: number, field: string | null, message: string): void {
    this.count++;
    if (this.found.length < errorsSortedMax) this.found.push({ line, field, message });
  }

  failed(): StockImportResult {
    const errors = [...this.found].sort((a, b) => a.line - b.line).slice(0, stockImportLimits.errorsMax);
    return { ok: false, errors, errorCount: this.count };
  }
}

type Row = Record<string, unknown>;

/** Validates one row like PUT /v1/skus/{sku}, field by field so that every bad field is named. */
function validateRow(row: Row, line: number, errors: Errors): SkuUpsert | null {
  const before = errors.count;
  let sku: string | null = null;
  try {
    sku = skuName(Object.prototype.hasOwnProperty.call(row, 'sku') ? row.sku : undefined);
  } catch (e) {
    errors.add(line, 'sku', (e as Error).message);
  }
  if (row.stock === undefined) errors.add(line, 'stock', 'stock is required (the units the SKU is created with)');
  for (const field of stockImportColumns) {
    if (field === 'sku' || row[field] === undefined) continue;
    try {
      upsertCommand({ [field]: row[field] }, 'x');
    } catch (e) {
      if (!(e instanceof InvalidRequest)) throw e;
      errors.add(line, e.field, e.message);
    }
  }
  if (errors.count > before || sku === null) return null;
  try {
    // cross-field rules, e.g. endsAt after startsAt; the caller who imports is set as the actor when applied
    return upsertCommand(row, sku);
  } catch (e) {
    if (!(e instanceof InvalidRequest)) throw e;
    errors.add(line, e.field, e.message);
    return null;
  }
}

/** Checks the shape of the whole set: SKUs unique, row count bounded. */
function collect(rows: { line: number; row: Row }[], errors: Errors): StockImportResult {
  const commands: SkuUpsert[] = [];
  const lines: number[] = [];
  const seen = new Map<string, number>();
  if (rows.length === 0 && errors.count === 0) errors.add(1, null, 'the file has no SKU rows');
  if (rows.length > stockImportLimits.rowsMax) errors.add(rows[stockImportLimits.rowsMax]!.line, null, `more than ${stockImportLimits.rowsMax} rows; split the file`);
  for (const { line, row } of rows.slice(0, stockImportLimits.rowsMax)) {
    const cmd = validateRow(row, line, errors);
    const sku = typeof row.sku === 'string' ? row.sku : null;
    const first = sku === null ? undefined : seen.get(sku);
    if (first !== undefined) errors.add(line, 'sku', `sku ${sku} is already on line ${first}`);
    else if (sku !== null) seen.set(sku, line);
    if (cmd !== null) {
      commands.push(cmd);
      lines.push(line);
    }
  }
  if (errors.count > 0) return errors.failed();
  return { ok: true, commands, lines };
}

function csvHeader(fields: string[], line: number, errors: Errors): void {
  const known = stockImportColumns as readonly string[];
  fields.forEach((name, i) => {
    if (name === '') return errors.add(line, null, `column ${i + 1} of the header is empty`);
    if (!known.includes(name)) {
      const hint = known.find((k) => k.toLowerCase() === name.toLowerCase());
      errors.add(line, name, `unknown column ${name}${hint === undefined ? '' : ` (did you mean ${hint}?)`}; columns are ${known.join(', ')}`);
    } else if (fields.indexOf(name) !== i) errors.add(line, name, `column ${name} appears twice in the header`);
  });
  for (const name of requiredColumns) if (!fields.includes(name)) errors.add(line, name, `the header must have a ${name} column`);
}

/** A CSV cell as PUT would see it: integers as numbers (anything else stays text, and fails), blanks absent. */
function csvValue(column: string, cell: string): unknown {
  if (cell === '') return undefined;
  if (integerColumns.has(column) && /^[+-]?\d+$/.test(cell)) return Number(cell);
  return cell;
}

export function parseStockCsv(text: string): StockImportResult {
  const errors = new Errors();
  const physical = text.replace(/^\uFEFF/, '').split(/\r\n|\n|\r/);
  let header: string[] | null = null;
  const rows: { line: number; row: Row }[] = [];
  for (let i = 0; i < physical.length; i++) {
    const line = i + 1;
    if ((physical[i] as string).trim() === '') continue;
    const split = splitCsvLine(physical[i] as string);
    if (!split.ok) {
      errors.add(line, null, split.message);
      if (header === null) return errors.failed();
      continue;
    }
    if (header === null) {
      header = split.fields;
      csvHeader(header, line, errors);
      if (errors.count > 0) return errors.failed();
      continue;
    }
    if (split.fields.length !== header.length) {
      errors.add(line, null, `has ${split.fields.length} fields, the header has ${header.length}`);
      continue;
    }
    const row: Row = Object.create(null) as Row;
    header.forEach((column, c) => {
      const v = csvValue(column, split.fields[c] as string);
      if (v !== undefined) row[column] = v;
    });
    rows.push({ line, row });
  }
  if (header === null) errors.add(1, null, 'the file is empty; it needs a header line such as sku,stock');
  return collect(rows, errors);
}

/** The 1-based line where each element of a top-level JSON array starts. */
function arrayElementLines(text: string): number[] {
  const lines: number[] = [];
  let line = 1;
  let depth = 0;
  let inString = false;
  let expectValue = false;
  for (let i = 0; i < text.length; i++) {
    const c = text[i] as string;
    if (c === '\n') line++;
    if (inString) {
      if (c === '\\') i++;
      else if (c === '"') inString = false;
      continue;
    }
    if (c === ' ' || c === '\t' || c === '\r' || c === '\n') continue;
    if (depth === 1 && expectValue && c !== ']') {
      lines.push(line);
      expectValue = false;
    }
    if (c === '"') inString = true;
    else if (c === '[' || c === '{') {
      depth++;
      if (depth === 1) expectValue = true;
    } else if (c === ']' || c === '}') depth--;
    else if (c === ',' && depth === 1) expectValue = true;
  }
  return lines;
}

function jsonSyntaxLine(text: string, message: string): number {
  const m = /position (\d+)/.exec(message);
  if (m === null) return 1;
  return text.slice(0, Number(m[1])).split('\n').length;
}

export function parseStockJson(text: string): StockImportResult {
  const errors = new Errors();
  let value: unknown;
  try {
    value = JSON.parse(text.replace(/^\uFEFF/, ''));
  } catch (e) {
    const message = (e as Error).message;
    errors.add(jsonSyntaxLine(text.replace(/^\uFEFF/, ''), message), null, `not valid JSON: ${message}`);
    return errors.failed();
  }
  if (!Array.isArray(value)) {
    errors.add(1, null, 'the JSON must be an array of objects like {"sku":"a","stock":10}');
    return errors.failed();
  }
  const starts = arrayElementLines(text.replace(/^\uFEFF/, ''));
  const rows: { line: number; row: Row }[] = [];
  value.forEach((item: unknown, i) => {
    const line = starts[i] ?? 1;
    if (item === null || typeof item !== 'object' || Array.isArray(item)) return errors.add(line, null, `item ${i + 1} is not an object`);
    const unknown = Object.keys(item).filter((k) => !(stockImportColumns as readonly string[]).includes(k));
    for (const k of unknown) errors.add(line, k, `unknown field ${k}; fields are ${stockImportColumns.join(', ')}`);
    rows.push({ line, row: item as Row });
  });
  return collect(rows, errors);
}

export function parseStockImport(text: string, format: StockImportFormat): StockImportResult {
  return format === 'json' ? parseStockJson(text) : parseStockCsv(text);
}

/** `json` when the text starts with `[` (after a BOM and blanks), else `csv`. */
export function guessStockImportFormat(text: string): StockImportFormat {
  return /^\uFEFF?\s*\[/.test(text) ? 'json' : 'csv';
}
