// A binary min-heap of reservations ordered by (expiresAtMs, seq). The total order makes
// expiry deterministic: replaying the log, or rebuilding the heap from a snapshot, expires
// the same holds in the same order. Settled holds are not removed eagerly; the expiry
// sweep skips them when they reach the top (lazy deletion), so pay and cancel stay O(1);
// when they pile up, retain() sheds them in one pass (see retention.ts).

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
    this.siftDown(0, last);
    return top;
  }

  /**
   * Keeps only the items `keep` accepts and restores the heap in O(n) (Floyd). As the order
   * is total, what pops next depends only on the items, never on how they are laid out.
   */
  retain(keep: (item: T) => boolean): void {
    const items = this.items;
    let n = 0;
    for (const item of items) if (keep(item)) items[n++] = item;
    items.length = n;
    for (let i = (n >> 1) - 1; i >= 0; i--) this.siftDown(i, items[i] as T);
  }

  /** Places `item` at slot `start` or below it, moving smaller children up. */
  private siftDown(start: number, item: T): void {
    const items = this.items;
    const n = items.length;
    let i = start;
    for (;;) {
      const left = 2 * i + 1;
      if (left >= n) break;
      const right = left + 1;
      let child = left;
      if (right < n && before(items[right] as T, items[left] as T)) child = right;
      if (!before(items[child] as T, item)) break;
      items[i] = items[child] as T;
      i = child;
    }
    items[i] = item;
  }
}
