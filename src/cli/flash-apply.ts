// `flash apply FILE`: SKUs and drops declared in a JSON or YAML file, made so on the engine.
//
//   { skus: [{sku, stock?, mode?, holdSeconds?, ..., reason?}], drops: [{dropId, queue?}] }
//   (or one SKU object, one drop object, or a list of both)
//
// The whole file is checked first with the API's own rules (src/gateway/validate.ts), and the
// file's drops are read to check that a new queue has what the engine needs (its mode); one
// bad entry and nothing is sent (exit 2). Then each entry is read back (GET) and compared:
// what already matches is `unchanged` and not sent (no audit noise), the rest is PUT and
// reported `created` or `updated` with the fields that change. A channel policy is always
// sent (the SKU view cannot tell a policy from channels that merely have units; the engine
// records nothing when nothing changes) and the audit trail says whether it changed. Drops
// go first, so a queue is in place before the SKUs that join its drop go on sale; a SKU
// whose drop (in the file) failed is not sent. `stock` applies on create only, as in the API.

import { LineCounter, parseDocument } from 'yaml';
import { skuFields } from '../domain/index.js';
import { InvalidRequest, dropPutCommand, skuName, upsertCommand } from '../gateway/validate.js';
import { CliError, Exit, apiError, call, failure, guarded, notEngine, seg, type Answer, type Connection, type ExitCode, type FlashIo } from './flash-client.js';
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
  /** Where its queue is in the file (for an error about the queue). */
  queueWhere?: string;
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
    if (errors.length === before && name !== null) {
      entries.push(kind === 'sku' ? { kind, name, body, where: at } : { kind, name, body, where: at, queueWhere: own(item, 'queue') ? where([...path, 'queue']) : at });
    }
  }
  if (errors.length > 0) {
    throw new CliError(Exit.usage, `${file}: ${errors.length} error${errors.length === 1 ? '' : 's'}; nothing was applied\n  ${errors.slice(0, 100).join('\n  ')}${errors.length > 100 ? `\n  ... and ${errors.length - 100} more` : ''}`);
  }
  if (entries.length === 0) throw new CliError(Exit.usage, `${file} declares no SKU and no drop`);
  return entries;
}

/** A channel policy as comparable sorted [name, maxUnits|null] pairs: the wire form ({name: {maxUnits}}), or the audit trail's pairs. */
function channelPairs(v: unknown): string {
  if (v === null || v === undefined) return '[]';
  const pairs = Array.isArray(v)
    ? v.map((p) => (Array.isArray(p) ? [p[0], p[1] ?? null] : [p, null]))
    : Object.keys(v as Obj).map((name) => {
      const c = (v as Obj)[name] as Obj | null;
      const cap = c !== null && typeof c === 'object' && own(c, 'maxUnits') ? c.maxUnits : null;
      return [name, cap ?? null];
    });
  return JSON.stringify(pairs.sort((a, b) => String(a[0]).localeCompare(String(b[0]))));
}

const channelsText = (pairs: string): string => (pairs === '[]' ? 'none' : pairs);

/**
 * Whether a SKU view's channels may differ from its policy: the view lists every channel
 * that has units, with maxUnits null when the policy does not cap it or when there is no
 * policy at all, so such a channel may or may not be in the policy. (A channel without units
 * is listed only when the policy names it, and a policy names at least one channel.)
 */
function channelsAmbiguous(view: Obj): boolean {
  const channels = view.channels;
  if (!isObj(channels)) return false;
  return Object.values(channels).some((c) => isObj(c) && (c.maxUnits ?? null) === null && (Number(c.reserved ?? 0) + Number(c.sold ?? 0)) > 0);
}

/**
 * `field old → new` for each field of the body that differs from the engine's view.
 * `policy`: the SKU's channel policy (as channelPairs gives it) when known apart from the
 * view, which cannot always show it (channelsAmbiguous).
 */
export function changes(entry: Entry, view: Obj, policy?: string): string[] {
  const out: string[] = [];
  if (entry.kind === 'sku') {
    for (const k of Object.keys(entry.body)) {
      if (k === 'stock' || k === 'reason') continue;
      const want = entry.body[k];
      const have = view[k];
      if (k === 'channels') {
        const before = policy ?? channelPairs(have);
        if (channelPairs(want) !== before) out.push(`channels ${channelsText(before)} → ${channelsText(channelPairs(want))}`);
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

/**
 * What the engine refuses in a queue that is new (its drop does not exist, or has no queue
 * yet) beyond the file's own checks: it has nothing to take the missing fields from.
 */
export function newQueueError(queue: unknown): string | null {
  if (!isObj(queue)) return null;
  if (queue.mode === undefined) return 'queue.mode is required for a new queue: fifo, random or draw';
  if (queue.mode === 'draw') {
    if (queue.closesAt === undefined) return 'queue.closesAt is required for a draw';
    if (typeof queue.opensAt === 'number' && typeof queue.closesAt === 'number' && queue.closesAt <= queue.opensAt) return 'queue.closesAt must be after queue.opensAt';
  }
  return null;
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

/** An entry as the engine has it: null when it does not exist yet. */
type Read = { view: Obj | null } | { failed: ApplyResult };

function failedResult(conn: Connection, e: Entry, what: string, a: Answer): ApplyResult {
  const err = a.status >= 200 && a.status < 300 ? notEngine(conn, what, a) : failure(conn, what, a);
  return { entry: e, outcome: 'failed', detail: err.message, note: null, exit: err.exitCode };
}

function thrownResult(e: Entry, err: unknown): ApplyResult {
  if (!(err instanceof CliError)) throw err;
  return { entry: e, outcome: 'failed', detail: err.message, note: null, exit: err.exitCode };
}

async function readEntry(conn: Connection, e: Entry): Promise<Read> {
  try {
    const current = await call(conn, 'GET', path(e));
    if (current.status === 404 && ['unknown_sku', 'unknown_drop'].includes(apiError(current).code)) return { view: null };
    if (current.status !== 200 || !isObj(current.body)) return { failed: failedResult(conn, e, `GET ${path(e)}`, current) };
    return { view: current.body };
  } catch (err) {
    return { failed: thrownResult(e, err) };
  }
}

/** The newest entry of a SKU's audit trail (null: none), or undefined when it cannot be read. */
async function newestAudit(conn: Connection, sku: string): Promise<Obj | null | undefined> {
  try {
    const a = await call(conn, 'GET', `/v1/skus/${seg(sku)}/audit?limit=1`);
    if (a.status !== 200 || !isObj(a.body) || !Array.isArray(a.body.items)) return undefined;
    const first: unknown = a.body.items[0];
    return isObj(first) ? first : null;
  } catch {
    return undefined;
  }
}

/**
 * A SKU's channel policy from its audit trail (channelPairs form): the newest entry that
 * records channels (a create records every field, an update the fields it changed).
 * undefined when the trail cannot be read or no longer holds one.
 */
async function policyFromAudit(conn: Connection, sku: string): Promise<string | undefined> {
  let cursor: string | null = null;
  for (let page = 0; page < 20; page++) {
    const q = new URLSearchParams({ limit: '1000' });
    if (cursor !== null) q.set('cursor', cursor);
    let a: Answer;
    try {
      a = await call(conn, 'GET', `/v1/skus/${seg(sku)}/audit?${q.toString()}`);
    } catch {
      return undefined;
    }
    if (a.status !== 200 || !isObj(a.body) || !Array.isArray(a.body.items)) return undefined;
    for (const item of a.body.items as unknown[]) {
      if (isObj(item) && isObj(item.after) && own(item.after, 'channels')) return channelPairs(item.after.channels);
    }
    cursor = typeof a.body.next === 'string' ? a.body.next : null;
    if (cursor === null) return undefined;
  }
  return undefined;
}

/** `field old → new` of an audit entry's change. */
function auditChange(entry: Obj): string[] {
  const before = isObj(entry.before) ? entry.before : {};
  const after = isObj(entry.after) ? entry.after : {};
  return Object.keys(after).map((k) => (k === 'channels'
    ? `channels ${channelsText(channelPairs(before[k]))} → ${channelsText(channelPairs(after[k]))}`
    : `${k} ${compact(before[k])} → ${compact(after[k])}`));
}

async function applyDrop(conn: Connection, e: DropEntry, read: Read, dryRun: boolean): Promise<ApplyResult> {
  if ('failed' in read) return read.failed;
  const missing = read.view === null;
  const diff = missing ? [] : changes(e, read.view!);
  if (!missing && diff.length === 0) return { entry: e, outcome: 'unchanged', detail: '', note: null, exit: Exit.ok };
  if (dryRun) return { entry: e, outcome: missing ? 'would create' : 'would update', detail: diff.join(', '), note: null, exit: Exit.ok };
  try {
    const put = await call(conn, 'PUT', path(e), e.body);
    if ((put.status === 200 || put.status === 201) && !isObj(put.body)) return failedResult(conn, e, `PUT ${path(e)}`, put);
    if (put.status === 201) return { entry: e, outcome: 'created', detail: '', note: null, exit: Exit.ok };
    if (put.status === 200) return { entry: e, outcome: 'updated', detail: diff.join(', '), note: null, exit: Exit.ok };
    return failedResult(conn, e, `PUT ${path(e)}`, put);
  } catch (err) {
    return thrownResult(e, err);
  }
}

/**
 * A SKU: created when missing; else the fields that differ are PUT, and `unchanged` is not
 * sent. A channel policy given for an existing SKU is always sent: the view cannot show
 * whether it is in force (channelsAmbiguous), and the engine records no audit entry when
 * nothing changes; whether it changed is then read from the audit trail.
 */
async function applySku(conn: Connection, e: SkuEntry, dryRun: boolean): Promise<ApplyResult> {
  const read = await readEntry(conn, e);
  if ('failed' in read) return read.failed;
  const view = read.view;
  try {
    let diff: string[] = [];
    let note: string | null = null;
    const channelsGiven = own(e.body, 'channels');
    if (view !== null) {
      if (typeof e.body.stock === 'number' && e.body.stock !== view.onHand) {
        note = `sku ${e.name} exists: stock ${e.body.stock} in the file applies on create only (onHand is ${String(view.onHand)}); change it with flash stock adjust ${e.name} DELTA --reason TEXT`;
      }
      if (dryRun) {
        const policy = channelsGiven && channelsAmbiguous(view) ? await policyFromAudit(conn, e.name) : undefined;
        diff = changes(e, view, policy);
        if (diff.length === 0 && channelsGiven && channelsAmbiguous(view) && policy === undefined) {
          diff = [`channels → ${channelsText(channelPairs(e.body.channels))} (the SKU view cannot show whether this policy is in force; flash apply sends it)`];
        }
        return { entry: e, outcome: diff.length === 0 ? 'unchanged' : 'would update', detail: diff.join(', '), note, exit: Exit.ok };
      }
      diff = changes(e, view);
      if (diff.length === 0 && !channelsGiven) return { entry: e, outcome: 'unchanged', detail: '', note, exit: Exit.ok };
    } else if (dryRun) {
      return { entry: e, outcome: 'would create', detail: '', note, exit: Exit.ok };
    }
    const before = view !== null && channelsGiven ? await newestAudit(conn, e.name) : undefined;
    const put = await call(conn, 'PUT', path(e), e.body);
    if ((put.status === 200 || put.status === 201) && !isObj(put.body)) return failedResult(conn, e, `PUT ${path(e)}`, put);
    if (put.status === 201) return { entry: e, outcome: 'created', detail: '', note, exit: Exit.ok };
    if (put.status !== 200) return failedResult(conn, e, `PUT ${path(e)}`, put);
    if (!channelsGiven) return { entry: e, outcome: 'updated', detail: diff.join(', '), note, exit: Exit.ok };
    // Sent with its channel policy: the audit trail tells whether anything changed.
    const after = before === undefined ? undefined : await newestAudit(conn, e.name);
    if (before !== undefined && after !== undefined) {
      const recorded = after !== null && JSON.stringify(after) !== JSON.stringify(before) && after.action === 'update';
      return recorded
        ? { entry: e, outcome: 'updated', detail: auditChange(after).join(', '), note, exit: Exit.ok }
        : { entry: e, outcome: 'unchanged', detail: '', note, exit: Exit.ok };
    }
    // The trail could not be read: never call a change unchanged.
    const unsure = `channels ${channelsText(channelPairs(e.body.channels))} sent (whether the policy changed could not be read back: flash sku audit ${e.name} shows it)`;
    return { entry: e, outcome: 'updated', detail: diff.length > 0 ? diff.join(', ') : unsure, note, exit: Exit.ok };
  } catch (err) {
    return thrownResult(e, err);
  }
}

/** Runs `f` over the items, `concurrency` at a time; results in the items' order. */
async function pool<T, R>(items: readonly T[], concurrency: number, f: (item: T) => Promise<R>): Promise<R[]> {
  const out: R[] = new Array(items.length);
  let next = 0;
  const worker = async (): Promise<void> => {
    while (next < items.length) {
      const i = next++;
      out[i] = await f(items[i]!);
    }
  };
  await Promise.all(Array.from({ length: Math.min(concurrency, items.length) }, worker));
  return out;
}

/**
 * Applies the entries: drops first, so a queue is in place before its SKUs go on sale, then
 * the SKUs; a few at a time, results in the file's order within each kind. Before anything
 * is sent, the drops are read and a new queue that the engine would refuse for want of a
 * field (its mode) fails the whole file (exit 2). A SKU whose dropId names a drop of the
 * file that failed is not sent: on sale without its drop's queue, anyone could reserve it.
 */
export async function applyEntries(conn: Connection, entries: readonly Entry[], opts: { dryRun: boolean; reason?: string; concurrency?: number; file?: string }): Promise<ApplyResult[]> {
  const withReason = entries.map((e): Entry => (e.kind === 'sku' && opts.reason !== undefined && !own(e.body, 'reason') ? { ...e, body: { ...e.body, reason: opts.reason } } : e));
  const concurrency = opts.concurrency ?? 4;
  const drops = withReason.filter((e): e is DropEntry => e.kind === 'drop');
  const skus = withReason.filter((e): e is SkuEntry => e.kind === 'sku');

  const reads = await pool(drops, concurrency, (e) => readEntry(conn, e));
  const errors: string[] = [];
  drops.forEach((e, i) => {
    const read = reads[i]!;
    if ('failed' in read || (read.view !== null && read.view.queue !== null && read.view.queue !== undefined)) return;
    const bad = newQueueError(e.body.queue);
    if (bad !== null) errors.push(`${e.queueWhere ?? e.where}: ${bad}${read.view === null ? ` (drop ${e.name} does not exist yet)` : ` (drop ${e.name} has no queue yet)`}`);
  });
  if (errors.length > 0) {
    const file = opts.file ?? 'the file';
    throw new CliError(Exit.usage, `${file}: ${errors.length} error${errors.length === 1 ? '' : 's'}; nothing was applied\n  ${errors.join('\n  ')}`);
  }

  const dropResults = await pool(drops.map((e, i) => ({ e, read: reads[i]! })), concurrency, ({ e, read }) => applyDrop(conn, e, read, opts.dryRun));
  const failedDrops = new Map<string, ApplyResult>();
  for (const r of dropResults) if (r.outcome === 'failed') failedDrops.set(r.entry.name, r);
  const skuResults = await pool(skus, concurrency, async (e): Promise<ApplyResult> => {
    const drop = typeof e.body.dropId === 'string' ? failedDrops.get(e.body.dropId) : undefined;
    if (drop !== undefined) return { entry: e, outcome: 'failed', detail: `not sent: its drop ${drop.entry.name} failed: ${drop.detail}`, note: null, exit: drop.exit };
    return applySku(conn, e, opts.dryRun);
  });
  return [...dropResults, ...skuResults];
}

/** `flash apply`: prints one line per entry and a summary; the exit code is the worst of the entries. */
export const runApply = guarded(async (conn: Connection, io: FlashIo, file: string, opts: { dryRun: boolean; reason?: string; json: boolean }): Promise<ExitCode> => {
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
  const results = await applyEntries(conn, entries, { ...opts, file });
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
});
