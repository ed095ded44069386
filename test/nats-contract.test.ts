// The HTTP contract of shared/API.md against the NATS roles: a gateway (FLASH_ROLE=gateway)
// and two shard nodes (FLASH_ROLE=shards, one shard each) over a nats-server this suite
// starts on a free port (or FLASH_NATS_URL). The tests are those of the embedded engine
// (test/support/contract-suite.ts); a variant is a second gateway on the same shard nodes.

import { afterAll } from 'vitest';
import { stopAllEngines } from './support/engine-process.js';
import { contractSuite } from './support/contract-suite.js';
import { startNatsDeployment, stopAllNatsServers } from './support/nats-deployment.js';

afterAll(async () => {
  await stopAllEngines();
  await stopAllNatsServers();
});

contractSuite('the HTTP contract, against a gateway and two shard nodes over NATS', async () => {
  // FLASH_BUYER_RPS is held by the gateways and by the shards (the shards make it exact across gateways).
  const d = await startNatsDeployment({ shards: 2, nodes: [[0], [1]], env: { FLASH_BUYER_RPS: '1000' } });
  return {
    url: d.url,
    metricsUrls: [d.gateway.url, ...d.nodes.map((n) => n.engine.url)],
    logs: () => d.logs(),
    // Every variant setting is a gateway setting: start another gateway on the same shards,
    // with the gateway defaults (not the suite's FLASH_BUYER_RPS) plus `env`.
    startVariant: (env) => d.startGateway({ FLASH_BUYER_RPS: '', ...env }),
    runVariantToExit: (env) => d.runGatewayToExit({ FLASH_BUYER_RPS: '', ...env }),
    stop: () => d.stopAll(),
  };
});
