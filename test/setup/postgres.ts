import { execFile } from 'node:child_process'
import { mkdtempSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { dirname, join } from 'node:path'
import { fileURLToPath } from 'node:url'
import { promisify } from 'node:util'
import type { TestProject } from 'vitest/node'
import { canRunLocalPostgres } from '../helpers/postgres-binaries.js'

/**
 * vitest global setup: one throwaway PostgreSQL for the whole run (scripts/postgres-local.sh in a
 * temp dir on a free port), unless POSTGRES_URL names one. Each suite works in a schema of its own
 * (test/helpers/postgres.ts), so the files running in parallel never see each other's rows.
 * Without PostgreSQL binaries the PostgreSQL suites skip (REQUIRE_POSTGRES=1 makes that a failure).
 */
const run = promisify(execFile)
const SCRIPT = join(dirname(fileURLToPath(import.meta.url)), '..', '..', 'scripts', 'postgres-local.sh')

export default async function setup(project: TestProject): Promise<(() => Promise<void>) | void> {
  if (process.env.POSTGRES_URL) {
    project.provide('postgresUrl', process.env.POSTGRES_URL)
    return
  }
  if (!canRunLocalPostgres()) {
    project.provide('postgresUrl', '')
    return
  }
  const home = mkdtempSync(join(tmpdir(), 'streamgate-pg-test-'))
  const env = { ...process.env, PG_HOME: home }
  const { stdout } = await run(SCRIPT, ['start'], { env })
  project.provide('postgresUrl', stdout.trim())
  return async () => {
    await run(SCRIPT, ['stop'], { env }).catch((err: unknown) => console.error('postgres-local stop failed', err))
  }
}

declare module 'vitest' {
  export interface ProvidedContext {
    postgresUrl: string
  }
}
