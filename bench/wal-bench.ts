// Throughput of the file WAL on this machine: group-committed appends (one fdatasync per
// batch) and a full recovery that verifies and replays every record. It owns only a temp
// directory, which it always deletes; it must never touch a real shard's data directory.

import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { pathToFileURL } from 'node:url';
import { crc32c } from '../src/wal/crc32c.js';
import { FileWal } from '../src/wal/file-wal.js';

export interface WalBenchOptions {
  records?: number;
  batch?: number;
  payloadBytes?: number;
}

export interface WalBenchResult {
  appendFsyncRecordsPerSec: number;
  fsyncs: number;
  replayRecords: number;
  replayMs: number;
  replayRecordsPerSec: number;
  bytes: number;
}

const benchLimits = { recordsMax: 100_000_000, batchMax: 1_000_000, payloadBytesMax: 1024 * 1024 } as const;

export async function benchWal(opts: WalBenchOptions = {}): Promise<WalBenchResult> {
  const records = opts.records ?? 1_000_000;
  const batch = opts.batch ?? 1000;
  const payloadBytes = opts.payloadBytes ?? 64;
  checkRange('records', records, 1, benchLimits.recordsMax);
  checkRange('batch', batch, 1, benchLimits.batchMax);
  checkRange('payloadBytes', payloadBytes, 0, benchLimits.payloadBytesMax);
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'wal-bench-'));
  try {
    const writer = new FileWal({ dir });
    writer.recover(() => {}, () => {});
    const payload = new Uint8Array(payloadBytes).map((_, i) => (i * 131) & 0xff);
    const appendStartMs = performance.now();
    for (let i = 1; i <= records; i++) {
      writer.append(payload);
      if (i % batch === 0) writer.commit();
    }
    writer.commit();
    const appendMs = performance.now() - appendStartMs;
    const { commits: fsyncs, bytesCommitted: bytes } = writer.stats;
    writer.close();

    const reader = new FileWal({ dir });
    let replayRecords = 0;
    const replayStartMs = performance.now();
    reader.recover(() => {}, () => {
      replayRecords++;
    });
    const replayMs = performance.now() - replayStartMs;
    reader.close();
    if (replayRecords !== records) throw new Error(`replayed ${replayRecords} records, wrote ${records}`);
    return {
      appendFsyncRecordsPerSec: Math.round(records / (appendMs / 1000)),
      fsyncs,
      replayRecords,
      replayMs: Math.round(replayMs * 10) / 10,
      replayRecordsPerSec: Math.round(replayRecords / (replayMs / 1000)),
      bytes,
    };
  } finally {
    fs.rmSync(dir, { recursive: true, force: true });
  }
}

/** CRC32C throughput over one 64 MiB buffer, best of three, in MB/s (10^6 bytes). */
export function benchCrc32c(): number {
  const data = new Uint8Array(64 * 1024 * 1024).map((_, i) => (i * 2654435761) >>> 24);
  let bestMs = Number.POSITIVE_INFINITY;
  for (let round = 0; round < 3; round++) {
    const startMs = performance.now();
    crc32c(data);
    bestMs = Math.min(bestMs, performance.now() - startMs);
  }
  return Math.round(data.length / 1e6 / (bestMs / 1000));
}

function checkRange(name: string, value: number, min: number, max: number): void {
  if (!(Number.isSafeInteger(value) && value >= min && value <= max)) {
    throw new RangeError(`benchWal option ${name} must be an integer in ${min}..${max}, got ${value}`);
  }
}

const runAsMain = process.argv[1] !== undefined && import.meta.url === pathToFileURL(path.resolve(process.argv[1])).href;
if (runAsMain) {
  const options = { records: 1_000_000, batch: 1000, payloadBytes: 64 };
  const result = await benchWal(options);
  const machine = {
    node: process.version,
    platform: `${os.platform()} ${os.release()}`,
    cpu: os.cpus()[0]?.model ?? 'unknown',
    cpus: os.cpus().length,
    tmpdir: os.tmpdir(),
  };
  const command = process.argv.slice(1).join(' ');
  const report = { bench: 'wal', command, machine, options, ...result, crc32cMBPerSec: benchCrc32c() };
  console.log(JSON.stringify(report, null, 2));
}
