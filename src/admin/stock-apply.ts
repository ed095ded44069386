// Applies validated sku.upsert commands with a small, fixed concurrency, retrying answers
// that say "try again" (overloaded, shard restarting, rate limited) a few times, and sums up
// what happened. It does not know how a command travels (HTTP PUT from the CLI, or the
// shard router inside the gateway), and never applies anything the parser did not return.

import { skuFields } from '../domain/index.js';
import type { SkuUpsert } from './stock-import.js';

export type UpsertAnswer =
  | { ok: true; created: boolean }
  | { ok: false; code: string; message: string; retryable: boolean };

export interface ApplyFailure {
  line: number;
  sku: string;
  code: string;
  message: string;
}

export interface ApplySummary {
  skus: number;
  created: number;
  updated: number;
  failed: number;
  /** The first 100 failures. */
  failures: ApplyFailure[];
  /**
   * Existing SKUs whose row gave a stock: stock applies when a SKU is created, so theirs was
   * kept (their other fields were applied). The first 100 names, and how many.
   */
  stockKept: string[];
  stockKeptCount: number;
  /** True when a refusal that no other call can fix (e.g. unauthorized) stopped the rest. */
  stoppedEarly: boolean;
}

export interface ApplyOptions {
  concurrency: number;
  /** Extra tries for a retryable answer. */
  retries?: number;
  retryDelayMs?: number;
  /** Codes after which every further call would fail too: stop starting new ones. */
  fatalCodes?: readonly string[];
}

const failuresKept = 100;

/** The PUT /v1/skus/{sku} body of a command (API field names: startsAt, not startsAtMs). */
/** The PUT /v1/skus body of a command: every importable field of the domain's field table, under its wire name. */
export function upsertBody(c: SkuUpsert): Record<string, unknown> {
  const body: Record<string, unknown> = {};
  const fields = c as unknown as Record<string, unknown>;
  for (const f of skuFields) if (f.csv !== null && fields[f.key] !== undefined) body[f.wire] = fields[f.key];
  return body;
}

export async function applyUpserts(
  commands: readonly SkuUpsert[], lines: readonly number[], upsert: (c: SkuUpsert) => Promise<UpsertAnswer>, opts: ApplyOptions,
): Promise<ApplySummary> {
  const summary: ApplySummary = { skus: commands.length, created: 0, updated: 0, failed: 0, failures: [], stoppedEarly: false, stockKept: [], stockKeptCount: 0 };
  const retries = opts.retries ?? 4;
  let next = 0;
  const one = async (i: number): Promise<void> => {
    const cmd = commands[i] as SkuUpsert;
    let answer: UpsertAnswer = await upsert(cmd);
    for (let attempt = 1; !answer.ok && answer.retryable && attempt <= retries; attempt++) {
      await new Promise((r) => setTimeout(r, (opts.retryDelayMs ?? 200) * 2 ** (attempt - 1)));
      answer = await upsert(cmd);
    }
    if (answer.ok) {
      if (answer.created) summary.created++;
      else {
        summary.updated++;
        if (cmd.stock !== undefined) {
          summary.stockKeptCount++;
          if (summary.stockKept.length < failuresKept) summary.stockKept.push(cmd.sku);
        }
      }
      return;
    }
    summary.failed++;
    if (summary.failures.length < failuresKept) summary.failures.push({ line: lines[i] ?? 0, sku: cmd.sku, code: answer.code, message: answer.message });
    if (opts.fatalCodes?.includes(answer.code)) summary.stoppedEarly = true;
  };
  const worker = async (): Promise<void> => {
    while (next < commands.length && !summary.stoppedEarly) await one(next++);
  };
  await Promise.all(Array.from({ length: Math.max(1, Math.min(opts.concurrency, commands.length)) }, worker));
  return summary;
}
