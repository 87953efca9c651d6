import { mkdtempSync, rmSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { connectAsync } from 'mqtt'
import { SqliteDeviceRegistry } from '../../src/registry/sqlite-registry.js'
import { SqliteEventStream } from '../../src/stream/embedded/sqlite-event-stream.js'
import { loadConfig } from '../../src/config/load.js'
import { deviceOptions, sasFor } from '../helpers/gateway.js'
import { ensureBuilt, startChildGateway, type ChildGateway } from '../helpers/child-gateway.js'
import type { Device } from '../../src/registry/types.js'

/**
 * The delivery promise: a QoS 1 message is acknowledged only once the stream holds it durably.
 * The gateway runs as a child process and is SIGKILLed right after PUBACKs arrive; after a
 * restart every acknowledged message must be in the stream.
 */
describe('durability of acknowledged telemetry across a SIGKILL', () => {
  const dataDir = mkdtempSync(join(tmpdir(), 'streamgate-durable-'))
  const devices: Device[] = []
  let gw: ChildGateway | null = null

  beforeAll(async () => {
    ensureBuilt()
    const registry = new SqliteDeviceRegistry({ file: join(dataDir, 'registry.db') })
    await registry.start()
    for (let i = 0; i < 4; i++) devices.push(await registry.create({ deviceId: `durable-${i}` }))
    await registry.stop()
  }, 180_000) // ensureBuilt: a build when dist is older than src takes long on a loaded machine
  afterAll(async () => {
    await gw?.kill()
    rmSync(dataDir, { recursive: true, force: true })
  })

  // A long group-commit linger widens the window between "received" and "durable": a gateway
  // that acknowledged before its commit would lose messages here. Both writers: on the writer
  // thread (the default) the kill lands while that thread holds a batch it has not committed.
  // 'auto' (the default) commits on the loop or the thread by the load, and may switch mid-run.
  for (const writerThread of ['true', 'false', 'auto']) {
    const env = { STREAMGATE_STREAM__EMBEDDED__LINGER_MS: '100', STREAMGATE_STREAM__EMBEDDED__WRITER_THREAD: writerThread }

    // Two gateway starts and 1500 acknowledged publishes: a few seconds alone, much more under load.
    it(`finds every PUBACKed message in the stream after kill -9 and restart (writerThread: ${writerThread})`, { timeout: 120_000 }, async () => {
      gw = await startChildGateway(dataDir, env)
      const acked = new Set<string>()
      /** Publishes sent and not acknowledged when the kill came: the batch the writer held. */
      let unackedAtKill = 0
      let unacked = 0
      const clients = await Promise.all(devices.map((d) => connectAsync(`mqtt://127.0.0.1:${gw!.mqttPort}`, deviceOptions(d.deviceId, sasFor(d)))))
      const killAfter = 1500
      let killed: Promise<void> | null = null
      const killedSet = new Promise<void>((resolve) => {
        clients.forEach((client, c) => {
          client.on('error', () => undefined)
          const deviceId = devices[c]!.deviceId
          let next = 0
          let inFlight = 0
          // Keep up to 20 QoS 1 publishes in flight per device.
          const pump = (): void => {
            while (!killed && inFlight < 20) {
              const id = `${writerThread}-${deviceId}-${next++}`
              inFlight++
              unacked++
              client.publish(`devices/${deviceId}/messages/events/%24.mid=${id}`, `payload-${id}`, { qos: 1 }, (err) => {
                inFlight--
                if (err || killed) return
                unacked--
                acked.add(id)
                // Kill inside the PUBACK handler: nothing more can be flushed after this point.
                if (acked.size >= killAfter) {
                  unackedAtKill = unacked
                  killed = gw!.kill('SIGKILL')
                  resolve()
                  return
                }
                pump()
              })
            }
          }
          pump()
        })
      })
      await killedSet
      await killed
      expect(acked.size).toBeGreaterThanOrEqual(killAfter)
      // Publishes were waiting for their commit when the process died (the writer held them).
      expect(unackedAtKill).toBeGreaterThan(0)
      for (const c of clients) c.end(true)

      // Restart on the same data dir: the gateway must come up (WAL recovery) and hold everything.
      gw = await startChildGateway(dataDir, env)
      const embedded = loadConfig({ env: {}, overrides: { dataDir } }).stream.embedded
      const reader = SqliteEventStream.fromConfig(embedded, dataDir)
      await reader.start([])
      const stored = new Set<string>()
      for (const p of await reader.offsets('telemetry')) {
        for (let offset = p.low; offset < p.high; ) {
          const batch = await reader.read('telemetry', p.partition, offset, 5000)
          for (const r of batch) stored.add(r.headers['message-id']!)
          offset = batch[batch.length - 1]!.offset + 1
        }
      }
      await reader.stop()
      const lost = [...acked].filter((id) => !stored.has(id))
      expect(lost).toEqual([])
      await gw.kill('SIGTERM')
      gw = null
    })
  }
})
