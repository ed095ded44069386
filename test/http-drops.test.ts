// Drops and fair admission over real HTTP against the built engine (shared/API.md v2 "Drops
// and fair admission", with "Callers and what each may do" for who may call what):
// creating and updating drops and the fields that lock once a queue opened; fifo admission in
// joining order at the configured pace (checked on the engine's own admission instants, over
// every sliding one-second window, never on when the test happened to see them); random
// queues whose order follows from the committed seed and HMAC-SHA256, recomputed here, and
// whose seeds are random enough that ranks are uniform (chi-square); draws that hold a unit
// for exactly the first entries of the seeded order that stock and quota can serve; who may
// join and read which entry; sold-out entries; kill -9 in the middle of admission; /metrics.
// Time is only ever waited on with polling loops and generous deadlines: the machine is
// shared, so nothing asserts how fast the engine answered.

import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import {
  ADMIN_TOKEN, NO_TOKEN, TOKENS, api, buyerToken, makeDataDir, sleep, startEngine, stopAllEngines, type Api, type Engine, type Reply,
} from './support/engine-process.js';
import { createSku, expectError, getSku, reserve, reserveOk, uniq } from './support/http-kit.js';
import {
  HEX64, admittedAtOf, chiSquarePValue, createDrop, dropGauge, dropView, entryOf, getDrop, getEntry, getOrder, inParallel,
  joinAsBuyer, joinAsShop, joinOk, maxInWindow, putDrop, seededOrder, sha256Hex, waitFor, type QueueBody,
} from './support/drop-kit.js';

let engine: Engine;
let a: Api;

beforeAll(async () => {
  engine = await startEngine({ env: { FLASH_BUYER_RPS: '0' } });
  a = api(engine.url);
});

afterAll(stopAllEngines);

/** The fields a join answers with, which joining again must answer the same. */
const joinFields = (e: any): Record<string, unknown> => ({ dropId: e.dropId, buyerId: e.buyerId, state: e.state, joinedAt: e.joinedAt });

/** A reserve by the buyer's own token (buyerId is then its sub). */
const reserveAsBuyer = (sku: string, buyerId: string, extra: Record<string, unknown> = {}): Promise<Reply> =>
  a.post('/v1/reservations', { sku, ...extra }, buyerToken(buyerId));

/** Reads the entries of a fifo queue in REVERSE joining order, returned in joining order. */
async function readFifo(x: Api, dropId: string, buyers: readonly string[]): Promise<any[]> {
  const out: any[] = new Array(buyers.length);
  for (let i = buyers.length - 1; i >= 0; i--) out[i] = await getEntry(x, dropId, buyers[i]!);
  return out;
}

/**
 * What any read of a fifo queue must show when its entries (given in joining order) were read
 * last-joined first, whatever admissions happened between the reads: the entries still
 * waiting are a suffix of the joining order (admission takes the front), and their positions
 * rise strictly along it, 1-based, never past the entry's own place in the line.
 */
function expectFifoConsistent(entries: readonly any[], label: string): void {
  const context = `${label}: ${JSON.stringify(entries.map((e) => [e.state, e.position]))}`;
  let seenWaiting = false;
  let lastPos = 0;
  for (const [i, e] of entries.entries()) {
    if (e.state === 'waiting') {
      seenWaiting = true;
      expect(e.position, context).toBeTypeOf('number');
      expect(e.position, context).toBeGreaterThan(lastPos);
      expect(e.position, context).toBeLessThanOrEqual(i + 1);
      lastPos = e.position;
    } else {
      expect(seenWaiting, `${context}: entry ${i} is ${e.state} behind a waiting one`).toBe(false);
    }
  }
}

/** A drop whose only SKU has one unit, held (by a reserve made before the queue existed): admission is paused. */
async function pausedFifo(queue: QueueBody, stockPolicy: { maxPerBuyer?: number } = {}): Promise<{ drop: string; sku: string; blocker: any }> {
  const drop = uniq('drop-paused');
  const sku = uniq('sku-paused');
  await createSku(a, sku, { stock: 1, holdSeconds: 3600, dropId: drop, ...stockPolicy });
  // No queue yet: anyone may reserve (v1), so the one unit can be held before the queue opens.
  const blocker = await reserveOk(a, { sku, buyerId: uniq('blocker') });
  await createDrop(a, drop, { mode: 'fifo', ...queue });
  return { drop, sku, blocker };
}

describe('PUT /v1/drops/{dropId}', () => {
  it('creates (201) and updates (200) a drop by the operator; the public view lists its SKUs, its queue and the seed commitment', async () => {
    const drop = uniq('drop-put');
    const skus = [uniq('dp-b'), uniq('dp-a')];
    for (const sku of skus) await createSku(a, sku, { stock: 5, dropId: drop });
    const opensAt = Date.now() + 60_000;
    const queue = { mode: 'random', opensAt, randomizeSeconds: 30, admitPerSecond: 10, admitSeconds: 90 } as const;
    const created = await putDrop(a, drop, { queue });
    expect(created.status, created.text).toBe(201);
    expect(created.body.dropId).toBe(drop);
    expect([...created.body.skus].sort()).toEqual([...skus].sort());
    expect(created.body.queue).toMatchObject({ ...queue, waiting: 0, admitted: 0 });
    expect(created.body.queue.seedSha256).toMatch(HEX64);
    expect(created.body.queue.seed ?? null, 'the seed is not revealed before the order is fixed').toBeNull();
    const seen = await dropView(a, drop);
    expect(seen.status, seen.text).toBe(200);
    expect(seen.body).toEqual(created.body);

    // The same body again (by admin, who may do everything): 200, the same drop, the same seed commitment.
    const again = await putDrop(a, drop, { queue }, ADMIN_TOKEN);
    expect(again.status, again.text).toBe(200);
    expect(again.body.dropId).toBe(drop);
    expect([...again.body.skus].sort()).toEqual([...skus].sort());
    expect(again.body.queue).toEqual(created.body.queue);

    // Not opened yet: even the mode and opensAt may change.
    const later = Date.now() + 120_000;
    const changed = await putDrop(a, drop, { queue: { mode: 'fifo', opensAt: later, admitPerSecond: 20, admitSeconds: 60 } });
    expect(changed.status, changed.text).toBe(200);
    expect(changed.body.queue).toMatchObject({ mode: 'fifo', opensAt: later, admitPerSecond: 20, admitSeconds: 60 });
    expect(await getDrop(a, drop)).toEqual(changed.body);
  });

  it('fills in the defaults: opensAt now, admitPerSecond 100, admitSeconds 300, randomizeSeconds 0', async () => {
    const drop = uniq('drop-defaults');
    const before = Date.now();
    const view = await createDrop(a, drop, { mode: 'fifo' });
    const after = Date.now();
    expect(view.queue).toMatchObject({ mode: 'fifo', admitPerSecond: 100, admitSeconds: 300, randomizeSeconds: 0, waiting: 0, admitted: 0 });
    expect(view.queue.opensAt).toBeGreaterThanOrEqual(before);
    expect(view.queue.opensAt).toBeLessThanOrEqual(after);
    expect(view.queue.seedSha256).toMatch(HEX64);
    expect(view.skus).toEqual([]);
  });

  it('without a queue, anyone may reserve the drop\'s SKUs, as in v1', async () => {
    const drop = uniq('drop-noqueue');
    const sku = uniq('dnq');
    await createSku(a, sku, { stock: 3, dropId: drop });
    const r = await putDrop(a, drop, {});
    expect(r.status, r.text).toBe(201);
    expect(r.body.skus).toEqual([sku]);
    expect((await reserve(a, { sku, buyerId: 'no-queue-buyer' })).status).toBe(201);
  });

  it('refuses shop, payments, viewer and buyer tokens (403) and no or a bad token (401), changing nothing', async () => {
    const drop = uniq('drop-who');
    await createDrop(a, drop, { mode: 'fifo', opensAt: Date.now() + 60_000 });
    const before = await getDrop(a, drop);
    const body = { queue: { mode: 'random', opensAt: Date.now() + 90_000, admitPerSecond: 1 } };
    for (const token of [TOKENS.shop, TOKENS.shopWeb, TOKENS.payments, TOKENS.viewer, buyerToken('drop-hacker')]) {
      expectError(await putDrop(a, drop, body, token), 403, 'forbidden');
      expectError(await putDrop(a, uniq('drop-who-new'), body, token), 403, 'forbidden');
    }
    expectError(await putDrop(a, drop, body, NO_TOKEN), 401, 'unauthorized');
    expectError(await putDrop(a, drop, body, 'not-a-token-anyone-issued'), 401, 'unauthorized');
    expect(await getDrop(a, drop)).toEqual(before);
  });

  it('answers 400 invalid_request naming the field for bad bodies, and neither creates nor changes a drop', async () => {
    const existing = uniq('drop-bad');
    await createDrop(a, existing, { mode: 'fifo', opensAt: Date.now() + 60_000, admitPerSecond: 7 });
    const before = await getDrop(a, existing);
    const fresh = uniq('drop-bad-new');
    const cases: [unknown, RegExp][] = [
      [{ queue: { mode: 'lottery' } }, /mode/],
      [{ queue: { mode: 'fifo', admitPerSecond: -1 } }, /admitPerSecond/],
      [{ queue: { mode: 'fifo', admitSeconds: -5 } }, /admitSeconds/],
      [{ queue: { mode: 'random', randomizeSeconds: -1 } }, /randomizeSeconds/],
      [{ queue: { mode: 'draw', qtyPerWinner: 1 } }, /closesAt/],
      [{ queue: { mode: 'fifo', opensAt: 'tomorrow' } }, /opensAt/],
      [{ queue: { mode: 'draw', closesAt: 'later' } }, /closesAt/],
      [{ queue: 'fifo' }, /queue/],
      [{ queue: [{ mode: 'fifo' }] }, /queue/],
      [{ queue: 42 }, /queue/],
    ];
    for (const dropId of [existing, fresh]) {
      for (const [body, field] of cases) {
        const r = await putDrop(a, dropId, body);
        expectError(r, 400, 'invalid_request');
        expect(r.body.error.message, JSON.stringify(body)).toMatch(field);
      }
      for (const raw of ['{', '[]', '"fifo"']) {
        expectError(await a.raw('PUT', `/v1/drops/${dropId}`, { body: raw, token: TOKENS.operator }), 400, 'invalid_request');
      }
    }
    expect(await getDrop(a, existing)).toEqual(before);
    // None of them created the fresh drop: a valid body now creates it (201, not 200).
    const created = await putDrop(a, fresh, { queue: { mode: 'fifo' } });
    expect(created.status, created.text).toBe(201);
  });

  it('ignores unknown queue fields, as every body\'s unknown fields (API.md), and never lets __proto__ reach the queue', async () => {
    const dropId = uniq('drop-unknown-fields');
    const raw = '{"queue":{"mode":"fifo","admitPerSecond":9,"priorityLane":true,"__proto__":{"admitSeconds":1},"constructor":{"x":1}},"note":"v3 client"}';
    const r = await a.raw('PUT', `/v1/drops/${dropId}`, { body: raw, token: TOKENS.operator });
    expect(r.status, r.text).toBe(201);
    const view = await getDrop(a, dropId);
    expect(view.queue).toMatchObject({ mode: 'fifo', admitPerSecond: 9, admitSeconds: 300 });
    expect(view.queue).not.toHaveProperty('priorityLane');
    // A bad known field is still refused beside an unknown one.
    const bad = await putDrop(a, dropId, { queue: { mode: 'fifo', admitPerSecond: -1, priorityLane: true } });
    expectError(bad, 400, 'invalid_request');
    expect(bad.body.error.message).toMatch(/admitPerSecond/);
  });

  it('once a queue opened: 409 queue_locked for mode, opensAt, randomizeSeconds and closesAt; the pace and admitSeconds may change', async () => {
    const opensAt = Date.now() - 1000;
    const fifo = uniq('drop-locked');
    const base = { mode: 'fifo', opensAt, admitPerSecond: 10, admitSeconds: 60 } as const;
    await createDrop(a, fifo, base);
    const before = await getDrop(a, fifo);
    for (const queue of [
      { ...base, mode: 'random' },
      { ...base, mode: 'draw', closesAt: Date.now() + 3_600_000 },
      { ...base, opensAt: opensAt + 5000 },
      { ...base, opensAt: opensAt - 5000 },
      { ...base, randomizeSeconds: 5 },
    ]) {
      const r = await putDrop(a, fifo, { queue });
      expectError(r, 409, 'queue_locked');
    }
    expect(await getDrop(a, fifo)).toEqual(before);
    const paced = await putDrop(a, fifo, { queue: { ...base, admitPerSecond: 25, admitSeconds: 45 } });
    expect(paced.status, paced.text).toBe(200);
    expect(paced.body.queue).toMatchObject({ mode: 'fifo', opensAt, admitPerSecond: 25, admitSeconds: 45 });
    expect(paced.body.queue.seedSha256).toBe(before.queue.seedSha256);
    expect(await getDrop(a, fifo)).toEqual(paced.body);

    const draw = uniq('drop-locked-draw');
    const closesAt = Date.now() + 3_600_000;
    const drawBase = { mode: 'draw', opensAt, closesAt, qtyPerWinner: 1 } as const;
    await createDrop(a, draw, drawBase);
    const drawBefore = await getDrop(a, draw);
    for (const queue of [{ ...drawBase, closesAt: closesAt + 60_000 }, { ...drawBase, closesAt: closesAt - 60_000 }, { ...drawBase, mode: 'fifo' }]) {
      expectError(await putDrop(a, draw, { queue }), 409, 'queue_locked');
    }
    expect(await getDrop(a, draw)).toEqual(drawBefore);
    const longer = await putDrop(a, draw, { queue: { ...drawBase, admitSeconds: 200 } });
    expect(longer.status, longer.text).toBe(200);
    expect(longer.body.queue).toMatchObject({ mode: 'draw', opensAt, closesAt, admitSeconds: 200 });
  });
});

describe('fifo queues', () => {
  it('admits in joining order with 1-based positions among the waiting; joining again answers the same entry; only the admitted may reserve, once', async () => {
    const N = 8;
    const admitSeconds = 120;
    const { drop, sku } = await pausedFifo({ opensAt: Date.now(), admitPerSecond: 5, admitSeconds }, { maxPerBuyer: 1 });
    // Someone who never joined: not_admitted comes before sold_out in the order of checks.
    expectError(await reserve(a, { sku, buyerId: 'never-joined' }), 403, 'not_admitted');

    const buyers = Array.from({ length: N }, (_, i) => uniq(`fifo-b${i}`));
    const joined: any[] = [];
    for (const [i, b] of buyers.entries()) {
      const r = await joinAsBuyer(a, drop, b);
      expect(r.status, r.text).toBe(201);
      expect(r.body).toMatchObject({ dropId: drop, buyerId: b, state: 'waiting', position: i + 1 });
      expect(r.body.joinedAt).toBeTypeOf('number');
      if (i > 0) expect(r.body.joinedAt).toBeGreaterThanOrEqual(joined[i - 1].joinedAt);
      joined.push(r.body);
    }
    // Joining again, by the buyer or by the shop for it: 200 and the same entry, not a second one.
    for (const again of [await joinAsBuyer(a, drop, buyers[0]!), await joinAsShop(a, drop, buyers[0]!), await joinAsBuyer(a, drop, buyers[3]!)]) {
      expect(again.status, again.text).toBe(200);
      expect(joinFields(again.body)).toEqual(joinFields(again.body.buyerId === buyers[0] ? joined[0] : joined[3]));
    }

    // The drop's one unit is held: admission pauses, so everyone is still waiting a while later.
    await sleep(1500);
    const paused = await readFifo(a, drop, buyers);
    expect(paused.map((e) => [e.state, e.position])).toEqual(buyers.map((_, i) => ['waiting', i + 1]));
    expect((await getDrop(a, drop)).queue).toMatchObject({ waiting: N, admitted: 0 });
    for (const b of [buyers[0]!, buyers[N - 1]!]) {
      expectError(await reserveAsBuyer(sku, b), 403, 'not_admitted');
      expectError(await reserve(a, { sku, buyerId: b }), 403, 'not_admitted');
    }

    const restockedAt = Date.now();
    const restock = await a.post(`/v1/skus/${sku}/stock`, { delta: N });
    expect(restock.status, restock.text).toBe(200);

    const positions = new Map<string, number[]>(buyers.map((b) => [b, []]));
    const rounds: any[][] = [];
    const admittedAll = await waitFor('every buyer is admitted', async () => {
      const entries = await readFifo(a, drop, buyers);
      rounds.push(entries);
      for (const [i, e] of entries.entries()) if (e.state === 'waiting') positions.get(buyers[i]!)!.push(e.position);
      return entries;
    }, (es) => es.every((e) => e.state === 'admitted'), 60_000, 40);
    for (const [n, round] of rounds.entries()) expectFifoConsistent(round, `round ${n}`);
    for (const [b, seen] of positions) {
      for (let k = 1; k < seen.length; k++) expect(seen[k], `${b}'s positions ${seen}`).toBeLessThanOrEqual(seen[k - 1]!);
    }
    // Someone's position went down while it waited (admission really moved the line).
    expect([...positions.values()].some((seen) => seen.length > 1 && seen[seen.length - 1]! < seen[0]!)).toBe(true);

    const admittedAt = admittedAll.map((e) => admittedAtOf(e, admitSeconds));
    for (const [i, e] of admittedAll.entries()) {
      expect(e.admittedUntil, JSON.stringify(e)).toBeTypeOf('number');
      expect(e.admittedUntil).toBeGreaterThan(Date.now());
      if (typeof e.admittedAt === 'number') expect(e.admittedUntil).toBe(e.admittedAt + admitSeconds * 1000);
      expect(admittedAt[i], 'nobody is admitted while the drop has no available unit').toBeGreaterThanOrEqual(restockedAt);
      if (i > 0) expect(admittedAt[i], `admission order: ${admittedAt}`).toBeGreaterThanOrEqual(admittedAt[i - 1]!);
    }
    expect((await getDrop(a, drop)).queue).toMatchObject({ waiting: 0, admitted: N });

    // The first buyer reserves: 201, its entry becomes used, and it counts no longer as admitted.
    const first = await reserveAsBuyer(sku, buyers[0]!, { idempotencyKey: 'checkout-1' });
    expect(first.status, first.text).toBe(201);
    expect(first.body).toMatchObject({ sku, buyerId: buyers[0], status: 'held', qty: 1 });
    expect((await getEntry(a, drop, buyers[0]!)).state).toBe('used');
    expect((await getDrop(a, drop)).queue).toMatchObject({ waiting: 0, admitted: N - 1 });
    // A used buyer may not reserve again, but retrying with its key gets its hold back.
    expectError(await reserveAsBuyer(sku, buyers[0]!, { idempotencyKey: 'checkout-2' }), 403, 'not_admitted');
    expectError(await reserveAsBuyer(sku, buyers[0]!), 403, 'not_admitted');
    const replay = await reserveAsBuyer(sku, buyers[0]!, { idempotencyKey: 'checkout-1' });
    expect([200, 201], replay.text).toContain(replay.status);
    expect(replay.headers.get('idempotent-replayed')).toBe('true');
    expect(replay.body.reservationId).toBe(first.body.reservationId);
    expect(replay.body.status).toBe('held');
    // Admission is the buyer's, whoever reserves for it: the shop reserves for the second buyer.
    const byShop = await reserve(a, { sku, buyerId: buyers[1]! });
    expect(byShop.status, byShop.text).toBe(201);
    expect((await getEntry(a, drop, buyers[1]!)).state).toBe('used');
    const view = await getSku(a, sku);
    expect(view.reserved).toBe(3); // the blocker's hold and the two admitted buyers' holds
  });

  it(`admits at most admitPerSecond buyers in any one-second window, in joining order`, async () => {
    const R = 4;
    const N = 30;
    const admitSeconds = 300;
    const drop = uniq('drop-pace');
    const sku = uniq('sku-pace');
    await createSku(a, sku, { stock: 100, dropId: drop });
    await createDrop(a, drop, { mode: 'fifo', opensAt: Date.now(), admitPerSecond: R, admitSeconds });
    const buyers = Array.from({ length: N }, (_, i) => uniq(`pace-b${i}`));
    const joins: any[] = [];
    for (const b of buyers) joins.push(await joinOk(a, drop, b));
    await waitFor('all admitted', () => getDrop(a, drop), (v) => v.queue.admitted === N, 60_000, 200);
    const entries = await readFifo(a, drop, buyers);
    expect(entries.map((e) => e.state)).toEqual(buyers.map(() => 'admitted'));
    const times = entries.map((e) => admittedAtOf(e, admitSeconds));
    const worst = maxInWindow(times, 1000);
    expect(worst.count, `${worst.count} admissions in [${worst.from}, ${worst.from + 1000}); instants ${times.map((t) => t - times[0]!)}`).toBeLessThanOrEqual(R);
    for (let i = 0; i < N; i++) {
      expect(times[i]).toBeGreaterThanOrEqual(joins[i].joinedAt);
      if (i > 0) expect(times[i], `admission order: ${times}`).toBeGreaterThanOrEqual(times[i - 1]!);
    }
    expect((await getDrop(a, drop)).queue).toMatchObject({ waiting: 0, admitted: N });
  }, 90_000);

  it('has no seeded order: GET .../order answers 409 order_not_fixed', async () => {
    const drop = uniq('drop-fifo-order');
    await createDrop(a, drop, { mode: 'fifo' });
    await joinOk(a, drop, uniq('fo-b'));
    expectError(await getOrder(a, drop), 409, 'order_not_fixed');
  });

  it('tells still-waiting buyers sold_out at once when the drop sells out, and waiting again when stock returns', async () => {
    const { drop, sku, blocker } = await pausedFifo({ opensAt: Date.now(), admitPerSecond: 50, admitSeconds: 300 });
    const buyers = Array.from({ length: 4 }, (_, i) => uniq(`so-b${i}`));
    for (const b of buyers) expect((await joinOk(a, drop, b)).state).toBe('waiting');
    // One unit held, none available: they wait (not sold_out: a unit is still held).
    expect((await readFifo(a, drop, buyers)).map((e) => e.state)).toEqual(buyers.map(() => 'waiting'));
    // The hold is paid: no unit available or held anywhere in the drop.
    const paid = await a.post(`/v1/reservations/${blocker.reservationId}/pay`, {}, TOKENS.payments);
    expect(paid.status, paid.text).toBe(200);
    await waitFor('every waiting buyer reads sold_out', () => readFifo(a, drop, buyers), (es) => es.every((e) => e.state === 'sold_out'), 10_000);
    expectError(await reserveAsBuyer(sku, buyers[0]!), 403, 'not_admitted');
    // Stock returns: they wait again, and are admitted in joining order.
    expect((await a.post(`/v1/skus/${sku}/stock`, { delta: 10 })).status).toBe(200);
    const back = await waitFor('every buyer is admitted again', () => readFifo(a, drop, buyers), (es) => es.every((e) => e.state === 'admitted'), 30_000);
    const times = back.map((e) => admittedAtOf(e, 300));
    for (let i = 1; i < times.length; i++) expect(times[i]).toBeGreaterThanOrEqual(times[i - 1]!);
  });
});

describe('random queues', () => {
  it('before opensAt + randomizeSeconds: no seed, no order, no admission; then the revealed seed matches its commitment and fixes the order and admission', async () => {
    const randomizeSeconds = 3;
    const admitSeconds = 300;
    const drop = uniq('drop-random');
    const sku = uniq('sku-random');
    await createSku(a, sku, { stock: 100, dropId: drop });
    const opensAt = Date.now();
    const created = await createDrop(a, drop, { mode: 'random', opensAt, randomizeSeconds, admitPerSecond: 5, admitSeconds });
    const revealAt = opensAt + randomizeSeconds * 1000;
    const seedSha256: string = created.queue.seedSha256;
    expect(seedSha256).toMatch(HEX64);
    const tag = uniq('rnd');
    // Non-ASCII ids too: the HMAC's message is the UTF-8 buyerId and keys compare as bytes.
    const early = [...Array.from({ length: 8 }, (_, i) => `${tag}-${i}`), `${tag}-zoë`, `${tag}-日本`, `${tag}-Ω`];
    const joins = await Promise.all(early.map((b) => joinAsBuyer(a, drop, b)));
    for (const r of joins) {
      expect(r.status, r.text).toBe(201);
      expect(r.body.state).toBe('waiting');
      expect(r.body.position ?? null, 'no position while the order is not fixed').toBeNull();
      expect(r.body.joinedAt, 'joined before opensAt + randomizeSeconds (the machine stalled 3 s?)').toBeLessThan(revealAt);
    }
    // Before the reveal (only what was answered before it counts: the machine may be slow).
    const order0 = await getOrder(a, drop);
    const view0 = await getDrop(a, drop);
    const entry0 = await getEntry(a, drop, early[0]!, buyerToken(early[0]!));
    const reserve0 = await reserveAsBuyer(sku, early[1]!);
    const checkedBefore = Date.now() < revealAt;
    // Answered after the reveal, the reserve may have found early[1] admitted: it is then used.
    const usedEarly = reserve0.status === 201 ? early[1]! : null;
    if (checkedBefore) {
      expectError(order0, 409, 'order_not_fixed');
      expect(view0.queue.seed ?? null).toBeNull();
      expect(view0.queue).toMatchObject({ waiting: early.length, admitted: 0, seedSha256 });
      expect(entry0.state).toBe('waiting');
      expect(entry0.position ?? null).toBeNull();
      expectError(reserve0, 403, 'not_admitted');
    }

    const revealed = await waitFor('the seed is revealed', () => getDrop(a, drop), (v) => typeof v.queue.seed === 'string', 30_000);
    const seed: string = revealed.queue.seed;
    expect(seed).toMatch(HEX64);
    expect(sha256Hex(Buffer.from(seed, 'hex'))).toBe(seedSha256);
    expect(revealed.queue.seedSha256).toBe(seedSha256);
    expect(Date.now()).toBeGreaterThanOrEqual(revealAt);
    // Late joiners come after, in joining order.
    const late = [`${tag}-late-a`, `${tag}-late-b`];
    for (const b of late) {
      const j = await joinOk(a, drop, b);
      expect(j.joinedAt).toBeGreaterThanOrEqual(revealAt);
    }
    const expected = [...seededOrder(seed, early), ...late];
    const order = await getOrder(a, drop);
    expect(order.status, order.text).toBe(200);
    expect(order.body.dropId).toBe(drop);
    expect(order.body.seed).toBe(seed);
    expect(order.body.order).toEqual(expected.map((b) => sha256Hex(b)));
    // Public: readable without a token, the same for every caller.
    expect((await a.get(`/v1/drops/${drop}/order`, TOKENS.viewer)).body.order).toEqual(order.body.order);
    // Not simply the joining order (a 1 in 11! chance).
    expect(seededOrder(seed, early)).not.toEqual(early);

    const admittedOrder = expected.filter((b) => b !== usedEarly);
    const entries = await waitFor('everyone is admitted', () => Promise.all(admittedOrder.map((b) => getEntry(a, drop, b))),
      (es) => es.every((e) => e.state === 'admitted'), 60_000, 100);
    const times = entries.map((e) => admittedAtOf(e, admitSeconds));
    for (const [i, t] of times.entries()) {
      expect(t, 'a random queue admits nobody before opensAt + randomizeSeconds').toBeGreaterThanOrEqual(revealAt);
      if (i > 0) expect(t, `admission follows the seeded order: ${times}`).toBeGreaterThanOrEqual(times[i - 1]!);
    }
    console.log(`[http-drops] random: ${early.length} early + ${late.length} late joiners; before-reveal checks ${checkedBefore ? 'made' : 'skipped (slow machine)'}`);
  }, 90_000);

  it('draws ranks uniformly: over 200 drops of 4 buyers, every buyer takes every rank equally often (chi-square, p > 0.001)', async () => {
    const D = 200;
    const K = 4;
    const randomizeSeconds = 3;
    // The same four buyers in every drop: the order can only vary through the seed.
    const slots = Array.from({ length: K }, (_, s) => `${uniq('uni')}-slot${s}`);
    const startedAt = Date.now();
    const drops = await inParallel(Array.from({ length: D }, (_, d) => d), 12, async () => {
      const drop = uniq('drop-uni');
      await createSku(a, uniq('sku-uni'), { stock: 1, dropId: drop });
      const opensAt = Date.now();
      const view = await createDrop(a, drop, { mode: 'random', opensAt, randomizeSeconds, admitPerSecond: 1000 });
      const joins = await Promise.all(slots.map((b) => joinAsBuyer(a, drop, b)));
      for (const j of joins) expect(j.status, j.text).toBe(201);
      return { drop, revealAt: view.queue.opensAt + randomizeSeconds * 1000, seedSha256: view.queue.seedSha256 as string, joinedAt: joins.map((j) => j.body.joinedAt as number) };
    });
    const setupMs = Date.now() - startedAt;
    const lastReveal = Math.max(...drops.map((d) => d.revealAt));
    await sleep(Math.max(0, lastReveal - Date.now()));
    const orders = await inParallel(drops, 12, (d) => waitFor(`the order of ${d.drop} is fixed`, () => getOrder(a, d.drop), (r) => r.status === 200, 30_000, 100));

    const counts = Array.from({ length: K }, () => new Array<number>(K).fill(0));
    const seeds = new Set<string>();
    let used = 0;
    for (const [i, d] of drops.entries()) {
      const { seed, order } = orders[i]!.body;
      expect(seed).toMatch(HEX64);
      expect(sha256Hex(Buffer.from(seed, 'hex')), d.drop).toBe(d.seedSha256);
      seeds.add(seed);
      expect([...order].sort()).toEqual(slots.map((b) => sha256Hex(b)).sort());
      // Only drops whose four entries all joined before the reveal are shuffled as a whole.
      if (!d.joinedAt.every((t) => t < d.revealAt)) continue;
      used++;
      expect(order, d.drop).toEqual(seededOrder(seed, slots).map((b) => sha256Hex(b)));
      for (const [s, b] of slots.entries()) {
        const row = counts[s]!;
        const rank = order.indexOf(sha256Hex(b));
        row[rank] = (row[rank] ?? 0) + 1;
      }
    }
    expect(seeds.size, 'every drop has its own seed').toBe(D);
    expect(used, 'drops whose buyers all joined before the reveal').toBeGreaterThanOrEqual(D * 0.9);
    const expectedCount = used / K;
    let x2 = 0;
    for (const row of counts) for (const o of row) x2 += (o - expectedCount) ** 2 / expectedCount;
    // Each drop adds a permutation matrix, so rows and columns both sum to `used`: the statistic
    // is K/(K-1) times a chi-square with (K-1)^2 degrees of freedom.
    const p = chiSquarePValue((x2 * (K - 1)) / K, (K - 1) ** 2);
    console.log(`[http-drops] uniformity: ${used} drops in ${setupMs} ms, rank counts ${JSON.stringify(counts)}, X^2 ${x2.toFixed(2)}, p ${p.toFixed(4)}`);
    expect(p, `rank counts per buyer slot ${JSON.stringify(counts)}`).toBeGreaterThan(0.001);
  }, 90_000);
});

describe('draws', () => {
  it('at closesAt holds qtyPerWinner for the first entries of the seeded order that stock and quota can serve; the rest lose', async () => {
    const drop = uniq('drop-draw');
    const sku = uniq('sku-draw');
    const E = 10;
    const S = 3;
    const entrants = Array.from({ length: E }, (_, i) => uniq(`draw-b${i}`));
    // Three entrants already hold the drop's one unit each allowed (maxPerBuyer 1), taken before
    // the queue existed: the draw cannot serve them, and the next entries are tried.
    const overQuota = entrants.slice(0, 3);
    await createSku(a, sku, { stock: overQuota.length + S, maxPerBuyer: 1, holdSeconds: 600, dropId: drop });
    const preHolds = new Map<string, string>();
    for (const b of overQuota) preHolds.set(b, (await reserveOk(a, { sku, buyerId: b })).reservationId);
    const closesAt = Date.now() + 2500;
    const created = await createDrop(a, drop, { mode: 'draw', closesAt, qtyPerWinner: 1 });
    expect(created.queue).toMatchObject({ mode: 'draw', closesAt, qtyPerWinner: 1 });
    const joins = await Promise.all(entrants.map((b) => joinAsBuyer(a, drop, b)));
    for (const r of joins) {
      expect(r.status, r.text).toBe(201);
      expect(r.body).toMatchObject({ dropId: drop, state: 'entered' });
    }
    // Every reserve on a draw's SKU is refused, before and after the draw.
    expectError(await reserveAsBuyer(sku, entrants[5]!), 403, 'not_admitted');
    expectError(await reserve(a, { sku, buyerId: entrants[6]! }), 403, 'not_admitted');
    const order0 = await getOrder(a, drop);
    const entry0 = await getEntry(a, drop, entrants[4]!, buyerToken(entrants[4]!));
    if (Date.now() < closesAt) {
      expectError(order0, 409, 'order_not_fixed');
      expect(entry0.state).toBe('entered');
    }

    const revealed = await waitFor('the draw ran and revealed its seed', () => getDrop(a, drop), (v) => typeof v.queue.seed === 'string', 30_000, 100);
    const seed: string = revealed.queue.seed;
    expect(sha256Hex(Buffer.from(seed, 'hex'))).toBe(created.queue.seedSha256);
    const order = seededOrder(seed, entrants);
    const winners = order.filter((b) => !overQuota.includes(b)).slice(0, S);
    const got = new Map<string, any>();
    for (const b of entrants) got.set(b, await getEntry(a, drop, b));
    const states = Object.fromEntries(entrants.map((b) => [b, got.get(b).state]));
    expect(states).toEqual(Object.fromEntries(entrants.map((b) => [b, winners.includes(b) ? 'won' : 'lost'])));
    const holdIds = new Set<string>();
    for (const b of winners) {
      const id = got.get(b).reservationId;
      expect(id, `${b} won: ${JSON.stringify(got.get(b))}`).toBeTypeOf('string');
      holdIds.add(id);
      for (const token of [TOKENS.payments, ADMIN_TOKEN, buyerToken(b)]) {
        const r = await a.get(`/v1/reservations/${id}`, token);
        expect(r.status, r.text).toBe(200);
        expect(r.body).toMatchObject({ reservationId: id, sku, buyerId: b, qty: 1, status: 'held' });
      }
      // The winner reads its own entry, with the hold.
      expect((await getEntry(a, drop, b, buyerToken(b))).reservationId).toBe(id);
    }
    expect(holdIds.size).toBe(S);
    for (const b of overQuota) expect(holdIds.has(preHolds.get(b)!)).toBe(false);
    // The winners' holds and the three earlier ones, nothing more: no buyer holds two.
    const view = await getSku(a, sku);
    expect({ reserved: view.reserved, available: view.available, sold: view.sold }).toEqual({ reserved: overQuota.length + S, available: 0, sold: 0 });

    const published = await getOrder(a, drop);
    expect(published.status, published.text).toBe(200);
    expect(published.body.seed).toBe(seed);
    expect(published.body.order).toEqual(order.map((b) => sha256Hex(b)));
    expectError(await joinAsBuyer(a, drop, uniq('draw-too-late')), 409, 'queue_closed');
    expectError(await joinAsShop(a, drop, uniq('draw-too-late')), 409, 'queue_closed');
    expectError(await reserveAsBuyer(sku, winners[0]!, { idempotencyKey: 'after-draw' }), 403, 'not_admitted');
    expectError(await reserveAsBuyer(sku, order.find((b) => !winners.includes(b) && !overQuota.includes(b)) ?? entrants[9]!), 403, 'not_admitted');
    expect((await getSku(a, sku)).reserved).toBe(overQuota.length + S);
  }, 60_000);
});

describe('who may join and read entries', () => {
  it('a buyer joins for itself and reads only its own entry; shop and admin join for a buyer; readers read any; others are refused', async () => {
    const drop = uniq('drop-who-joins');
    const sku = uniq('sku-who-joins');
    await createSku(a, sku, { stock: 10, dropId: drop });
    await createDrop(a, drop, { mode: 'fifo', admitPerSecond: 1, admitSeconds: 300 });
    const [ann, bob, cy, dee] = ['ann', 'bob', 'cy', 'dee'].map((n) => uniq(`who-${n}`)) as [string, string, string, string];
    const own = await joinAsBuyer(a, drop, ann);
    expect(own.status, own.text).toBe(201);
    expect(own.body).toMatchObject({ dropId: drop, buyerId: ann });
    // A body buyerId equal to the token's sub is fine; another is 403 and joins nobody.
    expect((await a.post(`/v1/drops/${drop}/queue`, { buyerId: ann }, buyerToken(ann))).status).toBe(200);
    expectError(await a.post(`/v1/drops/${drop}/queue`, { buyerId: bob }, buyerToken(ann)), 403, 'forbidden');
    expectError(await entryOf(a, drop, bob), 404, 'unknown_entry');
    // The shop joins for a buyer named in the body, and must name one; admin may too.
    const byShop = await joinAsShop(a, drop, bob);
    expect(byShop.status, byShop.text).toBe(201);
    expect(byShop.body).toMatchObject({ dropId: drop, buyerId: bob });
    const noBuyer = await a.post(`/v1/drops/${drop}/queue`, {}, TOKENS.shop);
    expectError(noBuyer, 400, 'invalid_request');
    expect(noBuyer.body.error.message).toMatch(/buyerId/);
    expectError(await a.post(`/v1/drops/${drop}/queue`, { buyerId: 'bad\u0007id' }, TOKENS.shop), 400, 'invalid_request');
    expect((await a.post(`/v1/drops/${drop}/queue`, { buyerId: cy }, ADMIN_TOKEN)).status).toBe(201);
    // Callers that may not join: 403; no token or a bad one: 401.
    for (const token of [TOKENS.viewer, TOKENS.operator, TOKENS.payments]) {
      expectError(await a.post(`/v1/drops/${drop}/queue`, { buyerId: dee }, token), 403, 'forbidden');
    }
    expectError(await a.post(`/v1/drops/${drop}/queue`, { buyerId: dee }, NO_TOKEN), 401, 'unauthorized');
    expectError(await a.post(`/v1/drops/${drop}/queue`, { buyerId: dee }, 'not-a-token-anyone-issued'), 401, 'unauthorized');
    expectError(await entryOf(a, drop, dee), 404, 'unknown_entry');

    // Reads: the buyer its own only (another's is as if it did not exist); readers any; payments none.
    const mine = await entryOf(a, drop, ann, buyerToken(ann));
    expect(mine.status, mine.text).toBe(200);
    expect(['waiting', 'admitted']).toContain(mine.body.state);
    expectError(await entryOf(a, drop, bob, buyerToken(ann)), 404, 'unknown_entry');
    expectError(await entryOf(a, drop, dee, buyerToken(ann)), 404, 'unknown_entry');
    for (const token of [TOKENS.viewer, TOKENS.shop, TOKENS.operator, ADMIN_TOKEN]) {
      const r = await entryOf(a, drop, bob, token);
      expect(r.status, r.text).toBe(200);
      expect(['waiting', 'admitted']).toContain(r.body.state);
    }
    expectError(await entryOf(a, drop, bob, TOKENS.payments), 403, 'forbidden');
    expectError(await entryOf(a, drop, bob, NO_TOKEN), 401, 'unauthorized');
    // No entry at all, or no such drop: 404 unknown_entry.
    expectError(await entryOf(a, drop, 'never-joined'), 404, 'unknown_entry');
    expectError(await entryOf(a, drop, 'never-joined', buyerToken('never-joined')), 404, 'unknown_entry');
    // In a drop that does not exist there is no entry either: unknown_entry, as API.md says.
    for (const token of [TOKENS.viewer, buyerToken(ann)]) expectError(await entryOf(a, uniq('drop-nowhere'), ann, token), 404, 'unknown_entry');
    // One entry per buyer however many times it joins.
    await Promise.all(Array.from({ length: 10 }, () => joinAsBuyer(a, drop, ann)));
    const v = (await getDrop(a, drop)).queue;
    expect(v.waiting + v.admitted).toBe(3);
  });

  it('joining before opensAt is 409 queue_not_open and leaves no entry', async () => {
    const drop = uniq('drop-not-open');
    await createDrop(a, drop, { mode: 'fifo', opensAt: Date.now() + 3_600_000 });
    const b = uniq('early-bird');
    expectError(await joinAsBuyer(a, drop, b), 409, 'queue_not_open');
    expectError(await joinAsShop(a, drop, b), 409, 'queue_not_open');
    expectError(await entryOf(a, drop, b), 404, 'unknown_entry');
    expect((await getDrop(a, drop)).queue).toMatchObject({ waiting: 0, admitted: 0 });
  });

  it('applies the risk rules of the drop\'s SKUs at joining: 403 buyer_blocked, and no entry', async () => {
    const drop = uniq('drop-risk');
    await createSku(a, uniq('sku-risk'), { stock: 10, dropId: drop, minPastOrders: 2 });
    await createDrop(a, drop, { mode: 'fifo' });
    const [fresh, unvouched, vouched, shopFresh, shopVouched] = ['fresh', 'unvouched', 'vouched', 'shop-fresh', 'shop-vouched'].map((n) => uniq(`risk-${n}`)) as [string, string, string, string, string];
    expectError(await joinAsBuyer(a, drop, fresh, { pastOrders: 1 }), 403, 'buyer_blocked');
    // A buyer's body fields are ignored: only its signed claims count.
    expectError(await a.post(`/v1/drops/${drop}/queue`, { pastOrders: 10 }, buyerToken(unvouched)), 403, 'buyer_blocked');
    expect((await joinAsBuyer(a, drop, vouched, { pastOrders: 2 })).status).toBe(201);
    // The shop vouches in the body.
    expectError(await joinAsShop(a, drop, shopFresh), 403, 'buyer_blocked');
    expect((await joinAsShop(a, drop, shopVouched, { pastOrders: 5 })).status).toBe(201);
    for (const b of [fresh, unvouched, shopFresh]) expectError(await entryOf(a, drop, b), 404, 'unknown_entry');
    for (const b of [vouched, shopVouched]) expect((await getEntry(a, drop, b)).state).toMatch(/^(waiting|admitted)$/);
  });
});

describe('/metrics', () => {
  // API.md names no metric for queues; dropGauge (test/support/drop-kit.ts) reads any
  // flash_*drop*/flash_*queue* sample labelled with the drop id and "waiting"/"admitted".
  it('exposes per-drop queue figures: waiting and admitted counts', async () => {
    const { drop, sku } = await pausedFifo({ opensAt: Date.now(), admitPerSecond: 50, admitSeconds: 300 });
    const buyers = Array.from({ length: 3 }, (_, i) => uniq(`metrics-b${i}`));
    for (const b of buyers) await joinOk(a, drop, b);
    // Only the samples that name this drop (the failure message shows them, not the whole scrape).
    const scrape = async (): Promise<string> => (await a.get('/metrics', NO_TOKEN)).text.split('\n').filter((l) => l.includes(`"${drop}"`)).join('\n');
    await waitFor('the queue gauges show 3 waiting, 0 admitted', scrape,
      (t) => dropGauge(t, drop, 'waiting') === 3 && dropGauge(t, drop, 'admitted') === 0, 10_000, 200);
    expect((await a.post(`/v1/skus/${sku}/stock`, { delta: 5 })).status).toBe(200);
    await waitFor('the queue gauges show 0 waiting, 3 admitted', scrape,
      (t) => dropGauge(t, drop, 'waiting') === 0 && dropGauge(t, drop, 'admitted') === 3, 20_000, 200);
  });
});

describe('queues and kill -9', () => {
  const laterOrSame: Record<string, string[]> = {
    waiting: ['waiting', 'admitted', 'used', 'lapsed'],
    admitted: ['admitted', 'used', 'lapsed'],
    used: ['used'],
    lapsed: ['lapsed'],
  };

  it('loses no entry, position or admission, and keeps seeds and revealed orders, across a kill -9 at a random moment', async () => {
    const dataDir = makeDataDir();
    const first = await startEngine({ dataDir, env: { FLASH_BUYER_RPS: '0' } });
    const b1 = api(first.url);

    // A random drop whose order was revealed before the crash, and one not opened yet.
    const revealedDrop = uniq('crash-rnd');
    await createSku(b1, uniq('crash-rnd-sku'), { stock: 10, dropId: revealedDrop });
    await createDrop(b1, revealedDrop, { mode: 'random', opensAt: Date.now(), randomizeSeconds: 1, admitPerSecond: 100 });
    for (let i = 0; i < 5; i++) await joinOk(b1, revealedDrop, `crash-rnd-${i}`);
    await waitFor('the random drop is revealed', () => getDrop(b1, revealedDrop), (v) => typeof v.queue.seed === 'string', 30_000, 100);
    const orderBefore = await getOrder(b1, revealedDrop);
    expect(orderBefore.status, orderBefore.text).toBe(200);
    const futureDrop = uniq('crash-future');
    const future = await createDrop(b1, futureDrop, { mode: 'random', opensAt: Date.now() + 3_600_000, randomizeSeconds: 60 });

    // A fifo drop being admitted slowly while buyers keep joining and reading.
    const admitSeconds = 300;
    const drop = uniq('crash-fifo');
    const sku = uniq('crash-fifo-sku');
    await createSku(b1, sku, { stock: 100, maxPerBuyer: 1, dropId: drop });
    await createDrop(b1, drop, { mode: 'fifo', opensAt: Date.now(), admitPerSecond: 4, admitSeconds });
    const buyers: string[] = [];
    const last = new Map<string, any>();
    const join = async (): Promise<void> => {
      const b = `crash-b${buyers.length + 1000}-${Math.random().toString(36).slice(2, 6)}`;
      const r = await joinAsBuyer(b1, drop, b);
      expect(r.status, r.text).toBe(201);
      buyers.push(b);
      last.set(b, r.body);
    };
    for (let i = 0; i < 6; i++) await join();
    await waitFor('two buyers are admitted', () => getDrop(b1, drop), (v) => v.queue.admitted >= 2, 30_000, 50);
    const user = buyers[0]!;
    const held = await waitFor(`${user} may reserve`, () => reserveAsBuyerOn(b1, sku, user), (r) => r.status === 201, 30_000, 50);
    last.set(user, { state: 'used' });

    const stop = { now: false };
    const workload = (async () => {
      while (!stop.now) {
        try {
          const b = `crash-b${buyers.length + 1000}-${Math.random().toString(36).slice(2, 6)}`;
          const r = await joinAsBuyer(b1, drop, b);
          if (r.status === 201) {
            buyers.push(b);
            last.set(b, r.body);
          }
          const pick = buyers[Math.floor(Math.random() * buyers.length)]!;
          const e = await entryOf(b1, drop, pick);
          if (e.status === 200 && pick !== user) last.set(pick, e.body);
        } catch {
          // The engine was killed: the call may or may not have happened; it is not counted.
        }
        await sleep(100);
      }
    })();
    await sleep(150 + Math.floor(Math.random() * 900));
    await first.kill9();
    stop.now = true;
    await workload;

    const second = await startEngine({ dataDir, env: { FLASH_BUYER_RPS: '0' } });
    const b2 = api(second.url);
    const after = await readFifo(b2, drop, buyers);
    expectFifoConsistent(after, 'right after the restart');
    for (const [i, b] of buyers.entries()) {
      const was = last.get(b);
      const now = after[i];
      expect(laterOrSame[was.state], `${b} was ${was.state}, is ${now.state}`).toContain(now.state);
      if (was.state === 'admitted' && now.state === 'admitted') expect(now.admittedUntil, `${b}'s admission`).toBe(was.admittedUntil);
    }
    expect(after[0].state).toBe('used');
    const hold = await b2.get(`/v1/reservations/${held.body.reservationId}`, TOKENS.shop);
    expect(hold.body).toMatchObject({ status: 'held', buyerId: user });
    // Admission goes on after the restart, still in joining order.
    const done = await waitFor('everyone is admitted after the restart', () => readFifo(b2, drop, buyers),
      (es) => es.every((e) => e.state !== 'waiting'), 60_000, 100);
    const admitted = done.map((e, i) => ({ i, e })).filter(({ e }) => e.state === 'admitted');
    expect(admitted.length).toBe(buyers.length - 1);
    const times = admitted.map(({ e }) => admittedAtOf(e, admitSeconds));
    for (let k = 1; k < times.length; k++) expect(times[k], `admission order across the crash: ${times}`).toBeGreaterThanOrEqual(times[k - 1]!);

    // Seeds and the revealed order are the same.
    const orderAfter = await getOrder(b2, revealedDrop);
    expect(orderAfter.status, orderAfter.text).toBe(200);
    expect({ seed: orderAfter.body.seed, order: orderAfter.body.order }).toEqual({ seed: orderBefore.body.seed, order: orderBefore.body.order });
    const futureAfter = await getDrop(b2, futureDrop);
    expect(futureAfter.queue.seedSha256).toBe(future.queue.seedSha256);
    expect(futureAfter.queue.seed ?? null).toBeNull();
    console.log(`[http-drops] kill -9: ${buyers.length} answered joins survived; states before ${JSON.stringify(tally([...last.values()].map((e) => e.state)))}`);
  }, 90_000);
});

function reserveAsBuyerOn(x: Api, sku: string, buyerId: string): Promise<Reply> {
  return x.post('/v1/reservations', { sku, idempotencyKey: `crash-${buyerId}` }, buyerToken(buyerId));
}

function tally(xs: readonly string[]): Record<string, number> {
  const out: Record<string, number> = {};
  for (const x of xs) out[x] = (out[x] ?? 0) + 1;
  return out;
}

describe('GET /v1/drops/{dropId}/order in pages', () => {
  it('pages a long order with offset, limit and next, the pages joining into the whole order, also while late joiners grow it', async () => {
    const dropId = uniq('order-pages');
    await createDrop(a, dropId, { mode: 'random', randomizeSeconds: 1, admitPerSecond: 1 });
    const early = Array.from({ length: 30 }, (_, i) => `pg-${i}`);
    await inParallel(early, 8, (b) => joinOk(a, dropId, b));
    const whole = await waitFor('the order revealed', () => getOrder(a, dropId), (r) => r.status === 200);
    expect(whole.body.order).toHaveLength(30);
    expect(whole.body.next).toBeUndefined(); // the whole order in one answer: no paging fields
    expect(whole.body.order).toEqual(seededOrder(whole.body.seed, early).map(sha256Hex));
    // Late joiners, read concurrently with pages: every page agrees with the whole order.
    const late = Array.from({ length: 10 }, (_, i) => `pg-late-${i}`);
    const pages = await Promise.all(late.map(async (b, i) => {
      await joinOk(a, dropId, b);
      return a.get(`/v1/drops/${dropId}/order?offset=${i * 3}&limit=3`);
    }));
    const final = (await getOrder(a, dropId)).body.order as string[];
    expect(final).toEqual([...whole.body.order, ...late.map(sha256Hex)]);
    pages.forEach((p, i) => {
      expect(p.status, p.text).toBe(200);
      expect(p.body.order).toEqual(final.slice(i * 3, i * 3 + 3));
      expect(p.body.offset).toBe(i * 3);
      expect(p.body.next).toBe(i * 3 + 3);
    });
    const last = await a.get(`/v1/drops/${dropId}/order?offset=38&limit=5`);
    expect([last.body.order, last.body.next, last.body.total]).toEqual([final.slice(38), null, 40]);
    for (const q of ['limit=0', 'limit=100001', 'offset=-1', 'offset=x', 'limit=1e3']) {
      expectError(await a.get(`/v1/drops/${dropId}/order?${q}`), 400, 'invalid_request');
    }
  });
});
