// Detects threshold crossings of a SKU's available units (low stock, sold out, restocked) so that
// adapters can log, count and alert on them. Fires once per crossing, not per command.

import type { DomainEvent } from './commands.js';
import type { SkuState } from './shard-state.js';

export function stockEvents(s: SkuState, availableBefore: number, events: DomainEvent[] | null): DomainEvent[] | null {
  const available = s.available;
  if (available === availableBefore) return events;
  if (s.lowStockThreshold > 0) {
    if (available <= s.lowStockThreshold && !s.lowStockSignaled) {
      s.lowStockSignaled = true;
      (events ??= []).push({ type: 'low_stock', sku: s.sku, available, threshold: s.lowStockThreshold });
      s.eventLog?.record('low_stock', s);
    } else if (available > s.lowStockThreshold && s.lowStockSignaled) {
      s.lowStockSignaled = false;
    }
  }
  if (available === 0 && availableBefore > 0) {
    (events ??= []).push({ type: 'sold_out', sku: s.sku });
    s.eventLog?.record('sold_out', s);
  } else if (availableBefore === 0 && available > 0) {
    (events ??= []).push({ type: 'restocked', sku: s.sku });
    s.eventLog?.record('restocked', s);
  }
  return events;
}
