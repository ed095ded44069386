// The SQL of the ERP's PostgreSQL tables, and the checks that keep their names plain
// identifiers (they are interpolated into statements, so nothing else may pass). Paid orders
// go to the configured table, exactly as before refunds existed (so an ERP job that sums or
// counts its rows sees one row per paid order); refunds go to a table of their own,
// `<table>_refunds`. No pg import here: configuration validates the names without loading
// the database driver.

const identifierPattern = /^[a-z_][a-z0-9_]{0,62}(\.[a-z_][a-z0-9_]{0,62})?$/;

/** What the refunds table's name adds to the configured table's last part. */
export const refundsTableSuffix = '_refunds';

/** `table` or `schema.table`, each part [a-z_][a-z0-9_]{0,62}; throws RangeError otherwise. */
export function checkedTableName(table: string): string {
  if (!identifierPattern.test(table)) throw new RangeError(`table name ${table} must be [schema.]table in lower-case [a-z0-9_]`);
  return table;
}

/**
 * The table refunds go to: `<table>_refunds`, in the same schema when `table` is
 * `schema.table`. Throws RangeError when `table` is not a valid name or the derived one is
 * not (its last part would pass PostgreSQL's 63 characters, which PostgreSQL would silently
 * truncate, so the name must leave room for the suffix).
 */
export function refundsTableName(table: string): string {
  const refunds = `${checkedTableName(table)}${refundsTableSuffix}`;
  if (!identifierPattern.test(refunds)) {
    const last = table.slice(table.lastIndexOf('.') + 1);
    throw new RangeError(`table name ${table}: refunds go to ${refunds}, whose name would be longer than 63 characters; `
      + `the table part (${last}, ${last.length} characters) may have at most ${63 - refundsTableSuffix.length}`);
  }
  return refunds;
}

/**
 * Creates both tables if absent. The paid-orders table is the one every version made, and a
 * table the first version made gets `channel` (v2) added (ADD COLUMN IF NOT EXISTS, so it is
 * safe on every start); it never gets refund columns. The refunds table has an order's
 * columns, then the refund's.
 */
export function createTableSql(table: string): string {
  const t = checkedTableName(table);
  const r = refundsTableName(table);
  return `CREATE TABLE IF NOT EXISTS ${t} (
    event_id text PRIMARY KEY, reservation_id text, sku text, buyer_id text, qty int,
    paid_at bigint, payment_ref text, delivered_at timestamptz DEFAULT now(), channel text);
  ALTER TABLE ${t} ADD COLUMN IF NOT EXISTS channel text;
  CREATE TABLE IF NOT EXISTS ${r} (
    event_id text PRIMARY KEY, reservation_id text, sku text, buyer_id text, qty int,
    paid_at bigint, payment_ref text, channel text, refunded_at bigint, restock boolean, reason text,
    delivered_at timestamptz DEFAULT now())`;
}

/** The columns an order.paid fills, in the order of its parameters. */
export const orderColumns = ['event_id', 'reservation_id', 'sku', 'buyer_id', 'qty', 'paid_at', 'payment_ref', 'channel'] as const;

/** The columns an order.refunded fills, in the order of its parameters: its order's, then the refund's. */
export const refundColumns = [...orderColumns, 'refunded_at', 'restock', 'reason'] as const;

/** One multi-row insert of `rowCount` orders into the table (one parameter per column per row); a known event_id is skipped. */
export function insertOrdersSql(table: string, rowCount: number): string {
  return insertSql(checkedTableName(table), orderColumns, rowCount);
}

/** One multi-row insert of `rowCount` refunds into `<table>_refunds`; a known event_id is skipped. */
export function insertRefundsSql(table: string, rowCount: number): string {
  return insertSql(refundsTableName(table), refundColumns, rowCount);
}

function insertSql(checkedName: string, columns: readonly string[], rowCount: number): string {
  const n = columns.length;
  const rows: string[] = [];
  for (let r = 0; r < rowCount; r++) {
    rows.push(`(${columns.map((_, c) => `$${r * n + c + 1}`).join(', ')})`);
  }
  return `INSERT INTO ${checkedName} (${columns.join(', ')})
    VALUES ${rows.join(', ')} ON CONFLICT (event_id) DO NOTHING`;
}
