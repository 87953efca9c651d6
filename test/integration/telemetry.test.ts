import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { connectAsync } from 'mqtt'
import { partitionForKey } from '../../src/stream/partitioner.js'
import type { Device } from '../../src/registry/types.js'
import { connectDevice, readAll, sasFor, startTestGateway, waitFor, deviceOptions, type TestGateway } from '../helpers/gateway.js'

describe('telemetry over MQTT into the embedded stream', () => {
  let gw: TestGateway
  let dev: Device

  beforeAll(async () => {
    gw = await startTestGateway()
    dev = await gw.gateway.registry.create({ deviceId: 'thermo-1' })
  })
  afterAll(async () => {
    await gw.stop()
  })

  it('stores a QoS 1 publish with its property bag as headers, keyed and partitioned by device id, before the PUBACK', async () => {
    const client = await connectDevice(gw.mqttUrl, dev.deviceId, sasFor(dev))
    // The wire form the Azure SDK sends (IoT Hub MQTT support, "Sending device-to-cloud messages").
    const topic = `devices/${dev.deviceId}/messages/events/%24.mid=m-1&%24.cid=c%2F1&%24.ct=application%2Fjson&%24.ce=utf-8&alert%20level=high%20%26%20urgent&%C3%BCn%C3%AF=%C3%A7%C3%B8d%C3%A9%3D1`
    const before = Date.now()
    await client.publishAsync(topic, '{"t":21.5}', { qos: 1 })
    // PUBACK received: the record must already be readable.
    const records = (await readAll(gw.gateway, 'telemetry')).filter((r) => r.headers['message-id'] === 'm-1')
    expect(records).toHaveLength(1)
    const r = records[0]!
    expect(r.key).toBe('thermo-1')
    expect(r.partition).toBe(partitionForKey('thermo-1', gw.config.stream.partitions))
    expect(r.value.toString()).toBe('{"t":21.5}')
    expect(r.headers).toMatchObject({
      'device-id': 'thermo-1',
      'message-id': 'm-1',
      'correlation-id': 'c/1',
      'content-type': 'application/json',
      'content-encoding': 'utf-8',
      'alert level': 'high & urgent',
      'ünï': 'çødé=1',
    })
    const enqueued = Number(r.headers['enqueued-time'])
    expect(enqueued).toBeGreaterThanOrEqual(before)
    expect(enqueued).toBeLessThanOrEqual(Date.now())
    await client.endAsync()
  })

  it('stores QoS 0 publishes too, and keeps one device\'s records in order on one partition', async () => {
    const client = await connectDevice(gw.mqttUrl, dev.deviceId, sasFor(dev))
    for (let i = 0; i < 50; i++) client.publish(`devices/${dev.deviceId}/messages/events/seq=${i}`, `q0-${i}`, { qos: 0 })
    const mine = await waitFor(async () => {
      const all = (await readAll(gw.gateway, 'telemetry')).filter((r) => r.value.toString().startsWith('q0-'))
      return all.length === 50 ? all : null
    })
    expect(new Set(mine.map((r) => r.partition)).size).toBe(1)
    expect(mine.map((r) => r.headers.seq)).toEqual(Array.from({ length: 50 }, (_, i) => String(i)))
    const offsets = mine.map((r) => r.offset)
    expect(offsets).toEqual([...offsets].sort((a, b) => a - b))
    await client.endAsync()
  })

  it('accepts the bare device id as user name and a topic without property bag', async () => {
    const client = await connectAsync(gw.mqttUrl, { ...deviceOptions(dev.deviceId, sasFor(dev)), username: dev.deviceId })
    await client.publishAsync(`devices/${dev.deviceId}/messages/events/`, Buffer.from([0, 1, 2, 255]), { qos: 1 })
    await client.publishAsync(`devices/${dev.deviceId}/messages/events`, 'no-slash', { qos: 1 })
    const all = await readAll(gw.gateway, 'telemetry')
    expect(all.some((r) => r.value.equals(Buffer.from([0, 1, 2, 255])))).toBe(true)
    expect(all.some((r) => r.value.toString() === 'no-slash')).toBe(true)
    await client.endAsync()
  })

  it('takes telemetry over MQTT over WebSocket on the HTTP port, on both paths', async () => {
    for (const path of ['/mqtt', '/$iothub/websocket']) {
      const client = await connectAsync(`ws://127.0.0.1:${new URL(gw.httpUrl).port}${path}`, deviceOptions(dev.deviceId, sasFor(dev)))
      await client.publishAsync(`devices/${dev.deviceId}/messages/events/%24.mid=ws${encodeURIComponent(path)}`, 'over-ws', { qos: 1 })
      await client.endAsync()
    }
    const ws = (await readAll(gw.gateway, 'telemetry')).filter((r) => r.value.toString() === 'over-ws')
    expect(ws.map((r) => r.headers['message-id']).sort()).toEqual(['ws%2F%24iothub%2Fwebsocket', 'ws%2Fmqtt'].map(decodeURIComponent).sort())
  })

  it('keeps an application property named like a gateway header under app.<name>', async () => {
    const client = await connectDevice(gw.mqttUrl, dev.deviceId, sasFor(dev))
    await client.publishAsync(`devices/${dev.deviceId}/messages/events/device-id=spoof&%24.mid=spoof-1`, 'x', { qos: 1 })
    const r = (await readAll(gw.gateway, 'telemetry')).find((x) => x.headers['message-id'] === 'spoof-1')!
    expect(r.headers['device-id']).toBe('thermo-1')
    expect(r.headers['app.device-id']).toBe('spoof')
    await client.endAsync()
  })
})
