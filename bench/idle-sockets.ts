import { fork } from 'node:child_process'
import { mkdtempSync, rmSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { parseArgs } from 'node:util'
import { connect } from 'node:net'
import { connectAsync } from 'mqtt'
import { rssBytes, sasCredentials, seedDevices, startGateway, waitReady } from './lib/sim-bench.js'

/**
 * The descriptor-exhaustion attack at full scale: the gateway at its real open-file limit (20,000
 * here), attacker processes holding more idle sockets than that, from many source addresses, none
 * of which ever sends CONNECT; meanwhile a canary device connects and publishes at QoS 1 every
 * 100 ms and /healthz is probed. Prints the gateway's RSS, the canary's slowest connect and PUBACK,
 * failed probes, what admission control refused, and the attackers' CPU share.
 *
 *   npm run build && node dist/bench/idle-sockets.js --sockets 20400 --seconds 20
 *
 * The test suite runs the same attack scaled down (test/hostile/fd-exhaustion.test.ts).
 */
const { values } = parseArgs({
  options: {
    sockets: { type: 'string', default: '20400' },
    seconds: { type: 'string', default: '20' },
    attackers: { type: 'string', default: '2' },
  },
})
const SOCKETS = Number(values.sockets)
const SECONDS = Number(values.seconds)
const ATTACKERS = Number(values.attackers)

// An attacker child: opens its share of sockets from 127.0.<k>.<1..250>, sends nothing, reports.
if (process.env.IDLE_SOCKETS_CHILD) {
  const [port, count, first] = process.env.IDLE_SOCKETS_CHILD.split(',').map(Number) as [number, number, number]
  const held: unknown[] = []
  let opened = 0
  let refused = 0
  const t0 = process.cpuUsage()
  void (async () => {
    for (let i = 0; i < count; i++) {
      const n = first + i
      const localAddress = `127.${10 + Math.floor(n / 250 / 250)}.${Math.floor(n / 250) % 250}.${(n % 250) + 1}`
      await new Promise<void>((resolve) => {
        const s = connect({ host: '127.0.0.1', port, localAddress })
        held.push(s)
        s.once('connect', () => (opened++, resolve()))
        s.once('error', () => (refused++, resolve()))
        s.once('close', () => resolve())
      })
      if (i % 200 === 0) await new Promise((r) => setImmediate(r))
    }
    const cpu = process.cpuUsage(t0)
    process.send!({ opened, refused, cpuMs: (cpu.user + cpu.system) / 1000 })
  })()
  process.on('message', () => process.exit(0))
} else {
  await main()
}

async function main(): Promise<void> {
  const dataDir = mkdtempSync(join(tmpdir(), 'streamgate-idle-sockets-'))
  const [canary] = await seedDevices(dataDir, 'canary', 1)
  // This attack is what the per-address bounds are for: restore their defaults.
  const gateway = await startGateway(dataDir, { STREAMGATE_LIMITS__MAX_PENDING_CONNECTIONS_PER_ADDRESS: '128', STREAMGATE_LIMITS__MAX_PENDING_CONNECTIONS: '1024' })
  await waitReady(gateway)
  const pid = gateway.child.pid!
  const port = Number(new URL(gateway.mqttUrl).port)
  const rssBefore = rssBytes(pid)
  let rssPeak = rssBefore
  const sampler = setInterval(() => (rssPeak = Math.max(rssPeak, rssBytes(pid))), 100)

  const creds = sasCredentials([canary!])(0)
  let running = true
  const canaryStats = { rounds: 0, failed: 0, maxConnectMs: 0, maxPubackMs: 0 }
  const canaryLoop = (async () => {
    while (running) {
      const t0 = performance.now()
      try {
        const c = await connectAsync(gateway.mqttUrl, { ...creds, clean: false, protocolVersion: 4, reconnectPeriod: 0, connectTimeout: 10_000 })
        const t1 = performance.now()
        await c.publishAsync(`devices/${creds.clientId}/messages/events/`, 'x', { qos: 1 })
        canaryStats.maxConnectMs = Math.max(canaryStats.maxConnectMs, t1 - t0)
        canaryStats.maxPubackMs = Math.max(canaryStats.maxPubackMs, performance.now() - t1)
        await c.endAsync()
      } catch {
        canaryStats.failed++
      }
      canaryStats.rounds++
      await new Promise((r) => setTimeout(r, 100))
    }
  })()
  const probes = { ok: 0, failed: 0 }
  const prober = setInterval(() => {
    void fetch(`${gateway.httpUrl}/healthz`, { signal: AbortSignal.timeout(5000) }).then(
      (r) => (r.status === 200 ? probes.ok++ : probes.failed++),
      () => probes.failed++,
    )
  }, 250)

  const started = Date.now()
  const share = Math.ceil(SOCKETS / ATTACKERS)
  const attackers = Array.from({ length: ATTACKERS }, (_, a) => fork(process.argv[1]!, [], { env: { ...process.env, IDLE_SOCKETS_CHILD: `${port},${share},${a * share}` }, execArgv: [] }))
  const reports = await Promise.all(attackers.map((child) => new Promise<{ opened: number; refused: number; cpuMs: number }>((r) => child.once('message', (m) => r(m as never)))))
  const attackMs = Date.now() - started
  await new Promise((r) => setTimeout(r, Math.max(0, SECONDS * 1000 - attackMs)))
  running = false
  await canaryLoop
  clearInterval(prober)
  clearInterval(sampler)
  const metrics = await (await fetch(`${gateway.httpUrl}/metrics`)).text()
  for (const child of attackers) child.send('stop')
  await gateway.stop()
  rmSync(dataDir, { recursive: true, force: true })

  const refusedByGateway = [...metrics.matchAll(/^streamgate_connections_refused_total\{reason="([^"]+)"\} (\d+)/gm)].map((m) => `${m[1]} ${m[2]}`)
  const acceptErrors = [...metrics.matchAll(/^streamgate_accept_errors_total\{code="([^"]+)"\} (\d+)/gm)].map((m) => `${m[1]} ${m[2]}`)
  const max = /^streamgate_connections_max (\d+)/m.exec(metrics)?.[1]
  const cpuMs = reports.reduce((s, r) => s + r.cpuMs, 0)
  const mib = (n: number): string => (n / 1024 / 1024).toFixed(1)
  console.log(`idle sockets: ${reports.reduce((s, r) => s + r.opened, 0)} opened by ${ATTACKERS} attacker processes in ${(attackMs / 1000).toFixed(1)} s (their CPU: ${(cpuMs / attackMs * 100).toFixed(0)} % of one core)`)
  console.log(`gateway: maxConnections ${max}; refused ${refusedByGateway.join(', ') || 'none'}; accept errors ${acceptErrors.join(', ') || 'none'}`)
  console.log(`gateway RSS ${mib(rssBefore)} -> peak ${mib(rssPeak)} MiB`)
  console.log(`canary: ${canaryStats.rounds} rounds, ${canaryStats.failed} failed, slowest connect ${canaryStats.maxConnectMs.toFixed(0)} ms, slowest PUBACK ${canaryStats.maxPubackMs.toFixed(0)} ms`)
  console.log(`/healthz: ${probes.ok} answered 200, ${probes.failed} failed`)
  process.exit(0)
}
