import { afterEach, beforeEach, describe, expect, it } from 'vitest'
import type { CachedSessionStore } from '../../src/commands/cached-session-store.js'

export interface SessionsUnderTest {
  sessions: CachedSessionStore
  /** A second store on the same backend, as another gateway would open it. */
  another(): Promise<CachedSessionStore>
  /** Write errors reported by `sessions` so far. */
  writeErrors: Array<{ deviceId: string; code: string }>
  /** Stop `sessions` (its backend closes): later calls fail. */
  stopFirst(): Promise<void>
  close(): Promise<void>
}

/**
 * The SessionStore contract: every adapter runs this suite unchanged. The promise under test: a
 * device's subscriptions outlive its connections and the gateway process, follow it to another
 * gateway on the same store, and are read by the broker from memory while it is connected here.
 */
export function sessionStoreContract(name: string, factory: () => Promise<SessionsUnderTest>): void {
  describe(`SessionStore contract: ${name}`, () => {
    let t: SessionsUnderTest
    let sessions: CachedSessionStore
    const methods = '$iothub/methods/POST/#'
    const c2d = 'devices/d1/messages/devicebound/#'
    const listed = (s: CachedSessionStore, deviceId = 'd1'): Array<[string, number]> => [...s.subscriptions(deviceId)]

    beforeEach(async () => {
      t = await factory()
      sessions = t.sessions
    })
    afterEach(async () => {
      await t.close()
    })

    it('keeps subscriptions across connections: restored before use, served from memory', async () => {
      await sessions.restore('d1', false)
      expect(listed(sessions)).toEqual([])
      sessions.addSubscription('d1', methods, 0)
      sessions.addSubscription('d1', c2d, 1)
      // In memory at once (the SUBACK is written by then), without waiting for the store.
      expect(listed(sessions)).toEqual([[methods, 0], [c2d, 1]])
      sessions.forget('d1')
      expect(listed(sessions)).toEqual([])
      // The next connection reads them back; a re-subscribe changes the QoS in place.
      await sessions.restore('d1', false)
      expect(new Map(listed(sessions))).toEqual(new Map([[methods, 0], [c2d, 1]]))
      sessions.addSubscription('d1', methods, 1)
      sessions.removeSubscriptions('d1', [c2d, 'never/subscribed'])
      expect(listed(sessions)).toEqual([[methods, 1]])
      sessions.forget('d1')
      await sessions.restore('d1', false)
      expect(listed(sessions)).toEqual([[methods, 1]])
      // Another device's session is its own.
      await sessions.restore('d2', false)
      expect(listed(sessions, 'd2')).toEqual([])
    })

    it('discards the stored session for a clean-session connection [MQTT-3.1.2-6]', async () => {
      await sessions.restore('d1', false)
      sessions.addSubscription('d1', c2d, 1)
      sessions.forget('d1')
      await sessions.restore('d1', true)
      expect(listed(sessions)).toEqual([])
      sessions.forget('d1')
      await sessions.restore('d1', false)
      expect(listed(sessions)).toEqual([])
    })

    it('holds a device in memory until every connection that restored it is gone', async () => {
      await sessions.restore('d1', false)
      sessions.addSubscription('d1', c2d, 1)
      // A new connection of the device while the old one is being replaced.
      await sessions.restore('d1', false)
      expect(listed(sessions)).toEqual([[c2d, 1]])
      sessions.forget('d1')
      expect(listed(sessions), 'the newer connection still holds it').toEqual([[c2d, 1]])
      sessions.forget('d1')
      expect(listed(sessions)).toEqual([])
      expect(sessions.cachedDevices).toBe(0)
      // A forget too many is harmless.
      sessions.forget('d1')
      expect(sessions.cachedDevices).toBe(0)
    })

    it('follows the device to another gateway on the same store, in the order the changes were made', async () => {
      const other = await t.another()
      await sessions.restore('d1', false)
      // Many changes in a burst, not awaited one by one (as SUBSCRIBE/UNSUBSCRIBE packets come).
      for (let i = 0; i < 50; i++) sessions.addSubscription('d1', `f/${i}`, i % 2)
      for (let i = 0; i < 50; i += 2) sessions.removeSubscriptions('d1', [`f/${i}`])
      sessions.addSubscription('d1', 'f/0', 1)
      await sessions.flush()
      await other.restore('d1', false)
      const expected = new Map<string, number>([['f/0', 1]])
      for (let i = 1; i < 50; i += 2) expected.set(`f/${i}`, 1)
      expect(new Map(listed(other))).toEqual(expected)
      expect(new Map(listed(sessions))).toEqual(expected)
    })

    it('a restore on this gateway waits for its own pending writes of the device', async () => {
      await sessions.restore('d1', false)
      sessions.addSubscription('d1', c2d, 1)
      sessions.removeSubscriptions('d1', [c2d])
      sessions.addSubscription('d1', methods, 0)
      sessions.forget('d1')
      // No flush: the restore is chained behind the writes.
      await sessions.restore('d1', false)
      expect(listed(sessions)).toEqual([[methods, 0]])
    })

    it('discards a removed device’s session everywhere it is stored', async () => {
      const other = await t.another()
      await sessions.restore('d1', false)
      sessions.addSubscription('d1', c2d, 1)
      await sessions.discard('d1')
      expect(listed(sessions)).toEqual([])
      await other.restore('d1', false)
      expect(listed(other)).toEqual([])
      // Discarding a device that has no session is fine.
      await expect(sessions.discard('nobody')).resolves.toBeUndefined()
    })

    it('keeps a subscription written for a device not held here (stored, not cached)', async () => {
      sessions.addSubscription('d9', c2d, 1)
      expect(listed(sessions, 'd9')).toEqual([])
      await sessions.flush()
      await sessions.restore('d9', false)
      expect(listed(sessions, 'd9')).toEqual([[c2d, 1]])
    })

    it('reports a write it could not store, and refuses a restore, once the store is closed', async () => {
      await sessions.restore('d1', false)
      await t.stopFirst()
      sessions.addSubscription('d1', c2d, 1)
      await sessions.flush()
      expect(t.writeErrors).toEqual([{ deviceId: 'd1', code: 'E_SHUTTING_DOWN' }])
      await expect(sessions.restore('d1', false)).rejects.toMatchObject({ code: 'E_SHUTTING_DOWN', returnCode: 3 })
    })
  })
}
