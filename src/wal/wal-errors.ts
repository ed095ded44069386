// The two kinds of failure the WAL raises: corruption found on disk, and a broken invariant
// in the caller or in the WAL itself. Neither is ever caught and papered over here: both mean
// the shard must stop rather than run on state it cannot trust.

/**
 * Raised by recovery when the log or a snapshot is damaged in a way that is not a torn tail.
 * The message names the file and byte offset so that an operator can act on it.
 */
export class WalCorruptionError extends Error {
  readonly file: string;
  readonly offset: number;

  constructor(file: string, offset: number, reason: string) {
    super(
      `WAL corrupt in ${file} at offset ${offset}: ${reason}; ` +
        'refusing to start on wrong state (restore the file or move it away)',
    );
    this.name = 'WalCorruptionError';
    this.file = file;
    this.offset = offset;
  }
}

/** Invariant check. A failure is a programming error, so it throws a plain Error and crashes. */
export function walAssert(condition: boolean, message: string): asserts condition {
  if (!condition) throw new Error(`WAL assertion failed: ${message}`);
}
