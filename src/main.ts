// Starts the engine in the role the environment asks for. In the default role `all`
// it is one process: shard worker threads owning the WALs under FLASH_DATA_DIR, and the
// HTTP gateway on the main thread. SIGTERM stops accepting, drains, snapshots, exits 0.

import pino from 'pino';
import { ConfigError, loadConfig, type EngineConfig } from './config.js';
import { checkMeta, DataDirError, lockDataDir } from './engine/data-dir.js';
import { WorkerTransport } from './engine/worker-transport.js';
import { HttpGateway } from './gateway/http-gateway.js';
import { GatewayMetrics } from './gateway/metrics.js';
import { ShardRouter } from './gateway/shard-router.js';

async function startAll(config: EngineConfig, log: pino.Logger): Promise<void> {
  const unlock = lockDataDir(config.dataDir);
  checkMeta(config.dataDir, config.shardCount);
  const metrics = new GatewayMetrics();
  const transport = new WorkerTransport({
    dataDir: config.dataDir, shardCount: config.shardCount, mailboxMax: config.mailboxMax,
    snapshotEveryCommands: config.snapshotEveryCommands,
    observer: {
      onEvents: (shardId, events) => {
        metrics.onEvents(events);
        for (const e of events) if (e.type !== 'paid') log.warn({ shard: shardId, event: e }, e.type === 'low_stock' ? 'low stock' : 'sold out');
      },
      onCommit: (shardId, ms) => metrics.onCommit(shardId, ms),
      onLog: (shardId, level, msg, data) => log[level]({ shard: shardId, ...data }, msg),
      onRestart: (shardId, reason) => {
        metrics.onRestart(shardId);
        log.error({ shard: shardId, reason }, 'shard worker died; restarting it from its log');
      },
    },
  });
  const started = Date.now();
  await transport.start();
  metrics.attach(transport);
  log.info({ shards: config.shardCount, dataDir: config.dataDir, ms: Date.now() - started }, 'shards recovered');
  const gateway = new HttpGateway({ config, router: new ShardRouter(transport), metrics, log });
  const port = await gateway.listen(config.port, config.host);
  if (config.adminToken === null) {
    log.warn(config.devMode ? 'FLASH_DEV is on: admin calls are allowed without a token' : 'FLASH_ADMIN_TOKEN is not set: admin calls will be refused');
  }
  log.info({ port, host: config.host }, `listening on http://${config.host}:${port}`);

  let stopping = false;
  const stop = (signal: string): void => {
    if (stopping) return;
    stopping = true;
    log.info({ signal }, 'stopping: draining requests, then snapshotting shards');
    void (async () => {
      await gateway.drain(config.shutdownGraceMs);
      await transport.close();
      unlock();
      log.info('stopped cleanly');
      log.flush();
      process.exit(0);
    })().catch((e: unknown) => {
      log.error({ err: e }, 'shutdown failed');
      process.exit(1);
    });
  };
  process.on('SIGTERM', () => stop('SIGTERM'));
  process.on('SIGINT', () => stop('SIGINT'));
}

async function main(): Promise<void> {
  const log = pino({ level: process.env.LOG_LEVEL ?? 'info', base: { pid: process.pid } });
  let config: EngineConfig;
  try {
    config = loadConfig();
  } catch (e) {
    if (e instanceof ConfigError) {
      log.fatal(e.message);
      process.exit(2);
    }
    throw e;
  }
  try {
    if (config.role !== 'all') throw new ConfigError(`FLASH_ROLE=${config.role} is not available in this build yet; use FLASH_ROLE=all`);
    await startAll(config, log);
  } catch (e) {
    if (e instanceof ConfigError || e instanceof DataDirError) log.fatal(e.message);
    else log.fatal({ err: e }, 'engine failed to start');
    log.flush();
    process.exit(1);
  }
}

void main();
