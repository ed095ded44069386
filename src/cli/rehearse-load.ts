// The load side of `flash rehearse`: a small open-loop sender (node:http keep-alive
// connections, at most one request in flight on each) drives every step, and every answer is
// filed here, by route and status (to hold beside the engine's flash_http_requests_total), by
// outcome (201, 409 sold_out, 503 overloaded, 307 redirect, timeout, ...), per phase, per
// step and per second, with its latency in an hdr histogram (all answers, and 2xx apart).
//
// A step starts sequences (a reserve; a flow's reserve then its pay or cancel): at a rate,
// sequence k is meant to start at step start + k / rate, each at its own time (wrk2's pacing,
// not a quota per second sent in a burst), on whichever connection is free; when none is free
// it waits for one, and its latency is measured from when it was meant to be sent, so a stall
// counts the wait of every request that was due during it (coordinated omission corrected).
// A sequence's next request (a flow's pay) is sent as soon as the answer before it came, and
// is measured from then. A request meant for the step's planned seconds but sent after them
// is counted `late`: a step whose late share passes 1 % did not hold its rate, and a target at
// that rate fails. As fast as answered (closed loop) every connection starts a new sequence as
// soon as its last one ended, until the step's seconds (or count) are used; latency is then
// from send to answer. A step never cuts a started sequence short: it ends when every request
// it sent was answered, timed out (each request has its own timeout) or failed to connect, so
// every request is counted once on both sides. Redirects are never followed: a 3xx answer is
// filed as a failure. A step stops early after many connection errors in a row (the engine is
// gone: nothing is hammered), on Ctrl-C, when it overruns its time guard, or when the
// scenario's request cap is reached.

import * as http from 'node:http';
import * as https from 'node:https';
import { latencyHistogram, recordUs, type Histogram } from './report-kit.js';

type Obj = Record<string, unknown>;

/** The outcome an answer is filed under: `201`, `409 sold_out`, `307 redirect`, `timeout`, ... */
export function outcomeOf(status: number, code: string | null): string {
  if (status === 0) return code ?? 'no answer';
  if (status >= 200 && status < 300) return String(status);
  if (status >= 300 && status < 400) return `${status} redirect`;
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

const is2xx = (status: number): boolean => status >= 200 && status < 300;

export interface SecondBucket {
  answers: number;
  ok: number;
  outcomes: Map<string, number>;
  hist: Histogram;
}

/** A step's time, ms (what its rate is measured over). */
export const activeMs = (s: { startMs: number; endMs: number }): number => Math.max(0, s.endMs - s.startMs);

export class StepLog {
  startMs = 0;
  endMs = 0;
  /** Requests planned (rate x seconds, or a count); null: as many as the time allows. */
  intended: number | null = null;
  sent = 0;
  answered = 0;
  /** 2xx answers. */
  ok = 0;
  /** Meant for the step's planned seconds, sent after them: the connections could not keep the rate. */
  late = 0;
  /** Sent, then given up unanswered when the step was stopped (Ctrl-C, its time guard, the engine gone). */
  cutOff = 0;
  errors = 0;
  readonly outcomes = new Map<string, number>();
  /** Latency of every answer, and of the 2xx answers alone (what targets are judged on). */
  readonly hist = latencyHistogram(3);
  readonly okHist = latencyHistogram(3);

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
  readonly okHist = latencyHistogram(3);
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
    recordUs(this.hist, latencyUs);
    recordUs(step.hist, latencyUs);
    recordUs(b.hist, latencyUs);
    if (is2xx(status)) {
      b.ok++;
      step.ok++;
      recordUs(this.okHist, latencyUs);
      recordUs(step.okHist, latencyUs);
    }
  }
}

/** The scenario's cap on the requests of its load, shared by every step of the run. */
export interface RequestBudget {
  readonly max: number;
  remaining: number;
}

/** Everything one run sent and got back, from the first call to the last. */
export class Ledger {
  private readonly t0 = performance.now();
  readonly startedAt = Date.now();
  /** route -> status -> answers, for every call of the run (setup, load, checks, cleanup). */
  readonly requests = new Map<string, Map<number, number>>();
  readonly phases: PhaseLog[] = [];
  /** Calls that got no answer at all (network errors, timeouts, cut off), by route. */
  readonly unanswered = new Map<string, number>();
  /** 4xx answers of calls outside the phases (setup's look for names, reads, cleanup), by the API's code. */
  readonly refusals = new Map<string, number>();
  readonly budget: RequestBudget;

  constructor(requestsMax = Number.MAX_SAFE_INTEGER) {
    this.budget = { max: requestsMax, remaining: requestsMax };
  }

  /** Milliseconds since the run started. */
  now(): number {
    return performance.now() - this.t0;
  }

  count(route: string, status: number): void {
    let r = this.requests.get(route);
    if (r === undefined) this.requests.set(route, (r = new Map()));
    bump(r, status);
  }

  refused(code: string): void {
    bump(this.refusals, code);
  }

  lost(route: string): void {
    bump(this.unanswered, route);
  }

  phase(name: string, kind: string, description: string): PhaseLog {
    const p = new PhaseLog(this, name, kind, description);
    p.startMs = this.now();
    this.phases.push(p);
    return p;
  }
}

/** When a request of a sequence was sent and answered (ms, run clock). */
export interface Timing {
  sentMs: number;
  atMs: number;
}

/** One request of a sequence (a flow is reserve, then pay or cancel). */
export interface RequestSpec {
  route: string;
  method: 'GET' | 'POST' | 'PUT';
  /** The request to send, built just before it is sent; null ends the sequence (nothing sent). */
  build(context: Obj): { route?: string; path: string; headers: Record<string, string>; body?: string } | null;
  /** Sees each answer's status and body, with the sequence's context. */
  onAnswer?(status: number, body: string, context: Obj, timing: Timing): void;
  /** The request got no answer (a timeout, a connection error, cut off): it may or may not have been applied. */
  onLost?(context: Obj): void;
}

export interface LoadRun {
  /** The engine's URL (a base path in it is put before every request's path). */
  url: string;
  /** At most this many requests in flight, one per keep-alive connection. */
  connections: number;
  /** Sequences started per second, each at its own time; null: as fast as answered (closed loop). */
  rate: number | null;
  /** Sequences to start; null (closed loop only): as many as `seconds` allow. */
  count: number | null;
  /** The planned seconds: requests sent after them are late (at a rate); no sequence starts after them (closed loop without a count). */
  seconds: number;
  timeoutSeconds: number;
  /** The sequence each start sends: requests[0], then on each answer the next one. */
  requests: RequestSpec[];
  phase: PhaseLog;
  step: StepLog;
  signal?: AbortSignal;
  /** A step still running after this long is stopped (a rate the target cannot take would run on). */
  maxSeconds?: number;
  /**
   * Keep-alive connections to send on, left open at the end (the caller destroys the agent):
   * a warm-up's, so that a measured step does not begin by opening every connection at once,
   * which a stall-measuring bench would count as the engine's (70-300 ms at 128 connections
   * on a 2-core machine). Without it each step opens its own and closes them when done.
   */
  agent?: http.Agent;
}

export interface LoadEnd {
  /** Why the step stopped before it was done: Ctrl-C, its time guard, the request cap, or the engine gone. */
  stopped: 'signal' | 'guard' | 'cap' | 'engine gone' | null;
  detail: string | null;
}

/** Connection errors in a row after which a step gives up: the engine is gone, and is not hammered. */
export function deadAfter(connections: number): number {
  return Math.max(50, 2 * connections);
}

const lostCode = (e: unknown): string => {
  const code = (e as { code?: unknown } | null)?.code;
  return code === 'ECONNRESET' || code === 'EPIPE' ? 'connection closed' : 'connection error';
};

/** Runs one step; every answer, failure and cut-off is filed in run.phase / run.step. */
export async function runLoad(ledger: Ledger, run: LoadRun): Promise<LoadEnd> {
  const { phase, step } = run;
  const url = new URL(run.url);
  const secure = url.protocol === 'https:';
  const base = url.pathname.replace(/\/+$/, '');
  // An IPv6 literal is bracketed in a URL, not in a host to dial.
  const hostname = url.hostname.replace(/^\[(.*)\]$/, '$1');
  const n = Math.max(1, run.connections);
  const agent = run.agent ?? (secure
    ? new https.Agent({ keepAlive: true, maxSockets: n, maxFreeSockets: n, scheduling: 'lifo' })
    : new http.Agent({ keepAlive: true, maxSockets: n, maxFreeSockets: n, scheduling: 'lifo' }));
  const request = secure ? https.request : http.request;
  const timeoutMs = run.timeoutSeconds * 1000;
  const intervalMs = run.rate === null ? 0 : 1000 / run.rate;
  step.connections = n;
  const t0 = ledger.now();
  const plannedEndMs = t0 + run.seconds * 1000;
  const end: LoadEnd = { stopped: null, detail: null };

  let started = 0;
  let inFlight = 0;
  let capped = false;
  let inRow = 0;
  let lastError = '';
  const ready: { k: number; context: Obj; readyMs: number }[] = [];
  const live = new Set<{ cut: () => void }>();
  let timer: NodeJS.Timeout | null = null;
  let failure: unknown = null;
  let finished = false;
  let resolveDone!: () => void;
  const done = new Promise<void>((r) => (resolveDone = r));

  const startsLeft = (): boolean => {
    if (capped || end.stopped !== null) return false;
    if (run.count !== null) return started < run.count;
    return ledger.now() < plannedEndMs;
  };

  const finish = (): void => {
    if (finished) return;
    finished = true;
    if (timer !== null) clearTimeout(timer);
    if (run.agent === undefined) agent.destroy();
    resolveDone();
  };

  /** Stops the step: nothing more is sent, and what is in flight is given up (cut off). */
  const stop = (why: Exclude<LoadEnd['stopped'], null>, detail: string): void => {
    if (end.stopped !== null) return;
    end.stopped = why;
    end.detail = detail;
    ready.length = 0;
    for (const r of [...live]) r.cut();
  };

  /** Sends request k of a sequence; false when it was not built (the sequence ends). */
  const send = (k: number, context: Obj, intendedMs: number, first: boolean): boolean => {
    const spec = run.requests[k]!;
    const built = spec.build(context);
    if (built === null) return false;
    const route = built.route ?? spec.route;
    const body = built.body ?? '';
    const headers: Record<string, string> = { ...built.headers };
    if (body !== '' || spec.method !== 'GET') headers['content-length'] = String(Buffer.byteLength(body));
    let req: http.ClientRequest;
    try {
      req = request({ protocol: url.protocol, hostname, port: url.port, method: spec.method, path: base + built.path, headers, agent });
    } catch (e) {
      // A request node refuses to build (a header it will not send): nothing sent, the step ends.
      failure ??= e;
      stop('guard', `a ${route} request could not be built: ${e instanceof Error ? e.message : String(e)}`);
      return false;
    }
    ledger.budget.remaining--;
    inFlight++;
    step.sent++;
    const sentMs = ledger.now();
    if (first && run.rate !== null && intendedMs < plannedEndMs && sentMs > plannedEndMs) step.late++;
    let settled = false;
    let res: http.IncomingMessage | null = null;
    let text = '';
    const settle = (status: number, code: string | null): void => {
      if (settled) return;
      settled = true;
      clearTimeout(timeout);
      live.delete(entry);
      inFlight--;
      const at = ledger.now();
      if (status === 0) {
        ledger.lost(route);
        if (code === 'cut off') step.cutOff++;
        else phase.record(step, route, 0, code, 0, at);
        spec.onLost?.(context);
        if (code === 'connection error' || code === 'connection closed') {
          inRow++;
          lastError = code;
          if (inRow >= deadAfter(n)) stop('engine gone', `${inRow} connection errors in a row (${lastError}): the engine at ${url.host} stopped answering`);
        }
      } else {
        inRow = 0;
        phase.record(step, route, status, code, (at - intendedMs) * 1000, at);
        spec.onAnswer?.(status, text, context, { sentMs, atMs: at });
        if (k + 1 < run.requests.length && end.stopped === null) ready.push({ k: k + 1, context, readyMs: at });
      }
      pump();
    };
    // Each request has its own timeout, from when it was sent: a timeout is filed against it alone.
    const timeout = setTimeout(() => {
      req.destroy();
      settle(0, 'timeout');
    }, timeoutMs);
    const entry = {
      cut: (): void => {
        req.destroy();
        settle(0, 'cut off');
      },
    };
    live.add(entry);
    req.on('response', (r) => {
      res = r;
      r.setEncoding('utf8');
      r.on('data', (c: string) => {
        if (text.length < 65_536) text += c;
      });
      r.on('end', () => settle(r.statusCode ?? 0, (r.statusCode ?? 0) >= 300 ? errorCodeOf(text) : null));
      r.on('error', () => settle(0, 'connection closed'));
    });
    req.on('error', (e) => settle(0, lostCode(e)));
    // A connection closed before the whole answer came (a complete one still ends with 'end').
    req.on('close', () => {
      if (res === null || !res.complete) settle(0, 'connection closed');
    });
    req.end(body === '' ? undefined : body);
    return true;
  };

  const pump = (): void => {
    if (finished) return;
    if (timer !== null) {
      clearTimeout(timer);
      timer = null;
    }
    while (inFlight < n && end.stopped === null) {
      const next = ready.shift();
      if (next !== undefined) {
        send(next.k, next.context, next.readyMs, false);
        continue;
      }
      if (!startsLeft()) break;
      const now = ledger.now();
      const due = run.rate === null ? now : t0 + started * intervalMs;
      if (due > now) {
        timer = setTimeout(pump, Math.max(0, Math.ceil(due - now)));
        break;
      }
      if (ledger.budget.remaining <= 0) {
        // The scenario's cap: no new sequence; those started still end.
        capped = true;
        break;
      }
      started++;
      send(0, {}, due, true);
    }
    if (inFlight === 0 && ready.length === 0 && !startsLeft()) finish();
  };

  const onAbort = (): void => {
    stop('signal', 'interrupted');
    pump();
  };
  run.signal?.addEventListener('abort', onAbort, { once: true });
  if (run.signal?.aborted) onAbort();
  const guard = run.maxSeconds === undefined ? undefined : setTimeout(() => {
    stop('guard', `step ${step.label} stopped after ${run.maxSeconds} s: the target answered too slowly to finish it`);
    pump();
  }, run.maxSeconds * 1000);
  try {
    pump();
    await done;
  } finally {
    run.signal?.removeEventListener('abort', onAbort);
    clearTimeout(guard);
  }
  if (failure !== null) throw failure instanceof Error ? failure : new Error(String(failure));
  if (capped && end.stopped === null) {
    end.stopped = 'cap';
    end.detail = `step ${step.label} stopped after ${step.sent.toLocaleString('en-US')} requests: the scenario's cap of ${ledger.budget.max.toLocaleString('en-US')} requests was reached`;
  }
  if (end.stopped === 'guard' || end.stopped === 'cap') phase.notes.push(end.detail!);
  return end;
}
