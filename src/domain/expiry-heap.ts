// A binary min-heap of reservations ordered by (expiresAtMs, seq). The total order makes
// expiry deterministic: replaying the log, or rebuilding the heap from a snapshot, expires
// the same holds in the same order. Settled holds are not removed eagerly; the expiry
// sweep skips them when they reach the top (lazy deletion), so pay and cancel stay O(1).

export interface Expirable {
  readonly expiresAtMs: number;
  readonly seq: number;
}

function before(a: Expirable, b: Expirable): boolean {
  return a.expiresAtMs < b.expiresAtMs || (a.expiresAtMs === b.expiresAtMs && a.seq < b.seq);
}

export class ExpiryHeap<T extends Expirable> {
  private readonly items: T[] = [];

  get size(): number {
    return this.items.length;
  }

  peek(): T | undefined {
    return this.items[0];
  }

  push(item: T): void {
    const items = this.items;
    let i = items.length;
    items.push(item);
    while (i > 0) {
      const parent = (i - 1) >> 1;
      const p = items[parent] as T;
      if (!before(item, p)) break;
      items[i] = p;
      i = parent;
    }
    items[i] = item;
  }

  pop(): T | undefined {
    const items = this.items;
    const top = items[0];
    const last = items.pop();
    if (items.length === 0 || last === undefined) return top;
    const n = items.length;
    let i = 0;
    for (;;) {
      const left = 2 * i + 1;
      if (left >= n) break;
      const right = left + 1;
      let child = left;
      if (right < n && before(items[right] as T, items[left] as T)) child = right;
      if (!before(items[child] as T, last)) break;
      items[i] = items[child] as T;
      i = child;
    }
    items[i] = last;
    return top;
  }
}
