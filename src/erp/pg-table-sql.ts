// The SQL of the ERP's PostgreSQL table, and the check that keeps its name a plain
// identifier (it is interpolated into statements, so nothing else may pass). No pg import
// here: configuration validates the name without loading the database driver.

const identifierPattern = /^[a-z_][a-z0-9_]{0,62}(\.[a-z_][a-z0-9_]{0,62})?$/;

/** `table` or `schema.table`, each part [a-z_][a-z0-9_]{0,62}; throws RangeError otherwise. */
export function checkedTableName(table: string): string {
  if (!identifierPattern.test(table)) throw new RangeError(`table name ${table} must be [schema.]table in lower-case [a-z0-9_]`);
  return table;
}

export function createTableSql(table: string): string {
  return `CREATE TABLE IF NOT EXISTS ${checkedTableName(table)} (
    event_id text PRIMARY KEY, reservation_id text, sku text, buyer_id text, qty int,
    paid_at bigint, payment_ref text, delivered_at timestamptz DEFAULT now())`;
}

/** One multi-row insert of `rowCount` orders ($1..$7 per row); a known event_id is skipped. */
export function insertOrdersSql(table: string, rowCount: number): string {
  const rows: string[] = [];
  for (let r = 0; r < rowCount; r++) {
    const p = r * 7;
    rows.push(`($${p + 1}, $${p + 2}, $${p + 3}, $${p + 4}, $${p + 5}, $${p + 6}, $${p + 7})`);
  }
  return `INSERT INTO ${checkedTableName(table)} (event_id, reservation_id, sku, buyer_id, qty, paid_at, payment_ref)
    VALUES ${rows.join(', ')} ON CONFLICT (event_id) DO NOTHING`;
}
