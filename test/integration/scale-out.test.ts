import { randomBytes } from 'node:crypto'
import { writeFileSync } from 'node:fs'
import { join } from 'node:path'
import { runSimulation } from '../../device-sim/simulate.js'
import { parseScenario } from '../../device-sim/scenario.js'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import type { MqttClient } from 'mqtt'
import { ensureBuilt } from '../helpers/child-gateway.js'
import { connackCode, waitFor } from '../helpers/gateway.js'
import { errorCode, TOKEN } from '../helpers/commands.js'
import { kafkaForSuite, kafkaTestsEnabled, START_TIMEOUT_MS } from '../helpers/kafka.js'
import { postgresTestsEnabled, postgresUrl, testSchema, type TestSchema } from '../helpers/postgres.js'
import { addDevice, closed, connectWith, deviceClientOptions, feedbackOf, readKafka, startInstance, type ClusterSettings, type Instance } from '../helpers/scale-out.js'

/**
 * Three gateway processes on one PostgreSQL schema and one Kafka: a device on any of them is
 * reached through the API of any other (C2D, methods, desired patches, kicks), a new connection
 * on another instance replaces the old one within a second, and an instance killed under load
 * loses nothing it acknowledged.
 */
const enabled = postgresTestsEnabled('test/integration/scale-out.test.ts') && kafkaTestsEnabled('three gateway instances on Kafka and PostgreSQL')
const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms))

describe.runIf(enabled)('three gateway instances on Kafka and PostgreSQL', () => {
  let brokers: string[]
  let releaseKafka: () => Promise<void>
  let schema: TestSchema
  let settings: ClusterSettings
  let A: Instance
  let B: Instance
  let C: Instance
  const clients: MqttClient[] = []
  const run = `so-${Date.now().toString(36)}-${randomBytes(2).toString('hex')}`

  beforeAll(async () => {
    ensureBuilt()
    ;({ brokers, release: releaseKafka } = await kafkaForSuite())
    schema = testSchema()
    settings = { postgresUrl: postgresUrl(), schema: schema.schema, brokers, topicPrefix: `${run}.` }
    // One after the other: the first creates the topics and applies the migrations.
    A = await startInstance('gw-a', settings)
    B = await startInstance('gw-b', settings)
    C = await startInstance('gw-c', settings)
  }, START_TIMEOUT_MS)

  afterAll(async () => {
    for (const c of clients) await c.endAsync(true).catch(() => undefined)
    // Clean-up, not a check of this suite: an instance that has not stopped 60 s after SIGTERM
    // (seen once in CI, not reproduced since) is reported with its last output, then killed.
    await Promise.all(
      [A, B, C].map(async (gw) => {
        if (!gw) return
        if (await Promise.race([gw.kill('SIGTERM').then(() => true), sleep(60_000).then(() => false)])) return
        console.error(`[scale-out] ${gw.name} did not stop within 60 s of SIGTERM; its last output:\n${gw.output().slice(-4000)}`)
        await gw.kill('SIGKILL')
      }),
    )
    await schema?.drop()
    await releaseKafka?.()
  }, 180_000)

  const keep = (client: MqttClient): MqttClient => {
    clients.push(client)
    return client
  }

  it('lists the three instances, each with its connections', async () => {
    const token = await addDevice(A, 'list-dev')
    keep(await connectWith(B.mqttUrl, deviceClientOptions('list-dev', token), () => undefined))
    const listed = await waitFor(async () => {
      const res = await C.call('GET', '/api/instances')
      const body = res.body as { instanceId: string; instances: Array<{ instanceId: string; alive: boolean; connections: number; self: boolean; streamBackend: string }> }
      const b = body.instances.find((i) => i.instanceId === 'gw-b')
      return body.instances.length === 3 && b?.connections === 1 ? body : null
    }, 10_000, 'three instances, gw-b with its device')
    expect(listed.instanceId).toBe('gw-c')
    expect(listed.instances.map((i) => [i.instanceId, i.alive, i.self, i.streamBackend]).sort()).toEqual([
      ['gw-a', true, false, 'kafka'],
      ['gw-b', true, false, 'kafka'],
      ['gw-c', true, true, 'kafka'],
    ])
    expect((await A.call('GET', '/api/instances', undefined)).status).toBe(200)
    // Each instance's API says which instance holds the device (the console's device page shows it).
    for (const gw of [A, B, C]) expect((await gw.call('GET', '/api/devices/list-dev')).body).toMatchObject({ instanceId: 'gw-b', connectionState: 'connected' })
    expect((await C.call('GET', '/api/devices/list-dev')).body).toMatchObject({ live: null })
    expect((await B.call('GET', '/api/devices/list-dev')).body).toMatchObject({ live: { transport: 'tcp' } })
  })

  it('delivers a C2D message sent through C to a device on A, completed once, with one feedback', async () => {
    const token = await addDevice(A, 'c2d-dev')
    const got: string[] = []
    const device = keep(await connectWith(A.mqttUrl, deviceClientOptions('c2d-dev', token), (_t, payload) => got.push(payload.toString())))
    await device.subscribeAsync('devices/c2d-dev/messages/devicebound/#', { qos: 1 })
    const sent = await C.call('POST', '/api/devices/c2d-dev/messages', { payload: 'from C', messageId: 'c2d-1', ack: 'full' })
    expect(sent.status).toBe(202)
    await waitFor(() => got.includes('from C'), 10_000, 'the device on A got the message sent through C')
    const feedback = await waitFor(async () => {
      const fb = (await feedbackOf(brokers, settings.topicPrefix)).filter((f) => f.messageId === 'c2d-1')
      return fb.length > 0 ? fb : null
    }, 15_000, 'feedback of c2d-1')
    await sleep(1000)
    expect(got).toEqual(['from C'])
    expect((await feedbackOf(brokers, settings.topicPrefix)).filter((f) => f.messageId === 'c2d-1').map((f) => f.status)).toEqual(['completed'])
    expect(feedback[0]).toMatchObject({ deviceId: 'c2d-dev', deliveryCount: 1 })
    expect((await B.call('GET', '/api/devices/c2d-dev/messages')).body).toMatchObject({ messages: [] })
  })

  it('answers a method called through B on a device connected to A', async () => {
    const token = await addDevice(A, 'method-dev')
    const device = keep(
      await connectWith(A.mqttUrl, deviceClientOptions('method-dev', token), (topic, payload, client) => {
        const m = /^\$iothub\/methods\/POST\/([^/]+)\/\?\$rid=(.+)$/.exec(topic)
        if (m) client.publish(`$iothub/methods/res/201/?$rid=${m[2]}`, JSON.stringify({ method: m[1], got: JSON.parse(payload.toString()) as unknown }))
      }),
    )
    await device.subscribeAsync('$iothub/methods/POST/#', { qos: 0 })
    const started = Date.now()
    const res = await B.call('POST', '/api/devices/method-dev/methods/reboot', { payload: { delay: 3 }, responseTimeoutSeconds: 10 })
    expect(res.status).toBe(200)
    expect(res.body).toEqual({ status: 201, payload: { method: 'reboot', got: { delay: 3 } } })
    expect(Date.now() - started).toBeLessThan(5000)
  })

  it('notifies a device on B of a desired patch made through C', async () => {
    const token = await addDevice(A, 'twin-dev')
    const patches: unknown[] = []
    const device = keep(
      await connectWith(B.mqttUrl, deviceClientOptions('twin-dev', token), (topic, payload) => {
        if (topic.startsWith('$iothub/twin/PATCH/properties/desired/')) patches.push(JSON.parse(payload.toString()))
      }),
    )
    await device.subscribeAsync('$iothub/twin/PATCH/properties/desired/#', { qos: 0 })
    const res = await C.call('PATCH', '/api/devices/twin-dev/twin', { desired: { interval: 5 } })
    expect(res.status).toBe(200)
    await waitFor(() => patches.length > 0, 10_000, 'the desired patch on the device on B')
    expect(patches).toEqual([{ interval: 5, $version: 2 }])
  })

  it('replaces a connection on A with a new one on B within 1 s, and a late disconnect from A does not mark it offline', async () => {
    const token = await addDevice(A, 'mover')
    const old = keep(await connectWith(A.mqttUrl, deviceClientOptions('mover', token), () => undefined))
    await waitFor(async () => ((await C.call('GET', '/api/devices/mover')).body as { connectionState: string }).connectionState === 'connected', 10_000, 'mover connected on A')
    const oldClosed = closed(old)
    const started = Date.now()
    const fresh = keep(await connectWith(B.mqttUrl, deviceClientOptions('mover', token), () => undefined))
    const connackMs = Date.now() - started
    await oldClosed
    const closedAfterMs = Date.now() - started - connackMs
    console.log(`takeover A->B: CONNACK on B after ${connackMs} ms, A's connection closed ${closedAfterMs} ms after it`)
    expect(closedAfterMs).toBeLessThan(1000)
    expect(fresh.connected).toBe(true)
    // Both instances' connection events have landed: the device is connected (on B), and stays so.
    await sleep(1500)
    expect(((await A.call('GET', '/api/devices/mover')).body as { connectionState: string }).connectionState).toBe('connected')
    await fresh.publishAsync('devices/mover/messages/events/', 'still here', { qos: 1 })
  })

  it('kicks a device on A when it is disabled through B, and refuses it afterwards', async () => {
    const token = await addDevice(A, 'kick-dev')
    const device = keep(await connectWith(A.mqttUrl, deviceClientOptions('kick-dev', token), () => undefined))
    const gone = closed(device)
    const started = Date.now()
    expect((await B.call('PATCH', '/api/devices/kick-dev', { status: 'disabled' })).status).toBe(200)
    await gone
    expect(Date.now() - started).toBeLessThan(3000)
    expect(await connackCode(A.mqttUrl, deviceClientOptions('kick-dev', token))).toBe(5)
  })

  it('loses nothing acknowledged when A is killed under QoS 1 load and C2D traffic; methods to its devices answer E_DEVICE_OFFLINE', { timeout: 180_000 }, async () => {
    const devices = Array.from({ length: 6 }, (_, i) => `load-${i}`)
    const tokens = new Map<string, string>()
    for (const id of devices) tokens.set(id, await addDevice(B, id))
    const offlineToken = await addDevice(B, 'left-behind')
    const acked = new Set<string>()
    const received = new Map<string, string[]>()
    let stopping = false
    const fleet = new Map<string, MqttClient>()
    // Devices on A; when A goes, each reconnects to B or C (as the simulator does) and carries on.
    const attach = async (id: string, url: string): Promise<void> => {
      const client = await connectWith(url, deviceClientOptions(id, tokens.get(id)!), (_t, payload) => received.set(id, [...(received.get(id) ?? []), payload.toString()]))
      fleet.set(id, client)
      clients.push(client)
      if (url === A.mqttUrl) await client.subscribeAsync(`devices/${id}/messages/devicebound/#`, { qos: 1 })
      client.once('close', () => {
        if (stopping) return
        const next = [B, C][devices.indexOf(id) % 2]!.mqttUrl
        void (async () => {
          for (;;) {
            try {
              await attach(id, next)
              return
            } catch {
              await sleep(200)
            }
          }
        })()
      })
    }
    for (const id of devices) await attach(id, A.mqttUrl)
    const leftBehind = keep(await connectWith(A.mqttUrl, deviceClientOptions('left-behind', offlineToken), () => undefined))
    await leftBehind.subscribeAsync('$iothub/methods/POST/#', { qos: 0 })
    let sent = 0
    const publisher = async (id: string): Promise<void> => {
      for (let n = 0; !stopping; n++) {
        const client = fleet.get(id)
        const mid = `${id}-${n}`
        if (!client?.connected) {
          await sleep(50)
          n--
          continue
        }
        try {
          // A publish on a connection that drops is never answered: it counts as not acknowledged.
          const answered = await Promise.race([client.publishAsync(`devices/${id}/messages/events/%24.mid=${mid}`, `m ${n}`, { qos: 1 }).then(() => true), closed(client).then(() => false)])
          if (answered) acked.add(mid)
        } catch {
          // Not acknowledged: may or may not be stored. Sent again under a new id.
        }
        sent++
        await sleep(5)
      }
    }
    const publishers = devices.map((id) => publisher(id))
    // C2D messages through C, before and after the kill.
    const c2d: string[] = []
    const sendC2d = async (n: number): Promise<void> => {
      const id = devices[n % devices.length]!
      const messageId = `kill-c2d-${n}`
      const res = await C.call('POST', `/api/devices/${id}/messages`, { payload: `c2d ${n}`, messageId })
      expect(res.status).toBe(202)
      c2d.push(messageId)
    }
    for (let n = 0; n < 12; n++) await sendC2d(n)
    await sleep(1500)
    const ackedBeforeKill = acked.size
    await A.kill('SIGKILL')
    const killedAt = Date.now()
    for (let n = 12; n < 24; n++) await sendC2d(n)
    // A method to the device that stays offline: E_DEVICE_OFFLINE once its connect timeout is up
    // (A's heartbeat lapses after 1.5 s; the call does not hang on the dead instance).
    const offline = await B.call('POST', '/api/devices/left-behind/methods/ping', { responseTimeoutSeconds: 5, connectTimeoutSeconds: 3 })
    expect(offline.status).toBe(404)
    expect(errorCode(offline)).toBe('E_DEVICE_OFFLINE')
    const offlineMs = Date.now() - killedAt
    expect(Date.now() - killedAt).toBeLessThan(12_000)
    await waitFor(() => devices.every((id) => fleet.get(id)?.connected && (fleet.get(id)!.options.port !== A.mqttPort)), 30_000, 'every device back on B or C')
    const backMs = Date.now() - killedAt
    await sleep(2000)
    stopping = true
    await Promise.all(publishers)
    // Every C2D message ends exactly once (completed), wherever its device went.
    await waitFor(async () => {
      const fb = (await feedbackOf(brokers, settings.topicPrefix)).filter((f) => f.messageId.startsWith('kill-c2d-'))
      return fb.length >= c2d.length ? fb : null
    }, 30_000, 'feedback for every C2D message')
    await sleep(1000)
    const finalFeedback = (await feedbackOf(brokers, settings.topicPrefix)).filter((f) => f.messageId.startsWith('kill-c2d-'))
    expect(finalFeedback.map((f) => f.messageId).sort()).toEqual([...c2d].sort())
    expect(new Set(finalFeedback.map((f) => f.status))).toEqual(new Set(['completed']))
    for (const n of c2d.keys()) {
      const id = devices[n % devices.length]!
      expect(received.get(id), `device ${id} got c2d ${n}`).toContain(`c2d ${n}`)
    }
    // Nothing acknowledged is missing from Kafka.
    const stored = new Set((await readKafka(brokers, `${settings.topicPrefix}telemetry`)).map((r) => r.headers['message-id']))
    const lost = [...acked].filter((mid) => !stored.has(mid))
    console.log(`SIGKILL of A: ${sent} sent, ${acked.size} acknowledged (${ackedBeforeKill} before the kill), ${lost.length} lost; ${c2d.length} C2D messages, ${finalFeedback.length} ended; devices back ${backMs} ms after the kill; method to the device left behind answered ${errorCode(offline)} ${offlineMs} ms after the kill`)
    expect(acked.size).toBeGreaterThan(ackedBeforeKill)
    expect(lost).toEqual([])
    // A's devices were reset by the others once its heartbeat lapsed: the one left behind is offline.
    await waitFor(async () => ((await B.call('GET', '/api/devices/left-behind')).body as { connectionState: string }).connectionState === 'disconnected', 10_000, 'left-behind reset to disconnected')
    const instances = ((await C.call('GET', '/api/instances')).body as { instances: Array<{ instanceId: string; alive: boolean }> }).instances
    expect(instances.find((i) => i.instanceId === 'gw-a')?.alive).toBe(false)
  })

  it('spreads a simulated fleet over the instances; when one is SIGKILLed its devices reconnect to the others and nothing acknowledged is lost', { timeout: 180_000 }, async () => {
    const D = await startInstance('gw-d', settings)
    try {
      const configFile = join(D.dataDir, 'stream.yaml')
      writeFileSync(configFile, `stream:\n  backend: kafka\n  topicPrefix: ${JSON.stringify(settings.topicPrefix)}\n  kafka:\n    brokers: ${JSON.stringify(brokers)}\n`)
      const scenario = parseScenario(
        {
          gateway: [B.mqttUrl, C.mqttUrl, D.mqttUrl].join(','),
          api: B.httpUrl,
          token: TOKEN,
          streamConfig: configFile,
          duration: 9,
          drainS: 15,
          prefix: 'sim-so-',
          groups: [{ count: 30, rate: 10, qos: 1 }],
        },
        'test',
      )
      const running = runSimulation(scenario)
      // Spread over all three (10 each when every first connect succeeds; a device whose connect
      // fails on a loaded machine moves on to the next instance).
      const spread = await waitFor(async () => {
        const body = (await B.call('GET', '/api/instances')).body as { instances: Array<{ instanceId: string; alive: boolean; connections: number }> }
        const live = body.instances.filter((i) => ['gw-b', 'gw-c', 'gw-d'].includes(i.instanceId))
        return live.length === 3 && live.every((i) => i.connections > 0) && live.reduce((n, i) => n + i.connections, 0) >= 30 ? live : null
      }, 30_000, 'the fleet connected to all three instances')
      await sleep(1500)
      await D.kill('SIGKILL')
      const report = await running
      const c = report.counts
      console.log(`simulator over 3 instances, one SIGKILLed: connections ${spread.map((i) => `${i.instanceId} ${i.connections}`).join(', ')}; ${c.connects} connects, ${c.sent} sent, ${c.acked} acked, ${c.stored} stored, ${c.lost} lost, ${c.duplicated} duplicated`)
      for (const i of spread) expect(i.connections, i.instanceId).toBeGreaterThan(0)
      expect(c.connects).toBeGreaterThan(30)
      expect(c.acked).toBe(c.sent)
      expect(c.lost).toBe(0)
      expect(c.stored).toBeGreaterThanOrEqual(c.acked)
    } finally {
      await D.kill('SIGKILL')
    }
  })
})
