// The Redis + Lua baseline: the classic seckill design. One EVALSHA per reserve checks the
// quota and the stock, takes the units and records the hold with its expiry in a sorted
// set, atomically (Redis runs one script at a time). The front sweeps due holds every
// 200 ms with another script; pay and cancel are scripts too and expire a due hold rather
// than pay it late. Every key starts with a per-run prefix, deleted after the run.
//
// Keys under prefix P: `P s:<sku>` hash (onHand reserved sold maxPerBuyer holdMs),
// `P q:<sku>` hash (buyer -> units held or bought), `P r:<id>` hash (one reservation),
// `P exp` sorted set (held ids by expiresAt), `P i:<sku>:<buyer length>:<buyer>:<key>`
// (idempotency), `P skus` set. Scripts build some keys from the prefix, which is fine on
// one Redis server (not on a cluster).

import { createClient } from 'redis';
import {
  checkSkuAgainstRecords, report, type ReservationRecord, type ReservationStatus, type ReservationStore, type ReserveInput,
  type ReserveResult, type SettleResult, type SkuCounters, type SkuPolicy, type StoreAudit,
} from './baseline-store.js';

type Client = ReturnType<typeof createClient>;
type Reply = (string | null)[];

const viewFields = `'status', 'sku', 'buyer', 'qty', 'createdAt', 'expiresAt', 'settledAt', 'paymentRef'`;

// KEYS: sku hash, quota hash, exp zset, new reservation hash, idempotency key.
// ARGV: buyer, qty, nowMs, id, has idempotency key ('1'/'0'), prefix, sku.
const reserveLua = `
local s = redis.call('HMGET', KEYS[1], 'onHand', 'reserved', 'sold', 'maxPerBuyer', 'holdMs')
if not s[1] then return {'unknown_sku'} end
local qty = tonumber(ARGV[2])
if ARGV[5] == '1' then
  local prev = redis.call('GET', KEYS[5])
  if prev then
    local r = redis.call('HMGET', ARGV[6] .. 'r:' .. prev, ${viewFields})
    return {'replay', prev, unpack(r)}
  end
end
local used = tonumber(redis.call('HGET', KEYS[2], ARGV[1]) or '0')
local max = tonumber(s[4])
if max > 0 and used + qty > max then return {'quota_exceeded', tostring(used), s[4]} end
local available = tonumber(s[1]) - tonumber(s[2]) - tonumber(s[3])
if available < qty then return {'sold_out', tostring(available)} end
local expiresAt = tonumber(ARGV[3]) + tonumber(s[5])
redis.call('HINCRBY', KEYS[1], 'reserved', qty)
redis.call('HINCRBY', KEYS[2], ARGV[1], qty)
redis.call('HSET', KEYS[4], 'sku', ARGV[7], 'buyer', ARGV[1], 'qty', qty, 'status', 'held', 'createdAt', ARGV[3], 'expiresAt', expiresAt)
redis.call('ZADD', KEYS[3], expiresAt, ARGV[4])
if ARGV[5] == '1' then redis.call('SET', KEYS[5], ARGV[4]) end
return {'ok', tostring(expiresAt)}
`;

// Gives back what a held reservation holds: its units, and its quota unless it was paid.
const releaseLua = `
local function release(prefix, rk, r, target, now)
  local skuKey = prefix .. 's:' .. r[2]
  local qty = tonumber(r[4])
  redis.call('HINCRBY', skuKey, 'reserved', -qty)
  if target == 'paid' then
    redis.call('HINCRBY', skuKey, 'sold', qty)
  else
    local qk = prefix .. 'q:' .. r[2]
    if redis.call('HINCRBY', qk, r[3], -qty) <= 0 then redis.call('HDEL', qk, r[3]) end
  end
  redis.call('HSET', rk, 'status', target, 'settledAt', now)
end
`;

// KEYS: reservation hash, exp zset. ARGV: 'pay'|'cancel', nowMs, prefix, paymentRef or '', id.
const settleLua = `${releaseLua}
local r = redis.call('HMGET', KEYS[1], 'status', 'sku', 'buyer', 'qty', 'expiresAt')
if not r[1] then return {'unknown'} end
local kind = 'unchanged'
if r[1] == 'held' then
  local target = ARGV[1] == 'pay' and 'paid' or 'cancelled'
  kind = 'settled'
  if tonumber(ARGV[2]) >= tonumber(r[5]) then target = 'expired'; kind = 'expired_now' end
  release(ARGV[3], KEYS[1], r, target, ARGV[2])
  if target == 'paid' and ARGV[4] ~= '' then redis.call('HSET', KEYS[1], 'paymentRef', ARGV[4]) end
  redis.call('ZREM', KEYS[2], ARGV[5])
end
return {kind, ARGV[5], unpack(redis.call('HMGET', KEYS[1], ${viewFields}))}
`;

// KEYS: exp zset. ARGV: nowMs, limit, prefix.
const sweepLua = `${releaseLua}
local ids = redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', ARGV[1], 'LIMIT', 0, tonumber(ARGV[2]))
for _, id in ipairs(ids) do
  local rk = ARGV[3] .. 'r:' .. id
  local r = redis.call('HMGET', rk, 'status', 'sku', 'buyer', 'qty')
  if r[1] == 'held' then release(ARGV[3], rk, r, 'expired', ARGV[1]) end
  redis.call('ZREM', KEYS[1], id)
end
return #ids
`;

// KEYS: sku hash, skus set. ARGV: sku, stock, maxPerBuyer or '', holdMs or ''.
const upsertLua = `
local created = redis.call('EXISTS', KEYS[1]) == 0
if created then
  redis.call('HSET', KEYS[1], 'onHand', ARGV[2], 'reserved', 0, 'sold', 0, 'maxPerBuyer', 0, 'holdMs', 600000)
  redis.call('SADD', KEYS[2], ARGV[1])
end
if ARGV[3] ~= '' then redis.call('HSET', KEYS[1], 'maxPerBuyer', ARGV[3]) end
if ARGV[4] ~= '' then redis.call('HSET', KEYS[1], 'holdMs', ARGV[4]) end
return created and 1 or 0
`;

const scripts = { reserve: reserveLua, settle: settleLua, sweep: sweepLua, upsert: upsertLua } as const;
type ScriptName = keyof typeof scripts;

/** Keys matching `match`, in arrays of up to 1000 (node-redis 4 yields one key at a time). */
async function* scanBatches(client: Client, match: string): AsyncGenerator<string[]> {
  let batch: string[] = [];
  for await (const keys of client.scanIterator({ MATCH: match, COUNT: 1000 }) as AsyncIterable<string | string[]>) {
    for (const k of Array.isArray(keys) ? keys : [keys]) batch.push(k);
    if (batch.length >= 1000) {
      yield batch;
      batch = [];
    }
  }
  if (batch.length > 0) yield batch;
}

function record(id: string, f: Reply): ReservationRecord {
  const num = (v: string | null | undefined): number => Number(v ?? 0);
  return {
    id, status: f[0] as ReservationStatus, sku: f[1] ?? '', buyerId: f[2] ?? '', qty: num(f[3]),
    createdAtMs: num(f[4]), expiresAtMs: num(f[5]), settledAtMs: f[6] == null ? null : num(f[6]), paymentRef: f[7] ?? null,
  };
}

export class RedisStore implements ReservationStore {
  readonly name = 'redis';
  private readonly shas = new Map<ScriptName, string>();

  private constructor(private readonly client: Client, private readonly prefix: string) {}

  static async open(url: string, prefix: string): Promise<RedisStore> {
    const client = createClient({ url });
    client.on('error', (e: unknown) => process.stderr.write(`redis client: ${String(e)}\n`));
    await client.connect();
    const store = new RedisStore(client, prefix);
    for (const name of Object.keys(scripts) as ScriptName[]) store.shas.set(name, await client.scriptLoad(scripts[name]));
    return store;
  }

  /** EVALSHA, loading the script again if the server lost it (another user's SCRIPT FLUSH). */
  private async run(name: ScriptName, keys: string[], args: string[]): Promise<unknown> {
    try {
      return await this.client.evalSha(this.shas.get(name)!, { keys, arguments: args });
    } catch (e) {
      if (!String(e).includes('NOSCRIPT')) throw e;
      this.shas.set(name, await this.client.scriptLoad(scripts[name]));
      return this.client.evalSha(this.shas.get(name)!, { keys, arguments: args });
    }
  }

  async durability(): Promise<string> {
    const c = { ...(await this.client.configGet('appendonly')), ...(await this.client.configGet('appendfsync')), ...(await this.client.configGet('save')) };
    return `appendonly ${c.appendonly}, appendfsync ${c.appendfsync}, save "${c.save}"`;
  }

  async upsertSku(sku: string, policy: Partial<SkuPolicy>, nowMs: number): Promise<{ created: boolean; counters: SkuCounters }> {
    void nowMs;
    const created = (await this.run('upsert', [`${this.prefix}s:${sku}`, `${this.prefix}skus`], [
      sku, String(policy.stock ?? 0), policy.maxPerBuyer === undefined ? '' : String(policy.maxPerBuyer),
      policy.holdSeconds === undefined ? '' : String(policy.holdSeconds * 1000),
    ])) === 1;
    return { created, counters: (await this.getSku(sku))! };
  }

  async getSku(sku: string): Promise<SkuCounters | null> {
    const [onHand, reserved, sold, max, holdMs] = await this.client.hmGet(`${this.prefix}s:${sku}`, ['onHand', 'reserved', 'sold', 'maxPerBuyer', 'holdMs']);
    if (onHand == null) return null;
    const c = { onHand: Number(onHand), reserved: Number(reserved), sold: Number(sold) };
    return { sku, ...c, available: c.onHand - c.reserved - c.sold, mode: 'pre_deduct', holdSeconds: Number(holdMs) / 1000, maxPerBuyer: Number(max) };
  }

  async reserve(input: ReserveInput, nowMs: number): Promise<ReserveResult> {
    const p = this.prefix;
    const idem = input.idemKey === undefined ? `${p}i:-` : `${p}i:${input.sku}:${input.buyerId.length}:${input.buyerId}:${input.idemKey}`;
    const reply = (await this.run('reserve', [`${p}s:${input.sku}`, `${p}q:${input.sku}`, `${p}exp`, `${p}r:${input.id}`, idem], [
      input.buyerId, String(input.qty), String(nowMs), input.id, input.idemKey === undefined ? '0' : '1', p, input.sku,
    ])) as Reply;
    switch (reply[0]) {
      case 'ok': return {
        ok: true, replayed: false,
        record: { id: input.id, sku: input.sku, buyerId: input.buyerId, qty: input.qty, status: 'held', createdAtMs: nowMs, expiresAtMs: Number(reply[1]), settledAtMs: null, paymentRef: null },
      };
      case 'replay': return { ok: true, replayed: true, record: record(reply[1]!, reply.slice(2)) };
      case 'unknown_sku': return { ok: false, code: 'unknown_sku', message: `no sku ${input.sku}` };
      case 'quota_exceeded': return { ok: false, code: 'quota_exceeded', message: `buyer may hold or buy at most ${reply[2]} units (has ${reply[1]})` };
      case 'sold_out': return { ok: false, code: 'sold_out', message: `sku ${input.sku} has ${reply[1]} units available` };
      default: throw new Error(`reserve script answered ${String(reply[0])}`);
    }
  }

  async settle(id: string, action: 'pay' | 'cancel', paymentRef: string | null, nowMs: number): Promise<SettleResult> {
    const reply = (await this.run('settle', [`${this.prefix}r:${id}`, `${this.prefix}exp`], [action, String(nowMs), this.prefix, paymentRef ?? '', id])) as Reply;
    if (reply[0] === 'unknown') return null;
    return { kind: reply[0] as 'settled' | 'expired_now' | 'unchanged', record: record(id, reply.slice(2)) };
  }

  async getReservation(id: string): Promise<ReservationRecord | null> {
    const f = await this.client.hmGet(`${this.prefix}r:${id}`, ['status', 'sku', 'buyer', 'qty', 'createdAt', 'expiresAt', 'settledAt', 'paymentRef']);
    return f[0] == null ? null : record(id, f);
  }

  async sweep(nowMs: number, limit: number): Promise<number> {
    return Number(await this.run('sweep', [`${this.prefix}exp`], [String(nowMs), String(limit), this.prefix]));
  }

  /** Reads every reservation record (SCAN + HMGET) and recomputes the SKU counters and quotas. */
  async audit(focusSku?: string): Promise<StoreAudit> {
    const a: StoreAudit = { skus: 0, reservations: 0, held: 0, paid: 0, expired: 0, cancelled: 0, violations: [] };
    const held = new Map<string, number>();
    const paid = new Map<string, number>();
    const quota = new Map<string, number>();
    const add = (m: Map<string, number>, k: string, n: number): void => void m.set(k, (m.get(k) ?? 0) + n);
    const focusCounts = new Map<string, number>();
    for await (const batch of scanBatches(this.client, `${this.prefix}r:*`)) {
      const rows = await Promise.all(batch.map((k) => this.client.hmGet(k, ['status', 'sku', 'buyer', 'qty'])));
      for (const [status, sku, buyer, qtyText] of rows) {
        const qty = Number(qtyText);
        a.reservations++;
        a[status as ReservationStatus]++;
        if (status === 'held') add(held, sku!, qty);
        if (status === 'paid') add(paid, sku!, qty);
        if (status === 'held' || status === 'paid') add(quota, `${sku}\u0000${buyer}`, qty);
        if (sku === focusSku) add(focusCounts, status!, 1);
      }
    }
    const skus = await this.client.sMembers(`${this.prefix}skus`);
    const maxOf = new Map<string, number>();
    for (const sku of skus) {
      const c = (await this.getSku(sku))!;
      a.skus++;
      maxOf.set(sku, c.maxPerBuyer);
      checkSkuAgainstRecords(a.violations, c, held.get(sku) ?? 0, paid.get(sku) ?? 0);
    }
    for (const [k, used] of quota) {
      const [sku, buyer] = k.split('\u0000') as [string, string];
      const max = maxOf.get(sku) ?? 0;
      if (max > 0 && used > max) report(a.violations, `buyer ${buyer} holds or bought ${used} units of ${sku}, over maxPerBuyer ${max}`);
    }
    if (focusSku !== undefined) {
      a.focus = { sku: focusSku, held: focusCounts.get('held') ?? 0, paid: focusCounts.get('paid') ?? 0, heldUnits: held.get(focusSku) ?? 0, paidUnits: paid.get(focusSku) ?? 0 };
    }
    return a;
  }

  async close(): Promise<void> {
    await this.client.quit();
  }
}

/** Deletes every key under `prefix` (the bench's own namespace, never anything else). */
export async function dropRedisNamespace(url: string, prefix: string): Promise<number> {
  const client = createClient({ url });
  client.on('error', () => undefined);
  await client.connect();
  let deleted = 0;
  try {
    for await (const batch of scanBatches(client, `${prefix}*`)) deleted += await client.unlink(batch);
  } finally {
    await client.quit();
  }
  return deleted;
}

/** null when Redis answers PING at `url`, else why not. */
export async function redisUnavailable(url: string): Promise<string | null> {
  const client = createClient({ url, socket: { connectTimeout: 2000, reconnectStrategy: false } });
  client.on('error', () => undefined);
  try {
    await client.connect();
    await client.ping();
    await client.quit();
    return null;
  } catch (e) {
    return `Redis at ${url} does not answer (${e instanceof Error ? e.message : String(e)})`;
  }
}
