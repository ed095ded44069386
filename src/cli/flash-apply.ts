// `flash apply FILE`: SKUs and drops declared in a JSON or YAML file, made so on the engine.
//
//   { skus: [{sku, stock?, mode?, holdSeconds?, ..., reason?}], drops: [{dropId, queue?}] }
//   (or one SKU object, one drop object, or a list of both)
//
// The whole file is checked first with the API's own rules (src/gateway/validate.ts); one bad
// entry and nothing is sent (exit 2). Then each entry is read back (GET) and compared: what
// already matches is `unchanged` and not sent (no audit noise), the rest is PUT and reported
// `created` or `updated` with the fields that change. Drops go first, so a queue is in place
// before the SKUs that join its drop go on sale. `stock` applies on create only, as in the API.

import { LineCounter, parseDocument } from 'yaml';
import { skuFields } from '../domain/index.js';
import { InvalidRequest, dropPutCommand, skuName, upsertCommand } from '../gateway/validate.js';
import { CliError, Exit, apiError, call, exitOf, failure, seg, type Answer, type Connection, type ExitCode, type FlashIo } from './flash-client.js';
import { compact } from './flash-format.js';

type Obj = Record<string, unknown>;

export interface SkuEntry {
  kind: 'sku';
  name: string;
  /** The PUT body: the file's fields (reason included). */
  body: Obj;
  where: string;
}

export interface DropEntry {
  kind: 'drop';
  name: string;
  body: Obj;
  where: string;
}

export type Entry = SkuEntry | DropEntry;

const skuKeys = ['sku', ...skuFields.map((f) => f.wire), 'reason'];
const dropKeys = ['dropId', 'queue'];

const own = (o: Obj, k: string): boolean => Object.prototype.hasOwnProperty.call(o, k);
const isObj = (v: unknown): v is Obj => v !== null && typeof v === 'object' && !Array.isArray(v);

function unknownKey(key: string, known: readonly string[], what: string): string {
  const near = known.find((k) => k.toLowerCase() === key.toLowerCase());
  return `unknown field ${key}${near === undefined ? '' : ` (did you mean ${near}?)`}; a ${what} has ${known.join(', ')}`;
}

/** Reads a file's text as JSON (`.json`, or text that starts like JSON on stdin) or YAML. */
export function parseSpecText(text: string, file: string): { value: unknown; line: (path: (string | number)[]) => number | null } {
  const json = /\.json$/i.test(file) || (file === '-' && /^\s*[[{]/.test(text) && !/\.ya?ml$/i.test(file));
  if (json) {
    try {
      return { value: JSON.parse(text.replace(/^\uFEFF/, '')), line: () => null };
    } catch (e) {
      throw new CliError(Exit.usage, `${file} is not valid JSON: ${(e as Error).message}`);
    }
  }
  const lineCounter = new LineCounter();
  const doc = parseDocument(text, { lineCounter, prettyErrors: false, uniqueKeys: true });
  if (doc.errors.length > 0) {
    const e = doc.errors[0]!;
    const at = lineCounter.linePos(e.pos[0]);
    throw new CliError(Exit.usage, `${file}:${at.line}:${at.col} is not valid YAML: ${e.message.split('\n')[0]}${doc.errors.length > 1 ? ` (and ${doc.errors.length - 1} more errors)` : ''}`);
  }
  let value: unknown;
  try {
    value = doc.toJS({ maxAliasCount: 100 });
  } catch (e) {
    throw new CliError(Exit.usage, `${file} cannot be read: ${(e as Error).message}`);
  }
  return {
    value,
    line: (path) => {
      const node = doc.getIn(path, true) as { range?: [number, number, number] } | undefined;
      return node?.range === undefined ? null : lineCounter.linePos(node.range[0]).line;
    },
  };
}

/**
 * The entries of a spec, checked with the API's rules. Every problem is listed
 * (`file:line: skus[2].maxPerBuyer: ...`), and then nothing is applied (exit 2).
 */
export function readSpec(text: string, file: string): Entry[] {
  const { value, line } = parseSpecText(text, file);
  const errors: string[] = [];
  const entries: Entry[] = [];
  const where = (path: (string | number)[]): string => {
    const l = line(path);
    const label = path.map((p, i) => (typeof p === 'number' ? `[${p}]` : i === 0 ? p : `.${p}`)).join('');
    return `${file}${l === null ? '' : `:${l}`}${label === '' ? '' : `: ${label}`}`;
  };
  const items: { item: unknown; path: (string | number)[]; kind: 'sku' | 'drop' | null }[] = [];
  if (isObj(value) && (own(value, 'skus') || own(value, 'drops'))) {
    for (const k of Object.keys(value)) if (k !== 'skus' && k !== 'drops') errors.push(`${where([k])}: unknown top-level field ${k}; the file has skus and drops`);
    for (const [key, kind] of [['skus', 'sku'], ['drops', 'drop']] as const) {
      const list = value[key];
      if (list === undefined || list === null) continue;
      if (!Array.isArray(list)) {
        errors.push(`${where([key])}: ${key} must be a list`);
        continue;
      }
      list.forEach((item, i) => items.push({ item, path: [key, i], kind }));
    }
  } else if (Array.isArray(value)) {
    value.forEach((item, i) => items.push({ item, path: [i], kind: null }));
  } else if (isObj(value)) {
    items.push({ item: value, path: [], kind: null });
  } else {
    throw new CliError(Exit.usage, `${file} must hold {skus: [...], drops: [...]}, one SKU {sku: ...} or one drop {dropId: ...}`);
  }
  const seen = new Map<string, string>();
  for (const { item, path, kind: declared } of items) {
    const at = where(path);
    if (!isObj(item)) {
      errors.push(`${at}: must be an object`);
      continue;
    }
    const kind = declared ?? (own(item, 'sku') ? 'sku' : own(item, 'dropId') ? 'drop' : null);
    if (kind === null) {
      errors.push(`${at}: neither a SKU (it has no sku field) nor a drop (no dropId field)`);
      continue;
    }
    const before = errors.length;
    const keyName = kind === 'sku' ? 'sku' : 'dropId';
    let name: string | null = null;
    try {
      const raw = own(item, keyName) ? item[keyName] : undefined;
      name = skuName(raw, keyName);
    } catch (e) {
      const quote = typeof item[keyName] === 'number' ? ' (quote it in YAML)' : '';
      errors.push(`${where([...path, keyName])}: ${(e as Error).message}${quote}`);
    }
    const known = kind === 'sku' ? skuKeys : dropKeys;
    for (const k of Object.keys(item)) if (!known.includes(k)) errors.push(`${where([...path, k])}: ${unknownKey(k, known, kind === 'sku' ? 'SKU' : 'drop')}`);
    const body: Obj = {};
    for (const k of Object.keys(item)) if (k !== keyName && known.includes(k)) body[k] = item[k];
    if (errors.length === before) {
      const check = (run: () => void): void => {
        try {
          run();
        } catch (e) {
          if (!(e instanceof InvalidRequest)) throw e;
          const f = e.field.split('.')[0]!;
          errors.push(`${where(own(item, f) ? [...path, f] : path)}: ${e.message}`);
        }
      };
      if (kind === 'sku') {
        // Field by field, so that every bad field is named; then the rules across fields.
        for (const k of Object.keys(body)) check(() => upsertCommand({ [k]: body[k] }, 'x'));
        if (errors.length === before) check(() => upsertCommand(body, name!));
      } else {
        check(() => dropPutCommand(body, name!, '', ''));
      }
    }
    if (name !== null) {
      const id = `${kind} ${name}`;
      const first = seen.get(id);
      if (first !== undefined) errors.push(`${at}: ${kind} ${name} is already declared at ${first}`);
      else seen.set(id, at);
    }
    if (errors.length === before && name !== null) entries.push({ kind, name, body, where: at } as Entry);
  }
  if (errors.length > 0) {
    throw new CliError(Exit.usage, `${file}: ${errors.length} error${errors.length === 1 ? '' : 's'}; nothing was applied\n  ${errors.slice(0, 100).join('\n  ')}${errors.length > 100 ? `\n  ... and ${errors.length - 100} more` : ''}`);
  }
  if (entries.length === 0) throw new CliError(Exit.usage, `${file} declares no SKU and no drop`);
  return entries;
}

/** The file's channel policy as comparable [name, maxUnits|null] pairs, sorted. */
function channelPairs(v: unknown): string {
  if (v === null || v === undefined) return '[]';
  const pairs = Object.keys(v as Obj).map((name) => {
    const c = (v as Obj)[name] as Obj | null;
    const cap = c !== null && typeof c === 'object' && own(c, 'maxUnits') ? c.maxUnits : null;
    return [name, cap ?? null];
  });
  return JSON.stringify(pairs.sort((a, b) => String(a[0]).localeCompare(String(b[0]))));
}

/** `field old → new` for each field of the body that differs from the engine's view. */
export function changes(entry: Entry, view: Obj): string[] {
  const out: string[] = [];
  if (entry.kind === 'sku') {
    for (const k of Object.keys(entry.body)) {
      if (k === 'stock' || k === 'reason') continue;
      const want = entry.body[k];
      const have = view[k];
      if (k === 'channels') {
        if (channelPairs(want) !== channelPairs(have)) out.push(`channels ${channelPairs(have)} → ${channelPairs(want)}`);
        continue;
      }
      if (JSON.stringify(want ?? null) !== JSON.stringify(have ?? null)) out.push(`${k} ${compact(have)} → ${compact(want)}`);
    }
    return out;
  }
  if (!own(entry.body, 'queue')) return out;
  const want = entry.body.queue;
  const have = (view.queue ?? null) as Obj | null;
  if (want === null) return have === null ? out : ['queue removed'];
  if (have === null) return [`queue none → ${compact(want)}`];
  for (const k of Object.keys(want as Obj)) {
    if ((want as Obj)[k] !== have[k]) out.push(`queue.${k} ${compact(have[k])} → ${compact((want as Obj)[k])}`);
  }
  return out;
}

export interface ApplyResult {
  entry: Entry;
  outcome: 'created' | 'updated' | 'unchanged' | 'would create' | 'would update' | 'failed';
  detail: string;
  /** A remark that is not a failure (stock ignored on an existing SKU). */
  note: string | null;
  exit: ExitCode;
}

const path = (e: Entry): string => `/v1/${e.kind === 'sku' ? 'skus' : 'drops'}/${seg(e.name)}`;

async function applyOne(conn: Connection, e: Entry, dryRun: boolean): Promise<ApplyResult> {
  const fail = (what: string, a: Answer): ApplyResult =>
    ({ entry: e, outcome: 'failed', detail: failure(conn, what, a).message, note: null, exit: exitOf(a.status) });
  try {
    const current = await call(conn, 'GET', path(e));
    let diff: string[] = [];
    let note: string | null = null;
    const missing = current.status === 404 && ['unknown_sku', 'unknown_drop'].includes(apiError(current).code);
    if (!missing) {
      if (current.status !== 200) return fail(`GET ${path(e)}`, current);
      const view = current.body as Obj;
      diff = changes(e, view);
      if (e.kind === 'sku' && typeof e.body.stock === 'number' && e.body.stock !== view.onHand) {
        note = `sku ${e.name} exists: stock ${e.body.stock} in the file applies on create only (onHand is ${String(view.onHand)}); change it with flash stock adjust ${e.name} DELTA --reason TEXT`;
      }
      if (diff.length === 0) return { entry: e, outcome: 'unchanged', detail: '', note, exit: Exit.ok };
    }
    if (dryRun) return { entry: e, outcome: missing ? 'would create' : 'would update', detail: diff.join(', '), note, exit: Exit.ok };
    const put = await call(conn, 'PUT', path(e), e.body);
    if (put.status === 201) return { entry: e, outcome: 'created', detail: '', note, exit: Exit.ok };
    if (put.status === 200) return { entry: e, outcome: 'updated', detail: diff.join(', '), note, exit: Exit.ok };
    return fail(`PUT ${path(e)}`, put);
  } catch (err) {
    if (!(err instanceof CliError)) throw err;
    return { entry: e, outcome: 'failed', detail: err.message, note: null, exit: err.exitCode };
  }
}

/** Applies the entries (drops first), a few at a time; results in the file's order within each kind. */
export async function applyEntries(conn: Connection, entries: readonly Entry[], opts: { dryRun: boolean; reason?: string; concurrency?: number }): Promise<ApplyResult[]> {
  const withReason = entries.map((e): Entry => (e.kind === 'sku' && opts.reason !== undefined && !own(e.body, 'reason') ? { ...e, body: { ...e.body, reason: opts.reason } } : e));
  const results: ApplyResult[] = [];
  for (const kind of ['drop', 'sku'] as const) {
    const batch = withReason.filter((e) => e.kind === kind);
    const out: ApplyResult[] = new Array(batch.length);
    let next = 0;
    const worker = async (): Promise<void> => {
      while (next < batch.length) {
        const i = next++;
        out[i] = await applyOne(conn, batch[i]!, opts.dryRun);
      }
    };
    await Promise.all(Array.from({ length: Math.min(opts.concurrency ?? 4, batch.length) }, worker));
    results.push(...out);
  }
  return results;
}

/** `flash apply`: prints one line per entry and a summary; the exit code is the worst of the entries. */
export async function runApply(conn: Connection, io: FlashIo, file: string, opts: { dryRun: boolean; reason?: string; json: boolean }): Promise<ExitCode> {
  let text: string;
  try {
    text = io.readFile(file);
  } catch (e) {
    throw new CliError(Exit.usage, `cannot read ${file}: ${(e as Error).message}`);
  }
  if (opts.reason !== undefined) {
    try {
      upsertCommand({ reason: opts.reason }, 'x');
    } catch (e) {
      throw new CliError(Exit.usage, `--reason: ${(e as Error).message}`);
    }
  }
  const entries = readSpec(text, file);
  const results = await applyEntries(conn, entries, opts);
  const count = (o: ApplyResult['outcome']): number => results.filter((r) => r.outcome === o).length;
  if (opts.json) {
    io.stdout(`${JSON.stringify(results.map((r) => ({ kind: r.entry.kind, name: r.entry.name, outcome: r.outcome, detail: r.detail || null, note: r.note })))}\n`);
  } else {
    const width = Math.max(...results.map((r) => r.outcome.length));
    for (const r of results) {
      if (r.outcome === 'failed') continue;
      io.stdout(`${r.outcome.padEnd(width)}  ${r.entry.kind.padEnd(4)} ${r.entry.name}${r.detail === '' ? '' : `: ${r.detail}`}\n`);
    }
  }
  for (const r of results) if (r.note !== null) io.stderr(`flash: note: ${r.note}\n`);
  // An engine that cannot be reached fails every entry alike: said once, with the count.
  const away = results.filter((r) => r.outcome === 'failed' && r.exit === Exit.unreachable && r.detail.startsWith('cannot reach'));
  for (const r of results) {
    if (r.outcome !== 'failed' || away.includes(r)) continue;
    io.stderr(`flash: apply ${r.entry.kind} ${r.entry.name} (${r.entry.where}): ${r.detail}\n`);
  }
  if (away.length > 0) io.stderr(`flash: apply: ${away[0]!.detail} (${away.length} of ${results.length} entries not applied)\n`);
  const drops = results.filter((r) => r.entry.kind === 'drop').length;
  const skus = results.length - drops;
  const parts = opts.dryRun
    ? [`${count('would create')} to create`, `${count('would update')} to update`, `${count('unchanged')} unchanged`, `${count('failed')} failed; dry run, nothing applied`]
    : [`${count('created')} created`, `${count('updated')} updated`, `${count('unchanged')} unchanged`, `${count('failed')} failed`];
  const summary = `${file}: ${drops} drop${drops === 1 ? '' : 's'}, ${skus} SKU${skus === 1 ? '' : 's'}: ${parts.join(', ')}`;
  if (opts.json) io.stderr(`${summary}\n`);
  else io.stdout(`${summary}\n`);
  return results.reduce<ExitCode>((worst, r) => (r.exit > worst ? r.exit : worst), Exit.ok);
}
