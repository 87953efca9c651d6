/// <reference lib="dom" />
import { existsSync, mkdirSync, mkdtempSync, rmSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join, resolve } from 'node:path'
import { connectAsync, type MqttClient } from 'mqtt'
import { chromium, type Browser, type BrowserContext, type Page } from 'playwright-core'
import { afterAll, afterEach, beforeAll, beforeEach, describe, expect, it } from 'vitest'
import { generateSasToken } from '../../src/auth/sas.js'
import { ensureBuilt, startChildGateway, type ChildGateway } from '../helpers/child-gateway.js'
import { chromiumPath } from '../helpers/browser.js'

/**
 * The operations console in a real Chromium (Debian's `chromium`, driven by playwright-core),
 * against a gateway process started here, with a real MQTT device connected from the test.
 * Each test saves a screenshot under test-results/console/. Under REQUIRE_BROWSER=1 (set by
 * .ci/run) a missing Chromium fails the suite instead of skipping it.
 */
const TOKEN = 'child-admin-token-0123456789'
const HOST = 'localhost'
const OUT = resolve(import.meta.dirname, '../../test-results/console')
const browserPath = chromiumPath()
if (!browserPath && process.env.REQUIRE_BROWSER === '1') throw new Error('REQUIRE_BROWSER=1 but no Chromium was found (apt-get install chromium, or set CHROMIUM_PATH)')

interface DeviceInfo {
  deviceId: string
  primaryKey: string
}

describe.skipIf(!browserPath)('operations console (Chromium)', () => {
  const dataDir = mkdtempSync(join(tmpdir(), 'streamgate-console-'))
  let gw: ChildGateway
  let base: string
  let browser: Browser
  let context: BrowserContext
  let page: Page
  let problems: string[]
  let testName = ''
  const clients: MqttClient[] = []

  const apiCall = async <T>(method: string, path: string, body?: unknown, headers: Record<string, string> = {}): Promise<{ status: number; body: T }> => {
    const res = await fetch(base + path, { method, headers: { authorization: `Bearer ${TOKEN}`, ...(body === undefined ? {} : { 'content-type': 'application/json' }), ...headers }, body: body === undefined ? undefined : JSON.stringify(body) })
    const text = await res.text()
    return { status: res.status, body: (text ? JSON.parse(text) : null) as T }
  }

  /** A real device: SAS from its key, subscribed to C2D, methods (answered) and desired patches. */
  const connectDevice = async (id: string): Promise<{ client: MqttClient; received: Array<{ topic: string; payload: string }> }> => {
    const { body: device } = await apiCall<DeviceInfo>('GET', `/api/devices/${encodeURIComponent(id)}`)
    const client = await connectAsync(`mqtt://127.0.0.1:${gw.mqttPort}`, {
      clientId: id,
      username: `${HOST}/${id}/?api-version=2021-04-12`,
      password: generateSasToken({ host: HOST, deviceId: id, key: device.primaryKey, expiresAt: Math.floor(Date.now() / 1000) + 3600 }),
      protocolVersion: 4,
      clean: false,
      reconnectPeriod: 0,
    })
    clients.push(client)
    const received: Array<{ topic: string; payload: string }> = []
    client.on('message', (topic, payload) => {
      received.push({ topic, payload: payload.toString() })
      const method = /^\$iothub\/methods\/POST\/([^/]+)\/\?\$rid=(.+)$/.exec(topic)
      if (method) client.publish(`$iothub/methods/res/200/?$rid=${method[2]}`, JSON.stringify({ answeredBy: id, method: method[1], got: JSON.parse(payload.toString() || 'null') }))
    })
    await client.subscribeAsync({ [`devices/${id}/messages/devicebound/#`]: { qos: 1 }, '$iothub/methods/POST/#': { qos: 0 }, '$iothub/twin/PATCH/properties/desired/#': { qos: 0 } })
    return { client, received }
  }

  const signIn = async (): Promise<void> => {
    await page.goto(`${base}/ui/`)
    await page.fill('input[name=token]', TOKEN)
    await page.click('button[type=submit]')
    await page.waitForSelector('#nav:not([hidden])')
  }

  const addDevice = async (id: string): Promise<string> => {
    await page.goto(`${base}/ui/#/devices`)
    await page.fill('#new-device-id', id)
    await page.click('#add-device')
    return (await page.locator('#connection-string').textContent({ timeout: 5000 }))!
  }

  const telemetry = (client: MqttClient, id: string, bag: string, body: string): Promise<unknown> => client.publishAsync(`devices/${id}/messages/events/${bag}`, body, { qos: 1 })

  beforeAll(async () => {
    ensureBuilt()
    mkdirSync(OUT, { recursive: true })
    gw = await startChildGateway(dataDir, { STREAMGATE_ADMIN_TOKEN: TOKEN, STREAMGATE_HOSTNAME: HOST })
    base = `http://127.0.0.1:${gw.httpPort}`
    browser = await chromium.launch({ executablePath: browserPath!, args: ['--no-sandbox', '--disable-gpu', '--disable-dev-shm-usage'] })
  }, 120_000)

  afterAll(async () => {
    for (const c of clients) await c.endAsync(true).catch(() => undefined)
    await browser?.close()
    await gw?.kill()
    rmSync(dataDir, { recursive: true, force: true })
  })

  beforeEach(async (ctx) => {
    testName = ctx.task.name.replace(/[^a-z0-9]+/gi, '-').toLowerCase().slice(0, 60)
    context = await browser.newContext({ viewport: { width: 1280, height: 900 } })
    await context.grantPermissions(['clipboard-read', 'clipboard-write'], { origin: `http://127.0.0.1:${gw.httpPort}` })
    page = await context.newPage()
    problems = []
    // A CSP violation, a script error or a failed console request shows up here.
    page.on('console', (m) => void (m.type() === 'error' && problems.push(m.text())))
    page.on('pageerror', (e) => void problems.push(e.message))
  })

  afterEach(async () => {
    await page.screenshot({ path: join(OUT, `${testName}.png`), fullPage: true }).catch(() => undefined)
    await context.close()
    // The API refusals the page shows (401, 404, 412) also appear as failed loads; nothing else may.
    expect(problems.filter((p) => !/^Failed to load resource: the server responded with a status of 4\d\d/.test(p))).toEqual([])
  })

  it('signs in with the admin token (a wrong one is refused) and keeps it for the tab only', async () => {
    await page.goto(`${base}/ui/`)
    await page.fill('input[name=token]', 'not-the-token')
    await page.click('button[type=submit]')
    await expect.poll(() => page.locator('form.sign-in .status').textContent()).toContain('E_UNAUTHORIZED')
    await signIn()
    await expect.poll(() => page.locator('#connected-now').textContent()).toMatch(/^\d+$/)
    expect(await page.evaluate(() => [sessionStorage.length, localStorage.length, document.cookie])).toEqual([1, 0, ''])
    await page.click('#sign-out')
    await page.waitForSelector('input[name=token]')
    expect(await page.evaluate(() => sessionStorage.length)).toBe(0)
  })

  it('adds a device and copies its connection string', async () => {
    await signIn()
    const shown = await addDevice('console-dev')
    expect(shown).toMatch(/^HostName=localhost;DeviceId=console-dev;SharedAccessKey=[A-Za-z0-9+/=]{40,}$/)
    await page.click('#copy-connection-string')
    await expect.poll(() => page.evaluate(() => navigator.clipboard.readText())).toBe(shown)
    // The list finds it by prefix.
    await page.fill('#device-search', 'console-')
    await expect.poll(() => page.locator('#device-list a.device-link').allTextContents()).toEqual(['console-dev'])
    const { body } = await apiCall<DeviceInfo>('GET', '/api/devices/console-dev')
    expect(shown).toContain(body.primaryKey)
  })

  it('shows a real device online and its telemetry in the live view within 2 s', async () => {
    await signIn()
    await addDevice('live-dev')
    await page.goto(`${base}/ui/#/devices/live-dev`)
    await expect.poll(() => page.locator('#telemetry-state').textContent()).toContain('live')
    const { client } = await connectDevice('live-dev')
    await expect.poll(() => page.locator('#connection-state').textContent(), { timeout: 5000 }).toBe('connected')
    const sent = Date.now()
    await telemetry(client, 'live-dev', '$.ct=application%2Fjson&$.ce=utf-8&room=kitchen', '{"temp":21.5,"seq":1}')
    await page.locator('#live-telemetry .record').first().waitFor({ timeout: 2000 })
    const seenAfter = Date.now() - sent
    console.log(`[console] telemetry shown in the live view ${seenAfter} ms after the publish`)
    expect(seenAfter).toBeLessThan(2000)
    const text = (await page.locator('#live-telemetry').textContent())!
    expect(text).toContain('"temp": 21.5')
    expect(text).toContain('room')
    expect(text).toContain('kitchen')
    // Pause holds the view; the count goes on.
    await page.click('#pause-telemetry')
    await telemetry(client, 'live-dev', '', '{"seq":2}')
    await expect.poll(() => page.locator('#live-count').textContent()).toContain('2 messages (paused)')
    expect(await page.locator('#live-telemetry .record').count()).toBe(1)
  })

  it('sends a cloud-to-device message and sees it completed', async () => {
    await signIn()
    await addDevice('c2d-dev')
    const { received } = await connectDevice('c2d-dev')
    await page.goto(`${base}/ui/#/devices/c2d-dev`)
    await expect.poll(() => page.locator('#connection-state').textContent(), { timeout: 5000 }).toBe('connected')
    await page.fill('#c2d-payload', '{"led":"on"}')
    await page.fill('#c2d-properties', 'colour=red')
    await page.fill('#c2d-ttl', '600')
    await page.click('#send-c2d')
    await expect.poll(() => page.locator('#c2d-status').textContent()).toMatch(/^queued \S+/)
    const messageId = /^queued (\S+)/.exec((await page.locator('#c2d-status').textContent())!)![1]!
    await expect.poll(() => page.locator('#c2d-feedback').textContent(), { timeout: 10_000 }).toContain(`${messageId}completed`)
    expect(received.find((m) => m.topic.startsWith('devices/c2d-dev/messages/devicebound/'))).toMatchObject({ payload: '{"led":"on"}' })
    expect(received.find((m) => m.topic.includes('colour=red'))).toBeDefined()
    await expect.poll(() => page.locator('#c2d-queue').textContent()).toContain('queue empty')
  })

  it('invokes a direct method answered by the device', async () => {
    await signIn()
    await addDevice('method-dev')
    await connectDevice('method-dev')
    await page.goto(`${base}/ui/#/devices/method-dev`)
    await page.fill('#method-name', 'reboot')
    await page.fill('#method-payload', '{"delay": 3}')
    await page.click('#invoke-method')
    await expect.poll(() => page.locator('#method-answer').textContent(), { timeout: 10_000 }).toContain('"status": 200')
    expect(JSON.parse((await page.locator('#method-answer').textContent())!)).toEqual({ status: 200, payload: { answeredBy: 'method-dev', method: 'reboot', got: { delay: 3 } } })
    // A device that is not connected: the code is shown.
    await page.goto(`${base}/ui/#/devices/console-dev`)
    await page.fill('#method-name', 'reboot')
    await page.click('#invoke-method')
    await expect.poll(() => page.locator('section:has(#method-name) .status').textContent()).toContain('E_DEVICE_OFFLINE')
  })

  it('edits desired properties, the device receives them, and a version conflict is shown', async () => {
    await signIn()
    await addDevice('twin-dev')
    const { received } = await connectDevice('twin-dev')
    await page.goto(`${base}/ui/#/devices/twin-dev`)
    await expect.poll(() => page.locator('#desired-version').textContent()).toBe('version 1')
    await page.fill('#desired-editor', '{"fan": "high", "interval": 10}')
    await page.click('#save-desired')
    await expect.poll(() => page.locator('#twin-status').textContent()).toContain('saved: desired is at version 2')
    await expect.poll(() => received.find((m) => m.topic.startsWith('$iothub/twin/PATCH/properties/desired/'))?.payload, { timeout: 5000 }).toBeDefined()
    const patch = received.find((m) => m.topic.startsWith('$iothub/twin/PATCH/properties/desired/'))!
    expect(JSON.parse(patch.payload)).toEqual({ fan: 'high', interval: 10, $version: 2 })
    // Someone else changes desired behind the page's back: the page's save must not overwrite it.
    expect((await apiCall('PATCH', '/api/devices/twin-dev/twin', { desired: { fan: 'low' } })).status).toBe(200)
    await page.fill('#desired-editor', '{"fan": "off"}')
    await page.click('#save-desired')
    await expect.poll(() => page.locator('#twin-status').textContent()).toContain('version conflict')
    expect(await page.locator('#twin-status').getAttribute('class')).toContain('error')
    const { body } = await apiCall<{ desired: Record<string, unknown> }>('GET', '/api/devices/twin-dev/twin')
    expect(body.desired).toMatchObject({ fan: 'low', $version: 3 })
  })

  it('renders a payload and property values with <script> and <img onerror> as text', async () => {
    await signIn()
    await addDevice('xss-dev')
    const { client } = await connectDevice('xss-dev')
    await page.goto(`${base}/ui/#/devices/xss-dev`)
    await expect.poll(() => page.locator('#telemetry-state').textContent()).toContain('live')
    const body = '<script>window.__xss = 1</script><img src=x onerror="window.__xss = 2">'
    const value = '<img src=x onerror=window.__xss=3>'
    const name = '<b onmouseover=alert(1)>n'
    await telemetry(client, 'xss-dev', `${encodeURIComponent(name)}=${encodeURIComponent(value)}`, body)
    await page.locator('#live-telemetry .record').first().waitFor({ timeout: 5000 })
    const text = (await page.locator('#live-telemetry').textContent())!
    expect(text).toContain(body)
    expect(text).toContain(value)
    expect(text).toContain(name)
    expect(await page.locator('#live-telemetry img, #live-telemetry script, #live-telemetry b').count()).toBe(0)
    expect(await page.evaluate(() => (window as unknown as { __xss?: number }).__xss)).toBeUndefined()
    // The same through the device list and a C2D payload the page shows back.
    await page.goto(`${base}/ui/#/devices`)
    await page.fill('#device-search', 'xss')
    await expect.poll(() => page.locator('#device-list a.device-link').allTextContents()).toEqual(['xss-dev'])
    expect(await page.evaluate(() => (window as unknown as { __xss?: number }).__xss)).toBeUndefined()
  })

  it('serves the console with a Content-Security-Policy that forbids inline scripts', async () => {
    const res = await fetch(`${base}/ui/`)
    expect(res.status).toBe(200)
    const csp = res.headers.get('content-security-policy')!
    expect(csp).toContain("script-src 'self'")
    expect(csp).not.toContain('unsafe-inline')
    expect(csp).not.toContain('unsafe-eval')
    expect(res.headers.get('x-content-type-options')).toBe('nosniff')
    // An inline script the page tried to add would be refused by the browser.
    await page.goto(`${base}/ui/`)
    const ran = await page.evaluate(() => {
      const s = document.createElement('script')
      s.textContent = 'window.__inline = true'
      document.body.append(s)
      return (window as unknown as { __inline?: boolean }).__inline === true
    })
    expect(ran).toBe(false)
    problems = problems.filter((p) => !p.includes('Content Security Policy'))
  })

  it('shows the overview with live charts, streams and routes', async () => {
    await signIn()
    const { client } = await connectDevice('live-dev')
    const publishing = setInterval(() => void telemetry(client, 'live-dev', 'room=hall', JSON.stringify({ temp: 20 + Math.random() * 5 })), 50)
    try {
      await page.goto(`${base}/ui/#/overview`)
      await expect.poll(async () => Number(await page.locator('#rate-in').textContent()), { timeout: 15_000 }).toBeGreaterThan(5)
      await expect.poll(() => page.locator('#puback-p99').textContent()).toMatch(/ms$/)
      await expect.poll(() => page.locator('#readiness').textContent()).toContain('ready')
      // A few points on the charts before the picture.
      await page.waitForTimeout(6000)
      expect(await page.locator('#chart-throughput canvas').count()).toBe(1)
      await page.screenshot({ path: join(OUT, 'overview-live-charts.png'), fullPage: true })
    } finally {
      clearInterval(publishing)
    }
    await page.goto(`${base}/ui/#/streams`)
    await expect.poll(() => page.locator('#streams').textContent()).toContain('telemetry')
    expect(await page.locator('#streams').textContent()).toContain('streamgate-commands')
    await page.goto(`${base}/ui/#/processing`)
    await page.fill('#test-condition', '$body.temp > 30')
    await page.fill('#test-body', '{"temp": 31}')
    await page.click('#run-test')
    await expect.poll(() => page.locator('section:has(#test-condition) .status').textContent()).toBe('matched')
    await page.goto(`${base}/ui/#/devices/live-dev`)
    await expect.poll(() => page.locator('#telemetry-state').textContent()).toContain('live')
    await telemetry(client, 'live-dev', '$.ct=application%2Fjson&room=kitchen', '{"temp":22.5,"humidity":40}')
    await page.waitForTimeout(1000)
    await page.screenshot({ path: join(OUT, 'device-detail.png'), fullPage: true })
    expect(existsSync(join(OUT, 'device-detail.png'))).toBe(true)
  })
})
