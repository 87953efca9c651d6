import { existsSync, statSync } from 'node:fs'
import { join } from 'node:path'
import { afterAll, describe, expect, it } from 'vitest'
import { ADMIN_TOKEN, MiB, expectSurvived, startHostileGateway, underAttack, type HostileGateway } from '../helpers/hostile.js'

/**
 * Ids at the HTTP edge of a real gateway process: 10,000-character ids on every device route,
 * malformed percent-escapes, and the ids `.` and `..`, all answered in the
 * `{error:{code,message}}` envelope with a stable code, while a canary keeps publishing. And the
 * SQLite files that hold keys, queued payloads and telemetry are readable by their owner only.
 */
const LONG = 'x'.repeat(10_000)
const ROUTES: Array<[string, string]> = [
  ['GET', `/api/devices/${LONG}`],
  ['DELETE', `/api/devices/${LONG}`],
  ['PATCH', `/api/devices/${LONG}`],
  ['POST', `/api/devices/${LONG}/keys/rotate`],
  ['POST', `/api/devices/${LONG}/messages`],
  ['GET', `/api/devices/${LONG}/twin`],
  ['POST', `/api/devices/${LONG}/methods/reboot`],
]

interface Answer {
  status: number
  body: unknown
}

async function call(gw: HostileGateway, method: string, path: string, body?: string): Promise<Answer> {
  const res = await fetch(`${gw.httpUrl}${path}`, {
    method,
    headers: { authorization: `Bearer ${ADMIN_TOKEN}`, ...(body === undefined ? {} : { 'content-type': 'application/json' }) },
    ...(body === undefined ? {} : { body }),
  })
  const text = await res.text()
  let parsed: unknown = text
  try {
    parsed = JSON.parse(text)
  } catch {
    // kept as text: the assertion below shows it
  }
  return { status: res.status, body: parsed }
}

describe('hostile: device ids at the API edge, and private data files', () => {
  let gw: HostileGateway | null = null
  afterAll(async () => {
    await gw?.stop()
  })

  it('answers every hostile id with the envelope and a stable code', async () => {
    gw = await startHostileGateway()
    const canary = await gw.addSasDevice('canary')
    const running = gw
    const outcome = await underAttack(running, canary, async () => {
      const answers: Answer[] = []
      // 20 rounds of every route, 8 requests in flight.
      const work = Array.from({ length: 20 }, () => ROUTES).flat()
      await Promise.all(
        Array.from({ length: 8 }, async () => {
          for (let next = work.shift(); next; next = work.shift()) {
            const [method, path] = next
            answers.push(await call(running, method, path, method === 'GET' || method === 'DELETE' ? undefined : '{}'))
          }
        }),
      )
      return answers
    })
    await expectSurvived(running, `${outcome.result.length} requests with 10,000-character ids`, outcome, { rssGrowthBytes: 48 * MiB })
    for (const a of outcome.result) {
      expect(a.status).toBe(400)
      expect(a.body).toEqual({ error: { code: 'E_DEVICE_ID_INVALID', message: expect.stringContaining('10000 characters long') } })
    }

    for (const deviceId of ['.', '..']) {
      const res = await call(running, 'POST', '/api/devices', JSON.stringify({ deviceId }))
      expect(res).toEqual({ status: 400, body: { error: { code: 'E_DEVICE_ID_INVALID', message: expect.stringContaining('other than "." and ".."') } } })
    }
    const list = await call(running, 'GET', '/api/devices')
    expect((list.body as { devices: Array<{ deviceId: string }> }).devices.map((d) => d.deviceId)).toEqual(['canary'])
    const escape = await call(running, 'GET', '/api/devices/%E0%A4%A')
    expect(escape).toEqual({ status: 400, body: { error: { code: 'E_BAD_REQUEST', message: expect.any(String) } } })
    const method = await call(running, 'POST', `/api/devices/canary/methods/${'m'.repeat(1000)}`, '{}')
    expect(method).toEqual({ status: 400, body: { error: { code: 'E_BAD_REQUEST', message: expect.any(String) } } })
  }, 120_000)

  it('keeps stream.db, registry.db and commands.db and their -wal and -shm files at 0600', async () => {
    expect(gw, 'the gateway of the test before').not.toBeNull()
    const modes: Record<string, string> = {}
    for (const name of ['stream.db', 'registry.db', 'commands.db']) {
      for (const suffix of ['', '-wal', '-shm']) {
        const file = join(gw!.dataDir, name + suffix)
        expect(existsSync(file), `${name + suffix} exists while the gateway runs`).toBe(true)
        modes[name + suffix] = (statSync(file).mode & 0o777).toString(8)
      }
    }
    expect(Object.values(modes), JSON.stringify(modes)).toEqual(Array(9).fill('600'))
  })
})
