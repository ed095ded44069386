// Plain data types shared by the WAL modules and re-exported by file-wal.ts. It holds no
// logic and must never import anything with side effects, so every WAL file can depend on it.

/** What the WAL reports to the operator; none of these is an error the caller must handle. */
export type WalEvent =
  | { type: 'torn_tail_truncated'; file: string; offset: number; bytesDropped: number }
  | { type: 'snapshot_invalid'; file: string; reason: string }
  | { type: 'segment_deleted'; file: string }
  | { type: 'snapshot_written'; file: string; lsn: number; bytes: number; ms: number };

/** A snapshot of the state machine after applying every record up to and including `lsn`. */
export interface WalSnapshot {
  lsn: number;
  /** The payload of a single-chunk snapshot; the first chunk of a chunked one. */
  payload: Uint8Array;
  /** Every chunk, in order (one for a version 1 snapshot). */
  chunks: Uint8Array[];
}

export type WalEventSink = (event: WalEvent) => void;
export type OnSnapshot = (snapshot: WalSnapshot | null) => void;
export type OnRecord = (lsn: number, payload: Uint8Array) => void;
