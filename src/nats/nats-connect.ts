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

export function shardSubject(prefix: string, shardId: number): string {
  return `${prefix}.shard.${shardId}`;
}

export function leaseBucket(prefix: string): string {
  return `${prefix}_leases`;
}
