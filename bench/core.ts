// `npm run bench:core`: the engine's core against its goals, on this machine, in one run:
// the pure state machine's ops/s on one core, the WAL's group-committed append rate, the
// replay time of a 1,000,000-record log, and the heap cost of a live reservation. It ends
// by checking the invariants of every state it built and exits 1 if one is broken.

import { benchDomain, type DomainFigures } from './domain-bench.js';
import { benchReplay, type ReplayFigures } from './replay-bench.js';
import { benchWal, type WalBenchResult } from './wal-bench.js';
import { cpuBusyPct, finish, fmt, machineLine, markdownTable, progress, runInfo } from './bench-report.js';
import type { StateCheck } from './state-check.js';

const settings = {
  domain: { reserveCommands: 1_000_000, runs: 3, mixedReserves: 1_000_000, memoryReservations: 1_000_000, warmUpCommands: 300_000 },
  wal: { records: 1_000_000, batch: 1000, payloadBytes: 64, warmUpRecords: 100_000 },
  replay: { commands: 1_000_000, batch: 1000 },
} as const;

interface Goal {
  figure: string;
  goal: string;
  reached: string;
  value: number;
  met: boolean | null;
}

function atLeast(figure: string, value: number, min: number, unit: string): Goal {
  return { figure, goal: `>= ${fmt(min)} ${unit}`, reached: `${fmt(value)} ${unit}`, value, met: value >= min };
}

function below(figure: string, value: number, max: number, unit: string, digits = 0): Goal {
  return { figure, goal: `< ${fmt(max)} ${unit}`, reached: `${fmt(value, digits)} ${unit}`, value, met: value < max };
}

function info(figure: string, value: number, unit: string): Goal {
  return { figure, goal: '-', reached: `${fmt(value)} ${unit}`, value, met: null };
}

function goals(d: DomainFigures, w: WalBenchResult, r: ReplayFigures, invariantsHold: boolean): Goal[] {
  return [
    atLeast('reserve, pure state machine, 1 core (median of 3)', d.reserve.medianOpsPerSec, 2_000_000, 'ops/s'),
    info('reserve, best of 3', d.reserve.bestOpsPerSec, 'ops/s'),
    info('pay, pure state machine', d.pay.opsPerSec, 'ops/s'),
    info('cancel, pure state machine', d.cancel.opsPerSec, 'ops/s'),
    info('mixed reserve+pay+expire, pure state machine', d.mixed.opsPerSec, 'ops/s'),
    atLeast('WAL append + fdatasync, group commit of 1000 x 64 B', w.appendFsyncRecordsPerSec, 1_000_000, 'records/s'),
    below('WAL raw replay of 1,000,000 records', w.replayMs, 2000, 'ms'),
    info('WAL raw replay rate', w.replayRecordsPerSec, 'records/s'),
    info('ShardRuntime.execute, 1000 reserves per fsync', r.write.commandsPerSec, 'commands/s'),
    below('ShardRuntime.open replaying 1,000,000 reserves', r.open.ms, 2000, 'ms'),
    info('ShardRuntime.open replay rate', r.open.commandsPerSec, 'commands/s'),
    { figure: 'heap per live reservation (1,000,000 held)', goal: '<= 300 B', reached: `${fmt(d.memory.bytesPerReservation, 1)} B`, value: d.memory.bytesPerReservation, met: d.memory.bytesPerReservation <= 300 },
    { figure: 'invariants of every state built (no oversell)', goal: 'all hold', reached: invariantsHold ? 'all hold' : 'BROKEN', value: invariantsHold ? 1 : 0, met: invariantsHold },
  ];
}

async function main(): Promise<void> {
  const run = runInfo();
  progress(`bench:core on ${machineLine(run)}`);
  progress(`command: ${run.command}`);
  const machineBusyBeforePct = await cpuBusyPct();
  if (machineBusyBeforePct > 10) progress(`the machine is ${machineBusyBeforePct}% busy with other processes: figures will be low and noisy`);
  const domain = benchDomain(settings.domain);

  progress(`WAL: warm-up with ${settings.wal.warmUpRecords} records`);
  await benchWal({ records: settings.wal.warmUpRecords, batch: settings.wal.batch, payloadBytes: settings.wal.payloadBytes });
  const wal = await benchWal({ records: settings.wal.records, batch: settings.wal.batch, payloadBytes: settings.wal.payloadBytes });
  progress(`WAL: ${fmt(wal.appendFsyncRecordsPerSec)} records/s appended with ${wal.fsyncs} fsyncs; replay ${wal.replayMs} ms`);

  const replay = benchReplay(settings.replay.commands, settings.replay.batch);

  const checks: StateCheck[] = [...domain.checks, ...replay.checks];
  const broken = checks.filter((c) => c.violations.length > 0);
  const invariantsHold = broken.length === 0 && replay.statesEqual;
  const table = goals(domain, wal, replay, invariantsHold);
  const result = {
    bench: 'core',
    ...run,
    settings,
    /** CPU in use by other processes just before the run (this bench idle). */
    machineBusyBeforePct,
    goals: table.map(({ figure, goal, reached, value, met }) => ({ figure, goal, reached, value, met })),
    allGoalsMet: table.every((g) => g.met !== false),
    figures: { domain: { ...domain, checks: undefined }, wal, replay: { ...replay, checks: undefined } },
    invariants: { hold: invariantsHold, replayedStateEqualsWritten: replay.statesEqual, checks },
  };
  const markdown = [
    `bench:core: ${machineLine(run)}`,
    `command: ${run.command}`,
    `machine busy before the run (other processes): ${machineBusyBeforePct}%`,
    '',
    markdownTable(['figure', 'goal', 'reached', 'met'], table.map((g) => [g.figure, g.goal, g.reached, g.met === null ? '' : String(g.met)])),
  ].join('\n');
  finish('core', result, markdown);
  for (const c of broken) for (const v of c.violations) progress(`INVARIANT BROKEN in ${c.name}: ${v}`);
  if (!replay.statesEqual) progress('INVARIANT BROKEN: the replayed shard state differs from the state that was written');
  if (!invariantsHold) process.exitCode = 1;
}

main().catch((e: unknown) => {
  process.stderr.write(`bench:core failed: ${e instanceof Error ? e.stack : String(e)}\n`);
  process.exitCode = 1;
});
