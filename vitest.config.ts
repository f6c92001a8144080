import { defineConfig } from 'vitest/config';

export default defineConfig({
  test: {
    include: ['test/**/*.test.ts'],
    setupFiles: ['test/setup.ts'],
    testTimeout: 120_000,
    hookTimeout: 120_000,
    // Training and sharp tests are CPU-bound; two cores, so keep the pool small to avoid thrashing.
    pool: 'forks',
    maxWorkers: 2,
  },
});
