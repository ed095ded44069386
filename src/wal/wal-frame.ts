// The on-disk record frame `[payload length u32 LE][crc32c u32 LE][lsn u64 LE][payload]`,
// with the CRC over the lsn bytes and the payload. It encodes frames and scans a segment's
// bytes, deciding where good frames stop and whether the damage looks like a torn tail.
// It is pure: it never touches the disk and never decides policy (which segment may be torn).

import { crc32c } from './crc32c.js';
import { walAssert } from './wal-errors.js';

export const FRAME_HEADER_BYTES = 16;
/** Largest record payload; a length field above it is read as a damaged frame. */
export const PAYLOAD_BYTES_MAX = 64 * 1024 * 1024;

const OFFSET_CRC = 4;
const OFFSET_LSN = 8;
const TWO_POW_32 = 0x1_0000_0000;
/** The high word of a safe integer (below 2^53) is at most 2^21 - 1. */
const LSN_HIGH_WORD_MAX = 0x1f_ffff;

export function writeLsn(target: Buffer, offset: number, lsn: number): void {
  walAssert(Number.isSafeInteger(lsn) && lsn >= 0, `lsn ${lsn} must be a safe non-negative integer`);
  target.writeUInt32LE(lsn % TWO_POW_32, offset);
  target.writeUInt32LE(Math.floor(lsn / TWO_POW_32), offset + 4);
}

/** Returns NaN for a value beyond 2^53, which no writer of ours produces. */
export function readLsn(view: DataView, offset: number): number {
  const low = view.getUint32(offset, true);
  const high = view.getUint32(offset + 4, true);
  return high > LSN_HIGH_WORD_MAX ? Number.NaN : high * TWO_POW_32 + low;
}

/** Writes one frame at `offset` and returns the offset just past it. */
export function encodeFrame(target: Buffer, offset: number, lsn: number, payload: Uint8Array): number {
  const frameEnd = offset + FRAME_HEADER_BYTES + payload.length;
  walAssert(payload.length <= PAYLOAD_BYTES_MAX, 'payload over the maximum reached encodeFrame');
  walAssert(frameEnd <= target.length, 'encodeFrame target has no room for the frame');
  target.writeUInt32LE(payload.length, offset);
  writeLsn(target, offset + OFFSET_LSN, lsn);
  target.set(payload, offset + FRAME_HEADER_BYTES);
  target.writeUInt32LE(crc32c(target, offset + OFFSET_LSN, frameEnd), offset + OFFSET_CRC);
  return frameEnd;
}

/**
 * How a scan of one segment ended. `goodBytes` is where the last good frame ends (and where
 * the damage starts); `lsnNext` is the lsn the next frame would have had.
 * - clean: every byte belongs to a good frame (or, given lsnLast, every byte up to its frame).
 * - torn: the damage has the shape of a write cut short at the end of the file.
 * - corrupt: anything else, such as a bad frame with real data after it.
 */
export interface FrameScan {
  end: 'clean' | 'torn' | 'corrupt';
  goodBytes: number;
  lsnNext: number;
  reason: string;
}

/** Called for every good frame, in order, with the payload as `[payloadStart, payloadEnd)`. */
export type OnFrame = (lsn: number, payloadStart: number, payloadEnd: number) => void;

/**
 * Scans `bytes` as a sequence of frames whose first lsn must be `lsnFirst` and whose lsns
 * rise by one. Stops at the first frame that is damaged or out of sequence, or after the
 * frame of `lsnLast` (a reader that wants no more: the frames after it are not checked;
 * `goodBytes` is then where that frame ends, and `end` is 'clean').
 */
export function scanFrames(bytes: Uint8Array, lsnFirst: number, onFrame: OnFrame, lsnLast = Number.POSITIVE_INFINITY): FrameScan {
  const view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  const size = bytes.length;
  let offset = 0;
  let lsnNext = lsnFirst;
  while (offset < size && lsnNext <= lsnLast) {
    if (size - offset < FRAME_HEADER_BYTES) {
      return { end: 'torn', goodBytes: offset, lsnNext, reason: 'incomplete frame header' };
    }
    const payloadBytes = view.getUint32(offset, true);
    const frameEnd = offset + FRAME_HEADER_BYTES + payloadBytes;
    if (payloadBytes > PAYLOAD_BYTES_MAX || frameEnd > size) {
      const reason =
        payloadBytes > PAYLOAD_BYTES_MAX ? `record length ${payloadBytes} over the maximum` : 'record runs past end of file';
      return classifyBadFrame(bytes, view, offset, frameEnd, lsnNext, reason);
    }
    if (crc32c(bytes, offset + OFFSET_LSN, frameEnd) !== view.getUint32(offset + OFFSET_CRC, true)) {
      return classifyBadFrame(bytes, view, offset, frameEnd, lsnNext, 'checksum mismatch');
    }
    const lsn = readLsn(view, offset + OFFSET_LSN);
    if (lsn !== lsnNext) {
      // The checksum holds, so this frame was written like this: never a torn tail.
      const reason = `record has lsn ${lsn} where lsn ${lsnNext} was expected`;
      return { end: 'corrupt', goodBytes: offset, lsnNext, reason };
    }
    onFrame(lsn, offset + FRAME_HEADER_BYTES, frameEnd);
    lsnNext++;
    offset = frameEnd;
  }
  return { end: 'clean', goodBytes: offset, lsnNext, reason: '' };
}

/**
 * A damaged frame is a torn tail only when nothing real follows it: its declared end lies
 * past the end of the file, or everything after its declared end is zero (file systems can
 * leave zero-filled blocks after a crash). Since the length field is not covered by the CRC,
 * a flipped length bit could point past the end of the file and hide committed records; a
 * search for a later good frame catches that and calls it corruption instead.
 */
function classifyBadFrame(
  bytes: Uint8Array,
  view: DataView,
  offset: number,
  frameEnd: number,
  lsnNext: number,
  reason: string,
): FrameScan {
  const size = bytes.length;
  if (frameEnd > size) {
    const later = findLaterFrame(bytes, view, offset + 1, lsnNext);
    if (later < 0) return { end: 'torn', goodBytes: offset, lsnNext, reason };
    return { end: 'corrupt', goodBytes: offset, lsnNext, reason: `${reason}, yet a good record follows at offset ${later}` };
  }
  if (isZeroFrom(bytes, frameEnd)) return { end: 'torn', goodBytes: offset, lsnNext, reason };
  return { end: 'corrupt', goodBytes: offset, lsnNext, reason };
}

function isZeroFrom(bytes: Uint8Array, start: number): boolean {
  for (let i = start; i < bytes.length; i++) if (bytes[i] !== 0) return false;
  return true;
}

/**
 * Offset of a good frame at or after `from` whose lsn follows `lsnNext` (by at most the
 * number of frames that could fit), or -1. Runs only on the rare damaged-tail path.
 */
function findLaterFrame(bytes: Uint8Array, view: DataView, from: number, lsnNext: number): number {
  const size = bytes.length;
  const lsnMax = lsnNext + Math.ceil((size - from) / FRAME_HEADER_BYTES);
  for (let offset = from; offset + FRAME_HEADER_BYTES <= size; offset++) {
    const lsn = readLsn(view, offset + OFFSET_LSN);
    if (!(lsn > lsnNext - 1 && lsn <= lsnMax)) continue;
    const frameEnd = offset + FRAME_HEADER_BYTES + view.getUint32(offset, true);
    if (frameEnd > size) continue;
    if (crc32c(bytes, offset + OFFSET_LSN, frameEnd) === view.getUint32(offset + OFFSET_CRC, true)) return offset;
  }
  return -1;
}
