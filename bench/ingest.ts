import { mkdtempSync, rmSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { parseArgs } from 'node:util'
import { LOAD_OPTIONS, loadFromArgs, profileArgs, runClosedLoop, type ClosedLoopFigures, type ClosedLoopOptions } from './lib/closed-loop.js'
import { mqttPort, sasCredentials, seedDevices, startBareAedes, startGateway } from './lib/sim-bench.js'

/**
 * bench/ingest: N devices publish QoS 1 telemetry for a fixed time, each keeping a window of
 * unacknowledged publishes, first against the gateway on its embedded stream and then against a
 * bare Aedes broker, in the same run and with the same load. Each server runs in its own process
 * (one core), the load generator in this one (the other core).
 *
 *   npm run bench:ingest -- --devices 200 --seconds 15 --window 8 --payload 200 [--synchronous FULL]
 */
const { values } = parseArgs({
  options: {
    ...LOAD_OPTIONS,
    synchronous: { type: 'string', default: 'NORMAL' },
    /** Skip the bare Aedes run (profiling). */
    'gateway-only': { type: 'boolean' },
  },
})
const LOAD = loadFromArgs(values)
const { devices: DEVICES, seconds: SECONDS, warmupSeconds: WARMUP, window: WINDOW, payload: PAYLOAD } = LOAD

type Result = ClosedLoopFigures & { name: string }

async function runLoad(name: string, port: number, client: ClosedLoopOptions['client']): Promise<Result> {
  const figures = await runClosedLoop({ port, ...LOAD, drainMs: 500, client })
  return { name, ...figures }
}

async function benchGateway(): Promise<Result> {
  const dataDir = mkdtempSync(join(tmpdir(), 'streamgate-bench-'))
  const devices = await seedDevices(dataDir, 'bench-', DEVICES)
  const gateway = await startGateway(dataDir, { STREAMGATE_STREAM__EMBEDDED__SYNCHRONOUS: values.synchronous }, [], profileArgs(values['profile-dir']))
  try {
    const credentials = sasCredentials(devices)
    return await runLoad(`gateway (embedded stream, synchronous=${values.synchronous})`, mqttPort(gateway), (i) => ({ ...credentials(i), clean: false }))
  } finally {
    await gateway.stop()
    rmSync(dataDir, { recursive: true, force: true })
  }
}

async function benchBare(): Promise<Result> {
  const server = await startBareAedes()
  try {
    return await runLoad('bare Aedes 1.2 (no hooks, memory)', mqttPort(server), (i) => ({ clientId: `bench-${String(i + 1).padStart(6, '0')}` }))
  } finally {
    await server.stop()
  }
}

const fmt = (n: number, d = 0): string => n.toLocaleString('en-US', { maximumFractionDigits: d, minimumFractionDigits: d })
process.stdout.write(`bench/ingest: ${DEVICES} devices, QoS 1, window ${WINDOW} per device, ${PAYLOAD.length}-byte payloads, ${SECONDS} s measured after ${WARMUP} s warm-up\n`)
const gw = await benchGateway()
const bare = values['gateway-only'] ? null : await benchBare()
process.stdout.write('\n| target | msgs/s | PUBACK p50 ms | p99 ms | p99.9 ms | messages |\n|---|---|---|---|---|---|\n')
for (const r of bare ? [gw, bare] : [gw]) {
  process.stdout.write(`| ${r.name} | ${fmt(r.rate)} | ${fmt(r.p50, 2)} | ${fmt(r.p99, 2)} | ${fmt(r.p999, 2)} | ${fmt(r.messages)} |\n`)
}
if (bare) process.stdout.write(`\nratio gateway/bare: ${fmt(gw.rate / bare.rate, 2)}\n`)
