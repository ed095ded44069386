// Invariant assertions for the pure core. They guard what the engine itself guarantees
// (counters, state transitions), never client input: input is validated and answered
// with a code. A failed assertion is a bug; it crashes the shard, which replays its log.

export class InvariantError extends Error {
  override readonly name = 'InvariantError';
}

/**
 * The message is an argument, so it is built on every call, even when the condition holds.
 * On paths run once per command (or per snapshot row), throw an InvariantError under an `if`
 * instead, so that a message interpolating values is only built on failure: such messages
 * were about a fifth of what a replay of a million reserves allocated.
 */
export function assert(condition: unknown, message: string): asserts condition {
  if (!condition) throw new InvariantError(message);
}
