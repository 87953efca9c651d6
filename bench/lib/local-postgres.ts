import { execFile } from 'node:child_process'
import { mkdtempSync, rmSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { dirname, join } from 'node:path'
import { fileURLToPath } from 'node:url'
import { promisify } from 'node:util'

/**
 * PostgreSQL for the benchmarks: the URL given (POSTGRES_URL or a flag), else a throwaway server
 * from scripts/postgres-local.sh in a temp dir of its own, which `release` stops and deletes.
 */
const root = join(dirname(fileURLToPath(import.meta.url)), '..', '..', '..')
const SCRIPT = join(root, 'scripts', 'postgres-local.sh')
const run = promisify(execFile)

export interface BenchPostgres {
  url: string
  source: string
  release(): Promise<void>
}

export async function benchPostgres(given: string, maxConnections = 300): Promise<BenchPostgres> {
  if (given) return { url: given, source: 'given URL', release: async () => undefined }
  const home = mkdtempSync(join(tmpdir(), 'streamgate-bench-pg-'))
  const env = { ...process.env, PG_HOME: home, PG_SETTINGS: `-c max_connections=${maxConnections}` }
  const release = async (): Promise<void> => {
    await run(SCRIPT, ['stop'], { env }).catch(() => undefined)
    rmSync(home, { recursive: true, force: true })
  }
  try {
    const { stdout } = await run(SCRIPT, ['start'], { env, timeout: 120_000 })
    const port = new URL(stdout.trim()).port
    return { url: stdout.trim(), source: `local server (scripts/postgres-local.sh) on 127.0.0.1:${port}`, release }
  } catch (err) {
    await release()
    const e = err as { stderr?: string; message: string }
    throw new Error(`scripts/postgres-local.sh start failed: ${e.stderr || e.message}`)
  }
}
