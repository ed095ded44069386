// The gateway side of POST /v1/admin/stock-import: reads the body (raw text/csv, or JSON
// `{"format":"csv"|"json","data":"..."}`, or a bare JSON array) up to a bound, runs the same
// parser as the CLI, and either answers 400 with every line error (nothing applied) or
// applies the commands through the shard router and answers with counts. Auth is the caller's.

import type { IncomingMessage } from 'node:http';
import type { CallOutcome } from '../engine/shard-protocol.js';
import type { ErrorCode } from '../gateway/errors.js';
import type { FeatureHandler } from '../gateway/http-gateway.js';
import { noteErrorCode, sendJson } from '../gateway/request-io.js';
import { applyUpserts, type ApplySummary } from './stock-apply.js';
import { formatImportError, parseStockImport, type SkuUpsert, type StockImportFormat } from './stock-import.js';

/** Stock files are larger than API bodies: up to 8 MiB (about 100,000 rows). */
export const stockImportBodyBytesMax = 8 * 1024 * 1024;

export interface StockImportAnswer {
  status: number;
  /** JSON text to send as is. */
  json: string;
  /** The error code, when it is an error. */
  code?: ErrorCode;
}

const errorJson = (status: number, code: ErrorCode, message: string, extra: Record<string, unknown> = {}): StockImportAnswer =>
  ({ status, code, json: JSON.stringify({ error: { code, message }, ...extra }) });

/** Reads the body; resolves to the file and its format, or to an error answer. */
export function readStockImport(req: IncomingMessage): Promise<{ format: StockImportFormat; text: string } | StockImportAnswer> {
  return new Promise((resolve) => {
    const tooLarge = errorJson(413, 'payload_too_large', `a stock import is at most ${stockImportBodyBytesMax} bytes`);
    if (Number(req.headers['content-length'] ?? 0) > stockImportBodyBytesMax) return resolve(tooLarge);
    const chunks: Buffer[] = [];
    let size = 0;
    req.on('data', (c: Buffer) => {
      size += c.length;
      if (size <= stockImportBodyBytesMax) chunks.push(c);
    });
    req.on('error', () => resolve(errorJson(400, 'invalid_request', 'request body could not be read')));
    req.on('end', () => {
      if (size > stockImportBodyBytesMax) return resolve(tooLarge);
      resolve(interpretBody(Buffer.concat(chunks).toString('utf8'), String(req.headers['content-type'] ?? '')));
    });
  });
}

function interpretBody(text: string, contentType: string): { format: StockImportFormat; text: string } | StockImportAnswer {
  if (/^text\/csv\b/i.test(contentType)) return { format: 'csv', text };
  let body: unknown;
  try {
    body = JSON.parse(text);
  } catch {
    return errorJson(400, 'invalid_request', 'body must be text/csv, a JSON array, or JSON {"format":"csv"|"json","data":"..."}');
  }
  if (Array.isArray(body)) return { format: 'json', text };
  const o = (body ?? {}) as Record<string, unknown>;
  const format = Object.prototype.hasOwnProperty.call(o, 'format') ? o.format : undefined;
  const data = Object.prototype.hasOwnProperty.call(o, 'data') ? o.data : undefined;
  if (format !== 'csv' && format !== 'json') return errorJson(400, 'invalid_request', 'format must be "csv" or "json"');
  if (typeof data !== 'string') return errorJson(400, 'invalid_request', 'data must be the file as a string');
  return { format, text: data };
}

function upsertAnswer(o: CallOutcome): Awaited<ReturnType<Parameters<typeof applyUpserts>[2]>> {
  if (o.ok) return { ok: true, created: o.status === 'created' };
  const retryable = o.code === 'overloaded' || o.code === 'shard_unavailable' || o.code === 'moved';
  return { ok: false, code: o.code, message: o.message, retryable };
}

/** Validates all, then applies all; `upsert` is the router's (e.g. `(c) => router.upsertSku(c)`). */
export async function runStockImport(
  file: { format: StockImportFormat; text: string }, upsert: (c: SkuUpsert) => Promise<CallOutcome>, concurrency = 32,
): Promise<StockImportAnswer> {
  const parsed = parseStockImport(file.text, file.format);
  if (!parsed.ok) {
    const shown = parsed.errors.map(formatImportError);
    const message = `${parsed.errorCount} error${parsed.errorCount === 1 ? '' : 's'} in the stock file; nothing was applied: ${shown.join('; ')}`;
    return errorJson(400, 'invalid_request', message, { errors: parsed.errors, errorCount: parsed.errorCount });
  }
  const summary: ApplySummary = await applyUpserts(parsed.commands, parsed.lines, async (c) => upsertAnswer(await upsert(c)), { concurrency });
  const counts = {
    skus: summary.skus, created: summary.created, updated: summary.updated, failed: summary.failed,
    ...(summary.stockKeptCount === 0 ? {} : {
      stockKept: summary.stockKeptCount,
      note: `stock applies when a SKU is created: ${summary.stockKeptCount} existing SKU(s) kept their stock (${summary.stockKept.slice(0, 5).join(', ')}${summary.stockKeptCount > 5 ? ', ...' : ''}); change it with POST /v1/skus/{sku}/stock (or flash stock adjust)`,
    }),
  };
  if (summary.failed === 0) return { status: 200, json: JSON.stringify(counts) };
  const first = summary.failures.slice(0, 5).map((f) => `line ${f.line} (${f.sku}): ${f.code}`).join('; ');
  return errorJson(409, 'import_incomplete', `${summary.failed} of ${summary.skus} SKUs were not applied (${first}); the others were. Re-running the same import is safe.`, { ...counts, failures: summary.failures });
}

/**
 * `POST /v1/admin/stock-import` for the gateway (a whole file, CSV or JSON, up to 8 MiB):
 * validated completely, then applied; the importing caller is the actor of every change.
 */
export const stockImportRoute: FeatureHandler = async ({ req, res, caller, router }) => {
  const file = await readStockImport(req);
  const a = 'status' in file ? file : await runStockImport(file, (c) => router.upsertSku({ ...c, actor: caller.name, reason: c.reason ?? 'stock import' }));
  if (a.status === 413) res.setHeader('connection', 'close');
  if (a.code !== undefined) noteErrorCode(res, a.code);
  sendJson(res, a.status, a.json);
  return a.status;
};
