// `flash stock import FILE`: the bulk stock import before a drop, with the semantics of
// src/cli/import-stock.ts (the same parser and applier): the whole file is validated first
// (one bad line and nothing is sent), then every SKU is PUT a few at a time, retrying
// "try again" answers; stock applies on create only. Each PUT carries the audit trail's
// reason, `stock import` (as POST /v1/admin/stock-import records it) unless one is given. A
// progress bar goes to stderr when it is a terminal; the summary always goes to stdout.

import { SingleBar } from 'cli-progress';
import { applyUpserts, upsertBody, type UpsertAnswer } from '../admin/stock-apply.js';
import { formatImportError, guessStockImportFormat, parseStockImport, type SkuUpsert, type StockImportFormat } from '../admin/stock-import.js';
import { reason as reasonOf } from '../gateway/validate.js';
import { CliError, Exit, apiError, call, exitOf, guarded, hint, isObject, notEngine, seg, type Connection, type ExitCode, type FlashIo } from './flash-client.js';

const fileBytesMax = 32 * 1024 * 1024;

export interface ImportOptions {
  dryRun: boolean;
  format?: string;
  concurrency?: string;
  /** The audit trail's reason of every change (default `stock import`, as the HTTP import records). */
  reason?: string;
}

/** The reason the HTTP import (POST /v1/admin/stock-import) records: the same for the same import. */
export const stockImportReason = 'stock import';

/** Codes after which every further call would fail alike: the import stops starting new ones. */
const fatalCodes = ['unauthorized', 'forbidden', 'no_answer', 'not_engine'];

export const runStockImport = guarded(async (conn: Connection, io: FlashIo, file: string, opts: ImportOptions): Promise<ExitCode> => {
  const format = opts.format ?? null;
  if (format !== null && format !== 'csv' && format !== 'json') throw new CliError(Exit.usage, `--format ${format} must be csv or json`);
  const concurrency = Number(opts.concurrency ?? 4);
  if (!Number.isInteger(concurrency) || concurrency < 1 || concurrency > 64) throw new CliError(Exit.usage, `--concurrency ${opts.concurrency} must be an integer in 1..64`);
  const reason = opts.reason ?? stockImportReason;
  try {
    reasonOf({ reason });
  } catch (e) {
    throw new CliError(Exit.usage, `--reason: ${(e as Error).message}`);
  }
  let text: string;
  try {
    text = io.readFile(file);
  } catch (e) {
    throw new CliError(Exit.usage, `cannot read ${file}: ${(e as Error).message}`);
  }
  if (Buffer.byteLength(text) > fileBytesMax) throw new CliError(Exit.usage, `${file} is over ${fileBytesMax} bytes; split it`);
  const chosen: StockImportFormat = (format as StockImportFormat | null)
    ?? (file.toLowerCase().endsWith('.json') ? 'json' : file === '-' ? guessStockImportFormat(text) : 'csv');
  const parsed = parseStockImport(text, chosen);
  if (!parsed.ok) {
    const more = parsed.errorCount > parsed.errors.length ? `\n  ... and ${parsed.errorCount - parsed.errors.length} more` : '';
    throw new CliError(Exit.usage, `${file}: ${parsed.errorCount} error${parsed.errorCount === 1 ? '' : 's'}; nothing was applied\n  ${parsed.errors.map(formatImportError).join('\n  ')}${more}`);
  }
  if (opts.dryRun) {
    io.stdout(`${file}: ${parsed.commands.length} SKUs valid; dry run, nothing applied\n`);
    return Exit.ok;
  }

  const bar = io.progress === null ? null : new SingleBar({
    stream: io.progress, format: 'import [{bar}] {percentage}% | {value}/{total} SKUs | {eta_formatted} left', hideCursor: true, clearOnComplete: true, etaBuffer: 200,
  });
  bar?.start(parsed.commands.length, 0);
  let done = 0;
  /** The status of each failed SKU's last answer (0: no answer), for the exit code. */
  const lastStatus = new Map<string, number>();
  const put = async (c: SkuUpsert): Promise<UpsertAnswer> => {
    let answer: UpsertAnswer;
    try {
      const a = await call(conn, 'PUT', `/v1/skus/${seg(c.sku)}`, { ...upsertBody(c), reason });
      if ((a.status === 200 || a.status === 201) && !isObject(a.body)) {
        // Not the engine (a portal, a wrong port): nothing was applied, and nothing will be.
        answer = { ok: false, code: 'not_engine', message: notEngine(conn, `PUT /v1/skus/${c.sku}`, a).message, retryable: false };
        lastStatus.set(c.sku, a.status);
      } else if (a.status === 200 || a.status === 201) {
        answer = { ok: true, created: a.status === 201 };
        lastStatus.delete(c.sku);
      } else {
        const { code, message } = apiError(a);
        answer = { ok: false, code, message, retryable: a.status === 429 || a.status === 503 };
        lastStatus.set(c.sku, a.status);
      }
    } catch (e) {
      answer = { ok: false, code: 'no_answer', message: (e as Error).message, retryable: true };
      lastStatus.set(c.sku, 0);
    }
    // A retryable failure is tried again by applyUpserts: counted once, when settled.
    if (answer.ok || !answer.retryable) bar?.update(++done);
    return answer;
  };
  let s;
  try {
    s = await applyUpserts(parsed.commands, parsed.lines, put, { concurrency, fatalCodes });
  } finally {
    bar?.update(parsed.commands.length);
    bar?.stop();
  }
  for (const f of s.failures) io.stderr(`flash: ${file} line ${f.line} (sku ${f.sku}): ${f.code}: ${f.message}\n`);
  if (s.stoppedEarly) {
    const code = s.failures.find((f) => fatalCodes.includes(f.code))?.code ?? 'unauthorized';
    io.stderr(code === 'no_answer'
      ? `flash: stopped early: the engine at ${conn.url} stopped answering; re-run the import when it is back (every call is an upsert, so a re-run is safe)\n`
      : code === 'not_engine'
        ? `flash: stopped early: ${conn.url} does not answer as the engine does; point --url or FLASH_URL at the engine\n`
        : `flash: stopped early: the engine refused the token (${code}); ${hint(conn, code)}\n`);
  }
  const notSent = s.skus - s.created - s.updated - s.failed;
  io.stdout(`${file}: ${s.skus} SKUs, ${s.created} created, ${s.updated} updated (stock applies on create only; restock with flash stock adjust), ${s.failed} failed${notSent > 0 ? `, ${notSent} not sent` : ''}\n`);
  let exit: ExitCode = Exit.ok;
  for (const status of lastStatus.values()) {
    const e = status === 0 ? Exit.unreachable : exitOf(status);
    if (e > exit) exit = e;
  }
  if (exit === Exit.ok && (s.failed > 0 || s.stoppedEarly)) exit = Exit.refused;
  return exit;
});
