// Runs the ERP stand-in from the command line for demos:
//   node dist/bench/erp-standin-main.js --port 9090 --latency-ms 50 --jitter-ms 10 --error-rate 0.3
// The secret comes from FLASH_ERP_SECRET (or --secret). It prints its URL, then its stats
// every 5 s; GET /stats and POST /faults {"errorRate":1} work while it runs. Ctrl-C stops it.

import { parseArgs } from 'node:util';
import { startErpStandIn } from './erp-standin.js';

function numberFlag(values: Record<string, string | boolean | undefined>, name: string, fallback: number): number {
  const raw = values[name];
  if (raw === undefined) return fallback;
  const n = Number(raw);
  if (typeof raw !== 'string' || raw.trim() === '' || !Number.isFinite(n) || n < 0) {
    console.error(`--${name}=${String(raw)} must be a number >= 0`);
    process.exit(2);
  }
  return n;
}

async function main(): Promise<void> {
  const { values } = parseArgs({
    options: {
      port: { type: 'string' }, host: { type: 'string' }, secret: { type: 'string' }, seed: { type: 'string' },
      'latency-ms': { type: 'string' }, 'jitter-ms': { type: 'string' }, 'error-rate': { type: 'string' },
    },
  });
  const secret = values.secret ?? process.env.FLASH_ERP_SECRET ?? '';
  if (secret === '') {
    console.error('set FLASH_ERP_SECRET (or --secret): the stand-in checks every signature');
    process.exit(2);
  }
  const errorRate = numberFlag(values, 'error-rate', 0);
  if (errorRate > 1) {
    console.error('--error-rate must be in 0..1');
    process.exit(2);
  }
  const erp = await startErpStandIn({
    secret, port: numberFlag(values, 'port', 9090), host: values.host ?? '127.0.0.1',
    latencyMs: numberFlag(values, 'latency-ms', 50), jitterMs: numberFlag(values, 'jitter-ms', 10), errorRate,
    ...(values.seed === undefined ? {} : { seed: numberFlag(values, 'seed', 0) }),
  });
  console.log(`erp stand-in listening on ${erp.url} (GET /stats, POST /faults)`);
  const timer = setInterval(() => console.log(JSON.stringify(erp.stats())), 5000);
  const stop = (): void => {
    clearInterval(timer);
    console.log(JSON.stringify(erp.stats()));
    void erp.close().then(() => process.exit(0));
  };
  process.on('SIGINT', stop);
  process.on('SIGTERM', stop);
}

void main();
