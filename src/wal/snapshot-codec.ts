// The snapshot file format `[magic "FSNP"][version u32 LE][lsn u64 LE][payload length u32 LE]
// [crc32c u32 LE over lsn bytes + payload][payload]`. It encodes the header and validates a
// whole file's bytes; it never touches the disk and never throws on bad input (it explains).

import { crc32c } from './crc32c.js';
import { readLsn, writeLsn } from './wal-frame.js';
import type { WalSnapshot } from './wal-types.js';

export const SNAPSHOT_HEADER_BYTES = 24;
export const SNAPSHOT_VERSION = 1;
/** Snapshots hold a whole shard's state, so they may exceed the record maximum; 1 GiB keeps
 * them well inside what one Buffer and one readFileSync can hold. */
export const SNAPSHOT_PAYLOAD_BYTES_MAX = 1024 * 1024 * 1024;

const MAGIC = Buffer.from('FSNP', 'latin1');
const OFFSET_VERSION = 4;
const OFFSET_LSN = 8;
const OFFSET_LENGTH = 16;
const OFFSET_CRC = 20;

export function encodeSnapshotHeader(lsn: number, payload: Uint8Array): Buffer {
  const header = Buffer.alloc(SNAPSHOT_HEADER_BYTES);
  MAGIC.copy(header, 0);
  header.writeUInt32LE(SNAPSHOT_VERSION, OFFSET_VERSION);
  writeLsn(header, OFFSET_LSN, lsn);
  header.writeUInt32LE(payload.length, OFFSET_LENGTH);
  const crc = crc32c(payload, 0, payload.length, crc32c(header, OFFSET_LSN, OFFSET_LSN + 8));
  header.writeUInt32LE(crc, OFFSET_CRC);
  return header;
}

export type SnapshotDecode = { ok: true; snapshot: WalSnapshot } | { ok: false; reason: string };

/** Validates a snapshot file's bytes against the lsn its name claims. The payload is a view. */
export function decodeSnapshot(bytes: Uint8Array, lsnFromName: number): SnapshotDecode {
  if (bytes.length < SNAPSHOT_HEADER_BYTES) return bad(`file has ${bytes.length} bytes, shorter than the header`);
  const view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  if (!MAGIC.equals(bytes.subarray(0, MAGIC.length))) return bad('bad magic');
  const version = view.getUint32(OFFSET_VERSION, true);
  if (version !== SNAPSHOT_VERSION) return bad(`unknown version ${version}`);
  const lsn = readLsn(view, OFFSET_LSN);
  if (lsn !== lsnFromName) return bad(`header lsn ${lsn} differs from the lsn ${lsnFromName} in the file name`);
  const payloadBytes = view.getUint32(OFFSET_LENGTH, true);
  if (payloadBytes > SNAPSHOT_PAYLOAD_BYTES_MAX) return bad(`payload length ${payloadBytes} over the maximum`);
  if (SNAPSHOT_HEADER_BYTES + payloadBytes !== bytes.length) {
    return bad(`payload length ${payloadBytes} does not match the file size ${bytes.length}`);
  }
  const payload = bytes.subarray(SNAPSHOT_HEADER_BYTES);
  const crc = crc32c(payload, 0, payload.length, crc32c(bytes, OFFSET_LSN, OFFSET_LSN + 8));
  if (crc !== view.getUint32(OFFSET_CRC, true)) return bad('checksum mismatch');
  return { ok: true, snapshot: { lsn, payload } };
}

function bad(reason: string): SnapshotDecode {
  return { ok: false, reason };
}
