// Stable routing: which shard owns a routing key, and what a reservation id says about
// its shard. Pure functions shared by gateways and shards; changing the hash or the id
// format strands existing data, so both are fixed for the life of a data directory.

/** FNV-1a 32-bit over the UTF-16 code units of the key. Stable across processes and hosts. */
export function fnv1a32(key: string): number {
  let hash = 0x811c9dc5;
  for (let i = 0; i < key.length; i++) {
    hash ^= key.charCodeAt(i);
    hash = Math.imul(hash, 0x01000193);
  }
  return hash >>> 0;
}

/**
 * The routing hash: FNV-1a followed by murmur3's 32-bit finalizer. FNV-1a alone is weak in
 * its low bits (its lowest bit is just the parity of the odd characters), so `mod 2` or
 * `mod 4` would put keys like sku-1, sku-3, ... all on one shard; the finalizer mixes every
 * input bit into every output bit.
 */
export function routingHash(key: string): number {
  let h = fnv1a32(key);
  h ^= h >>> 16;
  h = Math.imul(h, 0x85ebca6b);
  h ^= h >>> 13;
  h = Math.imul(h, 0xc2b2ae35);
  h ^= h >>> 16;
  return h >>> 0;
}

/** The SKU's dropId when it has one, else the SKU: a whole drop lives in one shard. */
export function routingKey(sku: string, dropId: string | null): string {
  return dropId === null ? `s:${sku}` : `d:${dropId}`;
}

export function shardForKey(key: string, shardCount: number): number {
  return routingHash(key) % shardCount;
}

export function shardForSku(sku: string, dropId: string | null, shardCount: number): number {
  return shardForKey(routingKey(sku, dropId), shardCount);
}

/** Every id ends in a nonce of exactly this many base-36 digits. */
export const nonceLength = 8;

/** Every pair of base-36 digits, "00" to "zz": a nonce is spelled as four of them. */
const base36Pairs: readonly string[] = Array.from({ length: 36 * 36 }, (_, i) => i.toString(36).padStart(2, '0'));

/**
 * `n` (an integer below 36^8) as a nonce, exactly nonceLength base-36 digits: the same string
 * as `n.toString(36).padStart(8, '0')`, at about a sixteenth of its cost. The gateway draws
 * 40 random bits, not a small integer, and V8 spells such a double digit by digit with fmod
 * (0.6 us a nonce here, 2 % of the gateway thread's time under load).
 */
export function spellNonce(n: number): string {
  const a = Math.floor(n / 1296);
  const b = Math.floor(a / 1296);
  const c = Math.floor(b / 1296);
  return base36Pairs[c]! + base36Pairs[b - c * 1296]! + base36Pairs[a - b * 1296]! + base36Pairs[n - a * 1296]!;
}

/**
 * Reservation ids are `<shard>.<seq base36><nonce>`; the prefix routes with no lookup. The
 * nonce is padded to a fixed length so that two (seq, nonce) pairs can never spell the
 * same id (a shorter seq always gives a shorter id).
 */
export function reservationId(shardId: number, seq: number, nonce: string): string {
  return spellReservationId(reservationIdPrefix(shardId), seq, nonce.padStart(nonceLength, '0'));
}

/** `<shard>.`: the part of every id that a shard shares. */
export function reservationIdPrefix(shardId: number): string {
  return `${shardId}.`;
}

/** The one place an id is spelled from its parts (the nonce already of full length). */
export function spellReservationId(prefix: string, seq: number, nonce: string): string {
  return prefix + seq.toString(36) + nonce;
}

/**
 * Whether `id` is exactly spellReservationId(prefix, seq, nonce), without spelling it (a
 * snapshot of a million holds checks every id it restores).
 */
export function spellsReservationId(id: string, prefix: string, seq: number, nonce: string): boolean {
  if (!Number.isSafeInteger(seq) || seq < 0) return id === spellReservationId(prefix, seq, nonce);
  let digits = 1;
  for (let v = seq; v >= 36; v = Math.floor(v / 36)) digits++;
  if (id.length !== prefix.length + digits + nonce.length || !id.startsWith(prefix) || !id.endsWith(nonce)) return false;
  let v = seq;
  for (let i = prefix.length + digits - 1; i >= prefix.length; i--) {
    const d = v % 36;
    v = Math.floor(v / 36);
    if (id.charCodeAt(i) !== (d < 10 ? 48 + d : 87 + d)) return false;
  }
  return true;
}

/** The shard named by a reservation id, or -1 when the id is not one of ours. */
export function shardOfReservationId(id: string, shardCount: number): number {
  const dot = id.indexOf('.');
  if (dot < 1 || dot > 5 || id.length > 64 || id.length < dot + 2) return -1;
  let shard = 0;
  for (let i = 0; i < dot; i++) {
    const c = id.charCodeAt(i) - 48;
    if (c < 0 || c > 9) return -1;
    shard = shard * 10 + c;
  }
  if (dot > 1 && id.charCodeAt(0) === 48) return -1;
  for (let i = dot + 1; i < id.length; i++) {
    const c = id.charCodeAt(i);
    const digit = c >= 48 && c <= 57;
    const lower = c >= 97 && c <= 122;
    if (!digit && !lower) return -1;
  }
  return shard < shardCount ? shard : -1;
}
