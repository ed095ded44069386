// The pure core's public surface. Adapters import from here, never from deeper files.

export * from './codes.js';
export * from './fields.js';
export * from './commands.js';
export * from './routing.js';
export { apply, replay } from './apply.js';
export { housekeepingDue, nextDueAtMs, nextExpiryAtMs } from './apply-expire.js';
export { queueInputError, queueFigures, QueueLimits, queueDefaults, type QueueFigures } from './apply-drop.js';
export { EntryState, type QueueMode } from './drop-state.js';
export { createShardState, defaultShardConfig, ShardState, type ShardConfig } from './shard-state.js';
export { toSnapshot, snapshotPieces, rowsOf, fromSnapshot, SnapshotRestorer, type ShardSnapshot, type SnapshotPiece, type SnapshotListName, type RowWriter, type UnmadeRows } from './snapshot.js';
export { InvariantError } from './assert.js';
