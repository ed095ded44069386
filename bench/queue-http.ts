// bench:queue, part 2: one drop's waiting room over HTTP, against a real engine process
// (fresh data dir, the bench's shop token, every join fdatasync'ed before its 201):
//   1. joins: autocannon, many connections, POST /v1/drops/{d}/queue {"buyerId"} with a
//      unique buyer per request (the shop's token), a fixed count;
//   2. polls: GET /v1/drops/{d}/queue/{buyerId} of random joined buyers;
//   3. the drain: admitPerSecond set by PUT, a sample of buyers ("followers") polls its entry
//      (sooner the nearer its position) and reserves as soon as it reads `admitted`, while
//      the bench reads the drop's view every second. Afterwards every entry that may have
//      been admitted is read back, so the pace is checked on the engine's own admission
//      instants (admittedAt), over every one-second window, not on when the bench saw them.
// During 1 and 2 the queue admits 1 buyer per second (the slowest pace allowed), so nearly
// every entry is `waiting` with a position, as in the hour before a drop.

import { readFileSync } from 'node:fs';
import * as http from 'node:http';
import type autocannon from 'autocannon';
import { fmt, progress } from './bench-report.js';
import { seededRandom } from './seeded-random.js';
import { runPlan, type LatencyMs, type LoadResult } from './compare-load.js';
import { call, launchEngine, shopToken, type Engine } from './engine-under-test.js';

export interface QueueHttpSettings {
  joins: number;
  polls: number;
  connections: number;
  warmUp: number;
  admitPerSecond: number;
  drainSeconds: number;
  followers: number;
}

export interface QueueHttpFigures {
  settings: QueueHttpSettings & { engineShards: number; dropId: string; sku: string };
  warmUp: { joins: LoadResult; polls: LoadResult } | null;
  joins: LoadResult & { created: number; entriesAfter: number; engineRssMiBAfter: number | null };
  polls: LoadResult & { states: Record<string, number> };
  drain: DrainFigures;
  ok: boolean;
  problems: string[];
}

export interface DrainFigures {
  admitPerSecond: number;
  seconds: number;
  /** Admitted (admitted + used + lapsed) in the drop's view before the PUT and after the drain. */
  admittedBefore: number;
  admittedAfter: number;
  /** From the engine's admission instants (admittedAt of every admitted entry, read back). */
  admittedDuringDrain: number;
  admittedPerSecMean: number;
  /** Admissions per whole second from the first admission at the new pace. */
  perSecond: number[];
  /** The most admissions in any window [t, t + 1 s) of the engine's instants (the whole run). */
  maxInAnyWindow: number;
  neverAboveRate: boolean;
  entriesReadBack: number;
  /** What the bench saw in the drop's view, read about every second (client clock). */
  viewSamples: { atMs: number; admittedTotal: number }[];
  viewPerSecondMax: number;
  followers: {
    count: number;
    polls: number;
    pollStatuses: Record<string, number>;
    pollLatencyMs: LatencyMs;
    reserves: number;
    reserveStatuses: Record<string, number>;
    reserveLatencyMs: LatencyMs;
    /** From the entry's admittedAt to the 201 of its reserve (same host clock). */
    admittedToReservedMs: LatencyMs;
    notAdmittedByTheEnd: number;
    otherStates: Record<string, number>;
  };
  reservesPerSec: number;
  /** Reserves (201) per whole second of the drain, client clock. */
  reservesPerSecond: number[];
  after: { skuReserved: number; used: number; waiting: number };
}

const idChars = 16;
/** A buyer id of 16 characters, as in part 1. */
const buyerOf = (prefix: string, n: number): string => `${prefix}${n.toString().padStart(idChars - prefix.length, '0')}`;

const agent = new http.Agent({ keepAlive: true, maxSockets: 64 });

/** One call over the followers' keep-alive pool, as the shop (its token). */
function shopCall(port: number, method: string, path: string, body?: unknown): Promise<{ status: number; json: Record<string, unknown> | null; ms: number }> {
  const data = body === undefined ? undefined : JSON.stringify(body);
  const started = performance.now();
  return new Promise((resolve, reject) => {
    const headers: Record<string, string | number> = { authorization: `Bearer ${shopToken}` };
    if (data !== undefined) Object.assign(headers, { 'content-type': 'application/json', 'content-length': Buffer.byteLength(data) });
    const req = http.request({ host: '127.0.0.1', port, method, path, agent, headers }, (res) => {
      let text = '';
      res.setEncoding('utf8');
      res.on('data', (c: string) => {
        text += c;
      });
      res.on('end', () => {
        let json: Record<string, unknown> | null = null;
        try {
          json = JSON.parse(text) as Record<string, unknown>;
        } catch {
          json = null;
        }
        resolve({ status: res.statusCode ?? 0, json, ms: performance.now() - started });
      });
    });
    req.on('error', reject);
    req.setTimeout(30_000, () => req.destroy(new Error(`${method} ${path}: no answer in 30 s`)));
    req.end(data);
  });
}

const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));

function latencyOf(values: number[]): LatencyMs {
  if (values.length === 0) return { count: 0, mean: 0, p50: 0, p90: 0, p99: 0, p99_9: 0, max: 0 };
  const s = Float64Array.from(values).sort();
  const at = (p: number): number => Math.round(1000 * s[Math.min(s.length - 1, Math.ceil((p / 100) * s.length) - 1)]!) / 1000;
  return { count: s.length, mean: s.reduce((a, b) => a + b, 0) / s.length, p50: at(50), p90: at(90), p99: at(99), p99_9: at(99.9), max: s[s.length - 1]! };
}

const headers = { 'content-type': 'application/json', authorization: `Bearer ${shopToken}` };

function joinRequests(dropId: string, prefix: string): autocannon.Request[] {
  let n = 0;
  return [{ method: 'POST', path: `/v1/drops/${dropId}/queue`, headers, setupRequest: (req) => ({ ...req, body: `{"buyerId":"${buyerOf(prefix, n++)}"}` }) }];
}

/** GETs of entries: `next()` gives the buyer number of each request in turn. */
function entryRequests(dropId: string, prefix: string, next: () => number, onEntry?: (e: Record<string, unknown>) => void): autocannon.Request[] {
  const r: autocannon.Request = { method: 'GET', headers, setupRequest: (req) => ({ ...req, path: `/v1/drops/${dropId}/queue/${buyerOf(prefix, next())}` }) };
  if (onEntry !== undefined) {
    r.onResponse = (status, body) => {
      if (status !== 200) return;
      try {
        onEntry(JSON.parse(body) as Record<string, unknown>);
      } catch {
        // counted by status; a body that is not JSON is not an entry
      }
    };
  }
  return [r];
}


async function dropQueue(port: number, dropId: string): Promise<Record<string, number>> {
  const r = await call(port, 'GET', `/v1/drops/${dropId}`);
  if (r.status !== 200) throw new Error(`GET /v1/drops/${dropId} answered ${r.status}: ${JSON.stringify(r.json)}`);
  return r.json.queue as Record<string, number>;
}

const admittedTotal = (q: Record<string, number>): number => (q.admitted ?? 0) + (q.used ?? 0) + (q.lapsed ?? 0);

async function setUpDrop(port: number, dropId: string, sku: string): Promise<void> {
  const s = await call(port, 'PUT', `/v1/skus/${sku}`, { stock: 1_000_000_000, holdSeconds: 3600, dropId });
  if (s.status !== 201) throw new Error(`PUT /v1/skus/${sku} answered ${s.status}: ${JSON.stringify(s.json)}`);
  const d = await call(port, 'PUT', `/v1/drops/${dropId}`, { queue: { mode: 'fifo', admitPerSecond: 1, admitSeconds: 600 } });
  if (d.status !== 201) throw new Error(`PUT /v1/drops/${dropId} answered ${d.status}: ${JSON.stringify(d.json)}`);
}

function loadLine(f: LoadResult): string {
  return `${fmt(f.responsesPerSec)}/s, p50 ${fmt(f.latencyMs.p50, 2)} ms, p99 ${fmt(f.latencyMs.p99, 2)} ms, statuses ${JSON.stringify(f.statuses)}, errors ${f.errors}, timeouts ${f.timeouts}`;
}

async function drain(engine: Engine, s: QueueHttpSettings, dropId: string, sku: string, prefix: string, joined: number, problems: string[]): Promise<DrainFigures> {
  const port = engine.port;
  const admittedBefore = admittedTotal(await dropQueue(port, dropId));
  // Fifo admits in joining order, which is the bench's buyer numbering give or take the
  // requests in flight together: the followers are spread over the buyers due in the drain.
  // The last second's are left out: the pace starts within a step of the PUT, and a follower
  // admitted in the drain's last moments would have no time left to read it.
  const span = Math.min(joined - admittedBefore - s.connections, s.admitPerSecond * (s.drainSeconds - 1));
  const first = admittedBefore + s.connections;
  const count = Math.max(0, Math.min(s.followers, span));
  const followersOf = Array.from({ length: count }, (_, k) => first + Math.floor(((k + 0.5) * span) / count));

  const polls: number[] = [];
  const pollStatuses: Record<string, number> = {};
  const reserveMs: number[] = [];
  const reserveStatuses: Record<string, number> = {};
  const lags: number[] = [];
  const reservedAt: number[] = [];
  const otherStates: Record<string, number> = {};
  let notAdmitted = 0;
  const bump = (m: Record<string, number>, k: string | number): void => {
    m[k] = (m[k] ?? 0) + 1;
  };

  const putSentMs = Date.now();
  const put = await call(port, 'PUT', `/v1/drops/${dropId}`, { queue: { admitPerSecond: s.admitPerSecond } });
  if (put.status !== 200) throw new Error(`PUT /v1/drops/${dropId} admitPerSecond answered ${put.status}: ${JSON.stringify(put.json)}`);
  const startMs = Date.now();
  const deadline = startMs + s.drainSeconds * 1000;
  progress(`drain: admitPerSecond ${fmt(s.admitPerSecond)} for ${s.drainSeconds} s; ${fmt(count)} followers poll and reserve when admitted`);

  const follower = async (n: number, delayMs: number): Promise<void> => {
    await sleep(delayMs);
    const buyerId = buyerOf(prefix, n);
    while (Date.now() < deadline) {
      const r = await shopCall(port, 'GET', `/v1/drops/${dropId}/queue/${buyerId}`);
      polls.push(r.ms);
      bump(pollStatuses, r.status);
      const e = r.json ?? {};
      if (r.status !== 200) {
        await sleep(1000);
        continue;
      }
      if (e.state === 'admitted') {
        const res = await shopCall(port, 'POST', '/v1/reservations', { sku, buyerId, qty: 1 });
        reserveMs.push(res.ms);
        bump(reserveStatuses, res.status);
        if (res.status === 201) {
          const now = Date.now();
          reservedAt.push(now);
          lags.push(now - Number(e.admittedAt));
        }
        return;
      }
      if (e.state !== 'waiting') {
        bump(otherStates, String(e.state));
        return;
      }
      // It looks again after 80 % of its expected wait (position / pace), 0.2..5 s: a few
      // polls per buyer, the last within 0.2 s of its admission.
      const waitMs = Math.min(5000, Math.max(200, (800 * Number(e.position ?? 1)) / s.admitPerSecond));
      await sleep(Math.min(waitMs, Math.max(0, deadline - Date.now())));
    }
    notAdmitted++;
  };

  const samples: { atMs: number; admittedTotal: number }[] = [{ atMs: startMs, admittedTotal: admittedBefore }];
  const sampler = (async () => {
    while (Date.now() < deadline) {
      await sleep(Math.max(0, Math.min(1000, deadline - Date.now())));
      samples.push({ atMs: Date.now(), admittedTotal: admittedTotal(await dropQueue(port, dropId)) });
    }
  })();
  // The first polls spread over the first second, as buyers' pages would.
  await Promise.all([sampler, ...followersOf.map((n, k) => follower(n, (1000 * k) / Math.max(1, count)))]);
  // Back to the slowest pace (1 a second, and none for a second after the drain's last
  // step, as the window is full), so that reading the instants back sees a nearly still queue.
  await call(port, 'PUT', `/v1/drops/${dropId}`, { queue: { admitPerSecond: 1 } });
  const endMs = Date.now();
  const qAfter = await dropQueue(port, dropId);
  const admittedAfter = admittedTotal(qAfter);

  // Every entry that may have been admitted, read back: admission took joining order, and
  // joining order is the numbering give or take the requests in flight together.
  const instants = new Map<number, number>();
  let read = 0;
  let from = 0;
  let found = 0;
  while (found < admittedAfter && from < joined) {
    const upTo = Math.min(joined, Math.max(from + 1000, admittedAfter + 4 * s.connections + (from === 0 ? 0 : 10_000)));
    let n = from;
    const seen = new Set<number>();
    const res = await runPlan({
      title: 'read back', url: `http://127.0.0.1:${port}`, connections: Math.min(64, s.connections), durationSeconds: 0, amount: upTo - from, timeoutSeconds: 30, pids: [],
      requests: entryRequests(dropId, prefix, () => n++, (e) => {
        const k = Number(String(e.buyerId).slice(prefix.length));
        if (seen.has(k)) return;
        seen.add(k);
        if (e.state === 'admitted' || e.state === 'used' || e.state === 'lapsed') {
          const at = Number(e.admittedAt);
          instants.set(at, (instants.get(at) ?? 0) + 1);
          found++;
        }
      }),
    });
    if (res.errors > 0 || seen.size < upTo - from) problems.push(`reading entries back: ${upTo - from - seen.size} of ${upTo - from} unanswered`);
    read += seen.size;
    from = upTo;
  }
  // An entry or two may be admitted at the slow pace while they are read back.
  const admittedAtEnd = admittedTotal(await dropQueue(port, dropId));
  if (found < admittedAfter || found > admittedAtEnd) problems.push(`read back ${found} admitted entries, the drop's view counts ${admittedAfter} before and ${admittedAtEnd} after`);

  const list = [...instants.entries()].sort((a, b) => a[0] - b[0]);
  const duringDrain = list.filter(([t]) => t >= putSentMs && t <= endMs);
  const firstAt = duringDrain[0]?.[0] ?? startMs;
  const admittedDuringDrain = duringDrain.reduce((a, [, c]) => a + c, 0);
  const perSecond: number[] = [];
  for (const [t, c] of duringDrain) {
    const k = Math.floor((t - firstAt) / 1000);
    while (perSecond.length <= k) perSecond.push(0);
    perSecond[k]! += c;
  }
  const maxInAnyWindow = windowMax(list, 1000);
  const neverAboveRate = maxInAnyWindow <= s.admitPerSecond;
  if (!neverAboveRate) problems.push(`${maxInAnyWindow} admissions within one second, above the set ${s.admitPerSecond}`);
  let viewPerSecondMax = 0;
  for (let k = 1; k < samples.length; k++) {
    const dt = (samples[k]!.atMs - samples[k - 1]!.atMs) / 1000;
    if (dt > 0.5) viewPerSecondMax = Math.max(viewPerSecondMax, (samples[k]!.admittedTotal - samples[k - 1]!.admittedTotal) / dt);
  }
  const reservesPerSecond = Array.from({ length: s.drainSeconds }, (_, k) => reservedAt.filter((t) => t >= startMs + k * 1000 && t < startMs + (k + 1) * 1000).length);

  const skuView = await call(port, 'GET', `/v1/skus/${sku}`);
  const reserved201 = reserveStatuses['201'] ?? 0;
  const after = { skuReserved: Number(skuView.json.reserved), used: Number(qAfter.used), waiting: Number(qAfter.waiting) };
  if (after.skuReserved !== reserved201) problems.push(`sku ${sku} holds ${after.skuReserved} units for ${reserved201} acknowledged reserves`);
  if (after.used !== reserved201) problems.push(`the queue counts ${after.used} used entries for ${reserved201} acknowledged reserves`);
  const notOk = Object.entries(reserveStatuses).filter(([k]) => k !== '201');
  if (notOk.length > 0) problems.push(`reserves of admitted buyers answered ${JSON.stringify(reserveStatuses)}`);

  const f: DrainFigures = {
    admitPerSecond: s.admitPerSecond, seconds: (endMs - startMs) / 1000, admittedBefore, admittedAfter, admittedDuringDrain,
    admittedPerSecMean: admittedDuringDrain / s.drainSeconds, perSecond, maxInAnyWindow, neverAboveRate, entriesReadBack: read,
    viewSamples: samples, viewPerSecondMax,
    followers: {
      count, polls: polls.length, pollStatuses, pollLatencyMs: latencyOf(polls), reserves: reserveMs.length, reserveStatuses,
      reserveLatencyMs: latencyOf(reserveMs), admittedToReservedMs: latencyOf(lags), notAdmittedByTheEnd: notAdmitted, otherStates,
    },
    reservesPerSec: reserved201 / s.drainSeconds, reservesPerSecond, after,
  };
  progress(`drain: ${fmt(admittedDuringDrain)} admitted in ${s.drainSeconds} s (${fmt(f.admittedPerSecMean)}/s; at most ${fmt(maxInAnyWindow)} in any 1 s of the engine's instants, set ${fmt(s.admitPerSecond)}); `
    + `followers: ${fmt(polls.length)} polls (p99 ${fmt(f.followers.pollLatencyMs.p99, 1)} ms), ${fmt(reserved201)} reserves (${fmt(f.reservesPerSec)}/s, p99 ${fmt(f.followers.reserveLatencyMs.p99, 1)} ms), `
    + `admitted -> reserved p50 ${fmt(f.followers.admittedToReservedMs.p50)} ms, p99 ${fmt(f.followers.admittedToReservedMs.p99)} ms; ${notAdmitted} not admitted by the end`);
  return f;
}

/** The most admissions in any window [t, t + widthMs) over [instant, count] pairs sorted by instant. */
function windowMax(sorted: [number, number][], widthMs: number): number {
  let best = 0;
  let sum = 0;
  let hi = 0;
  for (let lo = 0; lo < sorted.length; lo++) {
    while (hi < sorted.length && sorted[hi]![0] < sorted[lo]![0] + widthMs) sum += sorted[hi++]![1];
    best = Math.max(best, sum);
    sum -= sorted[lo]![1];
  }
  return best;
}

function rssMiB(pid: number | undefined): number | null {
  if (pid === undefined) return null;
  try {
    const m = /^VmRSS:\s+(\d+)\s+kB/m.exec(readFileSync(`/proc/${pid}/status`, 'utf8'));
    return m === null ? null : Number(m[1]) / 1024;
  } catch {
    return null;
  }
}

export async function benchQueueHttp(tmp: string, s: QueueHttpSettings, children: Engine[]): Promise<QueueHttpFigures> {
  const engine = await launchEngine(tmp, 'engine-queue');
  children.push(engine);
  const url = `http://127.0.0.1:${engine.port}`;
  const pids = engine.child.pid === undefined ? [] : [engine.child.pid];
  const problems: string[] = [];
  const dropId = 'bench-drop';
  const sku = 'bench-drop-sku';
  await setUpDrop(engine.port, dropId, sku);

  let warmUp: QueueHttpFigures['warmUp'] = null;
  if (s.warmUp > 0) {
    await setUpDrop(engine.port, 'warm-drop', 'warm-drop-sku');
    const rnd = seededRandom(1);
    const wj = await runPlan({ title: 'warm-up joins', url, connections: s.connections, durationSeconds: 0, amount: s.warmUp, timeoutSeconds: 30, requests: joinRequests('warm-drop', 'w-'), pids });
    const wp = await runPlan({ title: 'warm-up polls', url, connections: s.connections, durationSeconds: 0, amount: s.warmUp, timeoutSeconds: 30, requests: entryRequests('warm-drop', 'w-', () => Math.floor(rnd() * s.warmUp)), pids });
    warmUp = { joins: wj, polls: wp };
    progress(`warm-up: ${fmt(s.warmUp)} joins (${loadLine(wj)}) and polls (${loadLine(wp)})`);
  }

  const prefix = 'hj-';
  progress(`joins: ${fmt(s.joins)} unique buyers over ${s.connections} connections`);
  const joins = await runPlan({ title: 'joins', url, connections: s.connections, durationSeconds: 0, amount: s.joins, timeoutSeconds: 30, requests: joinRequests(dropId, prefix), pids });
  progress(`joins: ${loadLine(joins)}`);
  const created = joins.statuses['201'] ?? 0;
  const q = await dropQueue(engine.port, dropId);
  if (created !== s.joins) problems.push(`${created} of ${s.joins} joins answered 201`);
  if (q.entries !== created) problems.push(`the queue has ${q.entries} entries for ${created} joins answered 201`);
  const engineRssMiBAfter = rssMiB(engine.child.pid);

  progress(`polls: ${fmt(s.polls)} reads of random joined buyers`);
  const rnd = seededRandom(2);
  const states: Record<string, number> = {};
  const polls = await runPlan({
    title: 'polls', url, connections: s.connections, durationSeconds: 0, amount: s.polls, timeoutSeconds: 30, pids,
    requests: entryRequests(dropId, prefix, () => Math.floor(rnd() * created), (e) => {
      const k = String(e.state);
      states[k] = (states[k] ?? 0) + 1;
    }),
  });
  progress(`polls: ${loadLine(polls)}; states ${JSON.stringify(states)}`);
  if ((polls.statuses['200'] ?? 0) !== s.polls) problems.push(`${polls.statuses['200'] ?? 0} of ${s.polls} polls answered 200`);

  const drained = await drain(engine, s, dropId, sku, prefix, created, problems);
  const exit = await engine.stop();
  if (exit !== 0) problems.push(`the engine exited with ${exit}`);
  agent.destroy();
  return {
    settings: { ...s, engineShards: engine.shardCount, dropId, sku },
    warmUp,
    joins: { ...joins, created, entriesAfter: q.entries ?? 0, engineRssMiBAfter },
    polls: { ...polls, states },
    drain: drained,
    ok: problems.length === 0,
    problems,
  };
}
