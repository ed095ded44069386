// The load side of `flash rehearse`: autocannon drives the connections, and every answer is
// filed here, by route and status (to hold beside the engine's flash_http_requests_total), by
// outcome (201, 409 sold_out, 503 overloaded, ...), per phase, per step and per second, with
// its latency in an hdr histogram.
//
// Latency at a constant rate is corrected for coordinated omission, as wrk2 does: it is
// measured from the time the request was meant to be sent, not from when a busy connection got
// round to sending it. autocannon keeps a rate by giving each connection a quota per second
// (the overall rate shared out); here the i-th request of a connection's second is meant for
// second start + the connection's offset + i / its rate, evenly spread, so a connection held up
// by a slow answer counts the wait of every request that queued behind it. A request sent
// early (autocannon sends a quota back to back) is measured from when it was sent; so that the
// quotas do not all fall at the same instant, a rate is shared by up to 10 autocannon instances
// started 1/10 s apart. A step runs a fixed number of requests (rate x seconds), so every
// request sent is answered and counted on both sides; a request a connection could not send
// within its planned seconds goes out late, is counted as `late`, and is measured from the end
// of the plan (a lower bound of its wait). A step whose late share passes 1 % did not hold its
// rate, and a target at that rate fails. As fast as answered (closed loop), latency is the
// time from send to answer.

import autocannon from 'autocannon';
import { latencyHistogram, recordUs, type Histogram } from './report-kit.js';

type Obj = Record<string, unknown>;

/** The outcome an answer is filed under: `201`, `409 sold_out`, `503 overloaded`, `timeout`, ... */
export function outcomeOf(status: number, code: string | null): string {
  if (status === 0) return code ?? 'no answer';
  if (status >= 200 && status < 300) return String(status);
  return `${status} ${code ?? `http_${status}`}`;
}

/** The API's error code from a body, without parsing all of it. */
export function errorCodeOf(body: string): string | null {
  const m = /"code"\s*:\s*"([^"\\]{1,64})"/.exec(body);
  return m === null ? null : m[1]!;
}

const bump = <K>(m: Map<K, number>, k: K, n = 1): void => {
  m.set(k, (m.get(k) ?? 0) + n);
};

export interface SecondBucket {
  answers: number;
  ok: number;
  outcomes: Map<string, number>;
  hist: Histogram;
}

/** A step's time without the stagger of its instances (what its rate is measured over), ms. */
export const activeMs = (s: { startMs: number; endMs: number; staggerMs: number }): number => Math.max(0, s.endMs - s.startMs - s.staggerMs);

export class StepLog {
  startMs = 0;
  endMs = 0;
  /** Requests planned (rate x seconds, or a count); null: as many as the time allows. */
  intended: number | null = null;
  sent = 0;
  answered = 0;
  /** Sent after the step's planned seconds: the connection could not keep its rate. */
  late = 0;
  /** Sent, then cut off unanswered when a timed step ended (closed loop only). */
  cutOff = 0;
  /** The last of the staggered instances started this long after the first. */
  staggerMs = 0;
  errors = 0;
  readonly outcomes = new Map<string, number>();
  readonly hist = latencyHistogram(3);

  constructor(
    readonly label: string,
    readonly mode: 'constant rate' | 'closed loop' | 'calls',
    readonly rps: number | null,
    public connections: number,
  ) {}
}

export class PhaseLog {
  startMs = 0;
  endMs = 0;
  readonly steps: StepLog[] = [];
  readonly outcomes = new Map<string, number>();
  readonly routes = new Map<string, Map<number, number>>();
  readonly hist = latencyHistogram(3);
  readonly seconds = new Map<number, SecondBucket>();
  /** Figures of the phase's own kind (sell-out, flows, queue), for the report. */
  readonly extra: Obj = {};
  readonly notes: string[] = [];
  current: StepLog | null = null;

  constructor(readonly ledger: Ledger, readonly name: string, readonly kind: string, readonly description: string) {}

  step(label: string, mode: StepLog['mode'], rps: number | null, connections: number): StepLog {
    const s = new StepLog(label, mode, rps, connections);
    s.startMs = this.ledger.now();
    this.steps.push(s);
    this.current = s;
    return s;
  }

  endStep(s: StepLog): void {
    s.endMs = this.ledger.now();
    if (this.current === s) this.current = null;
  }

  /** One answer (status > 0) or one failure to get one (status 0, `code` timeout / connection error). */
  record(step: StepLog, route: string, status: number, code: string | null, latencyUs: number, atMs: number): void {
    const key = outcomeOf(status, code);
    bump(this.outcomes, key);
    bump(step.outcomes, key);
    const sec = Math.floor(atMs / 1000);
    let b = this.seconds.get(sec);
    if (b === undefined) {
      b = { answers: 0, ok: 0, outcomes: new Map(), hist: latencyHistogram(2) };
      this.seconds.set(sec, b);
    }
    bump(b.outcomes, key);
    if (status === 0) {
      step.errors++;
      return;
    }
    this.ledger.count(route, status);
    let r = this.routes.get(route);
    if (r === undefined) this.routes.set(route, (r = new Map()));
    bump(r, status);
    step.answered++;
    b.answers++;
    if (status >= 200 && status < 300) b.ok++;
    recordUs(this.hist, latencyUs);
    recordUs(step.hist, latencyUs);
    recordUs(b.hist, latencyUs);
  }
}

/** Everything one run sent and got back, from the first call to the last. */
export class Ledger {
  private readonly t0 = performance.now();
  readonly startedAt = Date.now();
  /** route -> status -> answers, for every call of the run (setup, load, checks, cleanup). */
  readonly requests = new Map<string, Map<number, number>>();
  readonly phases: PhaseLog[] = [];
  /** Calls that got no answer at all (network errors, timeouts), by route. */
  readonly unanswered = new Map<string, number>();

  /** Milliseconds since the run started. */
  now(): number {
    return performance.now() - this.t0;
  }

  count(route: string, status: number): void {
    let r = this.requests.get(route);
    if (r === undefined) this.requests.set(route, (r = new Map()));
    bump(r, status);
  }

  phase(name: string, kind: string, description: string): PhaseLog {
    const p = new PhaseLog(this, name, kind, description);
    p.startMs = this.now();
    this.phases.push(p);
    return p;
  }
}

/** One request of a connection's sequence (a flow is reserve, then pay or cancel). */
export interface RequestSpec {
  route: string;
  method: 'GET' | 'POST' | 'PUT';
  /** The request to send, built just before it is sent; null skips it (the sequence starts over). */
  build(context: Obj): { route?: string; path: string; headers: Record<string, string>; body?: string } | null;
  /** Sees each answer's status and body, with the connection's context (reset each sequence). */
  onAnswer?(status: number, body: string, context: Obj): void;
}

export interface LoadRun {
  url: string;
  connections: number;
  /** Requests per second over all connections; null: as fast as answered. */
  rps: number | null;
  /** A timed step (closed loop); ignored when amount is set. */
  seconds: number;
  /** A fixed number of requests (every rate step, a sell-out's buyers). */
  amount: number | null;
  timeoutSeconds: number;
  requests: RequestSpec[];
  phase: PhaseLog;
  step: StepLog;
  signal?: AbortSignal;
  /** A timed-out step is stopped after this long (a rate the target cannot take would run on). */
  maxSeconds?: number;
}

interface Inflight {
  route: string;
  /** When it was sent, and when it was meant to be (ms, run clock). */
  sentMs: number;
  startMs: number;
}

interface ClientLike {
  rate?: number;
  responseMax?: number;
  reqsMadeThisSecond: number;
  on(event: string, f: (...args: unknown[]) => void): void;
}

/**
 * autocannon shares a rate out as whole requests per connection per second; with a count of
 * connections that divides the rate (at least half of those asked for) every connection
 * gets the same share, and a step of rate x seconds ends on time on every one of them.
 */
export function evenConnections(connections: number, rps: number): number {
  for (let c = connections; c >= Math.ceil(connections / 2); c--) if (rps % c === 0) return c;
  return connections;
}

/**
 * How many autocannon instances share a rate, started 1/J s apart. autocannon sends each
 * connection's quota back to back when its second begins, and the connections of one instance
 * begin their seconds together; J instances turn one burst a second into J smaller ones.
 * At most 10, at least two connections each, and J divides the rate.
 */
export function staggerOf(rps: number, connections: number): number {
  for (let j = Math.min(10, Math.floor(connections / 2)); j > 1; j--) if (rps % j === 0) return j;
  return 1;
}

/** Runs one step; every answer, failure and cut-off is filed in run.phase / run.step. */
export async function runLoad(ledger: Ledger, run: LoadRun): Promise<void> {
  const { phase, step } = run;
  let sending: Inflight | null = null;
  let lastCode: string | null = null;
  const clients: Inflight[][] = [];

  const specs = run.requests;
  // The route of each answer is the one its request was built for, kept in the connection's
  // context (onResponse sees it just before autocannon reports the answer). `sending` names
  // the entry of the request being sent right now, for requests that get no answer; it is
  // cleared once that send is over, so that a connection being set up never relabels another's.
  let lastRoute: string | null = null;
  const requests: autocannon.Request[] = specs.map((spec) => ({
    method: spec.method,
    path: '/',
    setupRequest: (req: autocannon.Request, context: Obj) => {
      const built = spec.build(context);
      if (built === null) return null as unknown as autocannon.Request;
      const route = built.route ?? spec.route;
      context.route = route;
      if (sending !== null) sending.route = route;
      return { ...req, method: spec.method, path: built.path, headers: built.headers, body: built.body ?? '' };
    },
    onResponse: (status: number, body: string, context: Obj) => {
      lastCode = status >= 300 ? errorCodeOf(body) : null;
      lastRoute = typeof context.route === 'string' ? context.route : spec.route;
      spec.onAnswer?.(status, body, context);
    },
  } as unknown as autocannon.Request));

  const lose = (list: Inflight[], code: string): void => {
    const at = ledger.now();
    for (const f of list.splice(0)) {
      phase.record(step, f.route, 0, code, 0, at);
      ledger.unanswered.set(f.route, (ledger.unanswered.get(f.route) ?? 0) + 1);
    }
  };

  /** The hooks of one instance's connections; `rps` is the instance's share of the rate. */
  const setupClientOf = (rps: number | null) => {
    let count = 0;
    return (raw: unknown): void => {
      const client = raw as ClientLike;
      const k = count++;
      const inflight: Inflight[] = [];
      clients.push(inflight);
      sending = null;
      const rate = client.rate ?? 0;
      // The seconds this connection's share needs at its rate: a send after them is late.
      const plannedWindows = rate > 0 && client.responseMax ? Math.ceil(client.responseMax / rate) : Infinity;
      // The instance's schedule is one request every 1/rps; connection k takes every k-th of it.
      const offsetMs = rps === null ? 0 : (k * 1000) / rps;
      // autocannon's seconds for this connection: which one (n), when it began, what was sent in it.
      let n = -1;
      let windowStart = 0;
      let firstStart = 0;
      let sentInWindow = 0;
      client.on('request', () => {
        const now = ledger.now();
        // With pipelining 1 an entry still here lost its answer to a closed connection.
        if (inflight.length > 0) lose(inflight, 'connection closed');
        let startMs = now;
        if (rate > 0) {
          // autocannon counts the requests of its current second (its quota resets each second).
          const i = Math.max(0, client.reqsMadeThisSecond - 1);
          if (n < 0) {
            n = 0;
            windowStart = firstStart = now;
          } else if (i === 0) {
            // A new second of autocannon's: when the last one's quota was used up the connection
            // waited for this tick and sends on it; else it was busy and its seconds went on.
            const passed = Math.max(1, Math.floor((now - windowStart) / 1000));
            n += passed;
            windowStart = sentInWindow >= rate && passed === 1 ? now : windowStart + passed * 1000;
            sentInWindow = 0;
          }
          sentInWindow++;
          let intended: number;
          if (n >= plannedWindows) {
            step.late++;
            intended = firstStart + plannedWindows * 1000;
          } else {
            intended = windowStart + offsetMs + (i * 1000) / rate;
          }
          startMs = Math.min(now, intended);
        }
        step.sent++;
        const f: Inflight = { route: specs[0]!.route, sentMs: now, startMs };
        inflight.push(f);
        sending = f;
        queueMicrotask(() => {
          if (sending === f) sending = null;
        });
      });
      client.on('response', (status: unknown) => {
        const now = ledger.now();
        const f = inflight.shift();
        const code = lastCode;
        const route = lastRoute;
        lastCode = null;
        lastRoute = null;
        if (f === undefined) return; // an answer to a request already given up on
        phase.record(step, route ?? f.route, Number(status), code, (now - f.startMs) * 1000, now);
      });
      client.on('timeout', () => lose(inflight, 'timeout'));
      client.on('connError', () => lose(inflight, 'connection error'));
    };
  };

  // The instances: one as fast as answered; at a rate, J staggered ones sharing rate and count.
  const total = Math.max(1, run.connections);
  const J = run.rps !== null && run.amount !== null ? staggerOf(run.rps, total) : 1;
  const plans: { delayMs: number; connections: number; rps: number | null; amount: number | null }[] = [];
  for (let j = 0; j < J; j++) {
    const rps = run.rps === null ? null : run.rps / J;
    const amount = run.amount === null ? null : Math.floor(run.amount / J) + (j < run.amount % J ? 1 : 0);
    if (amount === 0) continue;
    let connections = Math.max(1, Math.floor(total / J));
    if (rps !== null) connections = evenConnections(Math.min(connections, rps), rps);
    if (amount !== null) connections = Math.min(connections, amount);
    plans.push({ delayMs: (j * 1000) / J, connections, rps, amount });
  }
  step.connections = plans.reduce((a, p) => a + p.connections, 0);
  step.staggerMs = plans.length > 1 ? plans[plans.length - 1]!.delayMs : 0;

  const instances: autocannon.Instance[] = [];
  let stopped = false;
  const stopAll = (): void => {
    stopped = true;
    for (const i of instances) i.stop();
  };
  run.signal?.addEventListener('abort', stopAll, { once: true });
  const guard = run.maxSeconds === undefined ? undefined : setTimeout(() => {
    phase.notes.push(`step ${step.label} stopped after ${run.maxSeconds} s: the target answered too slowly to finish it`);
    stopAll();
  }, run.maxSeconds * 1000);
  const start = (plan: (typeof plans)[number]): Promise<void> => new Promise<void>((resolve, reject) => {
    if (stopped) return resolve();
    try {
      instances.push((autocannon as unknown as (o: autocannon.Options, cb: (err: unknown) => void) => autocannon.Instance)({
        url: run.url,
        connections: plan.connections,
        pipelining: 1,
        timeout: run.timeoutSeconds,
        sampleInt: 100,
        duration: run.seconds,
        ...(plan.amount !== null ? { amount: plan.amount } : {}),
        ...(plan.rps !== null ? { overallRate: plan.rps } : {}),
        requests,
        setupClient: setupClientOf(plan.rps),
        excludeErrorStats: true,
      } as autocannon.Options, (err: unknown) => (err ? reject(err instanceof Error ? err : new Error(String(err))) : resolve())));
    } catch (e) {
      reject(e instanceof Error ? e : new Error(String(e)));
    }
  });
  try {
    await Promise.all(plans.map((plan) => (plan.delayMs === 0 ? start(plan) : new Promise<void>((res) => setTimeout(res, plan.delayMs)).then(() => start(plan)))));
  } finally {
    run.signal?.removeEventListener('abort', stopAll);
    clearTimeout(guard);
  }
  // What is still in flight was cut off by the end of a timed step.
  for (const list of clients) {
    for (const f of list.splice(0)) {
      step.cutOff++;
      ledger.unanswered.set(f.route, (ledger.unanswered.get(f.route) ?? 0) + 1);
    }
  }
}
