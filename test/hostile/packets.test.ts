import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import mqttPacket from 'mqtt-packet'
import { expectSurvived, startHostileGateway, underAttack, MiB, type HostileGateway, metric } from '../helpers/hostile.js'
import { deviceConnect, RawPeer, remainingLength } from '../helpers/raw-mqtt.js'

/**
 * Issue items 3 and 12 (protocol edges): what a peer can make the parser buffer, before and after
 * CONNACK, over TCP and WebSocket; strings that are not UTF-8; protocol levels the gateway does
 * not speak.
 */

/** Keep writing `chunk` until the gateway closes the connection or `maxBytes` went out. */
async function pour(peer: RawPeer, chunk: Buffer, maxBytes: number): Promise<number> {
  let sent = 0
  while (!peer.isClosed && sent < maxBytes) {
    peer.write(chunk)
    sent += chunk.length
    await new Promise((r) => setImmediate(r))
  }
  return sent
}

/** A PUBLISH whose topic is given as raw bytes (so it can be ill-formed UTF-8). */
function publishWithTopicBytes(topic: Buffer, messageId: number, payload = Buffer.from('x')): Buffer {
  const body = Buffer.concat([Buffer.from([topic.length >> 8, topic.length & 0xff]), topic, Buffer.from([messageId >> 8, messageId & 0xff]), payload])
  return Buffer.concat([Buffer.from([0x32, ...remainingLength(body.length)]), body])
}

/** A CONNECT at protocol level `level` whose remaining bytes are `rest` and whose length field announces `announced`. */
function connectAtLevel(level: number, rest: Buffer, announced?: number): Buffer {
  const body = Buffer.concat([Buffer.from([0, 4]), Buffer.from('MQTT'), Buffer.from([level]), rest])
  return Buffer.concat([Buffer.from([0x10, ...remainingLength(announced ?? body.length)]), body])
}

describe('hostile: packets the parser must not buffer or accept', () => {
  let gw: HostileGateway
  let canary: { deviceId: string; token: string }
  let dev: { deviceId: string; token: string }

  beforeAll(async () => {
    gw = await startHostileGateway()
    canary = await gw.addSasDevice('canary-packets')
    dev = await gw.addSasDevice('packets-dev')
  }, 180_000)
  afterAll(async () => {
    await gw?.stop()
  })

  it('closes a CONNECT announcing 256 MiB when its length is read, over TCP and WebSocket', async () => {
    const before = await metric(gw, 'streamgate_protocol_errors_total{code="E_PACKET_TOO_LARGE"}')
    const zeros = Buffer.alloc(64 * 1024)
    const outcome = await underAttack(gw, canary, async () => {
      const peers = [
        ...(await Promise.all(Array.from({ length: 8 }, () => RawPeer.tcp(gw.mqttPort)))),
        ...(await Promise.all(Array.from({ length: 8 }, () => RawPeer.ws(`ws://127.0.0.1:${gw.httpPort}/mqtt`)))),
      ]
      const sent = await Promise.all(
        peers.map(async (peer) => {
          peer.write(Buffer.from([0x10, 0xff, 0xff, 0xff, 0x7f]))
          return pour(peer, zeros, 64 * MiB)
        }),
      )
      const closed = await Promise.all(peers.map((p) => p.closedWithin(5000)))
      return { sent, closed, connacks: peers.filter((p) => p.packets.some((x) => x.cmd === 'connack')).length }
    })
    expect(outcome.result.closed.every(Boolean)).toBe(true)
    expect(outcome.result.connacks).toBe(0)
    // Each peer got to write far less than what it announced before the gateway closed it.
    for (const sent of outcome.result.sent) expect(sent).toBeLessThan(64 * MiB)
    expect(await metric(gw, 'streamgate_protocol_errors_total{code="E_PACKET_TOO_LARGE"}')).toBeGreaterThanOrEqual(before + 16)
    await expectSurvived(gw, 'oversize CONNECT x16 (TCP + WS)', outcome, { rssGrowthBytes: 48 * MiB })
  })

  it('closes an oversize SUBSCRIBE and an oversize packet sent before CONNACK, and stores nothing of them', async () => {
    const outcome = await underAttack(gw, canary, async () => {
      // After CONNACK: SUBSCRIBE announcing 256 MiB.
      const sub = await RawPeer.tcp(gw.mqttPort)
      sub.write(deviceConnect(dev.deviceId, dev.token))
      expect((await sub.next('connack'))?.returnCode).toBe(0)
      sub.write(Buffer.from([0x82, 0xff, 0xff, 0xff, 0x7f, 0x00, 0x01]))
      await pour(sub, Buffer.alloc(64 * 1024), 32 * MiB)
      const subClosed = await sub.closedWithin(5000)
      // Before CONNACK: a valid CONNECT followed in the same write by a 100 KiB PUBLISH.
      const early = await RawPeer.tcp(gw.mqttPort)
      const publish = mqttPacket.generate({ cmd: 'publish', topic: `devices/${dev.deviceId}/messages/events/%24.mid=early`, payload: Buffer.alloc(100 * 1024), qos: 1, messageId: 1, dup: false, retain: false })
      early.write(Buffer.concat([mqttPacket.generate(deviceConnect(dev.deviceId, dev.token)), publish]))
      const earlyClosed = await early.closedWithin(5000)
      // Before CONNACK: more packets than limits.maxPacketsBeforeConnack.
      const many = await RawPeer.tcp(gw.mqttPort)
      const publishes = Array.from({ length: 20 }, (_, i) => mqttPacket.generate({ cmd: 'publish', topic: `devices/${dev.deviceId}/messages/events/%24.mid=many-${i}`, payload: Buffer.from('x'), qos: 1, messageId: i + 1, dup: false, retain: false }))
      many.write(Buffer.concat([mqttPacket.generate(deviceConnect(dev.deviceId, dev.token)), ...publishes]))
      const manyClosed = await many.closedWithin(5000)
      return { subClosed, earlyClosed, earlyPubacks: early.packets.filter((p) => p.cmd === 'puback').length, manyClosed, manyPubacks: many.packets.filter((p) => p.cmd === 'puback').length }
    })
    expect(outcome.result).toEqual({ subClosed: true, earlyClosed: true, earlyPubacks: 0, manyClosed: true, manyPubacks: 0 })
    const stored = await gw.storedMessageIds()
    expect([...stored].filter((id) => id === 'early' || id.startsWith('many-'))).toEqual([])
    await expectSurvived(gw, 'oversize SUBSCRIBE and pre-CONNACK packets', outcome, { rssGrowthBytes: 48 * MiB })
  })

  it('closes on a topic that is not UTF-8 or holds U+0000, with no PUBACK and nothing stored', async () => {
    const prefix = Buffer.from(`devices/${dev.deviceId}/messages/events/%24.mid=`)
    const topics = [
      Buffer.concat([prefix, Buffer.from('bad-utf8-'), Buffer.from([0xc3, 0x28])]),
      Buffer.concat([prefix, Buffer.from('overlong-'), Buffer.from([0xc0, 0xaf])]),
      Buffer.concat([prefix, Buffer.from('surrogate-'), Buffer.from([0xed, 0xa0, 0x80])]),
      Buffer.concat([prefix, Buffer.from('nul-'), Buffer.from([0x00])]),
    ]
    const outcome = await underAttack(gw, canary, async () => {
      const results: Array<{ closed: boolean; pubacks: number }> = []
      for (const topic of topics) {
        const peer = await RawPeer.tcp(gw.mqttPort)
        peer.write(deviceConnect(dev.deviceId, dev.token))
        expect((await peer.next('connack'))?.returnCode).toBe(0)
        peer.write(publishWithTopicBytes(topic, 7))
        results.push({ closed: await peer.closedWithin(5000), pubacks: peer.packets.filter((p) => p.cmd === 'puback').length })
      }
      // A client id that is not UTF-8: closed before any CONNACK [MQTT-1.5.3-1].
      const badId = await RawPeer.tcp(gw.mqttPort)
      const connect = Buffer.from(mqttPacket.generate(deviceConnect('bad\u00e9id', dev.token)))
      const at = connect.indexOf(Buffer.from('bad\u00e9id'))
      connect[at + 3] = 0xff // the first byte of é becomes a byte UTF-8 never uses
      badId.write(connect)
      return { results, badIdClosed: await badId.closedWithin(5000), badIdConnacks: badId.packets.length }
    })
    for (const r of outcome.result.results) expect(r).toEqual({ closed: true, pubacks: 0 })
    expect(outcome.result.badIdClosed).toBe(true)
    expect(outcome.result.badIdConnacks).toBe(0)
    const stored = [...(await gw.storedMessageIds())]
    expect(stored.filter((id) => /^(bad-utf8|overlong|surrogate|nul)-/.test(id))).toEqual([])
    await expectSurvived(gw, 'ill-formed UTF-8 and U+0000 in strings', outcome, { rssGrowthBytes: 32 * MiB })
  })

  it('answers CONNACK 1 to every protocol level it does not speak, whatever the rest holds', async () => {
    const cases: Array<[string, Buffer]> = [
      ['level 5 (MQTT 5), well-formed', Buffer.from(mqttPacket.generate({ ...deviceConnect(dev.deviceId, dev.token), protocolVersion: 5, properties: { sessionExpiryInterval: 10 } }))],
      ['level 6, garbage after it', connectAtLevel(6, Buffer.from([0xff, 0xff, 0xff, 0xff, 0x00]))],
      ['level 2, truncated', connectAtLevel(2, Buffer.alloc(0))],
      ['level 0, reserved flag set', connectAtLevel(0, Buffer.from([0x01, 0x00, 0x3c, 0x00, 0x00]))],
      ['level 255 (bridge bit + 127)', connectAtLevel(255, Buffer.from([0x02, 0x00, 0x3c, 0x00, 0x01, 0x61]))],
      ['level 133 (bridge bit + 5)', connectAtLevel(0x85, Buffer.from([0x02, 0x00, 0x3c, 0x00, 0x01, 0x61]))],
      ['level 7, announcing 256 MiB', connectAtLevel(7, Buffer.from([0x02, 0x00, 0x3c]), 268_435_455)],
    ]
    const outcome = await underAttack(gw, canary, async () => {
      const answers: Record<string, { code: number | undefined; closed: boolean }> = {}
      for (const [name, bytes] of cases) {
        for (const transport of ['tcp', 'ws'] as const) {
          const peer = transport === 'tcp' ? await RawPeer.tcp(gw.mqttPort) : await RawPeer.ws(`ws://127.0.0.1:${gw.httpPort}/mqtt`)
          peer.write(bytes)
          const connack = await peer.next('connack', 5000)
          answers[`${name} over ${transport}`] = { code: connack?.returnCode, closed: await peer.closedWithin(5000) }
        }
      }
      return answers
    })
    for (const [name, answer] of Object.entries(outcome.result)) expect(answer, name).toEqual({ code: 1, closed: true })
    await expectSurvived(gw, 'unsupported protocol levels', outcome, { rssGrowthBytes: 32 * MiB })
  })
})
