import { Kafka, logLevel, type KafkaMessage } from 'kafkajs'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import type { MqttClient } from 'mqtt'
import { connectDevice, sasFor, startTestGateway, waitFor, type TestGateway } from '../helpers/gateway.js'
import { api } from '../helpers/commands.js'
import { kafkaForSuite, kafkaTestsEnabled, START_TIMEOUT_MS } from '../helpers/kafka.js'
import { publishJson, startWebhookReceiver, type WebhookReceiver } from '../helpers/routing.js'

/**
 * Routing on the Kafka backend, with two gateways seeded from the same config: the stream
 * endpoint writes to a Kafka topic of its own (key = device id, headers kept, enrichments
 * added), and the two gateways share each endpoint's work through its Kafka consumer group.
 */
const enabled = kafkaTestsEnabled('routing on Kafka')
const PARTITIONS = 4
const PER_DEVICE = 30

describe.skipIf(!enabled)('routing with the Kafka backend', () => {
  let brokers: string[]
  let release: () => Promise<void>
  let hook: WebhookReceiver
  const gateways: TestGateway[] = []
  const clients: MqttClient[] = []
  const prefix = `rt-${Date.now().toString(36)}-${process.pid}.`

  beforeAll(async () => {
    ;({ brokers, release } = await kafkaForSuite())
    hook = await startWebhookReceiver()
    const seeds = {
      'routing.endpoints': JSON.stringify([
        { name: 'hot', type: 'stream', topic: 'hot', enrichments: [{ key: 'hub', value: '$hubName' }, { key: 'site', value: '$twin.tags.site' }] },
        { name: 'hook', type: 'webhook', url: hook.url, maxBatch: 10 },
      ]),
      'routing.routes': JSON.stringify([
        { name: 'hot', condition: "processingPath = 'hot'", endpoints: ['hot'] },
        { name: 'everything', condition: 'true', endpoints: ['hook'] },
      ]),
    }
    for (let i = 0; i < 2; i++) {
      const gw = await startTestGateway({
        'stream.backend': 'kafka',
        'stream.kafka.brokers': brokers.join(','),
        'stream.topicPrefix': prefix,
        'stream.partitions': String(PARTITIONS),
        'stream.kafka.sessionTimeoutMs': '6000',
        'routing.reloadIntervalMs': '500',
        ...seeds,
      })
      gateways.push(gw)
      await waitFor(async () => (await fetch(`${gw.httpUrl}/readyz`)).status === 200, 30_000, 'ready')
    }
  }, START_TIMEOUT_MS)

  afterAll(async () => {
    for (const c of clients) await c.endAsync(true).catch(() => undefined)
    for (const gw of gateways) await gw.stop()
    await hook?.close()
    await release?.()
  }, 60_000)

  async function kafkaMessages(topic: string, expected: number): Promise<KafkaMessage[]> {
    const kafka = new Kafka({ brokers, logLevel: logLevel.NOTHING })
    const consumer = kafka.consumer({ groupId: `check-${Date.now()}-${Math.random()}`, maxWaitTimeInMs: 100 })
    const got: KafkaMessage[] = []
    await consumer.connect()
    try {
      await consumer.subscribe({ topics: [topic], fromBeginning: true })
      await consumer.run({ eachMessage: async ({ message }) => void got.push(message) })
      await waitFor(() => got.length >= expected, 60_000, `${expected} messages on ${topic}`)
    } finally {
      await consumer.disconnect()
    }
    return got
  }

  it('seeds both gateways from the config and routes into a Kafka topic and a webhook, sharing the work', async () => {
    // Each gateway has its own registry here (issue 12 shares one); both got the same routes from the config.
    for (const gw of gateways) {
      const routes = (await api(gw.httpUrl, 'GET', '/api/routes')).body as { routes: Array<{ name: string }> }
      expect(routes.routes.map((r) => r.name)).toEqual(['everything', 'hot'])
    }
    const ids: string[] = []
    for (const [g, gw] of gateways.entries()) {
      for (let d = 0; d < 3; d++) {
        const id = `kr-${g}-${d}`
        // Either gateway may route any device's messages (the group shares partitions, not
        // devices), so both registries know every device and its tags.
        let device
        for (const other of gateways) {
          const created = await other.gateway.registry.create({ deviceId: id, primaryKey: device?.primaryKey, secondaryKey: device?.secondaryKey })
          device ??= created
          await other.gateway.registry.patchTwin(id, 'tags', { site: `plant-${g}` }, { maxBytes: 32 * 1024, maxDepth: 10 })
        }
        clients.push(await connectDevice(gw.mqttUrl, id, sasFor(device!)))
        ids.push(id)
      }
    }
    // Both gateways in the webhook endpoint's consumer group, each with partitions, before the
    // load: a rebalance still running would hand every partition to whichever joined first.
    const admin = new Kafka({ brokers, logLevel: logLevel.NOTHING }).admin()
    await admin.connect()
    try {
      await waitFor(async () => {
        const groups = (await admin.listGroups()).groups.map((g) => g.groupId).filter((g) => g.startsWith('streamgate-route.hook.'))
        if (groups.length === 0) return false
        const described = (await admin.describeGroups(groups)).groups
        return described.some((g) => g.state === 'Stable' && g.members.length === 2 && g.members.every((m) => m.memberAssignment.length > 0))
      }, 60_000, 'both gateways in the webhook endpoint group')
    } finally {
      await admin.disconnect()
    }
    await Promise.all(
      clients.map(async (client, c) => {
        for (let i = 0; i < PER_DEVICE; i++) await publishJson(client, ids[c]!, { seq: i }, { processingPath: i % 3 === 0 ? 'hot' : 'cold' })
      }),
    )
    const hotPerDevice = Math.ceil(PER_DEVICE / 3)
    const hot = await kafkaMessages(`${prefix}hot`, ids.length * hotPerDevice)
    for (const id of ids) {
      const mine = hot.filter((m) => m.key?.toString() === id)
      const seqs = [...new Set(mine.map((m) => (JSON.parse(m.value!.toString()) as { seq: number }).seq))]
      expect(seqs).toEqual([...Array(hotPerDevice).keys()].map((k) => k * 3))
      const headers = Object.fromEntries(Object.entries(mine[0]!.headers ?? {}).map(([k, v]) => [k, String(v)]))
      expect(headers).toMatchObject({ hub: 'localhost', site: `plant-${id.split('-')[1]}`, processingPath: 'hot', 'device-id': id })
    }
    await waitFor(() => new Set(hook.delivered().map((m) => `${m.deviceId}/${m.body}`)).size >= ids.length * PER_DEVICE, 60_000, 'every message at the webhook')
    for (const id of ids) {
      const seqs = hook.delivered().filter((m) => m.deviceId === id).map((m) => (JSON.parse(m.body) as { seq: number }).seq)
      expect([...new Set(seqs)]).toEqual([...Array(PER_DEVICE).keys()])
    }
    // One consumer group per endpoint: both gateways took part in delivering.
    const delivered = await Promise.all(gateways.map(async (gw) => ((await api(gw.httpUrl, 'GET', '/api/endpoints/hook')).body as { delivered: number }).delivered))
    console.log(`webhook deliveries by gateway: ${delivered.join(', ')} (of ${ids.length * PER_DEVICE})`)
    expect(delivered.every((n) => n > 0)).toBe(true)
  }, 120_000)
})
