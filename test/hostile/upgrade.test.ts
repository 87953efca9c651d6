import { connect, type Socket } from 'node:net'
import { connect as tlsConnect } from 'node:tls'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { initDevCerts } from '../../src/app/dev-certs.js'
import { expectSurvived, startHostileGateway, underAttack, MiB, type HostileGateway } from '../helpers/hostile.js'

/**
 * Issue items 1 and 2: every WebSocket upgrade on the HTTP port is answered by one router. A path
 * that is not percent-decodable used to throw URIError out of the 'upgrade' listener and end the
 * process; an upgrade to a path nobody claims used to get no answer at all and hold its socket.
 */

/** Send a raw upgrade request and return the status line (or '' when the socket closes silently). */
function rawUpgrade(port: number, path: string, timeoutMs = 5000, tls = false, waitForClose = false): Promise<string> {
  return new Promise((resolve, reject) => {
    const socket: Socket = tls ? tlsConnect({ host: '127.0.0.1', port, rejectUnauthorized: false, servername: 'localhost' }) : connect({ host: '127.0.0.1', port })
    let data = ''
    const timer = setTimeout(() => {
      socket.destroy()
      reject(new Error(`no answer to an upgrade of ${path} within ${timeoutMs} ms`))
    }, timeoutMs)
    socket.on('data', (b) => {
      data += b.toString('latin1')
      if (data.includes('\r\n') && !waitForClose) {
        clearTimeout(timer)
        socket.destroy()
        resolve(data.split('\r\n')[0]!)
      }
    })
    socket.on('close', () => {
      clearTimeout(timer)
      resolve(data.split('\r\n')[0] ?? '')
    })
    socket.on('error', () => undefined)
    socket.write(
      `GET ${path} HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n` +
        'Sec-WebSocket-Version: 13\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Protocol: mqtt\r\n\r\n',
    )
  })
}

describe('hostile: WebSocket upgrades on the HTTP port', () => {
  let gw: HostileGateway
  let canaryDevice: { deviceId: string; token: string }

  beforeAll(async () => {
    gw = await startHostileGateway({
      prepare: async (dir) => void (await initDevCerts(dir, ['localhost', '127.0.0.1'])),
      env: { STREAMGATE_HTTP__WSS__ENABLED: 'true', STREAMGATE_HTTP__WSS__PORT: '0' },
    })
    canaryDevice = await gw.addSasDevice('canary-upgrade')
  }, 180_000)
  afterAll(async () => {
    await gw?.stop()
  })

  const malformed = ['/%E0%A4%A', '/mqtt%', '/%$iothub/websocket', '/api/streams/%E0%A4%A/tail', '/%C0%80mqtt']

  it('answers 400 to a path that is not valid percent-encoding on the HTTP port, and keeps running', async () => {
    const outcome = await underAttack(gw, canaryDevice, async () => {
      const answers: string[] = []
      for (let round = 0; round < 20; round++) for (const path of malformed) answers.push(await rawUpgrade(gw.httpPort, path))
      return answers
    })
    expect(outcome.result).toHaveLength(100)
    for (const status of outcome.result) expect(status).toMatch(/^HTTP\/1\.1 400 /)
    await expectSurvived(gw, 'malformed upgrade paths (HTTP port)', outcome, { rssGrowthBytes: 32 * MiB })
  })

  it('answers 400 to the same paths on the secure WebSocket port, and 404 to paths it does not serve', async () => {
    const wss = gw.tlsPort('wss')
    const outcome = await underAttack(gw, canaryDevice, async () => {
      const bad: string[] = []
      const unclaimed: string[] = []
      for (let round = 0; round < 10; round++) for (const path of malformed) bad.push(await rawUpgrade(wss, path, 5000, true))
      for (const path of ['/api/streams/telemetry/tail', '/api/anything', '/']) unclaimed.push(await rawUpgrade(wss, path, 5000, true))
      return { bad, unclaimed }
    })
    for (const status of outcome.result.bad) expect(status).toMatch(/^HTTP\/1\.1 400 /)
    for (const status of outcome.result.unclaimed) expect(status).toMatch(/^HTTP\/1\.1 404 /)
    await expectSurvived(gw, 'malformed upgrade paths (WSS port)', outcome, { rssGrowthBytes: 32 * MiB })
  })

  it('answers 404 to an upgrade nobody claims, and does not hold its socket', async () => {
    const outcome = await underAttack(gw, canaryDevice, async () => {
      const answers: string[] = []
      for (const path of ['/api/anything', '/api/devices', '/', '/mqtt/extra', '/healthz', '/api/streams/telemetry/tail/x']) {
        // The gateway answers and closes: the socket ends without the client closing it.
        for (let i = 0; i < 10; i++) answers.push(await rawUpgrade(gw.httpPort, path, 3000, false, true))
      }
      return answers
    })
    for (const status of outcome.result) expect(status).toMatch(/^HTTP\/1\.1 404 /)
    await expectSurvived(gw, 'unclaimed upgrade paths', outcome, { rssGrowthBytes: 32 * MiB })
  })
})
