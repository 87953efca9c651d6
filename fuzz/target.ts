import { spawn } from 'node:child_process'
import { mkdtempSync, rmSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { dirname, join } from 'node:path'
import { fileURLToPath } from 'node:url'
import { loadConfig } from '../src/config/load.js'
import { rssBytes as rssOf, storedMessageIds } from '../bench/lib/sim-bench.js'
import { FUZZ_DEVICES, fuzzDeviceId } from './plan.js'
import type { FuzzDevice, FuzzTarget } from './run.js'
import type { EdgeLimits } from './session.js'
import { waitForBanner } from '../bench/lib/child-output.js'

/**
 * For `npm run fuzz`: a gateway process of its own (`streamgate start`, embedded stream, free
 * loopback ports, a fresh data dir), the way test/helpers/hostile.ts starts one for the tests.
 */

const CLI = join(dirname(fileURLToPath(import.meta.url)), '..', 'src', 'cli', 'main.js')
const ADMIN_TOKEN = 'fuzz-admin-token-0123456789'

export interface GatewayProcess extends FuzzTarget {
  pid: number
  httpUrl: string
  dataDir: string
  addSasDevice(deviceId: string): Promise<FuzzDevice>
  stop(): Promise<void>
}

export async function startGatewayProcess(extraArgs: string[] = [], nodeOptions = ''): Promise<GatewayProcess> {
  const dataDir = mkdtempSync(join(tmpdir(), 'streamgate-fuzz-'))
  const child = spawn(process.execPath, [...nodeOptions.split(' ').filter(Boolean), CLI, 'start', ...extraArgs], {
    env: {
      PATH: process.env.PATH ?? '',
      STREAMGATE_DATA_DIR: dataDir,
      STREAMGATE_MQTT_PORT: '0',
      STREAMGATE_HTTP_PORT: '0',
      STREAMGATE_ADMIN_TOKEN: ADMIN_TOKEN,
      STREAMGATE_LOG_LEVEL: 'warn',
    },
    stdio: ['ignore', 'pipe', 'pipe'],
  })
  let out = ''
  child.stdout.on('data', (c: Buffer) => (out += c.toString()))
  child.stderr.on('data', (c: Buffer) => (out += c.toString()))
  const [mqttPort, httpPort] = await waitForBanner(child, () => out)
  const httpUrl = `http://127.0.0.1:${httpPort}`
  const exited = (): boolean => child.exitCode !== null || child.signalCode !== null
  return {
    pid: child.pid!,
    host: '127.0.0.1',
    mqttPort,
    httpPort,
    mqttUrl: `mqtt://127.0.0.1:${mqttPort}`,
    httpUrl,
    dataDir,
    output: () => out,
    exited,
    alive: async () => {
      if (exited()) return false
      const res = await fetch(`${httpUrl}/healthz`, { signal: AbortSignal.timeout(5000) }).catch(() => null)
      return res?.status === 200
    },
    rss: () => rssOf(child.pid!),
    storedMessageIds: () => storedMessageIds(dataDir),
    addSasDevice: async (deviceId) => {
      const res = await fetch(`${httpUrl}/api/devices`, {
        method: 'POST',
        headers: { authorization: `Bearer ${ADMIN_TOKEN}`, 'content-type': 'application/json' },
        body: JSON.stringify({ deviceId }),
      })
      if (res.status !== 201) throw new Error(`adding ${deviceId}: ${res.status} ${await res.text()}`)
      const { primaryKey } = (await res.json()) as { primaryKey: string }
      return { deviceId, primaryKey }
    },
    stop: async () => {
      if (!exited()) {
        await new Promise<void>((resolve) => {
          child.once('exit', () => resolve())
          child.kill('SIGTERM')
        })
      }
      rmSync(dataDir, { recursive: true, force: true })
    },
  }
}

/** Register the run's fuzz devices (and a canary) through `add`, e.g. the API. */
export async function registerFuzzDevices(add: (deviceId: string) => Promise<FuzzDevice>): Promise<{ devices: FuzzDevice[]; canary: FuzzDevice }> {
  const devices: FuzzDevice[] = []
  for (let i = 0; i < FUZZ_DEVICES; i++) devices.push(await add(fuzzDeviceId(i)))
  return { devices, canary: await add('fuzz-canary') }
}

/** The limits of a gateway on its default configuration (config/default.yaml). */
export function defaultLimits(): EdgeLimits {
  const { limits } = loadConfig({ env: {}, overrides: { 'log.level': 'silent' } })
  return { maxConnectPacketBytes: limits.maxConnectPacketBytes, maxSubscribePacketBytes: limits.maxSubscribePacketBytes, maxPayloadBytes: limits.maxPayloadBytes }
}
