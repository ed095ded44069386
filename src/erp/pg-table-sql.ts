// The SQL of the ERP's PostgreSQL table, and the check that keeps its name a plain
// identifier (it is interpolated into statements, so nothing else may pass). No pg import
// here: configuration validates the name without loading the database driver.

const identifierPattern = /^[a-z_][a-z0-9_]{0,62}(\.[a-z_][a-z0-9_]{0,62})?$/;

/** `table` or `schema.table`, each part [a-z_][a-z0-9_]{0,62}; throws RangeError otherwise. */
export function checkedTableName(table: string): string {
  if (!identifierPattern.test(table)) throw new RangeError(`table name ${table} must be [schema.]table in lower-case [a-z0-9_]`);
  return table;
}

/**
 * Creates the table, and adds the columns of later versions to a table an older one made
 * (ADD COLUMN IF NOT EXISTS, so it is safe on every start): `channel` (v2), then for
 * refunds `event_type` (`order.paid` or `order.refunded`; rows an older version wrote are
 * order.paid by the default), `refunded_at`, `restock` and `reason` (null on order.paid rows).
 */
export function createTableSql(table: string): string {
  const t = checkedTableName(table);
  return `CREATE TABLE IF NOT EXISTS ${t} (
    event_id text PRIMARY KEY, reservation_id text, sku text, buyer_id text, qty int,
    paid_at bigint, payment_ref text, delivered_at timestamptz DEFAULT now(), channel text,
    event_type text NOT NULL DEFAULT 'order.paid', refunded_at bigint, restock boolean, reason text);
  ALTER TABLE ${t} ADD COLUMN IF NOT EXISTS channel text;
  ALTER TABLE ${t} ADD COLUMN IF NOT EXISTS event_type text NOT NULL DEFAULT 'order.paid';
  ALTER TABLE ${t} ADD COLUMN IF NOT EXISTS refunded_at bigint;
  ALTER TABLE ${t} ADD COLUMN IF NOT EXISTS restock boolean;
  ALTER TABLE ${t} ADD COLUMN IF NOT EXISTS reason text`;
}

/** The columns an event fills, in the order of its parameters (one row per event, paid or refunded). */
export const orderColumns = [
  'event_id', 'reservation_id', 'sku', 'buyer_id', 'qty', 'paid_at', 'payment_ref', 'channel', 'event_type', 'refunded_at', 'restock', 'reason',
] as const;

/** One multi-row insert of `rowCount` events (one parameter per column per row); a known event_id is skipped. */
export function insertOrdersSql(table: string, rowCount: number): string {
  const n = orderColumns.length;
  const rows: string[] = [];
  for (let r = 0; r < rowCount; r++) {
    rows.push(`(${orderColumns.map((_, c) => `$${r * n + c + 1}`).join(', ')})`);
  }
  return `INSERT INTO ${checkedTableName(table)} (${orderColumns.join(', ')})
    VALUES ${rows.join(', ')} ON CONFLICT (event_id) DO NOTHING`;
}
