// The ERP deliverer end to end over real HTTP: paid events from a fake durable outbox go to
// a slow, flaky ERP stand-in (its own process; 50 ms latency, 30 % failures) that checks
// every signature and counts every call. Every order must arrive exactly once in effect,
// with acks cumulative, in order and complete; after a simulated crash only events started
// and not yet acknowledged may arrive twice, always under their own eventId. The caps are
// checked where they are promised: at the sender (a sink wrapper records when each call
// started and how many were in flight). What the ERP saw is printed, never asserted: on a
// busy machine arrivals bunch (calls started 1.02 s apart can arrive less than 1 s apart),
// and the receiver once counted 305 in a second for a cap of 300.

import { afterEach, describe, expect, it } from 'vitest';
import { Deliverer, type DelivererOptions } from '../src/erp/deliverer.js';
import type { PaidEvent } from '../src/erp/outbox-source.js';
import { eventBody } from '../src/erp/webhook-body.js';
import { WebhookSink } from '../src/erp/webhook-sink.js';
import { FakeOutbox } from './support/erp-fake-outbox.js';
import { startStandInProcess, type StandInProcess } from './support/erp-standin-process.js';
import { maxStartsWithin, TrackingSink } from './support/erp-tracking-sink.js';

const secret = 'test-erp-secret-0123456789';
const maxRps = 300;
const concurrency = 24;

const cleanups: (() => Promise<void> | void)[] = [];
afterEach(async () => {
  for (const c of cleanups.splice(0).reverse()) await c();
});

async function standIn(faults = { latencyMs: 50, jitterMs: 10, errorRate: 0.3 }): Promise<StandInProcess> {
  const erp = await startStandInProcess({ secret, ...faults, seed: 6 });
  cleanups.push(() => erp.close());
  return erp;
}

/** The outbox records any ack that covers an event the ERP has not accepted. */
function outboxFor(erp: StandInProcess, shardIds: number[]): FakeOutbox {
  return new FakeOutbox({
    shardIds, delayMsMax: 3,
    ackCheck: async (shardId, upToSeq, events) => {
      const missing = await erp.missing(events.map((e) => e.eventId));
      return missing.length === 0 ? null : `ack(${shardId}, ${upToSeq}) covers ${missing.join(', ')}, which the ERP never accepted`;
    },
  });
}

function deliverer(source: FakeOutbox, sink: DelivererOptions['sink']): Deliverer {
  const d = new Deliverer({
    source, sink, maxRps, concurrency, windowEventsPerShard: 64,
    backoff: { baseMs: 20, capMs: 400 }, pollMs: 200,
  });
  cleanups.push(() => d.halt());
  return d;
}

function webhook(erp: StandInProcess): TrackingSink {
  const sink = new TrackingSink(new WebhookSink({ url: erp.url, secret, timeoutMs: 2000, concurrency }));
  cleanups.push(() => sink.close());
  return sink;
}

async function waitFor(what: string, done: () => boolean | Promise<boolean>, timeoutMs: number): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!(await done())) {
    if (Date.now() > deadline) throw new Error(`timed out after ${timeoutMs} ms waiting until ${what}`);
    await new Promise((r) => setTimeout(r, 10));
  }
}

/**
 * The caps as the deliverer promises them, at the sender: calls started within any 1 s, over
 * every sink the run used (one per deliverer incarnation), at most maxRps; in flight at once,
 * at most concurrency. The receiver's figures are information only.
 */
async function expectCapsAtTheSender(erp: StandInProcess, sinks: TrackingSink[], label: string): Promise<void> {
  const startsPerSecond = maxStartsWithin(sinks.flatMap((s) => s.startedAtMs).sort((x, y) => x - y), 1000);
  const inFlight = Math.max(...sinks.map((s) => s.maxCallsInFlight));
  expect(startsPerSecond, 'calls started in any 1 s, at the sender').toBeLessThanOrEqual(maxRps);
  expect(inFlight, 'calls in flight at once, at the sender').toBeLessThanOrEqual(concurrency);
  const seen = await erp.stats();
  console.log(`[erp-deliverer] ${label}: at the sender max ${startsPerSecond} starts in 1 s (cap ${maxRps}), max ${inFlight} in flight (cap ${concurrency}); `
    + `the ERP saw max ${seen.maxStartsPerSecond} arrivals in 1 s and ${seen.maxConcurrency} in flight (information only)`);
}

/** The checks every run ends with: the ERP holds exactly the outbox, byte for byte, validly signed. */
async function expectExactlyTheOutbox(erp: StandInProcess, outbox: FakeOutbox): Promise<void> {
  const events = outbox.allEvents();
  const byId = new Map(events.map((e) => [e.eventId, e]));
  const deliveries = await erp.deliveries();
  expect(outbox.violations).toEqual([]);
  expect(new Set(deliveries.keys())).toEqual(new Set(byId.keys()));
  for (const [eventId, d] of deliveries) expect(d.body).toBe(eventBody(byId.get(eventId)!));
  const s = await erp.stats();
  expect(s.badSignatures).toBe(0);
  expect(s.badRequests).toBe(0);
  expect(s.bodyMismatches).toBe(0);
  expect(s.refundsBeforePaid).toBe(0);
  for (const id of outbox.shardIds) expect(outbox.ackedSeq(id)).toBe(events.filter((e) => e.shardId === id).length);
}

/** Acks of each shard only ever move forward. */
function expectAcksInOrder(outbox: FakeOutbox): void {
  for (const id of outbox.shardIds) {
    const seqs = outbox.ackLog.filter((a) => a.shardId === id).map((a) => a.upToSeq);
    expect(seqs).toEqual([...seqs].sort((a, b) => a - b));
    expect(new Set(seqs).size).toBe(seqs.length);
  }
}

describe('ERP deliverer against a slow, flaky ERP', () => {
  it('delivers 1,000 paid orders exactly once in effect, never above the rate and concurrency caps, acking every shard to its end', async () => {
    const erp = await standIn();
    const outbox = outboxFor(erp, [0, 1, 2]);
    outbox.appendMany(700);
    const sink = webhook(erp);
    const d = deliverer(outbox, sink);
    const startedMs = Date.now();
    d.start();
    // The rest arrives while delivery runs: the deliverer must wake for it.
    for (let i = 0; i < 10; i++) {
      await new Promise((r) => setTimeout(r, 100));
      outbox.appendMany(30);
    }
    await waitFor('every event is acknowledged', () => outbox.undeliveredCount() === 0, 40_000);
    const tookMs = Date.now() - startedMs;

    await expectExactlyTheOutbox(erp, outbox);
    expectAcksInOrder(outbox);
    await expectCapsAtTheSender(erp, [sink], '1,000 orders');
    const s = await erp.stats();
    // No crash and no timeout: nothing may arrive twice.
    expect(s.duplicates).toBe(0);
    expect(s.failuresInjected['500'] + s.failuresInjected['503'] + s.failuresInjected.drop).toBeGreaterThan(200);
    // Every call counts against the rate cap, so the run cannot be faster than calls / maxRps.
    expect(tookMs).toBeGreaterThanOrEqual(((s.received - maxRps) / maxRps) * 1000);

    const stats = d.stats();
    // The deliverer's own sender-side figures agree with the wrapper's: within the caps.
    expect(stats.maxStartsPerSecond).toBeLessThanOrEqual(maxRps);
    expect(stats.maxCallsInFlight).toBeLessThanOrEqual(concurrency);
    expect(stats.callsStarted).toBe(sink.calls);
    expect(stats.deliveredTotal).toBe(1000);
    expect(stats.callsStarted).toBe(s.received);
    expect(stats.backlogEvents).toBe(0);
    expect(stats.oldestUndeliveredAgeMs).toBe(0);
    expect(Object.keys(stats.failuresByKind).sort()).toEqual(['connection_reset', 'http_500', 'http_503']);
    expect(stats.failuresTotal).toBe(s.failuresInjected['500'] + s.failuresInjected['503'] + s.failuresInjected.drop);
    expect(stats.lastError?.kind).toMatch(/^(connection_reset|http_500|http_503)$/);
  }, 50_000);

  it('delivers each order.refunded only after its order.paid was accepted, though the paid one may fail many times first', async () => {
    const erp = await standIn();
    const outbox = outboxFor(erp, [0, 1]);
    // Each refund right behind its order (the closest a shard can queue it), others further on.
    const paid: PaidEvent[] = [];
    for (let i = 0; i < 150; i++) {
      const p = outbox.append(i % 2);
      paid.push(p);
      if (i % 3 === 0) outbox.appendRefund(p);
      if (i % 5 === 1 && i > 10 && (i - 10) % 3 !== 0) outbox.appendRefund(paid[i - 10]!);
    }
    const sink = webhook(erp);
    deliverer(outbox, sink).start();
    await waitFor('every event is acknowledged', () => outbox.undeliveredCount() === 0, 40_000);
    await expectExactlyTheOutbox(erp, outbox);
    expectAcksInOrder(outbox);
    const refunds = outbox.allEvents().filter((e) => e.type === 'order.refunded');
    expect(refunds.length).toBeGreaterThan(60);
    const deliveries = await erp.deliveries();
    for (const r of refunds) {
      const order = deliveries.get(`order.paid:${r.reservationId}`)!;
      expect(deliveries.get(r.eventId)!.firstAtMs, `${r.eventId} accepted before its order.paid`).toBeGreaterThanOrEqual(order.firstAtMs);
    }
    const s = await erp.stats();
    expect(s.failuresInjected['500'] + s.failuresInjected['503'] + s.failuresInjected.drop, 'failures were injected').toBeGreaterThan(30);
    expect(s.duplicates).toBe(0);
  }, 50_000);

  it('after a crash mid-flight and a restart from the durable acks, delivers everything, repeating only events started and not yet acknowledged', async () => {
    const erp = await standIn();
    const outbox = outboxFor(erp, [0, 1, 2]);
    outbox.appendMany(600);
    const sinkA = webhook(erp);
    const a = deliverer(outbox, sinkA);
    a.start();
    await waitFor('some events are acknowledged', async () => outbox.ackLog.length >= 10 && (await erp.stats()).accepted >= 150, 20_000);

    // kill -9: calls in flight are cut, acks not yet durable are lost, memory is gone.
    const inFlightAtCrash = new Set(sinkA.inFlight);
    expect(inFlightAtCrash.size).toBeGreaterThan(0);
    a.halt();
    outbox.crash();
    // Accepted by the ERP but beyond the durable acks: these will be sent again.
    const unackedAtCrash = new Set(outbox.allEvents().filter((e) => e.eventSeq > outbox.ackedSeq(e.shardId)).map((e) => e.eventId));
    // A restart takes time (process start, shard recovery); it also lets the ERP finish what
    // it was doing. The rate cap is per process, so the new one starts a second later.
    await new Promise((r) => setTimeout(r, 1100));
    const acceptedBeforeRestart = new Set((await erp.deliveries()).keys());

    const sinkB = webhook(erp);
    const b = deliverer(outbox, sinkB);
    b.start();
    await waitFor('every event is acknowledged after the restart', () => outbox.undeliveredCount() === 0, 40_000);

    await expectExactlyTheOutbox(erp, outbox);
    await expectCapsAtTheSender(erp, [sinkA, sinkB], 'crash and restart');
    expectAcksInOrder(outbox);
    const deliveries = await erp.deliveries();
    const repeated = [...deliveries].filter(([, d]) => d.count > 1).map(([id]) => id);
    for (const id of repeated) {
      expect(unackedAtCrash.has(id), `${id} arrived twice but was acknowledged before the crash`).toBe(true);
      expect(acceptedBeforeRestart.has(id), `${id} arrived twice but had not arrived before the restart`).toBe(true);
      expect(deliveries.get(id)!.count).toBe(2);
    }
    // Only the windows (3 shards x 64) can repeat, never the acknowledged past.
    expect(repeated.length).toBeLessThanOrEqual(3 * 64);
    expect(b.stats().deliveredTotal).toBe(600 - outbox.allEvents().filter((e) => !unackedAtCrash.has(e.eventId)).length);
  }, 50_000);

  it('stops gracefully: calls in flight finish and the delivered prefix is acknowledged before stop resolves', async () => {
    const erp = await standIn({ latencyMs: 30, jitterMs: 0, errorRate: 0 });
    const outbox = outboxFor(erp, [0]);
    outbox.appendMany(200);
    const d = deliverer(outbox, webhook(erp));
    d.start();
    await waitFor('some events arrive', async () => (await erp.stats()).accepted >= 50, 10_000);
    await d.stop(5000);
    const accepted = (await erp.stats()).accepted;
    expect(outbox.violations).toEqual([]);
    // Without failures delivery is in order, so every accepted event is acknowledged.
    expect(outbox.ackedSeq(0)).toBe(accepted);
    expect(d.stats().callsInFlight).toBe(0);
    await new Promise((r) => setTimeout(r, 200));
    expect((await erp.stats()).received).toBe(accepted);
  }, 20_000);
});
