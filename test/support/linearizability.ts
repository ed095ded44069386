// A linearizability checker for histories of the flash-sale API (test/support/history.ts),
// in the manner of Jepsen's Knossos and Porcupine: the history is split per SKU (each SKU,
// with its reservations, quotas and idempotency keys, is one object; linearizability is
// local, so the whole history is linearizable exactly when every SKU's part is), and each
// part is searched for a sequential order of its operations that (1) respects real time:
// an operation that completed before another was invoked comes first, (2) gives every
// definite operation the answer it got from a sequential model of one SKU, and (3) lets an
// operation whose outcome is unknown take effect at any point after its invocation and
// before its deadline (the death of the process it was sent to), or never.
//
// The search is Wing and Gong's, with Lowe's memoisation as Porcupine does it: operations
// are a list of call and return events in time order; at each step any operation whose call
// comes before the first pending return may be linearized next if the model accepts its
// answer; a (set of linearized operations, model state) pair already explored is not
// explored again; reaching a return whose operation was not linearized backtracks.
// An unknown operation has no return: it is linearized only when it would change the state
// (taking effect as a refusal is the same as never), and at its deadline, if it has not
// taken effect, it is dropped (a no-op; the alternative, taking effect earlier, is explored
// by the other branch). The search succeeds once every definite operation is linearized.
//
// A definite operation that changes nothing (a read, a refusal) and whose answer the model
// gives in the current state is linearized at once, with no alternative kept: if any order
// from here exists, one with that operation first exists too (it may come next, since its
// call precedes every pending return, so everything that returned before its call is
// already in; moving it forward changes no other answer, since it changes no state). Without
// this, a few hundred concurrent reads (the final reads of a run) around an operation whose
// place is still open make every subset of the reads a state to explore.
//
// The search is bounded in time and in the number of explored states; a bound hit answers
// `unknown`, never a pass.
//
// The model of one SKU (shared/API.md; src/domain/apply-reservation.ts for the order of
// checks): onHand (no restocks in these histories), mode (pre_deduct, on_order: the units
// are held until paid; on_payment: nothing is held, pay takes the units or answers
// sold_out), maxPerBuyer (held + paid units of one buyer), and each reservation with its
// creator (buyer, qty, idempotency key) and status held / paid / cancelled. A reserve with a
// key that this buyer already used on this SKU replays that reservation (status as it is
// now, whatever the qty asked) before any other check; else quota_exceeded,
// then sold_out, then a new held reservation. Expiry is not modelled: tests use holds of an
// hour (holdSeconds 3600), so nothing expires during a run. Drops and channels are not
// modelled: the histories use SKUs without a dropId and the default channel.

import type { IdArgs, Operation, ReservationAnswer, ReserveArgs, SkuAnswer, SkuArgs } from './history.js';
import { describeOp } from './history.js';

export type Mode = 'pre_deduct' | 'on_order' | 'on_payment';
export interface SkuSetup { onHand: number; mode?: Mode; maxPerBuyer?: number }

export type Verdict = 'linearizable' | 'not_linearizable' | 'unknown';

export interface SkuResult {
  sku: string;
  verdict: Verdict;
  /** Operations searched (definite ones, and unknown ones that may change state). */
  operations: number;
  definite: number;
  unknown: number;
  /** Distinct (linearized set, state) pairs explored. */
  states: number;
  ms: number;
  /** Why not linearizable, or which bound was hit. */
  explanation?: string;
}

export interface CheckResult {
  verdict: Verdict;
  skus: SkuResult[];
  /** Every problem, one paragraph each; empty when linearizable. */
  explanation: string;
}

export interface CheckOptions {
  /** Per SKU. Default 10 s. */
  timeBudgetMs?: number;
  /** Per SKU. Default 2,000,000. */
  maxStates?: number;
}

// ---------------------------------------------------------------------------------------
// Preparing one SKU's operations.

const HELD = 1;
const PAID = 2;
const CANCELLED = 3;
const statusName = ['absent', 'held', 'paid', 'cancelled'] as const;

interface SearchOp {
  /** Index within the SKU's search. */
  index: number;
  op: Operation;
  definite: boolean;
  callMs: number;
  /** Definite: completion; unknown: deadline (Infinity: none). */
  endMs: number;
  /** Reserve: the reservation slot it creates if it creates one (its answer's id, or a key's id, or its own). */
  slot: number;
  /** pay / cancel / getReservation: the slot of the reservation it names. */
  target: number;
}

interface Slot { id: string; symbolic: boolean }

interface SkuModel {
  sku: string;
  onHand: number;
  holdsUnits: boolean;
  onPayment: boolean;
  maxPerBuyer: number;
  slots: Slot[];
  ops: SearchOp[];
}

/**
 * The state: per reservation slot, the index of the operation that created it (-1: none)
 * and its status. Everything else (counters, quotas, keys) is derived from these.
 */
interface State {
  creator: Int32Array;
  status: Uint8Array;
  key: string;
}

function stateKey(creator: Int32Array, status: Uint8Array): string {
  let k = '';
  for (let i = 0; i < status.length; i++) k += status[i] === 0 ? '.' : `${status[i]}${creator[i]!.toString(36)},`;
  return k;
}

function makeState(creator: Int32Array, status: Uint8Array): State {
  return { creator, status, key: stateKey(creator, status) };
}

function counters(m: SkuModel, s: State): { reserved: number; sold: number; available: number } {
  let reserved = 0;
  let sold = 0;
  for (let i = 0; i < s.status.length; i++) {
    const st = s.status[i];
    if (st === 0) continue;
    const qty = (m.ops[s.creator[i]!]!.op.args as ReserveArgs).qty;
    if (st === HELD && m.holdsUnits) reserved += qty;
    else if (st === PAID) sold += qty;
  }
  return { reserved, sold, available: m.onHand - reserved - sold };
}

function describeState(m: SkuModel, s: State): string {
  const c = counters(m, s);
  return `onHand ${m.onHand}, reserved ${c.reserved}, sold ${c.sold}, available ${c.available}`;
}

// ---------------------------------------------------------------------------------------
// The model's step: what a sequential SKU answers, compared with what was answered.

type Expected =
  | { kind: 'ok'; status: number; id?: string; resStatus?: string; replayed?: boolean; creates?: number; replays?: number; sets?: [slot: number, status: number]; counters?: { reserved: number; sold: number; available: number } }
  | { kind: 'fail'; code: string };

type Step = { ok: true; next: State | null } | { ok: false; why: string };

function expectedOf(m: SkuModel, s: State, o: SearchOp): Expected {
  const args = o.op.args;
  switch (o.op.op) {
    case 'reserve': {
      const a = args as ReserveArgs;
      if (a.idempotencyKey !== undefined) {
        for (let i = 0; i < s.status.length; i++) {
          if (s.status[i] === 0) continue;
          const c = m.ops[s.creator[i]!]!.op.args as ReserveArgs;
          if (c.buyerId !== a.buyerId || c.idempotencyKey !== a.idempotencyKey) continue;
          // Whatever this request's qty: the first reservation again, with its own qty.
          return { kind: 'ok', status: 201, id: m.slots[i]!.id, resStatus: statusName[s.status[i]!], replayed: true, replays: i };
        }
      }
      let used = 0;
      for (let i = 0; i < s.status.length; i++) {
        const st = s.status[i];
        if (st !== HELD && st !== PAID) continue;
        const c = m.ops[s.creator[i]!]!.op.args as ReserveArgs;
        if (c.buyerId === a.buyerId) used += c.qty;
      }
      if (m.maxPerBuyer > 0 && used + a.qty > m.maxPerBuyer) return { kind: 'fail', code: 'quota_exceeded' };
      if (counters(m, s).available < a.qty) return { kind: 'fail', code: 'sold_out' };
      return { kind: 'ok', status: 201, id: m.slots[o.slot]!.id, resStatus: 'held', replayed: false, creates: o.slot };
    }
    case 'pay': {
      const st = s.status[o.target]!;
      if (st === 0) return { kind: 'fail', code: 'unknown_reservation' };
      const id = m.slots[o.target]!.id;
      if (st === PAID) return { kind: 'ok', status: 200, id, resStatus: 'paid' };
      if (st === CANCELLED) return { kind: 'fail', code: 'reservation_cancelled' };
      if (m.onPayment) {
        const qty = (m.ops[s.creator[o.target]!]!.op.args as ReserveArgs).qty;
        if (counters(m, s).available < qty) return { kind: 'fail', code: 'sold_out' };
      }
      return { kind: 'ok', status: 200, id, resStatus: 'paid', sets: [o.target, PAID] };
    }
    case 'cancel': {
      const st = s.status[o.target]!;
      if (st === 0) return { kind: 'fail', code: 'unknown_reservation' };
      const id = m.slots[o.target]!.id;
      if (st === PAID) return { kind: 'fail', code: 'already_paid' };
      if (st === CANCELLED) return { kind: 'ok', status: 200, id, resStatus: 'cancelled' };
      return { kind: 'ok', status: 200, id, resStatus: 'cancelled', sets: [o.target, CANCELLED] };
    }
    case 'getReservation': {
      const st = s.status[o.target]!;
      if (st === 0) return { kind: 'fail', code: 'unknown_reservation' };
      return { kind: 'ok', status: 200, id: m.slots[o.target]!.id, resStatus: statusName[st] };
    }
    case 'getSku':
      return { kind: 'ok', status: 200, counters: counters(m, s) };
  }
}

function describeExpected(e: Expected): string {
  if (e.kind === 'fail') return `a refusal ${e.code}`;
  if (e.counters !== undefined) return `${e.status} reserved ${e.counters.reserved} sold ${e.counters.sold} available ${e.counters.available}`;
  const id = e.id?.startsWith('?') === true ? 'a new reservation' : e.id;
  return `${e.status} ${id}${e.resStatus === undefined ? '' : ` ${e.resStatus}`}${e.replayed === true ? ' (replayed)' : ''}`;
}

function apply(s: State, e: Expected & { kind: 'ok' }, o: SearchOp): State | null {
  if (e.creates !== undefined) {
    const creator = s.creator.slice();
    const status = s.status.slice();
    creator[e.creates] = o.index;
    status[e.creates] = HELD;
    return makeState(creator, status);
  }
  if (e.sets !== undefined) {
    const status = s.status.slice();
    status[e.sets[0]] = e.sets[1];
    return makeState(s.creator, status);
  }
  return null;
}

function step(m: SkuModel, s: State, o: SearchOp): Step {
  const e = expectedOf(m, s, o);
  const out = o.op.outcome;
  if (out.type === 'unknown') {
    // Taking effect as a refusal or a replay is the same as never taking effect.
    return { ok: true, next: e.kind === 'ok' ? apply(s, e, o) : null };
  }
  const mismatch = (what: string): Step => ({ ok: false, why: `the model answers ${describeExpected(e)} (${describeState(m, s)})${what}` });
  if (out.type === 'fail') {
    if (e.kind === 'fail' && e.code === out.code) return { ok: true, next: null };
    return mismatch('');
  }
  if (e.kind === 'fail') return mismatch('');
  if (out.status !== e.status) return mismatch(`; the status was ${out.status}`);
  if (e.counters !== undefined) {
    const a = out.answer as SkuAnswer;
    const c = e.counters;
    if (a.onHand !== m.onHand || a.reserved !== c.reserved || a.sold !== c.sold || a.available !== c.available) return mismatch('');
    return { ok: true, next: null };
  }
  const a = out.answer as ReservationAnswer;
  if (a.reservationId !== e.id) return mismatch(e.replayed === true ? ': the idempotency key already names another reservation' : '');
  if (a.status !== e.resStatus) return mismatch('');
  if (e.replayed !== undefined && a.replayed !== e.replayed) return mismatch(e.replayed ? ': a replay, but the answer was not marked replayed' : ': a new reservation, but the answer was marked replayed');
  if (e.creates !== undefined && s.status[e.creates] !== 0) return { ok: false, why: `reservation ${e.id} would be created a second time` };
  // A replay shows the reservation it made first (its qty, not this request's).
  const creatorSlot = e.replays ?? (o.op.op === 'reserve' ? -1 : o.target);
  const creatorArgs = creatorSlot < 0 ? (o.op.args as ReserveArgs) : (m.ops[s.creator[creatorSlot]!]!.op.args as ReserveArgs);
  if (a.qty !== creatorArgs.qty || a.buyerId !== creatorArgs.buyerId || a.sku !== m.sku) {
    return { ok: false, why: `the answer shows qty ${a.qty}, buyer ${a.buyerId}, sku ${a.sku}; the reservation was made with qty ${creatorArgs.qty}, buyer ${creatorArgs.buyerId}, sku ${m.sku}` };
  }
  return { ok: true, next: apply(s, e, o) };
}

// ---------------------------------------------------------------------------------------
// Splitting the history per SKU.

function isReservationAnswer(a: unknown): a is ReservationAnswer {
  return typeof a === 'object' && a !== null && 'reservationId' in a;
}

function partition(history: Operation[], setups: Record<string, SkuSetup>): { models: SkuModel[]; problems: string[] } {
  const problems: string[] = [];
  const skuOfId = new Map<string, string>();
  const reserveOkById = new Map<string, Operation>();
  /** sku|buyer|key -> an id some ok answer to that key named. */
  const idOfKey = new Map<string, string>();
  const keyOf = (a: ReserveArgs): string => `${a.sku}\u0000${a.buyerId}\u0000${a.idempotencyKey}`;
  for (const o of history) {
    if (o.op !== 'reserve' || o.outcome.type !== 'ok') continue;
    const a = o.args as ReserveArgs;
    const ans = o.outcome.answer;
    if (!isReservationAnswer(ans)) continue;
    const before = skuOfId.get(ans.reservationId);
    if (before !== undefined && before !== a.sku) {
      problems.push(`reservation id ${ans.reservationId} was answered for two SKUs (${before} and ${a.sku}): ${describeOp(reserveOkById.get(ans.reservationId)!)}; ${describeOp(o)}`);
    }
    skuOfId.set(ans.reservationId, a.sku);
    if (!reserveOkById.has(ans.reservationId)) reserveOkById.set(ans.reservationId, o);
    if (a.idempotencyKey !== undefined && !idOfKey.has(keyOf(a))) idOfKey.set(keyOf(a), ans.reservationId);
  }

  const bySku = new Map<string, Operation[]>();
  for (const o of history) {
    let sku: string | undefined;
    if (o.op === 'reserve' || o.op === 'getSku') sku = (o.args as ReserveArgs | SkuArgs).sku;
    else {
      sku = skuOfId.get((o.args as IdArgs).reservationId);
      if (sku === undefined) {
        // Clients only name ids an answer gave them; a definite answer about another id
        // cannot be placed, and is reported rather than silently dropped.
        if (o.outcome.type === 'ok' || (o.outcome.type === 'fail' && o.outcome.checked && o.outcome.code !== 'unknown_reservation')) {
          problems.push(`an answer about a reservation no reserve was answered with: ${describeOp(o)}`);
        }
        continue;
      }
    }
    if (setups[sku] === undefined) {
      problems.push(`no setup for sku ${sku} (${describeOp(o)})`);
      continue;
    }
    let list = bySku.get(sku);
    if (list === undefined) bySku.set(sku, (list = []));
    list.push(o);
  }

  const models: SkuModel[] = [];
  for (const [sku, ops] of bySku) {
    const setup = setups[sku]!;
    const mode = setup.mode ?? 'pre_deduct';
    const slots: Slot[] = [];
    const slotOfId = new Map<string, number>();
    const slotFor = (id: string, symbolic: boolean): number => {
      let i = slotOfId.get(id);
      if (i === undefined) {
        i = slots.length;
        slots.push({ id, symbolic });
        slotOfId.set(id, i);
      }
      return i;
    };
    const searchOps: SearchOp[] = [];
    for (const o of ops) {
      const out = o.outcome;
      // A definite refusal the model cannot predict changed nothing: it constrains nothing.
      if (out.type === 'fail' && !out.checked) continue;
      // An unknown read tells nothing.
      if (out.type === 'unknown' && (o.op === 'getSku' || o.op === 'getReservation')) continue;
      // An unknown call sent to a process that was already dead cannot have taken effect.
      if (out.type === 'unknown' && o.deadlineMs < o.invokeMs) continue;
      const so: SearchOp = {
        index: searchOps.length, op: o, definite: out.type !== 'unknown', callMs: o.invokeMs,
        endMs: out.type === 'unknown' ? o.deadlineMs : o.completeMs, slot: -1, target: -1,
      };
      if (o.op === 'reserve') {
        const a = o.args as ReserveArgs;
        if (out.type === 'ok' && isReservationAnswer(out.answer)) so.slot = slotFor(out.answer.reservationId, false);
        else {
          const known = a.idempotencyKey === undefined ? undefined : idOfKey.get(keyOf(a));
          so.slot = known !== undefined ? slotFor(known, false) : slotFor(`?created-by-#${o.id}`, true);
        }
      } else if (o.op !== 'getSku') so.target = slotFor((o.args as IdArgs).reservationId, false);
      searchOps.push(so);
    }
    models.push({
      sku, onHand: setup.onHand, holdsUnits: mode !== 'on_payment', onPayment: mode === 'on_payment',
      maxPerBuyer: setup.maxPerBuyer ?? 0, slots, ops: searchOps,
    });
  }
  return { models, problems };
}

// ---------------------------------------------------------------------------------------
// The search.

interface Entry {
  kind: 'call' | 'return' | 'deadline';
  op: SearchOp;
  time: number;
  prev: Entry | null;
  next: Entry | null;
  /** call: its return or deadline entry (null for an unknown op without deadline); return or deadline: its call. */
  match: Entry | null;
}

function buildList(ops: SearchOp[]): Entry {
  const entries: Entry[] = [];
  for (const o of ops) {
    const call: Entry = { kind: 'call', op: o, time: o.callMs, prev: null, next: null, match: null };
    entries.push(call);
    if (Number.isFinite(o.endMs)) {
      const end: Entry = { kind: o.definite ? 'return' : 'deadline', op: o, time: Math.max(o.endMs, o.callMs), prev: null, next: null, match: call };
      call.match = end;
      entries.push(end);
    }
  }
  // Calls before returns at the same moment: operations that touch in time count as
  // concurrent (the permissive reading; a timestamp cannot order them).
  entries.sort((x, y) => x.time - y.time || (x.kind === 'call' ? 0 : 1) - (y.kind === 'call' ? 0 : 1));
  const head: Entry = { kind: 'call', op: null as unknown as SearchOp, time: -Infinity, prev: null, next: null, match: null };
  let last = head;
  for (const e of entries) {
    e.prev = last;
    last.next = e;
    last = e;
  }
  return head;
}

function lift(call: Entry): void {
  call.prev!.next = call.next;
  if (call.next !== null) call.next.prev = call.prev;
  const m = call.match;
  if (m !== null) {
    m.prev!.next = m.next;
    if (m.next !== null) m.next.prev = m.prev;
  }
}

function unlift(call: Entry): void {
  const m = call.match;
  if (m !== null) {
    m.prev!.next = m;
    if (m.next !== null) m.next.prev = m;
  }
  call.prev!.next = call;
  if (call.next !== null) call.next.prev = call;
}

/**
 * dropped: an unknown operation that never took effect (it counts for nothing); forced: no
 * other choice is explored at this point when the search backtracks through the frame
 * (a drop at a deadline, an operation that changes nothing).
 */
interface Frame { call: Entry; state: State; dropped: boolean; forced: boolean }

function searchSku(m: SkuModel, opts: Required<CheckOptions>): SkuResult {
  const started = performance.now();
  const n = m.ops.length;
  const definiteTotal = m.ops.filter((o) => o.definite).length;
  const base: Omit<SkuResult, 'verdict' | 'states' | 'ms'> = { sku: m.sku, operations: n, definite: definiteTotal, unknown: n - definiteTotal };
  const head = buildList(m.ops);
  const words = new Uint32Array(Math.ceil(n / 32) + 1);
  const setBit = (i: number): void => { words[i >>> 5]! |= 1 << (i & 31); };
  const clearBit = (i: number): void => { words[i >>> 5]! &= ~(1 << (i & 31)); };
  const linKey = (): string => {
    let k = '';
    for (let i = 0; i < words.length; i++) k += `${words[i]!.toString(36)}.`;
    return k;
  };
  const seen = new Set<string>();
  const stack: Frame[] = [];
  let state = makeState(new Int32Array(m.slots.length).fill(-1), new Uint8Array(m.slots.length));
  let remaining = definiteTotal;
  // The deepest point reached (most definite operations linearized), for the explanation.
  let best = { depth: -1, order: [] as SearchOp[], state, blocked: null as SearchOp | null };
  let iterations = 0;
  let e: Entry | null = head.next;
  /** At the start of a scan of a new (linearized set, state): the forced steps come first. */
  let fresh = true;

  const done = (verdict: Verdict, explanation?: string): SkuResult => ({
    ...base, verdict, states: seen.size, ms: performance.now() - started, ...(explanation === undefined ? {} : { explanation }),
  });

  const descend = (call: Entry, next: State, dropped: boolean, forced: boolean): boolean => {
    setBit(call.op.index);
    const key = linKey() + next.key;
    if (seen.has(key)) {
      clearBit(call.op.index);
      return false;
    }
    seen.add(key);
    stack.push({ call, state, dropped, forced });
    state = next;
    lift(call);
    if (call.op.definite && !dropped) remaining--;
    return true;
  };

  /** Undoes frames until one whose alternatives remain; false when none is left. */
  const backtrack = (): boolean => {
    for (;;) {
      const f = stack.pop();
      if (f === undefined) return false;
      state = f.state;
      clearBit(f.call.op.index);
      unlift(f.call);
      if (f.call.op.definite && !f.dropped) remaining++;
      if (!f.forced) {
        e = f.call.next;
        return true;
      }
    }
  };

  for (;;) {
    if (remaining === 0) return done('linearizable');
    if (++iterations % 512 === 0) {
      if (performance.now() - started > opts.timeBudgetMs) return done('unknown', `search bound hit: more than ${opts.timeBudgetMs} ms (${seen.size} states)`);
      if (seen.size > opts.maxStates) return done('unknown', `search bound hit: more than ${opts.maxStates} states`);
    }
    if (fresh) {
      // First the operations that change nothing and are answered right in this state: each
      // is taken with no alternative (see the top), before any choice is made.
      fresh = false;
      let taken: Entry | null = null;
      for (let x = head.next; x !== null && x.kind === 'call'; x = x.next) {
        if (!x.op.definite) continue;
        const r = step(m, state, x.op);
        if (r.ok && r.next === null) {
          taken = x;
          break;
        }
      }
      if (taken !== null) {
        if (descend(taken, state, false, true)) {
          e = head.next;
          fresh = true;
          continue;
        }
        if (!backtrack()) return done('not_linearizable', explain(m, best, definiteTotal));
        continue;
      }
    }
    if (e === null || e.kind === 'return') {
      const depth = definiteTotal - remaining;
      if (depth > best.depth) best = { depth, order: stack.filter((f) => !f.dropped).map((f) => f.call.op), state, blocked: e?.op ?? null };
      if (!backtrack()) return done('not_linearizable', explain(m, best, definiteTotal));
      continue;
    }
    if (e.kind === 'deadline') {
      // An unknown operation that has not taken effect by its deadline never does.
      if (descend(e.match!, state, true, true)) {
        e = head.next;
        fresh = true;
        continue;
      }
      if (!backtrack()) return done('not_linearizable', explain(m, best, definiteTotal));
      continue;
    }
    // The choices: an operation that changes the state (an unknown one that would, or a
    // definite one answered right). Those that change nothing were taken above, or are not
    // answered right in this state.
    const o = e.op;
    const r = step(m, state, o);
    if (r.ok && r.next !== null && descend(e, r.next, false, false)) {
      e = head.next;
      fresh = true;
      continue;
    }
    e = e.next;
  }
}

function explain(m: SkuModel, best: { depth: number; order: SearchOp[]; state: State; blocked: SearchOp | null }, definiteTotal: number): string {
  const lines: string[] = [];
  lines.push(`sku ${m.sku}: no sequential order explains the history. The longest explainable prefix linearizes ${best.depth} of ${definiteTotal} definite operations` +
    `${best.order.length > 0 ? `, ending with:` : '.'}`);
  for (const o of best.order.slice(-6)) lines.push(`    ${describeOp(o.op)}`);
  lines.push(`  state then: ${describeState(m, best.state)}`);
  const b = best.blocked;
  if (b !== null) {
    const r = step(m, best.state, b);
    lines.push(`  then this operation completed without any order in which its answer is right:`);
    lines.push(`    ${describeOp(b.op)}`);
    lines.push(r.ok ? '  (taking effect there is possible, but every way on from it fails later)' : `  because ${r.why}`);
  }
  return lines.join('\n');
}

/** Checks a whole history: every SKU's part must be linearizable. */
export function checkHistory(history: Operation[], setups: Record<string, SkuSetup>, options: CheckOptions = {}): CheckResult {
  const opts: Required<CheckOptions> = { timeBudgetMs: options.timeBudgetMs ?? 10_000, maxStates: options.maxStates ?? 2_000_000 };
  const { models, problems } = partition(history, setups);
  const skus = models.map((m) => searchSku(m, opts));
  const paragraphs = [...problems, ...skus.filter((s) => s.verdict !== 'linearizable').map((s) => s.explanation ?? s.sku)];
  const verdict: Verdict = problems.length > 0 || skus.some((s) => s.verdict === 'not_linearizable')
    ? 'not_linearizable'
    : skus.some((s) => s.verdict === 'unknown') ? 'unknown' : 'linearizable';
  return { verdict, skus, explanation: paragraphs.join('\n\n') };
}

// ---------------------------------------------------------------------------------------
// The final-state check, after the run: the engine quiet, every reserve resolved.

const laterOrSame: Record<string, string[]> = {
  held: ['held', 'paid', 'cancelled', 'expired'],
  paid: ['paid'],
  cancelled: ['cancelled'],
  expired: ['expired'],
};

/**
 * Every reservation a reserve was answered 201 for exists, in the state it was last
 * acknowledged in or a later one, as made; each SKU's counters equal the sums over its
 * reservations (held units in reserved unless on_payment, paid units in sold),
 * reserved + sold <= onHand, available = onHand - reserved - sold; and no buyer holds or
 * bought more than maxPerBuyer. `final` are the final reads, which every reservation of
 * the engine must be among (so every unknown reserve must have been resolved). Returns the
 * problems found (empty: all good).
 */
export function finalStateCheck(
  history: Operation[],
  setups: Record<string, SkuSetup>,
  final: { reservations: Map<string, Operation>; skus: Map<string, Operation>; unresolvedReserves: ReserveArgs[] },
): string[] {
  const problems: string[] = [];
  if (final.unresolvedReserves.length > 0) problems.push(`reserves whose outcome stayed unknown, so counters cannot be checked exactly: ${JSON.stringify(final.unresolvedReserves)}`);
  const finalIds = new Set([...final.reservations.values()].map((o) => o.id));
  const made = new Map<string, ReserveArgs>();
  /** id -> last acknowledged status (by completion time) and the operation. */
  const lastAck = new Map<string, { status: string; at: number; op: Operation }>();
  for (const o of history) {
    if (finalIds.has(o.id) || o.outcome.type !== 'ok' || o.op === 'getSku') continue;
    const a = o.outcome.answer as ReservationAnswer;
    // What the reservation was made with: its creating reserve's arguments; a replay (which may
    // have asked another qty) stands in, with the qty it answered, when that answer was lost.
    if (o.op === 'reserve' && a.replayed !== true) made.set(a.reservationId, o.args as ReserveArgs);
    else if (o.op === 'reserve' && !made.has(a.reservationId)) made.set(a.reservationId, { ...(o.args as ReserveArgs), qty: a.qty });
    const prior = lastAck.get(a.reservationId);
    if (prior === undefined || o.completeMs > prior.at) lastAck.set(a.reservationId, { status: a.status, at: o.completeMs, op: o });
  }
  const finalStatus = new Map<string, string>();
  for (const [id, args] of made) {
    const read = final.reservations.get(id);
    const ack = lastAck.get(id)!;
    if (read === undefined) {
      problems.push(`reservation ${id} (acknowledged ${ack.status}) was not read at the end`);
      continue;
    }
    if (read.outcome.type !== 'ok') {
      problems.push(`reservation ${id} was acknowledged ${ack.status} (${describeOp(ack.op)}) but at the end: ${describeOp(read)}`);
      continue;
    }
    const v = read.outcome.answer as ReservationAnswer;
    finalStatus.set(id, v.status);
    if (!(laterOrSame[ack.status] ?? []).includes(v.status)) {
      problems.push(`reservation ${id} was last acknowledged ${ack.status} (${describeOp(ack.op)}) but is ${v.status} at the end`);
    }
    if (v.qty !== args.qty || v.buyerId !== args.buyerId || v.sku !== args.sku) {
      problems.push(`reservation ${id} changed: made ${JSON.stringify(args)}, now ${JSON.stringify(v)}`);
    }
  }
  for (const [sku, setup] of Object.entries(setups)) {
    const read = final.skus.get(sku);
    if (read === undefined || read.outcome.type !== 'ok') {
      problems.push(`sku ${sku} could not be read at the end${read === undefined ? '' : `: ${describeOp(read)}`}`);
      continue;
    }
    const view = read.outcome.answer as SkuAnswer;
    const holds = (setup.mode ?? 'pre_deduct') !== 'on_payment';
    let reserved = 0;
    let sold = 0;
    const perBuyer = new Map<string, number>();
    for (const [id, args] of made) {
      if (args.sku !== sku) continue;
      const st = finalStatus.get(id);
      if (st === 'held' && holds) reserved += args.qty;
      if (st === 'paid') sold += args.qty;
      if (st === 'held' || st === 'paid') perBuyer.set(args.buyerId, (perBuyer.get(args.buyerId) ?? 0) + args.qty);
    }
    const want = { onHand: setup.onHand, reserved, sold, available: setup.onHand - reserved - sold };
    const got = { onHand: view.onHand, reserved: view.reserved, sold: view.sold, available: view.available };
    if (JSON.stringify(want) !== JSON.stringify(got)) problems.push(`sku ${sku}: counters ${JSON.stringify(got)}, but its reservations add up to ${JSON.stringify(want)}`);
    if (view.reserved + view.sold > view.onHand) problems.push(`sku ${sku}: reserved + sold = ${view.reserved + view.sold} > onHand ${view.onHand}: sold twice`);
    const max = setup.maxPerBuyer ?? 0;
    for (const [buyer, units] of perBuyer) if (max > 0 && units > max) problems.push(`sku ${sku}: buyer ${buyer} holds or bought ${units} units, over maxPerBuyer ${max}`);
  }
  return problems;
}
