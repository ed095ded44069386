// What a baseline of the comparison (Redis + Lua, PostgreSQL) must do behind the shared
// HTTP front: the engine's reserve semantics in mode pre_deduct (stock check, per-buyer
// quota, hold with a TTL, atomic), pay and cancel, and an audit that recomputes the
// counters from the reservation records. Sale windows, risk rules, drops and the other
// modes are not part of the baselines: the benchmark never uses them.

export interface SkuPolicy {
  /** On-hand units; used on create only, like the engine. */
  stock: number;
  maxPerBuyer: number;
  holdSeconds: number;
}

/** The fields of the engine's SKU view that the benchmark reads. */
export interface SkuCounters {
  sku: string;
  onHand: number;
  available: number;
  reserved: number;
  sold: number;
  mode: 'pre_deduct';
  holdSeconds: number;
  maxPerBuyer: number;
}

export type ReservationStatus = 'held' | 'paid' | 'cancelled' | 'expired';

export interface ReservationRecord {
  id: string;
  sku: string;
  buyerId: string;
  qty: number;
  status: ReservationStatus;
  createdAtMs: number;
  expiresAtMs: number;
  settledAtMs: number | null;
  paymentRef: string | null;
}

export interface ReserveInput {
  /** Chosen by the front, unique per process and run. */
  id: string;
  sku: string;
  buyerId: string;
  qty: number;
  idemKey?: string;
}

export type ReserveResult =
  | { ok: true; record: ReservationRecord; replayed: boolean }
  | { ok: false; code: 'unknown_sku' | 'quota_exceeded' | 'sold_out'; message: string };

/**
 * settled: it was held and is now paid or cancelled; expired_now: it was held but due, so
 * it expired instead (never paid late); unchanged: it was already paid, cancelled or expired.
 */
export type SettleResult = { kind: 'settled' | 'expired_now' | 'unchanged'; record: ReservationRecord } | null;

/** Counts recomputed from the reservation records, and every counter that disagrees. */
export interface StoreAudit {
  skus: number;
  reservations: number;
  held: number;
  paid: number;
  expired: number;
  cancelled: number;
  violations: string[];
  /** The records of one SKU, when the audit was asked about it. */
  focus?: SkuRecords;
}

export interface SkuRecords {
  sku: string;
  held: number;
  paid: number;
  heldUnits: number;
  paidUnits: number;
}

export interface ReservationStore {
  readonly name: string;
  /** How durable an acknowledged reserve is with this service's settings (reported as is). */
  durability(): Promise<string>;
  upsertSku(sku: string, policy: Partial<SkuPolicy>, nowMs: number): Promise<{ created: boolean; counters: SkuCounters }>;
  getSku(sku: string): Promise<SkuCounters | null>;
  reserve(input: ReserveInput, nowMs: number): Promise<ReserveResult>;
  settle(id: string, action: 'pay' | 'cancel', paymentRef: string | null, nowMs: number): Promise<SettleResult>;
  getReservation(id: string): Promise<ReservationRecord | null>;
  /** Expires up to `limit` due holds; returns how many it expired. */
  sweep(nowMs: number, limit: number): Promise<number>;
  /** Every record against every counter; `focusSku` also gets its own record counts. */
  audit(focusSku?: string): Promise<StoreAudit>;
  close(): Promise<void>;
}

export const violationsShownMax = 20;

/** Adds `text` to `violations` unless the list is already at its bound. */
export function report(violations: string[], text: string): void {
  if (violations.length < violationsShownMax) violations.push(text);
}

/** The checks of shared/API.md's invariants on one SKU's counters against its records. */
export function checkSkuAgainstRecords(
  violations: string[], c: { sku: string; onHand: number; reserved: number; sold: number }, heldUnits: number, paidUnits: number,
): void {
  if (c.reserved + c.sold > c.onHand) report(violations, `${c.sku}: reserved ${c.reserved} + sold ${c.sold} > onHand ${c.onHand}`);
  if (c.reserved < 0 || c.sold < 0) report(violations, `${c.sku}: negative counter (reserved ${c.reserved}, sold ${c.sold})`);
  if (c.reserved !== heldUnits) report(violations, `${c.sku}: reserved ${c.reserved} but held reservations hold ${heldUnits} units`);
  if (c.sold !== paidUnits) report(violations, `${c.sku}: sold ${c.sold} but paid reservations hold ${paidUnits} units`);
}
