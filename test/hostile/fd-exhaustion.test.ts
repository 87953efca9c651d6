import { connect, type Socket } from 'node:net'
import { get } from 'node:http'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { expectSurvived, startHostileGateway, underAttack, MiB, type HostileGateway, metricSamples } from '../helpers/hostile.js'

/**
 * Issue item 8: 20,400 sockets that never send CONNECT filled the 20,000-descriptor table for the
 * 30 s connect timeout; valid devices and /healthz were reset, with no log line and no metric.
 * Here the gateway runs with an open-file limit of 2,048 (`ulimit -n`), so a few thousand sockets
 * are enough to go past it: admission control must keep it serving.
 */
const OPEN_FILES = 2048

/** Open `count` sockets from `localAddress` that send nothing; resolves once each connected or failed. */
async function idleSockets(port: number, localAddress: string, count: number, into: Socket[]): Promise<void> {
  await Promise.all(
    Array.from({ length: count }, () =>
      new Promise<void>((resolve) => {
        const s = connect({ host: '127.0.0.1', port, localAddress })
        into.push(s)
        s.on('error', () => resolve())
        s.once('connect', () => resolve())
        s.once('close', () => resolve())
      }),
    ),
  )
}

/** GET /healthz on a fresh connection (no keep-alive pool), resolving with the status or the error. */
function healthz(port: number): Promise<number | string> {
  return new Promise((resolve) => {
    const req = get({ host: '127.0.0.1', port, path: '/healthz', agent: false, timeout: 5000 }, (res) => {
      res.resume()
      resolve(res.statusCode ?? 0)
    })
    req.on('timeout', () => req.destroy(new Error('timeout')))
    req.on('error', (err) => resolve(err.message))
  })
}

describe('hostile: sockets that never authenticate, past the open-file limit', () => {
  let gw: HostileGateway
  let canary: { deviceId: string; token: string }

  beforeAll(async () => {
    gw = await startHostileGateway({ openFiles: OPEN_FILES })
    canary = await gw.addSasDevice('canary-fd')
  }, 180_000)
  afterAll(async () => {
    await gw?.stop()
  })

  it('sizes maxConnections to the open-file limit with a reserve', async () => {
    const m = await metricSamples(gw)
    // 2,048 descriptors - fdReserve 128 - http.maxConnections 128.
    expect(m.get('streamgate_connections_max')).toBe(OPEN_FILES - 128 - 128)
  })

  it('keeps devices connecting and /healthz answering while thousands of idle sockets arrive', async () => {
    const sockets: Socket[] = []
    const health: Array<number | string> = []
    const outcome = await underAttack(gw, canary, async () => {
      const probe = setInterval(() => void healthz(gw.httpPort).then((s) => health.push(s)), 200)
      try {
        // One address opening 1,000: all but limits.maxPendingConnectionsPerAddress (128) closed at once.
        await idleSockets(gw.mqttPort, '127.0.0.2', 1000, sockets)
        // 40 addresses opening 60 each (2,400 in all, past the 2,048 descriptors): the oldest
        // pending ones make room for new ones (limits.maxPendingConnections, 1,024).
        for (let a = 0; a < 40; a++) await idleSockets(gw.mqttPort, `127.0.1.${a + 1}`, 60, sockets)
        // And 600 idle HTTP connections to the API port (http.maxConnections 128).
        for (let a = 0; a < 6; a++) await idleSockets(gw.httpPort, `127.0.2.${a + 1}`, 100, sockets)
        await new Promise((r) => setTimeout(r, 1500))
      } finally {
        clearInterval(probe)
      }
      const open = sockets.filter((s) => !s.destroyed && s.readyState === 'open').length
      return { opened: sockets.length, open }
    })
    for (const s of sockets) s.destroy()
    expect(outcome.result.opened).toBe(4000)
    expect(health.length).toBeGreaterThanOrEqual(5)
    expect(health.filter((s) => s !== 200), 'failed /healthz probes').toEqual([])
    const m = await metricSamples(gw)
    expect(m.get('streamgate_connections_refused_total{reason="pending-per-address"}') ?? 0).toBeGreaterThanOrEqual(800)
    expect(m.get('streamgate_connections_refused_total{reason="pending-evicted"}') ?? 0).toBeGreaterThanOrEqual(1000)
    expect(m.get('streamgate_connections_refused_total{reason="http-evicted"}') ?? 0).toBeGreaterThanOrEqual(400)
    // Never out of descriptors.
    expect([...m.keys()].filter((k) => k.startsWith('streamgate_accept_errors_total'))).toEqual([])
    // Said in the log, once per kind and interval rather than once per socket.
    const lines = gw.output().split('\n').filter((l) => l.includes('connection closed at accept'))
    expect(lines.length).toBeGreaterThanOrEqual(1)
    expect(lines.length).toBeLessThan(20)
    await expectSurvived(gw, '4,000 idle sockets past a 2,048-descriptor limit', outcome, { rssGrowthBytes: 96 * MiB })
  }, 90_000)

  it('closes the ones left pending after mqtt.connectTimeoutSeconds', async () => {
    const sockets: Socket[] = []
    await idleSockets(gw.mqttPort, '127.0.3.1', 20, sockets)
    const t0 = Date.now()
    await Promise.all(sockets.map((s) => new Promise<void>((r) => (s.destroyed ? r() : s.once('close', () => r())))))
    const seconds = (Date.now() - t0) / 1000
    // The default is 10 s (it was 30 s).
    expect(seconds).toBeGreaterThan(8)
    expect(seconds).toBeLessThan(14)
  }, 30_000)
})
