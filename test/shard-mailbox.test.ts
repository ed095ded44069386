// The gateway-side mailbox shared by the worker and NATS transports: batching per
// event-loop turn, at most N batches in flight (what gathers meanwhile goes as one),
// the overloaded bound, and a NATS batch taken as one unit.
import { describe, expect, it } from 'vitest';
import type { Command } from '../src/domain/index.js';
import { ShardMailbox, type Resolve } from '../src/engine/shard-mailbox.js';
import type { CallOutcome } from '../src/engine/shard-protocol.js';

const cmd = (i: number): Command => ({ t: 'sku.get', sku: `s${i}` });
const tick = (): Promise<void> => new Promise((r) => setImmediate(r));

function harness(opts: { mailboxMax?: number; batchMax?: number; batchesInFlightMax?: number } = {}) {
  const sent: { cmds: Command[]; resolves: Resolve[] }[] = [];
  const box = new ShardMailbox({
    mailboxMax: opts.mailboxMax ?? 100, batchMax: opts.batchMax ?? 50, batchesInFlightMax: opts.batchesInFlightMax ?? 2,
    overloadedMessage: 'full', send: (cmds, resolves) => sent.push({ cmds, resolves }),
  });
  /** The shard answers the oldest batch still out. */
  const answerOldest = (): void => {
    const b = sent.find((x) => x.resolves.length > 0 && !(x as { done?: boolean }).done)!;
    (b as { done?: boolean }).done = true;
    box.batchReturned();
    box.answered(b.resolves.length);
    b.resolves.forEach((r, i) => r({ ok: true, json: String(i) } as CallOutcome));
  };
  return { box, sent, answerOldest };
}

describe('the shard mailbox', () => {
  it('sends the commands of one event-loop turn as one batch, and a lone command at once', async () => {
    const { box, sent } = harness();
    for (let i = 0; i < 5; i++) box.call(cmd(i), () => undefined);
    expect(sent).toHaveLength(0);
    await tick();
    expect(sent.map((b) => b.cmds.length)).toEqual([5]);
    box.call(cmd(9), () => undefined);
    await tick();
    expect(sent.map((b) => b.cmds.length)).toEqual([5, 1]);
  });

  it('keeps at most N batches out; what gathers meanwhile goes as ONE batch when one comes back', async () => {
    const { box, sent, answerOldest } = harness({ batchesInFlightMax: 2 });
    box.call(cmd(0), () => undefined);
    await tick();
    box.call(cmd(1), () => undefined);
    await tick();
    expect(sent).toHaveLength(2);
    for (let i = 0; i < 30; i++) {
      box.call(cmd(100 + i), () => undefined);
      await tick(); // many turns: none may send while two batches are out
    }
    expect(sent).toHaveLength(2);
    answerOldest();
    expect(sent).toHaveLength(3);
    expect(sent[2]!.cmds).toHaveLength(30);
  });

  it('still sends a full batch past the in-flight bound, and refuses overloaded past mailboxMax without queueing', async () => {
    const { box, sent } = harness({ batchesInFlightMax: 1, batchMax: 10, mailboxMax: 25 });
    box.call(cmd(0), () => undefined);
    await tick();
    const answers: CallOutcome[] = [];
    for (let i = 0; i < 30; i++) box.call(cmd(i), (o) => answers.push(o));
    // 1 out + 24 accepted (two full batches sent at once, 4 pending), 6 refused at once.
    expect(sent.map((b) => b.cmds.length)).toEqual([1, 10, 10]);
    expect(answers).toHaveLength(6);
    expect(answers.every((o) => !o.ok && o.code === 'overloaded')).toBe(true);
    expect(box.inFlight).toBe(25);
  });

  it('takes a NATS batch as one unit: all accepted, answered in order, or all refused when there is no room', async () => {
    const { box, sent, answerOldest } = harness({ mailboxMax: 10 });
    const got: CallOutcome[][] = [];
    box.callMany([cmd(1), cmd(2), cmd(3)], (o) => got.push(o));
    box.callMany(Array.from({ length: 8 }, (_, i) => cmd(i)), (o) => got.push(o));
    expect(got).toHaveLength(1); // the second did not fit: refused whole
    expect(got[0]!.every((o) => !o.ok && o.code === 'overloaded')).toBe(true);
    await tick();
    expect(sent.map((b) => b.cmds.length)).toEqual([3]);
    answerOldest();
    expect(got[1]!.map((o) => (o.ok ? o.json : o.code))).toEqual(['0', '1', '2']);
    expect(box.inFlight).toBe(0);
  });

  it('answers its unsent commands when the shard goes away, and frees their room', async () => {
    const { box } = harness();
    const answers: CallOutcome[] = [];
    for (let i = 0; i < 3; i++) box.call(cmd(i), (o) => answers.push(o));
    box.failPending({ ok: false, code: 'shard_unavailable', message: 'gone' });
    expect(answers.map((o) => (o.ok ? 'ok' : o.code))).toEqual(['shard_unavailable', 'shard_unavailable', 'shard_unavailable']);
    expect(box.inFlight).toBe(0);
  });
});
