// Table-driven unit tests of the shard core's catalogue commands (sku.upsert, sku.adjust,
// sku.link, sku.get), its stock events, its clock, and the command guard that refuses
// malformed commands of any type before they touch state. Reservation commands are in
// domain-reservations.test.ts and domain-pay-cancel.test.ts, housekeeping in
// domain-expire.test.ts.

import { describe, expect, test } from 'vitest';
import {
  apply, createShardState, Limits, shardForSku, toSnapshot,
  type Applied, type Command, type Mode, type ShardConfig, type ShardState, type SkuView,
} from '../src/domain/index.js';
import { okOf, codeOf, T0 } from './support/domain-kit.js';

type Upsert = Extract<Command, { t: 'sku.upsert' }>;

let nonceCounter = 0;
function nonce(): string {
  return (nonceCounter++ % 1_679_616).toString(36).padStart(4, '0');
}

function shard(config: Partial<ShardConfig> = {}, shardId = 0, shardCount = 1): ShardState {
  return createShardState(shardId, shardCount, config);
}

function view(state: ShardState, sku: string): SkuView {
  const v = okOf(apply(state, { t: 'sku.get', sku }, 0)).sku;
  if (v === undefined) throw new Error('sku.get answered no view');
  return v;
}

function upsert(state: ShardState, c: Omit<Upsert, 't'>, nowMs = T0): Applied {
  return apply(state, { t: 'sku.upsert', ...c }, nowMs);
}

function reserve(state: ShardState, sku: string, buyerId: string, qty: number, nowMs = T0): string {
  const r = okOf(apply(state, { t: 'res.reserve', sku, buyerId, qty, nonce: nonce() }, nowMs)).reservation;
  if (r === undefined) throw new Error('reserve answered no reservation');
  return r.reservationId;
}

/** A SKU name (or drop id) whose routing key lands on `target` of `count` shards. */
function nameRoutingTo(prefix: string, target: number, count: number, asDrop = false): string {
  for (let i = 0; ; i++) {
    const name = `${prefix}${i}`;
    const shardOf = asDrop ? shardForSku('any', name, count) : shardForSku(name, null, count);
    if (shardOf === target) return name;
  }
}

describe('sku.upsert', () => {
  test('creating a SKU answers created, with stock 0 and the documented defaults when nothing is given', () => {
    const s = shard();
    const a = upsert(s, { sku: 'tee' }, T0);
    expect(a.mutated).toBe(true);
    expect(okOf(a)).toMatchObject({ status: 'created' });
    expect(okOf(a).sku).toEqual({
      sku: 'tee', onHand: 0, available: 0, reserved: 0, sold: 0, refunded: 0, mode: 'pre_deduct', holdSeconds: 600,
      maxPerBuyer: 0, startsAt: 0, endsAt: 0, dropId: null, lowStockThreshold: 0, minAccountAgeSeconds: 0,
      minPastOrders: 0, channels: {}, createdAt: T0, updatedAt: T0,
    });
  });

  test('creating a SKU takes its stock and every policy field it is given', () => {
    const s = shard();
    const a = upsert(s, {
      sku: 'tee', stock: 25, mode: 'on_order', holdSeconds: 30, maxPerBuyer: 2, startsAtMs: T0 - 1, endsAtMs: T0 + 1,
      dropId: 'spring', lowStockThreshold: 5, minAccountAgeSeconds: 60, minPastOrders: 1,
    });
    expect(okOf(a).sku).toMatchObject({
      onHand: 25, available: 25, mode: 'on_order', holdSeconds: 30, maxPerBuyer: 2, startsAt: T0 - 1, endsAt: T0 + 1,
      dropId: 'spring', lowStockThreshold: 5, minAccountAgeSeconds: 60, minPastOrders: 1,
    });
  });

  const updates: { name: string; update: Omit<Upsert, 't' | 'sku'>; expected: Partial<SkuView> }[] = [
    { name: 'updating the mode changes only the mode', update: { mode: 'on_payment' }, expected: { mode: 'on_payment', holdSeconds: 60 } },
    { name: 'updating holdSeconds and maxPerBuyer changes them', update: { holdSeconds: 5, maxPerBuyer: 0 }, expected: { holdSeconds: 5, maxPerBuyer: 0 } },
    { name: 'updating the sale window changes it', update: { startsAtMs: T0 + 10, endsAtMs: T0 + 20 }, expected: { startsAt: T0 + 10, endsAt: T0 + 20 } },
    { name: 'updating risk rules and the low-stock threshold changes them', update: { minAccountAgeSeconds: 7, minPastOrders: 3, lowStockThreshold: 4 }, expected: { minAccountAgeSeconds: 7, minPastOrders: 3, lowStockThreshold: 4 } },
    { name: 'an update ignores stock, which is used on create only', update: { stock: 999 }, expected: { onHand: 10, available: 10 } },
    { name: 'an update naming the SKU\'s own dropId is accepted', update: { dropId: 'spring' }, expected: { dropId: 'spring' } },
    { name: 'an empty update keeps every field', update: {}, expected: { mode: 'on_order', holdSeconds: 60, maxPerBuyer: 3, onHand: 10 } },
  ];
  for (const { name, update, expected } of updates) test(name, () => {
    const s = shard();
    okOf(upsert(s, { sku: 'tee', stock: 10, mode: 'on_order', holdSeconds: 60, maxPerBuyer: 3, dropId: 'spring' }, T0));
    const a = upsert(s, { sku: 'tee', ...update }, T0 + 1000);
    expect(a.mutated).toBe(true);
    expect(okOf(a).status).toBe('ok');
    expect(okOf(a).sku).toMatchObject({ ...expected, createdAt: T0, updatedAt: T0 + 1000 });
    expect(view(s, 'tee')).toEqual(okOf(a).sku);
  });

  test('a policy update leaves live reservations with the mode and expiry they were made with', () => {
    const s = shard();
    okOf(upsert(s, { sku: 'tee', stock: 10, mode: 'pre_deduct', holdSeconds: 60 }));
    const id = reserve(s, 'tee', 'ann', 2);
    okOf(upsert(s, { sku: 'tee', mode: 'on_payment', holdSeconds: 5 }, T0 + 1));
    const r = okOf(apply(s, { t: 'res.get', id }, T0 + 2)).reservation;
    expect(r).toMatchObject({ mode: 'pre_deduct', expiresAt: T0 + 60_000, status: 'held' });
    expect(view(s, 'tee')).toMatchObject({ reserved: 2, available: 8 });
  });

  const refusals: {
    name: string; setup: Omit<Upsert, 't'> | null; command: Omit<Upsert, 't'>; code: string;
    config?: { shardId: number; shardCount: number };
  }[] = [
    { name: 'changing the dropId of a drop SKU is refused with drop_mismatch', setup: { sku: 'tee', stock: 1, dropId: 'spring' }, command: { sku: 'tee', dropId: 'autumn' }, code: 'drop_mismatch' },
    { name: 'giving a dropId to a SKU created without one is refused with drop_mismatch', setup: { sku: 'tee', stock: 1 }, command: { sku: 'tee', dropId: 'spring' }, code: 'drop_mismatch' },
    { name: 'removing the dropId of a drop SKU is refused with drop_mismatch', setup: { sku: 'tee', stock: 1, dropId: 'spring' }, command: { sku: 'tee', dropId: null, mode: 'on_order' }, code: 'drop_mismatch' },
    { name: 'creating a SKU whose sale ends when it starts is refused with invalid_request', setup: null, command: { sku: 'tee', stock: 5, startsAtMs: T0, endsAtMs: T0 }, code: 'invalid_request' },
    { name: 'creating a SKU whose sale ends before it starts is refused with invalid_request', setup: null, command: { sku: 'tee', stock: 5, startsAtMs: T0 + 2, endsAtMs: T0 + 1 }, code: 'invalid_request' },
    { name: 'updating endsAt to before the existing startsAt is refused with invalid_request', setup: { sku: 'tee', stock: 1, startsAtMs: T0 + 100 }, command: { sku: 'tee', endsAtMs: T0 + 50, mode: 'on_order' }, code: 'invalid_request' },
    { name: 'updating startsAt to the existing endsAt is refused with invalid_request', setup: { sku: 'tee', stock: 1, endsAtMs: T0 + 100 }, command: { sku: 'tee', startsAtMs: T0 + 100, holdSeconds: 9 }, code: 'invalid_request' },
    { name: 'creating a SKU whose routing key hashes to another shard is refused with invalid_request', setup: null, command: { sku: nameRoutingTo('sku-', 2, 4), stock: 5 }, code: 'invalid_request', config: { shardId: 0, shardCount: 4 } },
    { name: 'creating a drop SKU whose drop hashes to another shard is refused with invalid_request', setup: null, command: { sku: nameRoutingTo('sku-', 0, 4), stock: 5, dropId: nameRoutingTo('drop-', 1, 4, true) }, code: 'invalid_request', config: { shardId: 0, shardCount: 4 } },
  ];
  for (const { name, setup, command, code, config } of refusals) test(`${name}, and changes nothing`, () => {
    const s = shard({}, config?.shardId ?? 0, config?.shardCount ?? 1);
    if (setup !== null) okOf(upsert(s, setup, T0));
    const before = toSnapshot(s);
    const a = upsert(s, command, T0 + 5000);
    expect(codeOf(a)).toBe(code);
    expect(a.mutated).toBe(false);
    expect(toSnapshot(s)).toEqual(before);
  });

  test('a window with only one end set is valid, and 0 means open', () => {
    const s = shard();
    expect(okOf(upsert(s, { sku: 'a', startsAtMs: T0 + 10 })).sku).toMatchObject({ startsAt: T0 + 10, endsAt: 0 });
    expect(okOf(upsert(s, { sku: 'b', endsAtMs: T0 + 10 })).sku).toMatchObject({ startsAt: 0, endsAt: T0 + 10 });
    expect(okOf(upsert(s, { sku: 'b', startsAtMs: 0 })).sku).toMatchObject({ startsAt: 0, endsAt: T0 + 10 });
  });

  test('a SKU is created on the shard its routing key hashes to: its own name, or its drop when it has one', () => {
    const home = nameRoutingTo('sku-', 3, 4);
    expect(codeOf(upsert(shard({}, 3, 4), { sku: home, stock: 1 }))).toBe('ok');
    const elsewhere = nameRoutingTo('sku-', 1, 4);
    const drop = nameRoutingTo('drop-', 3, 4, true);
    expect(codeOf(upsert(shard({}, 3, 4), { sku: elsewhere, stock: 1, dropId: drop }))).toBe('ok');
  });

  test('creating a SKU with stock over the limit is refused with invalid_request, and changes nothing (regression: it threw)', () => {
    // The guard refuses it before applyUpsert; it used to reach assertSkuInvariants and throw
    // an InvariantError (a crash of the shard) on client input.
    const s = shard();
    const before = toSnapshot(s);
    let a: Applied | undefined;
    expect(() => { a = upsert(s, { sku: 'tee', stock: Limits.stockMax + 1 }); }).not.toThrow();
    expect(a!.outcome).toMatchObject({ ok: false, code: 'invalid_request', message: `stock must be an integer in 0..${Limits.stockMax}` });
    expect(a!.mutated).toBe(false);
    expect(toSnapshot(s)).toEqual(before);
    expect(okOf(upsert(s, { sku: 'tee', stock: Limits.stockMax })).sku).toMatchObject({ onHand: Limits.stockMax, available: Limits.stockMax });
  });
});

describe('sku.adjust', () => {
  /** 10 on hand, 3 held by a reservation, 2 sold: 5 available. */
  function stocked(): ShardState {
    const s = shard();
    okOf(upsert(s, { sku: 'tee', stock: 10 }));
    reserve(s, 'tee', 'ann', 3);
    const paid = reserve(s, 'tee', 'bob', 2);
    okOf(apply(s, { t: 'res.pay', id: paid }, T0));
    expect(view(s, 'tee')).toMatchObject({ onHand: 10, reserved: 3, sold: 2, available: 5 });
    return s;
  }

  const cases: { name: string; delta: number; code: string; expected?: Partial<SkuView> }[] = [
    { name: 'a restock adds to onHand and available', delta: 5, code: 'ok', expected: { onHand: 15, available: 10, reserved: 3, sold: 2 } },
    { name: 'a write-off takes from onHand and available', delta: -4, code: 'ok', expected: { onHand: 6, available: 1 } },
    { name: 'a write-off of every available unit is allowed', delta: -5, code: 'ok', expected: { onHand: 5, available: 0 } },
    { name: 'a write-off past the available units is refused, since held and sold units count', delta: -6, code: 'insufficient_stock' },
    { name: 'a write-off of the whole onHand is refused while units are held or sold', delta: -10, code: 'insufficient_stock' },
    { name: 'a zero delta is refused with invalid_request (a non-zero integer is required)', delta: 0, code: 'invalid_request' },
  ];
  for (const { name, delta, code, expected } of cases) test(name, () => {
    const s = stocked();
    const before = toSnapshot(s);
    const a = apply(s, { t: 'sku.adjust', sku: 'tee', delta }, T0 + 1);
    expect(codeOf(a)).toBe(code);
    if (code === 'ok') {
      expect(a.mutated).toBe(true);
      expect(okOf(a).sku).toMatchObject({ ...expected, updatedAt: T0 + 1 });
      expect(view(s, 'tee')).toEqual(okOf(a).sku);
    } else {
      expect(a.mutated).toBe(false);
      expect(toSnapshot(s)).toEqual(before);
    }
  });

  test('onHand may reach the stock limit but not pass it', () => {
    const s = shard();
    okOf(upsert(s, { sku: 'tee', stock: Limits.stockMax - 1 }));
    expect(okOf(apply(s, { t: 'sku.adjust', sku: 'tee', delta: 1 }, T0)).sku?.onHand).toBe(Limits.stockMax);
    const a = apply(s, { t: 'sku.adjust', sku: 'tee', delta: 1 }, T0);
    expect(codeOf(a)).toBe('invalid_request');
    expect(a.mutated).toBe(false);
    expect(view(s, 'tee').onHand).toBe(Limits.stockMax);
  });

  test('adjusting a SKU this shard does not know answers unknown_sku', () => {
    expect(codeOf(apply(shard(), { t: 'sku.adjust', sku: 'nope', delta: 1 }, T0))).toBe('unknown_sku');
  });
});

describe('sku.link and moved answers', () => {
  // Links only mean something with several shards: this is shard HOME of COUNT, the home
  // shard of SKU (where its name routes). DROP and OTHER live on other shards; LOCAL is a
  // drop that lives on this very shard; AWAY is a SKU whose home is another shard.
  const COUNT = 4;
  const HOME = 1;
  const SKU = nameRoutingTo('tee-', HOME, COUNT);
  const AWAY = nameRoutingTo('cap-', 2, COUNT);
  const DROP = nameRoutingTo('spring-', 2, COUNT, true);
  const OTHER = nameRoutingTo('autumn-', 3, COUNT, true);
  const LOCAL = nameRoutingTo('local-', HOME, COUNT, true);

  function home(): ShardState {
    return shard({}, HOME, COUNT);
  }

  function linked(): ShardState {
    const s = home();
    const a = apply(s, { t: 'sku.link', sku: SKU, dropId: DROP }, T0);
    expect(a).toEqual({ outcome: { ok: true, status: 'ok' }, mutated: true, events: null });
    expect(toSnapshot(s).links).toEqual([[SKU, DROP]]);
    return s;
  }

  test('the names used here are placed as these tests need', () => {
    expect(shardForSku(SKU, null, COUNT)).toBe(HOME);
    expect(shardForSku(AWAY, null, COUNT)).not.toBe(HOME);
    expect(shardForSku(SKU, DROP, COUNT)).not.toBe(HOME);
    expect(shardForSku(SKU, OTHER, COUNT)).not.toBe(HOME);
    expect(shardForSku(SKU, LOCAL, COUNT)).toBe(HOME);
  });

  const commands: { name: string; command: () => Command }[] = [
    { name: 'sku.get', command: () => ({ t: 'sku.get', sku: SKU }) },
    { name: 'res.reserve', command: () => ({ t: 'res.reserve', sku: SKU, buyerId: 'ann', qty: 1, nonce: 'abcd' }) },
    { name: 'sku.adjust', command: () => ({ t: 'sku.adjust', sku: SKU, delta: 5 }) },
    { name: 'sku.upsert with the drop', command: () => ({ t: 'sku.upsert', sku: SKU, stock: 5, dropId: DROP }) },
    { name: 'sku.upsert that names no drop', command: () => ({ t: 'sku.upsert', sku: SKU, stock: 5 }) },
  ];
  for (const { name, command } of commands) test(`${name} of a linked SKU answers moved with the dropId to route by, and changes nothing`, () => {
    const s = linked();
    const before = toSnapshot(s);
    const a = apply(s, command(), T0 + 1);
    expect(a.outcome).toMatchObject({ ok: false, code: 'moved', dropId: DROP });
    expect(a.mutated).toBe(false);
    expect(toSnapshot(s)).toEqual(before);
  });

  const conflicting: { name: string; dropId: () => string | null }[] = [
    { name: 'another drop', dropId: () => OTHER },
    { name: 'no drop (null)', dropId: () => null },
    { name: 'a drop that lives on this shard', dropId: () => LOCAL },
  ];
  for (const { name, dropId } of conflicting) test(`sku.upsert of a linked SKU with ${name} is refused drop_mismatch, and changes nothing`, () => {
    const s = linked();
    const before = toSnapshot(s);
    const a = upsert(s, { sku: SKU, stock: 5, dropId: dropId() }, T0 + 1);
    expect(codeOf(a)).toBe('drop_mismatch');
    expect(a.mutated).toBe(false);
    expect(toSnapshot(s)).toEqual(before);
  });

  /** followUp: the answer of a later `sku.upsert` of the SKU with that same drop. */
  const links: { name: string; setup: 'none' | 'link' | 'drop-sku' | 'plain-sku'; sku?: () => string; dropId: () => string; code: string; followUp?: string }[] = [
    { name: 'linking again to the same drop is idempotent', setup: 'link', dropId: () => DROP, code: 'ok' },
    { name: 'linking to another drop is refused with drop_mismatch', setup: 'link', dropId: () => OTHER, code: 'drop_mismatch' },
    { name: 'linking a SKU that lives here to its own drop is accepted as a no-op', setup: 'drop-sku', dropId: () => LOCAL, code: 'ok', followUp: 'ok' },
    { name: 'linking a SKU that lives here to another drop is refused with drop_mismatch', setup: 'drop-sku', dropId: () => DROP, code: 'drop_mismatch' },
    { name: 'linking a SKU that lives here without a drop is refused with drop_mismatch', setup: 'plain-sku', dropId: () => DROP, code: 'drop_mismatch' },
    { name: 'linking a SKU whose home is another shard is refused with invalid_request', setup: 'none', sku: () => AWAY, dropId: () => DROP, code: 'invalid_request' },
    { name: 'linking a SKU whose home is another shard to a drop of this shard is refused with invalid_request', setup: 'none', sku: () => AWAY, dropId: () => LOCAL, code: 'invalid_request' },
    { name: 'linking to a drop of this shard records nothing and answers ok', setup: 'none', dropId: () => LOCAL, code: 'ok', followUp: 'ok' },
    { name: 'linking a linked SKU to a drop of this shard answers ok and changes nothing (the upsert that follows reports the conflict)', setup: 'link', dropId: () => LOCAL, code: 'ok', followUp: 'drop_mismatch' },
    { name: 'linking a SKU that lives here without a drop to a drop of this shard answers ok and changes nothing (the upsert that follows reports the conflict)', setup: 'plain-sku', dropId: () => LOCAL, code: 'ok', followUp: 'drop_mismatch' },
  ];
  for (const { name, setup, sku = () => SKU, dropId, code, followUp } of links) test(`${name}, and is not mutating`, () => {
    const s = setup === 'link' ? linked() : home();
    if (setup === 'drop-sku') okOf(upsert(s, { sku: SKU, stock: 1, dropId: LOCAL }));
    if (setup === 'plain-sku') okOf(upsert(s, { sku: SKU, stock: 1 }));
    const before = toSnapshot(s);
    const a = apply(s, { t: 'sku.link', sku: sku(), dropId: dropId() }, T0 + 1);
    expect(codeOf(a)).toBe(code);
    if (code === 'ok') expect(a.outcome).toEqual({ ok: true, status: 'ok' });
    expect(a.mutated).toBe(false);
    expect(toSnapshot(s)).toEqual(before);
    if (followUp !== undefined) expect(codeOf(upsert(s, { sku: sku(), dropId: dropId() }, T0 + 2))).toBe(followUp);
  });

  test('a link to a drop that lives on this same shard is a no-op, so the SKU can then be created here (regression: answered moved back to itself)', () => {
    // A link used to be recorded whatever the placement, and then sku.upsert answered
    // `moved` to a drop that routes to this same shard: a redirect loop, the SKU could never
    // be created. With one shard every drop lives here; with several, LOCAL does.
    for (const { s, sku, dropId } of [
      { s: shard({}, 0, 1), sku: 'tee', dropId: 'spring' },
      { s: home(), sku: SKU, dropId: LOCAL },
    ]) {
      const before = toSnapshot(s);
      const link = apply(s, { t: 'sku.link', sku, dropId }, T0);
      expect(link).toEqual({ outcome: { ok: true, status: 'ok' }, mutated: false, events: null });
      expect(toSnapshot(s)).toEqual(before);
      expect(codeOf(apply(s, { t: 'sku.get', sku }, T0))).toBe('unknown_sku');
      const a = upsert(s, { sku, stock: 5, dropId }, T0 + 1);
      expect(a.outcome).toMatchObject({ ok: true, status: 'created', sku: { sku, dropId, onHand: 5 } });
      expect(view(s, sku)).toMatchObject({ dropId, available: 5 });
    }
  });

  test('the home shard redirects to the drop\'s shard, where the SKU is created and served', () => {
    const homeShard = linked();
    const dropShard = shard({}, shardForSku(SKU, DROP, COUNT), COUNT);
    expect(codeOf(upsert(homeShard, { sku: SKU, stock: 3, dropId: DROP }))).toBe('moved');
    expect(okOf(upsert(dropShard, { sku: SKU, stock: 3, dropId: DROP })).status).toBe('created');
    const id = okOf(apply(dropShard, { t: 'res.reserve', sku: SKU, buyerId: 'ann', qty: 1, nonce: 'abcd' }, T0)).reservation!.reservationId;
    expect(id.startsWith(`${shardForSku(SKU, DROP, COUNT)}.`)).toBe(true);
    expect(apply(homeShard, { t: 'res.reserve', sku: SKU, buyerId: 'ann', qty: 1, nonce: 'abcd' }, T0).outcome)
      .toMatchObject({ ok: false, code: 'moved', dropId: DROP });
  });
});

describe('malformed commands (the command guard)', () => {
  // apply() refuses a malformed command with invalid_request before it touches state: the
  // gateways validate client input first, but a NATS client, another adapter or an old log
  // could still send one. The state below has a hold that is due, so any command that got
  // past the guard to lookupSettlingDue or housekeeping would change it.
  const LATER = T0 + 60_000;
  function guarded(): { s: ShardState; id: string } {
    const s = shard();
    okOf(upsert(s, { sku: 'tee', stock: 10, holdSeconds: 10 }));
    const id = reserve(s, 'tee', 'ann', 1);
    return { s, id };
  }
  const long = (n: number) => 'x'.repeat(n);
  const cases: { name: string; command: (id: string) => unknown; message: RegExp }[] = [
    ...[0, -1, 1.5, Limits.qtyMax + 1, Number.NaN, Number.POSITIVE_INFINITY, '2'].map((qty) => ({
      name: `res.reserve with qty ${String(qty)}${typeof qty === 'string' ? ' (a string)' : ''}`,
      command: () => ({ t: 'res.reserve', sku: 'tee', buyerId: 'bob', qty, nonce: 'abcd' }), message: /^qty must be an integer in 1\.\.1000$/,
    })),
    ...['123456789', 'ABC', 'a-b', ' ', 'é'].map((nonce) => ({
      name: `res.reserve with nonce ${JSON.stringify(nonce)}`,
      command: () => ({ t: 'res.reserve', sku: 'tee', buyerId: 'bob', qty: 1, nonce }), message: /^nonce must be 0\.\.8 characters of \[0-9a-z\]$/,
    })),
    { name: 'res.reserve with no nonce', command: () => ({ t: 'res.reserve', sku: 'tee', buyerId: 'bob', qty: 1 }), message: /^nonce must be/ },
    // Found by a review: a t that is not a string threw while the refusal was worded, and the shard worker ended.
    { name: 'a t that is a map with a toString key', command: () => ({ t: { toString: 1 } }), message: /^a command is a map with a string t$/ },
    { name: 'a t that is a number', command: () => ({ t: 7 }), message: /^a command is a map with a string t$/ },
    { name: 'no t', command: () => ({ sku: 'tee' }), message: /^a command is a map with a string t$/ },
    { name: 'res.reserve with an empty sku', command: () => ({ t: 'res.reserve', sku: '', buyerId: 'bob', qty: 1, nonce: 'a' }), message: /^sku must be 1\.\.64 characters of \[A-Za-z0-9\._:-\]$/ },
    { name: 'res.reserve with a 65-character sku', command: () => ({ t: 'res.reserve', sku: long(65), buyerId: 'bob', qty: 1, nonce: 'a' }), message: /^sku must be 1\.\.64 characters of \[A-Za-z0-9\._:-\]$/ },
    { name: 'res.reserve with an empty buyerId', command: () => ({ t: 'res.reserve', sku: 'tee', buyerId: '', qty: 1, nonce: 'a' }), message: /^buyerId must be 1\.\.128 characters$/ },
    { name: 'res.reserve with an empty idemKey', command: () => ({ t: 'res.reserve', sku: 'tee', buyerId: 'bob', qty: 1, nonce: 'a', idemKey: '' }), message: /^idempotencyKey must be 1\.\.128 characters$/ },
    { name: 'res.reserve with a negative accountCreatedAtMs', command: () => ({ t: 'res.reserve', sku: 'tee', buyerId: 'bob', qty: 1, nonce: 'a', accountCreatedAtMs: -1 }), message: /^accountCreatedAt must be an integer in 0\.\.8640000000000000$/ },
    { name: 'res.reserve with a fractional pastOrders', command: () => ({ t: 'res.reserve', sku: 'tee', buyerId: 'bob', qty: 1, nonce: 'a', pastOrders: 1.5 }), message: /^pastOrders must be an integer in 0\.\.1000000000$/ },
    { name: 'res.reserve with a 129-character buyerId', command: () => ({ t: 'res.reserve', sku: 'tee', buyerId: long(129), qty: 1, nonce: 'a' }), message: /^buyerId must be 1\.\.128 characters$/ },
    { name: 'res.reserve with a buyerId of 129 code points (each two UTF-16 units)', command: () => ({ t: 'res.reserve', sku: 'tee', buyerId: '😀'.repeat(129), qty: 1, nonce: 'a' }), message: /^buyerId must be 1\.\.128 characters$/ },
    ...['bob\n', 'b\u0000b', 'bob\u200b', 'bob\u202e', '\ud800bob'].map((buyerId) => ({
      name: `res.reserve with the buyerId ${JSON.stringify(buyerId)} (a control, format or lone surrogate character)`,
      command: () => ({ t: 'res.reserve', sku: 'tee', buyerId, qty: 1, nonce: 'a' }), message: /^buyerId must not contain control or format characters$/,
    })),
    { name: 'res.reserve with a buyerId that is not a string', command: () => ({ t: 'res.reserve', sku: 'tee', buyerId: 7, qty: 1, nonce: 'a' }), message: /^buyerId must be a string$/ },
    { name: 'res.reserve with no buyerId', command: () => ({ t: 'res.reserve', sku: 'tee', qty: 1, nonce: 'a' }), message: /^buyerId is required$/ },
    { name: 'res.reserve with no sku', command: () => ({ t: 'res.reserve', buyerId: 'bob', qty: 1, nonce: 'a' }), message: /^sku is required$/ },
    ...['tee shirt', 'tee/1', 'tée', 'tee\n', 'tee#'].map((sku) => ({
      name: `res.reserve with the sku ${JSON.stringify(sku)} (a character outside [A-Za-z0-9._:-])`,
      command: () => ({ t: 'res.reserve', sku, buyerId: 'bob', qty: 1, nonce: 'a' }), message: /^sku must be 1\.\.64 characters of \[A-Za-z0-9\._:-\]$/,
    })),
    { name: 'res.reserve with a 129-character idemKey', command: () => ({ t: 'res.reserve', sku: 'tee', buyerId: 'bob', qty: 1, nonce: 'a', idemKey: long(129) }), message: /^idempotencyKey must be 1\.\.128 characters$/ },
    { name: 'res.reserve with an idemKey holding a tab', command: () => ({ t: 'res.reserve', sku: 'tee', buyerId: 'bob', qty: 1, nonce: 'a', idemKey: 'k\t1' }), message: /^idempotencyKey must not contain control or format characters$/ },
    { name: 'res.reserve with pastOrders over 1e9', command: () => ({ t: 'res.reserve', sku: 'tee', buyerId: 'bob', qty: 1, nonce: 'a', pastOrders: Limits.pastOrdersMax + 1 }), message: /^pastOrders must be an integer in 0\.\.1000000000$/ },
    { name: 'res.reserve with qty 0 of an unknown SKU (the guard comes first)', command: () => ({ t: 'res.reserve', sku: 'nope', buyerId: 'bob', qty: 0, nonce: 'a' }), message: /^qty must be an integer in 1\.\.1000$/ },
    ...[-1, Limits.stockMax + 1, 2.5].map((stock) => ({
      name: `sku.upsert with stock ${stock}`,
      command: () => ({ t: 'sku.upsert', sku: 'new', stock }), message: /^stock must be an integer in 0\.\.1000000000$/,
    })),
    { name: 'sku.upsert of an existing SKU with stock -1 (stock is checked even where it is ignored)', command: () => ({ t: 'sku.upsert', sku: 'tee', stock: -1 }), message: /^stock must be/ },
    { name: 'sku.upsert with an empty sku', command: () => ({ t: 'sku.upsert', sku: '' }), message: /^sku must be 1\.\.64 characters of \[A-Za-z0-9\._:-\]$/ },
    { name: 'sku.upsert with mode "bogus"', command: () => ({ t: 'sku.upsert', sku: 'tee', mode: 'bogus' }), message: /^mode must be one of pre_deduct, on_order, on_payment$/ },
    { name: 'sku.upsert with holdSeconds 0', command: () => ({ t: 'sku.upsert', sku: 'tee', holdSeconds: 0 }), message: /^holdSeconds must be an integer in 1\.\.86400$/ },
    { name: 'sku.upsert with holdSeconds over a day', command: () => ({ t: 'sku.upsert', sku: 'tee', holdSeconds: Limits.holdSecondsMax + 1 }), message: /^holdSeconds must be an integer in 1\.\.86400$/ },
    { name: 'sku.upsert with maxPerBuyer -1', command: () => ({ t: 'sku.upsert', sku: 'tee', maxPerBuyer: -1 }), message: /^maxPerBuyer must be an integer in 0\.\.1000000$/ },
    { name: 'sku.upsert with a negative startsAt', command: () => ({ t: 'sku.upsert', sku: 'tee', startsAtMs: -5 }), message: /^startsAt must be an integer in 0\.\.8640000000000000$/ },
    { name: 'sku.upsert with a fractional endsAt', command: () => ({ t: 'sku.upsert', sku: 'tee', endsAtMs: T0 + 0.5 }), message: /^endsAt must be an integer in 0\.\.8640000000000000$/ },
    { name: 'sku.upsert with lowStockThreshold -1', command: () => ({ t: 'sku.upsert', sku: 'tee', lowStockThreshold: -1 }), message: /^lowStockThreshold must be an integer in 0\.\.1000000000$/ },
    { name: 'sku.upsert with minAccountAgeSeconds -1', command: () => ({ t: 'sku.upsert', sku: 'tee', minAccountAgeSeconds: -1 }), message: /^minAccountAgeSeconds must be an integer in 0\.\.315360000$/ },
    { name: 'sku.upsert with minPastOrders -1', command: () => ({ t: 'sku.upsert', sku: 'tee', minPastOrders: -1 }), message: /^minPastOrders must be an integer in 0\.\.1000000$/ },
    { name: 'sku.upsert with an empty dropId', command: () => ({ t: 'sku.upsert', sku: 'new', dropId: '' }), message: /^dropId must be 1\.\.64 characters of \[A-Za-z0-9\._:-\]$/ },
    { name: 'sku.upsert with a 65-character dropId', command: () => ({ t: 'sku.upsert', sku: 'new', dropId: long(65) }), message: /^dropId must be 1\.\.64 characters of \[A-Za-z0-9\._:-\]$/ },
    { name: 'sku.adjust with delta 0', command: () => ({ t: 'sku.adjust', sku: 'tee', delta: 0 }), message: /^delta must be a non-zero integer$/ },
    ...[0.5, Limits.stockMax + 1, -Limits.stockMax - 1, Number.NaN].map((delta) => ({
      name: `sku.adjust with delta ${delta}`,
      command: () => ({ t: 'sku.adjust', sku: 'tee', delta }), message: /^delta must be an integer in -1000000000\.\.1000000000$/,
    })),
    { name: 'sku.adjust with delta 0 of an unknown SKU (the guard comes first)', command: () => ({ t: 'sku.adjust', sku: 'nope', delta: 0 }), message: /^delta must be a non-zero integer$/ },
    { name: 'sku.link with an empty dropId', command: () => ({ t: 'sku.link', sku: 'tee', dropId: '' }), message: /^dropId must be 1\.\.64 characters of \[A-Za-z0-9\._:-\]$/ },
    { name: 'sku.link with an empty sku', command: () => ({ t: 'sku.link', sku: '', dropId: 'spring' }), message: /^sku must be 1\.\.64 characters of \[A-Za-z0-9\._:-\]$/ },
    { name: 'res.pay of a due hold with an empty paymentRef (the hold is not expired)', command: (id) => ({ t: 'res.pay', id, paymentRef: '' }), message: /^paymentRef must be 1\.\.128 characters$/ },
    { name: 'res.pay with a 129-character paymentRef', command: (id) => ({ t: 'res.pay', id, paymentRef: long(129) }), message: /^paymentRef must be 1\.\.128 characters$/ },
    { name: 'res.pay with a paymentRef holding a newline', command: (id) => ({ t: 'res.pay', id, paymentRef: 'pi\n1' }), message: /^paymentRef must not contain control or format characters$/ },
    { name: 'res.pay with a 65-character id', command: () => ({ t: 'res.pay', id: long(65) }), message: /^id must be a string of at most 64 characters$/ },
    { name: 'res.cancel with a 65-character id', command: () => ({ t: 'res.cancel', id: long(65) }), message: /^id must be a string of at most 64 characters$/ },
    { name: 'res.get with a 65-character id', command: () => ({ t: 'res.get', id: long(65) }), message: /^id must be a string of at most 64 characters$/ },
    { name: 'res.cancel of a due hold with an empty buyerId (the hold is not expired)', command: (id) => ({ t: 'res.cancel', id, buyerId: '' }), message: /^buyerId must be 1\.\.128 characters$/ },
    { name: 'res.get with a 129-character buyerId', command: (id) => ({ t: 'res.get', id, buyerId: long(129) }), message: /^buyerId must be 1\.\.128 characters$/ },
    { name: 'res.cancel of a due hold with a buyerId holding a control character', command: (id) => ({ t: 'res.cancel', id, buyerId: 'ann\u0007' }), message: /^buyerId must not contain control or format characters$/ },
    { name: 'sku.upsert with a sku holding a slash', command: () => ({ t: 'sku.upsert', sku: 'tee/1', stock: 1 }), message: /^sku must be 1\.\.64 characters of \[A-Za-z0-9\._:-\]$/ },
    { name: 'sku.upsert with a dropId holding a space', command: () => ({ t: 'sku.upsert', sku: 'new', dropId: 'spring drop' }), message: /^dropId must be 1\.\.64 characters of \[A-Za-z0-9\._:-\]$/ },
    { name: 'sku.upsert whose own sale window ends when it starts', command: () => ({ t: 'sku.upsert', sku: 'tee', startsAtMs: T0, endsAtMs: T0 }), message: /^endsAt must be after startsAt$/ },
    { name: 'sku.link with a 65-character sku', command: () => ({ t: 'sku.link', sku: long(65), dropId: 'spring' }), message: /^sku must be 1\.\.64 characters of \[A-Za-z0-9\._:-\]$/ },
    { name: 'sku.adjust with an empty sku', command: () => ({ t: 'sku.adjust', sku: '', delta: 1 }), message: /^sku must be 1\.\.64 characters of \[A-Za-z0-9\._:-\]$/ },
    { name: 'res.pay with a numeric id', command: () => ({ t: 'res.pay', id: 1 }), message: /^id must be a string of at most 64 characters$/ },
    { name: 'res.cancel with no id', command: () => ({ t: 'res.cancel' }), message: /^id must be a string of at most 64 characters$/ },
    { name: 'res.get with no id', command: () => ({ t: 'res.get' }), message: /^id must be a string of at most 64 characters$/ },
    { name: 'sku.get with no sku', command: () => ({ t: 'sku.get' }), message: /^sku must be a string$/ },
    { name: 'a command of an unknown type', command: () => ({ t: 'sku.delete', sku: 'tee' }), message: /^unknown command sku\.delete$/ },
  ];
  for (const { name, command, message } of cases) test(`${name} is refused invalid_request and changes nothing`, () => {
    const { s, id } = guarded();
    const before = toSnapshot(s);
    const a = apply(s, command(id) as Command, LATER);
    expect(a).toEqual({ outcome: { ok: false, code: 'invalid_request', message: expect.stringMatching(message) }, mutated: false, events: null });
    expect(toSnapshot(s)).toEqual(before);
    expect(s.lastNowMs).toBe(T0);
  });

  test('values at the edges of each range are accepted', () => {
    const s = shard();
    okOf(upsert(s, { sku: 'big', stock: 2000, holdSeconds: Limits.holdSecondsMax, maxPerBuyer: Limits.maxPerBuyerMax, lowStockThreshold: 0 }));
    okOf(upsert(s, { sku: 'min', stock: 0, holdSeconds: 1, dropId: null, startsAtMs: 0, endsAtMs: 0 }));
    const full = okOf(apply(s, { t: 'res.reserve', sku: 'big', buyerId: 'b', qty: Limits.qtyMax, nonce: 'z9y8x7w6' }, T0)).reservation!;
    expect(full.reservationId).toBe('0.1z9y8x7w6');
    const empty = okOf(apply(s, { t: 'res.reserve', sku: 'big', buyerId: 'b', qty: 1, nonce: '' }, T0)).reservation!;
    expect(empty.reservationId).toBe('0.200000000');
    expect(okOf(apply(s, { t: 'sku.adjust', sku: 'big', delta: -(2000 - Limits.qtyMax - 1) }, T0)).sku?.available).toBe(0);
    expect(okOf(apply(s, { t: 'sku.adjust', sku: 'min', delta: Limits.stockMax }, T0)).sku?.onHand).toBe(Limits.stockMax);
    expect(okOf(apply(s, { t: 'res.pay', id: full.reservationId, paymentRef: 'x'.repeat(Limits.paymentRefLengthMax) }, T0)).reservation?.status).toBe('paid');
  });

  test('ids, keys and names at their longest, and of every allowed character, are accepted', () => {
    const s = shard();
    const sku = 'Aa0._:-'.repeat(10).slice(0, Limits.skuLengthMax);
    expect(sku).toHaveLength(64);
    const dropId = 'z'.repeat(Limits.skuLengthMax);
    okOf(upsert(s, { sku, stock: 10, dropId }));
    // 128 code points of two UTF-16 units each: the limit counts characters, not units.
    const buyerId = '😀'.repeat(Limits.buyerIdLengthMax);
    const a = apply(s, { t: 'res.reserve', sku, buyerId, qty: 1, nonce: 'a', idemKey: 'k'.repeat(Limits.idempotencyKeyLengthMax) }, T0);
    const r = okOf(a).reservation!;
    expect(r).toMatchObject({ sku, buyerId });
    expect(okOf(apply(s, { t: 'res.get', id: r.reservationId, buyerId }, T0)).reservation).toEqual(r);
    expect(okOf(apply(s, { t: 'res.reserve', sku, buyerId: 'é ü — 名前', qty: 1, nonce: 'b' }, T0)).reservation?.buyerId).toBe('é ü — 名前');
    okOf(apply(s, { t: 'sku.link', sku: 'L'.repeat(Limits.skuLengthMax), dropId }, T0));
  });
});

describe('sku.get', () => {
  test('reading a SKU answers its view and changes nothing', () => {
    const s = shard();
    okOf(upsert(s, { sku: 'tee', stock: 4 }));
    const before = toSnapshot(s);
    const a = apply(s, { t: 'sku.get', sku: 'tee' }, T0 + 99_000);
    expect(a.mutated).toBe(false);
    expect(okOf(a).sku).toMatchObject({ sku: 'tee', onHand: 4, available: 4 });
    expect(toSnapshot(s)).toEqual(before);
  });

  test('reading a SKU this shard does not know answers unknown_sku', () => {
    expect(codeOf(apply(shard(), { t: 'sku.get', sku: 'nope' }, T0))).toBe('unknown_sku');
  });
});

describe('stock events', () => {
  test('low_stock fires once when available crosses the threshold, and again only after a restock re-arms it', () => {
    const s = shard();
    okOf(upsert(s, { sku: 'tee', stock: 6, lowStockThreshold: 3 }));
    const steps: { command: Command; events: unknown }[] = [
      { command: { t: 'res.reserve', sku: 'tee', buyerId: 'a', qty: 2, nonce: 'aaaa' }, events: null }, // 4 left
      { command: { t: 'res.reserve', sku: 'tee', buyerId: 'b', qty: 1, nonce: 'aaab' }, events: [{ type: 'low_stock', sku: 'tee', available: 3, threshold: 3 }] },
      { command: { t: 'res.reserve', sku: 'tee', buyerId: 'c', qty: 1, nonce: 'aaac' }, events: null }, // 2 left, already signalled
      { command: { t: 'sku.adjust', sku: 'tee', delta: 5 }, events: null }, // 7 left: re-armed
      { command: { t: 'sku.adjust', sku: 'tee', delta: -5 }, events: [{ type: 'low_stock', sku: 'tee', available: 2, threshold: 3 }] },
    ];
    for (const { command, events } of steps) expect(apply(s, command, T0).events).toEqual(events);
  });

  test('sold_out fires when available reaches 0 and not while it stays there', () => {
    const s = shard();
    okOf(upsert(s, { sku: 'tee', stock: 3 }));
    expect(apply(s, { t: 'res.reserve', sku: 'tee', buyerId: 'a', qty: 2, nonce: 'aaaa' }, T0).events).toBeNull();
    const last = apply(s, { t: 'res.reserve', sku: 'tee', buyerId: 'b', qty: 1, nonce: 'aaab' }, T0);
    expect(last.events).toEqual([{ type: 'sold_out', sku: 'tee' }]);
    // Still at 0: a policy change, a refused reserve and a refused write-off announce nothing.
    const stillZero = [
      apply(s, { t: 'sku.upsert', sku: 'tee', holdSeconds: 30, lowStockThreshold: 2 }, T0),
      apply(s, { t: 'res.reserve', sku: 'tee', buyerId: 'c', qty: 1, nonce: 'aaac' }, T0),
      apply(s, { t: 'sku.adjust', sku: 'tee', delta: -1 }, T0),
    ];
    expect(stillZero.map(codeOf)).toEqual(['ok', 'sold_out', 'insufficient_stock']);
    expect(stillZero.map((a) => a.events)).toEqual([null, null, null]);
    expect(view(s, 'tee').available).toBe(0);
    const id = okOf(last).reservation!.reservationId;
    expect(apply(s, { t: 'res.cancel', id }, T0).events).toEqual([{ type: 'restocked', sku: 'tee' }]); // 1 available again
    expect(apply(s, { t: 'sku.adjust', sku: 'tee', delta: -1 }, T0).events).toEqual([{ type: 'sold_out', sku: 'tee' }]);
  });

  test('creating a SKU emits no event: not sold_out at stock 0, not low_stock at or under its threshold', () => {
    const s = shard();
    const rows: { sku: string; stock: number; lowStockThreshold?: number; signalled: boolean }[] = [
      { sku: 'empty', stock: 0, signalled: false },
      { sku: 'empty-low', stock: 0, lowStockThreshold: 3, signalled: true },
      { sku: 'at', stock: 3, lowStockThreshold: 3, signalled: true },
      { sku: 'under', stock: 2, lowStockThreshold: 3, signalled: true },
      { sku: 'over', stock: 4, lowStockThreshold: 3, signalled: false },
      { sku: 'off', stock: 1, lowStockThreshold: 0, signalled: false },
    ];
    for (const { sku, stock, lowStockThreshold, signalled } of rows) {
      const c: Omit<Upsert, 't'> = { sku, stock };
      if (lowStockThreshold !== undefined) c.lowStockThreshold = lowStockThreshold;
      const a = upsert(s, c);
      expect(a.outcome, sku).toMatchObject({ ok: true, status: 'created' });
      expect(a.events, sku).toBeNull();
      expect(s.skus.get(sku)?.lowStockSignaled, `${sku}: lowStockSignaled`).toBe(signalled);
    }
    expect(toSnapshot(s).skus.map((row) => [row[0], row[15]])).toEqual(rows.map((r) => [r.sku, r.signalled]));
  });

  test('a SKU created at or under its threshold first announces low_stock after a restock above it and a fall again', () => {
    const s = shard();
    okOf(upsert(s, { sku: 'tee', stock: 3, lowStockThreshold: 3 }));
    const steps: { command: Command; events: unknown }[] = [
      { command: { t: 'res.reserve', sku: 'tee', buyerId: 'a', qty: 1, nonce: 'aaaa' }, events: null }, // 2: already counted as signalled
      { command: { t: 'sku.adjust', sku: 'tee', delta: 1 }, events: null }, // 3: still at the threshold, not re-armed
      { command: { t: 'sku.adjust', sku: 'tee', delta: -1 }, events: null },
      { command: { t: 'sku.adjust', sku: 'tee', delta: 2 }, events: null }, // 4: above it, re-armed
      { command: { t: 'res.reserve', sku: 'tee', buyerId: 'b', qty: 1, nonce: 'aaab' }, events: [{ type: 'low_stock', sku: 'tee', available: 3, threshold: 3 }] },
      { command: { t: 'res.reserve', sku: 'tee', buyerId: 'c', qty: 3, nonce: 'aaac' }, events: [{ type: 'sold_out', sku: 'tee' }] },
    ];
    for (const [i, { command, events }] of steps.entries()) expect(apply(s, command, T0).events, `step ${i}`).toEqual(events);
  });

  test('a SKU created with no stock first announces sold_out when it sells out after a restock', () => {
    const s = shard();
    expect(upsert(s, { sku: 'tee', stock: 0 }).events).toBeNull();
    expect(apply(s, { t: 'sku.adjust', sku: 'tee', delta: 2 }, T0).events).toEqual([{ type: 'restocked', sku: 'tee' }]); // 0 -> 2, not a creation
    expect(apply(s, { t: 'sku.adjust', sku: 'tee', delta: -2 }, T0).events).toEqual([{ type: 'sold_out', sku: 'tee' }]);
  });

  test('changing lowStockThreshold re-judges the signal without an event: signalled when the threshold is on and available is at or under it', () => {
    // available stays 5 throughout; each row changes the threshold of a SKU in a known state.
    const rows: { name: string; from: number; fromSignalled: boolean; to: number; signalled: boolean }[] = [
      { name: 'raising it above available', from: 0, fromSignalled: false, to: 6, signalled: true },
      { name: 'raising it to exactly available', from: 2, fromSignalled: false, to: 5, signalled: true },
      { name: 'lowering it under available', from: 6, fromSignalled: true, to: 4, signalled: false },
      { name: 'turning it off', from: 6, fromSignalled: true, to: 0, signalled: false },
      { name: 'raising it while already under it', from: 5, fromSignalled: true, to: 9, signalled: true },
    ];
    for (const { name, from, fromSignalled, to, signalled } of rows) {
      const s = shard();
      okOf(upsert(s, { sku: 'tee', stock: 5, lowStockThreshold: from }));
      expect(s.skus.get('tee')!.lowStockSignaled, `${name}: before`).toBe(fromSignalled);
      const a = upsert(s, { sku: 'tee', lowStockThreshold: to }, T0 + 1);
      expect(a.mutated, name).toBe(true);
      expect(a.events, name).toBeNull();
      expect(okOf(a).sku, name).toMatchObject({ lowStockThreshold: to, available: 5 });
      expect(s.skus.get('tee')!.lowStockSignaled, `${name}: after`).toBe(signalled);
      // What the signal means: low_stock fires on the next fall only when it was not signalled.
      const next = apply(s, { t: 'sku.adjust', sku: 'tee', delta: -1 }, T0 + 2).events;
      expect(next, `${name}: next fall`).toEqual(!signalled && to >= 4 ? [{ type: 'low_stock', sku: 'tee', available: 4, threshold: to }] : null);
    }
  });

  test('an upsert that keeps the threshold leaves the signal as it is', () => {
    const s = shard();
    okOf(upsert(s, { sku: 'tee', stock: 5, lowStockThreshold: 3 }));
    expect(apply(s, { t: 'sku.adjust', sku: 'tee', delta: -2 }, T0).events).toEqual([{ type: 'low_stock', sku: 'tee', available: 3, threshold: 3 }]);
    for (const update of [{ lowStockThreshold: 3 }, { holdSeconds: 20 }, {}] as Omit<Upsert, 't' | 'sku'>[]) {
      expect(upsert(s, { sku: 'tee', ...update }, T0 + 1).events).toBeNull();
      expect(s.skus.get('tee')!.lowStockSignaled).toBe(true);
    }
    expect(apply(s, { t: 'sku.adjust', sku: 'tee', delta: -1 }, T0 + 2).events).toBeNull();
  });

  test('sold_out fires when an on_payment pay takes the last units', () => {
    const s = shard();
    okOf(upsert(s, { sku: 'tee', stock: 2, mode: 'on_payment' }));
    const id = reserve(s, 'tee', 'ann', 2);
    const paid = apply(s, { t: 'res.pay', id }, T0);
    expect(paid.events?.map((e) => e.type)).toEqual(['sold_out', 'paid']);
  });

  test('a pay emits a paid event carrying the paid reservation view', () => {
    const s = shard();
    okOf(upsert(s, { sku: 'tee', stock: 5 }));
    const id = reserve(s, 'tee', 'ann', 2);
    const a = apply(s, { t: 'res.pay', id, paymentRef: 'pi_1' }, T0 + 10);
    expect(a.events).toEqual([{ type: 'paid', reservation: okOf(a).reservation }]);
    expect(okOf(a).reservation).toMatchObject({ reservationId: id, status: 'paid', paidAt: T0 + 10, paymentRef: 'pi_1', qty: 2 });
  });
});

describe('the shard clock', () => {
  test('a command stamped earlier than the last mutating command runs at the later time', () => {
    const s = shard();
    okOf(upsert(s, { sku: 'tee', stock: 5, holdSeconds: 10 }, T0 + 10_000));
    const a = apply(s, { t: 'res.reserve', sku: 'tee', buyerId: 'ann', qty: 1, nonce: 'aaaa' }, T0);
    expect(okOf(a).reservation).toMatchObject({ createdAt: T0 + 10_000, expiresAt: T0 + 20_000 });
    expect(s.lastNowMs).toBe(T0 + 10_000);
  });

  test('paying with a clock that jumped back cannot revive a hold that has lapsed', () => {
    const s = shard();
    okOf(upsert(s, { sku: 'tee', stock: 5, holdSeconds: 10 }, T0));
    const id = reserve(s, 'tee', 'ann', 1, T0);
    okOf(apply(s, { t: 'sku.adjust', sku: 'tee', delta: 1 }, T0 + 20_000));
    const a = apply(s, { t: 'res.pay', id }, T0 + 5_000);
    expect(codeOf(a)).toBe('reservation_expired');
    expect(view(s, 'tee')).toMatchObject({ reserved: 0, sold: 0, available: 6 });
  });

  test('a sale window is judged by the later time when the clock jumps back', () => {
    const s = shard();
    okOf(upsert(s, { sku: 'tee', stock: 5, endsAtMs: T0 + 1000 }, T0));
    okOf(apply(s, { t: 'sku.adjust', sku: 'tee', delta: 1 }, T0 + 1000));
    expect(codeOf(apply(s, { t: 'res.reserve', sku: 'tee', buyerId: 'a', qty: 1, nonce: 'aaaa' }, T0 + 10))).toBe('not_on_sale');
  });

  test('read-only and refused commands do not move the shard clock', () => {
    const s = shard();
    okOf(upsert(s, { sku: 'tee', stock: 1 }, T0));
    apply(s, { t: 'sku.get', sku: 'tee' }, T0 + 100_000);
    expect(codeOf(apply(s, { t: 'res.reserve', sku: 'tee', buyerId: 'a', qty: 2, nonce: 'aaaa' }, T0 + 100_000))).toBe('sold_out');
    expect(s.lastNowMs).toBe(T0);
    const a = apply(s, { t: 'res.reserve', sku: 'tee', buyerId: 'a', qty: 1, nonce: 'aaab' }, T0 + 5);
    expect(okOf(a).reservation?.createdAt).toBe(T0 + 5);
  });
});
