// Starts the engine in the role the environment asks for. Role `all` without NATS is one
// process: shard worker threads owning the WALs under FLASH_DATA_DIR and the HTTP gateway
// on the main thread. With FLASH_NATS_URL, shards are hosted behind leases and reached
// over NATS (`shards` hosts, `gateway` serves HTTP, `all` does both). SIGTERM stops
// accepting, drains, snapshots, and exits 0.

import type { NatsConnection } from '@nats-io/transport-node';
import pino from 'pino';
import { ConfigError, loadConfig, logLevel, type EngineConfig } from './config.js';
import { checkMeta, DataDirError, lockDataDir } from './engine/data-dir.js';
import type { ShardObserver, ShardTransport } from './engine/shard-protocol.js';
import { encode } from './engine/codec.js';
import { readRelayedEvents } from './nats/nats-wire.js';
import type { DomainEvent } from './domain/index.js';
import { ErpModeTransport } from './engine/erp-mode-transport.js';
import { HttpGateway } from './gateway/http-gateway.js';
import { GatewayMetrics } from './gateway/metrics.js';
import { ShardRouter } from './gateway/shard-router.js';
import { connectNats } from './nats/nats-connect.js';
import { NatsTransport } from './nats/nats-transport.js';
import { ShardNode } from './nats/shard-node.js';
import { describeErpConfig, loadErpConfig, loadEventsConfig, type ErpConfig } from './erp/erp-config.js';
import { startErpHandOff } from './erp/erp-hand-off.js';
import { ErpLeader, erpLeaseKey, eventsLeaseKey } from './erp/erp-leader.js';
import { TransportOutbox, TransportStockOutbox } from './erp/transport-outbox.js';
import { erpReportRoute } from './erp/erp-report.js';
import { stockImportRoute } from './admin/stock-import-endpoint.js';
import { startConsole } from './console/console.js';
import { loadBuyerTokenConfig } from './gateway/buyer-token.js';
import { Authenticator } from './gateway/callers.js';
import { firstRunCredentials } from './gateway/first-run-credentials.js';
import { deploymentFingerprint, kernelMigratesQueuedConnections, portPeerProblem } from './gateway/port-peers.js';

/**
 * Who may call this engine. Closed by default: with no credential configured (and no
 * FLASH_DEV), an embedded engine generates one token per role into the data directory on
 * first start and says where; a gateway refuses to start, since gateways must agree.
 */
function authenticator(config: EngineConfig, env: NodeJS.ProcessEnv, log: pino.Logger): Authenticator {
  if (config.role === 'shards') return new Authenticator({ adminToken: null, tokensFile: null, buyerTokens: null, devMode: false });
  let buyerTokens = loadBuyerTokenConfig(env);
  let { tokensFile } = config;
  if (!config.devMode && config.adminToken === null && tokensFile === null && buyerTokens === null) {
    // Every gateway of a deployment must accept the same callers: generating per node would not.
    if (config.natsUrl !== null) {
      throw new ConfigError(`FLASH_ROLE=${config.role} over NATS has no credential: set FLASH_ADMIN_TOKEN, FLASH_TOKENS_FILE or FLASH_BUYER_TOKEN_SECRET alike on every gateway (or FLASH_DEV=1 on a laptop)`);
    }
    const generated = firstRunCredentials(config.dataDir);
    tokensFile = generated.tokensFile;
    buyerTokens = loadBuyerTokenConfig({ FLASH_BUYER_TOKEN_SECRET: generated.buyerTokenSecret });
    log.warn({ credentials: generated.dir }, generated.created
      ? `no credential was configured: generated one token per role and a buyer-token secret in ${generated.dir}; load them in a shell with: . ${generated.envFile}`
      : `no credential is configured: using the tokens generated on first start in ${generated.dir} (. ${generated.envFile})`);
  }
  const auth = Authenticator.load({ adminToken: config.adminToken, tokensFile, buyerTokens, devMode: config.devMode });
  if (config.devMode) log.warn(auth.describe());
  else log.info(auth.describe());
  return auth;
}

/** Where a shard node sends its stock events for the gateways' consoles (set once NATS is up). */
interface EventRelay {
  publish: ((events: DomainEvent[]) => void) | null;
}

function observerFor(metrics: GatewayMetrics, log: pino.Logger, relay: EventRelay): ShardObserver {
  return {
    onEvents: (shardId, events) => {
      metrics.onEvents(events);
      relay.publish?.(events);
      for (const e of events) {
        if (e.type === 'low_stock' || e.type === 'sold_out') log.warn({ shard: shardId, event: e }, e.type === 'low_stock' ? 'low stock' : 'sold out');
        else if (e.type === 'restocked') log.info({ shard: shardId, event: e }, 'restocked');
      }
    },
    onCommit: (shardId, ms) => metrics.onCommit(shardId, ms),
    onLog: (shardId, level, msg, data) => log[level]({ shard: shardId, ...data }, msg),
    onRestart: (shardId, reason) => {
      metrics.onRestart(shardId);
      log.error({ shard: shardId, reason }, 'shard worker died; restarting it from its log');
    },
  };
}

/**
 * Over NATS, the stock events of a shard reach only the process that hosts it; the gateways'
 * live consoles (and `flash events tail`) hear them through `<prefix>.events.stock`: a node
 * that hosts shards publishes them there (fire and forget: a console is a view, the durable
 * path is the events webhook), and a process that serves the API hears the other nodes'.
 */
function relayStockEvents(nc: NatsConnection, config: EngineConfig, metrics: GatewayMetrics, relay: EventRelay, hosts: boolean, serves: boolean): void {
  const subject = `${config.natsPrefix}.events.stock`;
  if (hosts) {
    relay.publish = (events) => {
      const stock = events.filter((e) => e.type !== 'paid');
      if (stock.length > 0) nc.publish(subject, encode({ node: config.nodeName, events: stock }));
    };
  }
  if (!serves) return;
  const sub = nc.subscribe(subject);
  void (async () => {
    for await (const m of sub) {
      // A malformed message, or an event not of our kind, is dropped: the console is a view,
      // never a source of truth (one bigint sku in its history broke every console stream).
      const relayed = readRelayedEvents(m.data);
      // This process's own shards' events reached its listeners already.
      if (relayed !== null && relayed.node !== config.nodeName && relayed.events.length > 0) metrics.relayEvents(relayed.events);
    }
  })();
}

/** The ERP hand-off of this process, in whichever form it runs here. */
interface ErpRunner {
  /** For GET /v1/admin/erp: the deliverer's figures (and, over NATS, this node's role). */
  status(): Record<string, unknown>;
  /** For /healthz of a shard node. */
  health(): Record<string, unknown>;
  stop(graceMs: number): Promise<void>;
}

/**
 * Embedded: one deliverer over this process's shards. Over NATS: this node competes for the
 * deployment's deliverer lease, and its holder drains every shard through NATS, so the
 * ERP's caps hold for the deployment however many shard nodes run.
 */
async function startErp(
  config: EngineConfig, erpConfig: ErpConfig,
  deps: { local: ErpModeTransport; nc: NatsConnection | null; metrics: GatewayMetrics; log: pino.Logger },
  kind: 'erp' | 'events' = 'erp',
): Promise<ErpRunner> {
  const { local, nc, metrics, log } = deps;
  // The deliverer's metrics (flash_erp_*) are the ERP's; the stock events deliverer reports in /v1/admin/erp.
  const registry = kind === 'erp' ? metrics.registry : undefined;
  if (nc === null) {
    const shardIds = Array.from({ length: config.shardCount }, (_, i) => i);
    const source = kind === 'erp' ? new TransportOutbox(local, shardIds) : new TransportStockOutbox(local, shardIds);
    const handOff = await startErpHandOff({ config: erpConfig, source, ...(registry === undefined ? {} : { registry }), log });
    const status = (): Record<string, unknown> => ({ ...handOff.deliverer.stats() });
    return { status, health: status, stop: (graceMs) => handOff.stop(graceMs) };
  }
  const leader = new ErpLeader({
    nc, prefix: config.natsPrefix, shardCount: config.shardCount, nodeName: config.nodeName, leaseTtlMs: config.leaseTtlMs,
    leaseReplicas: config.leaseReplicas, erp: erpConfig, mailboxMax: config.mailboxMax, log, kind, ...(registry === undefined ? {} : { registry }),
  });
  await leader.start();
  log.info({ ...describeErpConfig(erpConfig), lease: kind === 'erp' ? erpLeaseKey : eventsLeaseKey }, `${kind === 'erp' ? 'ERP' : 'stock events webhook'} configured: competing for the deployment's deliverer lease`);
  const health = (): Record<string, unknown> => ({ ...leader.status() });
  return {
    status: () => {
      const { deliverer, ...role } = leader.status();
      return { ...role, ...(deliverer ?? {}) };
    },
    health,
    stop: (graceMs) => leader.close(graceMs),
  };
}

/** Everything a running engine must stop, in order, on SIGTERM. */
type Stopper = () => Promise<void> | void;

async function start(config: EngineConfig, log: pino.Logger): Promise<Stopper[]> {
  let unlock: (() => void) | null = null;
  // The data directory is locked first: first-run credentials are written into it.
  if (config.natsUrl === null) unlock = lockDataDir(config.dataDir);
  // Before connecting anywhere, so that a node with no credential refuses to start at once.
  const auth = authenticator(config, process.env, log);
  const metrics = new GatewayMetrics({ role: config.role });
  // The ERP hand-off runs where shards are hosted (embedded: this process; over NATS: the
  // shard node holding the deliverer lease); gateways neither load nor need FLASH_ERP_*.
  const erpConfig = config.role !== 'gateway' ? loadErpConfig(process.env) : null;
  const relay: EventRelay = { publish: null };
  const eventsConfig = config.role !== 'gateway' ? loadEventsConfig(process.env) : null;
  // Each shard this process starts gets its outbox mode from this process's ERP settings,
  // as a logged erp.mode (records from before erp.mode replay with the same setting).
  const local = config.role !== 'gateway'
    ? new ErpModeTransport({
      dataDir: config.dataDir, shardCount: config.shardCount, mailboxMax: config.mailboxMax,
      snapshotEveryCommands: config.snapshotEveryCommands, checkpointer: config.checkpointer, checkpointCpuPercent: config.checkpointCpuPercent ?? undefined, checkpointNice: config.checkpointNice, observer: observerFor(metrics, log, relay), buyerRps: config.buyerRps,
      // Records from before erp.mode existed replay with the outbox on, whatever this process's
      // settings: replay never depends on configuration, and no paid order of that era leaves
      // the outbox (a deployment that had no ERP keeps them queued until one is set).
      config: { legacyOutboxEnabled: true },
      // Over NATS every shard's log is replicated (JetStream), and the shard node decides what
      // a lost or fenced shard does next.
      replicated: config.natsUrl !== null,
      onShardLost: (shardId, reason) => node?.shardLost(shardId, reason),
      onSnapshot: (shardId, lsn, file, crc) => node?.shardSnapshot(shardId, lsn, file, crc),
    }, erpConfig !== null, log, eventsConfig !== null)
    : null;
  let remote: NatsTransport | null = null;
  let node: ShardNode | null = null;
  let nc: NatsConnection | null = null;
  const started = Date.now();
  if (config.natsUrl === null) {
    checkMeta(config.dataDir, config.shardCount);
    await local!.start();
    log.info({ shards: config.shardCount, dataDir: config.dataDir, ms: Date.now() - started }, 'shards recovered');
  } else {
    nc = await connectNats({ url: config.natsUrl, user: config.natsUser, password: config.natsPassword, prefix: config.natsPrefix, name: config.nodeName });
    log.info({ servers: config.natsUrl, prefix: config.natsPrefix }, 'connected to NATS');
    if (local !== null) {
      checkMeta(config.dataDir, config.shardCount);
      const shardIds = config.shardIds ?? Array.from({ length: config.shardCount }, (_, i) => i);
      node = new ShardNode({
        nc, prefix: config.natsPrefix, shardIds, dataDir: config.dataDir, transport: local, log, leaseTtlMs: config.leaseTtlMs,
        leaseReplicas: config.leaseReplicas, logReplicas: config.logReplicas, nodeName: config.nodeName,
      });
      await node.start();
      log.info({ shardIds, node: config.nodeName }, 'hosting shards behind leases');
    }
    if (config.role !== 'shards') remote = new NatsTransport(nc, { shardCount: config.shardCount, prefix: config.natsPrefix, mailboxMax: config.mailboxMax });
    relayStockEvents(nc, config, metrics, relay, node !== null, remote !== null);
  }
  const erp = erpConfig === null || local === null ? null : await startErp(config, erpConfig, { local, nc, metrics, log });
  const events = eventsConfig === null || local === null ? null : await startErp(config, eventsConfig, { local, nc, metrics, log: log.child({ deliverer: 'stock events' }) }, 'events');
  const transport: ShardTransport | null = remote ?? (node === null ? local : null);
  metrics.attach(local ?? remote!);
  const serveApi = transport !== null;
  const liveConsole = startConsole({ metrics, log });
  // Gateways sharing a port name their deployment in /healthz, and check the port's before joining it.
  const fingerprint = config.reusePort
    ? deploymentFingerprint({
      natsPrefix: config.natsPrefix, shardCount: config.shardCount, natsUrl: config.natsUrl, devMode: config.devMode, adminToken: config.adminToken, tokensFile: config.tokensFile,
      buyerTokens: { secret: process.env.FLASH_BUYER_TOKEN_SECRET, publicKey: process.env.FLASH_BUYER_TOKEN_PUBLIC_KEY, audience: process.env.FLASH_BUYER_TOKEN_AUDIENCE },
    })
    : null;
  const gateway = new HttpGateway({
    config, router: serveApi ? new ShardRouter(transport) : null, metrics, log, auth,
    health: node === null ? undefined : () => ({ ...node!.status(), ...(erp === null ? {} : { erp: erp.health() }) }),
    ...(fingerprint === null ? {} : { localHealth: () => ({ deployment: fingerprint }) }),
    features: {
      'admin.stock-import': stockImportRoute,
      'admin.erp': erpReportRoute(() => (erp === null && events === null ? null : { ...(erp?.status() ?? {}), ...(events === null ? {} : { eventsWebhook: events.status() }) })),
      ...liveConsole.routes,
    },
  });
  if (fingerprint !== null) {
    const problem = await portPeerProblem(config.host, config.port, fingerprint);
    if (problem !== null) throw new ConfigError(problem);
    if (!kernelMigratesQueuedConnections()) {
      log.warn('FLASH_REUSE_PORT: net.ipv4.tcp_migrate_req is not 1, so when this gateway stops, connections the kernel has queued to it and it has not yet accepted are reset instead of moved to the other gateways of the port (clients retry them with their idempotency keys); set it to 1 (Linux 5.14 or later) for a hand-over without resets');
    }
  }
  const port = await gateway.listen(config.port, config.host, config.reusePort);
  log.info({ port, host: config.host, role: config.role, ...(config.reusePort ? { reusePort: true } : {}) }, `listening on http://${config.host}:${port}`);
  // Order matters: stop taking requests, let in-flight ones finish, then stop the shards
  // (snapshot, release leases), then the NATS connection, then the data-dir lock.
  return [
    () => liveConsole.close(),
    () => gateway.drain(config.shutdownGraceMs),
    () => erp?.stop(config.shutdownGraceMs),
    () => events?.stop(config.shutdownGraceMs),
    () => remote?.close(),
    () => node?.close(),
    () => local?.close(),
    () => nc?.drain(),
    () => unlock?.(),
  ];
}

async function main(): Promise<void> {
  // The logger comes first (it reports every other setting's error), so its level is checked on its own.
  let level = 'info';
  let levelError: string | null = null;
  try {
    level = logLevel(process.env);
  } catch (e) {
    levelError = (e as Error).message;
  }
  const log = pino({ level, base: { pid: process.pid } });
  if (levelError !== null) {
    log.fatal(levelError);
    log.flush();
    process.exit(2);
  }
  if (process.env.FLASH_TEST_FAULT) log.warn({ fault: process.env.FLASH_TEST_FAULT }, 'FLASH_TEST_FAULT is set: a TEST-ONLY fault is injected and acknowledged changes can be lost; never set it outside the test suite');
  let stoppers: Stopper[];
  try {
    stoppers = await start(loadConfig(), log);
  } catch (e) {
    if (e instanceof ConfigError || e instanceof DataDirError) log.fatal(e.message);
    else log.fatal({ err: e }, 'engine failed to start');
    log.flush();
    process.exit(e instanceof ConfigError ? 2 : 1);
  }
  let stopping = false;
  const stop = (signal: string): void => {
    if (stopping) return;
    stopping = true;
    log.info({ signal }, 'stopping: draining requests, then snapshotting shards');
    void (async () => {
      for (const s of stoppers) await s();
      log.info('stopped cleanly');
      log.flush();
      process.exit(0);
    })().catch((e: unknown) => {
      log.error({ err: e }, 'shutdown failed');
      log.flush();
      process.exit(1);
    });
  };
  process.on('SIGTERM', () => stop('SIGTERM'));
  process.on('SIGINT', () => stop('SIGINT'));
}

void main();
