// Makes sure the shard-lease bucket (JetStream KV `<prefix>_leases`) exists with 3
// replicas and a TTL that matches FLASH_LEASE_TTL_MS, and that the shards' replicated
// logs (streams `<prefix>_log_<k>`) and snapshot store (`<prefix>_snapshots`) that
// already exist have FLASH_LOG_REPLICAS replicas, before a shard node starts.
//
// Why: the engine creates the bucket itself when it is missing, but with one replica,
// so the leases of every shard would live on a single NATS node and die with it. And
// an existing bucket is used as it is, so its TTL (max_age) must never be shorter than
// FLASH_LEASE_TTL_MS: a lease would then vanish while its owner still trusts it, and a
// standby could take the shard while the owner still serves it (two owners).
// The engine creates a missing log stream or snapshot store with FLASH_LOG_REPLICAS
// replicas, but uses an existing one as it is: one made with fewer (a first start without
// the setting) would keep each acknowledged record on fewer NATS nodes than the
// deployment counts on, without anything saying so. This raises it instead.
//
// Run it where a shard node runs, with the shard node's environment (FLASH_NATS_URL,
// FLASH_NATS_USER, FLASH_NATS_PASSWORD, FLASH_NATS_PREFIX, FLASH_LEASE_TTL_MS,
// FLASH_SHARDS, FLASH_LOG_REPLICAS) and from the engine's directory (it loads
// @nats-io/* from ./node_modules):
//   node deploy/lease-bucket.mjs                      # before each shard node starts
//   node deploy/lease-bucket.mjs --set-bucket-ttl=MS  # change the bucket's TTL (README)
// It creates the bucket if missing and raises its replicas to FLASH_LEASE_REPLICAS
// (default 3). It exits 1, changing nothing, if the bucket's TTL is shorter than
// FLASH_LEASE_TTL_MS; a longer one is safe (takeovers just wait longer) and only
// warned about. It raises (never lowers) the replicas of every existing log stream of
// shards 0..FLASH_SHARDS-1 and of the snapshot store to FLASH_LOG_REPLICAS (default 3);
// it does not create them, the shard nodes do. Exit 0: ready. Idempotent; several nodes
// may run it at once. Retries for 60 s while NATS or JetStream is not ready yet.

import { createRequire } from 'node:module';
import { join } from 'node:path';

const require = createRequire(join(process.cwd(), 'package.json'));
const { connect } = require('@nats-io/transport-node');
const { jetstreamManager } = require('@nats-io/jetstream');
const { Kvm } = require('@nats-io/kv');

const env = process.env;
const prefix = env.FLASH_NATS_PREFIX?.trim() || 'flash';
const bucket = `${prefix}_leases`;
const stream = `KV_${bucket}`;
const ttlMs = Number(env.FLASH_LEASE_TTL_MS?.trim() || 3000); // the engine's default
const replicas = Number(env.FLASH_LEASE_REPLICAS?.trim() || 3);
const logReplicas = Number(env.FLASH_LOG_REPLICAS?.trim() || 3);
const shardCount = env.FLASH_SHARDS?.trim() ? Number(env.FLASH_SHARDS.trim()) : null;
const deadlineMs = Date.now() + 60_000;
const setArg = process.argv.slice(2).find((a) => a.startsWith('--set-bucket-ttl='));
const setTtlMs = setArg === undefined ? null : Number(setArg.split('=')[1]);

function fail(message) {
  console.error(`lease-bucket: ${message}`);
  process.exit(1);
}

if (!env.FLASH_NATS_URL) fail('FLASH_NATS_URL is not set');
if (!Number.isInteger(ttlMs) || ttlMs < 500) fail(`FLASH_LEASE_TTL_MS=${env.FLASH_LEASE_TTL_MS} is not an integer >= 500`);
if (setTtlMs !== null && (!Number.isInteger(setTtlMs) || setTtlMs < 500)) fail(`${setArg}: give milliseconds, >= 500`);
if (!Number.isInteger(replicas) || replicas < 1 || replicas > 5) fail(`FLASH_LEASE_REPLICAS=${env.FLASH_LEASE_REPLICAS} is not in 1..5`);
if (!Number.isInteger(logReplicas) || logReplicas < 1 || logReplicas > 5) fail(`FLASH_LOG_REPLICAS=${env.FLASH_LOG_REPLICAS} is not in 1..5`);
if (shardCount !== null && (!Number.isInteger(shardCount) || shardCount < 1 || shardCount > 1024)) fail(`FLASH_SHARDS=${env.FLASH_SHARDS} is not in 1..1024`);

async function ensure(nc) {
  const jsm = await jetstreamManager(nc, { timeout: 5000 });
  let info;
  try {
    info = await jsm.streams.info(stream);
  } catch (e) {
    if (!/stream not found/i.test(e.message)) throw e;
    if (setTtlMs !== null) fail(`${bucket} does not exist; nothing to change`);
    const kv = await new Kvm(nc).create(bucket, { ttl: ttlMs, history: 1, replicas });
    const status = await kv.status();
    return `created ${bucket}: ttl ${status.ttl} ms, ${status.replicas} replicas`;
  }
  const bucketTtlMs = Math.round(info.config.max_age / 1e6);
  if (setTtlMs !== null) {
    await jsm.streams.update(stream, { ...info.config, max_age: setTtlMs * 1e6 });
    return `changed the TTL of ${bucket} from ${bucketTtlMs} ms to ${setTtlMs} ms`;
  }
  if (bucketTtlMs < ttlMs) {
    fail(`${bucket} expires leases after ${bucketTtlMs} ms but FLASH_LEASE_TTL_MS=${ttlMs}: less than the ` +
      'margin the engine counts on (a lease could expire while its owner still trusts it: two owners). ' +
      'Refusing; change them in the order given in deploy/README.md ("Lease TTL").');
  }
  if (bucketTtlMs > ttlMs) {
    console.error(`lease-bucket: warning: ${bucket} keeps leases ${bucketTtlMs} ms, FLASH_LEASE_TTL_MS=${ttlMs}: ` +
      'safe, but a dead node\'s shards wait the longer time; make them equal when the change is done.');
  }
  if (info.config.num_replicas < replicas) {
    await jsm.streams.update(stream, { ...info.config, num_replicas: replicas });
    return `raised ${bucket} from ${info.config.num_replicas} to ${replicas} replicas (ttl ${bucketTtlMs} ms)`;
  }
  return `${bucket} ready: ttl ${bucketTtlMs} ms, ${info.config.num_replicas} replicas`;
}

const nc = await connect({
  servers: env.FLASH_NATS_URL.split(',').map((s) => s.trim()).filter(Boolean),
  user: env.FLASH_NATS_USER?.trim() || undefined,
  pass: env.FLASH_NATS_PASSWORD ?? undefined,
  name: 'flash-lease-bucket',
  waitOnFirstConnect: true,
  maxReconnectAttempts: -1,
}).catch((e) => fail(`cannot connect to ${env.FLASH_NATS_URL}: ${e.message}`));

/**
 * Raises the replicas of the existing log streams and snapshot store to FLASH_LOG_REPLICAS.
 * A missing one is left to the engine, which creates it with FLASH_LOG_REPLICAS itself.
 */
async function ensureLogReplicas(nc) {
  const jsm = await jetstreamManager(nc, { timeout: 5000 });
  const names = [`OBJ_${prefix}_snapshots`];
  if (shardCount === null) {
    console.error('lease-bucket: warning: FLASH_SHARDS is not set, so the replicas of the shard log streams are not checked');
  } else {
    for (let k = 0; k < shardCount; k++) names.push(`${prefix}_log_${k}`);
  }
  const said = [];
  for (const name of names) {
    let info;
    try {
      info = await jsm.streams.info(name);
    } catch (e) {
      if (/stream not found/i.test(e.message)) continue;
      throw e;
    }
    if (info.config.num_replicas < logReplicas) {
      await jsm.streams.update(name, { ...info.config, num_replicas: logReplicas });
      said.push(`raised ${name} from ${info.config.num_replicas} to ${logReplicas} replicas`);
    }
  }
  return said;
}

for (;;) {
  try {
    console.log(`lease-bucket: ${await ensure(nc)}`);
    for (const line of await ensureLogReplicas(nc)) console.log(`lease-bucket: ${line}`);
    break;
  } catch (e) {
    if (/permission|authorization/i.test(e.message)) fail(`${e.message} (use the shard nodes' NATS user)`);
    // JetStream not ready (no quorum yet), a concurrent create, or a timeout: retry.
    if (Date.now() > deadlineMs) fail(`giving up after 60 s: ${e.message}`);
    console.error(`lease-bucket: ${e.message}; retrying`);
    await new Promise((r) => setTimeout(r, 1000));
  }
}
await nc.close();
