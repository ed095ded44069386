// `flash rehearse`'s flags and help, registered on the `flash` program (src/cli/flash.ts).

import type { Command } from 'commander';
import type { FlashIo, GlobalOptions } from './flash-client.js';
import { runRehearse } from './rehearse.js';

const helpAfter = `
Credentials (flags, else environment; for an engine on this machine, else the tokens.env a
first npm start wrote):
  operator  --operator-token, FLASH_OPERATOR_TOKEN, else --token / FLASH_TOKEN / FLASH_ADMIN_TOKEN:
            creates the SKUs and drops, writes stock off in --cleanup, reads the ERP report
  shop      --shop-token, FLASH_SHOP_TOKEN: reserves and joins queues with the buyerId in the body
  payments  --payments-token, FLASH_PAYMENTS_TOKEN: pays (sell-outs, flows)
  buyers    FLASH_BUYER_TOKEN_SECRET (the shop's HS256 secret, never a flag): buyer tokens with
            sub = buyerId, exp, and aud = FLASH_BUYER_TOKEN_AUDIENCE when set; a phase uses
            them when the secret is at hand (as: buyer), else the shop token (as: shop)

Safety: a target that is not this machine (127.0.0.0/8, ::1, localhost) is refused unless
the command line names it: --target-is host:port (equal to --url's) or --allow-remote host.
What the run creates is named <prefix><name> (default rehearsal-<runid>-); --cleanup cancels
its holds and writes its SKUs' stock off to 0 afterwards (paid units stay sold).

Scenario (YAML; JSON takes the same shape):
  name: spring drop rehearsal
  skus:
    - { sku: hot, stock: 500, maxPerBuyer: 1 }
    - { sku: tee, count: 20, stock: 100000, holdSeconds: 30 }   # tee-000 .. tee-019
  drops:
    - { dropId: line, queue: { mode: fifo, admitPerSecond: 200 } }
  phases:
    - { name: hot, kind: sellout, sku: hot, buyers: 2000 }
    - { name: many, kind: reserve, sku: tee, load: { shape: constant, rps: 1000, seconds: 10 } }
    - { name: flows, kind: flow, sku: tee, mix: { pay: 60, cancel: 20, abandon: 20 },
        load: { shape: ramp, from: 200, to: 800, steps: 4, stepSeconds: 5 } }
    - { name: overload, kind: reserve, sku: tee, load: { shape: overload, times: 2, seconds: 5 } }
  targets:
    - { phase: many, p99Ms: 50, atRps: 1000 }
  checks: { erpDrainedWithinSeconds: 60 }
Load shapes: max (as fast as answered), constant {rps, seconds}, ramp {from, to, steps,
stepSeconds}, spike {rps, spikeRps, seconds, spikeSeconds, afterSeconds}, overload {times,
seconds, probeSeconds}. At a rate each request is sent at its own planned time and its latency
counts from then (a stall counts the wait of every request due during it); a flow phase's
rate x seconds requests carry whole flows (reserve, then pay or cancel). A scenario plans at
most 2,000,000 requests and 3,600 s of load. Targets are judged on the 2xx answers; a phase
with no 2xx (or under checks.minOkShare, default 50 %) fails, and so does any 401 or 403
forbidden. Redirects are never followed: a 3xx is a failed call. --url may carry a base path,
never a user or password.

Exit codes: 0 every check and target passed; 1 one failed (or the engine refused the setup);
2 usage, an invalid scenario, a missing credential, a remote target not named (nothing sent),
or the engine already has a SKU or drop the run would create (nothing changed); 3 the engine
cannot be reached, redirects, or stopped answering mid-run (the report holds what it got).

Examples:
  flash rehearse deploy/rehearsal/smoke.yaml
  flash rehearse deploy/rehearsal/drop-day.yaml --url http://10.0.0.5:8080 --target-is 10.0.0.5:8080 --cleanup --out /tmp/rehearsal`;

type Run = (f: (cmd: Command) => Promise<number>) => (...args: unknown[]) => Promise<void>;

export function registerRehearse(root: Command, io: FlashIo, run: Run): void {
  root.command('rehearse')
    .description('load-test a deployment with a drop scenario (sell-out, many SKUs, flows, queues, overload); live progress, then report.md, report.json and chart.svg; exit 1 when a check or target fails')
    .argument('<scenario>', 'a .yaml, .yml or .json scenario file; - reads stdin')
    .option('--operator-token <token>', 'sets up SKUs and drops (env FLASH_OPERATOR_TOKEN; else --token)')
    .option('--shop-token <token>', 'the shop backend\'s token (env FLASH_SHOP_TOKEN)')
    .option('--payments-token <token>', 'the payments side\'s token (env FLASH_PAYMENTS_TOKEN)')
    .option('--out <dir>', 'where the report goes (default ./rehearsal-<timestamp>)')
    .option('--target-is <host:port>', 'load a target that is not this machine: must equal --url\'s host:port')
    .option('--allow-remote <host>', 'load this host although it is not this machine (repeatable)', (v: string, prev: string[] = []) => [...prev, v])
    .option('--cleanup', 'afterwards cancel the run\'s holds and write its SKUs\' stock off to 0')
    .option('--prefix <prefix>', 'prefix of the SKUs, drops and buyers the run creates (default rehearsal-<runid>-)')
    .option('--dry-run', 'check the scenario and credentials, print the plan; send nothing')
    .option('--json', 'print the report\'s JSON on stdout instead of the summary')
    .addHelpText('after', helpAfter)
    .action(run(async (cmd) => {
      const o = cmd.opts<{ operatorToken?: string; shopToken?: string; paymentsToken?: string; out?: string; targetIs?: string; allowRemote?: string[]; cleanup?: boolean; prefix?: string; dryRun?: boolean; json?: boolean }>();
      return runRehearse(cmd.optsWithGlobals<GlobalOptions>(), io, cmd.args[0]!, {
        operatorToken: o.operatorToken, shopToken: o.shopToken, paymentsToken: o.paymentsToken, out: o.out, targetIs: o.targetIs,
        allowRemote: o.allowRemote, cleanup: o.cleanup === true, prefix: o.prefix, dryRun: o.dryRun === true, json: o.json === true,
      });
    }));
}
