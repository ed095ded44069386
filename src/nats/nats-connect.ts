// Opens the engine's NATS connection: every server of FLASH_NATS_URL, optional user and
// password, reconnecting forever (a NATS restart must be survived, never fatal), and no
// async stack traces (they cost more than the request itself at our rates).

import { connect, type NatsConnection } from '@nats-io/transport-node';

export interface NatsSettings {
  url: string;
  user?: string | null;
  password?: string | null;
  /** Subject prefix, so several engines can share one NATS cluster. */
  prefix: string;
  name: string;
}

export function natsServers(url: string): string[] {
  return url.split(',').map((s) => s.trim()).filter((s) => s !== '');
}

export async function connectNats(s: NatsSettings): Promise<NatsConnection> {
  return connect({
    servers: natsServers(s.url),
    name: s.name,
    user: s.user ?? undefined,
    pass: s.password ?? undefined,
    noAsyncTraces: true,
    maxReconnectAttempts: -1,
    reconnectTimeWait: 250,
    waitOnFirstConnect: true,
    timeout: 5000,
  });
}

/**
 * The version of what gateways and shard nodes say to each other. v2 commands carry who is
 * asking (a buyer's get and cancel name the buyer, reserves their channel); a v1 shard node
 * would ignore those fields and so, say, let a buyer cancel another buyer's hold. So each
 * version has its own subject: a v2 gateway finds no v1 node at all (503 at once, "no
 * responders"), never a node that ignores what it cannot check.
 */
export const wireVersion = 2;

export function shardSubject(prefix: string, shardId: number, version: number = wireVersion): string {
  return version === 1 ? `${prefix}.shard.${shardId}` : `${prefix}.shard.${shardId}.v${version}`;
}

export function leaseBucket(prefix: string): string {
  return `${prefix}_leases`;
}
