// The msgpackr configurations of everything the engine writes or sends. Snapshots and
// inter-thread/NATS batches are plain maps, no record extension, so that they decode with any
// msgpack reader. WAL records use msgpackr's records (see logRecordCodec): each still decodes
// on its own, but needs a msgpackr reader.

import { Packr } from 'msgpackr';

export const codec = new Packr({ useRecords: false, moreTypes: false, mapsAsObjects: true, variableMapSize: true });

export function encode(value: unknown): Buffer {
  return codec.pack(value);
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
