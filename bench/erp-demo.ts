// Shows the ERP hand-off absorbing a drop's burst: N paid orders appear at once in an
// in-memory outbox, and the deliverer feeds them to a slow, flaky ERP stand-in at the
// capped pace, printing progress every second; optionally it "crashes" mid-run and
// restarts from the durable acks. It ends by checking that the ERP got every order.
//   node dist/bench/erp-demo.js --events 2000 --max-rps 200 --concurrency 16 --error-rate 0.3 --crash-at-ms 3000

import { parseArgs } from 'node:util';
import { Deliverer } from '../src/erp/deliverer.js';
import { WebhookSink } from '../src/erp/webhook-sink.js';
import { FakeOutbox } from '../test/support/erp-fake-outbox.js';
import { startErpStandIn, type ErpStandIn } from './erp-standin.js';

const secret = 'erp-demo-secret-0123456789';

function flag(values: Record<string, string | undefined>, name: string, fallback: number): number {
  const raw = values[name];
  const n = raw === undefined ? fallback : Number(raw);
  if (!Number.isFinite(n) || n < 0) throw new Error(`--${name} must be a number >= 0`);
  return n;
}

function settings() {
  const { values } = parseArgs({
    options: Object.fromEntries(['events', 'shards', 'max-rps', 'concurrency', 'latency-ms', 'jitter-ms', 'error-rate', 'crash-at-ms'].map((k) => [k, { type: 'string' as const }])),
  });
  const v = values as Record<string, string | undefined>;
  return {
    events: flag(v, 'events', 2000), shards: flag(v, 'shards', 3), maxRps: flag(v, 'max-rps', 200), concurrency: flag(v, 'concurrency', 16),
    latencyMs: flag(v, 'latency-ms', 50), jitterMs: flag(v, 'jitter-ms', 10), errorRate: flag(v, 'error-rate', 0.3), crashAtMs: flag(v, 'crash-at-ms', 0),
  };
}

function startDeliverer(outbox: FakeOutbox, erp: ErpStandIn, s: ReturnType<typeof settings>): Deliverer {
  const d = new Deliverer({
    source: outbox, sink: new WebhookSink({ url: erp.url, secret, timeoutMs: 5000, concurrency: s.concurrency }),
    maxRps: s.maxRps, concurrency: s.concurrency, windowEventsPerShard: 256, backoff: { baseMs: 100, capMs: 5000 }, pollMs: 500,
    quietFirstWindow: true,
  });
  d.start();
  return d;
}

async function main(): Promise<void> {
  const s = settings();
  const erp = await startErpStandIn({ secret, latencyMs: s.latencyMs, jitterMs: s.jitterMs, errorRate: s.errorRate });
  const outbox = new FakeOutbox({ shardIds: Array.from({ length: s.shards }, (_, i) => i), delayMsMax: 2 });
  outbox.appendMany(s.events);
  console.error(`ERP stand-in at ${erp.url}: ${s.latencyMs}±${s.jitterMs} ms, ${s.errorRate * 100} % failures; ${s.events} paid orders at once; caps ${s.maxRps}/s, ${s.concurrency} in flight`);
  const startedMs = Date.now();
  let d = startDeliverer(outbox, erp, s);
  // The caps as promised, at the sender, over both deliverers (before and after the crash).
  const sender = { maxStartsPerSecond: 0, maxCallsInFlight: 0 };
  const noteSender = (st: ReturnType<Deliverer['stats']>): void => {
    sender.maxStartsPerSecond = Math.max(sender.maxStartsPerSecond, st.maxStartsPerSecond);
    sender.maxCallsInFlight = Math.max(sender.maxCallsInFlight, st.maxCallsInFlight);
  };
  let crashed = s.crashAtMs === 0;
  while (outbox.undeliveredCount() > 0) {
    await new Promise((r) => setTimeout(r, 1000));
    const elapsedMs = Date.now() - startedMs;
    const st = d.stats();
    const e = erp.stats();
    console.error(`t=${(elapsedMs / 1000).toFixed(0)}s acked ${s.events - outbox.undeliveredCount()}/${s.events} backlog ${st.backlogEvents}${st.backlogMayHaveMore ? '+' : ''} oldest ${(st.oldestUndeliveredAgeMs / 1000).toFixed(1)}s | ERP: calls ${e.received}, max ${e.maxStartsPerSecond}/s, max ${e.maxConcurrency} in flight, duplicates ${e.duplicates}`);
    if (!crashed && elapsedMs >= s.crashAtMs) {
      crashed = true;
      d.halt();
      noteSender(d.stats());
      outbox.crash();
      console.error('-- crash: deliverer killed mid-flight; restarting from the durable acks in 1 s --');
      await new Promise((r) => setTimeout(r, 1000));
      d = startDeliverer(outbox, erp, s);
    }
  }
  await d.stop(5000);
  noteSender(d.stats());
  const e = erp.stats();
  const missing = outbox.allEvents().filter((ev) => !erp.deliveries.has(ev.eventId)).length;
  // `erp` is what the ERP saw (arrivals can bunch by a few ms); the caps are judged at the sender.
  const ok = missing === 0 && e.badSignatures === 0 && sender.maxStartsPerSecond <= s.maxRps && sender.maxCallsInFlight <= s.concurrency;
  const result = { seconds: (Date.now() - startedMs) / 1000, settings: s, sender, erp: e, missing, ok };
  console.log(JSON.stringify(result));
  await erp.close();
  process.exitCode = result.ok ? 0 : 1;
}

void main();
