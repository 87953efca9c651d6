import { connect } from 'node:net'
import { mkdtempSync, rmSync, statSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { ADMIN_TOKEN, expectSurvived, startHostileGateway, underAttack, MiB, type HostileGateway } from '../helpers/hostile.js'

/**
 * The HTTP port beyond Fastify's routes: what Node's parser refuses (over-long request lines,
 * headers that never come, bytes that are not HTTP) is answered in the API's error envelope and
 * the socket closed; JSON payloads the API passes to devices are bounded in depth before
 * JSON.stringify recurses into them.
 */

function raw(port: number, bytes: string, timeoutMs = 15_000): Promise<{ status: string; body: string; closed: boolean }> {
  return new Promise((resolve) => {
    const s = connect({ host: '127.0.0.1', port })
    let data = ''
    const timer = setTimeout(() => (s.destroy(), resolve({ status: data.split('\r\n')[0] ?? '', body: data.split('\r\n\r\n')[1] ?? '', closed: false })), timeoutMs)
    s.on('data', (b) => (data += b.toString()))
    s.on('error', () => undefined)
    s.on('close', () => {
      clearTimeout(timer)
      resolve({ status: data.split('\r\n')[0] ?? '', body: data.split('\r\n\r\n')[1] ?? '', closed: true })
    })
    if (bytes) s.write(bytes)
  })
}

/** A request body whose payload nests `levels` objects (built as text: JSON.stringify would overflow here too). */
function deepBody(levels: number): string {
  return `{"payload":${'{"a":'.repeat(levels)}1${'}'.repeat(levels)}}`
}

async function post(gw: HostileGateway, path: string, body: string): Promise<{ status: number; body: unknown }> {
  const res = await fetch(`${gw.httpUrl}${path}`, { method: 'POST', headers: { authorization: `Bearer ${ADMIN_TOKEN}`, 'content-type': 'application/json' }, body })
  return { status: res.status, body: await res.json() }
}

describe('hostile: the HTTP port below and beside the API routes', () => {
  let gw: HostileGateway
  let canary: { deviceId: string; token: string }

  beforeAll(async () => {
    gw = await startHostileGateway({ env: { STREAMGATE_HTTP__HEADERS_TIMEOUT_SECONDS: '2' } })
    canary = await gw.addSasDevice('canary-http')
    await gw.addSasDevice('deep-dev')
  }, 180_000)
  afterAll(async () => {
    await gw?.stop()
  })

  it('answers what the HTTP parser refuses in the envelope, and closes', async () => {
    const outcome = await underAttack(gw, canary, async () => {
      const long = await raw(gw.httpPort, `GET /api/devices/${'x'.repeat(20_000)} HTTP/1.1\r\nHost: x\r\n\r\n`)
      const garbage = await raw(gw.httpPort, '\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03 not http\r\n\r\n')
      const t0 = Date.now()
      const slow = await raw(gw.httpPort, 'GET /healthz HTTP/1.1\r\nHost: x\r\n')
      return { long, garbage, slow, slowSeconds: (Date.now() - t0) / 1000 }
    })
    const { long, garbage, slow, slowSeconds } = outcome.result
    expect(long.status).toBe('HTTP/1.1 431 Request Header Fields Too Large')
    expect(JSON.parse(long.body)).toEqual({ error: { code: 'E_BAD_REQUEST', message: 'the request line and headers exceed 16 KiB' } })
    expect(garbage.status).toBe('HTTP/1.1 400 Bad Request')
    expect(JSON.parse(garbage.body).error.code).toBe('E_BAD_REQUEST')
    expect(slow.status).toBe('HTTP/1.1 408 Request Timeout')
    expect(slow.closed).toBe(true)
    expect(slowSeconds).toBeLessThan(10)
    await expectSurvived(gw, 'HTTP parser refusals', outcome, { rssGrowthBytes: 32 * MiB })
  }, 60_000)

  it('refuses C2D and method payloads nested 5,000 deep with 400, not a stack overflow', async () => {
    const outcome = await underAttack(gw, canary, async () => {
      const c2d = await post(gw, '/api/devices/deep-dev/messages', deepBody(5000))
      const method = await post(gw, '/api/devices/deep-dev/methods/reboot', deepBody(5000))
      const fine = await post(gw, '/api/devices/deep-dev/messages', deepBody(60))
      return { c2d, method, fine: fine.status }
    })
    for (const r of [outcome.result.c2d, outcome.result.method]) {
      expect(r.status).toBe(400)
      expect(r.body).toMatchObject({ error: { code: 'E_BAD_REQUEST', message: expect.stringContaining('64 levels') } })
    }
    expect(outcome.result.fine).toBe(202)
    expect(gw.output()).not.toMatch(/Maximum call stack|RangeError/)
    await expectSurvived(gw, 'deep C2D and method payloads', outcome, { rssGrowthBytes: 32 * MiB })
  }, 60_000)

  it('creates its data directory for its owner only', async () => {
    const parent = mkdtempSync(join(tmpdir(), 'streamgate-datadir-'))
    const fresh = await startHostileGateway({ dataDir: join(parent, 'new', 'data') })
    try {
      expect(statSync(fresh.dataDir).mode & 0o777).toBe(0o700)
    } finally {
      await fresh.stop()
      rmSync(parent, { recursive: true, force: true })
    }
  }, 60_000)
})
