import { spawn } from 'node:child_process'
import { chmodSync, existsSync, mkdtempSync, rmSync } from 'node:fs'
import { createServer, connect, type Server } from 'node:net'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { initDevCerts } from '../../src/app/dev-certs.js'
import { CLI, ensureBuilt } from '../helpers/child-gateway.js'

/**
 * Issue item 9: with the MQTT port busy (or 443 for a user without the right), `start` printed
 * `error E_INTERNAL: listen EADDRINUSE`, kept the listeners it had opened and hung with /healthz
 * answering 200, so a supervisor saw a healthy process. Start-up is now a list of steps that
 * each register their stop: the failed step rolls back the others and the process exits non-zero
 * with E_LISTEN_FAILED naming the address. Here the process must NOT stay up.
 */

interface Run {
  code: number | null
  output: string
  seconds: number
}

function runStart(dataDir: string, env: Record<string, string>, asUser?: number): Promise<Run> {
  const started = Date.now()
  const base = [process.execPath, CLI, 'start']
  const [command, args] = asUser === undefined ? [base[0]!, base.slice(1)] : ['setpriv', [`--reuid=${asUser}`, `--regid=${asUser}`, '--clear-groups', ...base]]
  const child = spawn(command, args, {
    env: { PATH: process.env.PATH ?? '', STREAMGATE_DATA_DIR: dataDir, STREAMGATE_ADMIN_TOKEN: 'start-failure-admin-token-0123', STREAMGATE_LOG_LEVEL: 'warn', ...env },
    stdio: ['ignore', 'pipe', 'pipe'],
  })
  let output = ''
  child.stdout.on('data', (c: Buffer) => (output += c.toString()))
  child.stderr.on('data', (c: Buffer) => (output += c.toString()))
  return new Promise((resolve) => {
    const timer = setTimeout(() => child.kill('SIGKILL'), 30_000)
    child.once('exit', (code) => {
      clearTimeout(timer)
      resolve({ code, output, seconds: (Date.now() - started) / 1000 })
    })
  })
}

function listening(port: number): Promise<boolean> {
  return new Promise((resolve) => {
    const s = connect({ host: '127.0.0.1', port })
    s.once('connect', () => (s.destroy(), resolve(true)))
    s.once('error', () => resolve(false))
  })
}

/** A free port, found by binding 0 and letting it go. */
async function freePort(): Promise<number> {
  const server = createServer()
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r))
  const { port } = server.address() as { port: number }
  await new Promise<void>((r) => server.close(() => r()))
  return port
}

describe('hostile: a start that cannot bind one of its addresses', () => {
  let dataDir: string
  let squatter: Server
  let busyPort: number

  beforeAll(async () => {
    ensureBuilt()
    dataDir = mkdtempSync(join(tmpdir(), 'streamgate-start-fail-'))
    await initDevCerts(dataDir, ['localhost'])
    // Another process's listener holds this port for the whole file.
    squatter = createServer()
    await new Promise<void>((r) => squatter.listen(0, '127.0.0.1', r))
    busyPort = (squatter.address() as { port: number }).port
  }, 180_000)
  afterAll(async () => {
    await new Promise<void>((r) => squatter.close(() => r()))
    rmSync(dataDir, { recursive: true, force: true })
  })

  const cases: Array<[string, (busy: number, free: Record<string, number>) => Record<string, string>]> = [
    ['the MQTT port', (busy, free) => ({ STREAMGATE_MQTT_PORT: String(busy), STREAMGATE_HTTP_PORT: String(free.http) })],
    ['the HTTP port', (busy, free) => ({ STREAMGATE_MQTT_PORT: String(free.mqtt), STREAMGATE_HTTP_PORT: String(busy) })],
    ['the MQTT/TLS port', (busy, free) => ({ STREAMGATE_MQTT_PORT: String(free.mqtt), STREAMGATE_HTTP_PORT: String(free.http), STREAMGATE_MQTT__TLS__ENABLED: 'true', STREAMGATE_MQTT__TLS__PORT: String(busy) })],
    ['the secure WebSocket port', (busy, free) => ({ STREAMGATE_MQTT_PORT: String(free.mqtt), STREAMGATE_HTTP_PORT: String(free.http), STREAMGATE_HTTP__WSS__ENABLED: 'true', STREAMGATE_HTTP__WSS__PORT: String(busy) })],
  ]

  for (const [what, env] of cases) {
    it(`exits 1 with E_LISTEN_FAILED when ${what} is in use, leaving nothing open`, async () => {
      const free = { mqtt: await freePort(), http: await freePort() }
      const run = await runStart(dataDir, env(busyPort, free))
      expect(run.code, run.output).toBe(1)
      expect(run.output).toContain(`error E_LISTEN_FAILED: cannot listen on 127.0.0.1:${busyPort}: the address is in use`)
      expect(run.seconds).toBeLessThan(20)
      // Whatever had been opened before the failed step was closed again.
      for (const port of Object.values(free)) expect(await listening(port), `port ${port}`).toBe(false)
      expect(existsSync(join(dataDir, 'gateway.json'))).toBe(false)
    }, 60_000)
  }

  it('exits 1 with E_LISTEN_FAILED naming 127.0.0.1:443 for a user who may not bind it', async () => {
    // As an unprivileged user (nobody); the data dir must be theirs to write.
    const dir = mkdtempSync(join(tmpdir(), 'streamgate-start-fail-443-'))
    await initDevCerts(dir, ['localhost'])
    chmodSync(dir, 0o777)
    for (const f of ['', 'certs']) chmodSync(join(dir, f), 0o777)
    for (const f of ['ca.crt', 'ca.key', 'server.crt', 'server.key']) chmodSync(join(dir, 'certs', f), 0o644)
    const free = { mqtt: await freePort(), http: await freePort() }
    const asUser = process.getuid?.() === 0 ? 65534 : undefined
    const run = await runStart(dir, { STREAMGATE_MQTT_PORT: String(free.mqtt), STREAMGATE_HTTP_PORT: String(free.http), STREAMGATE_HTTP__WSS__ENABLED: 'true', STREAMGATE_HTTP__WSS__PORT: '443' }, asUser)
    rmSync(dir, { recursive: true, force: true })
    expect(run.code, run.output).toBe(1)
    expect(run.output).toContain('error E_LISTEN_FAILED: cannot listen on 127.0.0.1:443: permission denied')
    for (const port of Object.values(free)) expect(await listening(port)).toBe(false)
  }, 60_000)
})
