// Reservations of a shard indexed by their sequence number. Sequence numbers are handed
// out consecutively, so a dense array (with holes for pruned entries) replaces a string-
// keyed map: insert is a push, lookup parses the seq out of the id and checks the whole
// id, and nothing hashes a fresh string on the hot path. Iteration is in creation order.

import { InvariantError } from './assert.js';
import { nonceLength } from './routing.js';

export interface Sequenced {
  readonly seq: number;
  /** Whether `id` names this entry (its seq is known to match). */
  named(id: string): boolean;
}

/** The seq an id spells (`<shard>.<seq base36><nonce>`), or -1. */
export function seqOfId(id: string): number {
  const dot = id.indexOf('.');
  const end = id.length - nonceLength;
  if (dot < 1 || end <= dot + 1 || end - dot - 1 > 10) return -1;
  let seq = 0;
  for (let i = dot + 1; i < end; i++) {
    const c = id.charCodeAt(i);
    const digit = c >= 48 && c <= 57 ? c - 48 : c >= 97 && c <= 122 ? c - 87 : -1;
    if (digit < 0) return -1;
    seq = seq * 36 + digit;
  }
  return seq;
}

export class ReservationTable<T extends Sequenced> {
  private slots: (T | undefined)[] = [];
  /** The seq held by slots[0]. */
  private base = 1;
  private count = 0;
  /** Index of the first slot that may be filled; everything before it is empty. */
  private head = 0;

  get size(): number {
    return this.count;
  }

  /** Appends the reservation with the next seq (seqs must arrive in order, gaps allowed). */
  add(r: T): void {
    if (this.slots.length === 0) {
      this.base = r.seq;
      this.head = 0;
    }
    const index = r.seq - this.base;
    if (index < this.slots.length) throw new InvariantError(`reservation seq ${r.seq} is not after the last one`);
    while (this.slots.length < index) this.slots.push(undefined);
    this.slots.push(r);
    this.count++;
  }

  get(id: string): T | undefined {
    const seq = seqOfId(id);
    if (seq < this.base) return undefined;
    const r = this.slots[seq - this.base];
    return r !== undefined && r.named(id) ? r : undefined;
  }

  has(id: string): boolean {
    return this.get(id) !== undefined;
  }

  delete(r: T): void {
    const index = r.seq - this.base;
    if (this.slots[index] !== r) return;
    this.slots[index] = undefined;
    this.count--;
    this.compact();
  }

  /** Drops the empty front once it is more than half of the array, to keep memory bounded. */
  private compact(): void {
    const slots = this.slots;
    while (this.head < slots.length && slots[this.head] === undefined) this.head++;
    if (this.head === slots.length) {
      this.base += this.head;
      this.slots = [];
      this.head = 0;
    } else if (this.head > 1024 && this.head * 2 > slots.length) {
      this.slots = slots.slice(this.head);
      this.base += this.head;
      this.head = 0;
    }
  }

  *values(): IterableIterator<T> {
    const slots = this.slots;
    for (let i = this.head; i < slots.length; i++) {
      const r = slots[i];
      if (r !== undefined) yield r;
    }
  }
}
