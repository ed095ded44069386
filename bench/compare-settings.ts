// The settings of `npm run bench` (the comparison kit), read once from the environment and
// checked: BENCH_SECONDS, BENCH_WARMUP_SECONDS, BENCH_ROUNDS, BENCH_SYSTEMS,
// BENCH_SCENARIOS, BENCH_OVERLOAD_CONNECTIONS, BENCH_REDIS_URL, BENCH_PG_URL, BENCH_PG_POOL. Everything else
// is fixed here, so that two runs with the same environment load every system alike.

import { envInt } from './bench-report.js';

export const systemKeys = ['bare', 'engine', 'engine-node-http', 'engine-nats', 'naive', 'redis', 'postgres'] as const;
export type SystemKey = (typeof systemKeys)[number];
/**
 * Run when BENCH_SYSTEMS is unset: all but `engine-node-http` (the engine with its HTTP lane
 * off, FLASH_HTTP_LANE=0), which is there to measure the lane and is asked for by name.
 */
const defaultSystems: readonly SystemKey[] = systemKeys.filter((k) => k !== 'engine-node-http');

export const scenarioKeys = ['many-skus', 'hot-sku', 'full-flow', 'fixed-rate', 'overload'] as const;
export type ScenarioKey = (typeof scenarioKeys)[number];

export const scenarioTitles: Record<ScenarioKey, string> = {
  'many-skus': '1. many SKUs, many buyers',
  'hot-sku': '2. hot SKU sell-out',
  'full-flow': '3. reserve, then pay / cancel / abandon',
  'fixed-rate': '4. fixed rate, half of capacity',
  overload: '5. overload, twice capacity',
};

/** A comma list of known names (scenarios also by number, 1-based); `byDefault` (all) when unset. */
function envList<T extends string>(name: string, known: readonly T[], byDefault: readonly T[] = known): T[] {
  const raw = process.env[name]?.trim();
  if (raw === undefined || raw === '') return [...byDefault];
  const picked = raw.split(',').map((s) => s.trim()).filter((s) => s !== '').map((s) => {
    const byNumber = /^\d+$/.test(s) ? known[Number(s) - 1] : undefined;
    const name2 = byNumber ?? (known.includes(s as T) ? (s as T) : undefined);
    if (name2 === undefined) throw new Error(`${name}: ${s} is not one of ${known.join(', ')}`);
    return name2;
  });
  return known.filter((k) => picked.includes(k));
}

const seconds = envInt('BENCH_SECONDS', 10, 1, 3600);

export const settings = {
  seconds,
  warmUpSeconds: envInt('BENCH_WARMUP_SECONDS', Math.min(3, seconds), 0, 600),
  /** Every scenario against every system, this many times, each round in another order; medians are reported. */
  rounds: envInt('BENCH_ROUNDS', 3, 1, 100),
  connections: 64,
  /**
   * 64 closed-loop connections cannot offer more than a system answers, so the overload
   * scenario opens more (the same number for every system), each one rate-limited.
   */
  overloadConnections: envInt('BENCH_OVERLOAD_CONNECTIONS', 512, 64, 10_000),
  timeoutSeconds: 10,
  systems: envList('BENCH_SYSTEMS', systemKeys, defaultSystems),
  scenarios: envList('BENCH_SCENARIOS', scenarioKeys),
  /** Warm-up load goes to these SKUs, never to the ones a scenario checks. */
  warmSkus: { prefix: 'warm-', count: 100, stock: 1_000_000_000, maxPerBuyer: 0, holdSeconds: 600 },
  manySkus: { prefix: 'many-', count: 1000, stock: 1_000_000_000, maxPerBuyerOnOddSkus: 2, holdSeconds: 600 },
  hot: { sku: 'hot-sku', stock: 10_000, buyers: 100_000, maxPerBuyer: 1 },
  flow: { prefix: 'flow-', count: 1000, stock: 1_000_000, maxPerBuyerOnOddSkus: 2, holdSeconds: 3, payPct: 60, cancelPct: 20 },
  /** Capacity (scenario 1, or a short calibration) times these gives the rates of 4 and 5. */
  fixedRateShare: 0.5,
  overloadShare: 2,
  /** FLASH_MAILBOX_MAX of the embedded engine in the overload scenario (its default is 20,000). */
  engineOverloadMailboxMax: envInt('BENCH_OVERLOAD_MAILBOX_MAX', 256, 1, 10_000_000),
  redisUrl: process.env.BENCH_REDIS_URL?.trim() || 'redis://127.0.0.1:6379',
  pgUrl: process.env.BENCH_PG_URL?.trim() || 'postgres://postgres@127.0.0.1:5432/test',
  pgPoolSize: envInt('BENCH_PG_POOL', 16, 1, 90),
  /** Ratios of medians within one run (engine over the other system), and the engine's p99 at half its peak rate. */
  goals: { engineOverNaive: 1.3, engineOverRedis: 1.2, engineOverBare: 0.8, engineP99AtHalfPeakMs: 10 },
};

export type Settings = typeof settings;
