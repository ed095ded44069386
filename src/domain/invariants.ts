// The counter invariants of a SKU, asserted after every command that touches it. They are
// the promise "never sell a unit twice" written as code; a breach crashes the shard.

import { Limits } from './fields.js';
import { assert } from './assert.js';
import type { SkuState } from './shard-state.js';

function isCount(n: number): boolean {
  return Number.isSafeInteger(n) && n >= 0;
}

export function assertSkuInvariants(s: SkuState): void {
  assert(isCount(s.onHand) && s.onHand <= Limits.stockMax, `sku ${s.sku}: onHand ${s.onHand} out of range`);
  assert(isCount(s.reserved), `sku ${s.sku}: reserved ${s.reserved} is not a count`);
  assert(isCount(s.sold), `sku ${s.sku}: sold ${s.sold} is not a count`);
  assert(isCount(s.refunded), `sku ${s.sku}: refunded ${s.refunded} is not a count`);
  assert(s.reserved + s.sold <= s.onHand, `sku ${s.sku}: reserved ${s.reserved} + sold ${s.sold} > onHand ${s.onHand}`);
  // One pool: the channels' shares add up to the SKU's counters exactly.
  let reserved = 0;
  let sold = 0;
  for (const u of s.channelUnits.values()) {
    assert(isCount(u.reserved) && isCount(u.sold), `sku ${s.sku}: channel ${u.name} counts ${u.reserved}/${u.sold} are not counts`);
    reserved += u.reserved;
    sold += u.sold;
  }
  assert(reserved === s.reserved && sold === s.sold, `sku ${s.sku}: channels hold ${reserved} and sold ${sold}, the SKU ${s.reserved} and ${s.sold}`);
}
