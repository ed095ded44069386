// Reads the shards' log streams of a NATS deployment (src/nats/shard-log.ts: one stream per
// shard, one message per shard turn that wrote a record) over a NATS connection of the
// bench's own, so bench:nats can tell how many reserves each JetStream append carried: the
// 201s of a run over the growth of the streams' last sequences during it. Last sequences,
// not message counts: the stream is trimmed behind each stored snapshot.

import { jetstreamManager, type JetStreamManager } from '@nats-io/jetstream';
import { connect, type NatsConnection } from '@nats-io/transport-node';
import { logStreamName } from '../src/nats/shard-log.js';

export interface LogStreamState {
  stream: string;
  replicas: number;
  messages: number;
  bytes: number;
  firstSeq: number;
  lastSeq: number;
  /** The server holding the stream's leader, and its replicas (a cluster only). */
  leader: string | null;
  peers: { name: string; current: boolean }[];
}

export interface LogStreams {
  /** Each shard's stream's last sequence (0 while it has none). */
  lastSeqs(): Promise<number[]>;
  states(): Promise<LogStreamState[]>;
  close(): Promise<void>;
}

export async function openLogStreams(url: string, prefix: string, shardCount: number): Promise<LogStreams> {
  const nc: NatsConnection = await connect({ servers: url.split(','), name: 'bench-nats-log-streams', noAsyncTraces: true, timeout: 5000 });
  let jsm: JetStreamManager;
  try {
    jsm = await jetstreamManager(nc);
  } catch (e) {
    await nc.close();
    throw e;
  }
  const names = Array.from({ length: shardCount }, (_, k) => logStreamName(prefix, k));
  const infos = () => Promise.all(names.map((n) => jsm.streams.info(n)));
  return {
    async lastSeqs() {
      return (await infos()).map((i) => i.state.last_seq);
    },
    async states() {
      return (await infos()).map((i) => ({
        stream: i.config.name, replicas: i.config.num_replicas, messages: i.state.messages, bytes: i.state.bytes,
        firstSeq: i.state.first_seq, lastSeq: i.state.last_seq,
        leader: i.cluster?.leader ?? null,
        peers: (i.cluster?.replicas ?? []).map((r) => ({ name: r.name, current: r.current })),
      }));
    },
    close: () => nc.close(),
  };
}

export interface AppendFigures {
  /** Appends (= shard turns that wrote a record) during the run, over every shard. */
  appends: number;
  /** 201s of the run over its appends: reserves per turn, per JetStream round trip. */
  reservesPerAppend: number;
}

export function appendFigures(before: number[], after: number[], created: number): AppendFigures {
  const appends = after.reduce((a, s, k) => a + s - (before[k] ?? 0), 0);
  return { appends, reservesPerAppend: created / Math.max(1, appends) };
}
