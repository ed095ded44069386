// Wraps an ERP sink for tests: tracks which events are in a call right now (to know what
// a crash caught in flight) and can inject failures before or after the real call, the
// latter being the nasty case of an ERP that committed but whose answer was lost.

import { DeliveryFailure, type ErpSink } from '../../src/erp/erp-sink.js';
import type { PaidEvent } from '../../src/erp/outbox-source.js';

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

  constructor(private readonly inner: ErpSink, private readonly faults: InjectedFaults = {}) {
    this.name = `tracking(${inner.name})`;
    this.batchEventsMax = inner.batchEventsMax;
  }

  async deliver(events: readonly PaidEvent[], signal: AbortSignal, sent?: () => void): Promise<void> {
    this.calls++;
    this.maxEventsPerCall = Math.max(this.maxEventsPerCall, events.length);
    for (const e of events) this.inFlight.add(e.eventId);
    try {
      if (Math.random() < (this.faults.failBeforeRate ?? 0)) throw new DeliveryFailure('injected_before', 'injected failure before the call');
      await this.inner.deliver(events, signal, sent);
      if (Math.random() < (this.faults.failAfterRate ?? 0)) throw new DeliveryFailure('injected_after', 'injected failure after a successful call');
    } finally {
      for (const e of events) this.inFlight.delete(e.eventId);
    }
  }

  close(): Promise<void> {
    return this.inner.close();
  }
}
