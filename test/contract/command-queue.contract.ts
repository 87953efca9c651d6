import { afterEach, beforeEach, describe, expect, it } from 'vitest'
import type { CommandQueue, NewMessage } from '../../src/commands/types.js'

export interface QueueUnderTest {
  queue: CommandQueue
  /** A second queue on the same store, as another gateway would open it. */
  another(): Promise<CommandQueue>
  close(): Promise<void>
}

/**
 * The CommandQueue contract: every implementation runs this suite unchanged. The promise under
 * test: every message ends exactly once, with its feedback, and a stream record is taken once.
 */
export function commandQueueContract(name: string, factory: () => Promise<QueueUnderTest>): void {
  describe(`CommandQueue contract: ${name}`, () => {
    let q: QueueUnderTest
    let queue: CommandQueue
    const t0 = 1_700_000_000_000
    const msg = (n: number, over: Partial<NewMessage> = {}): NewMessage => ({
      messageId: `m${n}`, deviceId: 'd1', payload: Buffer.from([n, 0, 255]), properties: { k: `v${n}` }, ack: 'full', enqueuedAt: t0, expiresAt: t0 + 60_000, ...over,
    })
    const drainFeedback = async (): Promise<Array<{ messageId: string; status: string; deliveryCount: number }>> => {
      const pending = await queue.pendingFeedback(1000)
      await queue.removeFeedback(pending.map((p) => p.id))
      return pending.map((p) => p.feedback)
    }

    beforeEach(async () => {
      q = await factory()
      queue = q.queue
    })
    afterEach(async () => {
      await q.close()
    })

    it('keeps each device queue in order and round-trips every field', async () => {
      await queue.enqueue(msg(1, { contentType: 'application/json', contentEncoding: 'utf-8' }), 10)
      await queue.enqueue(msg(2, { deviceId: 'd2' }), 10)
      await queue.enqueue(msg(3), 10)
      const list = await queue.list('d1')
      expect(list.map((m) => m.messageId)).toEqual(['m1', 'm3'])
      expect(list[0]).toMatchObject({ payload: Buffer.from([1, 0, 255]), properties: { k: 'v1' }, ack: 'full', contentType: 'application/json', contentEncoding: 'utf-8', deliveryCount: 0, expiresAt: t0 + 60_000 })
      expect((await queue.head('d1'))?.messageId).toBe('m1')
      expect(await queue.head('nobody')).toBeNull()
      expect((await queue.devicesWithMessages()).sort()).toEqual(['d1', 'd2'])
    })

    it('refuses past the depth with E_QUEUE_FULL, per device', async () => {
      await queue.enqueue(msg(1), 2)
      await queue.enqueue(msg(2), 2)
      await expect(queue.enqueue(msg(3), 2)).rejects.toMatchObject({ code: 'E_QUEUE_FULL' })
      await expect(queue.enqueue(msg(4, { deviceId: 'd2' }), 2)).resolves.not.toBeNull()
    })

    const rejected = { messageId: 'x', deviceId: 'd1', status: 'rejected' as const, time: new Date(t0).toISOString(), deliveryCount: 0, ack: 'none' as const }

    it('takes a source ref once, also after the message ended', async () => {
      const first = await queue.enqueue(msg(1, { sourceRef: 'stream:c/0/1#aa' }), 10)
      expect(await queue.enqueue(msg(2, { sourceRef: 'stream:c/0/1#aa' }), 10)).toBeNull()
      await queue.settle(first!.seq, 'completed', t0)
      expect(await queue.enqueue(msg(3, { sourceRef: 'stream:c/0/1#aa' }), 10)).toBeNull()
      // Another record at the same position (a re-created topic) is another ref: queued.
      expect((await queue.enqueue(msg(4, { sourceRef: 'stream:c/0/1#bb' }), 10))?.messageId).toBe('m4')
      await queue.recordUnqueued(rejected, 'stream:c/0/2#cc', t0 + 1000)
      await queue.recordUnqueued(rejected, 'stream:c/0/2#cc', t0 + 1000)
      expect(await queue.enqueue(msg(5, { sourceRef: 'stream:c/0/2#cc' }), 10)).toBeNull()
      expect((await drainFeedback()).map((f) => [f.messageId, f.status])).toEqual([['m1', 'completed'], ['x', 'rejected']])
    })

    it('prunes refs kept until before a time; a pruned ref is taken again', async () => {
      // Kept until the message's expiry...
      await queue.enqueue(msg(1, { sourceRef: 'stream:c/0/1#aa', expiresAt: t0 + 1000 }), 10)
      await queue.enqueue(msg(2, { sourceRef: 'stream:c/0/2#bb', expiresAt: t0 + 5000 }), 10)
      // ... or until the time given with a refused command.
      await queue.recordUnqueued(rejected, 'stream:c/0/3#cc', t0 + 2000)
      expect(await queue.pruneSources(t0 + 1000)).toBe(0)
      expect(await queue.pruneSources(t0 + 2001)).toBe(2)
      expect(await queue.pruneSources(t0 + 2001)).toBe(0)
      expect(await queue.enqueue(msg(3, { sourceRef: 'stream:c/0/1#aa' }), 10)).not.toBeNull()
      expect(await queue.enqueue(msg(4, { sourceRef: 'stream:c/0/2#bb' }), 10)).toBeNull()
      await queue.recordUnqueued({ ...rejected, messageId: 'y' }, 'stream:c/0/3#cc', t0 + 2000)
      expect((await drainFeedback()).map((f) => f.messageId)).toEqual(['x', 'y'])
    })

    it('ends every message exactly once: settle, expire and purge never overlap', async () => {
      const a = (await queue.enqueue(msg(1, { expiresAt: t0 + 1 }), 10))!
      const b = (await queue.enqueue(msg(2), 10))!
      await queue.enqueue(msg(3), 10)
      expect(await queue.recordDelivery(b.seq)).toBe(1)
      expect(await queue.recordDelivery(b.seq)).toBe(2)
      expect(await queue.expire(t0 + 1)).toEqual(['d1'])
      expect(await queue.settle(a.seq, 'completed', t0 + 2)).toBe(false)
      expect(await queue.settle(b.seq, 'completed', t0 + 2)).toBe(true)
      expect(await queue.settle(b.seq, 'rejected', t0 + 3)).toBe(false)
      expect(await queue.purge('d1', t0 + 4)).toBe(1)
      expect(await queue.purge('d1', t0 + 5)).toBe(0)
      const fb = await drainFeedback()
      expect(fb.map((f) => [f.messageId, f.status, f.deliveryCount])).toEqual([['m1', 'expired', 0], ['m2', 'completed', 2], ['m3', 'purged', 0]])
      expect(await queue.list('d1')).toEqual([])
    })

    it('lets two gateways on one store share the queues: depth, settle and refs hold across them', async () => {
      const other = await q.another()
      // Twenty concurrent enqueues through two instances at depth 5: exactly five are queued.
      const results = await Promise.allSettled(Array.from({ length: 20 }, (_, i) => (i % 2 ? queue : other).enqueue(msg(i), 5)))
      expect(results.filter((r) => r.status === 'fulfilled')).toHaveLength(5)
      expect(results.filter((r) => r.status === 'rejected').map((r) => (r.reason as { code: string }).code)).toEqual(Array(15).fill('E_QUEUE_FULL'))
      const listed = await other.list('d1')
      expect(listed).toHaveLength(5)
      expect(listed.map((m) => m.seq)).toEqual([...listed.map((m) => m.seq)].sort((a, b) => a - b))
      // One message settled from both at once ends once.
      const head = listed[0]!
      expect((await Promise.all([queue.settle(head.seq, 'completed', t0), other.settle(head.seq, 'completed', t0)])).filter(Boolean)).toHaveLength(1)
      // A stream record read by both (a lost lease) is taken by one.
      const taken = await Promise.all([queue.enqueue(msg(90, { deviceId: 'd2', sourceRef: 'stream:c/1/9#ff' }), 10), other.enqueue(msg(91, { deviceId: 'd2', sourceRef: 'stream:c/1/9#ff' }), 10)])
      expect(taken.filter((m) => m !== null)).toHaveLength(1)
      expect(await queue.list('d2')).toHaveLength(1)
      // Expire and purge racing from two instances end each message once.
      const [expired, purged] = await Promise.all([other.expire(t0 + 60_000), queue.purge('d1', t0 + 60_000)])
      const fb = await drainFeedback()
      expect(fb.filter((f) => f.messageId === head.messageId).map((f) => f.status)).toEqual(['completed'])
      expect(fb.filter((f) => f.status === 'expired' || f.status === 'purged')).toHaveLength(5)
      expect(expired.length + purged).toBeGreaterThan(0)
      expect(await other.depth()).toEqual({ messages: 0, feedback: 0 })
    })

    it('hands each feedback row to one of several concurrent claimers', async () => {
      const other = await q.another()
      for (let i = 0; i < 30; i++) await queue.enqueue(msg(i, { deviceId: `fd${i % 3}` }), 100)
      for (let d = 0; d < 3; d++) await queue.purge(`fd${d}`, t0)
      const seen = new Set<number>()
      const claimer = async (from: CommandQueue): Promise<void> => {
        for (;;) {
          const batch = await from.pendingFeedback(4)
          if (batch.length === 0) return
          for (const p of batch) {
            expect(seen.has(p.id), `feedback row ${p.id} claimed twice`).toBe(false)
            seen.add(p.id)
          }
          await from.removeFeedback(batch.map((p) => p.id))
        }
      }
      await Promise.all([claimer(queue), claimer(other), claimer(queue), claimer(other)])
      expect(seen.size).toBe(30)
      expect((await queue.depth()).feedback).toBe(0)
    })

    it('hands each feedback row to one writer at a time; a released claim is taken again', async () => {
      await queue.enqueue(msg(1), 10)
      await queue.purge('d1', t0)
      const first = await queue.pendingFeedback(10)
      expect(first).toHaveLength(1)
      expect(await queue.pendingFeedback(10)).toEqual([])
      await queue.releaseFeedback(first.map((p) => p.id))
      const again = await queue.pendingFeedback(10)
      expect(again.map((p) => p.feedback.status)).toEqual(['purged'])
      await queue.removeFeedback(again.map((p) => p.id))
      expect(await queue.pendingFeedback(10, 0)).toEqual([])
    })
  })
}
