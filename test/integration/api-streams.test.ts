import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { connectDevice, sasFor, startTestGateway, waitFor, type TestGateway } from '../helpers/gateway.js'
import { api } from '../helpers/commands.js'
import { OVERRIDES } from '../helpers/routing-hostile.js'
import type { TopicView } from '../../src/api/streams.js'

/** GET /api/streams: the gateway's topics with their offsets, and its consumer groups with their lag. */
describe('GET /api/streams', () => {
  let gw: TestGateway

  beforeAll(async () => {
    gw = await startTestGateway(OVERRIDES)
  })
  afterAll(async () => {
    await gw?.stop()
  })

  const topics = async (): Promise<Map<string, TopicView>> => {
    const res = await api(gw.httpUrl, 'GET', '/api/streams')
    expect(res.status).toBe(200)
    return new Map((res.body as { topics: TopicView[] }).topics.map((t) => [t.topic, t]))
  }

  it('lists every topic the gateway uses, with partitions, end offsets and records held', async () => {
    const device = await gw.gateway.registry.create({ deviceId: 'streams-dev' })
    const client = await connectDevice(gw.mqttUrl, 'streams-dev', sasFor(device))
    for (let i = 0; i < 3; i++) await client.publishAsync('devices/streams-dev/messages/events/', `m${i}`, { qos: 1 })
    await client.endAsync()
    const all = await topics()
    expect([...all.keys()]).toEqual(expect.arrayContaining(['telemetry', 'device-events', 'commands', 'command-feedback']))
    const telemetry = all.get('telemetry')!
    expect(telemetry.partitions).toHaveLength(8)
    expect(telemetry.records).toBe(3)
    expect(telemetry.partitions.reduce((n, p) => n + p.high, 0)).toBe(3)
    // The commands topic is read by the commands consumer group.
    expect(all.get('commands')!.groups.map((g) => g.group)).toEqual(['streamgate-commands'])
  })

  it("shows a routing endpoint's consumer group and topic, with the lag it has", async () => {
    expect((await api(gw.httpUrl, 'PUT', '/api/endpoints/copy', { type: 'stream', topic: 'copied' })).status).toBe(201)
    expect((await api(gw.httpUrl, 'PUT', '/api/routes/all', { source: 'telemetry', condition: 'true', endpoints: ['copy'] })).status).toBe(201)
    // A new route routes what arrives from now on: wait for its consumer, then publish.
    await waitFor(async () => (await topics()).get('telemetry')!.groups.some((g) => g.group.includes('copy')), 15_000, 'the endpoint consumer')
    const device = await gw.gateway.registry.get('streams-dev')
    const client = await connectDevice(gw.mqttUrl, 'streams-dev', sasFor(device!))
    for (let i = 0; i < 2; i++) await client.publishAsync('devices/streams-dev/messages/events/', `routed${i}`, { qos: 1 })
    await client.endAsync()
    const view = await waitFor(async () => {
      const all = await topics()
      const group = all.get('telemetry')!.groups.find((g) => g.group.includes('copy'))
      return group && group.lag === 0 && all.get('copied')?.records === 2 ? group : undefined
    }, 15_000, 'the endpoint caught up')
    expect(view.group).toBe('streamgate-route.copy.telemetry')
    expect(view.partitions).toHaveLength(8)
    expect(view.partitions.reduce((n, p) => n + (p.committed ?? 0), 0)).toBe(5)
  })
})
