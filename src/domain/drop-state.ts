// A drop and its waiting room (shared/API.md, "Drops and fair admission"), kept in the shard
// that owns the drop's stock, so that admission and the hold are one step of one actor.
//
// A queue may hold a million entries, so an entry is not an object: it is an index into
// columns (struct of arrays), with the buyer id string and one map slot beside them. Its
// place in the order is a rank; admission takes ranks from the head in order, so the
// entries still waiting are exactly the ranks from `admitHead` on, and a waiting buyer's
// position is `rank - admitHead + 1`, answered without a scan.

import { Hmac, fromHex } from './sha256.js';

export type QueueMode = 'fifo' | 'random' | 'draw';
export const queueModes: readonly QueueMode[] = ['fifo', 'random', 'draw'];

/** Stored entry states; `lapsed`, `sold_out` and a draw's `lost` are also read off the time and the stock. */
export const EntryState = { waiting: 0, admitted: 1, used: 2, lapsed: 3, entered: 4, won: 5, lost: 6 } as const;
export type EntryStateCode = (typeof EntryState)[keyof typeof EntryState];
export const entryStateNames = ['waiting', 'admitted', 'used', 'lapsed', 'entered', 'won', 'lost'] as const;

export interface QueuePolicy {
  mode: QueueMode;
  opensAtMs: number;
  randomizeSeconds: number;
  admitPerSecond: number;
  admitSeconds: number;
  /** Draw: entries close and the draw runs (0: none, for fifo and random). */
  closesAtMs: number;
  qtyPerWinner: number;
}

/** A growable typed array. */
export class Column<A extends Float64Array | Int32Array | Uint8Array> {
  constructor(public data: A, private readonly make: (n: number) => A) {}

  ensure(n: number): void {
    if (n <= this.data.length) return;
    const next = this.make(Math.max(n, this.data.length * 2, 16));
    next.set(this.data as never);
    this.data = next;
  }
}

export const f64 = (n = 16): Column<Float64Array> => new Column(new Float64Array(n), (k) => new Float64Array(k));
export const i32 = (n = 16): Column<Int32Array> => new Column(new Int32Array(n), (k) => new Int32Array(k));
export const u8 = (n = 16): Column<Uint8Array> => new Column(new Uint8Array(n), (k) => new Uint8Array(k));

export class QueueState {
  /** HMAC-SHA256 keyed by the seed: the order of a random queue or a draw. */
  readonly orderHmac: Hmac;
  /** HMAC-SHA256 keyed by the never-revealed secret: the id nonces of a draw's holds. */
  readonly nonceHmac: Hmac;

  count = 0;
  readonly buyers: string[] = [];
  readonly index = new Map<string, number>();
  readonly joinedAt = f64();
  readonly states = u8();
  readonly admittedAt = f64();
  readonly admittedUntil = f64();
  /** Place in the order; -1 while a random order is not fixed. */
  readonly rank = i32();
  /** rank -> entry index. */
  readonly order = i32();
  /** The first 48 bits of HMAC-SHA256(seed, buyerId), as a number (random and draw only). */
  readonly key = f64();
  /** Entries placed in the order so far (order's length). */
  ranked = 0;
  /** The next rank to admit: ranks below it have left `waiting`. */
  admitHead = 0;
  /** Random: the order is fixed (fifo: always). Draw: the draw ran. */
  fixed: boolean;
  drawn = false;
  /** Draw: the next rank the draw tries (it runs in steps, and goes on when units come back). */
  drawCursor = 0;
  /** used and won entries: the reservation each one's hold made. */
  readonly holds = new Map<number, string>();
  /** Entries that joined through a channel other than the default (for a draw's holds). */
  readonly channels = new Map<number, string>();
  /** Admitted entries, a min-heap by admittedUntil (indices; stale ones skipped when popped). */
  readonly admittedHeap: number[] = [];
  /** Admissions of the last second: [time, count], oldest first (the pace's window). */
  window: [number, number][] = [];
  lastAdmitMs = 0;
  /** Counts by stored state. */
  readonly counts = new Int32Array(7);

  constructor(
    public policy: QueuePolicy,
    /** 32 bytes, lowercase hex; secret until the order is fixed. */
    readonly seedHex: string,
    readonly seedSha256: string,
    /** 16 bytes, lowercase hex; never shown. */
    readonly secretHex: string,
  ) {
    this.orderHmac = new Hmac(fromHex(seedHex)!);
    this.nonceHmac = new Hmac(fromHex(secretHex)!);
    this.fixed = policy.mode === 'fifo';
  }

  /** When a random order is fixed and its seed revealed; a draw's when it runs. */
  get revealAtMs(): number {
    const p = this.policy;
    if (p.mode === 'random') return p.opensAtMs + p.randomizeSeconds * 1000;
    if (p.mode === 'draw') return p.closesAtMs;
    return Number.POSITIVE_INFINITY;
  }

  get revealed(): boolean {
    return this.policy.mode === 'random' ? this.fixed : this.policy.mode === 'draw' ? this.drawn : false;
  }

  /** Adds an entry at the next index, unranked. */
  addEntry(buyerId: string, joinedAtMs: number, state: EntryStateCode): number {
    const i = this.count++;
    for (const c of [this.joinedAt, this.states, this.admittedAt, this.admittedUntil, this.rank, this.key] as Column<Float64Array | Int32Array | Uint8Array>[]) c.ensure(this.count);
    this.buyers.push(buyerId);
    this.index.set(buyerId, i);
    this.joinedAt.data[i] = joinedAtMs;
    this.states.data[i] = state;
    this.rank.data[i] = -1;
    this.counts[state]!++;
    return i;
  }

  /** Places entry `i` at the end of the order. */
  appendRank(i: number): void {
    this.order.ensure(this.ranked + 1);
    this.order.data[this.ranked] = i;
    this.rank.data[i] = this.ranked++;
  }

  setState(i: number, state: EntryStateCode): void {
    this.counts[this.states.data[i]!]!--;
    this.states.data[i] = state;
    this.counts[state]!++;
  }

  pushAdmitted(i: number): void {
    const h = this.admittedHeap;
    const until = this.admittedUntil.data;
    h.push(i);
    let k = h.length - 1;
    while (k > 0) {
      const p = (k - 1) >> 1;
      if (until[h[p]!]! <= until[i]!) break;
      h[k] = h[p]!;
      k = p;
    }
    h[k] = i;
  }

  /** The admitted entry whose admission ends first, or -1. */
  peekAdmitted(): number {
    return this.admittedHeap.length === 0 ? -1 : this.admittedHeap[0]!;
  }

  popAdmitted(): void {
    const h = this.admittedHeap;
    const until = this.admittedUntil.data;
    const last = h.pop()!;
    if (h.length === 0) return;
    let k = 0;
    for (;;) {
      const l = 2 * k + 1;
      if (l >= h.length) break;
      const r = l + 1;
      const c = r < h.length && until[h[r]!]! < until[h[l]!]! ? r : l;
      if (until[h[c]!]! >= until[last]!) break;
      h[k] = h[c]!;
      k = c;
    }
    h[k] = last;
  }
}

export class DropState {
  queue: QueueState | null = null;

  constructor(readonly dropId: string, readonly createdAtMs: number, public updatedAtMs: number) {}
}
