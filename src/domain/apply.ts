// The shard state machine's single entry point: apply(state, command, nowMs). Pure and
// deterministic: given the same state, command and nowMs it makes the same change and
// gives the same answer, which is what makes replaying the write-ahead log exact.

import type { Applied, Command } from './commands.js';
import { applyAdjust, applyAudit, applyGetSku, applyLink, applyList, applyUpsert } from './apply-sku.js';
import { applyCancel, applyGetReservation, applyPay, applyReserve } from './apply-reservation.js';
import { applyExpire } from './apply-expire.js';
import { applyRefund } from './apply-refund.js';
import { applyAck, applyErpMode, applyPending, applyReconcile, applyStockAck, applyStockPending } from './apply-outbox.js';
import type { ShardState } from './shard-state.js';
import { commandError, newCommandError } from './command-guard.js';
import { refused } from './views.js';
import { applyDropGet, applyDropPut, applyEntryGet, applyJoin, applyOrderGet } from './apply-drop.js';

export function apply(state: ShardState, command: Command, nowMs: number): Applied {
  return applyAnswering(state, command, nowMs, true);
}

/**
 * Replays a logged command: exactly the change apply made (the same checks, the same
 * refusals), but a reserve, the bulk of any log, builds no answer, as nobody reads one
 * (its view and outcome were about a fifth of what a replay allocated). Returns whether
 * the command changed state.
 */
export function replay(state: ShardState, command: Command, nowMs: number): boolean {
  return applyAnswering(state, command, nowMs, false).mutated;
}

function applyAnswering(state: ShardState, command: Command, nowMs: number, answer: boolean): Applied {
  // Time never runs backwards inside a shard, even if the host clock does.
  const now = nowMs > state.lastNowMs ? nowMs : state.lastNowMs;
  // A replay checks what the command was checked against when it was logged, never a rule
  // added since (newCommandError): the log holds what earlier versions accepted.
  const invalid = commandError(command) ?? (answer ? newCommandError(command) : null);
  if (invalid !== null) return refused('invalid_request', invalid);
  state.stockEvents.nowMs = now;
  const applied = dispatch(state, command, now, answer);
  if (applied.mutated) state.lastNowMs = now;
  return applied;
}

function dispatch(state: ShardState, c: Command, nowMs: number, answer: boolean): Applied {
  switch (c.t) {
    case 'res.reserve': return applyReserve(state, c, nowMs, answer);
    case 'res.pay': return applyPay(state, c, nowMs);
    case 'res.cancel': return applyCancel(state, c.id, c.buyerId, nowMs);
    case 'res.refund': return applyRefund(state, c, nowMs);
    case 'res.get': return applyGetReservation(state, c.id, c.buyerId);
    case 'res.expire': return applyExpire(state, nowMs);
    case 'sku.get': return applyGetSku(state, c.sku);
    case 'sku.upsert': return applyUpsert(state, c, nowMs);
    case 'sku.adjust': return applyAdjust(state, c, nowMs);
    case 'sku.link': return applyLink(state, c);
    case 'erp.pending': return applyPending(state, c.afterSeq, c.max, c.refunds === true);
    case 'erp.ack': return applyAck(state, c.upToSeq);
    case 'erp.mode': return applyErpMode(state, c.enabled, c.events);
    case 'ev.pending': return applyStockPending(state, c.afterSeq, c.max);
    case 'ev.ack': return applyStockAck(state, c.upToSeq);
    case 'erp.reconcile': return applyReconcile(state);
    case 'sku.audit': return applyAudit(state, c.sku, c.cursor, c.limit);
    case 'sku.list': return applyList(state, c.after, c.limit);
    case 'drop.put': return applyDropPut(state, c, nowMs);
    case 'drop.get': return applyDropGet(state, c.dropId, nowMs);
    case 'q.join': return applyJoin(state, c, nowMs);
    case 'q.entry': return applyEntryGet(state, c.dropId, c.buyerId, nowMs);
    case 'drop.order': return applyOrderGet(state, c.dropId, c.offset, c.limit);
  }
}
