// How long a shard takes to come back: it writes reserve commands through
// ShardRuntime.execute (one record and one fdatasync per batch, as a worker turn does),
// closes, and times ShardRuntime.open replaying the whole log with no snapshot. It then
// checks that the replayed state equals the written one, byte for byte, and deletes its dir.

import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { toSnapshot, type ShardState } from '../src/domain/index.js';
import { encode } from '../src/engine/codec.js';
import { ShardRuntime } from '../src/engine/shard-runtime.js';
import { progress } from './bench-report.js';
import { benchSkus, reserveCommands, type SkuSpec } from './domain-bench.js';
import { checkState, type StateCheck } from './state-check.js';

export interface ReplayFigures {
  settings: { commands: number; batch: number; snapshotEveryCommands: number; dir: string };
  write: { commands: number; records: number; fsyncs: number; ms: number; commandsPerSec: number; walBytes: number };
  open: { commandsReplayed: number; recordsReplayed: number; ms: number; commandsPerSec: number };
  /** The replayed state's snapshot equals the written state's, byte for byte. */
  statesEqual: boolean;
  checks: StateCheck[];
}

const t0Ms = 1_700_000_000_000;

function setUp(runtime: ShardRuntime, skus: readonly SkuSpec[]): void {
  const upserts = skus.map((s) => ({ t: 'sku.upsert' as const, sku: s.sku, stock: s.stock, maxPerBuyer: s.maxPerBuyer }));
  for (const a of runtime.execute(upserts, t0Ms)) if (!a.outcome.ok) throw new Error(`replay bench setup refused: ${a.outcome.code}`);
}

function sameState(a: ShardState, b: ShardState): boolean {
  return encode(toSnapshot(a)).equals(encode(toSnapshot(b)));
}

function dirBytes(dir: string): number {
  return fs.readdirSync(dir).reduce((sum, f) => sum + fs.statSync(path.join(dir, f)).size, 0);
}

export function benchReplay(commandsCount: number, batch: number): ReplayFigures {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'replay-bench-'));
  const snapshotEveryCommands = 1_000_000_000; // never: the open below must replay the whole log
  try {
    const writer = ShardRuntime.open({ dir, shardId: 0, shardCount: 1, snapshotEveryCommands });
    setUp(writer, benchSkus);
    const commands = reserveCommands(commandsCount, benchSkus, 'rp');
    const commitsBefore = writer.walStats.commits;
    let ok = 0;
    const writeStarted = performance.now();
    for (let i = 0, turn = 1; i < commands.length; i += batch, turn++) {
      for (const a of writer.execute(commands.slice(i, i + batch), t0Ms + turn)) if (a.outcome.ok) ok++;
    }
    const writeMs = performance.now() - writeStarted;
    if (ok !== commands.length) throw new Error(`replay bench: ${commands.length - ok} reserves refused`);
    const fsyncs = writer.walStats.commits - commitsBefore;
    writer.close();
    const walBytes = dirBytes(dir);
    progress(`shard runtime: wrote ${commandsCount} reserves in ${fsyncs} fsynced records, ${Math.round(commandsCount / (writeMs / 1000)).toLocaleString('en-US')} commands/s; reopening`);

    const openStarted = performance.now();
    const reader = ShardRuntime.open({ dir, shardId: 0, shardCount: 1, snapshotEveryCommands });
    const openMs = performance.now() - openStarted;
    reader.close();
    const { commandsReplayed, recordsReplayed } = reader.recovery;
    if (commandsReplayed !== commandsCount + benchSkus.length) {
      throw new Error(`replay bench: replayed ${commandsReplayed} commands, logged ${commandsCount + benchSkus.length}`);
    }
    const statesEqual = sameState(writer.state, reader.state);
    progress(`shard runtime: open replayed ${commandsReplayed} commands in ${openMs.toFixed(0)} ms; states equal: ${statesEqual}`);
    return {
      settings: { commands: commandsCount, batch, snapshotEveryCommands, dir: os.tmpdir() },
      write: { commands: commandsCount, records: fsyncs, fsyncs, ms: writeMs, commandsPerSec: commandsCount / (writeMs / 1000), walBytes },
      open: { commandsReplayed, recordsReplayed, ms: openMs, commandsPerSec: commandsReplayed / (openMs / 1000) },
      statesEqual,
      checks: [checkState('shard runtime (written)', writer.state), checkState('shard runtime (replayed)', reader.state)],
    };
  } finally {
    fs.rmSync(dir, { recursive: true, force: true });
  }
}
