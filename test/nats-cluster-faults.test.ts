// Shard nodes that share nothing, on a 3-node JetStream cluster (issue #10, "How it must be
// shown", first bullet), over real processes: a nats-server cluster on loopback (each node
// with its own ports and store, test/support/nats-cluster.ts), one gateway, and two shard
// nodes hosting both shards on data directories of their own (one owner, one standby), with
// the shard logs and the leases replicated three times (FLASH_LOG_REPLICAS=3,
// FLASH_LEASE_REPLICAS=3) and a 2 s lease. A recorded concurrent load (test/support/history.ts:
// reserves with idempotency keys, retried with the same key after an unknown outcome, pays,
// cancels, reservation and SKU reads, over a few SKUs with small stock, and a fresh SKU per
// shard before each fault) runs through the gateway while, in sequence:
//   (a) the owner is killed with SIGKILL; the time from the kill to the first reserve answered
//       2xx for each shard is the takeover time; the killed node is restarted on its own data
//       directory and becomes the standby;
//   (b) the new owner is stopped with SIGSTOP for twice the lease TTL, then resumed (SIGCONT);
//   (c) the nats-server leading shard 0's log stream is killed with SIGKILL and started again
//       on its ports and store.
// Then: the history is linearizable per SKU (test/support/linearizability.ts; a search-bound hit
// fails), the final state holds every acknowledged change in its last acknowledged state or a
// later one with counters that add up, and the paused owner never wrote again: no record of its
// incarnations (Flash-Owner, as read from the lease bucket while it owned) follows in either
// shard's stream once it was resumed, except after a lease it took again later (logged), and
// its log says it stopped serving both shards.
//
// Calls go through the gateway, so a 503 `shard_unavailable` (a NATS request nobody answered in
// time) is an unknown outcome that may take effect at any later time: one history epoch, no
// deadlines. The one timing bound asserted is the takeover after the SIGKILL: under 5 s (the
// goal) plus 2 s of slack for this shared 2-core machine running three nats-servers, three
// engines and the load; DEBUG_NATS=1 prints the measured times and the timeline.
//
// Two narrower tests pin down what the first one can only hit by chance:
// - an owner paused past its lease while its successor has not written anything yet (the load
//   held back during the pause) must still write nothing after its SIGCONT: the stream's fence
//   cannot refuse it then, only the node's own lease check can;
// - an owner whose appends cannot be acknowledged for longer than its lease (two of the three
//   nats-servers killed under write load: JetStream has no quorum) must stop serving and stay
//   up, and serve again once the servers are back.
// HISTORY_DUMP=<file> writes each checked history as JSON (<file>.<test>.json).

import { writeFileSync } from 'node:fs';
import { Kvm } from '@nats-io/kv';
import { jetstream, jetstreamManager, type JetStreamManager } from '@nats-io/jetstream';
import type { NatsConnection } from '@nats-io/transport-node';
import { afterAll, describe, expect, it } from 'vitest';
import { shardForSku } from '../src/domain/routing.js';
import { api, sleep, stopAllEngines } from './support/engine-process.js';
import { History, LoadDriver, type FinalReads, type IdArgs, type Operation, type ReserveArgs } from './support/history.js';
import { createSku, uniqWhere } from './support/http-kit.js';
import { LoadClient } from './support/http-raw.js';
import { checkHistory, finalStateCheck, type SkuSetup } from './support/linearizability.js';
import { startNatsCluster, stopAllNatsClusters, type NatsCluster } from './support/nats-cluster.js';
import { startNatsDeployment, type NatsDeployment, type NodeHealth, type ShardNode } from './support/nats-deployment.js';

afterAll(async () => {
  await stopAllEngines();
  await stopAllNatsClusters();
});

const debug = process.env.DEBUG_NATS !== undefined;
const shardCount = 2;
const shardIds = [0, 1];
const leaseTtlMs = 2000;
/** The goal of issue #10 is 5 s; the slack is for this shared 2-core machine (see the header). */
const takeoverGoalMs = 5000;
const takeoverSlackMs = 2000;
const env = { FLASH_BUYER_RPS: '0', FLASH_LOG_REPLICAS: '3', FLASH_LEASE_REPLICAS: '3' };

const fmt = (ms: number): string => `${Math.round(ms)} ms`;
const shardOfSku = (sku: string): number => shardForSku(sku, null, shardCount);
/** Reservation ids start with their shard number: `1.2015sdxp3`. */
const shardOfOp = (o: Operation): number =>
  o.op === 'reserve' || o.op === 'getSku' ? shardOfSku((o.args as ReserveArgs).sku) : Number((o.args as IdArgs).reservationId.split('.')[0]);

interface StreamRecord { seq: number; lsn: number; owner: string; timeMs: number }

/** Every record of a shard's log stream, in order (an ordered consumer from the first sequence). */
async function readStream(nc: NatsConnection, jsm: JetStreamManager, stream: string): Promise<StreamRecord[]> {
  const info = await jsm.streams.info(stream);
  const { first_seq: firstSeq, last_seq: lastSeq, messages } = info.state;
  const out: StreamRecord[] = [];
  if (messages === 0) return out;
  const consumer = await jetstream(nc).consumers.get(stream, { opt_start_seq: firstSeq });
  const iter = await consumer.consume({ max_messages: 512 });
  for await (const m of iter) {
    out.push({ seq: m.seq, lsn: Number(m.headers?.get('Flash-Lsn')), owner: m.headers?.get('Flash-Owner') ?? '', timeMs: m.info.timestampNanos / 1e6 });
    if (m.seq >= lastSeq) break;
  }
  iter.stop();
  return out;
}

/** Owner runs of a stream, for reports: `node1#ab12 x 340 (seq 1..340)`. */
function runsOf(records: StreamRecord[]): string[] {
  const runs: { owner: string; from: number; to: number; n: number }[] = [];
  for (const r of records) {
    const last = runs[runs.length - 1];
    if (last !== undefined && last.owner === r.owner) {
      last.to = r.seq;
      last.n++;
    } else runs.push({ owner: r.owner, from: r.seq, to: r.seq, n: 1 });
  }
  return runs.map((r) => `${r.owner.replace(/^t[0-9a-z]+x[0-9a-z]+x[0-9a-z]+-/, '')} x ${r.n} (seq ${r.from}..${r.to})`);
}

interface LogLine { time: number; msg: string; shard?: number; reason?: string; [k: string]: unknown }

function logLines(text: string): LogLine[] {
  const out: LogLine[] = [];
  for (const line of text.split('\n')) {
    if (!line.startsWith('{')) continue;
    try {
      out.push(JSON.parse(line) as LogLine);
    } catch {
      // a line cut by the end of the buffer
    }
  }
  return out;
}

/**
 * The final reads of a driver's SKUs (as LoadDriver.finalReads, recorded as client "final"),
 * but a few at a time rather than all at once: the checker explores every subset of a set of
 * concurrent reads it has to backtrack over (one unknown pay on the SKU is enough to make it
 * backtrack), so hundreds of simultaneous final reads can exhaust its search bound on a
 * history that is linearizable. First every reserve whose outcome is still unknown is
 * retried with its key until a definite answer.
 */
async function finalReadsFewAtATime(driver: LoadDriver, port: number, attemptsMax = 50): Promise<FinalReads> {
  const lc = new LoadClient(port, 8);
  try {
    const skus = new Set(driver.opts.skus);
    const keyOf = (a: ReserveArgs): string => `${a.sku}\u0000${a.buyerId}\u0000${a.idempotencyKey}`;
    const unresolved = (): Map<string, ReserveArgs> => {
      const pending = new Map<string, ReserveArgs>();
      // Operations are recorded as they complete; one key is only ever used by one client, in turn.
      for (const o of driver.history.operations()) {
        if (o.op !== 'reserve' || !skus.has((o.args as ReserveArgs).sku)) continue;
        const a = o.args as ReserveArgs;
        if (o.outcome.type === 'unknown') pending.set(keyOf(a), a);
        else if (o.outcome.type === 'ok' || o.outcome.checked) pending.delete(keyOf(a));
      }
      return pending;
    };
    for (let attempt = 0; attempt < attemptsMax; attempt++) {
      const pending = [...unresolved().values()];
      if (pending.length === 0) break;
      if (attempt > 0) await sleep(20);
      for (const args of pending) await driver.call('final', 'reserve', args, lc);
    }
    const reservations = new Map<string, Operation>();
    const ids = [...driver.knownIds];
    for (let i = 0; i < ids.length; i += 4) {
      await Promise.all(ids.slice(i, i + 4).map(async (id) => {
        reservations.set(id, await driver.call('final', 'getReservation', { reservationId: id }, lc));
      }));
    }
    const skuReads = new Map<string, Operation>();
    for (const sku of skus) skuReads.set(sku, await driver.call('final', 'getSku', { sku }, lc));
    return { reservations, skus: skuReads, unresolvedReserves: [...unresolved().values()] };
  } finally {
    lc.close();
  }
}

/** A process's output without the per-sale "sold out" lines, which drown everything else. */
const quiet = (text: string): string => text.split('\n').filter((l) => !l.includes('"msg":"sold out"')).join('\n');

/**
 * The history as the checker is given it: a reserve with unknown outcome that repeats an
 * earlier one with unknown outcome (same SKU, buyer, qty and idempotency key) is left out
 * when the earlier one's deadline is at least as late (here always: one epoch, no deadlines).
 * This is exact, not an approximation: the repeats can only create that same one
 * reservation, and the earlier one may already take effect at any moment after its
 * invocation (the repeats' moments included) or never, so they add no possible history,
 * only search: a client retries an unknown reserve every few milliseconds, so a 2 s takeover
 * leaves hundreds of them on one key, and the search bound was hit on such histories.
 */
function withoutRepeatedUnknownReserves(ops: Operation[]): Operation[] {
  const firstDeadline = new Map<string, number>();
  const dropped = new Set<number>();
  for (const o of [...ops].sort((x, y) => x.invokeMs - y.invokeMs)) {
    if (o.op !== 'reserve' || o.outcome.type !== 'unknown') continue;
    const a = o.args as ReserveArgs;
    if (a.idempotencyKey === undefined) continue;
    const k = JSON.stringify([a.sku, a.buyerId, a.qty, a.idempotencyKey]);
    const earlier = firstDeadline.get(k);
    if (earlier !== undefined && earlier >= o.deadlineMs) dropped.add(o.id);
    else if (earlier === undefined) firstDeadline.set(k, o.deadlineMs);
  }
  return ops.filter((o) => !dropped.has(o.id));
}

/** HISTORY_DUMP=<file>: writes a history and its setups as JSON, for a look with the checker offline. */
function dumpHistory(tag: string, ops: Operation[], setups: Record<string, SkuSetup>): void {
  const file = process.env.HISTORY_DUMP;
  if (file === undefined || file === '') return;
  writeFileSync(`${file}.${tag}.json`, JSON.stringify({ setups, ops: ops.map((o) => ({ ...o, deadlineMs: Number.isFinite(o.deadlineMs) ? o.deadlineMs : null })) }));
}

describe('shard nodes on a 3-node JetStream cluster under kill -9, SIGSTOP past the lease, and a nats-server restart', () => {
  it('keeps the history linearizable and every acknowledged change, the paused owner never writes again, and the standby takes over a killed owner\'s shards within 5 s', async () => {
    const cluster: NatsCluster = await startNatsCluster();
    const d: NatsDeployment = await startNatsDeployment({ shards: shardCount, nodes: [shardIds], leaseTtlMs, env, nats: cluster.asNatsServer() });
    const history = new History();
    const t0 = history.now();
    const timeline: string[] = [];
    const mark = (what: string): number => {
      const at = history.now();
      timeline.push(`${fmt(at - t0).padStart(9)}: ${what}`);
      return at;
    };
    const setups: Record<string, SkuSetup> = {};
    const driver = new LoadDriver(history, { skus: [], buyers: Array.from({ length: 10 }, (_, i) => `buyer-${i}`), clients: 6, thinkMs: [2, 10] });
    const reports: string[] = [];
    let nc: NatsConnection | null = null;
    let watching = true;
    let watcher: Promise<void> = Promise.resolve();
    const paused = new Set<ShardNode>();
    try {
      const a = api(d.url);
      const addSku = async (tag: string, shard: number, s: SkuSetup): Promise<void> => {
        const sku = uniqWhere(tag, (name) => shardOfSku(name) === shard);
        await createSku(a, sku, { stock: s.onHand, maxPerBuyer: s.maxPerBuyer, mode: s.mode ?? 'pre_deduct', holdSeconds: 3600 });
        setups[sku] = s;
        driver.addSku(sku);
      };
      // A fresh SKU per shard before each fault, so that new holds (201) keep coming after the
      // first SKUs sell out, and the takeover is seen as the first 201 of the shard.
      const freshSkus = async (tag: string): Promise<void> => {
        for (const shard of shardIds) await addSku(`${tag}-s${shard}`, shard, { onHand: 14, maxPerBuyer: 2 });
      };
      for (const shard of shardIds) {
        await addSku(`cf-small-s${shard}`, shard, { onHand: 5, maxPerBuyer: 2 });
        await addSku(`cf-medium-s${shard}`, shard, { onHand: 16, maxPerBuyer: 3 });
      }
      await addSku('cf-pay-s0', 0, { onHand: 8, maxPerBuyer: 2, mode: 'on_payment' });

      nc = await cluster.connect();
      const jsm = await jetstreamManager(nc);
      const kv = await new Kvm(nc).open(`${d.prefix}_leases`);
      const leaseOf = async (shard: number): Promise<string | null> => {
        const e = await kv.get(`shard-${shard}`);
        return e === null || e.operation !== 'PUT' ? null : e.string();
      };
      const nodeByName = (owner: string | null): ShardNode | undefined => (owner === null ? undefined : d.nodes.find((n) => owner.startsWith(`${n.name}#`)));
      const short = (n: ShardNode | undefined): string => n?.name.split('-').pop() ?? '?';

      // Node states over time (a paused node is not asked: it would not answer).
      const healthOf = async (n: ShardNode): Promise<NodeHealth | null> => {
        try {
          const r = await fetch(`${n.engine.url}/healthz`, { signal: AbortSignal.timeout(400) });
          const body = (await r.json()) as NodeHealth;
          return { serving: body.serving ?? [], standby: body.standby ?? [] };
        } catch {
          return null;
        }
      };
      const live = (): ShardNode[] => d.nodes.filter((n) => n.engine.child.exitCode === null && n.engine.child.signalCode === null);
      watcher = (async () => {
        let last = '';
        while (watching) {
          const states = await Promise.all(live().map(async (n) => {
            if (paused.has(n)) return `${short(n)} paused`;
            const h = await healthOf(n);
            return h === null ? `${short(n)} ?` : `${short(n)} serving [${h.serving}]`;
          }));
          const line = states.join(', ');
          if (line !== last) mark((last = line));
          await sleep(50);
        }
      })();

      const waitFor = async (what: string, check: () => Promise<boolean> | boolean, timeoutMs: number): Promise<number> => {
        const started = history.now();
        while (!(await check())) {
          if (history.now() - started > timeoutMs) throw new Error(`${what}: not within ${timeoutMs} ms`);
          await sleep(25);
        }
        return history.now();
      };
      const waitStandby = (n: ShardNode): Promise<number> => waitFor(`${n.name} standing by for shards ${shardIds}`, async () => {
        const h = await healthOf(n);
        return h !== null && shardIds.every((s) => h.standby.includes(s));
      }, 20_000);
      const everyShardServed = (): Promise<number> => waitFor('every shard served by one node', async () => {
        const hs = await Promise.all(live().filter((n) => !paused.has(n)).map(healthOf));
        return shardIds.every((s) => hs.filter((h) => h?.serving.includes(s)).length === 1);
      }, 30_000);
      /** When each shard first answered a reserve 2xx that was sent at or after `since` (waits for it). */
      const firstServedAfter = async (since: number, timeoutMs: number): Promise<number[]> => {
        const first = (): number[] => shardIds.map((s) => history.operations()
          .filter((o) => o.op === 'reserve' && o.outcome.type === 'ok' && o.invokeMs >= since && shardOfOp(o) === s)
          .reduce((m, o) => Math.min(m, o.completeMs), Infinity));
        await waitFor('a reserve answered 2xx on every shard', () => first().every(Number.isFinite), timeoutMs).catch(() => undefined);
        return first();
      };

      /** Which nats-server each live shard node is connected to (the monitoring /connz, by connection name). */
      const serversOfNodes = async (): Promise<string> => {
        const seen: string[] = [];
        for (const [i, n] of cluster.nodes.entries()) {
          if (!n.running()) continue;
          const r = await fetch(`http://127.0.0.1:${n.monitorPort}/connz?limit=1024`).then((x) => x.json() as Promise<{ connections?: { name?: string }[] }>).catch(() => null);
          for (const c of r?.connections ?? []) if (c.name?.startsWith(`${d.prefix}-node`)) seen.push(`${short(d.nodes.find((x) => x.name === c.name))}@${cluster.nodes[i]!.name}`);
        }
        return seen.join(', ');
      };
      const first = d.nodes[0]!;
      const second = await d.startNode(shardIds, { waitServing: false });
      await waitStandby(second);
      for (const s of shardIds) expect(nodeByName(await leaseOf(s)), `the owner of shard ${s} at the start`).toBe(first);
      mark(`${short(first)} owns shards ${shardIds}, ${short(second)} stands by; load starts`);
      driver.resume(d.gateway.port);
      driver.start();
      await sleep(1500);

      // ---- (a) kill -9 the owner -------------------------------------------------------------
      await freshSkus('cf-a');
      await sleep(300);
      const killAt = mark(`SIGKILL ${short(first)} (owner of every shard)`);
      const killWallMs = Date.now();
      await first.engine.kill9();
      mark(`${short(first)} is gone`);
      const servedA = await firstServedAfter(killAt, 20_000);
      const takeover = servedA.map((t) => t - killAt);
      for (const s of shardIds) mark(`shard ${s}: first reserve answered 2xx since the kill, ${fmt(takeover[s]!)} after it`);
      const tookA = logLines(second.engine.logs()).filter((l) => l.msg === 'took the shard lease; serving');
      reports.push(`(a) takeover after SIGKILL of the owner: ${takeover.map((t, s) => `shard ${s} ${fmt(t)}`).join(', ')} (lease TTL ${fmt(leaseTtlMs)}; ` +
        `the standby logged serving at ${tookA.map((l) => `shard ${l.shard} +${fmt(l.time - killWallMs)}`).join(', ')})`);
      const restarted = await d.startNode(shardIds, { dataDir: first.dataDir, waitServing: false });
      await waitStandby(restarted);
      mark(`${short(first)} restarted on its data dir as ${short(restarted)}: standing by`);
      await sleep(1000);

      // ---- (b) SIGSTOP the owner past its lease, then SIGCONT -------------------------------
      await freshSkus('cf-b');
      const owner = nodeByName(await leaseOf(0))!;
      const incarnations: string[] = [];
      for (const s of shardIds) {
        const inc = await leaseOf(s);
        expect(nodeByName(inc), `the owner of shard ${s} before the pause`).toBe(owner);
        incarnations.push(inc!);
      }
      const ownerPid = owner.engine.child.pid!;
      paused.add(owner);
      const stopAt = mark(`SIGSTOP ${short(owner)} (owner of every shard; incarnations ${incarnations.join(', ')})`);
      process.kill(ownerPid, 'SIGSTOP');
      await sleep(2 * leaseTtlMs);
      // Anything past these sequences that the paused owner wrote, it wrote after the SIGCONT.
      const seqAtResume: number[] = [];
      for (const s of shardIds) seqAtResume.push((await jsm.streams.info(`${d.prefix}_log_${s}`)).state.last_seq);
      const logMark = owner.engine.logs().length;
      const resumeAt = mark(`SIGCONT ${short(owner)} (stream sequences then: ${seqAtResume.join(', ')})`);
      const resumeWallMs = Date.now();
      process.kill(ownerPid, 'SIGCONT');
      paused.delete(owner);
      const servedB = await firstServedAfter(stopAt, 20_000);
      reports.push(`(b) takeover after SIGSTOP of the owner: ${servedB.map((t, s) => `shard ${s} ${fmt(t - stopAt)}`).join(', ')} (resumed after ${fmt(resumeAt - stopAt)})`);
      await sleep(1500);

      // ---- (c) restart the nats-server leading shard 0's log ------------------------------
      await freshSkus('cf-c');
      const leaderOf = async (stream: string): Promise<string> => (await jsm.streams.info(stream)).cluster?.leader ?? '?';
      const leaderName = await leaderOf(`${d.prefix}_log_0`);
      const victim = Math.max(0, cluster.indexOf(leaderName));
      const leaders = `leaders: shard 0's log ${leaderName}, shard 1's log ${await leaderOf(`${d.prefix}_log_1`)}, leases ${await leaderOf(`KV_${d.prefix}_leases`)}`;
      const natsDownAt = mark(`SIGKILL ${cluster.nodes[victim]!.name} (${leaders}; shard nodes' servers: ${await serversOfNodes()})`);
      await cluster.kill9(victim);
      await sleep(1000);
      mark(`starting ${cluster.nodes[victim]!.name} again`);
      await cluster.start(victim);
      const natsUpAt = mark(`${cluster.nodes[victim]!.name} healthy again`);
      await sleep(1500);
      await everyShardServed();
      const servedC = await firstServedAfter(natsUpAt, 20_000);
      reports.push(`(c) nats-server ${cluster.nodes[victim]!.name} down for ${fmt(natsUpAt - natsDownAt)}; reserves answered 2xx again ${servedC.map((t, s) => `shard ${s} ${fmt(t - natsUpAt)}`).join(', ')} after it was healthy`);
      await sleep(1000);

      // ---- the load stops; final reads ----------------------------------------------------
      mark('load stops');
      await driver.stop();
      await everyShardServed();
      const final = await finalReadsFewAtATime(driver, d.gateway.port);
      mark('final reads done');
      watching = false;
      await watcher;
      const ops = history.operations();
      dumpHistory('cluster-faults', ops, setups);
      const count = (p: (o: Operation) => boolean): number => ops.reduce((n, o) => n + (p(o) ? 1 : 0), 0);
      const checkStarted = performance.now();
      const check = checkHistory(withoutRepeatedUnknownReserves(ops), setups);
      const checkMs = performance.now() - checkStarted;
      const finalProblems = finalStateCheck(ops, setups, final);
      reports.push(`history: ${ops.length} calls (${count((o) => o.outcome.type === 'ok')} ok, ${count((o) => o.outcome.type === 'fail')} refused, ` +
        `${count((o) => o.outcome.type === 'unknown')} unknown, of which ${ops.length - withoutRepeatedUnknownReserves(ops).length} repeats of an unknown reserve left out of the search; sold_out ${count((o) => o.outcome.type === 'fail' && o.outcome.code === 'sold_out')}, ` +
        `quota_exceeded ${count((o) => o.outcome.type === 'fail' && o.outcome.code === 'quota_exceeded')}); verdict ${check.verdict} in ${fmt(checkMs)} ` +
        `(${check.skus.map((s) => `${s.operations} ops/${s.unknown} unknown/${s.states} states`).join('; ')}); final-state problems ${finalProblems.length}`);

      // ---- the paused owner never wrote again ---------------------------------------------
      const pausedLog = logLines(owner.engine.logs().slice(logMark));
      const streamProblems: string[] = [];
      for (const s of shardIds) {
        const records = await readStream(nc, jsm, `${d.prefix}_log_${s}`);
        reports.push(`shard ${s} stream: ${records.length} records, owner runs: ${runsOf(records).join(', ')}`);
        // The log is whole: consecutive sequences and lsns.
        for (let i = 1; i < records.length; i++) {
          const p = records[i - 1]!;
          const r = records[i]!;
          if (r.seq !== p.seq + 1 || r.lsn !== p.lsn + 1) streamProblems.push(`shard ${s}: record seq ${r.seq} lsn ${r.lsn} follows seq ${p.seq} lsn ${p.lsn}`);
        }
        // Its records from before the pause are there (else the check below would prove nothing).
        expect(records.some((r) => r.owner === incarnations[s] && r.seq <= seqAtResume[s]!), `shard ${s}: records of the paused owner before the pause`).toBe(true);
        // After the SIGCONT it could only write again under a lease it took again (and logged).
        // (Logged when it takes the lease, before its first append: a new owner's first record.)
        const retook = pausedLog.filter((l) => l.msg === 'took the shard lease; catching up with its log' && l.shard === s).map((l) => l.time);
        for (const r of records) {
          if (r.seq <= seqAtResume[s]! || r.owner !== incarnations[s]) continue;
          if (!retook.some((t) => t < r.timeMs)) {
            streamProblems.push(`shard ${s}: record seq ${r.seq} (lsn ${r.lsn}) was appended by the paused owner ${r.owner} ${fmt(r.timeMs - resumeWallMs)} after its SIGCONT, ` +
              `without taking the lease again (${retook.length === 0 ? 'it never did' : `it did at +${retook.map((t) => fmt(t - resumeWallMs)).join(', ')}`})`);
          }
        }
        // It noticed, and stopped serving the shard.
        const stopped = pausedLog.find((l) => l.msg === 'stopped serving the shard' && l.shard === s);
        if (stopped === undefined) streamProblems.push(`shard ${s}: the paused owner never logged "stopped serving the shard" after its SIGCONT`);
        else reports.push(`shard ${s}: the paused owner stopped serving it ${fmt(stopped.time - resumeWallMs)} after its SIGCONT (${stopped.reason})` +
          `${retook.length > 0 ? `; it took the lease again at +${retook.map((t) => fmt(t - resumeWallMs)).join(', ')}` : ''}`);
      }

      const context = `${reports.join('\n')}\ntimeline:\n${timeline.join('\n')}`;
      if (debug) console.log(context);
      // No shard node exited but the one killed on purpose (an exit is an engine fault: say so first).
      const exited = d.nodes.filter((n) => n !== first && (n.engine.child.exitCode !== null || n.engine.child.signalCode !== null));
      expect(exited.map((n) => `${n.name} exited (${n.engine.child.exitCode ?? n.engine.child.signalCode}): ${quiet(n.engine.logs()).slice(-2500)}`), context).toEqual([]);
      expect(check.verdict, `${context}\n${check.explanation}`).toBe('linearizable');
      expect(finalProblems, context).toEqual([]);
      expect(streamProblems, context).toEqual([]);
      // The load meant something on every shard and through every fault.
      for (const s of shardIds) {
        expect(count((o) => o.op === 'reserve' && o.outcome.type === 'ok' && shardOfOp(o) === s && o.invokeMs > natsUpAt), `shard ${s}: holds after the NATS restart\n${context}`).toBeGreaterThan(0);
      }
      expect(count((o) => o.outcome.type === 'fail' && o.outcome.code === 'sold_out'), context).toBeGreaterThan(0);
      for (const t of takeover) expect(t, `takeover after the owner's SIGKILL\n${context}`).toBeLessThan(takeoverGoalMs + takeoverSlackMs);
    } catch (e) {
      (e as Error).message += `\n--- timeline ---\n${timeline.join('\n')}\n--- deployment output (tail) ---\n${quiet(d.logs()).slice(-8000)}\n--- nats cluster (tail) ---\n${cluster.logs().slice(-4000)}`;
      throw e;
    } finally {
      watching = false;
      await watcher.catch(() => undefined);
      for (const n of paused) if (n.engine.child.pid !== undefined) process.kill(n.engine.child.pid, 'SIGCONT');
      await driver.stop();
      driver.close();
      await d.stopAll().catch(() => undefined);
      await nc?.close().catch(() => undefined);
      await cluster.stopAll();
    }
  }, 150_000);
});

describe('an owner paused past its lease while its successor has not written yet', () => {
  it('writes nothing to the shard logs after its SIGCONT (rounds of SIGSTOP under a write-heavy load, the load held back while it sleeps)', async () => {
    // The successor takes the lease about one TTL into the pause. With the load held back from
    // the SIGSTOP on, it appends nothing before the paused node resumes, so the stream's fence
    // (expected last sequence) cannot refuse a record the paused node still had in hand when it
    // was stopped (a turn its worker began while its lease was still valid, or a record the
    // main thread had not published yet): only the node's own lease check can. Up to
    // PAUSE_ROUNDS rounds (default 3; the first round with a late write ends the test), each
    // with fresh SKUs and its own clients, one history; the history is checked too.
    const cluster = await startNatsCluster();
    const d = await startNatsDeployment({ shards: shardCount, nodes: [shardIds], leaseTtlMs, env, nats: cluster.asNatsServer() });
    const history = new History();
    const setups: Record<string, SkuSetup> = {};
    const drivers: LoadDriver[] = [];
    const reports: string[] = [];
    const problems: string[] = [];
    let nc: NatsConnection | null = null;
    const paused = new Set<ShardNode>();
    const pressure = { on: false, done: false, loops: [] as Promise<void>[], client: new LoadClient(d.gateway.port, 32) };
    try {
      const a = api(d.url);
      nc = await cluster.connect();
      const jsm = await jetstreamManager(nc);
      const kv = await new Kvm(nc).open(`${d.prefix}_leases`);
      const leaseOf = async (shard: number): Promise<string | null> => {
        const e = await kv.get(`shard-${shard}`);
        return e === null || e.operation !== 'PUT' ? null : e.string();
      };
      const nodeByName = (owner: string | null): ShardNode | undefined => (owner === null ? undefined : d.nodes.find((n) => owner.startsWith(`${n.name}#`)));
      const short = (x: string | null | undefined): string => x?.replace(`${d.prefix}-`, '') ?? 'none';
      const second = await d.startNode(shardIds, { waitServing: false });
      for (let waited = 0; ; waited++) {
        const h = await second.health().catch(() => null);
        if (h !== null && shardIds.every((x) => h.standby.includes(x))) break;
        if (waited > 400) throw new Error(`the second node never stood by for shards ${shardIds}`);
        await sleep(50);
      }
      // Unrecorded write pressure besides the recorded load, so that the owner has turns in
      // hand most of the time: reserves of unique buyers on SKUs of their own (outside the
      // history, so they constrain nothing there), held back with the recorded load.
      for (const shard of shardIds) {
        const sku = uniqWhere(`cp-pressure-s${shard}`, (name) => shardOfSku(name) === shard);
        await createSku(a, sku, { stock: 1_000_000, holdSeconds: 3600 });
        for (let c = 0; c < 8; c++) {
          pressure.loops.push((async () => {
            for (let n = 0; !pressure.done; n++) {
              if (!pressure.on) {
                await sleep(10);
                continue;
              }
              await pressure.client.call('POST', '/v1/reservations', { sku, buyerId: `p${shard}-${c}-${n}`, qty: 1 }, {}, 5000).catch(() => undefined);
            }
          })());
        }
      }
      const rounds = Number(process.env.PAUSE_ROUNDS ?? 3);
      for (let round = 1; round <= rounds && problems.length === 0; round++) {
        // Fresh SKUs each round (two per shard, so that each SKU's part of the history stays
        // small enough to search), with enough stock that holds keep being written.
        const skus: string[] = [];
        for (const shard of shardIds) {
          for (let k = 0; k < 2; k++) {
            const sku = uniqWhere(`cp-r${round}-s${shard}`, (name) => shardOfSku(name) === shard);
            setups[sku] = { onHand: 200, maxPerBuyer: 0 };
            await createSku(a, sku, { stock: 200, holdSeconds: 3600 });
            skus.push(sku);
          }
        }
        const driver = new LoadDriver(history, { skus, buyers: Array.from({ length: 40 }, (_, i) => `buyer-${i}`), clients: 8, thinkMs: [0, 2] });
        drivers.push(driver);
        driver.resume(d.gateway.port);
        driver.start();
        pressure.on = true;
        await sleep(800);
        // The owner of shard 0 is paused (it usually owns shard 1 too; not always after a
        // fence). Its lease and its /healthz must agree, and the lease read again, so that a node
        // being fenced off right then is not taken for the owner.
        let owner: ShardNode | undefined;
        let owners: (string | null)[] = [];
        for (let waited = 0; ; waited++) {
          owners = await Promise.all(shardIds.map(leaseOf));
          owner = nodeByName(owners[0]!);
          if (owner !== undefined && owners.every((o) => nodeByName(o) !== undefined) && (await owner.health()).serving.includes(0) &&
            (await leaseOf(0)) === owners[0]) break;
          if (waited > 300) throw new Error(`round ${round}: shards without an owner (leases ${owners.join(', ')})`);
          await sleep(50);
        }
        const incarnations = owners.map((o) => (nodeByName(o) === owner ? o : null));
        const pid = owner.engine.child.pid!;
        paused.add(owner);
        process.kill(pid, 'SIGSTOP');
        driver.pause();
        pressure.on = false;
        await sleep(2 * leaseTtlMs);
        // What the paused node wrote before the SIGCONT (even if it landed during the pause) is
        // at or below these sequences.
        const seqAtResume: number[] = [];
        for (const x of shardIds) seqAtResume.push((await jsm.streams.info(`${d.prefix}_log_${x}`)).state.last_seq);
        const leasesAtResume = await Promise.all(shardIds.map(leaseOf));
        const logMark = owner.engine.logs().length;
        const resumeWallMs = Date.now();
        process.kill(pid, 'SIGCONT');
        paused.delete(owner);
        await sleep(1000);
        const ownerLog = logLines(owner.engine.logs().slice(logMark));
        const retook = (shard: number): boolean => ownerLog.some((l) => l.msg === 'took the shard lease; serving' && l.shard === shard);
        const after: string[] = [];
        for (const x of shardIds) {
          const stream = `${d.prefix}_log_${x}`;
          const info = await jsm.streams.info(stream);
          for (let seq = seqAtResume[x]! + 1; seq <= info.state.last_seq; seq++) {
            const m = await jsm.streams.getMessage(stream, { seq });
            const who = m?.header.get('Flash-Owner') ?? '?';
            const atMs = (m === null ? NaN : m.time.getTime()) - resumeWallMs;
            after.push(`shard ${x} seq ${seq} by ${short(who)} at +${fmt(atMs)}`);
            if (incarnations[x] !== null && who === incarnations[x] && !retook(x)) {
              problems.push(`round ${round}: ${stream} seq ${seq} (lsn ${m?.header.get('Flash-Lsn')}) was appended by the paused owner ${short(who)} ` +
                `${fmt(atMs)} after its SIGCONT, while the lease was ${short(leasesAtResume[x])}'s (taken during the pause), before that node wrote anything`);
            }
          }
        }
        const lines = ownerLog.filter((l) => /serving|lost|fenced|lease/.test(l.msg));
        reports.push(`round ${round}: SIGSTOP ${short(owner.name)} (owner of shards ${shardIds.filter((x) => incarnations[x] !== null)}) for ${fmt(2 * leaseTtlMs)}; ` +
          `stream sequences at the SIGCONT ${seqAtResume.join(', ')}, leases then ${leasesAtResume.map(short).join(', ')}; appended within 1 s of the SIGCONT: ` +
          `${after.length === 0 ? 'nothing' : after.join(', ')}; its log since the SIGCONT: ` +
          `${lines.map((l) => `+${fmt(l.time - resumeWallMs)} ${l.msg} (shard ${l.shard}${l.reason ? `, ${l.reason}` : ''})`).join('; ')}`);
        await driver.stop();
      }
      pressure.done = true;
      await Promise.all(pressure.loops);
      // Every round's reserves resolved, every reservation and SKU read, through the gateway.
      for (let waited = 0; ; waited++) {
        const hs = await Promise.all(d.nodes.map((n) => n.health().catch(() => null)));
        if (shardIds.every((x) => hs.filter((h) => h?.serving.includes(x)).length === 1)) break;
        if (waited > 400) throw new Error('not every shard is served after the rounds');
        await sleep(50);
      }
      const final = { reservations: new Map<string, Operation>(), skus: new Map<string, Operation>(), unresolvedReserves: [] as ReserveArgs[] };
      for (const driver of drivers) {
        const f = await finalReadsFewAtATime(driver, d.gateway.port);
        for (const [k, v] of f.reservations) final.reservations.set(k, v);
        for (const [k, v] of f.skus) final.skus.set(k, v);
        final.unresolvedReserves.push(...f.unresolvedReserves);
      }
      const ops = history.operations();
      dumpHistory('paused-owner', ops, setups);
      const check = checkHistory(withoutRepeatedUnknownReserves(ops), setups);
      const finalProblems = finalStateCheck(ops, setups, final);
      const context = `${reports.join('\n')}\nhistory: ${ops.length} calls, verdict ${check.verdict} ` +
        `(${check.skus.map((x) => `${x.operations} ops/${x.unknown} unknown/${x.states} states/${fmt(x.ms)}`).join('; ')}), final-state problems ${finalProblems.length}`;
      if (debug) console.log(context);
      expect(problems, context).toEqual([]);
      expect(check.verdict, `${context}\n${check.explanation}`).toBe('linearizable');
      expect(finalProblems, context).toEqual([]);
    } catch (e) {
      (e as Error).message += `\n--- deployment output (tail) ---\n${quiet(d.logs()).slice(-8000)}`;
      throw e;
    } finally {
      for (const n of paused) if (n.engine.child.pid !== undefined) process.kill(n.engine.child.pid, 'SIGCONT');
      pressure.done = true;
      await Promise.all(pressure.loops);
      pressure.client.close();
      for (const driver of drivers) {
        await driver.stop();
        driver.close();
      }
      await d.stopAll().catch(() => undefined);
      await nc?.close().catch(() => undefined);
      await cluster.stopAll();
    }
  }, 180_000);
});

describe('a shard owner whose appends fail past its lease (JetStream quorum lost under write load)', () => {
  it('stops serving and stays up, and serves again once the quorum is back', async () => {
    // Two of the three nats-servers are killed for twice the lease TTL while the owner has
    // appends in flight: none can be acknowledged, the lease cannot be renewed, and each
    // append in flight gives up once the lease has run out. The node must turn that into
    // "not serving" (503s), never into an exit; once the servers are back, the shards are
    // served again.
    const cluster = await startNatsCluster();
    const d = await startNatsDeployment({ shards: shardCount, nodes: [shardIds], leaseTtlMs, env, nats: cluster.asNatsServer() });
    const owner = d.nodes[0]!;
    const pressure = { done: false, loops: [] as Promise<void>[], client: new LoadClient(d.gateway.port, 32), answers: [] as { shard: number; status: number; atMs: number }[] };
    try {
      const a = api(d.url);
      for (const shard of shardIds) {
        const sku = uniqWhere(`cq-pressure-s${shard}`, (name) => shardOfSku(name) === shard);
        await createSku(a, sku, { stock: 1_000_000, holdSeconds: 3600 });
        for (let c = 0; c < 8; c++) {
          pressure.loops.push((async () => {
            for (let n = 0; !pressure.done; n++) {
              const r = await pressure.client.call('POST', '/v1/reservations', { sku, buyerId: `q${shard}-${c}-${n}`, qty: 1 }, {}, 5000).catch(() => null);
              pressure.answers.push({ shard, status: r?.status ?? 0, atMs: performance.now() });
              if (r?.status !== 201) await sleep(20);
            }
          })());
        }
      }
      await sleep(1000);
      const victims = [1, 2];
      const downAt = performance.now();
      await Promise.all(victims.map((i) => cluster.kill9(i)));
      await sleep(2 * leaseTtlMs);
      const ownerAliveDuringOutage = owner.engine.child.exitCode === null && owner.engine.child.signalCode === null;
      for (const i of victims) await cluster.start(i);
      const upAt = performance.now();
      let servedAgain: number[] = [];
      for (let waited = 0; waited < 600; waited++) {
        servedAgain = shardIds.map((s) => pressure.answers.filter((x) => x.shard === s && x.status === 201 && x.atMs > upAt).length);
        if (servedAgain.every((n) => n > 0) || owner.engine.child.exitCode !== null || owner.engine.child.signalCode !== null) break;
        await sleep(50);
      }
      pressure.done = true;
      await Promise.all(pressure.loops);
      const exit = owner.engine.child.exitCode ?? owner.engine.child.signalCode;
      const context = `nats-servers ${victims.map((i) => cluster.nodes[i]!.name).join(' and ')} killed for ${fmt(2 * leaseTtlMs)}, back (healthy) ${fmt(upAt - downAt)} after the kill; ` +
        `the owner ${owner.engine.child.exitCode === null && owner.engine.child.signalCode === null ? 'is running' : `exited (${exit})`} ` +
        `(during the outage: ${ownerAliveDuringOutage ? 'running' : 'already gone'}); 201s per shard since the servers were back: ${servedAgain.join(', ')}\n` +
        `owner's output (tail):\n${quiet(owner.engine.logs()).slice(-3000)}`;
      if (debug) console.log(context.split('\n')[0]);
      expect(owner.engine.child.exitCode === null && owner.engine.child.signalCode === null, context).toBe(true);
      for (const n of servedAgain) expect(n, context).toBeGreaterThan(0);
    } finally {
      pressure.done = true;
      await Promise.all(pressure.loops);
      pressure.client.close();
      await d.stopAll().catch(() => undefined);
      await cluster.stopAll();
    }
  }, 120_000);
});

describe('the only shard node, when the leader of its log stream dies under write load', () => {
  it('is never fenced (no other node exists to append), stays up, and keeps serving once a new leader is elected', async () => {
    // One shard node, no standby: nobody else can append to its streams, so any "another node
    // appended" is the node misreading its own appends (a retry of a record that did land, or
    // a record whose predecessor was lost, answered "wrong last sequence" by the new leader).
    // Losing the lease meanwhile is allowed (the lease bucket's leader may be on the same
    // server): the node then takes it again.
    const cluster = await startNatsCluster();
    const d = await startNatsDeployment({ shards: shardCount, nodes: [shardIds], leaseTtlMs, env, nats: cluster.asNatsServer() });
    const owner = d.nodes[0]!;
    const pressure = { done: false, loops: [] as Promise<void>[], client: new LoadClient(d.gateway.port, 32), answers: [] as { shard: number; status: number; atMs: number }[] };
    let nc: NatsConnection | null = null;
    try {
      const a = api(d.url);
      for (const shard of shardIds) {
        const sku = uniqWhere(`cl-pressure-s${shard}`, (name) => shardOfSku(name) === shard);
        await createSku(a, sku, { stock: 1_000_000, holdSeconds: 3600 });
        for (let c = 0; c < 8; c++) {
          pressure.loops.push((async () => {
            for (let n = 0; !pressure.done; n++) {
              const r = await pressure.client.call('POST', '/v1/reservations', { sku, buyerId: `l${shard}-${c}-${n}`, qty: 1 }, {}, 5000).catch(() => null);
              pressure.answers.push({ shard, status: r?.status ?? 0, atMs: performance.now() });
              if (r?.status !== 201) await sleep(20);
            }
          })());
        }
      }
      nc = await cluster.connect();
      const jsm = await jetstreamManager(nc);
      await sleep(1000);
      const leaderOf = async (stream: string): Promise<string> => (await jsm.streams.info(stream)).cluster?.leader ?? '?';
      const leader = await leaderOf(`${d.prefix}_log_0`);
      const victim = Math.max(0, cluster.indexOf(leader));
      const leaders = `shard 0's log ${leader}, shard 1's log ${await leaderOf(`${d.prefix}_log_1`)}, leases ${await leaderOf(`KV_${d.prefix}_leases`)}`;
      const logMark = owner.engine.logs().length;
      await cluster.kill9(victim);
      await sleep(1000);
      await cluster.start(victim);
      const upAt = performance.now();
      let servedAgain: number[] = [];
      for (let waited = 0; waited < 400; waited++) {
        servedAgain = shardIds.map((s) => pressure.answers.filter((x) => x.shard === s && x.status === 201 && x.atMs > upAt + 500).length);
        if (servedAgain.every((n) => n > 0) || owner.engine.child.exitCode !== null || owner.engine.child.signalCode !== null) break;
        await sleep(50);
      }
      pressure.done = true;
      await Promise.all(pressure.loops);
      const since = logLines(owner.engine.logs().slice(logMark));
      const fenced = since.filter((l) => /another node appended/.test(String(l.reason ?? '')));
      const running = owner.engine.child.exitCode === null && owner.engine.child.signalCode === null;
      const context = `killed ${cluster.nodes[victim]!.name} for 1 s (leaders before: ${leaders}); the node ${running ? 'is running' : `exited (${owner.engine.child.exitCode ?? owner.engine.child.signalCode})`}; ` +
        `201s per shard since 0.5 s after the server was back: ${servedAgain.join(', ')}; its log since the kill: ` +
        `${since.filter((l) => /serving|lost|fenced|lease|follow|differs/.test(l.msg)).map((l) => `${l.msg} (shard ${l.shard}${l.reason ? `, ${l.reason}` : ''}${l.why ? `, ${l.why}` : ''})`).join('; ')}` +
        `${running ? '' : `\noutput (tail):\n${quiet(owner.engine.logs()).slice(-2500)}`}`;
      if (debug) console.log(context);
      expect(running, context).toBe(true);
      expect(fenced.map((l) => `shard ${l.shard}: ${l.reason}`), context).toEqual([]);
      for (const n of servedAgain) expect(n, context).toBeGreaterThan(0);
    } finally {
      pressure.done = true;
      await Promise.all(pressure.loops);
      pressure.client.close();
      await d.stopAll().catch(() => undefined);
      await nc?.close().catch(() => undefined);
      await cluster.stopAll();
    }
  }, 120_000);
});
