// SKU setup and the after-run checks of `npm run bench`, over HTTP against each system's
// own state (GET /v1/skus/{sku}), plus, for the baselines, an audit that recomputes the
// counters from the reservation records. A check never changes state. `oversold` is set
// only by a breach of stock (reserved + sold > onHand, available < 0, more grants than
// units); every other mismatch is a problem that fails the run too, but is named apart.

import type { StoreAudit } from './baseline-store.js';
import { inParallel } from './engine-under-test.js';
import type { RunningSystem } from './compare-systems.js';

export interface SkuSet {
  prefix: string;
  count: number;
  stock: number;
  holdSeconds: number;
  /** maxPerBuyer of the odd SKUs (even ones have none); 0 for none at all. */
  maxPerBuyerOnOddSkus?: number;
  maxPerBuyer?: number;
}

export interface Check {
  ok: boolean;
  oversold: boolean;
  problems: string[];
}

export interface SkuSums {
  onHand: number;
  reserved: number;
  sold: number;
  broken: string[];
}

export const skuOf = (set: SkuSet, i: number): string => `${set.prefix}${i}`;

export async function createSkus(sys: RunningSystem, set: SkuSet): Promise<void> {
  await inParallel(set.count, 16, async (i) => {
    const maxPerBuyer = set.maxPerBuyer ?? (i % 2 === 1 ? set.maxPerBuyerOnOddSkus ?? 0 : 0);
    const r = await sys.call('PUT', `/v1/skus/${skuOf(set, i)}`, { stock: set.stock, maxPerBuyer, holdSeconds: set.holdSeconds });
    if (r.status !== 201) throw new Error(`${sys.key}: PUT ${skuOf(set, i)} answered ${r.status}: ${JSON.stringify(r.json)}`);
  });
}

/** Sums of the counters over a SKU set, and every SKU whose counters break shared/API.md. */
export async function skuSums(sys: RunningSystem, set: SkuSet): Promise<SkuSums> {
  const sums: SkuSums = { onHand: 0, reserved: 0, sold: 0, broken: [] };
  await inParallel(set.count, 16, async (i) => {
    const { status, json: v } = await sys.call('GET', `/v1/skus/${skuOf(set, i)}`);
    if (status !== 200) throw new Error(`${sys.key}: GET ${skuOf(set, i)} answered ${status}`);
    const [onHand, reserved, sold, available] = [v.onHand, v.reserved, v.sold, v.available] as number[];
    sums.onHand += onHand!;
    sums.reserved += reserved!;
    sums.sold += sold!;
    if (reserved! + sold! > onHand! || available! < 0 || available !== onHand! - reserved! - sold!) {
      if (sums.broken.length < 20) sums.broken.push(`${skuOf(set, i)}: ${JSON.stringify(v)}`);
    }
  });
  return sums;
}

/** Adds the baseline's record audit (null for the engine and bare) to a check. */
export async function withAudit(sys: RunningSystem, check: Check, focusSku?: string): Promise<Check & { audit: StoreAudit | null }> {
  const audit = await sys.audit(focusSku);
  if (audit !== null && audit.violations.length > 0) {
    check.ok = false;
    check.problems.push(...audit.violations.map((v) => `audit: ${v}`));
    if (audit.violations.some((v) => v.includes('> onHand'))) check.oversold = true;
  }
  return { ...check, audit };
}

/**
 * Units on a SKU set against the 201s the client saw: at least every acknowledged one, and
 * at most `slack` more (requests cut off at the end of a timed run, or timed out, may still
 * have been applied by the server).
 */
export async function unitsCheck(sys: RunningSystem, set: SkuSet, acked201: number, slack: number): Promise<Check & { units: number; acked201: number; slack: number; audit: StoreAudit | null }> {
  const sums = await skuSums(sys, set);
  const units = sums.reserved + sums.sold;
  const problems: string[] = sums.broken.map((b) => `counters break the contract: ${b}`);
  if (units < acked201) problems.push(`${units} units held or sold for ${acked201} acknowledged reserves: some were lost`);
  if (units > acked201 + slack) problems.push(`${units} units held or sold for ${acked201} acknowledged reserves (+${slack} in flight at most)`);
  const check = await withAudit(sys, { ok: problems.length === 0, oversold: sums.broken.length > 0, problems });
  return { ...check, units, acked201, slack };
}
