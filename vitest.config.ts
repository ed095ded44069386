import { defineConfig } from 'vitest/config';

export default defineConfig({
  test: {
    include: ['test/**/*.test.ts'],
    testTimeout: 60_000,
    hookTimeout: 60_000,
    // Integration suites start servers and write real files; run files one or two at a
    // time on this 2-core machine so that timing-sensitive tests are not starved.
    maxWorkers: 2,
  },
});
