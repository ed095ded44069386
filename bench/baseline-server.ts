// A baseline of `npm run bench` as a child process: BENCH_BASELINE=redis (BENCH_REDIS_URL,
// BENCH_REDIS_PREFIX), postgres (BENCH_PG_URL, BENCH_PG_SCHEMA, BENCH_PG_POOL) or naive
// (BENCH_NAIVE_LOG, a file it creates) behind the shared node:http front, sweeping due
// holds every 200 ms. It prints `listening <port>` once it serves; SIGTERM stops it. It
// never creates or drops the namespace it uses (the naive log's data dir included).

import { BaselineFront } from './baseline-front.js';
import { NaiveStore } from './baseline-naive.js';
import { PgStore } from './baseline-pg.js';
import { RedisStore } from './baseline-redis.js';
import type { ReservationStore } from './baseline-store.js';

const sweepEveryMs = 200;
const sweepBatchMax = 1000;

function need(name: string): string {
  const v = process.env[name];
  if (v === undefined || v === '') throw new Error(`${name} is required`);
  return v;
}

async function openStore(): Promise<ReservationStore> {
  const kind = need('BENCH_BASELINE');
  if (kind === 'redis') return RedisStore.open(need('BENCH_REDIS_URL'), need('BENCH_REDIS_PREFIX'));
  if (kind === 'postgres') return PgStore.open(need('BENCH_PG_URL'), need('BENCH_PG_SCHEMA'), Number(process.env.BENCH_PG_POOL ?? 16));
  if (kind === 'naive') return new NaiveStore(need('BENCH_NAIVE_LOG'));
  throw new Error(`BENCH_BASELINE=${kind} must be redis, postgres or naive`);
}

/** Expires due holds until none is left, then waits sweepEveryMs; one sweep at a time. */
function startSweeper(store: ReservationStore): () => Promise<void> {
  let stopped = false;
  let timer: NodeJS.Timeout | undefined;
  let running: Promise<void> = Promise.resolve();
  const loop = async (): Promise<void> => {
    try {
      while (!stopped && (await store.sweep(Date.now(), sweepBatchMax)) === sweepBatchMax);
    } catch (e) {
      process.stderr.write(`sweep failed: ${e instanceof Error ? e.message : String(e)}\n`);
    }
    if (!stopped) timer = setTimeout(() => (running = loop()), sweepEveryMs);
  };
  timer = setTimeout(() => (running = loop()), sweepEveryMs);
  return async () => {
    stopped = true;
    clearTimeout(timer);
    await running;
  };
}

async function main(): Promise<void> {
  const store = await openStore();
  const front = new BaselineFront(store, { durability: await store.durability() });
  const stopSweeper = startSweeper(store);
  const port = await front.listen(Number(process.env.PORT ?? 0), process.env.HOST ?? '127.0.0.1');
  process.stdout.write(`listening ${port}\n`);
  process.once('SIGTERM', () => {
    void (async () => {
      await front.close();
      await stopSweeper();
      await store.close();
      process.exit(0);
    })().catch((e: unknown) => {
      process.stderr.write(`shutdown failed: ${String(e)}\n`);
      process.exit(1);
    });
  });
}

main().catch((e: unknown) => {
  process.stderr.write(`baseline failed to start: ${e instanceof Error ? e.stack : String(e)}\n`);
  process.exit(1);
});
