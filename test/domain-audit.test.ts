// The audit trail in the core (src/domain/audit.ts): what each change records, and its bounds
// (the newest 1,000 entries and 64 KiB per SKU), kept across a snapshot.

import { Packr } from 'msgpackr';
import { describe, expect, it } from 'vitest';
import { apply, createShardState, fromSnapshot, toSnapshot, type ShardSnapshot } from '../src/domain/index.js';
import { auditBytesPerSkuMax } from '../src/domain/audit.js';
import { encodeSnapshotChunks } from '../src/engine/shard-runtime.js';
import { okOf, T0 } from './support/domain-kit.js';

const packr = new Packr({ useRecords: false, moreTypes: false, mapsAsObjects: true, variableMapSize: true });

describe('the audit trail', () => {
  it('keeps at most 64 KiB of entries per SKU, the newest, however large each policy is; the seq goes on', () => {
    const s = createShardState(0, 1);
    okOf(apply(s, { t: 'sku.upsert', sku: 'tee', stock: 1, actor: 'ops' }, T0));
    const channels = (k: number): [string, number | null][] => Array.from({ length: 64 }, (_, i) => [`channel-${i}`, k + i]);
    for (let k = 0; k < 200; k++) okOf(apply(s, { t: 'sku.upsert', sku: 'tee', channels: channels(k), actor: 'ops', reason: `change ${k}` }, T0 + k + 1));
    const tee = s.skus.get('tee')!;
    const bytes = JSON.stringify(tee.audit).length;
    expect(bytes).toBeLessThanOrEqual(auditBytesPerSkuMax + 2 * tee.audit.length);
    expect(tee.audit.length).toBeGreaterThan(1);
    expect(tee.audit.length).toBeLessThan(200);
    expect(tee.audit.at(-1)).toMatchObject({ seq: 201, reason: 'change 199' });
    expect(tee.auditSeqBase).toBe(201 - tee.audit.length);
    const page = okOf(apply(s, { t: 'sku.audit', sku: 'tee', limit: 1000 }, T0 + 300)).audit!;
    expect(page.items[0]!.reason).toBe('change 199');
    const restored = fromSnapshot(packr.unpack(packr.pack(toSnapshot(s))) as ShardSnapshot, s.config);
    expect(toSnapshot(restored)).toEqual(toSnapshot(s));
    expect(restored.skus.get('tee')!.auditBytes).toBe(tee.auditBytes);
  });

  it('cuts a snapshot whose SKU rows are large into chunks by bytes, not by rows only', () => {
    const s = createShardState(0, 1);
    for (let n = 0; n < 3; n++) okOf(apply(s, { t: 'sku.upsert', sku: `s${n}`, stock: 1, actor: 'ops' }, T0));
    const chunks = encodeSnapshotChunks(toSnapshot(s));
    // The skus list left the head: every list is carried in chunks of its own.
    expect(chunks.length).toBeGreaterThanOrEqual(2);
    expect((packr.unpack(chunks[0]!) as ShardSnapshot).skus).toEqual([]);
  });

  it('records a refund that takes units out of stock as a stock change, with its actor and reason', () => {
    const s = createShardState(0, 1);
    okOf(apply(s, { t: 'sku.upsert', sku: 'tee', stock: 10, actor: 'ops' }, T0));
    const id = okOf(apply(s, { t: 'res.reserve', sku: 'tee', buyerId: 'b', qty: 1, nonce: 'n' }, T0)).reservation!.reservationId;
    okOf(apply(s, { t: 'res.pay', id }, T0 + 1));
    okOf(apply(s, { t: 'res.refund', id, restock: false, reason: 'damaged', actor: 'psp' }, T0 + 2));
    const items = okOf(apply(s, { t: 'sku.audit', sku: 'tee', limit: 10 }, T0 + 3)).audit!.items;
    expect(items[0]).toMatchObject({ actor: 'psp', action: 'stock', before: { onHand: 10 }, after: { onHand: 9 }, reason: 'damaged' });
  });
});

describe('the SKU listing', () => {
  it('stays in sku order as SKUs are added between listings, without sorting again', () => {
    const s = createShardState(0, 1);
    const names = Array.from({ length: 300 }, (_, i) => `sku-${(i * 7919) % 1000}`);
    for (const n of names.slice(0, 100)) okOf(apply(s, { t: 'sku.upsert', sku: n, stock: 1 }, T0));
    okOf(apply(s, { t: 'sku.list', limit: 1 }, T0)); // builds the index
    const index = s.sortedSkuNames;
    for (const n of names.slice(100)) okOf(apply(s, { t: 'sku.upsert', sku: n, stock: 1 }, T0));
    expect(s.sortedSkuNames).toBe(index); // the same array, kept up to date, not rebuilt
    const listed: string[] = [];
    let after: string | undefined;
    for (;;) {
      const page = okOf(apply(s, { t: 'sku.list', limit: 37, ...(after === undefined ? {} : { after }) }, T0)).skus!;
      listed.push(...page.items.map((v) => v.sku));
      if (!page.more) break;
      after = listed.at(-1);
    }
    expect(listed).toEqual([...new Set(names)].sort());
  });
});
