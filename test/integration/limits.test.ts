import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { connect as netConnect } from 'node:net'
import mqttPacket from 'mqtt-packet'
import type { MqttClient } from 'mqtt'
import type { Device } from '../../src/registry/types.js'
import { connectDevice, readAll, sasFor, startTestGateway, metricSamples, type TestGateway } from '../helpers/gateway.js'

function closed(client: MqttClient): Promise<void> {
  return new Promise((resolve) => (client.connected ? client.once('close', () => resolve()) : resolve()))
}

async function metricValue(gw: TestGateway, name: string, code: string): Promise<number> {
  return (await metricSamples(gw)).get(`${name}{code="${code}"}`) ?? 0
}

describe('payload, QoS and packet limits', () => {
  let gw: TestGateway
  let dev: Device

  beforeAll(async () => {
    gw = await startTestGateway({ 'limits.maxPayloadBytes': '1024' })
    dev = await gw.gateway.registry.create({ deviceId: 'limits-dev' })
  })
  afterAll(async () => {
    await gw.stop()
  })

  it('accepts a payload of exactly the maximum size', async () => {
    const client = await connectDevice(gw.mqttUrl, dev.deviceId, sasFor(dev))
    await client.publishAsync(`devices/${dev.deviceId}/messages/events/%24.mid=max`, Buffer.alloc(1024, 'a'), { qos: 1 })
    expect((await readAll(gw.gateway, 'telemetry')).some((r) => r.headers['message-id'] === 'max')).toBe(true)
    await client.endAsync()
  })

  it('closes the connection on a payload one byte over the maximum and stores nothing', async () => {
    const client = await connectDevice(gw.mqttUrl, dev.deviceId, sasFor(dev))
    const gone = closed(client)
    client.publish(`devices/${dev.deviceId}/messages/events/%24.mid=over`, Buffer.alloc(1025, 'a'), { qos: 1 })
    await gone
    expect((await readAll(gw.gateway, 'telemetry')).some((r) => r.headers['message-id'] === 'over')).toBe(false)
    expect(await metricValue(gw, 'streamgate_protocol_errors_total', 'E_PAYLOAD_TOO_LARGE')).toBeGreaterThanOrEqual(1)
    client.end(true)
  })

  it('closes the connection as soon as a huge PUBLISH announces its length, before the body arrives', async () => {
    const socket = netConnect({ host: '127.0.0.1', port: Number(new URL(gw.mqttUrl).port) })
    await new Promise<void>((r) => socket.once('connect', () => r()))
    const parser = mqttPacket.parser({ protocolVersion: 4 })
    const connack = new Promise<number>((r) => parser.once('packet', (p) => r((p as { returnCode: number }).returnCode)))
    socket.on('data', (b) => parser.parse(b))
    socket.write(mqttPacket.generate({ cmd: 'connect', protocolId: 'MQTT', protocolVersion: 4, clientId: dev.deviceId, clean: false, keepalive: 60, username: dev.deviceId, password: Buffer.from(sasFor(dev)) }))
    expect(await connack).toBe(0)
    const before = await metricValue(gw, 'streamgate_protocol_errors_total', 'E_PAYLOAD_TOO_LARGE')
    // Fixed header of a PUBLISH announcing 200 MiB, then only a few bytes of it.
    const length = 200 * 1024 * 1024
    const varint: number[] = []
    for (let x = length; ; ) {
      let byte = x % 128
      x = Math.floor(x / 128)
      if (x > 0) byte |= 0x80
      varint.push(byte)
      if (x === 0) break
    }
    const closedSocket = new Promise<void>((r) => socket.once('close', () => r()))
    socket.write(Buffer.from([0x32, ...varint, 0, 5, 0x61, 0x62, 0x63]))
    await closedSocket
    expect(await metricValue(gw, 'streamgate_protocol_errors_total', 'E_PAYLOAD_TOO_LARGE')).toBe(before + 1)
  })

  it('closes the connection on a QoS 2 publish (IoT Hub does not support QoS 2)', async () => {
    const client = await connectDevice(gw.mqttUrl, dev.deviceId, sasFor(dev))
    const gone = closed(client)
    client.publish(`devices/${dev.deviceId}/messages/events/%24.mid=qos2`, 'x', { qos: 2 })
    await gone
    expect((await readAll(gw.gateway, 'telemetry')).some((r) => r.headers['message-id'] === 'qos2')).toBe(false)
    expect(await metricValue(gw, 'streamgate_protocol_errors_total', 'E_QOS_UNSUPPORTED')).toBeGreaterThanOrEqual(1)
    client.end(true)
  })

  it('closes the connection on a malformed property bag and stores nothing', async () => {
    const client = await connectDevice(gw.mqttUrl, dev.deviceId, sasFor(dev))
    const gone = closed(client)
    client.publish(`devices/${dev.deviceId}/messages/events/%24.mid=bad&broken=%E0%A4%A`, 'x', { qos: 1 })
    await gone
    expect(await metricValue(gw, 'streamgate_protocol_errors_total', 'E_PROPERTY_BAG_INVALID')).toBeGreaterThanOrEqual(1)
    client.end(true)
  })

  it('tags a retained publish instead of retaining it', async () => {
    const client = await connectDevice(gw.mqttUrl, dev.deviceId, sasFor(dev))
    await client.publishAsync(`devices/${dev.deviceId}/messages/events/%24.mid=ret`, 'r', { qos: 1, retain: true })
    const r = (await readAll(gw.gateway, 'telemetry')).find((x) => x.headers['message-id'] === 'ret')!
    expect(r.headers['mqtt-retain']).toBe('true')
    await client.endAsync()
  })
})
