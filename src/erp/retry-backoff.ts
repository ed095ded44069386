// Exponential backoff with full jitter (a uniform draw between 0 and the exponential
// ceiling, itself capped), so that many failed deliveries do not retry in lock step
// against an ERP that is just coming back. Pure: the random draw is passed in.

export interface BackoffPolicy {
  /** Ceiling of the first retry's delay. */
  baseMs: number;
  /** No retry waits longer than this, however many attempts failed. */
  capMs: number;
}

/** Delay before the next try after `failures` failed attempts (failures >= 1); random in [0, 1). */
export function backoffDelayMs(policy: BackoffPolicy, failures: number, random: number): number {
  const exponent = Math.min(Math.max(failures - 1, 0), 40);
  const ceilingMs = Math.min(policy.capMs, policy.baseMs * 2 ** exponent);
  return Math.floor(random * ceilingMs);
}
