// fitBatchReply (src/nats/nats-wire.ts) cuts a shard node's batch reply to fit NATS
// max_payload. Property: whenever the smallest possible reply fits, the cut one does; the
// outcomes kept are the originals, in their places; every one no larger than the refusal is
// kept; the others are the refusal. A review found the first version returning a reply still
// over the limit when the refusals alone took more than the room it counted on.

import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { decode, encode } from '../src/engine/codec.js';
import type { CallOutcome } from '../src/engine/shard-protocol.js';
import { fitBatchReply, tooLargeRefusal, type NatsReply } from '../src/nats/nats-wire.js';

const outcome = (jsonChars: number): CallOutcome => ({ ok: true, status: 'ok', json: 'x'.repeat(jsonChars) });
const refusalBytes = encode(tooLargeRefusal).length;

function check(outcomes: CallOutcome[], maxBytes: number): void {
  const bytes = fitBatchReply(outcomes, maxBytes);
  const reply = decode<NatsReply>(bytes);
  expect(reply.k).toBe('batch');
  const got = reply.k === 'batch' ? reply.outcomes : [];
  expect(got).toHaveLength(outcomes.length);
  const smallest = outcomes.reduce((n, o) => n + Math.min(encode(o).length, refusalBytes), 0) + 32;
  if (smallest <= maxBytes) expect(bytes.length).toBeLessThanOrEqual(maxBytes);
  if (encode({ k: 'batch', outcomes }).length <= maxBytes) expect(got).toEqual(outcomes);
  got.forEach((o, i) => {
    if (encode(outcomes[i]!).length <= refusalBytes) expect(o).toEqual(outcomes[i]);
    else expect([outcomes[i], tooLargeRefusal]).toContainEqual(o);
  });
}

describe('fitting a batch reply to max_payload', () => {
  it('keeps what fits, in place, and refuses the rest: for any sizes and any limit', () => {
    fc.assert(fc.property(
      fc.array(fc.integer({ min: 0, max: 5000 }), { minLength: 1, maxLength: 300 }),
      fc.integer({ min: 256, max: 256 * 1024 }),
      (sizes, maxBytes) => check(sizes.map(outcome), maxBytes),
    ), { numRuns: 200 });
  });

  it('fits 256 answers with one of 40 KB under a 32 KiB limit (the review\'s case)', () => {
    const outcomes = [outcome(40_000), ...Array.from({ length: 255 }, () => ({ ok: false, code: 'sold_out', message: 'sku x has 0 units available' }) as CallOutcome)];
    const bytes = fitBatchReply(outcomes, 32 * 1024);
    expect(bytes.length).toBeLessThanOrEqual(32 * 1024);
    const reply = decode<NatsReply>(bytes);
    expect(reply.k === 'batch' ? reply.outcomes[0] : null).toEqual(tooLargeRefusal);
    expect(reply.k === 'batch' ? reply.outcomes.slice(1) : null).toEqual(outcomes.slice(1));
  });
});

describe('the UTF-8 length pages are measured in', () => {
  it('equals Buffer.byteLength for any string, lone surrogates included', async () => {
    const { utf8Length } = await import('../src/domain/fields.js');
    fc.assert(fc.property(fc.string({ unit: fc.oneof(fc.constant('a'), fc.constant('é'), fc.constant('漢'), fc.constant('😀'), fc.constant('\ud800'), fc.constant('\udc00'), fc.constant('\x7f'), fc.constant('\u07ff'), fc.constant('\u0800')), maxLength: 50 }), (s) => {
      expect(utf8Length(s)).toBe(Buffer.byteLength(s, 'utf8'));
    }), { numRuns: 500 });
  });
});
