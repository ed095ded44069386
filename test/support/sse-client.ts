// A small Server-Sent Events reader for tests (node:http, so a test can stop reading, or
// hold many streams open): the status and headers, every event as it arrives, the raw text,
// a wait for the first event that matches, and the console's ticks with their SKUs merged
// (a tick lists every SKU when `full`, else only those that changed).

import { request, type IncomingHttpHeaders, type IncomingMessage } from 'node:http';

export interface SseEvent {
  event: string;
  data: string;
}

export class SseClient {
  readonly events: SseEvent[] = [];
  /** Every `tick`, its `skus` made whole: every SKU known then, in sku order. */
  readonly ticks: any[] = [];
  private readonly skus = new Map<string, any>();
  /** Everything received, as text (for an error answer: its JSON body). */
  raw = '';
  ended = false;
  private buffer = '';
  private waiters: (() => void)[] = [];

  private constructor(readonly status: number, readonly headers: IncomingHttpHeaders, private readonly res: IncomingMessage) {
    res.setEncoding('utf8');
    res.on('data', (chunk: string) => {
      this.raw += chunk;
      this.buffer += chunk;
      let end: number;
      while ((end = this.buffer.indexOf('\n\n')) >= 0) {
        const block = this.buffer.slice(0, end);
        this.buffer = this.buffer.slice(end + 2);
        let event = 'message';
        let data = '';
        for (const line of block.split('\n')) {
          if (line.startsWith('event: ')) event = line.slice(7);
          else if (line.startsWith('data: ')) data += line.slice(6);
        }
        if (data === '') continue;
        this.events.push({ event, data });
        if (event === 'tick') this.merge(JSON.parse(data));
      }
      this.wake();
    });
    const done = (): void => {
      this.ended = true;
      this.wake();
    };
    res.on('end', done);
    res.on('close', done);
    res.on('error', done);
  }

  /** Opens `url` with a bearer token (none when empty); resolves once the answer's headers are in. */
  static open(url: string, token: string): Promise<SseClient> {
    return new Promise((resolve, reject) => {
      const req = request(url, { headers: token === '' ? {} : { authorization: `Bearer ${token}` }, agent: false }, (res) => resolve(new SseClient(res.statusCode ?? 0, res.headers, res)));
      req.on('error', reject);
      req.end();
    });
  }

  /** The error body of a non-200 answer, parsed, once it has all arrived. */
  async body(): Promise<any> {
    await this.until(() => this.ended, 10_000, 'the answer to end');
    return JSON.parse(this.raw);
  }

  /** The first event (seen already, or coming) that `match` accepts. */
  async waitFor(match: (e: SseEvent) => boolean, timeoutMs = 20_000, what = 'a matching event'): Promise<SseEvent> {
    let found: SseEvent | undefined;
    await this.until(() => (found = this.events.find(match)) !== undefined, timeoutMs, what);
    return found!;
  }

  /** The first tick (SKUs merged) that `match` accepts. */
  async tick(match: (tick: any) => boolean, timeoutMs = 20_000, what = 'a matching tick'): Promise<any> {
    let found: any;
    await this.until(() => (found = this.ticks.find(match)) !== undefined, timeoutMs, what);
    return found;
  }

  private merge(tick: any): void {
    if (tick.full) this.skus.clear();
    for (const s of tick.skus) this.skus.set(s.sku, s);
    for (const sku of tick.removed) this.skus.delete(sku);
    this.ticks.push({ ...tick, skus: [...this.skus.values()].sort((x, y) => (x.sku < y.sku ? -1 : x.sku > y.sku ? 1 : 0)) });
  }

  /** Stops reading, without closing: the server's buffer for this client grows. */
  pause(): void {
    this.res.pause();
  }

  close(): void {
    this.res.destroy();
  }

  private until(done: () => boolean, timeoutMs: number, what: string): Promise<void> {
    return new Promise((resolve, reject) => {
      const check = (): boolean => {
        if (!done()) return false;
        clearTimeout(timer);
        resolve();
        return true;
      };
      const timer = setTimeout(() => {
        this.waiters = this.waiters.filter((w) => w !== waiter);
        reject(new Error(`waited ${timeoutMs} ms for ${what}; received ${this.events.length} events, the last: ${this.events.at(-1)?.data.slice(0, 500) ?? 'none'}`));
      }, timeoutMs);
      const waiter = (): void => {
        if (check()) this.waiters = this.waiters.filter((w) => w !== waiter);
      };
      if (!check()) this.waiters.push(waiter);
    });
  }

  private wake(): void {
    for (const w of [...this.waiters]) w();
  }
}
