import { afterEach, beforeEach, describe, expect, it } from 'vitest'
import { verifyPassword } from '../../src/auth/password.js'
import type { ErrorCode } from '../../src/errors/catalogue.js'
import type { DeviceRegistry } from '../../src/registry/types.js'

/**
 * The one contract every DeviceRegistry backend passes unchanged (SQLite now, PostgreSQL later),
 * in the manner of aedes-persistence's abstract suite. The factory returns an empty registry (it
 * may or may not be started: start() must be safe to call twice) and a cleanup that stops it and
 * removes whatever it created.
 */
export type RegistryFactory = () => Promise<{ registry: DeviceRegistry; cleanup(): Promise<void> }>

const ISO = /^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}\.\d{3}Z$/
const ALL_PUNCTUATION = "-.%_*?!(),:=@$'"

async function expectCode(promise: Promise<unknown>, code: ErrorCode): Promise<void> {
  await expect(promise).rejects.toMatchObject({ name: 'GatewayError', code })
}

function keyBytes(key: string): number {
  return Buffer.from(key, 'base64').length
}

export function deviceRegistryContract(name: string, factory: RegistryFactory): void {
  describe(`DeviceRegistry contract: ${name}`, () => {
    let registry: DeviceRegistry
    let cleanup: () => Promise<void>

    beforeEach(async () => {
      const made = await factory()
      registry = made.registry
      cleanup = made.cleanup
      await registry.start()
      await registry.start()
    })

    afterEach(async () => {
      await cleanup()
    })

    describe('create and get', () => {
      it('creates an enabled SAS device with two distinct generated 32-byte keys', async () => {
        const before = Date.now()
        const device = await registry.create({ deviceId: 'dev1' })
        expect(device).toMatchObject({
          deviceId: 'dev1',
          status: 'enabled',
          authMethod: 'sas',
          passwordHash: null,
          lastActivityAt: null,
          connectionState: 'disconnected',
          connectionStateUpdatedAt: null,
          connectionSeq: 0,
        })
        expect(keyBytes(device.primaryKey)).toBe(32)
        expect(keyBytes(device.secondaryKey)).toBe(32)
        expect(device.primaryKey).not.toBe(device.secondaryKey)
        expect(device.createdAt).toMatch(ISO)
        expect(device.updatedAt).toBe(device.createdAt)
        expect(Date.parse(device.createdAt)).toBeGreaterThanOrEqual(before - 1)
        expect(await registry.get('dev1')).toEqual(device)
      })

      it('returns null for an unknown or impossible id', async () => {
        expect(await registry.get('nope')).toBeNull()
        expect(await registry.get('not valid/id')).toBeNull()
      })

      it('keeps caller-provided keys and status', async () => {
        const primaryKey = Buffer.alloc(16, 1).toString('base64')
        const secondaryKey = Buffer.alloc(64, 2).toString('base64')
        const device = await registry.create({ deviceId: 'k', primaryKey, secondaryKey, status: 'disabled' })
        expect(device).toMatchObject({ primaryKey, secondaryKey, status: 'disabled' })
        expect(await registry.get('k')).toMatchObject({ primaryKey, secondaryKey, status: 'disabled' })
      })

      it.each([
        ['not base64', 'not base64 at all!'],
        ['15 bytes', Buffer.alloc(15, 1).toString('base64')],
        ['65 bytes', Buffer.alloc(65, 1).toString('base64')],
        ['unpadded', Buffer.alloc(16, 1).toString('base64').replace(/=+$/, '')],
        ['empty', ''],
      ])('rejects a provided key that is %s with E_BAD_REQUEST', async (_label, key) => {
        await expectCode(registry.create({ deviceId: 'k1', primaryKey: key }), 'E_BAD_REQUEST')
        await expectCode(registry.create({ deviceId: 'k2', secondaryKey: key }), 'E_BAD_REQUEST')
        expect(await registry.get('k1')).toBeNull()
        expect(await registry.get('k2')).toBeNull()
      })

      it('rejects a duplicate id with E_DEVICE_EXISTS and keeps the first device', async () => {
        const first = await registry.create({ deviceId: 'dup' })
        await expectCode(registry.create({ deviceId: 'dup' }), 'E_DEVICE_EXISTS')
        expect(await registry.get('dup')).toEqual(first)
      })
    })

    describe('device id rules', () => {
      const valid = [
        ['one character', 'a'],
        ['128 characters', 'x'.repeat(128)],
        ['every allowed punctuation mark', ALL_PUNCTUATION],
        ['letters, digits and punctuation', `Dev-01${ALL_PUNCTUATION}Z9`],
        ['three dots', '...'],
        ['a leading dot', '.a'],
      ]
      it.each(valid)('accepts %s', async (_label, id) => {
        const device = await registry.create({ deviceId: id! })
        expect(device.deviceId).toBe(id)
        expect((await registry.get(id!))?.deviceId).toBe(id)
      })

      const invalid = [
        ['empty', ''],
        ['129 characters', 'x'.repeat(129)],
        ['a space', 'a b'],
        ['a slash', 'a/b'],
        ['a hash', 'a#b'],
        ['a plus', 'a+b'],
        ['non-ASCII', 'dé'],
        ['a newline', 'a\nb'],
        // URL clients remove these path segments: the device could never be managed over the API.
        ['a dot', '.'],
        ['two dots', '..'],
      ]
      it.each(invalid)('rejects %s with E_DEVICE_ID_INVALID', async (_label, id) => {
        await expectCode(registry.create({ deviceId: id! }), 'E_DEVICE_ID_INVALID')
        expect(await registry.list()).toEqual([])
      })

      it('names the rule, and the length instead of a very long id, in the message', async () => {
        await expect(registry.create({ deviceId: '..' })).rejects.toThrow(/other than "\." and "\.\."/)
        const long = 'x'.repeat(10_000)
        const err = await registry.create({ deviceId: long }).catch((e: Error) => e)
        expect((err as Error).message).toContain('of 10000 characters')
        expect((err as Error).message.length).toBeLessThan(300)
      })
    })

    it('answers an id that cannot be registered (a NUL, a slash, too long) as an unknown device everywhere', async () => {
      await registry.create({ deviceId: 'a' })
      const limits = { maxBytes: 1024, maxDepth: 10 }
      for (const id of ['a\u0000', '\u0000', 'a/b', 'x'.repeat(10_000)]) {
        expect(await registry.get(id)).toBeNull()
        expect(await registry.getTwin(id)).toBeNull()
        await expectCode(registry.remove(id), 'E_DEVICE_NOT_FOUND')
        await expectCode(registry.setStatus(id, 'disabled'), 'E_DEVICE_NOT_FOUND')
        await expectCode(registry.rotateKey(id, 'both'), 'E_DEVICE_NOT_FOUND')
        await expectCode(registry.setPassword(id, null), 'E_DEVICE_NOT_FOUND')
        await expectCode(registry.patchTwin(id, 'desired', { a: 1 }, limits), 'E_DEVICE_NOT_FOUND')
        await expect(registry.touch(id, new Date())).resolves.toBeUndefined()
      }
      // A cursor with a NUL pages as the same cursor without what follows it.
      expect((await registry.list({ after: '\u0000' })).map((d) => d.deviceId)).toEqual(['a'])
      expect((await registry.list({ after: 'a\u0000b' })).map((d) => d.deviceId)).toEqual([])
    })

    describe('list and remove', () => {
      it('lists in id order and pages with after and limit', async () => {
        for (const id of ['c', 'a', 'B', 'b', 'a-1']) await registry.create({ deviceId: id })
        const all = (await registry.list()).map((d) => d.deviceId)
        // Byte order of the ASCII ids: uppercase before lowercase, '-' before letters.
        expect(all).toEqual(['B', 'a', 'a-1', 'b', 'c'])
        const page1 = await registry.list({ limit: 2 })
        expect(page1.map((d) => d.deviceId)).toEqual(['B', 'a'])
        const page2 = await registry.list({ limit: 2, after: page1[1]!.deviceId })
        expect(page2.map((d) => d.deviceId)).toEqual(['a-1', 'b'])
        const page3 = await registry.list({ limit: 2, after: 'b' })
        expect(page3.map((d) => d.deviceId)).toEqual(['c'])
        expect(await registry.list({ after: 'c' })).toEqual([])
        // The cursor need not be an existing id.
        expect((await registry.list({ after: 'a0' })).map((d) => d.deviceId)).toEqual(['b', 'c'])
      })

      it('lists the ids that start with a prefix, paged like the rest', async () => {
        for (const id of ['room-1', 'room-10', 'room-2', 'roof', 'Room-3', 'r', 'room%', 'room_x', 'roomy']) await registry.create({ deviceId: id })
        const ids = async (o: { prefix?: string; after?: string; limit?: number }): Promise<string[]> => (await registry.list(o)).map((d) => d.deviceId)
        expect(await ids({ prefix: 'room-' })).toEqual(['room-1', 'room-10', 'room-2'])
        // Case-sensitive, and % and _ are plain characters (no LIKE patterns).
        expect(await ids({ prefix: 'Room' })).toEqual(['Room-3'])
        expect(await ids({ prefix: 'room%' })).toEqual(['room%'])
        expect(await ids({ prefix: 'room_' })).toEqual(['room_x'])
        expect(await ids({ prefix: 'room-', limit: 2 })).toEqual(['room-1', 'room-10'])
        expect(await ids({ prefix: 'room-', after: 'room-10' })).toEqual(['room-2'])
        expect(await ids({ prefix: 'zzz' })).toEqual([])
        expect(await ids({ prefix: 'ro\u0000' })).toEqual([])
        expect(await ids({ prefix: '' })).toHaveLength(9)
      })

      it('rejects a limit outside 1..1000 with E_BAD_REQUEST', async () => {
        await expectCode(registry.list({ limit: 0 }), 'E_BAD_REQUEST')
        await expectCode(registry.list({ limit: 1001 }), 'E_BAD_REQUEST')
        await expectCode(registry.list({ limit: 1.5 }), 'E_BAD_REQUEST')
      })

      it('removes a device; removing it again is E_DEVICE_NOT_FOUND', async () => {
        await registry.create({ deviceId: 'gone' })
        await registry.create({ deviceId: 'stays' })
        await registry.remove('gone')
        expect(await registry.get('gone')).toBeNull()
        expect((await registry.list()).map((d) => d.deviceId)).toEqual(['stays'])
        await expectCode(registry.remove('gone'), 'E_DEVICE_NOT_FOUND')
      })
    })

    describe('status, keys and passwords', () => {
      it('disables and enables a device', async () => {
        const created = await registry.create({ deviceId: 's' })
        const disabled = await registry.setStatus('s', 'disabled')
        expect(disabled.status).toBe('disabled')
        expect(disabled.updatedAt >= created.updatedAt).toBe(true)
        expect((await registry.get('s'))?.status).toBe('disabled')
        expect((await registry.setStatus('s', 'enabled')).status).toBe('enabled')
        expect((await registry.get('s'))?.status).toBe('enabled')
        await expectCode(registry.setStatus('unknown', 'disabled'), 'E_DEVICE_NOT_FOUND')
      })

      it.each([
        ['primary', true, false],
        ['secondary', false, true],
        ['both', true, true],
      ] as const)('rotates the %s key', async (which, primaryChanges, secondaryChanges) => {
        const before = await registry.create({ deviceId: 'r' })
        const after = await registry.rotateKey('r', which)
        expect(after.primaryKey !== before.primaryKey).toBe(primaryChanges)
        expect(after.secondaryKey !== before.secondaryKey).toBe(secondaryChanges)
        expect(keyBytes(after.primaryKey)).toBe(32)
        expect(keyBytes(after.secondaryKey)).toBe(32)
        expect(await registry.get('r')).toEqual(after)
      })

      it('rotating the key of an unknown device is E_DEVICE_NOT_FOUND', async () => {
        await expectCode(registry.rotateKey('unknown', 'primary'), 'E_DEVICE_NOT_FOUND')
      })

      it('sets, replaces and clears the password of a SAS device, storing only a hash', async () => {
        await registry.create({ deviceId: 'p' })
        const withPassword = await registry.setPassword('p', 'first secret')
        expect(withPassword.passwordHash).not.toBeNull()
        expect(withPassword.passwordHash).not.toContain('first secret')
        expect(await verifyPassword('first secret', withPassword.passwordHash!)).toBe(true)
        const replaced = await registry.setPassword('p', 'second secret')
        expect(await verifyPassword('first secret', replaced.passwordHash!)).toBe(false)
        expect(await verifyPassword('second secret', replaced.passwordHash!)).toBe(true)
        expect((await registry.setPassword('p', null)).passwordHash).toBeNull()
        expect((await registry.get('p'))?.passwordHash).toBeNull()
        await expectCode(registry.setPassword('p', ''), 'E_BAD_REQUEST')
        await expectCode(registry.setPassword('unknown', 'x'), 'E_DEVICE_NOT_FOUND')
        await expectCode(registry.setPassword('unknown', null), 'E_DEVICE_NOT_FOUND')
      })

      it('creates a password device only with a password, which cannot then be removed', async () => {
        await expectCode(registry.create({ deviceId: 'pw', authMethod: 'password' }), 'E_BAD_REQUEST')
        expect(await registry.get('pw')).toBeNull()
        const device = await registry.create({ deviceId: 'pw', authMethod: 'password', password: 'hunter2!' })
        expect(device.authMethod).toBe('password')
        expect(await verifyPassword('hunter2!', device.passwordHash!)).toBe(true)
        expect(keyBytes(device.primaryKey)).toBe(32)
        await expectCode(registry.setPassword('pw', null), 'E_BAD_REQUEST')
        expect((await registry.get('pw'))?.passwordHash).toBe(device.passwordHash)
      })

      it('creates X.509 devices: x509-thumbprint needs a SHA-256 thumbprint (stored upper-case, no colons), x509-ca takes none', async () => {
        const hex = 'ab'.repeat(32)
        await expectCode(registry.create({ deviceId: 'x1', authMethod: 'x509-thumbprint' }), 'E_BAD_REQUEST')
        await expectCode(registry.create({ deviceId: 'x1', authMethod: 'x509-thumbprint', thumbprint: 'abcd' }), 'E_BAD_REQUEST')
        await expectCode(registry.create({ deviceId: 'x1', authMethod: 'x509-ca', thumbprint: hex }), 'E_BAD_REQUEST')
        await expectCode(registry.create({ deviceId: 'x1', thumbprint: hex }), 'E_BAD_REQUEST')
        const colons = hex.match(/../g)!.join(':')
        expect(await registry.create({ deviceId: 'x1', authMethod: 'x509-thumbprint', thumbprint: colons })).toMatchObject({ authMethod: 'x509-thumbprint', x509Thumbprint: hex.toUpperCase() })
        expect(await registry.get('x2')).toBeNull()
        expect(await registry.create({ deviceId: 'x2', authMethod: 'x509-ca' })).toMatchObject({ authMethod: 'x509-ca', x509Thumbprint: null })
        expect((await registry.get('x1'))?.x509Thumbprint).toBe(hex.toUpperCase())
      })
    })

    describe('connection state and activity', () => {
      it('numbers every connect and disconnect and records the state', async () => {
        await registry.create({ deviceId: 'c' })
        const t1 = new Date('2030-01-01T00:00:01.000Z')
        const t2 = new Date('2030-01-01T00:00:02.000Z')
        expect(await registry.recordConnection('c', 'connected', t1)).toBe(1)
        expect(await registry.get('c')).toMatchObject({
          connectionState: 'connected',
          connectionStateUpdatedAt: t1.toISOString(),
          connectionSeq: 1,
          // Connecting is activity (IoT Hub's lastActivityTime); disconnecting is not.
          lastActivityAt: t1.toISOString(),
        })
        expect(await registry.recordConnection('c', 'disconnected', t2)).toBe(2)
        expect(await registry.get('c')).toMatchObject({
          connectionState: 'disconnected',
          connectionStateUpdatedAt: t2.toISOString(),
          connectionSeq: 2,
          lastActivityAt: t1.toISOString(),
        })
        expect(await registry.recordConnection('c', 'connected', t2)).toBe(3)
        expect(await registry.recordConnection('unknown', 'connected', t1)).toBeNull()
      })

      it('resets every connected device to disconnected and reports which', async () => {
        for (const id of ['z', 'y', 'x']) await registry.create({ deviceId: id })
        const t0 = new Date('2030-01-01T00:00:00.000Z')
        await registry.recordConnection('z', 'connected', t0)
        await registry.recordConnection('x', 'connected', t0)
        await registry.recordConnection('y', 'connected', t0)
        await registry.recordConnection('y', 'disconnected', t0)
        const at = new Date('2030-01-02T00:00:00.000Z')
        expect(await registry.resetConnections(at)).toEqual(['x', 'z'])
        for (const id of ['x', 'z']) {
          expect(await registry.get(id)).toMatchObject({
            connectionState: 'disconnected',
            connectionStateUpdatedAt: at.toISOString(),
            connectionSeq: 2,
          })
        }
        expect(await registry.get('y')).toMatchObject({ connectionSeq: 2, connectionStateUpdatedAt: t0.toISOString() })
        expect(await registry.resetConnections(at)).toEqual([])
      })

      it('leaves a device connected when the end of its replaced connection is recorded after the new start', async () => {
        await registry.create({ deviceId: 'rp' })
        const t0 = new Date('2030-01-01T00:00:00.000Z')
        const t1 = new Date('2030-01-01T00:00:01.000Z')
        const t2 = new Date('2030-01-01T00:00:02.000Z')
        expect(await registry.recordConnection('rp', 'connected', t0, { connectionId: 'old' })).toBe(1)
        // The new connection (another instance) starts before the old one's end is recorded.
        expect(await registry.recordConnection('rp', 'connected', t1, { connectionId: 'new' })).toBe(2)
        expect(await registry.recordConnection('rp', 'disconnected', t2, { connectionId: 'old', reason: 'replaced' })).toBe(3)
        expect(await registry.get('rp')).toMatchObject({ connectionState: 'connected', connectionStateUpdatedAt: t1.toISOString(), connectionSeq: 3 })
        // Its own end does mark it offline; so does an end without a connection id (older callers).
        expect(await registry.recordConnection('rp', 'disconnected', t2, { connectionId: 'new' })).toBe(4)
        expect((await registry.get('rp'))?.connectionState).toBe('disconnected')
        await registry.recordConnection('rp', 'connected', t2, { connectionId: 'third' })
        await registry.recordConnection('rp', 'disconnected', t2)
        expect((await registry.get('rp'))?.connectionState).toBe('disconnected')
        // After a reset, the end of a connection from before it changes nothing either way.
        await registry.recordConnection('rp', 'connected', t2, { connectionId: 'fourth' })
        await registry.resetConnections(t2)
        await registry.recordConnection('rp', 'disconnected', t2, { connectionId: 'fourth' })
        expect((await registry.get('rp'))?.connectionState).toBe('disconnected')
      })

      it('resets only the devices named (those connected), leaving the others connected', async () => {
        // Several gateways on one registry: a restarting instance resets the devices it held.
        for (const id of ['m3', 'm1', 'm2', 'm4']) await registry.create({ deviceId: id })
        const t0 = new Date('2030-01-01T00:00:00.000Z')
        for (const id of ['m1', 'm2', 'm3']) await registry.recordConnection(id, 'connected', t0)
        const at = new Date('2030-01-02T00:00:00.000Z')
        // m4 is not connected, `gone` is not registered, m3 is named twice: none of it matters.
        expect(await registry.resetConnections(at, ['m3', 'm4', 'gone', 'm1', 'm3'])).toEqual(['m1', 'm3'])
        for (const id of ['m1', 'm3']) {
          expect(await registry.get(id)).toMatchObject({ connectionState: 'disconnected', connectionStateUpdatedAt: at.toISOString(), connectionSeq: 2 })
        }
        expect(await registry.get('m2')).toMatchObject({ connectionState: 'connected', connectionStateUpdatedAt: t0.toISOString(), connectionSeq: 1 })
        expect(await registry.get('m4')).toMatchObject({ connectionState: 'disconnected', connectionStateUpdatedAt: null, connectionSeq: 0 })
        // An empty list changes nothing; ids no backend can hold are simply not there.
        expect(await registry.resetConnections(at, [])).toEqual([])
        expect(await registry.resetConnections(at, ['m\u00002', 'x'.repeat(200)])).toEqual([])
        expect((await registry.get('m2'))?.connectionState).toBe('connected')
        // Without the list: every device still connected.
        expect(await registry.resetConnections(at)).toEqual(['m2'])
      })

      it('touch updates lastActivityAt and ignores unknown devices', async () => {
        await registry.create({ deviceId: 't' })
        const at = new Date('2030-03-04T05:06:07.089Z')
        await registry.touch('t', at)
        expect((await registry.get('t'))?.lastActivityAt).toBe(at.toISOString())
        const later = new Date('2030-03-04T05:06:08.000Z')
        await registry.touch('t', later)
        expect((await registry.get('t'))?.lastActivityAt).toBe(later.toISOString())
        await expect(registry.touch('unknown', at)).resolves.toBeUndefined()
      })
    })

    describe('device twins', () => {
      const limits = { maxBytes: 32 * 1024, maxDepth: 10 }

      it('starts with empty sections at version 1 and null for an unknown device', async () => {
        await registry.create({ deviceId: 'tw' })
        expect(await registry.getTwin('tw')).toEqual({ deviceId: 'tw', desired: { version: 1, properties: {} }, reported: { version: 1, properties: {} }, tags: { version: 1, properties: {} } })
        expect(await registry.getTwin('nobody')).toBeNull()
      })

      it('merges patches (null deletes, objects merge) and bumps only the patched section', async () => {
        await registry.create({ deviceId: 'tw' })
        await registry.patchTwin('tw', 'reported', { fw: '1', temp: { max: 30, unit: 'C' } }, limits)
        const twin = await registry.patchTwin('tw', 'reported', { fw: null, temp: { unit: null, min: 1 } }, limits)
        expect(twin.reported).toEqual({ version: 3, properties: { temp: { max: 30, min: 1 } } })
        expect(twin.desired.version).toBe(1)
        expect((await registry.getTwin('tw'))?.reported.version).toBe(3)
      })

      it('keeps any JSON string and key in a twin: NUL, non-ASCII, lone surrogates, $ inside a value', async () => {
        await registry.create({ deviceId: 'str' })
        const patch = { 'k\u0000ey': 'nul\u0000here', 'ünï': 'çødé ✓ 😀', lone: '\ud800', price: '$5', n: 1.5e300, neg: -0.000123, big: 2 ** 53 - 1, list: [null, true, 'x'] }
        const twin = await registry.patchTwin('str', 'reported', patch, limits)
        expect(twin.reported.properties).toEqual(JSON.parse(JSON.stringify(patch)))
        expect((await registry.getTwin('str'))?.reported.properties).toEqual(twin.reported.properties)
        // Key order is kept as written (IoT Hub shows properties in the order they were set).
        expect(Object.keys((await registry.getTwin('str'))!.reported.properties)).toEqual(Object.keys(patch))
        const events = (await registry.pendingEvents(10)).filter((p) => p.event.type === 'twin-reported')
        expect(events[0]!.event.details).toEqual({ version: 2, patch: JSON.parse(JSON.stringify(patch)) })
      })

      it('keeps tags as a third section with its own version and a twin-tags event', async () => {
        await registry.create({ deviceId: 'tg' })
        await registry.patchTwin('tg', 'tags', { deploymentLocation: { building: '43', floor: 1 } }, limits)
        const twin = await registry.patchTwin('tg', 'tags', { deploymentLocation: { floor: 2 }, owner: 'ops' }, limits)
        expect(twin.tags).toEqual({ version: 3, properties: { deploymentLocation: { building: '43', floor: 2 }, owner: 'ops' } })
        expect([twin.desired.version, twin.reported.version]).toEqual([1, 1])
        const events = (await registry.pendingEvents(100)).map((e) => e.event).filter((e) => e.deviceId === 'tg')
        expect(events.map((e) => e.type)).toEqual(['created', 'twin-tags', 'twin-tags'])
        expect(events[2]!.details).toEqual({ version: 3, patch: { deploymentLocation: { floor: 2 }, owner: 'ops' } })
      })

      it('refuses with stable codes and changes nothing', async () => {
        await registry.create({ deviceId: 'tw' })
        const code = (p: Promise<unknown>): Promise<string | undefined> => p.then(() => undefined, (e: { code?: string }) => e.code)
        expect(await code(registry.patchTwin('nobody', 'desired', { a: 1 }, limits))).toBe('E_DEVICE_NOT_FOUND')
        expect(await code(registry.patchTwin('tw', 'desired', { $version: 4 }, limits))).toBe('E_BAD_REQUEST')
        expect(await code(registry.patchTwin('tw', 'desired', [] as unknown as Record<string, unknown>, limits))).toBe('E_BAD_REQUEST')
        expect(await code(registry.patchTwin('tw', 'desired', { a: 'x'.repeat(100) }, { ...limits, maxBytes: 50 }))).toBe('E_TWIN_TOO_LARGE')
        expect(await code(registry.patchTwin('tw', 'desired', { a: 1 }, { ...limits, ifVersion: 7 }))).toBe('E_TWIN_VERSION_MISMATCH')
        expect(await registry.getTwin('tw')).toMatchObject({ desired: { version: 1, properties: {} } })
        expect((await registry.patchTwin('tw', 'desired', { a: 1 }, { ...limits, ifVersion: 1 })).desired.version).toBe(2)
      })

      it('refuses a patch nested deeper than maxDepth with E_TWIN_TOO_DEEP, without recursing, and changes nothing', async () => {
        await registry.create({ deviceId: 'deep' })
        const nest = (levels: number, leaf: unknown, inArray = false): Record<string, unknown> => {
          let value: unknown = leaf
          for (let i = 0; i < levels; i++) value = inArray && i % 2 === 0 ? [value] : { [`l${levels - i}`]: value }
          return { root: value }
        }
        // `root` holds level 1: ten levels below the section root are allowed, eleven are not.
        expect((await registry.patchTwin('deep', 'reported', nest(9, { leaf: 1 }), limits)).reported.version).toBe(2)
        await expectCode(registry.patchTwin('deep', 'reported', nest(10, { leaf: 1 }), limits), 'E_TWIN_TOO_DEEP')
        await expectCode(registry.patchTwin('deep', 'reported', nest(10, [1], true), limits), 'E_TWIN_TOO_DEEP')
        // 5,000 levels built by JSON.parse, as from a device: refused, no RangeError from a recursion.
        const hostile = JSON.parse('{"a":'.repeat(5000) + '1' + '}'.repeat(5000)) as Record<string, unknown>
        await expectCode(registry.patchTwin('deep', 'desired', hostile, limits), 'E_TWIN_TOO_DEEP')
        const arrays = JSON.parse('{"a":' + '['.repeat(5000) + ']'.repeat(5000) + '}') as Record<string, unknown>
        await expectCode(registry.patchTwin('deep', 'desired', arrays, limits), 'E_TWIN_TOO_DEEP')
        // Checked before the reserved-key rule: a deep patch with a `$` key is still too deep.
        await expectCode(registry.patchTwin('deep', 'desired', { $bad: nest(11, 1) }, limits), 'E_TWIN_TOO_DEEP')
        expect(await registry.getTwin('deep')).toMatchObject({ desired: { version: 1, properties: {} }, reported: { version: 2 } })
        // A smaller configured depth is honoured too.
        await expectCode(registry.patchTwin('deep', 'desired', { a: { b: { c: 1 } } }, { ...limits, maxDepth: 1 }), 'E_TWIN_TOO_DEEP')
        expect((await registry.patchTwin('deep', 'desired', { a: { b: { c: 1 } } }, { ...limits, maxDepth: 2 })).desired.version).toBe(2)
      })
    })

    describe('device-events outbox', () => {
      const limits = { maxBytes: 32 * 1024, maxDepth: 10 }
      const t1 = new Date('2030-01-01T00:00:01.000Z')
      const t2 = new Date('2030-01-01T00:00:02.000Z')
      const facts = { connectionId: 'c-1', remoteAddress: '127.0.0.1:5000', transport: 'tcp', authMethod: 'sas-primary' }
      /** Claim everything, remove it, and return the events in order. */
      const drain = async (): Promise<Array<Record<string, unknown>>> => {
        const pending = await registry.pendingEvents(1000)
        await registry.removeEvents(pending.map((p) => p.id))
        return pending.map((p) => p.event as unknown as Record<string, unknown>)
      }

      it('writes one event per change, in order, in the JSON of a device-events record', async () => {
        const before = Date.now()
        await registry.create({ deviceId: 'ev' })
        expect(await registry.recordConnection('ev', 'connected', t1, facts)).toBe(1)
        await registry.patchTwin('ev', 'reported', { fw: '1' }, limits)
        await registry.patchTwin('ev', 'desired', { interval: { s: 5 } }, limits)
        expect(await registry.recordConnection('ev', 'disconnected', t2, { ...facts, reason: 'client-disconnect' })).toBe(2)
        // Changes that are not device events write none.
        await registry.setStatus('ev', 'disabled')
        await registry.rotateKey('ev', 'both')
        await registry.setPassword('ev', 'secret-1')
        await registry.touch('ev', t2)
        await registry.remove('ev')
        // A connection of a device removed meanwhile still happened: its event has no sequence.
        expect(await registry.recordConnection('ev', 'disconnected', t2, { ...facts, reason: 'kicked' })).toBeNull()
        expect(await registry.pendingEventCount()).toBe(7)
        const events = await drain()
        expect(events.map((e) => e.type)).toEqual(['created', 'connected', 'twin-reported', 'twin-desired', 'disconnected', 'deleted', 'disconnected'])
        expect(events[1]).toEqual({ type: 'connected', deviceId: 'ev', time: t1.toISOString(), ...facts, sequence: 1 })
        expect(events[4]).toEqual({ type: 'disconnected', deviceId: 'ev', time: t2.toISOString(), ...facts, sequence: 2, reason: 'client-disconnect' })
        expect(events[6]).toEqual({ type: 'disconnected', deviceId: 'ev', time: t2.toISOString(), ...facts, reason: 'kicked' })
        expect(events[2]).toMatchObject({ deviceId: 'ev', details: { version: 2, patch: { fw: '1' } } })
        expect(events[3]).toMatchObject({ deviceId: 'ev', details: { version: 2, patch: { interval: { s: 5 } } } })
        for (const e of [events[0]!, events[2]!, events[3]!, events[5]!]) {
          expect(Object.keys(e).sort()).toEqual(e.details ? ['details', 'deviceId', 'time', 'type'] : ['deviceId', 'time', 'type'])
          expect(Date.parse(e.time as string)).toBeGreaterThanOrEqual(before - 1)
        }
        expect(await registry.pendingEventCount()).toBe(0)
      })

      it('a refused change writes no event', async () => {
        await registry.create({ deviceId: 'ok' })
        await drain()
        await expectCode(registry.create({ deviceId: 'ok' }), 'E_DEVICE_EXISTS')
        await expectCode(registry.create({ deviceId: '..' }), 'E_DEVICE_ID_INVALID')
        await expectCode(registry.create({ deviceId: 'pw', authMethod: 'password' }), 'E_BAD_REQUEST')
        await expectCode(registry.remove('nobody'), 'E_DEVICE_NOT_FOUND')
        await expectCode(registry.patchTwin('nobody', 'desired', { a: 1 }, limits), 'E_DEVICE_NOT_FOUND')
        await expectCode(registry.patchTwin('ok', 'desired', { a: 'x'.repeat(100) }, { ...limits, maxBytes: 50 }), 'E_TWIN_TOO_LARGE')
        await expectCode(registry.patchTwin('ok', 'desired', { a: 1 }, { ...limits, ifVersion: 9 }), 'E_TWIN_VERSION_MISMATCH')
        await expectCode(registry.patchTwin('ok', 'reported', { $v: 1 }, limits), 'E_BAD_REQUEST')
        await expectCode(registry.patchTwin('ok', 'reported', { a: { b: { c: 1 } } }, { ...limits, maxDepth: 1 }), 'E_TWIN_TOO_DEEP')
        expect(await registry.pendingEventCount()).toBe(0)
        expect(await registry.pendingEvents(10)).toEqual([])
      })

      it('resetConnections writes disconnected (gateway-restart) with the new sequence for each device it changes', async () => {
        for (const id of ['r2', 'r1', 'r3']) await registry.create({ deviceId: id })
        await registry.recordConnection('r2', 'connected', t1, facts)
        await registry.recordConnection('r1', 'connected', t1, facts)
        await drain()
        expect(await registry.resetConnections(t2)).toEqual(['r1', 'r2'])
        expect(await drain()).toEqual([
          { type: 'disconnected', deviceId: 'r1', time: t2.toISOString(), sequence: 2, reason: 'gateway-restart' },
          { type: 'disconnected', deviceId: 'r2', time: t2.toISOString(), sequence: 2, reason: 'gateway-restart' },
        ])
        expect(await registry.resetConnections(t2)).toEqual([])
        expect(await registry.pendingEventCount()).toBe(0)
      })

      it('resetConnections with a list writes the events of exactly the devices it changes', async () => {
        for (const id of ['s2', 's1', 's3']) await registry.create({ deviceId: id })
        for (const id of ['s2', 's1', 's3']) await registry.recordConnection(id, 'connected', t1, facts)
        await drain()
        expect(await registry.resetConnections(t2, ['s3', 's1'])).toEqual(['s1', 's3'])
        expect(await drain()).toEqual([
          { type: 'disconnected', deviceId: 's1', time: t2.toISOString(), sequence: 2, reason: 'gateway-restart' },
          { type: 'disconnected', deviceId: 's3', time: t2.toISOString(), sequence: 2, reason: 'gateway-restart' },
        ])
        expect(await registry.resetConnections(t2, ['s1', 's3'])).toEqual([])
        expect(await registry.pendingEventCount()).toBe(0)
      })

      it('hands each row to one writer; holds back a device whose older event is claimed; release and lapse free rows', async () => {
        await registry.create({ deviceId: 'a' })
        await registry.recordConnection('a', 'connected', t1, facts)
        await registry.create({ deviceId: 'b' })
        const first = await registry.pendingEvents(1)
        expect(first.map((p) => [p.event.deviceId, p.event.type])).toEqual([['a', 'created']])
        // A second writer: a's next event waits behind the claimed one, b's goes ahead.
        const second = await registry.pendingEvents(10)
        expect(second.map((p) => [p.event.deviceId, p.event.type])).toEqual([['b', 'created']])
        expect(await registry.pendingEvents(10)).toEqual([])
        await registry.releaseEvents(first.map((p) => p.id))
        const again = await registry.pendingEvents(10)
        expect(again.map((p) => [p.event.deviceId, p.event.type])).toEqual([['a', 'created'], ['a', 'connected']])
        expect(again[0]!.id).toBe(first[0]!.id)
        await registry.removeEvents(again.map((p) => p.id))
        expect(await registry.pendingEventCount()).toBe(1)
        // A claim of 0 ms lapses at once, as a writer's claim does when it dies mid-write.
        await registry.releaseEvents(second.map((p) => p.id))
        const lapsing = await registry.pendingEvents(10, 0)
        expect(lapsing.map((p) => p.id)).toEqual(second.map((p) => p.id))
        expect((await registry.pendingEvents(10)).map((p) => p.id)).toEqual(second.map((p) => p.id))
        await registry.removeEvents(second.map((p) => p.id))
        expect(await registry.pendingEventCount()).toBe(0)
        await expect(registry.removeEvents([])).resolves.toBeUndefined()
        await expect(registry.releaseEvents([])).resolves.toBeUndefined()
      })

      it('keeps per-device order over many changes and claims in batches', async () => {
        const ids = ['m1', 'm2', 'm3']
        for (const id of ids) await registry.create({ deviceId: id })
        for (let round = 0; round < 10; round++) {
          for (const id of ids) await registry.recordConnection(id, round % 2 === 0 ? 'connected' : 'disconnected', t1, facts)
        }
        const seen = new Map<string, number[]>()
        for (;;) {
          const batch = await registry.pendingEvents(7)
          if (batch.length === 0) break
          for (let i = 1; i < batch.length; i++) expect(batch[i]!.id).toBeGreaterThan(batch[i - 1]!.id)
          for (const p of batch) if (p.event.sequence !== undefined) seen.set(p.event.deviceId, [...(seen.get(p.event.deviceId) ?? []), p.event.sequence])
          await registry.removeEvents(batch.map((p) => p.id))
        }
        for (const id of ids) expect(seen.get(id)).toEqual(Array.from({ length: 10 }, (_, i) => i + 1))
      })
    })

    it('stop is safe to call twice', async () => {
      await registry.stop()
      await registry.stop()
    })
  })
}
