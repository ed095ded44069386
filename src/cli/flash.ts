#!/usr/bin/env node
// `flash`: the operator's command line tool, a client of the engine's HTTP API.
//
//   flash apply FILE                        SKUs and drops from JSON or YAML (created / updated / unchanged)
//   flash stock adjust SKU DELTA --reason   restock (+n) or write off (-n), kept in the audit trail
//   flash stock import FILE [--dry-run]     bulk stock from CSV or JSON, with a progress bar
//   flash sku get|list|audit                SKU views, the listing, a SKU's audit trail
//   flash drop status DROP | entry DROP B   queue figures, seed hash and revealed seed; a buyer's place
//   flash events tail [--sku S]             stock events (low_stock, sold_out, restocked) as they happen
//   flash erp                               ERP backlog, oldest undelivered, sold vs delivered per SKU
//   flash rehearse SCENARIO                 load-test a deployment with a drop scenario; report, chart, exit 1 on a failed check
//
// Exit codes: 0 ok; 1 the engine refused (4xx); 2 usage (bad flags, unreadable or invalid
// file: nothing sent); 3 cannot reach the engine, or it failed (5xx); 4 a bug of the tool. Errors go to stderr,
// one line each: what failed, the API's code and message, and what to do.
// `runFlash(argv, io)` runs it without a process (tests).

import { readFileSync, realpathSync } from 'node:fs';
import { pathToFileURL } from 'node:url';
import { Command, CommanderError } from 'commander';
import { runApply } from './flash-apply.js';
import { CliError, Exit, connection, defaultUrl, type FlashIo, type GlobalOptions } from './flash-client.js';
import { runEventsTail } from './flash-events.js';
import { runStockImport } from './flash-import.js';
import { dropEntry, dropStatus, erpStatus, limitOption, skuAudit, skuGet, skuList, stockAdjust } from './flash-reads.js';
import { registerRehearse } from './rehearse-command.js';

export type { FlashIo } from './flash-client.js';

const helpAfter = `
Connection:
  --url, else FLASH_URL, else ${defaultUrl}
  --token, else FLASH_TOKEN, else FLASH_ADMIN_TOKEN, else (engine on this machine) the
  OPERATOR_TOKEN that a first \`npm start\` wrote to $FLASH_DATA_DIR/credentials/tokens.env
  (data/credentials/tokens.env by default)

Exit codes:
  0  ok
  1  the engine refused something (a 4xx: bad token, unknown SKU, insufficient stock, ...)
  2  usage: bad flags or arguments, an unreadable or invalid file (nothing was sent)
  3  the engine cannot be reached, did not answer in time, answered something that is not
     the engine's JSON, or failed (a 5xx); try again, unless the message says the change
     may have been applied (stock adjust): check flash sku audit SKU first
  4  a bug of the tool (an unexpected error; please report it)

Examples:
  flash apply spring-drop.yaml --reason "spring launch"
  flash stock adjust moutai-2026 +500 --reason "second pallet arrived"
  flash stock import stock.csv
  flash drop status spring-drop
  flash events tail --sku moutai-2026
  flash sku list --json | jq '.items[] | select(.available == 0) | .sku'`;

const defaultIo: FlashIo = {
  stdout: (t) => process.stdout.write(t),
  stderr: (t) => process.stderr.write(t),
  readFile: (path) => readFileSync(path === '-' ? 0 : path, 'utf8'),
  env: process.env,
  progress: process.stderr.isTTY ? process.stderr : null,
};

function positiveInt(raw: string | undefined, flag: string): number | undefined {
  if (raw === undefined) return undefined;
  if (!/^\d+$/.test(raw) || Number(raw) < 1) throw new CliError(Exit.usage, `${flag} ${raw} must be a positive integer`);
  return Number(raw);
}

/** The program, fresh for each run (commander keeps parsed state on it). */
function program(io: FlashIo, done: (code: number) => void): Command {
  const root = new Command('flash');
  root
    .description('Operate a flash-sale engine over its HTTP API: SKUs, drops, stock, events and the ERP backlog.')
    .option('--url <url>', `the engine (env FLASH_URL; default ${defaultUrl})`)
    .option('--token <token>', 'an operator (or admin) token; reads need viewer (env FLASH_TOKEN)')
    .option('--timeout <seconds>', 'give up on a call after this long (default 10)')
    .exitOverride()
    .configureOutput({ writeOut: (s) => io.stdout(s), writeErr: (s) => io.stderr(s) })
    .showSuggestionAfterError(true)
    .addHelpText('after', helpAfter);

  const conn = (cmd: Command) => connection(cmd.optsWithGlobals<GlobalOptions>(), io);
  const run = (f: (cmd: Command) => Promise<number>) => async (...args: unknown[]): Promise<void> => {
    done(await f(args[args.length - 1] as Command));
  };

  root.command('apply')
    .description('create or update SKUs and drops declared in a JSON or YAML file; prints created / updated / unchanged')
    .argument('<file>', 'a .json, .yaml or .yml file ({skus: [...], drops: [...]}, one SKU or one drop); - reads stdin')
    .option('--dry-run', 'check the file and show what would change; send nothing')
    .option('--reason <text>', 'the audit trail\'s reason for SKUs that give none')
    .option('--json', 'print the outcome of each entry as JSON')
    .addHelpText('after', `
File (YAML shown; JSON takes the same shape):
  drops:
    - dropId: spring-drop
      queue: { mode: fifo, admitPerSecond: 200, admitSeconds: 120 }
  skus:
    - sku: moutai-2026
      stock: 10000          # used on create only; change it later with flash stock adjust
      maxPerBuyer: 2
      dropId: spring-drop
      reason: spring launch
Drops are applied first, so a queue is in place before its SKUs go on sale.`)
    .action(run(async (cmd) => {
      const o = cmd.opts<{ dryRun?: boolean; reason?: string; json?: boolean }>();
      return runApply(conn(cmd), io, cmd.args[0]!, { dryRun: o.dryRun === true, reason: o.reason, json: o.json === true });
    }));

  const stock = root.command('stock').description('change stock with a reason, or import stock in bulk');
  stock.command('adjust')
    .description('restock (+n) or write off (-n) units of a SKU; the reason goes into its audit trail')
    .argument('<sku>').argument('<delta>', 'a non-zero integer: +50 restocks, -5 writes off')
    .requiredOption('--reason <text>', 'why (1..200 characters), kept in the audit trail')
    .option('--json', 'print the SKU view as JSON')
    .action(run(async (cmd) => {
      const o = cmd.opts<{ reason: string; json?: boolean }>();
      return stockAdjust(conn(cmd), io, cmd.args[0]!, cmd.args[1]!, o.reason, o.json === true);
    }));
  stock.command('import')
    .description('create SKUs from a CSV or JSON stock file (all lines checked first: one bad line and nothing is sent)')
    .argument('<file>', 'a CSV with a header (sku,stock,...) or a JSON array; - reads stdin')
    .option('--dry-run', 'validate only')
    .option('--format <format>', 'csv or json (default: from the file name)')
    .option('--concurrency <n>', 'calls at once, 1..64 (default 4)')
    .action(run(async (cmd) => {
      const o = cmd.opts<{ dryRun?: boolean; format?: string; concurrency?: string }>();
      return runStockImport(conn(cmd), io, cmd.args[0]!, { dryRun: o.dryRun === true, format: o.format, concurrency: o.concurrency });
    }));

  const sku = root.command('sku').description('read SKUs: one, the listing, the audit trail');
  sku.command('get').description('one SKU\'s stock figures and policy').argument('<sku>').option('--json', 'print the API\'s JSON')
    .action(run(async (cmd) => skuGet(conn(cmd), io, cmd.args[0]!, cmd.opts().json === true)));
  sku.command('list').description('every SKU, in sku order (follows the listing\'s pages)').option('--limit <n>', 'list at most n SKUs').option('--json', 'print {items, next} as JSON')
    .action(run(async (cmd) => skuList(conn(cmd), io, limitOption(cmd.opts<{ limit?: string }>().limit), cmd.opts().json === true)));
  sku.command('audit').description('a SKU\'s changes of policy and stock, newest first: when, who, what, why').argument('<sku>')
    .option('--limit <n>', 'show at most n changes').option('--json', 'print {items, next} as JSON')
    .action(run(async (cmd) => skuAudit(conn(cmd), io, cmd.args[0]!, limitOption(cmd.opts<{ limit?: string }>().limit), cmd.opts().json === true)));

  const drop = root.command('drop').description('read drops: queue status, a buyer\'s entry');
  drop.command('status').description('a drop\'s queue figures, seed hash and revealed seed, and its SKUs').argument('<dropId>').option('--json', 'print the API\'s JSON')
    .action(run(async (cmd) => dropStatus(conn(cmd), io, cmd.args[0]!, cmd.opts().json === true)));
  drop.command('entry').description('a buyer\'s place in a drop\'s queue').argument('<dropId>').argument('<buyerId>').option('--json', 'print the API\'s JSON')
    .action(run(async (cmd) => dropEntry(conn(cmd), io, cmd.args[0]!, cmd.args[1]!, cmd.opts().json === true)));

  const events = root.command('events').description('stock events from the console\'s live stream');
  events.command('tail')
    .description('print stock events (low_stock, sold_out, restocked) as they happen, until Ctrl-C')
    .option('--sku <sku>', 'only this SKU\'s events')
    .option('--count <n>', 'exit 0 after n events')
    .option('--json', 'print each event\'s JSON, one per line')
    .action(run(async (cmd) => {
      const o = cmd.opts<{ sku?: string; count?: string; json?: boolean }>();
      return runEventsTail(conn(cmd), io, { sku: o.sku, count: positiveInt(o.count, '--count'), json: o.json === true });
    }));

  root.command('erp')
    .description('the ERP hand-off: backlog, oldest undelivered, sold vs delivered per SKU')
    .option('--json', 'print the API\'s JSON')
    .action(run(async (cmd) => erpStatus(conn(cmd), io, cmd.opts().json === true)));

  registerRehearse(root, io, run);

  // A usage error names the command's usage on the same line.
  const walk = (cmd: Command, path: string[]): void => {
    const full = [...path, cmd.name()];
    cmd.configureOutput({
      outputError: (str, write) => {
        const said = str.replace(/^error: /, '').trim().replace(/\s*\n\(Did you mean (.*)\?\)$/, ' (did you mean $1?)').replace(/\s+/g, ' ');
        write(`flash: ${said} (usage: ${full.join(' ')} ${cmd.usage()}; see ${full.join(' ')} --help)\n`);
      },
    });
    for (const sub of cmd.commands) walk(sub, full);
  };
  walk(root, []);
  return root;
}

/** Runs `flash` with `argv` (the words after the command name); resolves to the exit code. */
export async function runFlash(argv: readonly string[], io: FlashIo = defaultIo): Promise<number> {
  let code: number = Exit.ok;
  const root = program(io, (c) => {
    code = c;
  });
  try {
    if (argv.length === 0) {
      root.outputHelp({ error: true });
      return Exit.usage;
    }
    await root.parseAsync([...argv], { from: 'user' });
    return code;
  } catch (e) {
    if (e instanceof CommanderError) return e.exitCode === 0 ? Exit.ok : Exit.usage;
    if (e instanceof CliError) {
      io.stderr(`flash: ${e.message}\n`);
      return e.exitCode;
    }
    io.stderr(`flash: unexpected error (a bug of the tool; please report it): ${e instanceof Error ? e.stack ?? e.message : String(e)}\n`);
    return Exit.internal;
  }
}

function isMain(): boolean {
  if (process.argv[1] === undefined) return false;
  try {
    // Through npm's bin link, argv[1] is the link: compare real paths.
    return import.meta.url === pathToFileURL(realpathSync(process.argv[1])).href;
  } catch {
    return false;
  }
}

if (isMain()) {
  const stop = new AbortController();
  let interrupted = false;
  process.on('SIGINT', () => {
    if (interrupted) process.exit(130);
    interrupted = true;
    stop.abort();
    // events tail stops cleanly (exit 0); anything else is cut short.
    setTimeout(() => process.exit(130), 500).unref();
  });
  process.stdout.on('error', (e: NodeJS.ErrnoException) => {
    if (e.code === 'EPIPE') process.exit(process.exitCode ?? 0); // | head: the reader has what it wanted
    throw e;
  });
  void runFlash(process.argv.slice(2), { ...defaultIo, signal: stop.signal }).then((code) => {
    process.exitCode = code;
    if (interrupted) process.exit(code);
  });
}
