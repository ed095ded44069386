// Bulk stock import before a drop, from the command line:
//   node dist/src/cli/import-stock.js --url http://127.0.0.1:8080 --token $OPERATOR_TOKEN stock.csv
// It validates the whole file locally first (all or nothing: one bad line and nothing is
// sent), then applies it with PUT /v1/skus/{sku} calls at a small concurrency and prints a
// summary. `--dry-run` validates only. Re-running an import is safe: every call is an upsert.

import { readFileSync } from 'node:fs';
import { pathToFileURL } from 'node:url';
import { parseArgs } from 'node:util';
import { applyUpserts, upsertBody, type UpsertAnswer } from '../admin/stock-apply.js';
import { formatImportError, guessStockImportFormat, parseStockImport, type SkuUpsert, type StockImportFormat } from '../admin/stock-import.js';

export interface CliIo {
  log(line: string): void;
  error(line: string): void;
  readFile(path: string): string;
}

const usage = 'usage: import-stock [--url http://127.0.0.1:8080] [--token T (an admin or operator token; else FLASH_TOKEN, else FLASH_ADMIN_TOKEN)] [--format csv|json] [--concurrency 4] [--dry-run] <file|->';
const fileBytesMax = 32 * 1024 * 1024;
const callTimeoutMs = 10_000;

const defaultIo: CliIo = {
  log: (l) => console.log(l),
  error: (l) => console.error(l),
  readFile: (path) => readFileSync(path === '-' ? 0 : path, 'utf8'),
};

/** One PUT; answers that a later try may fix (429, 503, no answer) are retryable. */
async function put(baseUrl: string, token: string | null, c: SkuUpsert): Promise<UpsertAnswer> {
  const headers: Record<string, string> = { 'content-type': 'application/json' };
  if (token !== null) headers.authorization = `Bearer ${token}`;
  let res: Response;
  try {
    res = await fetch(new URL(`/v1/skus/${encodeURIComponent(c.sku)}`, baseUrl), {
      method: 'PUT', headers, body: JSON.stringify({ ...upsertBody(c), reason: 'stock import' }), signal: AbortSignal.timeout(callTimeoutMs),
    });
  } catch (e) {
    return { ok: false, code: 'no_answer', message: e instanceof Error ? e.message : String(e), retryable: true };
  }
  const text = await res.text();
  if (res.status === 200 || res.status === 201) return { ok: true, created: res.status === 201 };
  let code = `http_${res.status}`;
  let message = text.slice(0, 200);
  try {
    const body = JSON.parse(text) as { error?: { code?: string; message?: string } };
    code = body.error?.code ?? code;
    message = body.error?.message ?? message;
  } catch {
    // not JSON: keep the status and the text
  }
  return { ok: false, code, message, retryable: res.status === 429 || res.status === 503 };
}

function parseCli(args: string[]): { url: string; token: string | null; format: StockImportFormat | null; concurrency: number; dryRun: boolean; file: string } | string {
  let parsed;
  try {
    parsed = parseArgs({
      args, allowPositionals: true,
      options: {
        url: { type: 'string' }, token: { type: 'string' }, format: { type: 'string' },
        concurrency: { type: 'string' }, 'dry-run': { type: 'boolean' }, help: { type: 'boolean' },
      },
    });
  } catch (e) {
    return `${e instanceof Error ? e.message : String(e)}\n${usage}`;
  }
  const { values, positionals } = parsed;
  if (values.help === true || positionals.length !== 1) return usage;
  const format = values.format ?? null;
  if (format !== null && format !== 'csv' && format !== 'json') return `--format must be csv or json\n${usage}`;
  const concurrency = Number(values.concurrency ?? 4);
  if (!Number.isInteger(concurrency) || concurrency < 1 || concurrency > 64) return '--concurrency must be an integer in 1..64';
  const url = values.url ?? 'http://127.0.0.1:8080';
  try {
    new URL(url);
  } catch {
    return `--url ${url} is not a URL`;
  }
  const token = values.token ?? process.env.FLASH_TOKEN ?? process.env.FLASH_ADMIN_TOKEN ?? '';
  return { url, token: token === '' ? null : token, format, concurrency, dryRun: values['dry-run'] === true, file: positionals[0] as string };
}

/** Runs the CLI; resolves to the exit code (0 ok, 1 invalid file or failed SKUs, 2 usage). */
export async function runImportStock(args: string[], io: CliIo = defaultIo): Promise<number> {
  const cli = parseCli(args);
  if (typeof cli === 'string') {
    io.error(cli);
    return 2;
  }
  let text: string;
  try {
    text = io.readFile(cli.file);
  } catch (e) {
    io.error(`cannot read ${cli.file}: ${e instanceof Error ? e.message : String(e)}`);
    return 1;
  }
  if (Buffer.byteLength(text) > fileBytesMax) {
    io.error(`${cli.file} is over ${fileBytesMax} bytes; split it`);
    return 1;
  }
  const format = cli.format ?? (cli.file.toLowerCase().endsWith('.json') ? 'json' : cli.file === '-' ? guessStockImportFormat(text) : 'csv');
  const parsed = parseStockImport(text, format);
  if (!parsed.ok) {
    io.error(`${cli.file}: ${parsed.errorCount} error${parsed.errorCount === 1 ? '' : 's'}; nothing was applied`);
    for (const e of parsed.errors) io.error(`  ${formatImportError(e)}`);
    if (parsed.errorCount > parsed.errors.length) io.error(`  ... and ${parsed.errorCount - parsed.errors.length} more`);
    return 1;
  }
  if (cli.dryRun) {
    io.log(`${cli.file}: ${parsed.commands.length} SKUs valid; dry run, nothing applied`);
    return 0;
  }
  const s = await applyUpserts(parsed.commands, parsed.lines, (c) => put(cli.url, cli.token, c), { concurrency: cli.concurrency, fatalCodes: ['unauthorized', 'forbidden'] });
  for (const f of s.failures) io.error(`  line ${f.line} (${f.sku}): ${f.code}: ${f.message}`);
  if (s.stoppedEarly) io.error(`stopped early: the engine refused the token (${s.failures[0]?.code ?? 'unauthorized'}); give an admin or operator token with --token, FLASH_TOKEN or FLASH_ADMIN_TOKEN`);
  io.log(`${cli.file}: ${s.skus} SKUs, ${s.created} created, ${s.updated} updated (stock applies on create only; restock with POST /v1/skus/{sku}/stock), ${s.failed} failed${s.stoppedEarly ? `, ${s.skus - s.created - s.updated - s.failed} not sent` : ''}`);
  return s.failed === 0 && !s.stoppedEarly ? 0 : 1;
}

if (process.argv[1] !== undefined && import.meta.url === pathToFileURL(process.argv[1]).href) {
  void runImportStock(process.argv.slice(2)).then((code) => {
    process.exitCode = code;
  });
}
