import { mkdtempSync, rmSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { afterEach, beforeEach, describe, expect, it } from 'vitest'
import type { ConnectionContext, DeviceChannel, SendResult } from '../../../src/broker/ports.js'
import { C2dDelivery } from '../../../src/commands/c2d-delivery.js'
import { FeedbackWriter } from '../../../src/commands/feedback-writer.js'
import { SqliteCommandQueue } from '../../../src/commands/sqlite-command-queue.js'
import type { NewMessage } from '../../../src/commands/types.js'
import { topicMatches } from '../../../src/broker/outbound.js'
import { createLogger } from '../../../src/observability/logger.js'
import type { EventStream, OutgoingRecord } from '../../../src/stream/types.js'

/** One device connection whose writes are recorded; `subscribed` toggles its C2D subscription. */
class FakeChannel implements DeviceChannel {
  sent: Array<{ topic: string; payload: string; dup: boolean; messageId: number }> = []
  subscribed = true
  nextId = 1
  ctx: ConnectionContext = makeCtx('c1')
  connectionOf(): ConnectionContext | null {
    return this.ctx
  }
  isSubscribed(_id: string, topic: string): boolean {
    return this.subscribed && topicMatches('devices/d1/messages/devicebound/#', topic)
  }
  send(_id: string, topic: string, payload: Buffer, _qos: 0 | 1, dup = false): SendResult {
    const messageId = this.nextId++
    this.sent.push({ topic, payload: payload.toString(), dup, messageId })
    return { ctx: this.ctx, messageId, written: Promise.resolve() }
  }
}

function makeCtx(connectionId: string): ConnectionContext {
  return { deviceId: 'd1', connectionId, remoteAddress: '', transport: 'tcp', authMethod: 'sas', connectedAt: 0, isClosed: () => false }
}

const appended: OutgoingRecord[] = []
const stream = { append: async (_t: string, records: OutgoingRecord[]) => void appended.push(...records) } as unknown as EventStream
const logger = createLogger('silent')

let dir: string
let store: SqliteCommandQueue
let channel: FakeChannel
let now: number
let delivery: C2dDelivery

function message(n: number, over: Partial<NewMessage> = {}): NewMessage {
  return { messageId: `m${n}`, deviceId: 'd1', payload: Buffer.from(`p${n}`), properties: {}, ack: 'none', enqueuedAt: now, expiresAt: now + 60_000, ...over }
}

async function feedback(): Promise<Array<{ messageId: string; status: string; deliveryCount: number; reason?: string }>> {
  await new Promise((r) => setTimeout(r, 10))
  return appended.map((r) => JSON.parse(r.value.toString()) as { messageId: string; status: string; deliveryCount: number })
}

beforeEach(() => {
  dir = mkdtempSync(join(tmpdir(), 'c2d-unit-'))
  store = new SqliteCommandQueue(join(dir, 'commands.db'))
  store.start()
  channel = new FakeChannel()
  now = 1_000_000
  appended.length = 0
  delivery = new C2dDelivery({ queue: store, channel, feedback: new FeedbackWriter(store, stream, 'command-feedback', logger), logger, maxDeliveryCount: 3, now: () => now })
})
afterEach(() => {
  store.stop()
  rmSync(dir, { recursive: true, force: true })
})

describe('C2dDelivery', () => {
  it('keeps one message in flight and completes it only on the PUBACK of its packet id and connection', async () => {
    await store.enqueue(message(1), 50)
    await store.enqueue(message(2), 50)
    await delivery.kick('d1')
    await delivery.kick('d1')
    expect(channel.sent.map((s) => s.payload)).toEqual(['p1'])
    delivery.acknowledged(makeCtx('other-connection'), channel.sent[0]!.messageId)
    delivery.acknowledged(channel.ctx, 999)
    await delivery.drain()
    expect(channel.sent).toHaveLength(1)
    delivery.acknowledged(channel.ctx, channel.sent[0]!.messageId)
    await new Promise((r) => setTimeout(r, 20))
    await delivery.drain()
    expect(channel.sent.map((s) => s.payload)).toEqual(['p1', 'p2'])
    expect((await feedback()).map((f) => [f.messageId, f.status, f.deliveryCount])).toEqual([['m1', 'completed', 1]])
  })

  it('redelivers with DUP after the connection closes and rejects past the max delivery count', async () => {
    await store.enqueue(message(1), 50)
    for (let attempt = 1; attempt <= 3; attempt++) {
      await delivery.kick('d1')
      delivery.connectionClosed(channel.ctx)
      channel.ctx = makeCtx(`c${attempt + 1}`)
    }
    expect(channel.sent.map((s) => s.dup)).toEqual([false, true, true])
    await delivery.kick('d1')
    expect(channel.sent).toHaveLength(3)
    expect(await feedback()).toEqual([expect.objectContaining({ messageId: 'm1', status: 'rejected', deliveryCount: 3, reason: 'max-delivery-count' })])
    expect(await store.list('d1')).toEqual([])
  })

  it('does not deliver to a device that is not subscribed, and ends an expired head as expired', async () => {
    channel.subscribed = false
    await store.enqueue(message(1), 50)
    await delivery.kick('d1')
    expect(channel.sent).toEqual([])
    now += 60_000
    channel.subscribed = true
    await delivery.kick('d1')
    expect(channel.sent).toEqual([])
    expect((await feedback()).map((f) => [f.messageId, f.status])).toEqual([['m1', 'expired']])
  })

  it('lets the next message go when the one in flight expires unacknowledged', async () => {
    await store.enqueue(message(1, { expiresAt: now + 1000 }), 50)
    await store.enqueue(message(2), 50)
    await delivery.kick('d1')
    now += 1000
    expect(await store.expire(now)).toEqual(['d1'])
    await delivery.revalidate('d1')
    expect(channel.sent.map((s) => s.payload)).toEqual(['p1', 'p2'])
  })

  it('settles a message once when its PUBACK races its expiry', async () => {
    const queued = (await store.enqueue(message(1), 50))!
    await delivery.kick('d1')
    now += 60_000
    expect(await store.expire(now)).toEqual(['d1'])
    delivery.acknowledged(channel.ctx, channel.sent[0]!.messageId)
    await new Promise((r) => setTimeout(r, 20))
    expect(await store.settle(queued.seq, 'completed', now)).toBe(false)
    const pending = await store.pendingFeedback(10)
    expect([...pending.map((p) => p.feedback.status), ...(await feedback()).map((f) => f.status)]).toEqual(['expired'])
  })
})

describe('topicMatches', () => {
  it.each([
    ['devices/d/messages/devicebound/#', 'devices/d/messages/devicebound/%24.mid=1', true],
    ['devices/d/messages/devicebound/#', 'devices/d/messages/devicebound', true],
    ['devices/d/messages/devicebound/+', 'devices/d/messages/devicebound/x', true],
    ['devices/d/messages/devicebound/+', 'devices/d/messages/devicebound/x/y', false],
    ['$iothub/twin/res/#', '$iothub/twin/res/200/?$rid=1', true],
    ['$iothub/twin/res/#', '$iothub/twin/PATCH/properties/desired/?$version=2', false],
    ['$iothub/methods/POST/#', '$iothub/methods/POST/reboot/?$rid=1', true],
  ])('%s matches %s: %s', (filter, topic, expected) => {
    expect(topicMatches(filter, topic)).toBe(expected)
  })
})
