import { defineConfig } from 'vitest/config'

export default defineConfig({
  test: {
    include: ['test/**/*.test.ts'],
    // One throwaway PostgreSQL for the run (POSTGRES_URL overrides); suites use schemas of their own.
    globalSetup: ['test/setup/postgres.ts'],
    pool: 'forks',
    // Two cores here: integration suites start real gateways and sockets; keep two files at a time.
    maxWorkers: 2,
    minWorkers: 1,
    testTimeout: 30_000,
    hookTimeout: 60_000,
    reporters: ['default'],
  },
})
