// Small helpers shared by the core's table-driven tests: read an outcome as success or
// refusal code, and read a SKU's view. They fail loudly instead of returning undefined.

import { apply, type Applied, type ShardState, type SkuView } from '../../src/domain/index.js';

/** A fixed, realistic epoch time for tests (2023-11-14). */
export const T0 = 1_700_000_000_000;

export function okOf(a: Applied) {
  if (!a.outcome.ok) throw new Error(`expected ok, got ${a.outcome.code}: ${a.outcome.message}`);
  return a.outcome;
}

export function codeOf(a: Applied): string {
  return a.outcome.ok ? 'ok' : a.outcome.code;
}

export function view(state: ShardState, sku: string): SkuView {
  return okOf(apply(state, { t: 'sku.get', sku }, 0)).sku!;
}
