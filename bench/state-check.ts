// Checks the promises of shared/API.md on a shard state built by a benchmark, from the
// reservations themselves rather than from the counters: reserved + sold <= onHand,
// available >= 0, sold equals the paid units, reserved equals the held units, and no buyer
// over maxPerBuyer. It only reads the state; a benchmark that finds a breach must fail.

import type { ShardState } from '../src/domain/index.js';

export interface StateCheck {
  name: string;
  skus: number;
  reservations: number;
  held: number;
  paid: number;
  unitsSold: number;
  violations: string[];
}

const violationsShownMax = 20;

/** The key of a buyer's quota use in a scope (a SKU, or a whole drop). */
function quotaKey(scope: string, buyerId: string): string {
  return `${scope}\u0000${buyerId}`;
}

export function checkState(name: string, state: ShardState): StateCheck {
  const paidUnits = new Map<string, number>();
  const heldUnits = new Map<string, number>();
  const quotaUse = new Map<string, number>();
  let held = 0;
  let paid = 0;
  for (const r of state.reservations.values()) {
    if (r.status === 'paid') {
      paid++;
      paidUnits.set(r.sku.sku, (paidUnits.get(r.sku.sku) ?? 0) + r.qty);
    } else if (r.status === 'held') {
      held++;
      if (r.holdsUnits) heldUnits.set(r.sku.sku, (heldUnits.get(r.sku.sku) ?? 0) + r.qty);
    }
    if ((r.status === 'paid' || r.status === 'held') && r.sku.maxPerBuyer > 0) {
      const key = quotaKey(r.sku.quotaScope, r.buyerId);
      quotaUse.set(key, (quotaUse.get(key) ?? 0) + r.qty);
    }
  }
  const violations: string[] = [];
  const report = (text: string): void => {
    if (violations.length < violationsShownMax) violations.push(text);
  };
  let unitsSold = 0;
  for (const s of state.skus.values()) {
    unitsSold += s.sold;
    if (s.reserved + s.sold > s.onHand) report(`${s.sku}: reserved ${s.reserved} + sold ${s.sold} > onHand ${s.onHand}`);
    if (s.available < 0) report(`${s.sku}: available ${s.available} < 0`);
    const paidSum = paidUnits.get(s.sku) ?? 0;
    if (s.sold !== paidSum) report(`${s.sku}: sold ${s.sold} but paid reservations hold ${paidSum} units`);
    const heldSum = heldUnits.get(s.sku) ?? 0;
    if (s.reserved !== heldSum) report(`${s.sku}: reserved ${s.reserved} but held reservations hold ${heldSum} units`);
  }
  const reported = new Set<string>();
  for (const r of state.reservations.values()) {
    if (r.sku.maxPerBuyer === 0) continue;
    const key = quotaKey(r.sku.quotaScope, r.buyerId);
    const used = quotaUse.get(key) ?? 0;
    if (used <= r.sku.maxPerBuyer || reported.has(key)) continue;
    reported.add(key);
    report(`buyer ${r.buyerId} holds or bought ${used} units of ${r.sku.sku}, over maxPerBuyer ${r.sku.maxPerBuyer}`);
  }
  return { name, skus: state.skus.size, reservations: state.reservations.size, held, paid, unitsSold, violations };
}
