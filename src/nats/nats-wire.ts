// What travels over NATS between gateways and shard nodes: msgpackr-encoded requests
// (a batch of commands, or a stats query) and their replies. One request carries many
// commands, because NATS request/reply costs far more per message than per byte.

import type { Command } from '../domain/index.js';
import type { CallOutcome, ShardStats } from '../engine/shard-protocol.js';

export type NatsRequest = { k: 'batch'; cmds: Command[] } | { k: 'stats' };

export type NatsReply =
  | { k: 'batch'; outcomes: CallOutcome[] }
  | { k: 'stats'; stats: ShardStats | null }
  /** The node is not (or no longer) the shard's owner: nothing in the batch was applied. */
  | { k: 'unavailable'; message: string };
