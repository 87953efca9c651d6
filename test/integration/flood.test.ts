import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { connect as netConnect, type Socket } from 'node:net'
import mqttPacket from 'mqtt-packet'
import type { Device } from '../../src/registry/types.js'
import { connectDevice, sasFor, startTestGateway, waitFor, type TestGateway } from '../helpers/gateway.js'

/**
 * Bare Aedes 1.2 was seen to die with `RangeError: Maximum call stack size exceeded` (mqemitter
 * recursion, aedes #193) when 10 clients flood QoS 0 as fast as TCP allows and then disconnect.
 * The gateway must survive it: device publishes stay off the broker-wide fan-out and ingress is
 * bounded (sockets are not read while the stream catches up).
 */
async function floodClient(port: number, dev: Device, token: string, durationMs: number): Promise<number> {
  const socket: Socket = netConnect({ host: '127.0.0.1', port })
  await new Promise<void>((r) => socket.once('connect', () => r()))
  socket.on('error', () => undefined)
  const parser = mqttPacket.parser({ protocolVersion: 4 })
  const connack = new Promise<number>((r) => parser.once('packet', (p) => r((p as { returnCode: number }).returnCode)))
  socket.on('data', (b) => parser.parse(b))
  socket.write(mqttPacket.generate({ cmd: 'connect', protocolId: 'MQTT', protocolVersion: 4, clientId: dev.deviceId, clean: true, keepalive: 60, username: dev.deviceId, password: Buffer.from(token) }))
  if ((await connack) !== 0) throw new Error('flood client refused')
  // 64 packets per write: a flood as fast as TCP takes it.
  const one = mqttPacket.generate({ cmd: 'publish', topic: `devices/${dev.deviceId}/messages/events/`, payload: Buffer.alloc(100, 'f'), qos: 0, retain: false, dup: false })
  const chunk = Buffer.concat(Array.from({ length: 64 }, () => one))
  const deadline = Date.now() + durationMs
  let sent = 0
  while (Date.now() < deadline && !socket.destroyed) {
    sent += 64
    if (!socket.write(chunk)) {
      await new Promise<void>((r) => {
        const done = (): void => {
          clearTimeout(t)
          socket.off('drain', done)
          r()
        }
        const t = setTimeout(done, 50)
        socket.once('drain', done)
      })
    }
  }
  // Disconnect abruptly, with data still queued on both sides.
  socket.destroy()
  return sent
}

describe('QoS 0 flood from 10 clients, then disconnect', () => {
  let gw: TestGateway
  let devices: Device[]

  beforeAll(async () => {
    // A small in-flight bound so that backpressure engages during the flood.
    gw = await startTestGateway({ 'limits.maxInFlightRecords': '2000' })
    devices = []
    for (let i = 0; i < 11; i++) devices.push(await gw.gateway.registry.create({ deviceId: `flood-${i}` }))
  })
  afterAll(async () => {
    await gw.stop()
  })

  it('survives, stays bounded, and keeps serving devices afterwards', { timeout: 150_000 }, async () => {
    const port = Number(new URL(gw.mqttUrl).port)
    let maxInFlight = 0
    const sampler = setInterval(() => {
      void gw.gateway.metrics.inFlightRecords.get().then((m) => (maxInFlight = Math.max(maxInFlight, m.values[0]?.value ?? 0)))
    }, 10)
    const sent = await Promise.all(devices.slice(0, 10).map((d) => floodClient(port, d, sasFor(d), 3000)))
    clearInterval(sampler)
    expect(sent.reduce((a, b) => a + b, 0)).toBeGreaterThan(10_000)
    // The bound held all along, and it was reached: publishes waited (sockets were not read).
    expect(maxInFlight).toBeGreaterThan(0)
    expect(maxInFlight).toBeLessThanOrEqual(2000)
    expect((await gw.gateway.metrics.backpressureWaits.get()).values[0]?.value ?? 0).toBeGreaterThan(0)
    // Flooders are gone; the gateway still takes a QoS 1 publish and acknowledges it.
    // A flooder's close (FIN) reaches the gateway only behind what the flooder already sent: the
    // kernel socket buffers hold about 400k publishes in all, every one of which is ingested first
    // (4-6 s alone, over 10 s with another suite running; slower still on a loaded CI machine).
    await waitFor(() => gw.gateway.broker.connectedCount === 0, 90_000, 'flood connections to close')
    const probe = devices[10]!
    const client = await connectDevice(gw.mqttUrl, probe.deviceId, sasFor(probe))
    await client.publishAsync(`devices/${probe.deviceId}/messages/events/%24.mid=after-flood`, 'alive', { qos: 1 })
    await client.endAsync()
    const stored = await gw.gateway.stream.offsets('telemetry')
    expect(stored.reduce((n, p) => n + (p.high - p.low), 0)).toBeGreaterThan(1000)
  })
})
