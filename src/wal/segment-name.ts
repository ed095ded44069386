// File names of the WAL directory: segments `wal-<first lsn>.log`, snapshots
// `snap-<lsn>.snap` and their `.tmp` siblings, with LSNs as 16 lowercase hex digits so that
// names sort like numbers. It only formats and parses names; it never touches the disk.

const LSN_HEX_DIGITS = 16;
const SEGMENT_PATTERN = /^wal-([0-9a-f]{16})\.log$/;
const SNAPSHOT_PATTERN = /^snap-([0-9a-f]{16})\.snap$/;

export const TMP_SUFFIX = '.tmp';

export type WalFileName =
  | { kind: 'segment'; lsn: number }
  | { kind: 'snapshot'; lsn: number }
  | { kind: 'tmp' }
  | { kind: 'other' };

function lsnHex(lsn: number): string {
  if (!(Number.isSafeInteger(lsn) && lsn >= 0)) throw new RangeError(`lsn ${lsn} is not a safe non-negative integer`);
  return lsn.toString(16).padStart(LSN_HEX_DIGITS, '0');
}

export function segmentFileName(firstLsn: number): string {
  return `wal-${lsnHex(firstLsn)}.log`;
}

export function snapshotFileName(lsn: number): string {
  return `snap-${lsnHex(lsn)}.snap`;
}

/**
 * Classifies a directory entry. An LSN in a name that does not fit a safe integer parses as
 * NaN; the caller reports that as corruption because no writer of ours produces it.
 */
export function parseWalFileName(name: string): WalFileName {
  if (name.endsWith(TMP_SUFFIX)) return { kind: 'tmp' };
  const segment = SEGMENT_PATTERN.exec(name);
  if (segment) return { kind: 'segment', lsn: parseLsnHex(segment[1]!) };
  const snapshot = SNAPSHOT_PATTERN.exec(name);
  if (snapshot) return { kind: 'snapshot', lsn: parseLsnHex(snapshot[1]!) };
  return { kind: 'other' };
}

function parseLsnHex(hex: string): number {
  const lsn = Number.parseInt(hex, 16);
  return Number.isSafeInteger(lsn) ? lsn : Number.NaN;
}
