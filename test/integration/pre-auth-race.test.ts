import { Duplex } from 'node:stream'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import mqttPacket, { type Packet } from 'mqtt-packet'
import { sasFor, startTestGateway, type TestGateway } from '../helpers/gateway.js'
import type { Device } from '../../src/registry/types.js'

/**
 * The race the fuzzer found, made deterministic: Aedes handles a CONNECT, then (before it pauses
 * the connection to authenticate, one turn of the event loop later) reads the next chunk and
 * hands its PUBLISH to the publish hook at once. The stream here is a Duplex the test feeds, so
 * the PUBLISH arrives exactly in that window. The hook must make it wait for the CONNACK, and drop
 * it when the CONNECT is refused.
 */
class FedConnection extends Duplex {
  readonly received: Packet[] = []
  private readonly parser = mqttPacket.parser({ protocolVersion: 4 })
  constructor() {
    super()
    this.parser.on('packet', (p) => this.received.push(p))
    this.parser.on('error', () => undefined)
  }
  override _read(): void {}
  override _write(chunk: Buffer, _enc: BufferEncoding, cb: () => void): void {
    this.parser.parse(chunk)
    cb()
  }
}

const connectOf = (deviceId: string, token: string): Buffer =>
  mqttPacket.generate({ cmd: 'connect', protocolId: 'MQTT', protocolVersion: 4, clientId: deviceId, clean: false, keepalive: 60, username: `localhost/${deviceId}/?api-version=2021-04-12`, password: Buffer.from(token) })
const publishOf = (topic: string): Buffer => mqttPacket.generate({ cmd: 'publish', topic, payload: Buffer.from('x'), qos: 1, messageId: 7, dup: false, retain: false })

/** Feed CONNECT, then the PUBLISH in the next tick: after Aedes read the CONNECT, before it pauses. */
async function race(gw: TestGateway, connect: Buffer, publish: Buffer): Promise<FedConnection> {
  const conn = new FedConnection()
  gw.gateway.broker.handle(conn as unknown as Parameters<TestGateway['gateway']['broker']['handle']>[0], 'tcp', '127.0.0.1')
  conn.push(connect)
  await new Promise<void>((r) => process.nextTick(r))
  conn.push(publish)
  await new Promise((r) => setTimeout(r, 500))
  return conn
}

describe('a PUBLISH right behind a CONNECT that is being authenticated', () => {
  let gw: TestGateway
  let dev: Device

  beforeAll(async () => {
    gw = await startTestGateway()
    dev = await gw.gateway.registry.create({ deviceId: 'race-dev' })
  })
  afterAll(async () => {
    await gw.stop()
  })

  it('is not acknowledged when the CONNECT is refused', async () => {
    // Signed with the secondary key's bytes reversed: a well-formed token that does not verify.
    const wrongKey = Buffer.from(dev.secondaryKey, 'base64').reverse().toString('base64')
    const conn = await race(gw, connectOf(dev.deviceId, sasFor(dev, 'localhost', 3600, wrongKey)), publishOf(`devices/${dev.deviceId}/messages/events/%24.mid=race-refused`))
    expect(conn.received.map((p) => [p.cmd, (p as { returnCode?: number }).returnCode])).toEqual([['connack', 5]])
  })

  it('is acknowledged after the CONNACK when the CONNECT is accepted', async () => {
    const conn = await race(gw, connectOf(dev.deviceId, sasFor(dev)), publishOf(`devices/${dev.deviceId}/messages/events/%24.mid=race-accepted`))
    expect(conn.received.map((p) => p.cmd)).toEqual(['connack', 'puback'])
    conn.destroy()
  })
})
