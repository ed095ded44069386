// Speed and memory of the pure shard state machine, on one core: reserve, pay and cancel
// ops/s, a mixed reserve + pay + expire sequence on a simulated clock, and the heap bytes
// each live reservation costs. Commands are built before the clock starts, so the timed
// loop is apply() alone. Every state it builds is handed back to be checked.

import { apply, createShardState, reservationId, type Command, type ShardState } from '../src/domain/index.js';
import { median, progress } from './bench-report.js';
import { checkState, type StateCheck } from './state-check.js';

type Reserve = Extract<Command, { t: 'res.reserve' }>;

export interface SkuSpec {
  sku: string;
  stock: number;
  maxPerBuyer: number;
  holdSeconds?: number;
}

export interface LoopFigures {
  commands: number;
  ok: number;
  ms: number;
  opsPerSec: number;
}

export interface DomainFigures {
  settings: { reserveCommands: number; runs: number; skus: SkuSpec[]; mixedReserves: number; memoryReservations: number };
  reserve: { runs: LoopFigures[]; bestOpsPerSec: number; medianOpsPerSec: number };
  pay: LoopFigures;
  cancel: LoopFigures;
  mixed: LoopFigures & { reserves: number; pays: number; expireCommands: number; holdsExpired: number };
  memory: { reservations: number; heapUsedBeforeBytes: number; heapUsedAfterBytes: number; bytesPerReservation: number; gcExposed: boolean };
  checks: StateCheck[];
}

const t0Ms = 1_700_000_000_000;
const stockHuge = 1_000_000_000;

/** Four SKUs without a quota and four with maxPerBuyer 2: both reserve paths are timed. */
export const benchSkus: SkuSpec[] = Array.from({ length: 8 }, (_, i) => ({
  sku: `bench-sku-${i}`, stock: stockHuge, maxPerBuyer: i % 2 === 0 ? 0 : 2,
}));

export function makeState(skus: readonly SkuSpec[]): ShardState {
  const state = createShardState(0, 1);
  for (const s of skus) {
    const c: Command = { t: 'sku.upsert', sku: s.sku, stock: s.stock, maxPerBuyer: s.maxPerBuyer, holdSeconds: s.holdSeconds ?? 600 };
    const applied = apply(state, c, t0Ms);
    if (!applied.outcome.ok) throw new Error(`bench setup: upsert ${s.sku} refused: ${applied.outcome.code}`);
  }
  return state;
}

/** A fixed-length nonce, as the gateway draws (8 base-36 digits), so ids never collide. */
function nonceOf(i: number): string {
  return (i % 2_821_109_907_456).toString(36).padStart(8, '0');
}

export function reserveCommands(count: number, skus: readonly SkuSpec[], buyerPrefix: string): Reserve[] {
  const out: Reserve[] = new Array(count);
  for (let i = 0; i < count; i++) {
    out[i] = { t: 'res.reserve', sku: skus[i % skus.length]!.sku, buyerId: `${buyerPrefix}${i}`, qty: 1, nonce: nonceOf(i) };
  }
  return out;
}

/** The id the k-th successful reserve (k from 1) of a fresh shard-0 state gets. */
function idOf(seq: number, nonce: string): string {
  return reservationId(0, seq, nonce);
}

function timeLoop(state: ShardState, commands: readonly Command[], nowMs: number): LoopFigures {
  let ok = 0;
  const started = performance.now();
  for (let i = 0; i < commands.length; i++) {
    if (apply(state, commands[i]!, nowMs).outcome.ok) ok++;
  }
  const ms = performance.now() - started;
  return { commands: commands.length, ok, ms, opsPerSec: commands.length / (ms / 1000) };
}

function settleCommands(reserves: readonly Reserve[], t: 'res.pay' | 'res.cancel'): Command[] {
  return reserves.map((c, i) => ({ t, id: idOf(i + 1, c.nonce) }));
}

function gc(): void {
  (globalThis as { gc?: () => void }).gc?.();
}

function warmUp(count: number): StateCheck {
  const state = makeState(benchSkus);
  const reserves = reserveCommands(count, benchSkus, 'w');
  timeLoop(state, reserves, t0Ms);
  const half = reserves.length >> 1;
  timeLoop(state, settleCommands(reserves.slice(0, half), 'res.pay'), t0Ms + 1);
  const cancels = settleCommands(reserves, 'res.cancel').slice(half);
  timeLoop(state, cancels, t0Ms + 2);
  return checkState('warm-up', state);
}

/** Reserve `count` on fresh states, `runs` times; the first run's state is paid, the second's cancelled. */
function reserveRuns(count: number, runs: number, checks: StateCheck[]): Pick<DomainFigures, 'reserve' | 'pay' | 'cancel'> {
  const figures: LoopFigures[] = [];
  let pay: LoopFigures | null = null;
  let cancel: LoopFigures | null = null;
  for (let run = 0; run < runs; run++) {
    const state = makeState(benchSkus);
    const reserves = reserveCommands(count, benchSkus, `r${run}-`);
    const settles = run === 1 ? settleCommands(reserves, 'res.cancel') : run === 0 ? settleCommands(reserves, 'res.pay') : [];
    gc();
    const f = timeLoop(state, reserves, t0Ms);
    figures.push(f);
    progress(`reserve run ${run + 1}/${runs}: ${Math.round(f.opsPerSec).toLocaleString('en-US')} ops/s (${f.ok}/${f.commands} ok)`);
    if (run === 0) {
      pay = timeLoop(state, settles, t0Ms + 1000);
      progress(`pay: ${Math.round(pay.opsPerSec).toLocaleString('en-US')} ops/s (${pay.ok}/${pay.commands} ok)`);
    } else if (run === 1) {
      cancel = timeLoop(state, settles, t0Ms + 1000);
      progress(`cancel: ${Math.round(cancel.opsPerSec).toLocaleString('en-US')} ops/s (${cancel.ok}/${cancel.commands} ok)`);
    }
    checks.push(checkState(run === 0 ? 'reserve+pay' : run === 1 ? 'reserve+cancel' : `reserve run ${run + 1}`, state));
  }
  const ops = figures.map((f) => f.opsPerSec);
  return {
    reserve: { runs: figures, bestOpsPerSec: Math.max(...ops), medianOpsPerSec: median(ops) },
    pay: pay!,
    cancel: cancel!,
  };
}

/**
 * Reserve, pay every other hold two commands later, and let the rest expire: holds last
 * 1 s on a simulated clock that advances 1 ms every 10 commands, and a res.expire (the
 * shard's own housekeeping command) runs after every 1000 reserves.
 */
function mixedRun(reservesCount: number, checks: StateCheck[]): DomainFigures['mixed'] {
  const skus: SkuSpec[] = [
    { sku: 'mix-quota', stock: stockHuge, maxPerBuyer: 2, holdSeconds: 1 },
    { sku: 'mix-open', stock: stockHuge, maxPerBuyer: 0, holdSeconds: 1 },
  ];
  const state = makeState(skus);
  const reserves = reserveCommands(reservesCount, skus, 'm');
  const commands: Command[] = [];
  let pays = 0;
  let expireCommands = 0;
  for (let k = 0; k < reserves.length; k++) {
    commands.push(reserves[k]!);
    if (k % 2 === 1) {
      commands.push({ t: 'res.pay', id: idOf(k, reserves[k - 1]!.nonce), paymentRef: `p${k}` });
      pays++;
    }
    if (k % 1000 === 999) {
      commands.push({ t: 'res.expire' });
      expireCommands++;
    }
  }
  const times = new Float64Array(commands.length);
  for (let i = 0; i < times.length; i++) times[i] = t0Ms + Math.floor(i / 10);
  gc();
  let ok = 0;
  const started = performance.now();
  for (let i = 0; i < commands.length; i++) {
    if (apply(state, commands[i]!, times[i]!).outcome.ok) ok++;
  }
  const ms = performance.now() - started;
  let holdsExpired = 0;
  for (const r of state.reservations.values()) if (r.status === 'expired') holdsExpired++;
  checks.push(checkState('mixed reserve+pay+expire', state));
  const f = { commands: commands.length, ok, ms, opsPerSec: commands.length / (ms / 1000), reserves: reserves.length, pays, expireCommands, holdsExpired };
  progress(`mixed: ${Math.round(f.opsPerSec).toLocaleString('en-US')} ops/s (${f.reserves} reserves, ${f.pays} pays, ${f.expireCommands} expires, ${f.holdsExpired} holds expired)`);
  return f;
}

/** Heap bytes per held reservation: commands are built inside the loop, so their strings count. */
function memoryRun(count: number, checks: StateCheck[]): DomainFigures['memory'] {
  const gcExposed = typeof (globalThis as { gc?: unknown }).gc === 'function';
  if (!gcExposed) progress('warning: run node with --expose-gc for a meaningful memory figure');
  const skus: SkuSpec[] = [0, 1, 2].map((i) => ({ sku: `mem-sku-${i}`, stock: stockHuge, maxPerBuyer: 0 }));
  const state = makeState(skus);
  gc();
  gc();
  const heapUsedBeforeBytes = process.memoryUsage().heapUsed;
  for (let i = 0; i < count; i++) {
    const c: Reserve = { t: 'res.reserve', sku: skus[i % skus.length]!.sku, buyerId: `b${i}`, qty: 1, nonce: nonceOf(i) };
    if (!apply(state, c, t0Ms).outcome.ok) throw new Error(`memory run: reserve ${i} refused`);
  }
  gc();
  gc();
  const heapUsedAfterBytes = process.memoryUsage().heapUsed;
  if (state.liveCount !== count) throw new Error(`memory run: ${state.liveCount} live reservations, expected ${count}`);
  checks.push(checkState('memory (1M held)', state));
  const bytesPerReservation = (heapUsedAfterBytes - heapUsedBeforeBytes) / count;
  progress(`memory: ${bytesPerReservation.toFixed(1)} bytes per live reservation`);
  return { reservations: count, heapUsedBeforeBytes, heapUsedAfterBytes, bytesPerReservation, gcExposed };
}

export interface DomainBenchOptions {
  reserveCommands: number;
  runs: number;
  mixedReserves: number;
  memoryReservations: number;
  warmUpCommands: number;
}

export function benchDomain(opts: DomainBenchOptions): DomainFigures {
  if (opts.runs < 2) throw new RangeError('benchDomain needs at least 2 runs (one is paid, one cancelled)');
  const checks: StateCheck[] = [];
  progress(`warm-up: ${opts.warmUpCommands} reserves, then pays and cancels`);
  checks.push(warmUp(opts.warmUpCommands));
  const { reserve, pay, cancel } = reserveRuns(opts.reserveCommands, opts.runs, checks);
  gc();
  const mixed = mixedRun(opts.mixedReserves, checks);
  gc();
  const memory = memoryRun(opts.memoryReservations, checks);
  return {
    settings: { reserveCommands: opts.reserveCommands, runs: opts.runs, skus: benchSkus, mixedReserves: opts.mixedReserves, memoryReservations: opts.memoryReservations },
    reserve, pay, cancel, mixed, memory, checks,
  };
}
