// `npm run bench:queue`: one drop's waiting room at the scale of a hyped drop. Part 1, the
// pure state machine in this process (queue-core.ts): BENCH_QUEUE_BUYERS (default
// 1,000,000) buyers join a fifo queue (joins/s, bytes per waiting buyer: goal under 150 B),
// random buyers read their place (answers/s), the shard's snapshot (size per entry, restore
// time), a simulated drain at the set pace with every admitted buyer reserving, and a random
// queue whose order one res.expire fixes by sorting it whole. Part 2, a real engine process
// over HTTP (queue-http.ts): joins by unique buyers over many connections, polls of random
// joined buyers, then the drain at BENCH_QUEUE_ADMIT_RATE with followers reserving as they
// are admitted, the pace checked on the engine's own admission instants. Exits 1 if a check
// fails (a pace above the set rate, a wrong order, a restore that answers differently, units
// held that do not match the acknowledged reserves, a broken invariant).

import { mkdtempSync, rmSync } from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { cpuBusyPct, envInt, finish, fmt, machineLine, markdownTable, progress, runInfo } from './bench-report.js';
import type { Engine } from './engine-under-test.js';
import { benchQueueCore, type QueueCoreFigures } from './queue-core.js';
import { benchQueueHttp, type QueueHttpFigures } from './queue-http.js';

const parts = (process.env.BENCH_QUEUE_PARTS?.trim() || 'core,http').split(',').map((p) => p.trim()).filter((p) => p !== '');
for (const p of parts) if (p !== 'core' && p !== 'http') throw new Error(`BENCH_QUEUE_PARTS: ${p} is not one of core, http`);

const settings = {
  parts,
  core: {
    buyers: envInt('BENCH_QUEUE_BUYERS', 1_000_000, 1000, 20_000_000),
    entryReads: envInt('BENCH_QUEUE_READS', 100_000, 1000, 10_000_000),
    drainSeconds: envInt('BENCH_QUEUE_SIM_DRAIN_SECONDS', 10, 1, 3600),
    admitPerSecond: envInt('BENCH_QUEUE_ADMIT_RATE', 2000, 1, 100_000),
    randomizeSeconds: 300,
    idChars: envInt('BENCH_QUEUE_ID_CHARS', 16, 8, 64),
  },
  http: {
    joins: envInt('BENCH_QUEUE_HTTP_JOINS', 100_000, 1000, 10_000_000),
    polls: envInt('BENCH_QUEUE_HTTP_POLLS', 100_000, 1000, 10_000_000),
    connections: envInt('BENCH_QUEUE_CONNECTIONS', 128, 1, 4096),
    warmUp: envInt('BENCH_QUEUE_HTTP_WARMUP', 10_000, 0, 1_000_000),
    admitPerSecond: envInt('BENCH_QUEUE_ADMIT_RATE', 2000, 1, 100_000),
    drainSeconds: envInt('BENCH_QUEUE_DRAIN_SECONDS', 20, 2, 3600),
    followers: envInt('BENCH_QUEUE_FOLLOWERS', 10_000, 0, 1_000_000),
  },
  goal: { bytesPerWaitingBuyerBelow: 150 },
};

function coreTable(c: QueueCoreFigures): string {
  const m = c.fifo.memory;
  const rm = c.random.memory;
  const bytes = (x: QueueCoreFigures['fifo']['memory']): string => `${fmt(x.totalBytesPerEntry, 1)} B (heap ${fmt(x.heapBytesPerEntry, 1)} + columns ${fmt(x.columnBytesPerEntry, 1)})`;
  const met = m.totalBytesPerEntry < settings.goal.bytesPerWaitingBuyerBelow;
  const d = c.drain;
  const s = c.snapshot;
  const rows: (string | number)[][] = [
    [`fifo: ${fmt(c.fifo.joins)} joins`, `${fmt(c.fifo.joinsPerSec)} joins/s`, ''],
    ['memory per waiting buyer (heap + typed-array columns, after gc)', bytes(m), `< ${settings.goal.bytesPerWaitingBuyerBelow} B: ${met ? 'met' : 'NOT met'}`],
    ['memory per waiting buyer, V8 heapUsed alone', `${fmt(m.heapBytesPerEntry, 1)} B`, ''],
    [`q.entry of ${fmt(c.entry.reads)} random buyers`, `${fmt(c.entry.answersPerSec)} answers/s`, `${c.entry.positionsWrong} of ${fmt(c.entry.positionsChecked)} positions wrong`],
    ['snapshot (toSnapshot + encodeSnapshotChunks, msgpackr)', `${fmt(s.bytes / 2 ** 20, 1)} MiB = ${fmt(s.bytesPerEntry, 1)} B per entry; ${fmt(s.toSnapshotMs)} + ${fmt(s.encodeMs)} ms`, `${s.chunks} chunk(s)`],
    ['restore (decode + fromSnapshot)', `${fmt(s.restoreMs)} ms (${fmt(s.decodeMs)} + ${fmt(s.fromSnapshotMs)})`, s.answersEqual ? 'answers equal' : '**answers DIFFER**'],
    [`simulated drain, ${d.simulatedSeconds} s at ${fmt(d.admitPerSecond)}/s, every admitted buyer reserving`,
      `${fmt(d.admitted)} admitted, ${fmt(d.reservesOk)}/${fmt(d.reserves)} reserves ok; max ${fmt(d.maxInAnyWindow)} in any 1 s`,
      `res.expire ${fmt(d.expireMeanMs, 3)} ms each; ${fmt(d.commandsPerSec)} commands/s`],
    [`random: ${fmt(c.random.joins)} joins (HMAC-SHA256 each)`, `${fmt(c.random.joinsPerSec)} joins/s`, bytes(rm)],
    ['random: the res.expire that fixes the order (sorts the whole queue)', `${fmt(c.random.fixMs)} ms for ${fmt(c.random.fixedEntries)} entries`,
      `${c.random.orderChecked.outOfOrder} pairs out of order; ${c.random.orderChecked.hmacMismatches} mismatches with node:crypto in ${fmt(c.random.orderChecked.hmacSample)} ranks`],
  ];
  return markdownTable(['in process (pure state machine, one core)', 'reached', 'goal / check'], rows);
}

function httpTable(h: QueueHttpFigures): string {
  const lat = (l: { p50: number; p99: number }): string => `${fmt(l.p50, 1)} / ${fmt(l.p99, 1)}`;
  const d = h.drain;
  const f = d.followers;
  const rows: (string | number)[][] = [
    [`joins, ${fmt(h.settings.joins)} unique buyers`, `${fmt(h.joins.responsesPerSec)} joins/s`, lat(h.joins.latencyMs), JSON.stringify(h.joins.statuses)],
    [`polls of random joined buyers, ${fmt(h.settings.polls)}`, `${fmt(h.polls.responsesPerSec)} answers/s`, lat(h.polls.latencyMs), JSON.stringify(h.polls.statuses)],
    [`drain: admitted at admitPerSecond ${fmt(d.admitPerSecond)} (engine's instants)`, `${fmt(d.admittedPerSecMean)}/s mean over ${fmt(d.seconds, 1)} s; max ${fmt(d.maxInAnyWindow)} in any 1 s`, '',
      d.neverAboveRate ? 'never above the set rate' : '**ABOVE the set rate**'],
    [`drain: ${fmt(f.count)} followers polling`, `${fmt(f.polls)} polls`, lat(f.pollLatencyMs), JSON.stringify(f.pollStatuses)],
    ['drain: followers reserving when admitted', `${fmt(d.reservesPerSec)} reserves/s (${fmt(f.reserveStatuses['201'] ?? 0)} x 201)`, lat(f.reserveLatencyMs),
      `admitted -> reserved p50 ${fmt(f.admittedToReservedMs.p50)} ms, p99 ${fmt(f.admittedToReservedMs.p99)} ms; ${f.notAdmittedByTheEnd} not admitted by the end`],
  ];
  return markdownTable(['over HTTP (one engine process)', 'rate', 'p50 / p99 ms', 'statuses / checks'], rows)
    + `\n\nadmitted per second of the drain (engine clock): ${d.perSecond.map((n) => fmt(n)).join(', ')}`
    + `\nreserves per second of the drain (bench clock): ${d.reservesPerSecond.map((n) => fmt(n)).join(', ')}`;
}

async function main(): Promise<void> {
  const run = runInfo();
  progress(`bench:queue on ${machineLine(run)}`);
  progress(`command: ${run.command}`);
  const machineBusyBeforePct = await cpuBusyPct();
  if (machineBusyBeforePct > 10) progress(`the machine is ${machineBusyBeforePct}% busy with other processes: figures will be low and noisy`);
  const core = parts.includes('core') ? benchQueueCore(settings.core) : null;
  const tmp = mkdtempSync(path.join(os.tmpdir(), 'flash-bench-queue-'));
  const children: Engine[] = [];
  let httpFigures: QueueHttpFigures | null = null;
  try {
    if (parts.includes('http')) {
      const busy = await cpuBusyPct();
      progress(`http: machine ${busy}% busy before it`);
      httpFigures = await benchQueueHttp(tmp, settings.http, children);
    }
  } finally {
    for (const c of children) await c.stop().catch(() => undefined);
    rmSync(tmp, { recursive: true, force: true });
  }
  const problems: string[] = [];
  if (core !== null) {
    for (const c of core.checks) for (const v of c.violations) problems.push(`invariant broken in ${c.name}: ${v}`);
    if (!core.snapshot.answersEqual) problems.push('the restored snapshot answers q.entry differently');
    if (core.entry.positionsWrong > 0) problems.push(`${core.entry.positionsWrong} fifo positions wrong`);
    if (core.random.orderChecked.outOfOrder > 0 || core.random.orderChecked.hmacMismatches > 0) problems.push('the random order does not follow HMAC-SHA256(seed, buyerId)');
    if (core.drain.maxInAnyWindow > core.drain.admitPerSecond) problems.push(`simulated drain admitted ${core.drain.maxInAnyWindow} within one second, above ${core.drain.admitPerSecond}`);
    if (core.drain.reservesOk !== core.drain.reserves) problems.push(`simulated drain: ${core.drain.reserves - core.drain.reservesOk} reserves of admitted buyers refused`);
  }
  if (httpFigures !== null) problems.push(...httpFigures.problems);
  const ok = problems.length === 0;
  const memoryMet = core === null ? null : core.fifo.memory.totalBytesPerEntry < settings.goal.bytesPerWaitingBuyerBelow;
  const result = {
    bench: 'queue', ...run, settings, machineBusyBeforePct,
    goals: core === null ? [] : [{
      figure: 'bytes per waiting buyer (heap + columns)', goal: `< ${settings.goal.bytesPerWaitingBuyerBelow} B`,
      reached: `${fmt(core.fifo.memory.totalBytesPerEntry, 1)} B`, value: core.fifo.memory.totalBytesPerEntry, met: memoryMet,
    }],
    core: core === null ? null : { ...core, checks: undefined },
    http: httpFigures,
    invariants: core?.checks ?? [],
    ok, problems,
  };
  const header = [
    `bench:queue: ${machineLine(run)}`,
    `command: ${run.command}`,
    `machine busy before the run (other processes): ${machineBusyBeforePct}%`,
    core === null ? '' : `in process: ${fmt(settings.core.buyers)} buyers per queue, buyer ids of ${core.settings.idChars} characters (${core.settings.buyerIdExample}), gc exposed: ${core.settings.gcExposed}`,
    httpFigures === null ? '' : `over HTTP: ${httpFigures.settings.connections} connections, engine shards ${httpFigures.settings.engineShards}, fifo drop, admitPerSecond 1 while joining and polling`,
  ].filter((l) => l !== '').join('\n');
  const tables = [core === null ? '' : coreTable(core), httpFigures === null ? '' : httpTable(httpFigures)].filter((t) => t !== '').join('\n\n');
  finish('queue', result, `${header}\n\n${tables}`);
  for (const p of problems) progress(`FAILED: ${p}`);
  if (!ok) process.exitCode = 1;
}

main().catch((e: unknown) => {
  process.stderr.write(`bench:queue failed: ${e instanceof Error ? e.stack : String(e)}\n`);
  process.exitCode = 1;
});
