// The msgpackr configurations of everything the engine writes or sends. Snapshots and
// inter-thread/NATS batches are plain maps, no record extension, so that they decode with any
// msgpack reader. WAL records use msgpackr's records (see logRecordCodec): each still decodes
// on its own, but needs a msgpackr reader.

import { Packr, RESET_BUFFER_MODE } from 'msgpackr';

/** Plain maps, no records: snapshots and batches (see above). */
const plainOptions = { useRecords: false, moreTypes: false, mapsAsObjects: true, variableMapSize: true } as const;

export const codec = new Packr(plainOptions);

export function encode(value: unknown): Buffer {
  return codec.pack(value);
}

/**
 * An encoder of the same bytes as `encode` whose every result is a view into one buffer it
 * keeps, valid only until its next call: for a stream of chunks, each written out before the
 * next is made (a checkpointer's snapshot), so that no chunk allocates memory of its own.
 * `encode` moves on through its buffer and takes a new one (four times the chunk) whenever
 * it runs out, so a snapshot took new buffers of at least its own size (110 MB for a
 * million holds). That buffer is msgpackr's, one per thread and shared by every encoder in
 * it: an `encode` (or `encodeLogRecord`) in the same thread between a result and its use
 * writes over the result (results made before it are safe).
 */
export function reusingEncoder(): (value: unknown) => Uint8Array {
  const packr = new Packr(plainOptions);
  return (value) => packr.pack(value, RESET_BUFFER_MODE);
}

/**
 * WAL records alone are written with msgpackr records: each object shape's keys are written
 * once per record (in a definition inside the record, so a record still decodes on its own,
 * with no shared state) and each command then as a list of values. A record of reserves is
 * about a third smaller and decodes about twice as fast, which is most of what a replay
 * spends decoding. Records written before (plain maps) and after decode with `decode` alike,
 * as does any msgpackr reader, old versions of this engine included.
 */
const logRecordCodec = new Packr({ useRecords: true, moreTypes: false, mapsAsObjects: true, variableMapSize: true });

export function encodeLogRecord(value: unknown): Buffer {
  return logRecordCodec.pack(value);
}

export function decode<T>(bytes: Uint8Array): T {
  return codec.unpack(bytes) as T;
}
