// The shard's stock event log for the events webhook (src/domain/shard-state.ts StockEventLog,
// shared/API.md "Operators"): off until a logged erp.mode turns it on; sku.low_stock,
// sku.sold_out and sku.restocked at each crossing whatever the cause, none at creation, two
// from one change when both cross; read and acknowledged like the ERP outbox; bounded; and
// the same after a replay (which builds no answers) and a snapshot.

import { Packr } from 'msgpackr';
import { describe, expect, it } from 'vitest';
import {
  apply, createShardState, fromSnapshot, replay, toSnapshot, type Command, type ShardSnapshot, type ShardState, type StockEvent,
} from '../src/domain/index.js';
import { codeOf, okOf, T0 } from './support/domain-kit.js';

const packr = new Packr({ useRecords: false, moreTypes: false, mapsAsObjects: true, variableMapSize: true });

function pending(s: ShardState, afterSeq = 0): StockEvent[] {
  return okOf(apply(s, { t: 'ev.pending', afterSeq, max: 1000 }, T0)).stockEvents!;
}

/** A run of commands that crosses every threshold, with the log turned on first. */
function script(): [Command, number][] {
  return [
    [{ t: 'erp.mode', enabled: false, events: true }, T0],
    [{ t: 'sku.upsert', sku: 'tee', stock: 3, lowStockThreshold: 1, dropId: null }, T0 + 1],
    [{ t: 'sku.upsert', sku: 'cap', stock: 0 }, T0 + 2],
    [{ t: 'res.reserve', sku: 'tee', buyerId: 'a', qty: 2, nonce: 'n1' }, T0 + 3], // 3 -> 1: low_stock
    [{ t: 'res.reserve', sku: 'tee', buyerId: 'b', qty: 1, nonce: 'n2' }, T0 + 4], // 1 -> 0: sold_out
    [{ t: 'sku.adjust', sku: 'cap', delta: 5 }, T0 + 5], // 0 -> 5: restocked
    [{ t: 'res.expire' }, T0 + 600_004], // both tee holds expire: 0 -> 3, restocked
    [{ t: 'res.reserve', sku: 'tee', buyerId: 'c', qty: 3, nonce: 'n3' }, T0 + 600_005], // 3 -> 0: low_stock and sold_out
  ];
}

describe('the stock event log', () => {
  it('records nothing while off: a shard without the events webhook queues no event', () => {
    const s = createShardState(0, 1);
    okOf(apply(s, { t: 'sku.upsert', sku: 'tee', stock: 1 }, T0));
    okOf(apply(s, { t: 'res.reserve', sku: 'tee', buyerId: 'a', qty: 1, nonce: 'n' }, T0));
    expect(pending(s)).toEqual([]);
  });

  it('records every crossing once turned on, with stable ids, the levels right after, and the time of the command', () => {
    const s = createShardState(0, 1);
    for (const [c, t] of script()) apply(s, c, t);
    const events = pending(s);
    expect(events.map((e) => [e.type, e.sku, e.available, e.onHand, e.at])).toEqual([
      ['sku.low_stock', 'tee', 1, 3, T0 + 3],
      ['sku.sold_out', 'tee', 0, 3, T0 + 4],
      ['sku.restocked', 'cap', 5, 5, T0 + 5],
      ['sku.restocked', 'tee', 2, 3, T0 + 600_004], // the first expired hold (2 units) crosses 0 -> 2
      ['sku.low_stock', 'tee', 0, 3, T0 + 600_005],
      ['sku.sold_out', 'tee', 0, 3, T0 + 600_005],
    ]);
    expect(events.map((e) => e.eventSeq)).toEqual([1, 2, 3, 4, 5, 6]);
    expect(events.map((e) => e.eventId)).toEqual(events.map((e) => `${e.type}:0.${e.eventSeq}`));
    expect(events.every((e) => e.shardId === 0 && e.dropId === null)).toBe(true);
  });

  it('hands out events after a seq, forgets them on a cumulative ack, and refuses an ack past the end', () => {
    const s = createShardState(0, 1);
    for (const [c, t] of script()) apply(s, c, t);
    expect(pending(s, 4).map((e) => e.eventSeq)).toEqual([5, 6]);
    expect(okOf(apply(s, { t: 'ev.pending', afterSeq: 0, max: 2 }, T0)).stockEvents!.map((e) => e.eventSeq)).toEqual([1, 2]);
    expect(apply(s, { t: 'ev.ack', upToSeq: 3 }, T0).mutated).toBe(true);
    expect(pending(s).map((e) => e.eventSeq)).toEqual([4, 5, 6]);
    expect(apply(s, { t: 'ev.ack', upToSeq: 3 }, T0).mutated).toBe(false);
    expect(codeOf(apply(s, { t: 'ev.ack', upToSeq: 7 }, T0))).toBe('invalid_request');
    // Turning it off keeps what is queued (still owed) and records nothing new.
    okOf(apply(s, { t: 'erp.mode', enabled: false, events: false }, T0 + 600_006));
    okOf(apply(s, { t: 'sku.adjust', sku: 'cap', delta: -5 }, T0 + 600_007));
    expect(pending(s).map((e) => e.eventSeq)).toEqual([4, 5, 6]);
  });

  it('keeps at most stockEventsMax, dropping the oldest', () => {
    const s = createShardState(0, 1, { stockEventsMax: 2 });
    for (const [c, t] of script()) apply(s, c, t);
    expect(pending(s).map((e) => e.eventSeq)).toEqual([5, 6]);
    expect(s.stockEvents.dropped).toBe(4);
  });

  it('is the same after replaying the log (which builds no answers) and after a snapshot', () => {
    const live = createShardState(0, 1);
    const logged: [Command, number][] = [];
    for (const [c, t] of script()) if (apply(live, c, t).mutated) logged.push([c, t]);
    const replayed = createShardState(0, 1);
    for (const [c, t] of logged) expect(replay(replayed, c, t)).toBe(true);
    expect(toSnapshot(replayed)).toEqual(toSnapshot(live));
    const restored = fromSnapshot(packr.unpack(packr.pack(toSnapshot(live))) as ShardSnapshot, live.config);
    expect(toSnapshot(restored)).toEqual(toSnapshot(live));
    expect(pending(restored)).toEqual(pending(live));
    // And both go on the same way.
    apply(live, { t: 'sku.adjust', sku: 'tee', delta: 2 }, T0 + 700_000);
    apply(restored, { t: 'sku.adjust', sku: 'tee', delta: 2 }, T0 + 700_000);
    expect(pending(restored)).toEqual(pending(live));
    expect(pending(live).at(-1)).toMatchObject({ type: 'sku.restocked', sku: 'tee', available: 2 });
  });
});
