// Invariant assertions for the pure core. They guard what the engine itself guarantees
// (counters, state transitions), never client input: input is validated and answered
// with a code. A failed assertion is a bug; it crashes the shard, which replays its log.

export class InvariantError extends Error {
  override readonly name = 'InvariantError';
}

export function assert(condition: unknown, message: string): asserts condition {
  if (!condition) throw new InvariantError(message);
}
