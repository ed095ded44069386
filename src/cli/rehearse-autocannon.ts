// The closed-loop steps of `flash rehearse` (as fast as answered: a sell-out, a reserve or flow
// phase's capacity probe, queue joins) on autocannon: its clients hold the keep-alive
// connections, write each request and parse each answer, one request in flight on each. What
// autocannon does not know is a sequence (a flow's reserve, then its pay or cancel), a count of
// sequences, and which request an answer or a failure belongs to; this runner keeps that per
// connection and files every answer, timeout and connection error in the same ledger, phase
// and step as the paced sender (rehearse-load.ts), so the report reads the same whichever ran.
//
// How a connection is driven (autocannon 9, one request in flight per client): autocannon asks
// setupRequest for the next request whenever the client may send, and a client sends only
// while its `responseMax` is above what it has sent. So the runner keeps `responseMax` at what
// the client has sent, and raises it by one only when it has the next request ready: after an
// answer, when the sequence goes on or a new one may start; after a lost request (our own
// timeout, a connection error, the engine closing the connection), when a new sequence may
// start. A client with nothing more to send ends itself at once (autocannon's own check), so a
// step never sends a request it did not plan, never cuts a started sequence short at its end,
// and ends when every connection has ended. A step stopped early (Ctrl-C, its time guard, the
// engine gone, the request cap) sends nothing more, and what was in flight is filed as cut off.
//
// Rate-paced steps stay on the paced sender: autocannon keeps a rate as a quota per connection
// sent in a burst at the start of each second, which under-measures a stall (the README has the
// figures). https targets stay on it too: autocannon's clients connect with certificate
// checks turned off, and a rehearsal carries real tokens.

import { validateHeaderName, validateHeaderValue } from 'node:http';
import autocannon from 'autocannon';
import { deadAfter, errorCodeOf, runLoad, type Ledger, type LoadEnd, type LoadRun } from './rehearse-load.js';

type Obj = Record<string, unknown>;

interface Built {
  k: number;
  route: string;
  context: Obj;
  method: string;
  path: string;
  headers: Record<string, string>;
  body: string;
}

interface InFlight extends Built {
  sentMs: number;
  timer: NodeJS.Timeout;
}

/** The few fields of an autocannon 9 client this runner reads or sets. */
interface AcClient {
  reqsMade: number;
  responseMax: number;
  conn?: { prependListener(event: 'end', fn: () => void): unknown } | undefined;
  on(event: string, fn: (...args: unknown[]) => void): unknown;
}

interface Conn {
  client: AcClient | null;
  inflight: InFlight | null;
  next: Built | null;
  /** The socket whose 'end' this runner already listens to. */
  watched: unknown;
  /** Why its last request was lost, when autocannon said (a connection error). */
  lostCode: string | null;
}

/** Whether a closed-loop step to this URL runs on autocannon (plain http; a host autocannon can dial). */
export function autocannonCanRun(url: URL): boolean {
  return url.protocol === 'http:' && !url.hostname.startsWith('[');
}

/** Runs one step of a phase: as fast as answered on autocannon where it can, at a rate on the paced sender. */
export function runStep(ledger: Ledger, run: LoadRun): Promise<LoadEnd> {
  return run.rate === null && autocannonCanRun(new URL(run.url)) ? runClosedLoop(ledger, run) : runLoad(ledger, run);
}

/** Runs one closed-loop step (run.rate === null) on autocannon; the same contract as runLoad. */
export async function runClosedLoop(ledger: Ledger, run: LoadRun): Promise<LoadEnd> {
  if (run.rate !== null) throw new Error('runClosedLoop runs steps as fast as answered (rate null)');
  const { phase, step } = run;
  step.sender = 'autocannon';
  const url = new URL(run.url);
  const base = url.pathname.replace(/\/+$/, '');
  const n = Math.max(1, run.connections);
  const timeoutMs = run.timeoutSeconds * 1000;
  step.connections = n;
  const t0 = ledger.now();
  const plannedEndMs = t0 + run.seconds * 1000;
  const end: LoadEnd = { stopped: null, detail: null };
  let started = 0;
  let capped = false;
  let inRow = 0;
  let lastError = '';
  let failure: unknown = null;
  const conns: Conn[] = [];
  let instance: { stop(): void } | null = null;

  const startsLeft = (): boolean => {
    if (capped || end.stopped !== null) return false;
    if (ledger.budget.remaining <= 0) {
      // The scenario's cap: no new sequence; those started still end.
      capped = true;
      return false;
    }
    if (run.count !== null) return started < run.count;
    return ledger.now() < plannedEndMs;
  };

  /** Stops the step: nothing more is sent; what is in flight is cut off when the clients end. */
  const stop = (why: Exclude<LoadEnd['stopped'], null>, detail: string): void => {
    if (end.stopped !== null) return;
    end.stopped = why;
    end.detail = detail;
    for (const c of conns) {
      c.next = null;
      if (c.client !== null) c.client.responseMax = Math.max(1, c.client.reqsMade);
    }
    instance?.stop();
  };

  /** Builds request k of a sequence; null ends the sequence (or the request could not be built: the step stops). */
  const build = (k: number, context: Obj): Built | null => {
    const spec = run.requests[k]!;
    const b = spec.build(context);
    if (b === null) return null;
    const route = b.route ?? spec.route;
    const body = b.body ?? '';
    const headers: Record<string, string> = { ...b.headers };
    try {
      // autocannon writes headers as given: check them as node:http would before sending any.
      for (const [name, value] of Object.entries(headers)) {
        validateHeaderName(name);
        validateHeaderValue(name, value);
      }
    } catch (e) {
      failure ??= e;
      stop('guard', `a ${route} request could not be built: ${e instanceof Error ? e.message : String(e)}`);
      return null;
    }
    // autocannon sets content-length from the body; a POST without one still says 0.
    if (body === '' && spec.method !== 'GET') headers['content-length'] = '0';
    return { k, route, context, method: spec.method, path: base + b.path, headers, body };
  };

  /** The first request of the next sequence that builds, or null when no sequence may start. */
  const nextStart = (): Built | null => {
    while (startsLeft()) {
      started++;
      const b = build(0, {});
      if (b !== null) return b;
      if (end.stopped !== null) return null;
    }
    return null;
  };

  /** Gives the connection its next request, or lets it end (autocannon ends a client that may send no more). */
  const arm = (c: Conn, b: Built | null): void => {
    c.next = end.stopped === null ? b : null;
    const client = c.client;
    if (client === null) return;
    client.responseMax = Math.max(1, client.reqsMade + (c.next === null ? 0 : 1));
  };

  const lose = (c: Conn, code: 'timeout' | 'connection error' | 'connection closed' | 'cut off'): void => {
    const f = c.inflight;
    if (f === null) return;
    c.inflight = null;
    clearTimeout(f.timer);
    ledger.lost(f.route);
    if (code === 'cut off') step.cutOff++;
    else phase.record(step, f.route, 0, code, 0, ledger.now());
    run.requests[f.k]!.onLost?.(f.context);
    if (code === 'connection error' || code === 'connection closed') {
      inRow++;
      lastError = code;
      if (inRow >= deadAfter(n)) stop('engine gone', `${inRow} connection errors in a row (${lastError}): the engine at ${url.host} stopped answering`);
    }
  };

  const answered = (c: Conn, status: number, body: string): void => {
    const f = c.inflight;
    // An answer after its request was filed as timed out: counted once, as the timeout.
    if (f === null) return;
    c.inflight = null;
    clearTimeout(f.timer);
    inRow = 0;
    const at = ledger.now();
    const text = body.length > 65_536 ? body.slice(0, 65_536) : body;
    phase.record(step, f.route, status, status >= 300 ? errorCodeOf(text) : null, (at - f.sentMs) * 1000, at);
    run.requests[f.k]!.onAnswer?.(status, text, f.context, { sentMs: f.sentMs, atMs: at });
    let next: Built | null = null;
    if (f.k + 1 < run.requests.length && end.stopped === null) next = build(f.k + 1, f.context);
    arm(c, next ?? nextStart());
  };

  // What autocannon calls to build each request; `building` is the connection asking (set by
  // its client's 'request' event, which autocannon emits just before it asks).
  let building: Conn | null = null;
  let lastAnswer: { status: number; body: string } | null = null;
  const setupRequest = (req: Obj): Obj => {
    let c = building;
    building = null;
    if (c === null) {
      // A client being made: its first request was built before autocannon started.
      c = conns.find((x) => x.client === null && x.inflight === null && x.next !== null) ?? null;
      if (c === null) throw new Error('flash rehearse: autocannon made more clients than planned');
    }
    // A request still in flight here was lost without an answer (the engine closed the connection).
    if (c.inflight !== null) lose(c, c.lostCode === 'connection error' ? 'connection error' : 'connection closed');
    c.lostCode = null;
    const b = c.next;
    if (b === null) throw new Error('flash rehearse: autocannon asked for a request that was not planned');
    c.next = null;
    ledger.budget.remaining--;
    step.sent++;
    const conn = c;
    const timer = setTimeout(() => {
      // Each request has its own timeout, from when it was sent (autocannon's comes a second
      // later and only makes the client reconnect).
      lose(conn, 'timeout');
      arm(conn, nextStart());
    }, timeoutMs);
    c.inflight = { ...b, sentMs: ledger.now(), timer };
    return { ...req, method: b.method, path: b.path, headers: b.headers, body: b.body };
  };

  // Every client's first request, built before any is sent (at most one per connection).
  for (let i = 0; i < n; i++) {
    const b = nextStart();
    if (b === null) break;
    conns.push({ client: null, inflight: null, next: b, watched: null, lostCode: null });
  }

  const onAbort = (): void => stop('signal', 'interrupted');
  run.signal?.addEventListener('abort', onAbort, { once: true });
  if (run.signal?.aborted) onAbort();
  const guard = run.maxSeconds === undefined ? undefined : setTimeout(() => {
    stop('guard', `step ${step.label} stopped after ${run.maxSeconds} s: the target answered too slowly to finish it`);
  }, run.maxSeconds * 1000);

  try {
    if (conns.length > 0 && end.stopped === null) {
      await new Promise<void>((resolve, reject) => {
        const opts = {
          url: url.origin,
          connections: conns.length,
          pipelining: 1,
          // Our timeout comes first; autocannon's only makes a client reconnect after it.
          timeout: run.timeoutSeconds + 1,
          // Each client sends its first request, then only what this runner arms.
          maxConnectionRequests: 1,
          duration: Math.max(60, (run.maxSeconds ?? run.seconds + 3600) + 60),
          sampleInt: 100,
          requests: [{
            setupRequest,
            onResponse: (status: number, body: string) => {
              lastAnswer = { status, body };
            },
          }],
          setupClient: (raw: unknown) => {
            const client = raw as AcClient;
            const c = conns.find((x) => x.client === null);
            if (c === undefined) return;
            c.client = client;
            client.on('request', () => {
              // autocannon asks for a request after this event unless it is the client's first
              // (built before it started), which it sends from its constructor.
              building = client.reqsMade > 0 ? c : null;
              // Hear the engine close this connection before autocannon reconnects and sends again.
              const sock = client.conn;
              if (sock !== undefined && sock !== c.watched) {
                c.watched = sock;
                sock.prependListener('end', () => {
                  if (c.inflight === null) return;
                  lose(c, 'connection closed');
                  arm(c, nextStart());
                });
              }
            });
            client.on('response', () => {
              const a = lastAnswer;
              lastAnswer = null;
              if (a !== null) answered(c, a.status, a.body);
            });
            client.on('connError', () => {
              if (c.inflight === null) return;
              lose(c, 'connection error');
              arm(c, nextStart());
            });
            client.on('done', () => {
              // Ended: by this runner (nothing more to send) or by a stop (what was in flight is cut off).
              lose(c, 'cut off');
            });
          },
        };
        instance = autocannon(opts as unknown as autocannon.Options, (err: Error | null) => {
          if (err !== null && err !== undefined) reject(err);
          else resolve();
        }) as unknown as { stop(): void };
        if (end.stopped !== null) instance.stop();
      });
    }
  } finally {
    run.signal?.removeEventListener('abort', onAbort);
    clearTimeout(guard);
    for (const c of conns) lose(c, 'cut off');
  }
  if (failure !== null) throw failure instanceof Error ? failure : new Error(String(failure));
  if (capped && end.stopped === null) {
    end.stopped = 'cap';
    end.detail = `step ${step.label} stopped after ${step.sent.toLocaleString('en-US')} requests: the scenario's cap of ${ledger.budget.max.toLocaleString('en-US')} requests was reached`;
  }
  if (end.stopped === 'guard' || end.stopped === 'cap') phase.notes.push(end.detail!);
  return end;
}
