import { mkdtempSync, rmSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { afterAll, describe, expect, it } from 'vitest'
import { devicesCommand } from '../../src/cli/devices.js'
import { startTestGateway, waitFor, type TestGateway } from '../helpers/gateway.js'
import { api, feedbackRecords } from '../helpers/commands.js'

/**
 * `streamgate devices remove` while no gateway runs works on the files directly; the device's
 * queued cloud-to-device messages must still end exactly once (purged), as through the API.
 */
describe('devices remove with the gateway stopped', () => {
  const dir = mkdtempSync(join(tmpdir(), 'streamgate-rm-offline-'))
  let gw: TestGateway | null = null
  afterAll(async () => {
    await gw?.stop()
    rmSync(dir, { recursive: true, force: true })
  })

  it('purges the queue in commands.db; the purged feedback is written when the gateway starts again', async () => {
    gw = await startTestGateway({}, dir)
    await gw.gateway.registry.create({ deviceId: 'gone-dev' })
    await gw.gateway.registry.create({ deviceId: 'kept-dev' })
    const ids: string[] = []
    for (const [device, payload] of [['gone-dev', 'one'], ['gone-dev', 'two'], ['kept-dev', 'three']] as const) {
      const res = await api(gw.httpUrl, 'POST', `/api/devices/${device}/messages`, { payload })
      expect(res.status).toBe(202)
      if (device === 'gone-dev') ids.push((res.body as { messageId: string }).messageId)
    }
    await gw.stop()
    gw = null

    const quiet = process.stdout.write
    process.stdout.write = (() => true) as typeof process.stdout.write
    try {
      expect(await devicesCommand(['remove', 'gone-dev', '--data-dir', dir])).toBe(0)
    } finally {
      process.stdout.write = quiet
    }

    gw = await startTestGateway({}, dir)
    const started = gw
    const purged = await waitFor(async () => {
      const fb = (await feedbackRecords(started.gateway)).filter((f) => f.deviceId === 'gone-dev')
      return fb.length >= 2 ? fb : null
    }, 10_000, 'purged feedback for the removed device')
    expect(purged.map((f) => f.status)).toEqual(['purged', 'purged'])
    expect(purged.map((f) => f.messageId).sort()).toEqual([...ids].sort())
    expect(await gw.gateway.commandQueue.list('gone-dev')).toEqual([])
    // The other device's message is untouched.
    expect((await gw.gateway.commandQueue.list('kept-dev')).map((m) => m.payload.toString())).toEqual(['three'])
  })
})
