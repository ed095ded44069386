// Wraps an ERP sink for tests: tracks which events are in a call right now (to know what
// a crash caught in flight), records when each call started and how many were in flight
// (the deliverer's caps, measured at the sender, where they are promised), and can inject
// failures before or after the real call, the latter being the nasty case of an ERP that
// committed but whose answer was lost.

import { DeliveryFailure, type ErpSink } from '../../src/erp/erp-sink.js';
import type { OutboxEvent } from '../../src/erp/outbox-source.js';

export interface InjectedFaults {
  /** Share of calls failed before the real sink is called. */
  failBeforeRate?: number;
  /** Share of calls failed after the real sink succeeded (the answer is "lost"). */
  failAfterRate?: number;
}

export class TrackingSink implements ErpSink {
  readonly name: string;
  readonly batchEventsMax: number;
  readonly inFlight = new Set<string>();
  calls = 0;
  maxEventsPerCall = 0;
  /** performance.now() at the start of every call, in order. */
  readonly startedAtMs: number[] = [];
  callsInFlight = 0;
  maxCallsInFlight = 0;

  constructor(private readonly inner: ErpSink, private readonly faults: InjectedFaults = {}) {
    this.name = `tracking(${inner.name})`;
    this.batchEventsMax = inner.batchEventsMax;
  }

  async deliver(events: readonly OutboxEvent[], signal: AbortSignal, sent?: () => void): Promise<void> {
    // The call starts here: say so to the deliverer (its rate token then counts from no
    // earlier than this instant), and record it.
    const startedAtMs = performance.now();
    sent?.();
    this.startedAtMs.push(startedAtMs);
    this.callsInFlight++;
    this.maxCallsInFlight = Math.max(this.maxCallsInFlight, this.callsInFlight);
    this.calls++;
    this.maxEventsPerCall = Math.max(this.maxEventsPerCall, events.length);
    for (const e of events) this.inFlight.add(e.eventId);
    try {
      if (Math.random() < (this.faults.failBeforeRate ?? 0)) throw new DeliveryFailure('injected_before', 'injected failure before the call');
      await this.inner.deliver(events, signal, sent);
      if (Math.random() < (this.faults.failAfterRate ?? 0)) throw new DeliveryFailure('injected_after', 'injected failure after a successful call');
    } finally {
      this.callsInFlight--;
      for (const e of events) this.inFlight.delete(e.eventId);
    }
  }

  /** The most calls that started within any window of `windowMs` (1 s: the rate cap's window). */
  maxStartsInWindow(windowMs = 1000): number {
    return maxStartsWithin(this.startedAtMs, windowMs);
  }

  close(): Promise<void> {
    return this.inner.close();
  }
}

/** The most of these start times (ascending) that fall within any window of `windowMs`. */
export function maxStartsWithin(startedAtMs: readonly number[], windowMs = 1000): number {
  let max = 0;
  let first = 0;
  for (let i = 0; i < startedAtMs.length; i++) {
    while ((startedAtMs[first] as number) <= (startedAtMs[i] as number) - windowMs) first++;
    max = Math.max(max, i - first + 1);
  }
  return max;
}
