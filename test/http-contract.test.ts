// The HTTP contract of shared/API.md against the embedded engine: one child process
// (dist/src/main.js, FLASH_ROLE=all, no NATS) on a free port and a fresh data directory.
// The suite itself is test/support/contract-suite.ts; test/nats-contract.test.ts runs the
// same tests against a gateway and two shard nodes over NATS.

import { afterAll } from 'vitest';
import { runEngineToExit, startEngine, stopAllEngines } from './support/engine-process.js';
import { contractSuite } from './support/contract-suite.js';

afterAll(stopAllEngines);

contractSuite('the HTTP contract, against the embedded engine', async () => {
  const engine = await startEngine({ env: { FLASH_BUYER_RPS: '1000' } });
  return {
    url: engine.url,
    metricsUrls: [engine.url],
    logs: () => engine.logs(),
    // A variant is a separate engine with its own data directory and only `env` set.
    startVariant: (env) => startEngine({ env }),
    runVariantToExit: (env) => runEngineToExit({ env }),
    stop: async () => {
      await engine.stop();
    },
  };
});
