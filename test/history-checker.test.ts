// Unit tests of the history checker (test/support/linearizability.ts) on hand-written
// histories, and properties: a history produced by the engine's own pure core run
// sequentially, with every call stretched into a random window around its moment (and
// some answers lost), is always judged linearizable; with no overlap, one corrupted read
// is always caught.

import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { apply, createShardState, type Command, type Mode } from '../src/domain/index.js';
import type { Operation, OpArgs, OpName, Outcome } from './support/history.js';
import { checkHistory, finalStateCheck, type SkuSetup } from './support/linearizability.js';

// ---------------------------------------------------------------------------------------
// Building hand-written histories.

let nextId = 1;
function op(client: string, name: OpName, args: OpArgs, span: [number, number], outcome: Outcome, deadlineMs = Infinity): Operation {
  return { id: nextId++, client, op: name, args, invokeMs: span[0], completeMs: span[1], outcome, epoch: 0, deadlineMs };
}
const reserve = (client: string, sku: string, buyerId: string, qty: number, key: string | undefined, span: [number, number], outcome: Outcome, deadlineMs?: number): Operation =>
  op(client, 'reserve', key === undefined ? { sku, buyerId, qty } : { sku, buyerId, qty, idempotencyKey: key }, span, outcome, deadlineMs);
const held = (id: string, sku: string, buyerId: string, qty = 1, status = 'held', replayed = false): Outcome =>
  ({ type: 'ok', status: 201, answer: { reservationId: id, sku, buyerId, qty, status, replayed } });
const resView = (id: string, sku: string, buyerId: string, status: string, qty = 1): Outcome =>
  ({ type: 'ok', status: 200, answer: { reservationId: id, sku, buyerId, qty, status, replayed: false } });
const refused = (code: string, status = 409): Outcome => ({ type: 'fail', status, code, checked: true });
const unknown: Outcome = { type: 'unknown', reason: 'ECONNRESET' };
const skuView = (sku: string, onHand: number, reserved: number, sold: number): Outcome =>
  ({ type: 'ok', status: 200, answer: { sku, onHand, reserved, sold, available: onHand - reserved - sold } });
const pay = (client: string, id: string, span: [number, number], outcome: Outcome, deadlineMs?: number): Operation => op(client, 'pay', { reservationId: id }, span, outcome, deadlineMs);
const cancel = (client: string, id: string, span: [number, number], outcome: Outcome): Operation => op(client, 'cancel', { reservationId: id }, span, outcome);
const getRes = (client: string, id: string, span: [number, number], outcome: Outcome): Operation => op(client, 'getReservation', { reservationId: id }, span, outcome);
const getSku = (client: string, sku: string, span: [number, number], outcome: Outcome): Operation => op(client, 'getSku', { sku }, span, outcome);

function expectLinearizable(history: Operation[], setups: Record<string, SkuSetup>): void {
  const r = checkHistory(history, setups);
  expect(r.verdict, r.explanation).toBe('linearizable');
}

function expectViolation(history: Operation[], setups: Record<string, SkuSetup>, ...mentions: (string | RegExp)[]): string {
  const r = checkHistory(history, setups);
  expect(r.verdict, r.explanation).toBe('not_linearizable');
  for (const m of mentions) expect(r.explanation).toMatch(m);
  return r.explanation;
}

const S = 'sku-a';

describe('linearizable histories pass', () => {
  it('a sequential life: reserve, read, pay, read, cancel refused, replay of the key shows paid', () => {
    expectLinearizable([
      reserve('c1', S, 'b1', 2, 'k1', [0, 5], held('1.1x', S, 'b1', 2)),
      getSku('c2', S, [6, 8], skuView(S, 3, 2, 0)),
      pay('c1', '1.1x', [10, 12], resView('1.1x', S, 'b1', 'paid', 2)),
      getSku('c2', S, [13, 14], skuView(S, 3, 0, 2)),
      cancel('c3', '1.1x', [15, 16], refused('already_paid')),
      reserve('c1', S, 'b1', 2, 'k1', [17, 18], held('1.1x', S, 'b1', 2, 'paid', true)),
      reserve('c1', S, 'b1', 1, 'k1', [19, 20], held('1.1x', S, 'b1', 2, 'paid', true)),
      getRes('c2', '1.1x', [21, 22], resView('1.1x', S, 'b1', 'paid', 2)),
    ], { [S]: { onHand: 3 } });
  });

  it('overlapping reserves for the last unit: only one wins, whichever it is, and overlapping reads see either side', () => {
    // The later-invoked call wins: fine, they overlap.
    expectLinearizable([
      reserve('c1', S, 'b1', 1, 'k1', [0, 20], refused('sold_out')),
      reserve('c2', S, 'b2', 1, 'k2', [2, 18], held('1.2x', S, 'b2')),
      getSku('c3', S, [1, 19], skuView(S, 1, 0, 0)),
      getSku('c4', S, [3, 17], skuView(S, 1, 1, 0)),
      getSku('c3', S, [21, 22], skuView(S, 1, 1, 0)),
    ], { [S]: { onHand: 1 } });
  });

  it('a pay and a cancel racing on one hold: either order, as long as the answers agree', () => {
    expectLinearizable([
      reserve('c1', S, 'b1', 1, 'k1', [0, 1], held('1.1x', S, 'b1')),
      pay('c2', '1.1x', [2, 10], resView('1.1x', S, 'b1', 'paid')),
      cancel('c3', '1.1x', [3, 9], refused('already_paid')),
      reserve('c1', S, 'b2', 1, 'k2', [11, 12], held('1.2x', S, 'b2')),
      reserve('c4', S, 'b3', 1, 'k3', [13, 14], held('1.3x', S, 'b3')),
      cancel('c3', '1.3x', [15, 20], resView('1.3x', S, 'b3', 'cancelled')),
      pay('c2', '1.3x', [16, 19], refused('reservation_cancelled')),
    ], { [S]: { onHand: 3 } });
  });

  it('an unknown reserve that took effect: a later read counts it and its retry is a replay', () => {
    expectLinearizable([
      reserve('c1', S, 'b1', 1, 'k1', [0, 5], unknown),
      getSku('c2', S, [10, 11], skuView(S, 2, 1, 0)),
      reserve('c1', S, 'b1', 1, 'k1', [12, 13], held('1.1x', S, 'b1', 1, 'held', true)),
      pay('c1', '1.1x', [14, 15], resView('1.1x', S, 'b1', 'paid')),
    ], { [S]: { onHand: 2 } });
  });

  it('an unknown reserve that never took effect: a later read does not count it and its retry creates the hold', () => {
    expectLinearizable([
      reserve('c1', S, 'b1', 1, 'k1', [0, 5], unknown, 6),
      getSku('c2', S, [10, 11], skuView(S, 1, 0, 0)),
      reserve('c3', S, 'b3', 1, 'k3', [12, 13], held('1.3x', S, 'b3')),
      cancel('c3', '1.3x', [14, 15], resView('1.3x', S, 'b3', 'cancelled')),
      reserve('c1', S, 'b1', 1, 'k1', [16, 17], held('1.1x', S, 'b1')),
    ], { [S]: { onHand: 1 } });
  });

  it('an unknown pay may take effect long after it was sent, while its process lives', () => {
    expectLinearizable([
      reserve('c1', S, 'b1', 1, 'k1', [0, 1], held('1.1x', S, 'b1')),
      pay('c2', '1.1x', [2, 3], unknown),
      getRes('c3', '1.1x', [10, 11], resView('1.1x', S, 'b1', 'held')),
      getRes('c3', '1.1x', [20, 21], resView('1.1x', S, 'b1', 'paid')),
    ], { [S]: { onHand: 1 } });
  });

  it('quotas: held and paid units count, a cancelled hold gives its units back', () => {
    expectLinearizable([
      reserve('c1', S, 'b1', 2, 'k1', [0, 1], held('1.1x', S, 'b1', 2)),
      reserve('c1', S, 'b1', 1, 'k2', [2, 3], refused('quota_exceeded')),
      cancel('c1', '1.1x', [4, 5], resView('1.1x', S, 'b1', 'cancelled', 2)),
      reserve('c1', S, 'b1', 1, 'k3', [6, 7], held('1.3x', S, 'b1')),
      pay('c1', '1.3x', [8, 9], resView('1.3x', S, 'b1', 'paid')),
      reserve('c1', S, 'b1', 2, 'k4', [10, 11], refused('quota_exceeded')),
      reserve('c2', S, 'b2', 2, 'k5', [12, 13], held('1.5x', S, 'b2', 2)),
      reserve('c3', S, 'b3', 2, 'k6', [14, 15], held('1.6x', S, 'b3', 2)),
      reserve('c4', S, 'b4', 1, 'k7', [16, 17], refused('sold_out')),
    ], { [S]: { onHand: 5, maxPerBuyer: 2 } });
  });

  it('on_payment: reserving holds nothing, pay takes the units or answers sold_out', () => {
    const P = 'sku-p';
    expectLinearizable([
      reserve('c1', P, 'b1', 1, 'k1', [0, 1], held('1.1x', P, 'b1')),
      reserve('c2', P, 'b2', 1, 'k2', [2, 3], held('1.2x', P, 'b2')),
      getSku('c3', P, [4, 5], skuView(P, 1, 0, 0)),
      pay('c2', '1.2x', [6, 7], resView('1.2x', P, 'b2', 'paid')),
      pay('c1', '1.1x', [8, 9], refused('sold_out')),
      getSku('c3', P, [10, 11], skuView(P, 1, 0, 1)),
    ], { [P]: { onHand: 1, mode: 'on_payment' } });
  });

  it('SKUs are checked apart: operations on a reservation go with its SKU', () => {
    const B = 'sku-b';
    expectLinearizable([
      reserve('c1', S, 'b1', 1, 'k1', [0, 10], held('1.1x', S, 'b1')),
      reserve('c2', B, 'b1', 1, 'k1', [1, 9], held('0.1y', B, 'b1')),
      pay('c1', '0.1y', [11, 12], resView('0.1y', B, 'b1', 'paid')),
      getSku('c3', S, [13, 14], skuView(S, 1, 1, 0)),
      getSku('c3', B, [13, 14], skuView(B, 1, 0, 1)),
    ], { [S]: { onHand: 1 }, [B]: { onHand: 1 } });
  });
});

describe('non-linearizable histories fail, with an explanation', () => {
  it('two 201s for the last unit', () => {
    const why = expectViolation([
      reserve('c1', S, 'b1', 1, 'k1', [0, 10], held('1.1x', S, 'b1')),
      reserve('c2', S, 'b2', 1, 'k2', [2, 12], held('1.2x', S, 'b2')),
    ], { [S]: { onHand: 1 } }, /sold_out/, /sku sku-a: no sequential order/, /available 0/);
    expect(why).toMatch(/reserve\(sku-a, b[12], qty 1/);
  });

  it('a read that shows a unit the history cannot explain', () => {
    expectViolation([
      reserve('c1', S, 'b1', 1, 'k1', [0, 10], held('1.1x', S, 'b1')),
      getSku('c2', S, [11, 12], skuView(S, 5, 2, 0)),
    ], { [S]: { onHand: 5 } }, /getSku\(sku-a\) -> 200 onHand 5 reserved 2/, /model answers 200 reserved 1 sold 0 available 4/);
  });

  it('an acknowledged reserve missing from a later read (lost after a restart)', () => {
    expectViolation([
      reserve('c1', S, 'b1', 1, 'k1', [0, 10], held('1.1x', S, 'b1')),
      getSku('c2', S, [20, 21], skuView(S, 5, 0, 0)),
    ], { [S]: { onHand: 5 } }, /model answers 200 reserved 1/);
    expectViolation([
      reserve('c1', S, 'b1', 1, 'k1', [0, 10], held('1.1x', S, 'b1')),
      getRes('c2', '1.1x', [20, 21], refused('unknown_reservation', 404)),
    ], { [S]: { onHand: 5 } }, /getReservation\(1\.1x\) -> 404 unknown_reservation/, /model answers 200 1\.1x held/);
  });

  it('an acknowledged pay missing from a later read', () => {
    expectViolation([
      reserve('c1', S, 'b1', 1, 'k1', [0, 1], held('1.1x', S, 'b1')),
      pay('c1', '1.1x', [2, 3], resView('1.1x', S, 'b1', 'paid')),
      getRes('c2', '1.1x', [4, 5], resView('1.1x', S, 'b1', 'held')),
    ], { [S]: { onHand: 5 } }, /model answers 200 1\.1x paid/);
  });

  it('an idempotent retry answered with a different reservation id', () => {
    expectViolation([
      reserve('c1', S, 'b1', 1, 'k1', [0, 1], held('1.1x', S, 'b1')),
      reserve('c1', S, 'b1', 1, 'k1', [2, 3], held('1.2x', S, 'b1', 1, 'held', true)),
    ], { [S]: { onHand: 5 } }, /idempotency key already names another reservation/, /model answers 201 1\.1x held \(replayed\)/);
  });

  it('an idempotent retry that was applied twice (a second hold, not marked replayed)', () => {
    expectViolation([
      reserve('c1', S, 'b1', 1, 'k1', [0, 5], unknown, 6),
      reserve('c1', S, 'b1', 1, 'k1', [7, 8], held('1.1x', S, 'b1')),
      getSku('c2', S, [9, 10], skuView(S, 5, 2, 0)),
    ], { [S]: { onHand: 5 } }, /reserved 2/);
  });

  it('an unknown reserve that shows up after the death of the process it was sent to', () => {
    expectViolation([
      reserve('c1', S, 'b1', 1, 'k1', [0, 5], unknown, 6),
      getSku('c2', S, [7, 8], skuView(S, 5, 0, 0)),
      getSku('c2', S, [9, 10], skuView(S, 5, 1, 0)),
    ], { [S]: { onHand: 5 } }, /model answers 200 reserved 0/);
  });

  it('a quota passed', () => {
    expectViolation([
      reserve('c1', S, 'b1', 1, 'k1', [0, 1], held('1.1x', S, 'b1')),
      reserve('c1', S, 'b1', 1, 'k2', [2, 3], held('1.2x', S, 'b1')),
    ], { [S]: { onHand: 5, maxPerBuyer: 1 } }, /quota_exceeded/);
  });

  it('an answer about a reservation that no reserve was answered with', () => {
    expectViolation([getRes('c1', '1.9z', [0, 1], resView('1.9z', S, 'b1', 'held'))], { [S]: { onHand: 5 } }, /no reserve was answered with/);
  });
});

describe('the search stays small', () => {
  it('hundreds of concurrent reads around an unknown reserve whose moment they must pin down', () => {
    // An unknown reserve (no deadline), then 300 overlapping reads: half saw the unit held,
    // half did not, interleaved in time. Only orders with every "0 reserved" read before the
    // reserve and every "1 reserved" read after it work. A search that kept each read as a
    // choice would explore subsets of the reads after trying the reserve first; reads that
    // change nothing are taken at once instead, so a few thousand states suffice.
    const history: Operation[] = [reserve('c0', S, 'b1', 1, 'k1', [0, 1], unknown)];
    for (let i = 0; i < 300; i++) history.push(getSku(`r${i}`, S, [10 + i, 1000 + i], skuView(S, 5, i % 2, 0)));
    history.push(getSku('r', S, [2000, 2001], skuView(S, 5, 1, 0)));
    const r = checkHistory(history, { [S]: { onHand: 5 } }, { maxStates: 5000 });
    expect(r.verdict, r.explanation).toBe('linearizable');
    expect(r.skus[0]!.states).toBeLessThan(5000);
  });

  it('and the same reads still catch a read no order explains', () => {
    const history: Operation[] = [reserve('c0', S, 'b1', 1, 'k1', [0, 1], unknown)];
    for (let i = 0; i < 300; i++) history.push(getSku(`r${i}`, S, [10 + i, 1000 + i], skuView(S, 5, i % 2, 0)));
    // A read after all of them that shows the unit free again: nothing ever cancelled it.
    history.push(getSku('r', S, [2000, 2001], skuView(S, 5, 0, 0)));
    const r = checkHistory(history, { [S]: { onHand: 5 } }, { maxStates: 5000 });
    expect(r.verdict, r.explanation).toBe('not_linearizable');
  });
});

describe('the search bound', () => {
  it('answers unknown, not a pass, when its bound is hit', () => {
    // Twenty reserves overlapping each other, then a read no order explains: every subset
    // of the reserves is a state to explore.
    const history: Operation[] = [];
    for (let i = 0; i < 20; i++) history.push(reserve(`c${i}`, S, `b${i}`, 1, `k${i}`, [i, 100 + i], held(`1.${i}x`, S, `b${i}`)));
    history.push(getSku('r', S, [200, 201], skuView(S, 40, 21, 0)));
    const bounded = checkHistory(history, { [S]: { onHand: 40 } }, { maxStates: 2000 });
    expect(bounded.verdict).toBe('unknown');
    expect(bounded.explanation).toMatch(/search bound hit/);
    expect(checkHistory(history, { [S]: { onHand: 40 } }, { timeBudgetMs: 0 }).verdict).toBe('unknown');
  });
});

describe('the final-state check', () => {
  const setups = { [S]: { onHand: 3, maxPerBuyer: 2 } };
  const history = [
    reserve('c1', S, 'b1', 1, 'k1', [0, 1], held('1.1x', S, 'b1')),
    reserve('c1', S, 'b2', 2, 'k2', [2, 3], held('1.2x', S, 'b2', 2)),
    pay('c1', '1.1x', [4, 5], resView('1.1x', S, 'b1', 'paid')),
  ];
  it('passes when every acknowledged reservation is there and the counters add up', () => {
    const reads = {
      reservations: new Map([
        ['1.1x', getRes('final', '1.1x', [10, 11], resView('1.1x', S, 'b1', 'paid'))],
        ['1.2x', getRes('final', '1.2x', [10, 11], resView('1.2x', S, 'b2', 'cancelled', 2))],
      ]),
      skus: new Map([[S, getSku('final', S, [12, 13], skuView(S, 3, 0, 1))]]),
      unresolvedReserves: [],
    };
    expect(finalStateCheck([...history, ...reads.reservations.values(), ...reads.skus.values()], setups, reads)).toEqual([]);
  });
  it('reports a paid reservation read back as held, and counters that do not add up', () => {
    const reads = {
      reservations: new Map([
        ['1.1x', getRes('final', '1.1x', [10, 11], resView('1.1x', S, 'b1', 'held'))],
        ['1.2x', getRes('final', '1.2x', [10, 11], refused('unknown_reservation', 404))],
      ]),
      skus: new Map([[S, getSku('final', S, [12, 13], skuView(S, 3, 3, 1))]]),
      unresolvedReserves: [],
    };
    const problems = finalStateCheck([...history, ...reads.reservations.values(), ...reads.skus.values()], setups, reads);
    expect(problems.join('\n')).toMatch(/1\.1x was last acknowledged paid .* but is held/);
    expect(problems.join('\n')).toMatch(/1\.2x was acknowledged held .* but at the end: .*404 unknown_reservation/);
    expect(problems.join('\n')).toMatch(/sold twice/);
  });
});

// ---------------------------------------------------------------------------------------
// Properties: histories from the engine's own core, run sequentially.

const T0 = 1_700_000_000_000;

type Gen =
  | { k: 'reserve'; sku: number; buyer: number; qty: number; key: number | null }
  | { k: 'pay' | 'cancel' | 'get'; ref: number }
  | { k: 'sku'; sku: number };

interface Plan {
  skus: { onHand: number; mode: Mode; maxPerBuyer: number }[];
  steps: { g: Gen; window: [number, number]; lost: 'no' | 'applied' | 'not_applied'; deadline: number | null }[];
}

const genArb = fc.oneof(
  { weight: 4, arbitrary: fc.record({ k: fc.constant('reserve' as const), sku: fc.nat(1), buyer: fc.nat(3), qty: fc.integer({ min: 1, max: 2 }), key: fc.option(fc.nat(3), { nil: null }) }) },
  { weight: 3, arbitrary: fc.record({ k: fc.constantFrom('pay' as const, 'pay' as const, 'cancel' as const, 'get' as const), ref: fc.nat(20) }) },
  { weight: 2, arbitrary: fc.record({ k: fc.constant('sku' as const), sku: fc.nat(1) }) },
);

const planArb = (maxWindow: number, lossy: boolean): fc.Arbitrary<Plan> => fc.record({
  skus: fc.array(fc.record({
    onHand: fc.integer({ min: 1, max: 5 }), mode: fc.constantFrom<Mode>('pre_deduct', 'on_order', 'on_payment'), maxPerBuyer: fc.integer({ min: 0, max: 3 }),
  }), { minLength: 2, maxLength: 2 }),
  steps: fc.array(fc.record({
    g: genArb,
    window: fc.tuple(fc.integer({ min: 0, max: maxWindow }), fc.integer({ min: 0, max: maxWindow })),
    lost: lossy ? fc.constantFrom<'no' | 'applied' | 'not_applied'>('no', 'no', 'no', 'no', 'no', 'applied', 'not_applied') : fc.constant('no' as const),
    deadline: fc.option(fc.integer({ min: 0, max: maxWindow }), { nil: null }),
  }), { minLength: 1, maxLength: 40, size: 'max' }),
});

/** Runs the plan through the core, in order; each call's window surrounds its moment (10 ms apart). */
function historyOf(plan: Plan): { history: Operation[]; setups: Record<string, SkuSetup> } {
  const state = createShardState(0, 1);
  const names = plan.skus.map((_, i) => `p-sku-${i}`);
  const setups: Record<string, SkuSetup> = {};
  plan.skus.forEach((s, i) => {
    const r = apply(state, { t: 'sku.upsert', sku: names[i]!, stock: s.onHand, mode: s.mode, holdSeconds: 3600, maxPerBuyer: s.maxPerBuyer } as Command, T0);
    if (!r.outcome.ok) throw new Error(`setup: ${r.outcome.code}`);
    setups[names[i]!] = { onHand: s.onHand, mode: s.mode, maxPerBuyer: s.maxPerBuyer };
  });
  const known: string[] = [];
  const history: Operation[] = [];
  plan.steps.forEach((st, i) => {
    const at = 100 + 10 * i;
    const g = st.g;
    let name: OpName;
    let args: OpArgs;
    let cmd: Command;
    if (g.k === 'reserve') {
      name = 'reserve';
      const a = { sku: names[g.sku]!, buyerId: `b${g.buyer}`, qty: g.qty, ...(g.key === null ? {} : { idempotencyKey: `k${g.key}` }) };
      args = a;
      cmd = { t: 'res.reserve', sku: a.sku, buyerId: a.buyerId, qty: a.qty, nonce: i.toString(36), ...(g.key === null ? {} : { idemKey: `k${g.key}` }) };
    } else if (g.k === 'sku' || known.length === 0) {
      name = 'getSku';
      const sku = names[g.k === 'sku' ? g.sku : 0]!;
      args = { sku };
      cmd = { t: 'sku.get', sku };
    } else {
      const id = known[g.ref % known.length]!;
      name = g.k === 'get' ? 'getReservation' : g.k;
      args = { reservationId: id };
      cmd = g.k === 'pay' ? { t: 'res.pay', id } : g.k === 'cancel' ? { t: 'res.cancel', id } : { t: 'res.get', id };
    }
    const span: [number, number] = [at - st.window[0], at + st.window[1]];
    if (st.lost === 'not_applied') {
      // Sent, never applied: the answer is lost; the deadline may fall anywhere after the call.
      history.push({ id: i + 1, client: `c${i % 5}`, op: name, args, invokeMs: span[0], completeMs: span[1], outcome: { type: 'unknown', reason: 'lost' }, epoch: 0, deadlineMs: st.deadline === null ? Infinity : span[0] + st.deadline });
      return;
    }
    const a = apply(state, cmd, T0 + at);
    let outcome: Outcome;
    if (st.lost === 'applied') outcome = { type: 'unknown', reason: 'lost' };
    else if (!a.outcome.ok) outcome = { type: 'fail', status: 409, code: a.outcome.code, checked: true };
    else if (name === 'getSku') {
      const v = a.outcome.sku!;
      outcome = { type: 'ok', status: 200, answer: { sku: v.sku, onHand: v.onHand, reserved: v.reserved, sold: v.sold, available: v.available } };
    } else {
      const v = a.outcome.reservation!;
      outcome = { type: 'ok', status: a.outcome.status === 'created' ? 201 : 200, answer: { reservationId: v.reservationId, sku: v.sku, buyerId: v.buyerId, qty: v.qty, status: v.status, replayed: a.outcome.replayed === true } };
      if (name === 'reserve' && !known.includes(v.reservationId)) known.push(v.reservationId);
    }
    // An applied call whose answer was lost took effect at its moment, so its deadline is after it.
    const deadlineMs = st.lost === 'applied' && st.deadline !== null ? at + st.deadline : Infinity;
    history.push({ id: i + 1, client: `c${i % 5}`, op: name, args, invokeMs: span[0], completeMs: span[1], outcome, epoch: 0, deadlineMs });
  });
  return { history, setups };
}

describe('properties', () => {
  it('a history of the core run sequentially, with random concurrency windows and lost answers, is always linearizable', () => {
    fc.assert(fc.property(planArb(35, true), (plan) => {
      const { history, setups } = historyOf(plan);
      const r = checkHistory(history, setups, { timeBudgetMs: 5000 });
      expect(r.verdict, `${r.explanation}\n${JSON.stringify(history)}`).toBe('linearizable');
    }), { numRuns: 300 });
  });

  it('with calls that do not overlap, one corrupted SKU read is always caught', () => {
    fc.assert(fc.property(planArb(4, false), fc.nat(), fc.constantFrom('reserved', 'sold'), (plan, which, field) => {
      const { history, setups } = historyOf(plan);
      const reads = history.filter((o) => o.op === 'getSku' && o.outcome.type === 'ok');
      fc.pre(reads.length > 0);
      const read = reads[which % reads.length]!;
      const answer = (read.outcome as unknown as { answer: Record<string, number> }).answer;
      answer[field] = answer[field]! + 1;
      answer.available = answer.available! - 1;
      const r = checkHistory(history, setups);
      expect(r.verdict).toBe('not_linearizable');
    }), { numRuns: 200 });
  });
});
