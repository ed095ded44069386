// Units held or bought per buyer in one quota scope: what a Map<string, number> did, kept in
// typed arrays with each key's hash beside it. A reserve looks its buyer up once (a new buyer
// is a miss, then an insert at the same place); a Map looked up twice (get, then set), and each
// step along a bucket's chain read the stored key string to compare it: on a shard holding
// hundreds of thousands of buyers, a cache miss per candidate. Here a chain compares 32-bit
// hashes in one Int32Array and reads a key only when its hash matches. Measured here (1,000
// scopes of 600 buyers, a new buyer per lookup): 1.0-1.3 µs per reserve's lookup and update
// with a Map, 0.45-0.6 µs with this table.
//
// It iterates in insertion order, as a Map does (a deleted key inserted again goes last), so
// snapshots list the same rows in the same order whatever the table's history. The hash is
// seeded and mixed (murmur3's finalizer): a buyer id chosen to collide in one table does not
// collide under another seed, so a shard's runtime gives its tables a random seed; the seed
// changes where entries sit, never what a lookup finds or the order of iteration.

import { InvariantError } from './assert.js';

const emptyBucket = -1;
const capacityMin = 8;

export class QuotaTable {
  /** Head entry of each bucket's chain (bucket = hash & (bucketCount - 1)), or -1. */
  private buckets = new Int32Array(capacityMin >> 1).fill(emptyBucket);
  /** Entries in insertion order, [0, used); a deleted entry's key is undefined. */
  private keys: (string | undefined)[] = new Array(capacityMin);
  private hashes = new Int32Array(capacityMin);
  private units = new Float64Array(capacityMin);
  /** Next entry in the same bucket, or -1. */
  private chain = new Int32Array(capacityMin);
  private used = 0;
  private live = 0;

  constructor(private readonly seed = 0x9e3779b9) {}

  get size(): number {
    return this.live;
  }

  /** Entries the arrays have room for (live, deleted and free): what the table's memory is sized by. */
  get capacity(): number {
    return this.keys.length;
  }

  /** The hash `slotOf` and `insert` take (computed once per lookup). */
  hashOf(key: string): number {
    let h = this.seed | 0;
    for (let i = 0; i < key.length; i++) {
      h ^= key.charCodeAt(i);
      h = Math.imul(h, 0x01000193);
    }
    h ^= h >>> 16;
    h = Math.imul(h, 0x85ebca6b);
    h ^= h >>> 13;
    h = Math.imul(h, 0xc2b2ae35);
    return h ^ (h >>> 16);
  }

  /** The entry of `key` (whose hash is `hash`), or -1. */
  slotOf(key: string, hash: number): number {
    const hashes = this.hashes;
    const keys = this.keys;
    let e = this.buckets[hash & (this.buckets.length - 1)]!;
    while (e !== emptyBucket) {
      if (hashes[e] === hash && keys[e] === key) return e;
      e = this.chain[e]!;
    }
    return -1;
  }

  unitsAt(slot: number): number {
    return this.units[slot]!;
  }

  setAt(slot: number, units: number): void {
    this.units[slot] = units;
  }

  /** Adds `key`, which must not be in the table (slotOf answered -1), last in the order. */
  insert(key: string, hash: number, units: number): void {
    if (this.used === this.keys.length) this.rehash(this.live + 1);
    const e = this.used++;
    const b = hash & (this.buckets.length - 1);
    this.keys[e] = key;
    this.hashes[e] = hash;
    this.units[e] = units;
    this.chain[e] = this.buckets[b]!;
    this.buckets[b] = e;
    this.live++;
  }

  get(key: string): number | undefined {
    const slot = this.slotOf(key, this.hashOf(key));
    return slot < 0 ? undefined : this.units[slot];
  }

  has(key: string): boolean {
    return this.slotOf(key, this.hashOf(key)) >= 0;
  }

  set(key: string, units: number): this {
    const hash = this.hashOf(key);
    const slot = this.slotOf(key, hash);
    if (slot >= 0) this.units[slot] = units;
    else this.insert(key, hash, units);
    return this;
  }

  delete(key: string): boolean {
    const hash = this.hashOf(key);
    const slot = this.slotOf(key, hash);
    if (slot < 0) return false;
    this.deleteAt(slot, hash);
    return true;
  }

  /** Removes the entry at `slot` (of a key whose hash is `hash`); memory shrinks when the table is mostly empty. */
  deleteAt(slot: number, hash: number): void {
    // Unlinked from its chain, so a lookup never walks a deleted entry.
    const b = hash & (this.buckets.length - 1);
    let e = this.buckets[b]!;
    if (e === slot) this.buckets[b] = this.chain[slot]!;
    else {
      while (e !== emptyBucket && this.chain[e] !== slot) e = this.chain[e]!;
      if (e === emptyBucket) throw new InvariantError(`quota entry ${slot} is not in its bucket`);
      this.chain[e] = this.chain[slot]!;
    }
    this.keys[slot] = undefined;
    this.live--;
    if (this.live === 0) this.clear();
    else if (this.keys.length > capacityMin && this.live < this.keys.length >> 2) this.rehash(this.live);
  }

  clear(): void {
    this.buckets = new Int32Array(capacityMin >> 1).fill(emptyBucket);
    this.keys = new Array(capacityMin);
    this.hashes = new Int32Array(capacityMin);
    this.units = new Float64Array(capacityMin);
    this.chain = new Int32Array(capacityMin);
    this.used = 0;
    this.live = 0;
  }

  /** Entry slots in use, live or deleted, in insertion order: keyAt and unitsAt read them without an entry object each. */
  get slotsUsed(): number {
    return this.used;
  }

  /** The key at an entry slot below slotsUsed, or undefined for a deleted entry. */
  keyAt(slot: number): string | undefined {
    return this.keys[slot];
  }

  /** Live entries in insertion order. */
  *entries(): Generator<[string, number], void, void> {
    for (let e = 0; e < this.used; e++) {
      const key = this.keys[e];
      if (key !== undefined) yield [key, this.units[e]!];
    }
  }

  *values(): Generator<number, void, void> {
    for (const [, units] of this.entries()) yield units;
  }

  [Symbol.iterator](): Generator<[string, number], void, void> {
    return this.entries();
  }

  /**
   * Moves the live entries, in order, into arrays with room for `need` (at least twice as
   * many slots, a power of two): deleted entries are dropped, and a table that emptied out
   * gives its memory back.
   */
  private rehash(need: number): void {
    let capacity = capacityMin;
    while (capacity < need * 2) capacity *= 2;
    const keys: (string | undefined)[] = new Array(capacity);
    const hashes = new Int32Array(capacity);
    const units = new Float64Array(capacity);
    const chain = new Int32Array(capacity);
    const buckets = new Int32Array(capacity >> 1).fill(emptyBucket);
    const mask = buckets.length - 1;
    let to = 0;
    for (let e = 0; e < this.used; e++) {
      const key = this.keys[e];
      if (key === undefined) continue;
      const hash = this.hashes[e]!;
      keys[to] = key;
      hashes[to] = hash;
      units[to] = this.units[e]!;
      chain[to] = buckets[hash & mask]!;
      buckets[hash & mask] = to;
      to++;
    }
    this.keys = keys;
    this.hashes = hashes;
    this.units = units;
    this.chain = chain;
    this.buckets = buckets;
    this.used = to;
  }
}
