// The scenario of `flash rehearse`: a JSON or YAML file naming the SKUs and drops to set up (or
// existing ones to use), the phases of load to run against them, the latency and rate targets,
// and the checks to make afterwards. The whole file is checked first, with the API's own rules
// for SKU and drop bodies (src/gateway/validate.ts), and every problem is named with its line
// (exit 2, nothing sent).
//
//   name: spring drop rehearsal
//   connections: 64                      # default per phase
//   skus:
//     - { sku: hot, stock: 500, maxPerBuyer: 1 }
//     - { sku: tee, count: 50, stock: 100000, holdSeconds: 30 }     # tee-000 .. tee-049
//     - { sku: moutai-2026, existing: true }                         # used as it is, never created
//   drops:
//     - { dropId: line, queue: { mode: fifo, admitPerSecond: 200 } }
//   phases:
//     - { name: hot, kind: sellout, sku: hot, buyers: 2000 }
//     - { name: many, kind: reserve, sku: tee, load: { shape: constant, rps: 1000, seconds: 10 } }
//     - { name: flows, kind: flow, sku: tee, mix: { pay: 60, cancel: 20, abandon: 20 },
//         load: { shape: ramp, from: 200, to: 1000, steps: 4, stepSeconds: 5 } }
//     - { name: line, kind: queue, drop: line, buyers: 500 }
//     - { name: overload, kind: reserve, sku: tee, load: { shape: overload, times: 2, seconds: 5 } }
//   targets:
//     - { phase: many, p99Ms: 50, atRps: 1000 }
//   checks:
//     erpDrainedWithinSeconds: 60

import { Limits, skuFields } from '../domain/index.js';
import { InvalidRequest, dropPutCommand, skuName, upsertCommand } from '../gateway/validate.js';
import { parseSpecText } from './flash-apply.js';
import { CliError, Exit } from './flash-client.js';

type Obj = Record<string, unknown>;

export type Shape =
  | { shape: 'max'; seconds: number }
  | { shape: 'constant'; rps: number; seconds: number }
  | { shape: 'ramp'; from: number; to: number; steps: number; stepSeconds: number }
  | { shape: 'spike'; rps: number; spikeRps: number; seconds: number; spikeSeconds: number; afterSeconds: number }
  | { shape: 'overload'; times: number; seconds: number; probeSeconds: number };

export type Identity = 'buyer' | 'shop';

export interface SkuSpec {
  /** The name in the file (a group's base name). */
  name: string;
  /** The names on the engine: prefixed unless existing; a group's `name-000`.. */
  skus: string[];
  existing: boolean;
  /** The PUT body (reason and stock included); dropId already the engine's name. */
  body: Obj;
  /** The drop (file name) its SKUs join, if any. */
  drop: string | null;
}

export interface DropSpec {
  name: string;
  dropId: string;
  existing: boolean;
  body: Obj;
}

interface PhaseBase {
  name: string;
  connections: number;
  as: Identity | null;
  qty: number;
}

export interface SelloutPhase extends PhaseBase {
  kind: 'sellout';
  sku: string;
  buyers: number;
  pay: boolean;
  load: { shape: 'max' } | { shape: 'constant'; rps: number };
}

export interface ReservePhase extends PhaseBase {
  kind: 'reserve';
  skus: string[];
  load: Shape;
}

export interface FlowPhase extends PhaseBase {
  kind: 'flow';
  skus: string[];
  mix: { pay: number; cancel: number; abandon: number };
  load: Shape;
}

export interface QueuePhase extends PhaseBase {
  kind: 'queue';
  drop: string;
  sku: string;
  buyers: number;
  pollMs: number;
  seconds: number;
  pollers: number;
  load: { shape: 'max' } | { shape: 'constant'; rps: number };
}

export type Phase = SelloutPhase | ReservePhase | FlowPhase | QueuePhase;

export interface Target {
  phase: string;
  p50Ms?: number;
  p99Ms?: number;
  p999Ms?: number;
  atRps?: number;
}

export interface Scenario {
  file: string;
  name: string;
  /** The prefix of every name the run creates. */
  prefix: string;
  timeoutSeconds: number;
  skus: SkuSpec[];
  drops: DropSpec[];
  phases: Phase[];
  targets: Target[];
  /** minOkShare: the least share of 2xx among a phase's answers (sold_out in a sell-out or queue, and 503 overloaded, left out). */
  checks: { erpDrainedWithinSeconds: number | null; shardUnavailableMax: number; minOkShare: number };
}

const isObj = (v: unknown): v is Obj => v !== null && typeof v === 'object' && !Array.isArray(v);
const own = (o: Obj, k: string): boolean => Object.prototype.hasOwnProperty.call(o, k);
const skuPolicyKeys = skuFields.map((f) => f.wire);

/** The longest prefix a run may add to a name (a SKU name is at most 64 characters). */
export const prefixMax = 24;

/** Problems collected with their place in the file, then thrown together. */
class Problems {
  readonly list: string[] = [];
  constructor(private readonly file: string, private readonly lineOf: (path: (string | number)[]) => number | null) {}

  at(path: (string | number)[]): string {
    const l = this.lineOf(path);
    const label = path.map((p, i) => (typeof p === 'number' ? `[${p}]` : i === 0 ? p : `.${p}`)).join('');
    return `${this.file}${l === null ? '' : `:${l}`}${label === '' ? '' : `: ${label}`}`;
  }

  add(path: (string | number)[], message: string): void {
    this.list.push(`${this.at(path)}: ${message}`);
  }

  keys(o: Obj, path: (string | number)[], known: readonly string[], what: string): void {
    for (const k of Object.keys(o)) {
      if (known.includes(k)) continue;
      const near = known.find((n) => n.toLowerCase() === k.toLowerCase());
      this.add([...path, k], `unknown field ${k}${near === undefined ? '' : ` (did you mean ${near}?)`}; ${what} has ${known.join(', ')}`);
    }
  }

  /** An integer in min..max, or the fallback when absent (null: required). */
  int(o: Obj, k: string, path: (string | number)[], min: number, max: number, fallback: number | null): number {
    if (!own(o, k) || o[k] === undefined || o[k] === null) {
      if (fallback === null) this.add(path, `${k} is required`);
      return fallback ?? min;
    }
    const v = o[k];
    if (typeof v !== 'number' || !Number.isInteger(v) || v < min || v > max) {
      this.add([...path, k], `${k} must be an integer in ${min}..${max}`);
      return fallback ?? min;
    }
    return v;
  }

  /** A number in (0, max], or the fallback when absent (null: required). */
  positive(o: Obj, k: string, path: (string | number)[], max: number, fallback: number | null): number {
    if (!own(o, k) || o[k] === undefined || o[k] === null) {
      if (fallback === null) this.add(path, `${k} is required`);
      return fallback ?? 1;
    }
    const v = o[k];
    if (typeof v !== 'number' || !Number.isFinite(v) || v <= 0 || v > max) {
      this.add([...path, k], `${k} must be a number in (0, ${max}]`);
      return fallback ?? 1;
    }
    return v;
  }

  str(o: Obj, k: string, path: (string | number)[], required: boolean): string | null {
    if (!own(o, k) || o[k] === undefined || o[k] === null) {
      if (required) this.add(path, `${k} is required`);
      return null;
    }
    if (typeof o[k] !== 'string' || o[k] === '') {
      this.add([...path, k], `${k} must be a non-empty string${typeof o[k] === 'number' ? ' (quote it in YAML)' : ''}`);
      return null;
    }
    return o[k] as string;
  }
}

const rpsMax = 1_000_000;
const secondsMax = 3600;

/**
 * The caps of one scenario: the requests its load plans (rate x seconds of every step at a
 * rate, the buyers of sell-outs and queues) and the seconds it plans to run. The run keeps a
 * figure per request and per hold, so a plan past them would exhaust the tool's memory long
 * before it ended; a step as fast as answered, and an overload's step at a multiple of the
 * measured capacity, are stopped at the requests cap when they reach it.
 */
export const requestsMax = 2_000_000;

/** A phase passes with at least this share of 2xx answers (sold_out in a sell-out or queue, and 503 overloaded, left out). */
export const defaultMinOkShare = 0.5;
export const loadSecondsMax = 3600;

function readShape(p: Problems, v: unknown, path: (string | number)[], allowed: readonly Shape['shape'][]): Shape | null {
  if (!isObj(v)) {
    p.add(path, `load must be an object like {shape: constant, rps: 1000, seconds: 10}; shapes: ${allowed.join(', ')}`);
    return null;
  }
  const shape = v.shape;
  if (typeof shape !== 'string' || !(allowed as readonly string[]).includes(shape)) {
    p.add([...path, 'shape'], `shape must be one of ${allowed.join(', ')}`);
    return null;
  }
  switch (shape) {
    case 'max':
      p.keys(v, path, ['shape', 'seconds'], 'a max load');
      return { shape, seconds: p.positive(v, 'seconds', path, secondsMax, 10) };
    case 'constant':
      p.keys(v, path, ['shape', 'rps', 'seconds'], 'a constant load');
      return { shape, rps: p.int(v, 'rps', path, 1, rpsMax, null), seconds: p.int(v, 'seconds', path, 1, secondsMax, 10) };
    case 'ramp': {
      p.keys(v, path, ['shape', 'from', 'to', 'steps', 'stepSeconds'], 'a ramp');
      const from = p.int(v, 'from', path, 1, rpsMax, null);
      const to = p.int(v, 'to', path, 1, rpsMax, null);
      return { shape, from, to, steps: p.int(v, 'steps', path, 2, 100, 4), stepSeconds: p.int(v, 'stepSeconds', path, 1, secondsMax, 5) };
    }
    case 'spike': {
      p.keys(v, path, ['shape', 'rps', 'spikeRps', 'seconds', 'spikeSeconds', 'afterSeconds'], 'a spike');
      const seconds = p.int(v, 'seconds', path, 1, secondsMax, 5);
      return {
        shape, rps: p.int(v, 'rps', path, 1, rpsMax, null), spikeRps: p.int(v, 'spikeRps', path, 1, rpsMax, null), seconds,
        spikeSeconds: p.int(v, 'spikeSeconds', path, 1, secondsMax, 2), afterSeconds: p.int(v, 'afterSeconds', path, 0, secondsMax, seconds),
      };
    }
    case 'overload':
      p.keys(v, path, ['shape', 'times', 'seconds', 'probeSeconds'], 'an overload');
      return { shape, times: p.positive(v, 'times', path, 100, 2), seconds: p.int(v, 'seconds', path, 1, secondsMax, 5), probeSeconds: p.int(v, 'probeSeconds', path, 1, secondsMax, 3) };
  }
  return null;
}

function checkName(p: Problems, name: string, path: (string | number)[], what: string): void {
  try {
    skuName(name, what);
  } catch (e) {
    p.add(path, (e as Error).message);
  }
}

/**
 * Reads and checks a scenario. What the run creates is named `<prefix><name>`: the prefix of
 * the command line, else the file's, else `fallbackPrefix` (rehearsal-<runid>-). The SKU and
 * drop names of the result are the engine's names.
 */
export function readScenario(text: string, file: string, cliPrefix: string | null, fallbackPrefix: string): Scenario {
  const { value, line } = parseSpecText(text, file);
  const p = new Problems(file, line);
  if (!isObj(value)) throw new CliError(Exit.usage, `${file} must hold a scenario: {skus: [...], phases: [...], ...}`);
  p.keys(value, [], ['name', 'prefix', 'connections', 'timeoutSeconds', 'skus', 'drops', 'phases', 'targets', 'checks'], 'a scenario');
  const name = p.str(value, 'name', [], false) ?? file;
  const filePrefix = p.str(value, 'prefix', [], false);
  if (filePrefix !== null && (filePrefix.length > prefixMax || !/^[A-Za-z0-9._:-]+$/.test(filePrefix))) {
    p.add(['prefix'], `prefix must be 1..${prefixMax} characters of A-Z a-z 0-9 . _ : -`);
  }
  const connections = p.int(value, 'connections', [], 1, 10_000, 64);
  const timeoutSeconds = p.int(value, 'timeoutSeconds', [], 1, 600, 10);
  const runPrefix = cliPrefix ?? filePrefix ?? fallbackPrefix;

  // Drops first: SKUs name them.
  const drops: DropSpec[] = [];
  const dropList = value.drops ?? [];
  if (!Array.isArray(dropList)) p.add(['drops'], 'drops must be a list');
  else {
    dropList.forEach((d, i) => {
      const path = ['drops', i];
      if (!isObj(d)) return p.add(path, 'a drop must be an object {dropId, queue?, existing?}');
      p.keys(d, path, ['dropId', 'queue', 'existing'], 'a drop');
      const n = p.str(d, 'dropId', path, true);
      if (n === null) return;
      const existing = d.existing === true;
      if (own(d, 'existing') && typeof d.existing !== 'boolean') p.add([...path, 'existing'], 'existing must be true or false');
      const dropId = existing ? n : `${runPrefix}${n}`;
      checkName(p, dropId, [...path, 'dropId'], 'dropId');
      const body: Obj = {};
      if (own(d, 'queue')) body.queue = d.queue;
      if (existing && own(d, 'queue')) p.add([...path, 'queue'], 'an existing drop is used as it is: leave queue out');
      try {
        dropPutCommand(body, dropId, '', '');
      } catch (e) {
        if (!(e instanceof InvalidRequest)) throw e;
        p.add([...path, 'queue'], e.message);
      }
      if (drops.some((x) => x.name === n)) p.add(path, `drop ${n} is declared twice`);
      drops.push({ name: n, dropId, existing, body });
    });
  }

  const skus: SkuSpec[] = [];
  const skuList = value.skus ?? [];
  if (!Array.isArray(skuList)) p.add(['skus'], 'skus must be a list');
  else {
    skuList.forEach((s, i) => {
      const path = ['skus', i];
      if (!isObj(s)) return p.add(path, 'a SKU must be an object {sku, stock, ...}');
      p.keys(s, path, ['sku', 'count', 'existing', 'reason', ...skuPolicyKeys], 'a SKU');
      const n = p.str(s, 'sku', path, true);
      if (n === null) return;
      const existing = s.existing === true;
      if (own(s, 'existing') && typeof s.existing !== 'boolean') p.add([...path, 'existing'], 'existing must be true or false');
      const count = own(s, 'count') ? p.int(s, 'count', path, 1, 100_000, 1) : null;
      if (existing && count !== null) p.add([...path, 'count'], 'an existing SKU is one SKU: leave count out');
      const body: Obj = {};
      for (const k of Object.keys(s)) if (k !== 'sku' && k !== 'count' && k !== 'existing') body[k] = s[k];
      if (existing && Object.keys(body).length > 0) p.add(path, `an existing SKU is used as it is: leave ${Object.keys(body).join(', ')} out`);
      let drop: string | null = null;
      if (typeof body.dropId === 'string') {
        const d = drops.find((x) => x.name === body.dropId);
        if (d === undefined) p.add([...path, 'dropId'], `dropId ${body.dropId} is not a drop of this scenario (declare it under drops, with existing: true for one that exists)`);
        else {
          drop = d.name;
          body.dropId = d.dropId;
        }
      }
      if (!existing && !own(body, 'stock')) p.add(path, 'stock is required for a SKU the rehearsal creates');
      const names = existing ? [n] : count === null ? [`${runPrefix}${n}`] : Array.from({ length: count }, (_, k) => `${runPrefix}${n}-${String(k).padStart(Math.max(3, String(count - 1).length), '0')}`);
      checkName(p, names[names.length - 1]!, [...path, 'sku'], 'sku');
      if (!existing) {
        try {
          upsertCommand(body, names[0]!);
        } catch (e) {
          if (!(e instanceof InvalidRequest)) throw e;
          const f = e.field.split('.')[0]!;
          p.add(own(s, f) ? [...path, f] : path, e.message);
        }
      }
      if (skus.some((x) => x.name === n)) p.add(path, `sku ${n} is declared twice`);
      skus.push({ name: n, skus: names, existing, body, drop });
    });
  }

  const skuRef = (o: Obj, path: (string | number)[], many: boolean): string[] => {
    const refs: unknown[] = own(o, 'skus') && many ? (Array.isArray(o.skus) ? o.skus : [o.skus]) : own(o, 'sku') ? [o.sku] : [];
    if (refs.length === 0) {
      p.add(path, many ? 'sku (a SKU or group of the scenario) or skus (a list of them) is required' : 'sku is required');
      return [];
    }
    const out: string[] = [];
    for (const r of refs) {
      const s = skus.find((x) => x.name === r);
      if (s === undefined) p.add([...path, own(o, 'skus') ? 'skus' : 'sku'], `${String(r)} is not a SKU of this scenario (declared under skus)`);
      else out.push(...s.skus);
    }
    return out;
  };

  const phases: Phase[] = [];
  const phaseList = value.phases;
  if (!Array.isArray(phaseList) || phaseList.length === 0) p.add(['phases'], 'phases must be a non-empty list');
  else {
    phaseList.forEach((ph, i) => {
      const path = ['phases', i];
      if (!isObj(ph)) return p.add(path, 'a phase must be an object {name, kind, ...}');
      const pname = p.str(ph, 'name', path, true) ?? `phase${i + 1}`;
      if (!/^[A-Za-z0-9._-]{1,24}$/.test(pname)) p.add([...path, 'name'], 'name must be 1..24 characters of A-Z a-z 0-9 . _ -');
      if (phases.some((x) => x.name === pname)) p.add([...path, 'name'], `phase ${pname} is declared twice`);
      const kind = ph.kind;
      const common = ['name', 'kind', 'connections', 'as', 'qty'];
      let as: Identity | null = null;
      if (own(ph, 'as')) {
        if (ph.as === 'buyer' || ph.as === 'shop') as = ph.as;
        else p.add([...path, 'as'], 'as must be buyer (buyer tokens) or shop (the shop token with body buyerId)');
      }
      const base = { name: pname, connections: p.int(ph, 'connections', path, 1, 10_000, connections), as, qty: p.int(ph, 'qty', path, 1, Limits.qtyMax, 1) };
      const loadPath = [...path, 'load'];
      switch (kind) {
        case 'sellout': {
          p.keys(ph, path, [...common, 'sku', 'buyers', 'pay', 'load'], 'a sellout phase');
          const sku = skuRef(ph, path, false);
          if (sku.length > 1) p.add([...path, 'sku'], 'a sell-out is of one SKU (not a group)');
          const buyers = p.int(ph, 'buyers', path, 1, requestsMax, null);
          const load = own(ph, 'load') ? readShape(p, ph.load, loadPath, ['max', 'constant']) : { shape: 'max' as const, seconds: 0 };
          const spec = skus.find((s) => s.skus.includes(sku[0] ?? ''));
          const stock = spec !== undefined && !spec.existing && typeof spec.body.stock === 'number' ? spec.body.stock : null;
          if (stock !== null && buyers * base.qty <= stock) p.add([...path, 'buyers'], `${buyers} buyers of ${base.qty} cannot sell out ${stock} units: give more buyers than units`);
          if (own(ph, 'pay') && typeof ph.pay !== 'boolean') p.add([...path, 'pay'], 'pay must be true or false');
          phases.push({
            ...base, kind, sku: sku[0] ?? '', buyers, pay: ph.pay !== false,
            load: load?.shape === 'constant' ? { shape: 'constant', rps: load.rps } : { shape: 'max' },
          });
          break;
        }
        case 'reserve':
        case 'flow': {
          p.keys(ph, path, [...common, 'sku', 'skus', 'load', ...(kind === 'flow' ? ['mix'] : [])], `a ${kind} phase`);
          const list = skuRef(ph, path, true);
          if (!own(ph, 'load')) p.add(path, 'load is required: {shape: constant | ramp | spike | overload | max, ...}');
          const load = readShape(p, ph.load, loadPath, ['max', 'constant', 'ramp', 'spike', 'overload']);
          if (kind === 'reserve') {
            phases.push({ ...base, kind, skus: list, load: load ?? { shape: 'max', seconds: 1 } });
            break;
          }
          let mix = { pay: 60, cancel: 20, abandon: 20 };
          if (own(ph, 'mix')) {
            const m = ph.mix;
            if (!isObj(m)) p.add([...path, 'mix'], 'mix must be an object {pay, cancel, abandon} of shares');
            else {
              p.keys(m, [...path, 'mix'], ['pay', 'cancel', 'abandon'], 'a mix');
              mix = { pay: p.int(m, 'pay', [...path, 'mix'], 0, 1000, 0), cancel: p.int(m, 'cancel', [...path, 'mix'], 0, 1000, 0), abandon: p.int(m, 'abandon', [...path, 'mix'], 0, 1000, 0) };
              if (mix.pay + mix.cancel + mix.abandon === 0) p.add([...path, 'mix'], 'mix must give some share to pay, cancel or abandon');
            }
          }
          phases.push({ ...base, kind, skus: list, mix, load: load ?? { shape: 'max', seconds: 1 } });
          break;
        }
        case 'queue': {
          p.keys(ph, path, [...common, 'drop', 'sku', 'buyers', 'pollMs', 'seconds', 'pollers', 'load'], 'a queue phase');
          const dropName = p.str(ph, 'drop', path, true);
          const drop = drops.find((d) => d.name === dropName);
          if (dropName !== null && drop === undefined) p.add([...path, 'drop'], `${dropName} is not a drop of this scenario (declared under drops)`);
          if (drop !== undefined && !drop.existing && drop.body.queue === undefined) {
            p.add([...path, 'drop'], `drop ${drop.name} has no queue, so buyers cannot join it: give it one under drops (queue: {mode: fifo, admitPerSecond: 200})`);
          }
          let sku: string[] = [];
          if (own(ph, 'sku')) sku = skuRef(ph, path, false);
          else if (drop !== undefined) {
            const members = skus.filter((s) => s.drop === drop.name).flatMap((s) => s.skus);
            if (members.length !== 1) p.add(path, `sku is required: drop ${drop.name} has ${members.length} SKUs in this scenario`);
            sku = members.slice(0, 1);
          }
          const load = own(ph, 'load') ? readShape(p, ph.load, loadPath, ['max', 'constant']) : null;
          phases.push({
            ...base, kind, drop: drop?.dropId ?? '', sku: sku[0] ?? '', buyers: p.int(ph, 'buyers', path, 1, requestsMax, null),
            pollMs: p.int(ph, 'pollMs', path, 10, 60_000, 250), seconds: p.int(ph, 'seconds', path, 1, secondsMax, 30), pollers: p.int(ph, 'pollers', path, 1, 1000, 32),
            load: load?.shape === 'constant' ? { shape: 'constant', rps: load.rps } : { shape: 'max' },
          });
          break;
        }
        default:
          p.add([...path, 'kind'], 'kind must be sellout (one hot SKU, N buyers, until sold out), reserve (holds at a load shape), flow (reserve then pay, cancel or abandon) or queue (join a drop\'s queue, poll, reserve once admitted)');
      }
    });
  }

  const targets: Target[] = [];
  const targetList = value.targets ?? [];
  if (!Array.isArray(targetList)) p.add(['targets'], 'targets must be a list like [{phase: hot, p99Ms: 50, atRps: 5000}]');
  else {
    targetList.forEach((t, i) => {
      const path = ['targets', i];
      if (!isObj(t)) return p.add(path, 'a target must be an object {phase, p99Ms?, p50Ms?, p999Ms?, atRps?}');
      p.keys(t, path, ['phase', 'p50Ms', 'p99Ms', 'p999Ms', 'atRps'], 'a target');
      const ph = p.str(t, 'phase', path, true);
      if (ph !== null && !phases.some((x) => x.name === ph)) p.add([...path, 'phase'], `${ph} is not a phase of this scenario`);
      const target: Target = { phase: ph ?? '' };
      for (const k of ['p50Ms', 'p99Ms', 'p999Ms'] as const) if (own(t, k)) target[k] = p.positive(t, k, path, 600_000, 1);
      if (own(t, 'atRps')) target.atRps = p.int(t, 'atRps', path, 1, rpsMax, 1);
      if (Object.keys(target).length === 1) p.add(path, 'a target states at least one of p50Ms, p99Ms, p999Ms, atRps');
      targets.push(target);
    });
  }

  const checks = { erpDrainedWithinSeconds: null as number | null, shardUnavailableMax: 0, minOkShare: defaultMinOkShare };
  if (own(value, 'checks')) {
    const c = value.checks;
    if (!isObj(c)) p.add(['checks'], 'checks must be an object {erpDrainedWithinSeconds?, shardUnavailableMax?, minOkShare?}');
    else {
      p.keys(c, ['checks'], ['erpDrainedWithinSeconds', 'shardUnavailableMax', 'minOkShare'], 'checks');
      if (own(c, 'erpDrainedWithinSeconds')) checks.erpDrainedWithinSeconds = p.int(c, 'erpDrainedWithinSeconds', ['checks'], 1, 3600, 60);
      checks.shardUnavailableMax = p.int(c, 'shardUnavailableMax', ['checks'], 0, 1_000_000_000, 0);
      if (own(c, 'minOkShare')) checks.minOkShare = p.positive(c, 'minOkShare', ['checks'], 1, defaultMinOkShare);
    }
  }

  if (phases.length > 0) {
    const plan = plannedLoad(phases);
    if (plan.requests > requestsMax) {
      p.add(['phases'], `the phases plan ${plan.requests.toLocaleString('en-US')} requests (rate x seconds of every step, the buyers of each sell-out and queue); a scenario plans at most ${requestsMax.toLocaleString('en-US')}: split it into several runs, or lower the rates or seconds`);
    }
    if (plan.seconds > loadSecondsMax) {
      p.add(['phases'], `the phases plan ${plan.seconds.toLocaleString('en-US')} s of load; a scenario plans at most ${loadSecondsMax.toLocaleString('en-US')} s: split it into several runs`);
    }
  }

  if (p.list.length > 0) {
    throw new CliError(Exit.usage, `${file}: ${p.list.length} error${p.list.length === 1 ? '' : 's'}; nothing was sent\n  ${p.list.slice(0, 50).join('\n  ')}${p.list.length > 50 ? `\n  ... and ${p.list.length - 50} more` : ''}`);
  }
  return { file, name, prefix: runPrefix, timeoutSeconds, skus, drops, phases, targets, checks };
}

/**
 * What the phases plan: requests (the known part: every step at a rate, the buyers of
 * sell-outs and queues) and seconds (a sell-out or queue join as fast as answered counts none).
 */
export function plannedLoad(phases: readonly Phase[]): { requests: number; seconds: number } {
  let requests = 0;
  let seconds = 0;
  for (const ph of phases) {
    switch (ph.kind) {
      case 'sellout':
        requests += ph.buyers;
        if (ph.load.shape === 'constant') seconds += ph.buyers / ph.load.rps;
        break;
      case 'queue':
        requests += ph.buyers;
        seconds += ph.seconds + (ph.load.shape === 'constant' ? ph.buyers / ph.load.rps : 0);
        break;
      case 'reserve':
      case 'flow':
        for (const st of stepsOf(ph.load)) {
          seconds += st.seconds;
          if (st.rps !== null) requests += st.rps * st.seconds;
        }
        break;
    }
  }
  return { requests, seconds: Math.ceil(seconds) };
}

/** One step of a load shape: a rate (requests per second over all connections) or null (as fast as answered). */
export interface StepPlan {
  label: string;
  rps: number | null;
  seconds: number;
  /** The overload's step at a multiple of the capacity its probe measured. */
  timesCapacity?: number;
}

/** The steps of a shape, in order. An overload's second step gets its rate from the probe. */
export function stepsOf(shape: Shape): StepPlan[] {
  switch (shape.shape) {
    case 'max':
      return [{ label: 'max', rps: null, seconds: shape.seconds }];
    case 'constant':
      return [{ label: `${shape.rps}/s`, rps: shape.rps, seconds: shape.seconds }];
    case 'ramp':
      return Array.from({ length: shape.steps }, (_, i) => {
        const rps = Math.round(shape.from + ((shape.to - shape.from) * i) / (shape.steps - 1));
        return { label: `ramp ${rps}/s`, rps, seconds: shape.stepSeconds };
      });
    case 'spike':
      return [
        { label: `base ${shape.rps}/s`, rps: shape.rps, seconds: shape.seconds },
        { label: `spike ${shape.spikeRps}/s`, rps: shape.spikeRps, seconds: shape.spikeSeconds },
        ...(shape.afterSeconds > 0 ? [{ label: `after ${shape.rps}/s`, rps: shape.rps, seconds: shape.afterSeconds }] : []),
      ];
    case 'overload':
      return [
        { label: 'probe (max)', rps: null, seconds: shape.probeSeconds },
        { label: `${shape.times} x capacity`, rps: null, seconds: shape.seconds, timesCapacity: shape.times },
      ];
  }
}

/** `constant 1000/s for 10 s`, for the plan and the report. */
export function describeShape(shape: Shape | SelloutPhase['load']): string {
  switch (shape.shape) {
    case 'max':
      return 'seconds' in shape && shape.seconds > 0 ? `closed loop, as fast as answered, ${shape.seconds} s` : 'closed loop, as fast as answered';
    case 'constant':
      return 'seconds' in shape ? `constant ${shape.rps}/s for ${shape.seconds} s` : `constant ${shape.rps}/s`;
    case 'ramp':
      return `ramp ${shape.from}/s to ${shape.to}/s in ${shape.steps} steps of ${shape.stepSeconds} s`;
    case 'spike':
      return `spike: ${shape.rps}/s for ${shape.seconds} s, ${shape.spikeRps}/s for ${shape.spikeSeconds} s, ${shape.rps}/s for ${shape.afterSeconds} s`;
    case 'overload':
      return `overload: ${shape.probeSeconds} s probe as fast as answered, then ${shape.times} x its rate for ${shape.seconds} s`;
  }
}
