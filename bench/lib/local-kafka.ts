import { execFile, execFileSync } from 'node:child_process'
import { mkdtempSync, rmSync } from 'node:fs'
import { createServer } from 'node:net'
import { tmpdir } from 'node:os'
import { dirname, join } from 'node:path'
import { fileURLToPath } from 'node:url'
import { promisify } from 'node:util'

/**
 * Kafka for the benchmarks: the brokers given (KAFKA_BROKERS or a flag), else a single-node broker
 * from scripts/kafka-local.sh on free ports with its own data directory, which `release` stops and
 * deletes. The same approach as test/helpers/kafka.ts, which the build (tsconfig.json) leaves out.
 */
const root = join(dirname(fileURLToPath(import.meta.url)), '..', '..', '..')
const SCRIPT = join(root, 'scripts', 'kafka-local.sh')
const run = promisify(execFile)

export interface BenchKafka {
  brokers: string[]
  /** Where the brokers came from, for the report ("local broker on 127.0.0.1:40123", "KAFKA_BROKERS"). */
  source: string
  release(): Promise<void>
}

export async function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const server = createServer()
    server.once('error', reject)
    server.listen(0, '127.0.0.1', () => {
      const { port } = server.address() as { port: number }
      server.close(() => resolve(port))
    })
  })
}

export function hasCommand(name: string): boolean {
  try {
    execFileSync('sh', ['-c', `command -v ${name}`], { stdio: 'ignore' })
    return true
  } catch {
    return false
  }
}

/** Why no local broker can be started here, or null when java and mvn are on PATH. */
export function localKafkaMissing(): string | null {
  const missing = ['java', 'mvn'].filter((c) => !hasCommand(c))
  return missing.length === 0 ? null : `${missing.join(' and ')} not on PATH (install a JDK 17+ and Maven, or give KAFKA_BROKERS=host:port)`
}

/** `given` (comma-separated host:port) when not empty, else a local broker started here. */
export async function benchKafka(given: string): Promise<BenchKafka> {
  if (given) return { brokers: given.split(',').map((b) => b.trim()), source: `given brokers ${given}`, release: async () => undefined }
  const dataDir = mkdtempSync(join(tmpdir(), 'streamgate-bench-kafka-'))
  const port = await freePort()
  const env = { ...process.env, KAFKA_PORT: String(port), KAFKA_CONTROLLER_PORT: String(await freePort()), KAFKA_DATA_DIR: dataDir }
  const release = async (): Promise<void> => {
    await run(SCRIPT, ['stop'], { env })
    rmSync(dataDir, { recursive: true, force: true })
  }
  try {
    await run(SCRIPT, ['start'], { env, timeout: 240_000 })
  } catch (err) {
    await release().catch(() => undefined)
    const e = err as { stderr?: string; message: string }
    throw new Error(`scripts/kafka-local.sh start failed: ${e.stderr || e.message}`)
  }
  return { brokers: [`127.0.0.1:${port}`], source: `local broker (scripts/kafka-local.sh, 512 MB heap) on 127.0.0.1:${port}`, release }
}
