// The PostgreSQL baseline: what a team would build on one database. A reserve first reads
// the SKU and the buyer's quota without a lock, refusing at once when that already says
// no; otherwise it runs one transaction on a pooled connection (16 by default): upsert the
// buyer's quota row with a conditional ON CONFLICT (no row back = quota exceeded), then the
// conditional `UPDATE skus SET reserved = reserved + qty WHERE on_hand - reserved - sold >= qty`
// and the reservations insert in one statement, then COMMIT (fsync'ed: synchronous_commit
// as the server has it). Every transaction takes its row locks in one order (reservation,
// quota, SKU) so they never deadlock. The front sweeps due holds every 200 ms.

import pg from 'pg';
import {
  checkSkuAgainstRecords, report, type ReservationRecord, type ReservationStatus, type ReservationStore, type ReserveInput,
  type ReserveResult, type SettleResult, type SkuCounters, type SkuPolicy, type StoreAudit,
} from './baseline-store.js';

const schemaPattern = /^[a-z][a-z0-9_]{0,62}$/;

function checkedSchema(schema: string): string {
  if (!schemaPattern.test(schema)) throw new Error(`schema name ${schema} must match ${schemaPattern}`);
  return schema;
}

// Read without a lock or a transaction: a refusal it decides (unknown SKU, quota, sold out,
// in the engine's order) was true when the row was read, so it is a valid answer; a grant
// is decided only inside the transaction. This keeps a sold-out flood off the row lock.
const precheckSql = `
SELECT s.on_hand - s.reserved - s.sold AS available, s.max_per_buyer, COALESCE(q.used, 0) AS used
FROM skus s LEFT JOIN quotas q ON q.sku = s.sku AND q.buyer_id = $2 WHERE s.sku = $1`;

const quotaSql = `
WITH s AS (SELECT max_per_buyer FROM skus WHERE sku = $1),
up AS (
  INSERT INTO quotas AS q (sku, buyer_id, used)
  SELECT $1, $2, $3 FROM s WHERE s.max_per_buyer > 0 AND $3 <= s.max_per_buyer
  ON CONFLICT (sku, buyer_id) DO UPDATE SET used = q.used + EXCLUDED.used
    WHERE q.used + EXCLUDED.used <= (SELECT max_per_buyer FROM skus WHERE sku = $1)
  RETURNING used)
SELECT s.max_per_buyer, (SELECT count(*) FROM up)::int AS granted,
  (SELECT used FROM quotas WHERE sku = $1 AND buyer_id = $2) AS used FROM s`;

const takeSql = `
WITH s AS (
  UPDATE skus SET reserved = reserved + $2 WHERE sku = $1 AND on_hand - reserved - sold >= $2 RETURNING hold_ms)
INSERT INTO reservations (id, sku, buyer_id, qty, status, created_at, expires_at, idem_key)
SELECT $3, $1, $4, $2, 'held', $5::bigint, $5::bigint + s.hold_ms, $6 FROM s
RETURNING expires_at`;

const settleSql = `
UPDATE reservations SET status = CASE WHEN expires_at <= $2 THEN 'expired' ELSE $3 END, settled_at = $2,
  payment_ref = CASE WHEN expires_at > $2 AND $3 = 'paid' THEN $4 ELSE payment_ref END
WHERE id = $1 AND status = 'held'
RETURNING id, sku, buyer_id, qty, status, created_at, expires_at, settled_at, payment_ref`;

const sweepSql = `
WITH due AS (
  SELECT id FROM reservations WHERE status = 'held' AND expires_at <= $1 ORDER BY expires_at LIMIT $2 FOR UPDATE SKIP LOCKED)
UPDATE reservations r SET status = 'expired', settled_at = $1 FROM due WHERE r.id = due.id
RETURNING r.sku, r.buyer_id, r.qty`;

const auditSkusSql = `
SELECT s.sku, s.on_hand, s.reserved, s.sold,
  COALESCE(sum(r.qty) FILTER (WHERE r.status = 'held'), 0)::int AS held_units,
  COALESCE(sum(r.qty) FILTER (WHERE r.status = 'paid'), 0)::int AS paid_units
FROM skus s LEFT JOIN reservations r ON r.sku = s.sku GROUP BY s.sku`;

const auditQuotaSql = `
SELECT r.sku, r.buyer_id, sum(r.qty)::int AS used, s.max_per_buyer FROM reservations r JOIN skus s ON s.sku = r.sku
WHERE s.max_per_buyer > 0 AND r.status IN ('held', 'paid')
GROUP BY r.sku, r.buyer_id, s.max_per_buyer HAVING sum(r.qty) > s.max_per_buyer LIMIT 20`;

interface ReservationRow {
  id: string; sku: string; buyer_id: string; qty: number; status: ReservationStatus;
  created_at: string; expires_at: string; settled_at: string | null; payment_ref: string | null;
}

function record(row: ReservationRow): ReservationRecord {
  return {
    id: row.id, sku: row.sku, buyerId: row.buyer_id, qty: row.qty, status: row.status,
    createdAtMs: Number(row.created_at), expiresAtMs: Number(row.expires_at),
    settledAtMs: row.settled_at === null ? null : Number(row.settled_at), paymentRef: row.payment_ref,
  };
}

function counters(row: { sku: string; on_hand: number; reserved: number; sold: number; max_per_buyer: number; hold_ms: number }): SkuCounters {
  return {
    sku: row.sku, onHand: row.on_hand, reserved: row.reserved, sold: row.sold, available: row.on_hand - row.reserved - row.sold,
    mode: 'pre_deduct', holdSeconds: row.hold_ms / 1000, maxPerBuyer: row.max_per_buyer,
  };
}

/** Runs `work` in one transaction on a pooled connection; ROLLBACK when it returns rollback or throws. */
async function inTransaction<T>(pool: pg.Pool, work: (c: pg.PoolClient) => Promise<{ value: T; rollback?: boolean }>): Promise<T> {
  const c = await pool.connect();
  try {
    await c.query('BEGIN');
    const out = await work(c);
    await c.query(out.rollback === true ? 'ROLLBACK' : 'COMMIT');
    return out.value;
  } catch (e) {
    await c.query('ROLLBACK').catch(() => undefined);
    throw e;
  } finally {
    c.release();
  }
}

export class PgStore implements ReservationStore {
  readonly name = 'postgres';

  constructor(private readonly pool: pg.Pool) {}

  static open(url: string, schema: string, poolSize: number): PgStore {
    const pool = new pg.Pool({ connectionString: url, max: poolSize, options: `-c search_path=${checkedSchema(schema)}` });
    pool.on('error', (e) => process.stderr.write(`pg pool: ${e.message}\n`));
    return new PgStore(pool);
  }

  async durability(): Promise<string> {
    const show = async (name: string): Promise<string> => String(Object.values((await this.pool.query(`SHOW ${name}`)).rows[0] as object)[0]);
    return `synchronous_commit ${await show('synchronous_commit')}, fsync ${await show('fsync')}, wal_sync_method ${await show('wal_sync_method')}`;
  }

  async upsertSku(sku: string, policy: Partial<SkuPolicy>, nowMs: number): Promise<{ created: boolean; counters: SkuCounters }> {
    void nowMs;
    const r = await this.pool.query(
      `INSERT INTO skus (sku, on_hand, max_per_buyer, hold_ms) VALUES ($1, $2, COALESCE($3, 0), COALESCE($4, 600000))
       ON CONFLICT (sku) DO UPDATE SET max_per_buyer = COALESCE($3, skus.max_per_buyer), hold_ms = COALESCE($4, skus.hold_ms)
       RETURNING *, (xmax = 0) AS created`,
      [sku, policy.stock ?? 0, policy.maxPerBuyer ?? null, policy.holdSeconds === undefined ? null : policy.holdSeconds * 1000],
    );
    return { created: r.rows[0].created as boolean, counters: counters(r.rows[0]) };
  }

  async getSku(sku: string): Promise<SkuCounters | null> {
    const r = await this.pool.query({ name: 'get-sku', text: 'SELECT * FROM skus WHERE sku = $1', values: [sku] });
    return r.rows[0] === undefined ? null : counters(r.rows[0]);
  }

  async reserve(input: ReserveInput, nowMs: number): Promise<ReserveResult> {
    if (input.idemKey !== undefined) {
      const prev = await this.pool.query('SELECT * FROM reservations WHERE sku = $1 AND buyer_id = $2 AND idem_key = $3', [input.sku, input.buyerId, input.idemKey]);
      if (prev.rows[0] !== undefined) return this.replay(prev.rows[0] as ReservationRow);
    }
    const refused = await this.precheck(input);
    if (refused !== null) return refused;
    try {
      return await inTransaction(this.pool, (c) => this.reserveIn(c, input, nowMs));
    } catch (e) {
      // Two first calls with one idempotency key: the unique index let one in; replay it.
      if ((e as { code?: string }).code === '23505' && input.idemKey !== undefined) return this.reserve(input, nowMs);
      throw e;
    }
  }

  private async precheck(input: ReserveInput): Promise<ReserveResult | null> {
    const r = await this.pool.query({ name: 'precheck', text: precheckSql, values: [input.sku, input.buyerId] });
    const row = r.rows[0] as { available: number; max_per_buyer: number; used: number } | undefined;
    if (row === undefined) return { ok: false, code: 'unknown_sku', message: `no sku ${input.sku}` };
    if (row.max_per_buyer > 0 && row.used + input.qty > row.max_per_buyer) {
      return { ok: false, code: 'quota_exceeded', message: `buyer may hold or buy at most ${row.max_per_buyer} units (has ${row.used})` };
    }
    if (row.available < input.qty) return { ok: false, code: 'sold_out', message: `sku ${input.sku} has ${row.available} units available` };
    return null;
  }

  /** A used key answers its first reservation, whatever this request's qty (API.md). */
  private replay(row: ReservationRow): ReserveResult {
    return { ok: true, replayed: true, record: record(row) };
  }

  private async reserveIn(c: pg.PoolClient, input: ReserveInput, nowMs: number): Promise<{ value: ReserveResult; rollback?: boolean }> {
    const q = await c.query({ name: 'quota', text: quotaSql, values: [input.sku, input.buyerId, input.qty] });
    const policy = q.rows[0] as { max_per_buyer: number; granted: number; used: number | null } | undefined;
    if (policy === undefined) return { value: { ok: false, code: 'unknown_sku', message: `no sku ${input.sku}` }, rollback: true };
    if (policy.max_per_buyer > 0 && policy.granted === 0) {
      return { value: { ok: false, code: 'quota_exceeded', message: `buyer may hold or buy at most ${policy.max_per_buyer} units (has ${policy.used ?? 0})` }, rollback: true };
    }
    const t = await c.query({ name: 'take', text: takeSql, values: [input.sku, input.qty, input.id, input.buyerId, nowMs, input.idemKey ?? null] });
    if (t.rows[0] === undefined) return { value: { ok: false, code: 'sold_out', message: `sku ${input.sku} has fewer than ${input.qty} units available` }, rollback: true };
    const expiresAtMs = Number(t.rows[0].expires_at);
    return { value: { ok: true, replayed: false, record: { id: input.id, sku: input.sku, buyerId: input.buyerId, qty: input.qty, status: 'held', createdAtMs: nowMs, expiresAtMs, settledAtMs: null, paymentRef: null } } };
  }

  async settle(id: string, action: 'pay' | 'cancel', paymentRef: string | null, nowMs: number): Promise<SettleResult> {
    const settled = await inTransaction(this.pool, async (c) => {
      const u = await c.query({ name: 'settle', text: settleSql, values: [id, nowMs, action === 'pay' ? 'paid' : 'cancelled', paymentRef] });
      const row = u.rows[0] as ReservationRow | undefined;
      if (row === undefined) return { value: null };
      await this.release(c, row);
      return { value: { kind: row.status === 'expired' ? 'expired_now' as const : 'settled' as const, record: record(row) } };
    });
    if (settled !== null) return settled;
    const r = await this.getReservation(id);
    return r === null ? null : { kind: 'unchanged', record: r };
  }

  /** Gives back what a reservation held (its row is locked by the caller): units, and quota unless paid. */
  private async release(c: pg.PoolClient, row: ReservationRow): Promise<void> {
    if (row.status === 'paid') {
      await c.query({ name: 'release-paid', text: 'UPDATE skus SET reserved = reserved - $2, sold = sold + $2 WHERE sku = $1', values: [row.sku, row.qty] });
      return;
    }
    await c.query({ name: 'release-quota', text: 'UPDATE quotas SET used = used - $3 WHERE sku = $1 AND buyer_id = $2', values: [row.sku, row.buyer_id, row.qty] });
    await c.query({ name: 'release-units', text: 'UPDATE skus SET reserved = reserved - $2 WHERE sku = $1', values: [row.sku, row.qty] });
  }

  async getReservation(id: string): Promise<ReservationRecord | null> {
    const r = await this.pool.query({ name: 'get-reservation', text: 'SELECT * FROM reservations WHERE id = $1', values: [id] });
    return r.rows[0] === undefined ? null : record(r.rows[0] as ReservationRow);
  }

  async sweep(nowMs: number, limit: number): Promise<number> {
    return inTransaction(this.pool, async (c) => {
      const due = (await c.query(sweepSql, [nowMs, limit])).rows as { sku: string; buyer_id: string; qty: number }[];
      if (due.length === 0) return { value: 0 };
      // Summed per row first (UPDATE ... FROM applies one source row per target row), and
      // in sorted order, quotas before SKUs like every other transaction.
      const quotas = new Map<string, [string, string, number]>();
      const units = new Map<string, number>();
      for (const d of due) {
        const k = `${d.sku}\u0000${d.buyer_id}`;
        quotas.set(k, [d.sku, d.buyer_id, (quotas.get(k)?.[2] ?? 0) + d.qty]);
        units.set(d.sku, (units.get(d.sku) ?? 0) + d.qty);
      }
      const q = [...quotas.values()].sort((a, b) => (a[0] + a[1] < b[0] + b[1] ? -1 : 1));
      await c.query(`UPDATE quotas SET used = used - v.qty FROM (SELECT unnest($1::text[]) AS sku, unnest($2::text[]) AS buyer, unnest($3::int[]) AS qty) v
        WHERE quotas.sku = v.sku AND quotas.buyer_id = v.buyer`, [q.map((x) => x[0]), q.map((x) => x[1]), q.map((x) => x[2])]);
      const s = [...units.entries()].sort((a, b) => (a[0] < b[0] ? -1 : 1));
      await c.query(`UPDATE skus SET reserved = reserved - v.qty FROM (SELECT unnest($1::text[]) AS sku, unnest($2::int[]) AS qty) v WHERE skus.sku = v.sku`,
        [s.map((x) => x[0]), s.map((x) => x[1])]);
      return { value: due.length };
    });
  }

  async audit(focusSku?: string): Promise<StoreAudit> {
    const a: StoreAudit = { skus: 0, reservations: 0, held: 0, paid: 0, expired: 0, cancelled: 0, violations: [] };
    for (const row of (await this.pool.query('SELECT status, count(*)::int AS n FROM reservations GROUP BY status')).rows as { status: ReservationStatus; n: number }[]) {
      a[row.status] = row.n;
      a.reservations += row.n;
    }
    for (const r of (await this.pool.query(auditSkusSql)).rows) {
      a.skus++;
      checkSkuAgainstRecords(a.violations, { sku: r.sku, onHand: r.on_hand, reserved: r.reserved, sold: r.sold }, r.held_units, r.paid_units);
    }
    for (const r of (await this.pool.query(auditQuotaSql)).rows) {
      report(a.violations, `buyer ${r.buyer_id} holds or bought ${r.used} units of ${r.sku}, over maxPerBuyer ${r.max_per_buyer}`);
    }
    if (focusSku !== undefined) {
      const f = (await this.pool.query(`SELECT count(*) FILTER (WHERE status = 'held')::int AS held, count(*) FILTER (WHERE status = 'paid')::int AS paid,
        COALESCE(sum(qty) FILTER (WHERE status = 'held'), 0)::int AS held_units, COALESCE(sum(qty) FILTER (WHERE status = 'paid'), 0)::int AS paid_units
        FROM reservations WHERE sku = $1`, [focusSku])).rows[0];
      a.focus = { sku: focusSku, held: f.held, paid: f.paid, heldUnits: f.held_units, paidUnits: f.paid_units };
    }
    return a;
  }

  async close(): Promise<void> {
    await this.pool.end();
  }
}

/** Creates the bench's own schema and tables (never touches another schema). */
export async function createPgSchema(url: string, schema: string): Promise<void> {
  const s = checkedSchema(schema);
  const client = new pg.Client({ connectionString: url });
  await client.connect();
  try {
    await client.query(`CREATE SCHEMA ${s};
      CREATE TABLE ${s}.skus (sku text PRIMARY KEY, on_hand int NOT NULL, reserved int NOT NULL DEFAULT 0, sold int NOT NULL DEFAULT 0,
        max_per_buyer int NOT NULL DEFAULT 0, hold_ms int NOT NULL DEFAULT 600000);
      CREATE TABLE ${s}.quotas (sku text NOT NULL, buyer_id text NOT NULL, used int NOT NULL, PRIMARY KEY (sku, buyer_id));
      CREATE TABLE ${s}.reservations (id text PRIMARY KEY, sku text NOT NULL, buyer_id text NOT NULL, qty int NOT NULL, status text NOT NULL,
        created_at bigint NOT NULL, expires_at bigint NOT NULL, settled_at bigint, payment_ref text, idem_key text);
      CREATE UNIQUE INDEX ON ${s}.reservations (sku, buyer_id, idem_key) WHERE idem_key IS NOT NULL;
      CREATE INDEX ON ${s}.reservations (expires_at) WHERE status = 'held';`);
  } finally {
    await client.end();
  }
}

export async function dropPgSchema(url: string, schema: string): Promise<void> {
  const client = new pg.Client({ connectionString: url });
  await client.connect();
  try {
    await client.query(`DROP SCHEMA IF EXISTS ${checkedSchema(schema)} CASCADE`);
  } finally {
    await client.end();
  }
}

/** null when PostgreSQL answers at `url`, else why not. */
export async function pgUnavailable(url: string): Promise<string | null> {
  const client = new pg.Client({ connectionString: url, connectionTimeoutMillis: 2000 });
  try {
    await client.connect();
    await client.query('SELECT 1');
    await client.end();
    return null;
  } catch (e) {
    await client.end().catch(() => undefined);
    return `PostgreSQL at ${url} does not answer (${e instanceof Error ? e.message : String(e)})`;
  }
}
