import { execFile, execFileSync } from 'node:child_process'
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs'
import { createServer } from 'node:net'
import { tmpdir } from 'node:os'
import { dirname, join } from 'node:path'
import { fileURLToPath } from 'node:url'
import { promisify } from 'node:util'
import { hasCommand } from '../../bench/lib/local-kafka.js'
import type { Device } from '../../src/registry/types.js'
import { startTestGateway, type TestGateway } from './gateway.js'

/**
 * Real Kafka for tests: KAFKA_BROKERS when set, else a single-node broker started from
 * scripts/kafka-local.sh on free ports (needs Java 17+ and Maven). Without either, Kafka suites are
 * skipped with one line saying how to run them; with REQUIRE_KAFKA=1 (CI) they run and fail instead.
 */
const root = join(dirname(fileURLToPath(import.meta.url)), '..', '..')
const SCRIPT = join(root, 'scripts', 'kafka-local.sh')
const run = promisify(execFile)

export const START_TIMEOUT_MS = 240_000


/**
 * One line per test run, not per file: vitest runs each file in its own worker process, so the
 * first one to skip leaves a marker named after the shared parent process.
 */
function skipLine(what: string): void {
  const marker = join(tmpdir(), `streamgate-kafka-skip-${process.ppid}`)
  try {
    // 'wx' fails when the file exists: atomic across the parallel workers.
    writeFileSync(marker, what, { flag: 'wx' })
  } catch {
    return
  }
  console.warn(
    `\n!!! KAFKA TESTS SKIPPED (${what} and the other Kafka suites): no KAFKA_BROKERS and no java+mvn to start a local broker (the outage suites always need java+mvn). ` +
      'Run them with KAFKA_BROKERS=host:port npx vitest run test/contract/kafka-event-stream.test.ts test/integration/kafka-*.test.ts, ' +
      'or install a JDK 17+ and Maven (apt-get install -y openjdk-17-jdk-headless maven); REQUIRE_KAFKA=1 turns this skip into a failure.\n',
  )
}

/** Whether this machine can start its own broker (java and mvn on PATH). */
export function canRunLocalKafka(): boolean {
  return hasCommand('java') && hasCommand('mvn')
}

/** True when a Kafka suite should run: a broker is given, one can be started, or CI requires it. */
export function kafkaTestsEnabled(what: string, options: { needsLocalBroker?: boolean } = {}): boolean {
  if (process.env.REQUIRE_KAFKA === '1') return true
  if (!options.needsLocalBroker && process.env.KAFKA_BROKERS) return true
  if (canRunLocalKafka()) return true
  skipLine(what)
  return false
}

export interface LocalKafka {
  brokers: string[]
  /** The SASL_PLAINTEXT listener, when started with SASL users. */
  saslBrokers: string[]
  /** The TLS listener and the CA file that signed its certificate, when started with `tls`. */
  tlsBrokers: string[]
  caFile: string
  port: number
  /** Clean stop through the script (SIGTERM, waits for the exit). */
  stop(): Promise<void>
  /** SIGKILL, as a crash; waits until the process is gone. */
  kill(): Promise<void>
  /** Send the broker process a signal: SIGSTOP freezes it with its sockets open, SIGCONT resumes it. */
  signal(signal: 'SIGSTOP' | 'SIGCONT'): void
  /** Start again on the same port and data (after stop or kill); resolves once it takes requests. */
  start(): Promise<void>
  /** Stop and delete its data. */
  destroy(): Promise<void>
}

/**
 * A port for a broker of our own. Not one the kernel hands out (bind to port 0, or the source port
 * of an outgoing connection): the broker binds it seconds later (JVM start), and binds it again
 * after a kill and restart, and meanwhile any of the many client connections of the parallel
 * suites could take an ephemeral port as its source port. So: a random port below the ephemeral
 * range, free right now, and never given twice by this process.
 */
export async function freePort(): Promise<number> {
  const [low] = ephemeralRange()
  const min = 10_000
  const max = Math.max(min + 1000, low - 1)
  for (let attempt = 0; attempt < 100; attempt++) {
    const port = min + Math.floor(Math.random() * (max - min + 1))
    if (givenPorts.has(port) || !(await canListen(port))) continue
    givenPorts.add(port)
    return port
  }
  throw new Error(`no free port found in ${min}..${max}`)
}

const givenPorts = new Set<number>()

function ephemeralRange(): [number, number] {
  try {
    const [low, high] = readFileSync('/proc/sys/net/ipv4/ip_local_port_range', 'utf8').trim().split(/\s+/).map(Number)
    if (Number.isInteger(low) && Number.isInteger(high)) return [low!, high!]
  } catch {
    // not Linux: the IANA dynamic range
  }
  return [49152, 65535]
}

function canListen(port: number): Promise<boolean> {
  return new Promise((resolve) => {
    const server = createServer()
    server.once('error', () => resolve(false))
    server.listen(port, '127.0.0.1', () => server.close(() => resolve(true)))
  })
}

/** A broker of our own on free ports with its own data directory; started before it resolves. */
export async function startLocalKafka(options: LocalKafkaOptions = {}): Promise<LocalKafka> {
  const kafka = await createLocalKafka(options)
  try {
    await kafka.start()
  } catch (err) {
    // The broker runs in its own session (setsid): do not leave it behind when start-up failed.
    await kafka.destroy().catch(() => undefined)
    throw err
  }
  return kafka
}

export interface LocalKafkaOptions {
  /** user → password for an extra SASL_PLAINTEXT listener (PLAIN, SCRAM-SHA-256/512). */
  saslUsers?: Record<string, string>
  /** Add a TLS listener with a certificate for 127.0.0.1 from a CA made for this broker. */
  tls?: boolean
}

/** A throwaway CA and a broker certificate for 127.0.0.1/localhost, as the PEM files Kafka reads. */
function makeCertificates(dir: string): { keystore: string; ca: string } {
  const sh = (script: string): void => void execFileSync('sh', ['-c', script], { cwd: dir, stdio: 'ignore' })
  sh('openssl req -x509 -newkey rsa:2048 -nodes -keyout ca.key -out ca.pem -days 2 -subj "/CN=streamgate-test-ca"')
  sh('openssl req -newkey rsa:2048 -nodes -keyout server.key -out server.csr -subj "/CN=localhost"')
  writeFileSync(join(dir, 'ext.cnf'), 'subjectAltName=IP:127.0.0.1,DNS:localhost\n')
  sh('openssl x509 -req -in server.csr -CA ca.pem -CAkey ca.key -CAcreateserial -out server.pem -days 2 -extfile ext.cnf')
  // Kafka's PEM keystore wants an unencrypted PKCS#8 key followed by the certificate chain.
  sh('openssl pkcs8 -topk8 -nocrypt -in server.key -out server.pk8 && cat server.pk8 server.pem ca.pem > keystore.pem')
  return { keystore: join(dir, 'keystore.pem'), ca: join(dir, 'ca.pem') }
}

/** A broker of our own on free ports, not started yet (for "Kafka down at gateway start"). */
export async function createLocalKafka(options: LocalKafkaOptions = {}): Promise<LocalKafka> {
  if (!canRunLocalKafka()) {
    throw new Error('REQUIRE_KAFKA=1 but java and mvn are not both on PATH (apt-get install -y openjdk-17-jdk-headless maven), and KAFKA_BROKERS is not set')
  }
  const port = await freePort()
  const controllerPort = await freePort()
  const dataDir = mkdtempSync(join(tmpdir(), 'streamgate-kafka-'))
  const saslPort = options.saslUsers ? await freePort() : null
  const sasl = saslPort === null ? {} : { KAFKA_SASL_PORT: String(saslPort), KAFKA_SASL_USERS: Object.entries(options.saslUsers!).map(([u, p]) => `${u}:${p}`).join(',') }
  const tlsPort = options.tls ? await freePort() : null
  const certs = options.tls ? makeCertificates(mkdtempSync(join(dataDir, 'certs-'))) : null
  const tls = tlsPort === null ? {} : { KAFKA_SSL_PORT: String(tlsPort), KAFKA_SSL_KEYSTORE: certs!.keystore }
  const env = { ...process.env, KAFKA_PORT: String(port), KAFKA_CONTROLLER_PORT: String(controllerPort), KAFKA_DATA_DIR: dataDir, KAFKA_HEAP: '512m', ...sasl, ...tls }
  const script = async (command: string): Promise<void> => {
    try {
      await run(SCRIPT, [command], { env, timeout: START_TIMEOUT_MS })
    } catch (err) {
      const e = err as { stderr?: string; message: string }
      throw new Error(`scripts/kafka-local.sh ${command} failed: ${e.stderr ?? e.message}`)
    }
  }
  const pid = (): number | null => {
    try {
      return Number(readFileSync(join(dataDir, 'kafka.pid'), 'utf8').trim())
    } catch {
      return null
    }
  }
  return {
    brokers: [`127.0.0.1:${port}`],
    saslBrokers: saslPort === null ? [] : [`127.0.0.1:${saslPort}`],
    tlsBrokers: tlsPort === null ? [] : [`127.0.0.1:${tlsPort}`],
    caFile: certs?.ca ?? '',
    port,
    start: () => script('start'),
    stop: () => script('stop'),
    kill: async () => {
      const p = pid()
      if (p === null) return
      try {
        process.kill(p, 'SIGKILL')
      } catch {
        return
      }
      while (isAlive(p)) await new Promise((resolve) => setTimeout(resolve, 50))
    },
    signal: (signal) => {
      const p = pid()
      if (p !== null) process.kill(p, signal)
    },
    destroy: async () => {
      // A frozen broker would not act on the stop script's SIGTERM.
      const p = pid()
      if (p !== null && isAlive(p)) process.kill(p, 'SIGCONT')
      await script('stop')
      rmSync(dataDir, { recursive: true, force: true })
    },
  }
}

function isAlive(pid: number): boolean {
  try {
    process.kill(pid, 0)
    return true
  } catch {
    return false
  }
}

/** Brokers for a suite: KAFKA_BROKERS, or a local broker that `release` stops and deletes. */
export async function kafkaForSuite(): Promise<{ brokers: string[]; release: () => Promise<void> }> {
  const given = process.env.KAFKA_BROKERS
  if (given) return { brokers: given.split(',').map((b) => b.trim()), release: async () => undefined }
  const local = await startLocalKafka()
  return { brokers: local.brokers, release: () => local.destroy() }
}

/**
 * A gateway on this broker for the outage tests: it notices an outage fast (provisioning retried
 * every 0.5 s, 1 s connection timeout), with `devices` registered devices `<prefix>0`, `<prefix>1`, ...
 */
export async function outageGateway(kafka: LocalKafka, o: { partitions: number; devicePrefix: string; devices: number; overrides?: Record<string, string> }): Promise<{ gw: TestGateway; devices: Device[] }> {
  const gw = await startTestGateway({
    'stream.backend': 'kafka',
    'stream.kafka.brokers': kafka.brokers.join(','),
    'stream.kafka.provisionRetryMs': '500',
    'stream.kafka.connectionTimeoutMs': '1000',
    'stream.partitions': String(o.partitions),
    ...o.overrides,
  })
  const devices = await Promise.all(Array.from({ length: o.devices }, (_, i) => gw.gateway.registry.create({ deviceId: `${o.devicePrefix}${i}` })))
  return { gw, devices }
}
