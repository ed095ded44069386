// Crash and restart over real HTTP. Client loops reserve, pay and cancel while the engine
// is killed with SIGKILL at random moments and restarted on the same data directory; every
// 2xx the clients saw must survive, in the state it was answered in or a later one, and the
// counters must add up exactly. Also: SIGTERM drains and exits 0, and a data directory is
// guarded against a second engine and against a different FLASH_SHARDS.
// Authentication is on throughout (shared/API.md v2): the clients reserve, read and cancel
// with the shop's token and pay with the payment side's (LoadClient's defaults), SKUs are
// set up with the admin token, and every restarted engine still refuses a call with none.

import { readFileSync, readdirSync, writeFileSync } from 'node:fs';
import { connect, type Socket } from 'node:net';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { shardForSku } from '../src/domain/routing.js';
import {
  ADMIN_TOKEN, NO_TOKEN, TOKENS, api, makeDataDir, runEngineToExit, sleep, startEngine, stopAllEngines, type Engine,
} from './support/engine-process.js';
import { LoadClient, bearer, rawRequest } from './support/http-raw.js';
import { createSku, expectError, uniq, uniqWhere } from './support/http-kit.js';

afterAll(stopAllEngines);

type Status = 'held' | 'paid' | 'cancelled' | 'expired';
const laterOrSame: Record<Status, Status[]> = {
  held: ['held', 'paid', 'cancelled', 'expired'],
  paid: ['paid'],
  cancelled: ['cancelled'],
  expired: ['expired'],
};

interface Known {
  id: string;
  sku: string;
  buyerId: string;
  qty: number;
  /** The last status a 2xx told us (or a GET after a restart showed). */
  status: Status;
  /** A pay or cancel was sent and its answer never came: the status may have moved on. */
  settleInDoubt: boolean;
}

interface ReserveAsk {
  sku: string;
  buyerId: string;
  qty: number;
  idempotencyKey: string;
}

/** Everything the clients were told, and everything they sent without hearing back. */
class Ledger {
  readonly known = new Map<string, Known>();
  inDoubt: ReserveAsk[] = [];
  readonly unexpected: string[] = [];
  acks = 0;

  learn(ask: ReserveAsk, view: any): void {
    const prior = this.known.get(view.reservationId);
    if (prior !== undefined && (prior.buyerId !== ask.buyerId || prior.sku !== ask.sku)) {
      this.unexpected.push(`reservation id ${view.reservationId} was issued twice (${prior.buyerId} and ${ask.buyerId})`);
    }
    if (prior === undefined) this.known.set(view.reservationId, { id: view.reservationId, sku: ask.sku, buyerId: ask.buyerId, qty: ask.qty, status: view.status, settleInDoubt: false });
  }
}

const env = { FLASH_BUYER_RPS: '0', FLASH_SNAPSHOT_EVERY: '150' };

/** One client loop: reserve, then pay (55%), cancel (35%) or keep the hold (10%). */
async function clientLoop(client: LoadClient, ledger: Ledger, skus: string[], tag: string, stop: { now: boolean }): Promise<void> {
  let n = 0;
  while (!stop.now) {
    const buyerId = `${tag}-${n++}`;
    const ask: ReserveAsk = { sku: skus[n % skus.length]!, buyerId, qty: 1 + (n % 3 === 0 ? 1 : 0), idempotencyKey: `idem-${buyerId}` };
    let r;
    try {
      r = await client.call('POST', '/v1/reservations', ask, {}, 5000);
    } catch (e) {
      // A refused connection never carried the request; anything else may have.
      if ((e as NodeJS.ErrnoException).code !== 'ECONNREFUSED') ledger.inDoubt.push(ask);
      await sleep(10);
      continue;
    }
    if (r.status === 409 && r.body?.error?.code === 'sold_out') {
      await sleep(5);
      continue;
    }
    if (r.status !== 201) {
      // A 503 (shutting down, shard unavailable) may or may not have been applied.
      if (r.status === 503) ledger.inDoubt.push(ask);
      else ledger.unexpected.push(`reserve ${JSON.stringify(ask)} -> ${r.status} ${JSON.stringify(r.body)}`);
      continue;
    }
    ledger.acks++;
    ledger.learn(ask, r.body);
    const k = ledger.known.get(r.body.reservationId)!;
    const dice = Math.random();
    if (dice >= 0.9) continue;
    const action = dice < 0.55 ? 'pay' : 'cancel';
    k.settleInDoubt = true;
    try {
      const s = await client.call('POST', `/v1/reservations/${k.id}/${action}`, {}, {}, 5000);
      if (s.status === 200) {
        ledger.acks++;
        k.status = s.body.status;
        k.settleInDoubt = false;
      } else if (s.status !== 503) {
        ledger.unexpected.push(`${action} ${k.id} -> ${s.status} ${JSON.stringify(s.body)}`);
      }
    } catch {
      // No answer: the settle stays in doubt until a GET after the restart tells.
    }
  }
}

/** After a restart: resolve every doubt, then check every acknowledgement and every counter. */
async function verify(engine: Engine, ledger: Ledger, stock: Record<string, number>, context: string): Promise<void> {
  const client = new LoadClient(engine.port, 64);
  try {
    // The restarted engine is closed by default too: a reserve with no token holds nothing.
    const [firstSku] = Object.keys(stock);
    const anonymous = await client.call('POST', '/v1/reservations', { sku: firstSku, buyerId: 'no-token', qty: 1 }, { authorization: NO_TOKEN });
    expectError(anonymous, 401, 'unauthorized');
    // A reserve that got no answer is retried with its idempotency key: a durable one is
    // answered again (and is then known), a lost one is made now or refused sold_out.
    const doubts = ledger.inDoubt;
    ledger.inDoubt = [];
    const retried = await Promise.all(doubts.map((ask) => client.call('POST', '/v1/reservations', ask)));
    retried.forEach((r, i) => {
      if (r.status === 201) ledger.learn(doubts[i]!, r.body);
      else if (!(r.status === 409 && r.body?.error?.code === 'sold_out')) ledger.unexpected.push(`${context}: retry of ${JSON.stringify(doubts[i])} -> ${r.status} ${JSON.stringify(r.body)}`);
    });

    const all = [...ledger.known.values()];
    const views = await Promise.all(all.map((k) => client.call('GET', `/v1/reservations/${k.id}`)));
    const problems: string[] = [];
    all.forEach((k, i) => {
      const v = views[i]!;
      if (v.status !== 200) return void problems.push(`${k.id} (acknowledged ${k.status}) -> ${v.status} ${JSON.stringify(v.body)}`);
      const now = v.body.status as Status;
      const allowed = k.settleInDoubt ? laterOrSame[k.status] : [k.status];
      if (!allowed.includes(now)) problems.push(`${k.id} was acknowledged ${k.status}${k.settleInDoubt ? ' (a settle was in doubt)' : ''} but is now ${now}`);
      if (v.body.qty !== k.qty || v.body.sku !== k.sku || v.body.buyerId !== k.buyerId) problems.push(`${k.id} changed: ${JSON.stringify(v.body)}`);
      k.status = now;
      k.settleInDoubt = false;
    });
    expect(problems, `${context}: acknowledged reservations after the restart`).toEqual([]);

    for (const [sku, onHand] of Object.entries(stock)) {
      const view = (await client.call('GET', `/v1/skus/${sku}`)).body;
      const mine = all.filter((k) => k.sku === sku);
      const held = mine.filter((k) => k.status === 'held').reduce((n, k) => n + k.qty, 0);
      const sold = mine.filter((k) => k.status === 'paid').reduce((n, k) => n + k.qty, 0);
      expect({ onHand: view.onHand, reserved: view.reserved, sold: view.sold, available: view.available }, `${context}: counters of ${sku}`)
        .toEqual({ onHand, reserved: held, sold, available: onHand - held - sold });
      expect(view.reserved + view.sold).toBeLessThanOrEqual(view.onHand);
    }
    expect(ledger.unexpected, context).toEqual([]);
  } finally {
    client.close();
  }
}

/** SKUs on both shards, and one in a drop that lives away from its home shard (routing after a restart). */
function pickSkus(): { plain0: string; plain1: string; dropped: string; dropId: string } {
  const dropId = uniqWhere('crash-drop', () => true);
  return {
    plain0: uniqWhere('crash-a', (s) => shardForSku(s, null, 2) === 0),
    plain1: uniqWhere('crash-b', (s) => shardForSku(s, null, 2) === 1),
    dropped: uniqWhere('crash-drop-sku', (s) => shardForSku(s, dropId, 2) !== shardForSku(s, null, 2)),
    dropId,
  };
}

async function runLoad(engine: Engine, ledger: Ledger, skus: string[], loops: number, until: Promise<unknown>): Promise<void> {
  const client = new LoadClient(engine.port, loops);
  const stop = { now: false };
  const running = Array.from({ length: loops }, (_, i) => clientLoop(client, ledger, skus, `${uniq('c')}-${i}`, stop));
  await until;
  stop.now = true;
  await Promise.all(running);
  client.close();
}

describe('kill -9 under load', () => {
  it('keeps every acknowledged reservation and exact counters across four SIGKILLs at random moments, and sells exactly the rest', async () => {
    const dataDir = makeDataDir();
    const { plain0, plain1, dropped, dropId } = pickSkus();
    const stock: Record<string, number> = { [plain0]: 700, [plain1]: 700, [dropped]: 300 };
    let engine = await startEngine({ dataDir, env });
    const a = api(engine.url);
    await createSku(a, plain0, { stock: stock[plain0] });
    await createSku(a, plain1, { stock: stock[plain1] });
    await createSku(a, dropped, { stock: stock[dropped], dropId });
    const ledger = new Ledger();
    const delays: number[] = [];
    for (let round = 1; round <= 4; round++) {
      const delayMs = 250 + Math.floor(Math.random() * 650);
      delays.push(delayMs);
      const current = engine;
      await runLoad(current, ledger, [plain0, plain1, dropped], 6, sleep(delayMs).then(() => current.kill9()));
      engine = await startEngine({ dataDir, env });
      if (process.env.DEBUG_CRASH) console.log(`round ${round}: kill at ${delayMs} ms, acks ${ledger.acks}, in doubt ${ledger.inDoubt.length}, settles in doubt ${[...ledger.known.values()].filter((k) => k.settleInDoubt).length}`);
      await verify(engine, ledger, stock, `after SIGKILL ${round} (kills at ${delays.join(', ')} ms into each round, ${ledger.acks} acks so far)`);
    }
    expect(ledger.acks).toBeGreaterThan(100);

    // Exactly the remaining units can still be sold, and not one more.
    const client = new LoadClient(engine.port, 64);
    try {
      for (const sku of Object.keys(stock)) {
        const left = (await client.call('GET', `/v1/skus/${sku}`)).body.available as number;
        const asks: ReserveAsk[] = Array.from({ length: left + 20 }, (_, i) => ({ sku, buyerId: `final-${sku}-${i}`, qty: 1, idempotencyKey: `final-${i}` }));
        const replies = await Promise.all(asks.map((ask) => client.call('POST', '/v1/reservations', ask)));
        const won = replies.filter((r) => r.status === 201);
        const codes = replies.map((r) => r.body?.error?.code ?? r.status).join(',');
        expect(won.length, `${sku}: ${left} units were available; answers ${codes.slice(0, 300)}`).toBe(left);
        for (const r of replies) if (r.status !== 201) expect([r.status, r.body?.error?.code]).toEqual([409, 'sold_out']);
        const paid = await Promise.all(won.map((r) => client.call('POST', `/v1/reservations/${r.body.reservationId}/pay`, {})));
        expect(paid.every((p) => p.status === 200)).toBe(true);
        won.forEach((r, i) => ledger.learn(asks[replies.indexOf(r)]!, { ...r.body, status: paid[i]!.body.status }));
        const view = (await client.call('GET', `/v1/skus/${sku}`)).body;
        expect(view.available).toBe(0);
        expect(view.reserved + view.sold).toBe(stock[sku]);
      }
    } finally {
      client.close();
    }
    // And it all survives one more crash.
    await engine.kill9();
    engine = await startEngine({ dataDir, env });
    await verify(engine, ledger, stock, 'after the final SIGKILL');
    expect(await engine.stop()).toBe(0);
  });
});

describe('the audit trail across kill -9', () => {
  it('keeps every acknowledged change of policy and stock, with actor and reason, and a stock import\'s, through SIGKILLs (snapshots included)', async () => {
    const dataDir = makeDataDir();
    let engine = await startEngine({ dataDir, env: { FLASH_SNAPSHOT_EVERY: '5' } });
    let a = api(engine.url);
    const sku = uniq('audit-kill');
    const acked: { actor: string; action: string; reason: string | null }[] = [];
    expect((await a.put(`/v1/skus/${sku}`, { stock: 10, reason: 'launch' }, TOKENS.operator)).status).toBe(201);
    acked.push({ actor: 'ops-ann', action: 'create', reason: 'launch' });
    for (let round = 0; round < 3; round++) {
      for (let i = 0; i < 4; i++) {
        const delta = i % 2 === 0 ? 3 : -1;
        expect((await a.post(`/v1/skus/${sku}/stock`, { delta, reason: `round ${round} step ${i}` }, TOKENS.operator)).status).toBe(200);
        acked.push({ actor: 'ops-ann', action: 'stock', reason: `round ${round} step ${i}` });
      }
      expect((await a.put(`/v1/skus/${sku}`, { maxPerBuyer: round + 1 }, ADMIN_TOKEN)).status).toBe(200);
      acked.push({ actor: 'admin', action: 'update', reason: null });
      await engine.kill9();
      engine = await startEngine({ dataDir, env: { FLASH_SNAPSHOT_EVERY: '5' } });
      a = api(engine.url);
    }
    const imported = uniq('audit-kill-imp');
    const r = await a.raw('POST', '/v1/admin/stock-import', { body: `sku,stock\n${imported},4\n`, headers: { 'content-type': 'text/csv' }, token: TOKENS.operator });
    expect(r.status, r.text).toBe(200);
    await engine.kill9();
    engine = await startEngine({ dataDir });
    a = api(engine.url);
    const trail = (await a.get(`/v1/skus/${sku}/audit?limit=1000`, TOKENS.viewer)).body.items as { actor: string; action: string; reason: string | null; after: Record<string, number> }[];
    expect(trail.map((e) => ({ actor: e.actor, action: e.action, reason: e.reason }))).toEqual([...acked].reverse());
    // The last stock change's after is the SKU's onHand now: 10 + 3 rounds of (+3 -1 +3 -1).
    expect(trail.find((e) => e.action === 'stock')!.after.onHand).toBe(10 + 3 * 4);
    expect((await a.get(`/v1/skus/${sku}`)).body.onHand).toBe(10 + 3 * 4);
    expect((await a.get(`/v1/skus/${imported}/audit`, TOKENS.viewer)).body.items).toMatchObject([{ actor: 'ops-ann', action: 'create', reason: 'stock import' }]);
  });
});

describe('SIGTERM', () => {
  it('exits 0 under load, loses nothing acknowledged, and a restart recovers everything', async () => {
    const dataDir = makeDataDir();
    const { plain0, plain1, dropped, dropId } = pickSkus();
    const stock: Record<string, number> = { [plain0]: 500, [plain1]: 500, [dropped]: 200 };
    const engine = await startEngine({ dataDir, env });
    const a = api(engine.url);
    await createSku(a, plain0, { stock: stock[plain0] });
    await createSku(a, plain1, { stock: stock[plain1] });
    await createSku(a, dropped, { stock: stock[dropped], dropId });
    const ledger = new Ledger();
    let exitCode: number | null | undefined;
    const delayMs = 250 + Math.floor(Math.random() * 500);
    await runLoad(engine, ledger, [plain0, plain1, dropped], 6, sleep(delayMs).then(async () => {
      exitCode = await engine.stop('SIGTERM');
    }));
    expect(exitCode, engine.logs().slice(-2000)).toBe(0);
    expect(engine.logs()).toContain('stopped cleanly');
    expect(ledger.acks).toBeGreaterThan(20);
    const again = await startEngine({ dataDir, env });
    await verify(again, ledger, stock, `after SIGTERM at ${delayMs} ms`);
    // A fresh gateway knows no drops yet: admin calls on a drop's SKU must still find it.
    const b = api(again.url);
    const updated = await b.put(`/v1/skus/${dropped}`, { maxPerBuyer: 7 }, ADMIN_TOKEN);
    expect(updated.status, updated.text).toBe(200);
    expect(updated.body).toMatchObject({ sku: dropped, dropId, maxPerBuyer: 7, onHand: stock[dropped] });
    expect((await b.put(`/v1/skus/${dropped}`, { dropId, maxPerBuyer: 8 }, ADMIN_TOKEN)).status).toBe(200);
    expect((await b.post(`/v1/skus/${dropped}/stock`, { delta: 1 }, ADMIN_TOKEN)).body).toMatchObject({ onHand: stock[dropped]! + 1 });
    expect(await again.stop()).toBe(0);
  });

  it('finishes a call that is in flight when SIGTERM arrives, refuses new calls with 503 shutting_down, then exits 0', async () => {
    const dataDir = makeDataDir();
    const engine = await startEngine({ dataDir, env: { ...env, FLASH_SHUTDOWN_GRACE_MS: '8000' } });
    const a = api(engine.url);
    const sku = uniq('drain');
    await createSku(a, sku, { stock: 10 });

    // A: a reservation whose body is still arriving when the signal comes.
    const bodyA = Buffer.from(JSON.stringify({ sku, buyerId: 'in-flight', qty: 2, idempotencyKey: 'drain-a' }));
    const sockA = await openSocket(engine.port);
    const replyA = readReply(sockA);
    sockA.write(`POST /v1/reservations HTTP/1.1\r\nhost: x\r\n${bearer(TOKENS.shop)}\r\ncontent-type: application/json\r\ncontent-length: ${bodyA.length}\r\n\r\n`);
    sockA.write(bodyA.subarray(0, 10));
    // B: a connection whose request head is only half sent (so it is not idle).
    const bodyB = JSON.stringify({ sku, buyerId: 'too-late', qty: 1 });
    const sockB = await openSocket(engine.port);
    const replyB = readReply(sockB);
    sockB.write(`POST /v1/reservations HTTP/1.1\r\nhost: x\r\n${bearer(TOKENS.shop)}\r\n`);
    await sleep(100);

    engine.child.kill('SIGTERM');
    await waitFor(() => engine.logs().includes('stopping'), 5000);
    sockB.write(`content-type: application/json\r\ncontent-length: ${Buffer.byteLength(bodyB)}\r\n\r\n${bodyB}`);
    const b = await replyB;
    expect(b.status, b.text).toBe(503);
    expect(JSON.parse(b.text).error.code).toBe('shutting_down');
    // No new connections are accepted while draining.
    await expect(rawRequest(engine.port, 'GET /healthz HTTP/1.1\r\nhost: x', [], 2000)).rejects.toThrow();

    sockA.write(bodyA.subarray(10));
    const r = await replyA;
    expect(r.status, r.text).toBe(201);
    const held = JSON.parse(r.text);
    expect(await engine.stop()).toBe(0);

    const again = await startEngine({ dataDir, env });
    const b2 = api(again.url);
    const view = (await b2.get(`/v1/skus/${sku}`)).body;
    expect({ reserved: view.reserved, sold: view.sold }).toEqual({ reserved: 2, sold: 0 });
    expect((await b2.get(`/v1/reservations/${held.reservationId}`)).body).toMatchObject({ status: 'held', qty: 2, buyerId: 'in-flight' });
    expect(await again.stop()).toBe(0);
  });
});

describe('expiry across a restart', () => {
  it('expires a hold that fell due while the engine was down and frees its units after the restart', async () => {
    const dataDir = makeDataDir();
    const first = await startEngine({ dataDir, env });
    const a = api(first.url);
    const sku = uniq('down-expiry');
    await createSku(a, sku, { stock: 3, holdSeconds: 1, maxPerBuyer: 1 });
    const held = (await a.post('/v1/reservations', { sku, buyerId: 'sleeper' })).body;
    expect(held.status).toBe('held');
    await first.kill9();
    await sleep(Math.max(0, held.expiresAt - Date.now()) + 300);
    const again = await startEngine({ dataDir, env });
    const b = api(again.url);
    // Watched through /metrics, which never runs a shard turn (see http-contract).
    let available: number | undefined;
    const deadline = Date.now() + 3000;
    while (Date.now() < deadline) {
      const m = /flash_sku_available\{sku="([^"]+)"\} (\d+)/g;
      for (const hit of (await b.get('/metrics')).text.matchAll(m)) if (hit[1] === sku) available = Number(hit[2]);
      if (available === 3) break;
      await sleep(50);
    }
    expect(available).toBe(3);
    expect((await b.get(`/v1/reservations/${held.reservationId}`)).body.status).toBe('expired');
    expect((await b.post('/v1/reservations', { sku, buyerId: 'sleeper' })).status).toBe(201);
    expect(await again.stop()).toBe(0);
  });
});

describe('data directory guards', () => {
  it('refuses to start, with a clear message, when a write-ahead log record in the middle is corrupt', async () => {
    const dataDir = makeDataDir();
    const first = await startEngine({ dataDir, env: { FLASH_BUYER_RPS: '0' } });
    const a = api(first.url);
    const sku = uniqWhere('corrupt', (s) => shardForSku(s, null, 2) === 0);
    await createSku(a, sku, { stock: 100 });
    for (let i = 0; i < 20; i++) expect((await a.post('/v1/reservations', { sku, buyerId: `c${i}` })).status).toBe(201);
    await first.kill9();
    const dir = join(dataDir, 'shard-0');
    const segments = readdirSync(dir).filter((f) => f.endsWith('.log')).sort();
    expect(segments.length).toBeGreaterThan(0);
    const path = join(dir, segments[0]!);
    const bytes = readFileSync(path);
    bytes[24] = bytes[24]! ^ 0xff; // inside the payload of the first record
    writeFileSync(path, bytes);
    const broken = await runEngineToExit({ dataDir, env: { FLASH_BUYER_RPS: '0' } });
    expect(broken.code, broken.logs).not.toBe(0);
    expect(broken.logs).toMatch(/corrupt|checksum|crc/i);
  });

  it('refuses to start a second engine on a data directory in use, with a clear message, and leaves the first one serving', async () => {
    const dataDir = makeDataDir();
    const first = await startEngine({ dataDir });
    const a = api(first.url);
    const sku = uniq('guard');
    await createSku(a, sku, { stock: 5 });
    const second = await runEngineToExit({ dataDir });
    expect(second.code).not.toBe(0);
    expect(second.logs).toMatch(/in use/i);
    expect(second.logs).toContain(dataDir);
    expect((await a.get('/healthz')).status).toBe(200);
    expect((await a.post('/v1/reservations', { sku, buyerId: 'still-here' })).status).toBe(201);
    expect(await first.stop()).toBe(0);
  });

  it('refuses to start with a different FLASH_SHARDS on an existing data directory, with a clear message, and loses nothing', async () => {
    const dataDir = makeDataDir();
    const first = await startEngine({ dataDir });
    const sku = uniq('shards');
    await createSku(api(first.url), sku, { stock: 5 });
    await first.kill9();
    for (const shards of ['3', '1']) {
      const other = await runEngineToExit({ dataDir, env: { FLASH_SHARDS: shards } });
      expect(other.code, other.logs).not.toBe(0);
      expect(other.logs).toContain('FLASH_SHARDS');
    }
    const back = await startEngine({ dataDir });
    expect((await api(back.url).get(`/v1/skus/${sku}`)).body).toMatchObject({ sku, onHand: 5 });
    expect(await back.stop()).toBe(0);
  });
});

function openSocket(port: number): Promise<Socket> {
  return new Promise((resolve, reject) => {
    const s = connect(port, '127.0.0.1', () => resolve(s));
    s.once('error', reject);
  });
}

/** The first HTTP response on a socket (head + content-length body). */
function readReply(s: Socket): Promise<{ status: number; text: string }> {
  return new Promise((resolve, reject) => {
    let buf = Buffer.alloc(0);
    const tryParse = (final: boolean): boolean => {
      const sep = buf.indexOf('\r\n\r\n');
      if (sep < 0) return false;
      const head = buf.subarray(0, sep).toString('latin1');
      const length = Number(/content-length:\s*(\d+)/i.exec(head)?.[1] ?? 0);
      const body = buf.subarray(sep + 4);
      if (body.length < length && !final) return false;
      resolve({ status: Number(head.split(' ')[1]), text: body.subarray(0, length).toString('utf8') });
      return true;
    };
    s.on('data', (c: Buffer) => {
      buf = Buffer.concat([buf, c]);
      tryParse(false);
    });
    s.on('close', () => {
      if (!tryParse(true)) reject(new Error(`socket closed without a response; got ${JSON.stringify(buf.toString('latin1'))}`));
    });
    s.on('error', () => undefined);
  });
}

async function waitFor(check: () => boolean, timeoutMs: number): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!check()) {
    if (Date.now() > deadline) throw new Error(`condition not met within ${timeoutMs} ms`);
    await sleep(20);
  }
}
