// Table-driven tests of channels (shared/API.md v2, "Channels: one stock, several
// storefronts") and of reservation ownership in the shard core: the policy's allow-list,
// each channel's cap under one pool, the order of the checks of a reserve, on_payment caps
// judged at pay, policy updates that keep the counts, `__proto__` as a plain name, the bound
// on channels counted without a policy, the order of the SKU view's channels, snapshots (v2
// and v1), a replay of the log, the ERP event's channel, the guard of channel fields, and
// res.get / res.cancel scoped to a buyer.

import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Packr } from 'msgpackr';
import { afterEach, describe, expect, test } from 'vitest';
import {
  apply, channelCapsFromWire, createShardState, fromSnapshot, Limits, shardForSku, toSnapshot,
  type Applied, type Command, type Mode, type ShardConfig, type ShardSnapshot, type ShardState, type SkuView,
} from '../src/domain/index.js';
import { ShardRuntime } from '../src/engine/shard-runtime.js';
import { codeOf, okOf, T0, view } from './support/domain-kit.js';

type Upsert = Extract<Command, { t: 'sku.upsert' }>;
type Caps = [string, number | null][];
type ChannelRow = SkuView['channels'][string];

const packr = new Packr({ useRecords: false, moreTypes: false, mapsAsObjects: true, variableMapSize: true });

let nonceCounter = 0;
function nonce(): string {
  return (nonceCounter++ % 1_679_616).toString(36);
}

function shard(config: Partial<ShardConfig> = {}): ShardState {
  return createShardState(0, 1, config);
}

function upsert(s: ShardState, c: Omit<Upsert, 't'>, nowMs = T0): Applied {
  return apply(s, { t: 'sku.upsert', ...c }, nowMs);
}

/** A SKU `tee` with this stock, mode and channel policy (undefined: none given). */
function withSku(stock: number, channels?: Caps | null, extra: Omit<Upsert, 't' | 'sku' | 'stock' | 'channels'> = {}, config: Partial<ShardConfig> = {}): ShardState {
  const s = shard(config);
  const c: Omit<Upsert, 't'> = { sku: 'tee', stock, ...extra };
  if (channels !== undefined) c.channels = channels;
  okOf(upsert(s, c));
  return s;
}

interface ReserveArgs {
  channel?: string;
  buyer?: string;
  qty?: number;
  sku?: string;
  idemKey?: string;
  atMs?: number;
}

function reserve(s: ShardState, { channel, buyer = 'ann', qty = 1, sku = 'tee', idemKey, atMs = T0 }: ReserveArgs = {}): Applied {
  const c: Extract<Command, { t: 'res.reserve' }> = { t: 'res.reserve', sku, buyerId: buyer, qty, nonce: nonce() };
  if (channel !== undefined) c.channel = channel;
  if (idemKey !== undefined) c.idemKey = idemKey;
  return apply(s, c, atMs);
}

function reserveId(s: ShardState, args: ReserveArgs = {}): string {
  return okOf(reserve(s, args)).reservation!.reservationId;
}

function channels(s: ShardState, sku = 'tee'): SkuView['channels'] {
  return view(s, sku).channels;
}

/** The view's channels as ordered [name, row] pairs: the order is part of the contract. */
function channelList(s: ShardState, sku = 'tee'): [string, ChannelRow][] {
  return Object.entries(channels(s, sku));
}

/** Applies a refused command and checks that nothing changed. */
function expectRefusedUnchanged(s: ShardState, c: Command, code: string, nowMs = T0): Applied {
  const before = toSnapshot(s);
  const a = apply(s, c, nowMs);
  expect(codeOf(a)).toBe(code);
  expect(a.mutated).toBe(false);
  expect(a.events).toBeNull();
  expect(toSnapshot(s)).toEqual(before);
  return a;
}

/** The first of prefix0, prefix1, ... that `fits`. */
function firstName(prefix: string, fits: (name: string) => boolean): string {
  for (let i = 0; ; i++) if (fits(`${prefix}${i}`)) return `${prefix}${i}`;
}

const reserveCommand = (args: ReserveArgs & { nonce?: string }): Command => {
  const c: Extract<Command, { t: 'res.reserve' }> = {
    t: 'res.reserve', sku: args.sku ?? 'tee', buyerId: args.buyer ?? 'ann', qty: args.qty ?? 1, nonce: args.nonce ?? nonce(),
  };
  if (args.channel !== undefined) c.channel = args.channel;
  return c;
};

describe('the channel policy: which channels may reserve', () => {
  const rows: { name: string; policy: Caps | null | undefined; channel: string | undefined; code: string }[] = [
    { name: 'a SKU created without a policy lets a reserve naming any channel through', policy: undefined, channel: 'web', code: 'ok' },
    { name: 'a SKU created without a policy lets a reserve naming no channel through, on "default"', policy: undefined, channel: undefined, code: 'ok' },
    { name: 'a SKU created with a null policy lets any channel through', policy: null, channel: 'app', code: 'ok' },
    { name: 'a listed channel may reserve', policy: [['web', null], ['app', 5]], channel: 'app', code: 'ok' },
    { name: 'a channel the policy does not list is refused channel_not_allowed', policy: [['web', null], ['app', 5]], channel: 'shop', code: 'channel_not_allowed' },
    { name: 'a reserve naming no channel is on "default", refused when the policy does not list it', policy: [['web', null]], channel: undefined, code: 'channel_not_allowed' },
    { name: 'a reserve naming no channel may reserve when the policy lists "default"', policy: [['default', 3]], channel: undefined, code: 'ok' },
    { name: 'a reserve naming "default" is the same channel as one naming none', policy: [['default', null]], channel: 'default', code: 'ok' },
    { name: 'channel names are compared exactly: a prefix of a listed name is another channel', policy: [['web-eu', null]], channel: 'web', code: 'channel_not_allowed' },
  ];
  for (const { name, policy, channel, code } of rows) test(name, () => {
    const s = withSku(10, policy);
    const c = reserveCommand({ channel });
    if (code !== 'ok') {
      expectRefusedUnchanged(s, c, code);
      return;
    }
    const a = apply(s, c, T0);
    expect(a.mutated).toBe(true);
    const r = okOf(a).reservation!;
    expect(r.channel).toBe(channel ?? 'default');
    expect(okOf(apply(s, { t: 'res.get', id: r.reservationId }, T0)).reservation).toEqual(r);
    expect(channels(s)[channel ?? 'default']).toMatchObject({ reserved: 1, sold: 0 });
  });
});

describe('caps per channel under one pool', () => {
  test('a channel holds and sells up to its maxUnits and no further, while other channels go on', () => {
    const s = withSku(10, [['web', 2], ['app', null]]);
    const steps: { args: ReserveArgs; code: string }[] = [
      { args: { channel: 'web', qty: 2 }, code: 'ok' },
      { args: { channel: 'web', qty: 1 }, code: 'channel_sold_out' },
      { args: { channel: 'app', qty: 5 }, code: 'ok' },
      { args: { channel: 'app', qty: 3 }, code: 'ok' },
      { args: { channel: 'app', qty: 1 }, code: 'sold_out' },
    ];
    for (const [i, { args, code }] of steps.entries()) expect(codeOf(reserve(s, args)), `step ${i}`).toBe(code);
    expect(view(s, 'tee')).toMatchObject({ onHand: 10, reserved: 10, available: 0 });
    expect(channelList(s)).toEqual([['web', { reserved: 2, sold: 0, maxUnits: 2 }], ['app', { reserved: 8, sold: 0, maxUnits: null }]]);
  });

  test('sold units count against the cap, and a cancel or an expiry gives room back', () => {
    const s = withSku(10, [['web', 3]], { holdSeconds: 10 });
    const paid = reserveId(s, { channel: 'web', qty: 2 });
    okOf(apply(s, { t: 'res.pay', id: paid }, T0 + 1));
    const held = reserveId(s, { channel: 'web', qty: 1, atMs: T0 + 2 });
    expect(channels(s).web).toEqual({ reserved: 1, sold: 2, maxUnits: 3 });
    expectRefusedUnchanged(s, reserveCommand({ channel: 'web' }), 'channel_sold_out', T0 + 3);
    okOf(apply(s, { t: 'res.cancel', id: held }, T0 + 4));
    expect(channels(s).web).toEqual({ reserved: 0, sold: 2, maxUnits: 3 });
    const again = reserveId(s, { channel: 'web', atMs: T0 + 5 });
    expect(codeOf(reserve(s, { channel: 'web', atMs: T0 + 6 }))).toBe('channel_sold_out');
    okOf(apply(s, { t: 'res.expire' }, T0 + 5 + 10_000));
    expect(okOf(apply(s, { t: 'res.get', id: again }, T0)).reservation?.status).toBe('expired');
    expect(channels(s).web).toEqual({ reserved: 0, sold: 2, maxUnits: 3 });
    expect(codeOf(reserve(s, { channel: 'web', atMs: T0 + 20_000 }))).toBe('ok');
  });

  test('a cap of 0 refuses every reserve through that channel', () => {
    const s = withSku(10, [['web', 0], ['app', null]]);
    expectRefusedUnchanged(s, reserveCommand({ channel: 'web' }), 'channel_sold_out');
    expect(codeOf(reserve(s, { channel: 'app' }))).toBe('ok');
    expect(channelList(s)).toEqual([['web', { reserved: 0, sold: 0, maxUnits: 0 }], ['app', { reserved: 1, sold: 0, maxUnits: null }]]);
  });

  test('a unit is never sold twice across channels: the channels share one stock and add up to the SKU', () => {
    const s = withSku(5, [['web', 4], ['app', 4], ['default', null]]);
    const ids = [
      reserveId(s, { channel: 'web', qty: 3 }),
      reserveId(s, { channel: 'app', qty: 2 }),
    ];
    for (const channel of ['web', 'app', undefined]) expect(codeOf(reserve(s, { channel })), String(channel)).toBe('sold_out');
    for (const id of ids) okOf(apply(s, { t: 'res.pay', id }, T0 + 1));
    const v = view(s, 'tee');
    expect(v).toMatchObject({ onHand: 5, reserved: 0, sold: 5, available: 0 });
    const rows = Object.values(v.channels);
    expect(rows.reduce((n, r) => n + r.sold, 0)).toBe(v.sold);
    expect(rows.reduce((n, r) => n + r.reserved, 0)).toBe(v.reserved);
    expect(channelList(s)).toEqual([
      ['web', { reserved: 0, sold: 3, maxUnits: 4 }], ['app', { reserved: 0, sold: 2, maxUnits: 4 }], ['default', { reserved: 0, sold: 0, maxUnits: null }],
    ]);
  });

  test('an on_order hold takes units of its channel at once, like pre_deduct', () => {
    const s = withSku(10, [['web', 2]], { mode: 'on_order' });
    reserveId(s, { channel: 'web', qty: 2 });
    expect(channels(s).web).toEqual({ reserved: 2, sold: 0, maxUnits: 2 });
    expect(codeOf(reserve(s, { channel: 'web' }))).toBe('channel_sold_out');
  });
});

describe('the order of the checks of a reserve', () => {
  // Each row builds a SKU where two rules would refuse, and expects the earlier one.
  interface Row { name: string; setup: (s: ShardState) => void; args: ReserveArgs; code: string; upsert?: Omit<Upsert, 't' | 'sku' | 'stock'>; stock?: number; config?: Partial<ShardConfig> }
  const rows: Row[] = [
    { name: 'unknown_sku comes before channel_not_allowed', setup: () => {}, args: { sku: 'nope', channel: 'shop' }, code: 'unknown_sku', upsert: { channels: [['web', 1]] } },
    { name: 'channel_not_allowed comes before not_on_sale', setup: () => {}, args: { channel: 'shop' }, code: 'channel_not_allowed', upsert: { channels: [['web', 1]], startsAtMs: T0 + 60_000 } },
    { name: 'not_on_sale comes before channel_sold_out', setup: () => {}, args: { channel: 'web' }, code: 'not_on_sale', upsert: { channels: [['web', 0]], endsAtMs: T0 } },
    { name: 'buyer_blocked comes before channel_sold_out', setup: () => {}, args: { channel: 'web' }, code: 'buyer_blocked', upsert: { channels: [['web', 0]], minPastOrders: 1 } },
    { name: 'quota_exceeded comes before channel_sold_out', setup: () => {}, args: { channel: 'web', qty: 3 }, code: 'quota_exceeded', upsert: { channels: [['web', 2]], maxPerBuyer: 2 } },
    { name: 'channel_sold_out comes before sold_out', setup: (s) => { reserveId(s, { channel: 'web', buyer: 'bob' }); }, args: { channel: 'web' }, code: 'channel_sold_out', upsert: { channels: [['web', 1]] }, stock: 1 },
    { name: 'another channel of the same sold-out SKU is refused sold_out', setup: (s) => { reserveId(s, { channel: 'web', buyer: 'bob' }); }, args: { channel: 'app' }, code: 'sold_out', upsert: { channels: [['web', 1], ['app', 1]] }, stock: 1 },
    { name: 'sold_out comes before shard_full', setup: (s) => { reserveId(s, { channel: 'web', buyer: 'bob' }); }, args: { channel: 'app' }, code: 'sold_out', upsert: { channels: [['web', null], ['app', 5]] }, stock: 1, config: { liveReservationsMax: 1 } },
    { name: 'channel_sold_out comes before shard_full', setup: (s) => { reserveId(s, { channel: 'web', buyer: 'bob' }); }, args: { channel: 'web' }, code: 'channel_sold_out', upsert: { channels: [['web', 1]] }, stock: 5, config: { liveReservationsMax: 1 } },
    { name: 'shard_full is answered once every rule of the SKU passes', setup: (s) => { reserveId(s, { channel: 'web', buyer: 'bob' }); }, args: { channel: 'web' }, code: 'shard_full', upsert: { channels: [['web', 2]] }, stock: 5, config: { liveReservationsMax: 1 } },
  ];
  for (const { name, setup, args, code, upsert: extra = {}, stock = 10, config = {} } of rows) test(name, () => {
    const s = shard(config);
    okOf(upsert(s, { sku: 'tee', stock, ...extra }));
    setup(s);
    expectRefusedUnchanged(s, reserveCommand(args), code);
  });

  test('moved comes before channel_not_allowed', () => {
    const s = createShardState(1, 4);
    const sku = firstName('tee-', (name) => shardForSku(name, null, 4) === 1);
    const dropId = firstName('spring-', (name) => shardForSku(sku, name, 4) !== 1);
    const a = apply(s, { t: 'sku.link', sku, dropId }, T0);
    expect(a.mutated).toBe(true);
    expect(expectRefusedUnchanged(s, reserveCommand({ sku, channel: 'anything' }), 'moved').outcome).toMatchObject({ dropId });
  });

  test('an idempotent replay is answered before every channel rule, with the channel of the first reservation', () => {
    const s = withSku(10, [['web', 1]]);
    const first = okOf(reserve(s, { channel: 'web', idemKey: 'k1' })).reservation!;
    // The policy now refuses web entirely, and the replay names another channel: still the first answer.
    okOf(upsert(s, { sku: 'tee', channels: [['app', 0]] }, T0 + 1));
    const before = toSnapshot(s);
    for (const channel of ['web', 'app', 'shop', undefined]) {
      const a = reserve(s, { channel, idemKey: 'k1', atMs: T0 + 2 });
      expect(a, String(channel)).toEqual({ outcome: { ok: true, status: 'created', reservation: first, replayed: true }, mutated: false, events: null });
    }
    expect(toSnapshot(s)).toEqual(before);
  });
});

describe('on_payment: the channel cap and the stock are judged again at pay', () => {
  test('holds take no units of their channel, and the pay that would pass the cap is refused channel_sold_out and leaves the hold', () => {
    const s = withSku(10, [['web', 2]], { mode: 'on_payment' });
    const ids = [0, 1, 2].map((i) => reserveId(s, { channel: 'web', buyer: `b${i}` }));
    expect(channels(s).web).toEqual({ reserved: 0, sold: 0, maxUnits: 2 });
    okOf(apply(s, { t: 'res.pay', id: ids[0]! }, T0 + 1));
    okOf(apply(s, { t: 'res.pay', id: ids[1]! }, T0 + 1));
    expect(channels(s).web).toEqual({ reserved: 0, sold: 2, maxUnits: 2 });
    expectRefusedUnchanged(s, { t: 'res.pay', id: ids[2]! }, 'channel_sold_out', T0 + 2);
    expect(okOf(apply(s, { t: 'res.get', id: ids[2]! }, T0)).reservation?.status).toBe('held');
    // At reserve time, sold units count too.
    expectRefusedUnchanged(s, reserveCommand({ channel: 'web', buyer: 'b9' }), 'channel_sold_out', T0 + 3);
    // A higher cap lets the waiting hold be paid.
    okOf(upsert(s, { sku: 'tee', channels: [['web', 3]] }, T0 + 4));
    expect(okOf(apply(s, { t: 'res.pay', id: ids[2]! }, T0 + 5)).reservation).toMatchObject({ status: 'paid', channel: 'web' });
    expect(channels(s).web).toEqual({ reserved: 0, sold: 3, maxUnits: 3 });
  });

  test('with the cap passed and the stock gone, the pay is refused channel_sold_out (the cap is judged first)', () => {
    const s = withSku(2, [['web', 1], ['app', null]], { mode: 'on_payment' });
    const web = [reserveId(s, { channel: 'web', buyer: 'b1' }), reserveId(s, { channel: 'web', buyer: 'b2' })];
    const app = reserveId(s, { channel: 'app', buyer: 'b3' });
    okOf(apply(s, { t: 'res.pay', id: web[0]! }, T0 + 1));
    okOf(apply(s, { t: 'res.pay', id: app }, T0 + 1));
    expect(view(s, 'tee')).toMatchObject({ available: 0, sold: 2 });
    expectRefusedUnchanged(s, { t: 'res.pay', id: web[1]! }, 'channel_sold_out', T0 + 2);
  });

  test('within the cap but without stock, the pay is refused sold_out', () => {
    const s = withSku(2, [['web', 5], ['app', null]], { mode: 'on_payment' });
    const web = reserveId(s, { channel: 'web', buyer: 'b1', qty: 2 });
    const app = reserveId(s, { channel: 'app', buyer: 'b2', qty: 1 });
    okOf(apply(s, { t: 'res.pay', id: app }, T0 + 1));
    expectRefusedUnchanged(s, { t: 'res.pay', id: web }, 'sold_out', T0 + 2);
    expect(channelList(s)).toEqual([['web', { reserved: 0, sold: 0, maxUnits: 5 }], ['app', { reserved: 0, sold: 1, maxUnits: null }]]);
  });

  test('a hold whose channel the policy no longer lists is paid without a cap (the allow-list is judged at reserve)', () => {
    const s = withSku(5, [['web', 1]], { mode: 'on_payment' });
    const ids = [reserveId(s, { channel: 'web', buyer: 'b1' }), reserveId(s, { channel: 'web', buyer: 'b2' })];
    okOf(upsert(s, { sku: 'tee', channels: [['app', 1]] }, T0 + 1));
    for (const id of ids) okOf(apply(s, { t: 'res.pay', id }, T0 + 2));
    expect(channelList(s)).toEqual([['app', { reserved: 0, sold: 0, maxUnits: 1 }], ['web', { reserved: 0, sold: 2, maxUnits: null }]]);
  });
});

describe('policy updates', () => {
  test('an update replaces the whole policy and keeps the counts of every channel, listed or not', () => {
    const s = withSku(20, [['web', 5], ['app', 5]]);
    reserveId(s, { channel: 'web', qty: 2 });
    const appPaid = reserveId(s, { channel: 'app', qty: 3 });
    okOf(apply(s, { t: 'res.pay', id: appPaid }, T0 + 1));
    const a = upsert(s, { sku: 'tee', channels: [['shop', null], ['web', 2]] }, T0 + 2);
    expect(a.mutated).toBe(true);
    expect(Object.entries(okOf(a).sku!.channels)).toEqual([
      ['shop', { reserved: 0, sold: 0, maxUnits: null }],
      ['web', { reserved: 2, sold: 0, maxUnits: 2 }],
      ['app', { reserved: 0, sold: 3, maxUnits: null }],
    ]);
    expectRefusedUnchanged(s, reserveCommand({ channel: 'app' }), 'channel_not_allowed', T0 + 3);
    expectRefusedUnchanged(s, reserveCommand({ channel: 'web' }), 'channel_sold_out', T0 + 3);
    // Listing app again gives it back its counts, and its cap counts them.
    okOf(upsert(s, { sku: 'tee', channels: [['app', 4]] }, T0 + 4));
    expect(codeOf(reserve(s, { channel: 'app', qty: 2, atMs: T0 + 5 }))).toBe('channel_sold_out');
    expect(codeOf(reserve(s, { channel: 'app', qty: 1, atMs: T0 + 5 }))).toBe('ok');
    expect(channels(s).app).toEqual({ reserved: 1, sold: 3, maxUnits: 4 });
  });

  test('a cap lowered under the units a channel holds and sold is accepted; it refuses new units only, and its holds may still be paid', () => {
    const s = withSku(20, [['web', 10]]);
    const ids = [reserveId(s, { channel: 'web', qty: 3 }), reserveId(s, { channel: 'web', qty: 3, buyer: 'bob' })];
    okOf(apply(s, { t: 'res.pay', id: ids[0]! }, T0 + 1));
    const a = upsert(s, { sku: 'tee', channels: [['web', 2]] }, T0 + 2);
    expect(okOf(a).sku!.channels.web).toEqual({ reserved: 3, sold: 3, maxUnits: 2 });
    expect(codeOf(reserve(s, { channel: 'web', atMs: T0 + 3 }))).toBe('channel_sold_out');
    expect(okOf(apply(s, { t: 'res.pay', id: ids[1]! }, T0 + 4)).reservation?.status).toBe('paid');
    expect(channels(s).web).toEqual({ reserved: 0, sold: 6, maxUnits: 2 });
  });

  test('null clears the policy: any channel may reserve again, with no cap, and the view keeps only channels with units', () => {
    const s = withSku(20, [['web', 1], ['app', 0]]);
    reserveId(s, { channel: 'web' });
    const a = upsert(s, { sku: 'tee', channels: null }, T0 + 1);
    expect(Object.entries(okOf(a).sku!.channels)).toEqual([['web', { reserved: 1, sold: 0, maxUnits: null }]]);
    for (const channel of ['web', 'app', 'shop', undefined]) expect(codeOf(reserve(s, { channel, qty: 2, atMs: T0 + 2 })), String(channel)).toBe('ok');
    expect(channelList(s)).toEqual([
      ['web', { reserved: 3, sold: 0, maxUnits: null }], ['app', { reserved: 2, sold: 0, maxUnits: null }],
      ['shop', { reserved: 2, sold: 0, maxUnits: null }], ['default', { reserved: 2, sold: 0, maxUnits: null }],
    ]);
    expect(toSnapshot(s).skus[0]![16]).toBeNull();
  });

  test('an update that does not name channels keeps the policy', () => {
    const s = withSku(20, [['web', 1]]);
    for (const update of [{ holdSeconds: 30 }, { mode: 'on_order' as Mode }, {}] as Omit<Upsert, 't' | 'sku'>[]) {
      okOf(upsert(s, { sku: 'tee', ...update }, T0 + 1));
      expect(channelList(s)).toEqual([['web', { reserved: 0, sold: 0, maxUnits: 1 }]]);
    }
    expect(codeOf(reserve(s, { channel: 'app' }))).toBe('channel_not_allowed');
  });

  test('a refused update changes neither the policy nor the counts', () => {
    const s = withSku(20, [['web', 1]], { dropId: 'spring', endsAtMs: T0 + 1000 });
    reserveId(s, { channel: 'web' });
    const refusals: { c: Omit<Upsert, 't'>; code: string }[] = [
      { c: { sku: 'tee', dropId: 'autumn', channels: null }, code: 'drop_mismatch' },
      { c: { sku: 'tee', startsAtMs: T0 + 2000, channels: [['app', null]] }, code: 'invalid_request' }, // ends before it starts
      { c: { sku: 'tee', channels: [['app', -1]] }, code: 'invalid_request' },
    ];
    for (const { c, code } of refusals) expectRefusedUnchanged(s, { t: 'sku.upsert', ...c }, code, T0 + 1);
    expect(channelList(s)).toEqual([['web', { reserved: 1, sold: 0, maxUnits: 1 }]]);
  });

  test('the policy is copied from the command: changing the command afterwards changes nothing', () => {
    const policy: Caps = [['web', 1]];
    const s = withSku(5, policy);
    policy[0]![1] = 99;
    policy.push(['app', null]);
    expect(channelList(s)).toEqual([['web', { reserved: 0, sold: 0, maxUnits: 1 }]]);
  });
});

describe('__proto__ and other names that are object properties elsewhere', () => {
  test('__proto__ is a channel like any other: listed, capped, counted, and a key of the view', () => {
    const s = withSku(10, [['__proto__', 2], ['constructor', null]]);
    const r = okOf(reserve(s, { channel: '__proto__', qty: 2 })).reservation!;
    expect(r.channel).toBe('__proto__');
    expect(codeOf(reserve(s, { channel: '__proto__' }))).toBe('channel_sold_out');
    expect(codeOf(reserve(s, { channel: 'constructor' }))).toBe('ok');
    expect(codeOf(reserve(s, { channel: 'tostring' }))).toBe('channel_not_allowed');
    const c = channels(s);
    expect(Object.getPrototypeOf(c)).toBeNull();
    expect(Object.keys(c)).toEqual(['__proto__', 'constructor']);
    expect(Object.prototype.hasOwnProperty.call(c, '__proto__')).toBe(true);
    expect(Object.getOwnPropertyDescriptor(c, '__proto__')?.value).toEqual({ reserved: 2, sold: 0, maxUnits: 2 });
    expect(JSON.parse(JSON.stringify(c))).toEqual(JSON.parse('{"__proto__":{"reserved":2,"sold":0,"maxUnits":2},"constructor":{"reserved":1,"sold":0,"maxUnits":null}}'));
    expect(JSON.stringify(c)).toBe('{"__proto__":{"reserved":2,"sold":0,"maxUnits":2},"constructor":{"reserved":1,"sold":0,"maxUnits":null}}');
  });

  test('reserving on __proto__ pollutes no prototype', () => {
    const s = withSku(10);
    okOf(reserve(s, { channel: '__proto__' }));
    okOf(upsert(s, { sku: 'tee', channels: [['__proto__', 3]] }, T0 + 1));
    okOf(reserve(s, { channel: '__proto__', atMs: T0 + 2 }));
    const plain: Record<string, unknown> = {};
    for (const key of ['reserved', 'sold', 'maxUnits']) {
      expect(key in plain, key).toBe(false);
      expect(Object.prototype.hasOwnProperty.call(Object.prototype, key), key).toBe(false);
    }
    expect(Object.getPrototypeOf(plain)).toBe(Object.prototype);
    expect(channelList(s)).toEqual([['__proto__', { reserved: 2, sold: 0, maxUnits: 3 }]]);
  });

  test('a SKU without a policy shows __proto__ among its channels with units', () => {
    const s = withSku(10);
    reserveId(s, { channel: 'web' });
    reserveId(s, { channel: '__proto__', qty: 2 });
    expect(channelList(s)).toEqual([['web', { reserved: 1, sold: 0, maxUnits: null }], ['__proto__', { reserved: 2, sold: 0, maxUnits: null }]]);
  });
});

describe('the bound on channels counted without a policy', () => {
  const BOUND = Limits.channelsCountedPerSkuMax;

  test('the bound on channels counted without a policy is 256', () => {
    expect(BOUND).toBe(256);
  });

  test(`a SKU without a policy counts ${BOUND} channels; a reserve naming one more is refused channel_not_allowed, a counted one still reserves`, () => {
    const s = withSku(1000, undefined, {}, { liveReservationsMax: 10_000 });
    for (let i = 0; i < BOUND; i++) expect(codeOf(reserve(s, { channel: `c${i}`, buyer: `b${i}` })), `c${i}`).toBe('ok');
    expectRefusedUnchanged(s, reserveCommand({ channel: 'one-more' }), 'channel_not_allowed');
    expectRefusedUnchanged(s, reserveCommand({}), 'channel_not_allowed'); // "default" is one more, too
    expect(codeOf(reserve(s, { channel: 'c0' }))).toBe('ok');
    expect(codeOf(reserve(s, { channel: `c${BOUND - 1}` }))).toBe('ok');
    expect(Object.keys(channels(s))).toHaveLength(BOUND);
  });

  test('a counted channel stays counted after its units are gone, and only shows in the view while it has units', () => {
    const s = withSku(1000, undefined, {}, { liveReservationsMax: 10_000 });
    const ids: string[] = [];
    for (let i = 0; i < BOUND; i++) ids.push(reserveId(s, { channel: `c${i}`, buyer: `b${i}` }));
    for (const id of ids) okOf(apply(s, { t: 'res.cancel', id }, T0 + 1));
    expect(channelList(s)).toEqual([]);
    expectRefusedUnchanged(s, reserveCommand({ channel: 'fresh' }), 'channel_not_allowed', T0 + 2);
    expect(codeOf(reserve(s, { channel: 'c7', atMs: T0 + 2 }))).toBe('ok');
    expect(channelList(s)).toEqual([['c7', { reserved: 1, sold: 0, maxUnits: null }]]);
  });

  test('on_payment holds, which take no units, count their channel too', () => {
    const s = withSku(1000, undefined, { mode: 'on_payment' }, { liveReservationsMax: 10_000 });
    for (let i = 0; i < BOUND; i++) okOf(reserve(s, { channel: `c${i}`, buyer: `b${i}` }));
    expect(channelList(s)).toEqual([]);
    expect(codeOf(reserve(s, { channel: 'one-more' }))).toBe('channel_not_allowed');
  });

  test('with a policy, its channels may reserve past the bound; clearing the policy brings the bound back', () => {
    const s = withSku(1000, undefined, {}, { liveReservationsMax: 10_000 });
    for (let i = 0; i < BOUND; i++) okOf(reserve(s, { channel: `c${i}`, buyer: `b${i}` }));
    okOf(upsert(s, { sku: 'tee', channels: [['late', null], ['c3', null]] }, T0 + 1));
    expect(codeOf(reserve(s, { channel: 'late', atMs: T0 + 2 }))).toBe('ok');
    expect(codeOf(reserve(s, { channel: 'c4', atMs: T0 + 2 }))).toBe('channel_not_allowed');
    okOf(upsert(s, { sku: 'tee', channels: null }, T0 + 3));
    expect(codeOf(reserve(s, { channel: 'later', atMs: T0 + 4 }))).toBe('channel_not_allowed');
    for (const channel of ['late', 'c4', 'c255']) expect(codeOf(reserve(s, { channel, atMs: T0 + 4 })), channel).toBe('ok');
  });

  test('the bound is per SKU', () => {
    const s = withSku(1000, undefined, {}, { liveReservationsMax: 10_000 });
    okOf(upsert(s, { sku: 'cap', stock: 10 }));
    for (let i = 0; i < BOUND; i++) okOf(reserve(s, { channel: `c${i}`, buyer: `b${i}` }));
    expect(codeOf(reserve(s, { sku: 'cap', channel: 'one-more' }))).toBe('ok');
  });
});

describe('the order of the SKU view\'s channels', () => {
  test('policy channels come first in policy order (with no units too), then the others with units in first-use order', () => {
    const s = withSku(50);
    for (const channel of ['c', 'a', 'b', 'd']) reserveId(s, { channel });
    const dId = reserveId(s, { channel: 'd' });
    expect(Object.keys(channels(s))).toEqual(['c', 'a', 'b', 'd']);
    okOf(upsert(s, { sku: 'tee', channels: [['zeta', 1], ['b', null], ['alpha', 2]] }, T0 + 1));
    expect(Object.keys(channels(s))).toEqual(['zeta', 'b', 'alpha', 'c', 'a', 'd']);
    okOf(apply(s, { t: 'res.cancel', id: dId }, T0 + 2));
    expect(Object.keys(channels(s))).toEqual(['zeta', 'b', 'alpha', 'c', 'a', 'd']); // d still holds its first unit
    okOf(upsert(s, { sku: 'tee', channels: [['a', null]] }, T0 + 3));
    expect(Object.keys(channels(s))).toEqual(['a', 'c', 'b', 'd']);
    expect(channelList(s)[0]).toEqual(['a', { reserved: 1, sold: 0, maxUnits: null }]);
  });

  test('a new SKU and a SKU with only released units show no channels', () => {
    const s = withSku(5);
    expect(channelList(s)).toEqual([]);
    const id = reserveId(s, { channel: 'web' });
    okOf(apply(s, { t: 'res.cancel', id }, T0 + 1));
    expect(channelList(s)).toEqual([]);
    expect(okOf(upsert(s, { sku: 'new', stock: 1, channels: [['web', 1]] })).sku!.channels).toEqual({ web: { reserved: 0, sold: 0, maxUnits: 1 } });
  });

  test('the view answered by every command that shows a SKU has the same channels, on an object with no prototype', () => {
    const s = withSku(10, [['web', 5]]);
    reserveId(s, { channel: 'web', qty: 2 });
    const answers = [
      apply(s, { t: 'sku.get', sku: 'tee' }, T0),
      upsert(s, { sku: 'tee', holdSeconds: 60 }, T0 + 1),
      apply(s, { t: 'sku.adjust', sku: 'tee', delta: 1 }, T0 + 2),
    ];
    for (const a of answers) {
      const c = okOf(a).sku!.channels;
      expect(Object.getPrototypeOf(c)).toBeNull();
      expect(Object.entries(c)).toEqual([['web', { reserved: 2, sold: 0, maxUnits: 5 }]]);
    }
  });
});

/** A state with policies, every channel state and a `__proto__` channel, as the tests below need. */
function channelled(config: Partial<ShardConfig> = {}, erp = false): { s: ShardState; commands: { c: Command; atMs: number }[] } {
  const s = shard({ settledRetentionMs: 60_000, ...config });
  const commands: { c: Command; atMs: number }[] = [];
  const ids: string[] = [];
  const run = (c: Command, atMs: number): Applied => {
    commands.push({ c, atMs });
    const a = apply(s, c, atMs);
    if (a.outcome.ok && a.outcome.status === 'created' && a.outcome.reservation !== undefined) ids.push(a.outcome.reservation.reservationId);
    return a;
  };
  if (erp) okOf(run({ t: 'erp.mode', enabled: true }, T0));
  okOf(run({ t: 'sku.upsert', sku: 'tee', stock: 20, channels: [['web', 5], ['__proto__', null], ['app', 2]], holdSeconds: 30 }, T0));
  okOf(run({ t: 'sku.upsert', sku: 'cap', stock: 10, mode: 'on_payment', dropId: 'spring' }, T0));
  okOf(run({ t: 'sku.upsert', sku: 'mug', stock: 10, mode: 'on_order', dropId: 'spring', channels: [['default', 3]] }, T0));
  okOf(run(reserveCommand({ channel: 'web', qty: 2, nonce: 'a1' }), T0 + 1));
  okOf(run(reserveCommand({ channel: '__proto__', buyer: 'bob', qty: 3, nonce: 'a2' }), T0 + 1));
  okOf(run(reserveCommand({ channel: 'app', buyer: 'cy', nonce: 'a3' }), T0 + 2));
  okOf(run(reserveCommand({ sku: 'cap', channel: 'shop', nonce: 'a4' }), T0 + 2));
  okOf(run(reserveCommand({ sku: 'cap', buyer: 'bob', nonce: 'a5' }), T0 + 2));
  okOf(run(reserveCommand({ sku: 'mug', buyer: 'dee', qty: 2, nonce: 'a6' }), T0 + 3));
  okOf(run({ t: 'res.pay', id: ids[0]!, paymentRef: 'pi_1' }, T0 + 4));
  okOf(run({ t: 'res.pay', id: ids[3]! }, T0 + 4));
  okOf(run({ t: 'res.cancel', id: ids[2]!, buyerId: 'cy' }, T0 + 5));
  okOf(run({ t: 'res.pay', id: ids[5]! }, T0 + 5));
  okOf(run({ t: 'sku.upsert', sku: 'tee', channels: [['app', 1], ['web', 3]] }, T0 + 6));
  okOf(run({ t: 'sku.upsert', sku: 'cap', channels: [['shop', 0]] }, T0 + 6));
  expect(codeOf(run(reserveCommand({ channel: 'web', qty: 2, nonce: 'a7' }), T0 + 7))).toBe('channel_sold_out');
  expect(codeOf(run(reserveCommand({ channel: 'shop', nonce: 'a8' }), T0 + 7))).toBe('channel_not_allowed');
  okOf(run({ t: 'res.expire' }, T0 + 40_000)); // the __proto__ hold (30 s) expires
  return { s, commands };
}

describe('snapshots with channels', () => {
  test('a state with channels survives toSnapshot, msgpack and fromSnapshot exactly, as version 4', () => {
    const { s } = channelled();
    const snap = toSnapshot(s);
    expect(snap.v).toBe(5);
    const tee = snap.skus.find((row) => row[0] === 'tee')!;
    expect(tee.slice(16, 18)).toEqual([[['app', 1], ['web', 3]], [['web', 0, 2], ['__proto__', 0, 0], ['app', 0, 0]]]);
    expect(snap.reservations.map((row) => [row[2], row[12], row[9]])).toEqual([
      ['tee', 'web', 'paid'], ['tee', '__proto__', 'expired'], ['tee', 'app', 'cancelled'],
      ['cap', 'shop', 'paid'], ['cap', 'default', 'held'], ['mug', 'default', 'paid'],
    ]);
    const restored = fromSnapshot(packr.unpack(packr.pack(snap)) as ShardSnapshot, s.config);
    expect(toSnapshot(restored)).toEqual(snap);
    for (const sku of ['tee', 'cap', 'mug']) {
      expect(Object.entries(channels(restored, sku)), sku).toEqual(Object.entries(channels(s, sku)));
      expect(Object.getPrototypeOf(channels(restored, sku))).toBeNull();
    }
  });

  test('toSnapshot(fromSnapshot(x)) is x, and the restored state answers every later command as the live one', () => {
    const { s } = channelled();
    const x = toSnapshot(s);
    const restored = fromSnapshot(structuredClone(x), s.config);
    expect(toSnapshot(restored)).toEqual(x);
    const later: Command[] = [
      reserveCommand({ channel: 'app', nonce: 'b1' }),
      reserveCommand({ channel: 'app', nonce: 'b2' }),
      reserveCommand({ channel: '__proto__', nonce: 'b3' }),
      reserveCommand({ sku: 'cap', channel: 'shop', nonce: 'b4' }),
      { t: 'sku.upsert', sku: 'tee', channels: null },
      reserveCommand({ channel: 'new', nonce: 'b5' }),
      { t: 'sku.get', sku: 'tee' },
      { t: 'res.expire' },
    ];
    for (const [i, c] of later.entries()) expect(apply(restored, c, T0 + 50_000 + i), `command ${i}`).toEqual(apply(s, c, T0 + 50_000 + i));
    expect(toSnapshot(restored)).toEqual(toSnapshot(s));
  });

  test('a hand-built version 1 snapshot restores with every reservation on "default", whose counts equal the SKU\'s', () => {
    const config = { ...shard().config };
    const v1 = {
      v: 1, shardId: 0, shardCount: 1, seq: 4, lastNowMs: T0 + 10,
      skus: [
        // sku, dropId, createdAt, updatedAt, onHand, reserved, sold, mode, holdSeconds, maxPerBuyer,
        // startsAt, endsAt, lowStockThreshold, minAccountAgeSeconds, minPastOrders, lowStockSignaled
        ['tee', null, T0, T0, 10, 3, 2, 'pre_deduct', 600, 0, 0, 0, 0, 0, 0, false],
        ['cap', null, T0, T0, 5, 0, 0, 'on_payment', 600, 0, 0, 0, 0, 0, 0, false],
        ['mug', null, T0, T0, 5, 0, 0, 'pre_deduct', 600, 0, 0, 0, 0, 0, 0, false],
      ],
      links: [],
      reservations: [
        // id, seq, sku, buyerId, qty, mode, createdAt, expiresAt, idemKey, status, settledAt, paymentRef
        ['0.10000000a', 1, 'tee', 'ann', 3, 'pre_deduct', T0, T0 + 600_000, null, 'held', 0, null],
        ['0.20000000b', 2, 'tee', 'bob', 2, 'pre_deduct', T0, T0 + 600_000, 'k1', 'paid', T0 + 10, 'pi_1'],
        ['0.30000000c', 3, 'cap', 'ann', 1, 'on_payment', T0, T0 + 600_000, null, 'held', 0, null],
      ],
      settledOrder: [1],
      // Quota scopes are "s\u0001<sku>" (or "d\u0001<drop>"); keys "<buyer>\u0000<scope>\u0000<key>".
      quotas: [['s\u0001tee', 'ann', 3], ['s\u0001tee', 'bob', 2], ['s\u0001cap', 'ann', 1]],
      idempotency: [['bob\u0000s\u0001tee\u0000k1', 1, T0]],
      outbox: [],
      outboxLastSeq: 0,
    } as unknown as ShardSnapshot;
    const s = fromSnapshot(structuredClone(v1), config);
    expect(view(s, 'tee')).toMatchObject({ reserved: 3, sold: 2, available: 5 });
    expect(channelList(s, 'tee')).toEqual([['default', { reserved: 3, sold: 2, maxUnits: null }]]);
    expect(channelList(s, 'cap')).toEqual([]);
    expect(channelList(s, 'mug')).toEqual([]);
    for (const id of ['0.10000000a', '0.20000000b', '0.30000000c']) {
      expect(okOf(apply(s, { t: 'res.get', id }, T0)).reservation?.channel, id).toBe('default');
    }
    // The key, the quotas and the hold's expiry came back too: bob's retry is a replay.
    expect(okOf(reserve(s, { buyer: 'bob', qty: 2, idemKey: 'k1', channel: 'web', atMs: T0 + 11 }))).toMatchObject({
      replayed: true, reservation: { reservationId: '0.20000000b', channel: 'default', status: 'paid' },
    });
    expect(new Map(s.skus.get('tee')!.quota)).toEqual(new Map([['ann', 3], ['bob', 2]]));
    const again = toSnapshot(s);
    expect(again.v).toBe(5);
    expect(again.skus.map((row) => [row[0], row[16], row[17]])).toEqual([
      ['tee', null, [['default', 3, 2]]], ['cap', null, [['default', 0, 0]]], ['mug', null, []],
    ]);
    expect(again.reservations.map((row) => row[12])).toEqual(['default', 'default', 'default']);
    expect(toSnapshot(fromSnapshot(again, config))).toEqual(again);
    // It goes on as a v2 state: default's counts move with its reservations, other channels join.
    okOf(apply(s, { t: 'res.cancel', id: '0.10000000a' }, T0 + 20));
    okOf(apply(s, { t: 'res.pay', id: '0.30000000c' }, T0 + 20));
    okOf(reserve(s, { channel: 'web', atMs: T0 + 21 }));
    expect(channelList(s, 'tee')).toEqual([['default', { reserved: 0, sold: 2, maxUnits: null }], ['web', { reserved: 1, sold: 0, maxUnits: null }]]);
    expect(channelList(s, 'cap')).toEqual([['default', { reserved: 0, sold: 1, maxUnits: null }]]);
  });
});

describe('replaying the log', () => {
  const dirs: string[] = [];
  afterEach(() => {
    for (const d of dirs.splice(0)) rmSync(d, { recursive: true, force: true });
  });

  test('the same commands applied to a fresh state give the same answers and an equal snapshot', () => {
    const { s, commands } = channelled();
    const fresh = shard({ settledRetentionMs: 60_000 });
    const replay = createShardState(0, 1, s.config);
    for (const { c, atMs } of commands) expect(apply(fresh, c, atMs)).toEqual(apply(replay, c, atMs));
    expect(toSnapshot(fresh)).toEqual(toSnapshot(s));
  });

  test('a runtime reopened from its log alone, and from a snapshot and its log, has the state it had', () => {
    const { s, commands } = channelled({}, true);
    const dir = mkdtempSync(join(tmpdir(), 'flash-channels-'));
    dirs.push(dir);
    const config = { settledRetentionMs: 60_000 };
    const open = () => ShardRuntime.open({ dir, shardId: 0, shardCount: 1, config });
    const rt = open();
    const half = Math.floor(commands.length / 2);
    for (const { c, atMs } of commands.slice(0, half)) rt.execute([c], atMs);
    rt.close();
    const second = open();
    expect(toSnapshot(second.state)).toEqual((() => {
      const partial = shard(config);
      for (const { c, atMs } of commands.slice(0, half)) apply(partial, c, atMs);
      return toSnapshot(partial);
    })());
    second.snapshot();
    for (const { c, atMs } of commands.slice(half)) second.execute([c], atMs);
    second.close();
    const third = open();
    expect(toSnapshot(third.state)).toEqual(toSnapshot(s));
    third.close();
  });
});

describe('the ERP outbox', () => {
  test('a paid event carries the channel of its reservation ("default" when the reserve named none)', () => {
    const s = withSku(10, null, {});
    okOf(apply(s, { t: 'erp.mode', enabled: true }, T0));
    const ids = [reserveId(s, { channel: 'web' }), reserveId(s, {}), reserveId(s, { channel: '__proto__' })];
    const paid = ids.map((id) => apply(s, { t: 'res.pay', id }, T0 + 1));
    expect(paid.map((a) => a.events?.find((e) => e.type === 'paid'))).toEqual(paid.map((a) => ({ type: 'paid', reservation: okOf(a).reservation })));
    expect(paid.map((a) => okOf(a).reservation!.channel)).toEqual(['web', 'default', '__proto__']);
    const events = okOf(apply(s, { t: 'erp.pending', afterSeq: 0, max: 10 }, T0 + 2)).paid!;
    expect(events.map((e) => [e.reservationId, e.channel])).toEqual([[ids[0], 'web'], [ids[1], 'default'], [ids[2], '__proto__']]);
    expect(events[0]).toEqual({
      eventId: `order.paid:${ids[0]!}`, shardId: 0, eventSeq: 1, reservationId: ids[0], sku: 'tee', buyerId: 'ann', qty: 1,
      paidAt: T0 + 1, paymentRef: null, channel: 'web',
    });
  });
});

describe('the command guard of channel fields', () => {
  const cases: { name: string; command: unknown; message: string }[] = [
    ...['Web', '', 'c'.repeat(33), 'a b', 'web/eu', 'wéb', 'web.eu', 'web:eu'].map((channel) => ({
      name: `res.reserve with the channel ${JSON.stringify(channel)}`,
      command: { t: 'res.reserve', sku: 'tee', buyerId: 'ann', qty: 1, nonce: 'a', channel }, message: 'channel must be 1..32 characters of [a-z0-9_-]',
    })),
    { name: 'res.reserve with a numeric channel', command: { t: 'res.reserve', sku: 'tee', buyerId: 'ann', qty: 1, nonce: 'a', channel: 5 }, message: 'channel must be 1..32 characters of [a-z0-9_-]' },
    { name: 'res.reserve with a null channel', command: { t: 'res.reserve', sku: 'tee', buyerId: 'ann', qty: 1, nonce: 'a', channel: null }, message: 'channel must be 1..32 characters of [a-z0-9_-]' },
    { name: 'sku.upsert with an empty channel list', command: { t: 'sku.upsert', sku: 'tee', channels: [] }, message: 'channels must name 1..64 channels, or be null' },
    { name: 'sku.upsert with 65 channels', command: { t: 'sku.upsert', sku: 'tee', channels: Array.from({ length: 65 }, (_, i) => [`c${i}`, null]) }, message: 'channels must name 1..64 channels, or be null' },
    { name: 'sku.upsert with channels in the wire form (an object)', command: { t: 'sku.upsert', sku: 'tee', channels: { web: { maxUnits: 1 } } }, message: 'channels must be a list of [name, maxUnits] pairs or null' },
    { name: 'sku.upsert with a channel entry that is not a pair', command: { t: 'sku.upsert', sku: 'tee', channels: [['web']] }, message: 'channels must be a list of [name, maxUnits] pairs' },
    { name: 'sku.upsert with a channel entry of three items', command: { t: 'sku.upsert', sku: 'tee', channels: [['web', 1, 2]] }, message: 'channels must be a list of [name, maxUnits] pairs' },
    { name: 'sku.upsert with an upper-case channel name', command: { t: 'sku.upsert', sku: 'tee', channels: [['Web', 1]] }, message: 'channels name must be 1..32 characters of [a-z0-9_-]' },
    { name: 'sku.upsert with a 33-character channel name', command: { t: 'sku.upsert', sku: 'tee', channels: [['c'.repeat(33), 1]] }, message: 'channels name must be 1..32 characters of [a-z0-9_-]' },
    { name: 'sku.upsert naming a channel twice', command: { t: 'sku.upsert', sku: 'tee', channels: [['web', 1], ['app', 2], ['web', null]] }, message: 'channels names web twice' },
    ...[-1, 1.5, Limits.stockMax + 1, '3', Number.NaN].map((cap) => ({
      name: `sku.upsert with maxUnits ${String(cap)}${typeof cap === 'string' ? ' (a string)' : ''}`,
      command: { t: 'sku.upsert', sku: 'tee', channels: [['web', cap]] }, message: 'channels.web.maxUnits must be an integer in 0..1000000000 or null',
    })),
  ];
  for (const { name, command, message } of cases) test(`${name} is refused invalid_request and changes nothing`, () => {
    const s = withSku(10, [['web', 5]]);
    reserveId(s, { channel: 'web' });
    const a = expectRefusedUnchanged(s, command as Command, 'invalid_request', T0 + 1);
    expect(a.outcome).toEqual({ ok: false, code: 'invalid_request', message });
  });

  test('the edges of each range are accepted: 64 channels, names of 32 characters, caps of 0 and 1e9', () => {
    const s = shard();
    const many: Caps = Array.from({ length: Limits.channelsPerSkuMax }, (_, i) => [`c${i}`, i === 0 ? 0 : null]);
    many[1] = ['c'.repeat(Limits.channelNameLengthMax), Limits.stockMax];
    many[2] = ['a-z_0-9', 1];
    const created = okOf(upsert(s, { sku: 'tee', stock: 5, channels: many })).sku!;
    expect(Object.keys(created.channels)).toEqual(many.map(([name]) => name));
    expect(created.channels['c'.repeat(32)]).toEqual({ reserved: 0, sold: 0, maxUnits: Limits.stockMax });
    expect(okOf(reserve(s, { channel: 'c'.repeat(32) })).reservation?.channel).toBe('c'.repeat(32));
    expect(okOf(reserve(s, { channel: 'a-z_0-9' })).reservation?.channel).toBe('a-z_0-9');
  });
});

describe('the wire form of a channel policy (fields.ts), read into the command form', () => {
  const rows: { name: string; json: string; expected: Caps | null | string }[] = [
    { name: 'names in their order, a missing or null maxUnits meaning no cap', json: '{"web":{"maxUnits":5},"app":{},"shop":{"maxUnits":null}}', expected: [['web', 5], ['app', null], ['shop', null]] },
    { name: '__proto__ as a key of the parsed JSON is a channel name', json: '{"__proto__":{"maxUnits":2},"constructor":{"maxUnits":0}}', expected: [['__proto__', 2], ['constructor', 0]] },
    { name: 'null clears the policy', json: 'null', expected: null },
    { name: 'an empty map names no channel', json: '{}', expected: 'channels must name 1..64 channels, or be null' },
    { name: 'a list is not the wire form', json: '[["web",1]]', expected: 'channels must be an object like {"web": {"maxUnits": 100}}, or null' },
    { name: 'an upper-case name', json: '{"Web":{}}', expected: 'channels name "Web" must be 1..32 characters of [a-z0-9_-]' },
    { name: 'an entry that is not an object', json: '{"web":5}', expected: 'channels.web must be an object like {"maxUnits": 100}' },
    { name: 'a negative maxUnits', json: '{"web":{"maxUnits":-1}}', expected: 'channels.web.maxUnits must be an integer in 0..1000000000, or absent for no cap' },
  ];
  for (const { name, json, expected } of rows) test(`${name}: ${json} reads as ${JSON.stringify(expected)}`, () => {
    expect(channelCapsFromWire(JSON.parse(json))).toEqual(expected);
  });

  test('a policy read from the wire with __proto__ sets that channel on the SKU, and no prototype changes', () => {
    const caps = channelCapsFromWire(JSON.parse('{"__proto__":{"maxUnits":1}}'));
    expect(Array.isArray(caps)).toBe(true);
    const s = withSku(5, caps as Caps);
    expect(codeOf(reserve(s, { channel: '__proto__' }))).toBe('ok');
    expect(codeOf(reserve(s, { channel: '__proto__' }))).toBe('channel_sold_out');
    expect(channelList(s)).toEqual([['__proto__', { reserved: 1, sold: 0, maxUnits: 1 }]]);
    expect(Object.prototype.hasOwnProperty.call(Object.prototype, 'maxUnits')).toBe(false);
  });
});

describe('ownership: res.get and res.cancel scoped to a buyer', () => {
  const HOLD_MS = 10_000;

  /** ann holds 2 of 5 units on channel web; the hold is due at T0 + HOLD_MS. */
  function held(): { s: ShardState; id: string } {
    const s = withSku(5, null, { holdSeconds: HOLD_MS / 1000 });
    return { s, id: reserveId(s, { channel: 'web', qty: 2 }) };
  }

  /** What a shard that never had the reservation answers for this id. */
  function unknownAnswer(command: Command, nowMs: number): Applied {
    const empty = withSku(5, null, { holdSeconds: HOLD_MS / 1000 });
    return apply(empty, command, nowMs);
  }

  type Prepare = (s: ShardState, id: string) => void;
  const states: { name: string; prepare: Prepare; status: string; atMs: number }[] = [
    { name: 'a held reservation', prepare: () => {}, status: 'held', atMs: T0 + 1 },
    { name: 'a hold that is due but not yet swept', prepare: () => {}, status: 'held', atMs: T0 + HOLD_MS + 1 },
    { name: 'a paid reservation', prepare: (s, id) => okOf(apply(s, { t: 'res.pay', id }, T0 + 1)), status: 'paid', atMs: T0 + 2 },
    { name: 'a cancelled reservation', prepare: (s, id) => okOf(apply(s, { t: 'res.cancel', id }, T0 + 1)), status: 'cancelled', atMs: T0 + 2 },
    { name: 'an expired reservation', prepare: (s) => okOf(apply(s, { t: 'res.expire' }, T0 + HOLD_MS)), status: 'expired', atMs: T0 + HOLD_MS + 1 },
  ];
  for (const { name, prepare, status, atMs } of states) {
    for (const other of ['bob', 'Ann', 'ann ']) {
      for (const t of ['res.get', 'res.cancel'] as const) {
        test(`${t} of ${name} by another buyer (${JSON.stringify(other)}) answers unknown_reservation, exactly as for an id that never existed, and changes nothing`, () => {
          const { s, id } = held();
          prepare(s, id);
          const command: Command = { t, id, buyerId: other };
          const a = expectRefusedUnchanged(s, command, 'unknown_reservation', atMs);
          expect(a).toEqual(unknownAnswer(command, atMs));
          expect(okOf(apply(s, { t: 'res.get', id }, atMs)).reservation?.status).toBe(status);
        });
      }
    }
  }

  test('another buyer\'s cancel of a due hold does not expire it; the owner\'s cancel then does', () => {
    const { s, id } = held();
    const due = T0 + HOLD_MS + 5;
    expectRefusedUnchanged(s, { t: 'res.cancel', id, buyerId: 'bob' }, 'unknown_reservation', due);
    expect(view(s, 'tee')).toMatchObject({ reserved: 2, available: 3 });
    expect(channels(s).web).toEqual({ reserved: 2, sold: 0, maxUnits: null });
    const a = apply(s, { t: 'res.cancel', id, buyerId: 'ann' }, due);
    expect(a.mutated).toBe(true);
    expect(okOf(a).reservation).toMatchObject({ status: 'expired', expiredAt: due, channel: 'web' });
    expect(view(s, 'tee')).toMatchObject({ reserved: 0, available: 5 });
    expect(channelList(s)).toEqual([]);
  });

  const owners: { name: string; buyerId: string | undefined }[] = [
    { name: 'the owner', buyerId: 'ann' },
    { name: 'a caller that names no buyer (any reservation)', buyerId: undefined },
  ];
  for (const { name, buyerId } of owners) {
    test(`res.get by ${name} answers the reservation and changes nothing`, () => {
      const { s, id } = held();
      const command: Command = buyerId === undefined ? { t: 'res.get', id } : { t: 'res.get', id, buyerId };
      const before = toSnapshot(s);
      const a = apply(s, command, T0 + 1);
      expect(a.mutated).toBe(false);
      expect(okOf(a).reservation).toMatchObject({ reservationId: id, buyerId: 'ann', channel: 'web', status: 'held' });
      expect(toSnapshot(s)).toEqual(before);
    });

    test(`res.cancel by ${name} cancels the hold and releases its units and its channel's`, () => {
      const { s, id } = held();
      const command: Command = buyerId === undefined ? { t: 'res.cancel', id } : { t: 'res.cancel', id, buyerId };
      const a = apply(s, command, T0 + 1);
      expect(a.mutated).toBe(true);
      expect(okOf(a).reservation).toMatchObject({ status: 'cancelled', cancelledAt: T0 + 1, channel: 'web' });
      expect(view(s, 'tee')).toMatchObject({ reserved: 0, available: 5 });
      // Cancelling again answers the same, replayed, and a paid one is still already_paid for its owner.
      expect(okOf(apply(s, command, T0 + 2))).toMatchObject({ replayed: true, reservation: { status: 'cancelled' } });
      const paid = reserveId(s, { channel: 'web', atMs: T0 + 3 });
      okOf(apply(s, { t: 'res.pay', id: paid }, T0 + 4));
      const again: Command = buyerId === undefined ? { t: 'res.cancel', id: paid } : { t: 'res.cancel', id: paid, buyerId };
      expectRefusedUnchanged(s, again, 'already_paid', T0 + 5);
    });
  }

  test('the owner of one reservation cannot reach another buyer\'s, even on the same SKU and channel', () => {
    const { s, id } = held();
    const bobs = reserveId(s, { channel: 'web', buyer: 'bob' });
    expect(codeOf(apply(s, { t: 'res.get', id: bobs, buyerId: 'ann' }, T0 + 1))).toBe('unknown_reservation');
    expect(codeOf(apply(s, { t: 'res.get', id, buyerId: 'bob' }, T0 + 1))).toBe('unknown_reservation');
    expect(okOf(apply(s, { t: 'res.get', id: bobs, buyerId: 'bob' }, T0 + 1)).reservation?.buyerId).toBe('bob');
    expect(okOf(apply(s, { t: 'res.cancel', id: bobs, buyerId: 'bob' }, T0 + 1)).reservation?.status).toBe('cancelled');
    expect(okOf(apply(s, { t: 'res.get', id }, T0 + 1)).reservation?.status).toBe('held');
  });
});
