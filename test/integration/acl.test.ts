import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import type { MqttClient } from 'mqtt'
import type { Device } from '../../src/registry/types.js'
import { connectDevice, readAll, sasFor, startTestGateway, waitFor, metricSamples, type TestGateway } from '../helpers/gateway.js'

/** Resolves when the broker closes the client's connection. */
function closed(client: MqttClient): Promise<void> {
  return new Promise((resolve) => {
    if (!client.connected) return resolve()
    client.once('close', () => resolve())
  })
}

async function metric(gw: TestGateway, sample: string): Promise<number> {
  return (await metricSamples(gw)).get(sample) ?? 0
}

describe('per-device topic ACL', () => {
  let gw: TestGateway
  let a: Device
  let b: Device

  beforeAll(async () => {
    gw = await startTestGateway()
    a = await gw.gateway.registry.create({ deviceId: 'acl-a' })
    b = await gw.gateway.registry.create({ deviceId: 'acl-b' })
  })
  afterAll(async () => {
    await gw.stop()
  })

  const publishCases: Array<[string, (dev: Device, other: Device) => string]> = [
    ["another device's telemetry topic", (_d, o) => `devices/${o.deviceId}/messages/events/`],
    ['an arbitrary topic', () => 'sensors/kitchen/temperature'],
    ['its own devicebound topic', (d) => `devices/${d.deviceId}/messages/devicebound/x`],
    ['a $SYS topic', () => '$SYS/broker/clients'],
  ]

  for (const [name, topicOf] of publishCases) {
    it(`disconnects a device publishing to ${name} and writes nothing`, async () => {
      const before = await metric(gw, 'streamgate_acl_denials_total{action="publish",code="E_TOPIC_FORBIDDEN"}')
      const client = await connectDevice(gw.mqttUrl, a.deviceId, sasFor(a))
      const marker = `forbidden-${Math.random()}`
      const gone = closed(client)
      client.publish(topicOf(a, b), marker, { qos: 1 })
      await gone
      const all = await readAll(gw.gateway, 'telemetry')
      expect(all.some((r) => r.value.toString() === marker)).toBe(false)
      expect(await metric(gw, 'streamgate_acl_denials_total{action="publish",code="E_TOPIC_FORBIDDEN"}')).toBe(before + 1)
      client.end(true)
    })
  }

  const subscribeCases = ['#', '+/#', `devices/${'acl-b'}/messages/devicebound/#`, 'devices/+/messages/devicebound/#', '$SYS/#', 'devices/acl-a/messages/events/#']
  for (const filter of subscribeCases) {
    it(`refuses a subscription to ${filter} by closing the connection`, async () => {
      const client = await connectDevice(gw.mqttUrl, a.deviceId, sasFor(a))
      const gone = closed(client)
      client.subscribe(filter, { qos: 1 })
      await gone
      expect(client.connected).toBe(false)
      client.end(true)
    })
  }

  it('grants the IoT Hub subscriptions of the device itself, QoS capped at 1', async () => {
    const client = await connectDevice(gw.mqttUrl, a.deviceId, sasFor(a))
    const granted = await client.subscribeAsync({
      [`devices/${a.deviceId}/messages/devicebound/#`]: { qos: 1 },
      '$iothub/twin/res/#': { qos: 0 },
      '$iothub/twin/PATCH/properties/desired/#': { qos: 0 },
      '$iothub/methods/POST/#': { qos: 0 },
    })
    expect(granted.map((g) => g.qos)).toEqual([1, 0, 0, 0])
    expect(client.connected).toBe(true)
    await client.endAsync()
  })

  it('never forwards a device publish to another MQTT client, even one subscribed to a matching filter', async () => {
    // A device may not subscribe to telemetry topics, so use the broker's own API to listen on
    // everything: a device publish must not reach the broker-wide pub/sub at all.
    const seen: string[] = []
    const listener = (packet: { topic: string }, cb: () => void): void => {
      if (packet.topic.startsWith('devices/')) seen.push(packet.topic)
      cb()
    }
    await new Promise<void>((resolve) => gw.gateway.broker.aedes.subscribe('#', listener, () => resolve()))
    const client = await connectDevice(gw.mqttUrl, a.deviceId, sasFor(a))
    await client.publishAsync(`devices/${a.deviceId}/messages/events/`, 'private', { qos: 1 })
    await client.publishAsync(`devices/${a.deviceId}/messages/events/`, 'private0', { qos: 0 })
    await waitFor(async () => (await readAll(gw.gateway, 'telemetry')).some((r) => r.value.toString() === 'private0'))
    expect(seen).toEqual([])
    await client.endAsync()
  })
})
