// The counter invariants of a SKU, asserted after every command that touches it. They are
// the promise "never sell a unit twice" written as code; a breach crashes the shard.

import { Limits } from './fields.js';
import { InvariantError } from './assert.js';
import type { SkuState } from './shard-state.js';

function isCount(n: number): boolean {
  return Number.isSafeInteger(n) && n >= 0;
}

export function assertSkuInvariants(s: SkuState): void {
  const breach = skuInvariantBreach(s);
  if (breach !== null) throw new InvariantError(`sku ${s.sku}: ${breach}`);
}

/** The first broken invariant of `s`, or null; messages are only spelled for a breach (this runs per command). */
function skuInvariantBreach(s: SkuState): string | null {
  if (!(isCount(s.onHand) && s.onHand <= Limits.stockMax)) return `onHand ${s.onHand} out of range`;
  if (!isCount(s.reserved)) return `reserved ${s.reserved} is not a count`;
  if (!isCount(s.sold)) return `sold ${s.sold} is not a count`;
  if (!isCount(s.refunded)) return `refunded ${s.refunded} is not a count`;
  if (s.reserved + s.sold > s.onHand) return `reserved ${s.reserved} + sold ${s.sold} > onHand ${s.onHand}`;
  // One pool: the channels' shares add up to the SKU's counters exactly.
  let reserved = 0;
  let sold = 0;
  for (const u of s.channelUnits.values()) {
    if (!(isCount(u.reserved) && isCount(u.sold))) return `channel ${u.name} counts ${u.reserved}/${u.sold} are not counts`;
    reserved += u.reserved;
    sold += u.sold;
  }
  if (reserved !== s.reserved || sold !== s.sold) return `channels hold ${reserved} and sold ${sold}, the SKU ${s.reserved} and ${s.sold}`;
  return null;
}
