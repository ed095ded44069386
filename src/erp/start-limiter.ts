// Caps how many deliveries may start in any window of one second, exactly: a token bucket
// of `startsPerSecondMax` tokens in which each spent token comes back `windowMs` after it
// was spent. A token's time can be moved to when its request really left (a new connection
// or a busy event loop can hold a request back), so the ERP, not only this process, sees
// the cap. It keeps one timestamp per token and never sleeps; the caller arms its own timer.

export class StartLimiter {
  /** When each token was last spent (monotonic ms); the oldest is at `next`. */
  private readonly spentAtMs: Float64Array;
  /** Which take() last spent each token, so a late markSent never moves a reused token. */
  private readonly ticketOf: Float64Array;
  private next = 0;
  private tickets = 0;

  /**
   * @param startsPerSecondMax tokens in the bucket: starts allowed in any window.
   * @param windowMs 1000 plus a small guard for network jitter between our send and the ERP's arrival.
   */
  constructor(readonly startsPerSecondMax: number, readonly windowMs = 1000) {
    if (!Number.isInteger(startsPerSecondMax) || startsPerSecondMax < 1) throw new RangeError('startsPerSecondMax must be a positive integer');
    if (!(windowMs >= 1000)) throw new RangeError('windowMs must be at least 1000');
    this.spentAtMs = new Float64Array(startsPerSecondMax).fill(Number.NEGATIVE_INFINITY);
    this.ticketOf = new Float64Array(startsPerSecondMax).fill(-1);
  }

  /** Milliseconds until a token is free (0 = one is free now). */
  waitMs(nowMs: number): number {
    const back = (this.spentAtMs[this.next] as number) + this.windowMs;
    return back <= nowMs ? 0 : back - nowMs;
  }

  /** Spends a token and returns its ticket, or null (spending nothing) when none is free. */
  take(nowMs: number): number | null {
    if (this.waitMs(nowMs) > 0) return null;
    const ticket = this.tickets++;
    this.spentAtMs[this.next] = nowMs;
    this.ticketOf[this.next] = ticket;
    this.next = (this.next + 1) % this.startsPerSecondMax;
    return ticket;
  }

  /** Spends every token at `nowMs`, as if another sender had just used the whole window: nothing starts for one window. */
  spendAll(nowMs: number): void {
    this.spentAtMs.fill(nowMs);
    this.ticketOf.fill(-1);
  }

  tryTake(nowMs: number): boolean {
    return this.take(nowMs) !== null;
  }

  /** The request of `ticket` really left at `sentAtMs`: its token comes back a window after that. */
  markSent(ticket: number, sentAtMs: number): void {
    const slot = ticket % this.startsPerSecondMax;
    if (this.ticketOf[slot] !== ticket) return;
    this.spentAtMs[slot] = Math.max(this.spentAtMs[slot] as number, sentAtMs);
  }
}
