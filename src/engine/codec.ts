// The one msgpackr configuration used for everything the engine writes or sends: WAL
// records, snapshots and inter-thread/NATS batches. Plain maps, no record extension, so
// that every stored byte decodes on its own with any msgpack reader.

import { Packr } from 'msgpackr';

export const codec = new Packr({ useRecords: false, moreTypes: false, mapsAsObjects: true, variableMapSize: true });

export function encode(value: unknown): Buffer {
  return codec.pack(value);
}

export function decode<T>(bytes: Uint8Array): T {
  return codec.unpack(bytes) as T;
}
