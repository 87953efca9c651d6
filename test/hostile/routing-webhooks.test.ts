import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http'
import type { AddressInfo, Socket } from 'node:net'
import { afterAll, afterEach, describe, expect, it } from 'vitest'
import type { MqttClient } from 'mqtt'
import { metricSamples, readAll, startTestGateway, waitFor, type TestGateway } from '../helpers/gateway.js'
import { api, errorCode, sleep } from '../helpers/commands.js'
import { publishJson } from '../helpers/routing.js'
import type { StoredRecord } from '../../src/stream/types.js'
import { OVERRIDES, expectServing, fixture, type Fixture } from '../helpers/routing-hostile.js'

/** Webhook endpoints that hang, stream, redirect, cut or are not there, and route churn (see routing-api.test.ts for the API). */

/** A webhook endpoint that misbehaves as told; every connection it accepted is tracked. */
interface HostileHook {
  url: string
  requests: number
  /** Connections that carried a request. */
  carried: Set<Socket>
  close(): Promise<void>
}

async function hostileHook(handler: (req: IncomingMessage, res: ServerResponse, n: number) => void): Promise<HostileHook> {
  const server: Server = createServer((req, res) => {
    hook.requests++
    hook.carried.add(req.socket)
    handler(req, res, hook.requests)
  })
  const hook: HostileHook = {
    url: '',
    requests: 0,
    carried: new Set(),
    close: async () => {
      server.closeAllConnections()
      await new Promise<void>((resolve) => server.close(() => resolve()))
    },
  }
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve))
  hook.url = `http://127.0.0.1:${(server.address() as AddressInfo).port}/hook`
  return hook
}

/** Read the whole request body, then answer with `answer`. */
function afterBody(req: IncomingMessage, answer: () => void): void {
  req.resume()
  req.on('end', answer)
}

/**
 * Write `total` bytes (Infinity: for ever, chunked) until the peer goes. Resolves with the bytes
 * written and whether the connection was closed under it (the only way the loop ends early).
 */
async function streamAnswer(res: ServerResponse, total: number): Promise<{ written: number; cut: boolean }> {
  const chunk = Buffer.alloc(64 * 1024, 0x61)
  res.writeHead(200, Number.isFinite(total) ? { 'content-length': String(total) } : {})
  let written = 0
  while (written < total && !res.destroyed) {
    written += chunk.length
    if (!res.write(chunk)) {
      await new Promise<void>((resolve) => {
        const done = (): void => {
          res.off('drain', done)
          res.off('close', done)
          resolve()
        }
        res.on('drain', done)
        res.on('close', done)
      })
    }
  }
  const cut = res.destroyed && written < total
  if (!res.destroyed) res.end()
  return { written, cut }
}

describe('hostile: webhook endpoints that hang, stream, redirect, cut or are not there', () => {
  const gateways: TestGateway[] = []
  const hooks: HostileHook[] = []
  const clients: MqttClient[] = []

  afterEach(async () => {
    for (const c of clients.splice(0)) await c.endAsync(true).catch(() => undefined)
    for (const g of gateways.splice(0)) await g.stop()
    for (const h of hooks.splice(0)) await h.close()
  })

  async function setup(endpoint: Record<string, unknown>): Promise<Fixture & { publish: (n: number) => Promise<number[]> }> {
    const gw = await startTestGateway(OVERRIDES)
    gateways.push(gw)
    const f = await fixture(gw, 'hook-dev')
    clients.push(f.canary)
    const put = await api(gw.httpUrl, 'PUT', '/api/endpoints/hook', { type: 'webhook', maxAttempts: 2, backoffMs: 10, maxBackoffMs: 20, timeoutMs: 300, ...endpoint })
    expect(put.status, JSON.stringify(put.body)).toBe(201)
    expect((await api(gw.httpUrl, 'PUT', '/api/routes/to-hook', { condition: 'true', endpoints: ['hook'] })).status).toBe(201)
    // Each PUBACK's latency: the endpoint must never be in the publish path.
    const publish = async (n: number): Promise<number[]> => {
      const latencies: number[] = []
      for (let seq = 0; seq < n; seq++) {
        const started = performance.now()
        await publishJson(f.canary, 'hook-dev', { seq })
        latencies.push(performance.now() - started)
      }
      return latencies
    }
    return { ...f, publish }
  }

  async function deadLetters(gw: TestGateway, count: number): Promise<StoredRecord[]> {
    return waitFor(async () => {
      const records = (await readAll(gw.gateway, gw.gateway.topics.deadLetter)).filter((r) => r.key === 'hook-dev')
      return records.length >= count && records
    }, 15_000, `${count} dead-lettered records`)
  }

  async function endpointView(gw: TestGateway): Promise<Record<string, unknown>> {
    const res = await api(gw.httpUrl, 'GET', '/api/endpoints/hook')
    expect(res.status).toBe(200)
    return res.body as Record<string, unknown>
  }

  it('a webhook that never answers: timed out, dead-lettered "no answer", PUBACKs unaffected, no socket left open', async () => {
    const hook = await hostileHook((req) => req.resume())
    hooks.push(hook)
    const f = await setup({ url: hook.url, maxBatch: 1 })
    const latencies = await f.publish(3)
    expect(Math.max(...latencies), 'PUBACK latency while the endpoint hangs').toBeLessThan(500)
    const dead = await deadLetters(f.gw, 3)
    expect(dead.map((r) => JSON.parse(r.value.toString()) as unknown)).toEqual([{ seq: 0 }, { seq: 1 }, { seq: 2 }])
    for (const r of dead) {
      expect(r.headers).toMatchObject({ 'dead-letter-endpoint': 'hook', 'dead-letter-error-code': 'E_ENDPOINT_DELIVERY', 'dead-letter-error': 'webhook hook: no answer within 300 ms', 'dead-letter-attempts': '2' })
    }
    expect(hook.requests).toBe(6)
    expect(await endpointView(f.gw)).toMatchObject({ health: 'dead', delivered: 0, deadLettered: 3, lastError: { code: 'E_ENDPOINT_DELIVERY', message: 'webhook hook: no answer within 300 ms' } })
    // Each timed-out POST closed its connection: a hanging endpoint cannot pin sockets. (undici may
    // hold one more connection it opened and never used; its own keep-alive timeout ends that one.)
    await waitFor(() => [...hook.carried].every((s) => s.destroyed), 1000, 'the hanging connections closed by the gateway')
    await expectServing(f)
  })

  it('an answer of 200 with a 50 MB body, or a body that never ends, is a delivery; the gateway reads none of it', async () => {
    for (const total of [50 * 1024 * 1024, Infinity]) {
      const answers: Array<{ written: number; cut: boolean }> = []
      const hook = await hostileHook((req, res) => afterBody(req, () => void streamAnswer(res, total).then((a) => answers.push(a))))
      hooks.push(hook)
      const f = await setup({ url: hook.url, maxBatch: 1, timeoutMs: 5000 })
      const started = Date.now()
      const latencies = await f.publish(3)
      await waitFor(async () => (await endpointView(f.gw)).delivered === 3, 10_000, 'three deliveries')
      const took = Date.now() - started
      // The gateway cancelled each answer: the receiver saw its connection closed well short of the
      // end (what the loopback socket buffers took, a few MB), not 50 MB read or an endless wait.
      await waitFor(() => answers.length === 3, 5000, 'the three answers cut off by the gateway')
      expect({ total, took: took < 5000, answers: answers.map((a) => ({ cut: a.cut, small: a.written < 16 * 1024 * 1024 })) }).toEqual({ total, took: true, answers: Array(3).fill({ cut: true, small: true }) })
      expect(Math.max(...latencies)).toBeLessThan(500)
      expect(await endpointView(f.gw)).toMatchObject({ health: 'healthy', delivered: 3, deadLettered: 0, failedAttempts: 0 })
      await expectServing(f)
      for (const g of gateways.splice(0)) await g.stop()
      for (const c of clients.splice(0)) await c.endAsync(true).catch(() => undefined)
    }
  })

  it('a redirect is not followed: the other URL gets nothing, and it counts as a failure with the status', async () => {
    const elsewhere = await hostileHook((req, res) => afterBody(req, () => res.writeHead(200).end()))
    hooks.push(elsewhere)
    for (const status of [302, 307, 308]) {
      const hook = await hostileHook((req, res) => afterBody(req, () => res.writeHead(status, { location: elsewhere.url }).end()))
      hooks.push(hook)
      const f = await setup({ url: hook.url, maxBatch: 10 })
      await f.publish(2)
      const dead = await deadLetters(f.gw, 2)
      for (const r of dead) expect(r.headers).toMatchObject({ 'dead-letter-error-code': 'E_ENDPOINT_DELIVERY', 'dead-letter-error': `webhook hook answered ${status}` })
      expect(await endpointView(f.gw)).toMatchObject({ health: 'dead', delivered: 0, lastError: { code: 'E_ENDPOINT_DELIVERY', message: `webhook hook answered ${status}` } })
      expect(elsewhere.requests, `the ${status} target`).toBe(0)
      await expectServing(f)
      for (const g of gateways.splice(0)) await g.stop()
      for (const c of clients.splice(0)) await c.endAsync(true).catch(() => undefined)
    }
  })

  it('a connection cut mid-request is retried, then delivered once the endpoint behaves', async () => {
    const delivered: unknown[] = []
    const hook = await hostileHook((req, res, n) => {
      if (n <= 3) {
        req.once('data', () => req.socket.destroy())
        return
      }
      const chunks: Buffer[] = []
      req.on('data', (c: Buffer) => chunks.push(c))
      req.on('end', () => {
        delivered.push(...(JSON.parse(Buffer.concat(chunks).toString()) as { messages: Array<{ body: string }> }).messages.map((m) => JSON.parse(m.body) as unknown))
        res.writeHead(200).end()
      })
    })
    hooks.push(hook)
    const f = await setup({ url: hook.url, maxAttempts: 10, maxBatch: 10 })
    await f.publish(3)
    await waitFor(() => delivered.length >= 3, 10_000, 'the three messages after the cuts')
    await sleep(200)
    // Each cut POST was sent again whole; only the answered ones count, so each message arrived once, in order.
    expect(delivered).toEqual([{ seq: 0 }, { seq: 1 }, { seq: 2 }])
    const view = await endpointView(f.gw)
    expect(view).toMatchObject({ health: 'healthy', delivered: 3, deadLettered: 0, failedAttempts: 3 })
    await expectServing(f)
  })

  it('a closed port dead-letters with ECONNREFUSED and the Authorization secret shows nowhere', async () => {
    const gone = await hostileHook(() => undefined)
    const url = gone.url
    await gone.close()
    const secret = 'Bearer top-secret-7f3a9c'
    const f = await setup({ url, authHeader: secret, maxBatch: 10 })
    await f.publish(3)
    const dead = await deadLetters(f.gw, 3)
    for (const r of dead) expect(r.headers).toMatchObject({ 'dead-letter-error-code': 'E_ENDPOINT_DELIVERY', 'dead-letter-error': 'webhook hook: ECONNREFUSED' })
    const seen = {
      deadLetterHeaders: JSON.stringify(dead.map((r) => r.headers)),
      endpoints: JSON.stringify((await api(f.gw.httpUrl, 'GET', '/api/endpoints')).body),
      endpoint: JSON.stringify(await endpointView(f.gw)),
      routes: JSON.stringify((await api(f.gw.httpUrl, 'GET', '/api/routes')).body),
      metrics: await (await fetch(`${f.gw.httpUrl}/metrics`)).text(),
    }
    for (const [where, text] of Object.entries(seen)) expect(text.includes('top-secret'), where).toBe(false)
    expect(seen.endpoint).toContain('"hasAuthHeader":true')
    expect((await metricSamples(f.gw)).get('streamgate_endpoint_dead_lettered_total{endpoint="hook"}')).toBe(3)
    await expectServing(f)
  })

  it('refuses an authHeader no HTTP request can carry (CR/LF, NUL, non-Latin-1) instead of leaking it in every error', async () => {
    const hook = await hostileHook((req, res) => afterBody(req, () => res.writeHead(200).end()))
    hooks.push(hook)
    const gw = await startTestGateway(OVERRIDES)
    gateways.push(gw)
    const f = await fixture(gw, 'hook-dev')
    clients.push(f.canary)
    const outcome: Record<string, { status: number; leakedInto: string[] }> = {}
    for (const [what, authHeader] of [['crlf', 'Bearer s3cret-crlf\r\nX-Injected: 1'], ['nul', 'Bearer s3cret-nul\u0000'], ['wide', 'Bearer s3cret-wide\u0100']] as const) {
      const put = await api(gw.httpUrl, 'PUT', '/api/endpoints/hook', { type: 'webhook', url: hook.url, authHeader, maxAttempts: 1, backoffMs: 10, maxBackoffMs: 20 })
      const leakedInto: string[] = []
      if (put.status < 300) {
        expect((await api(gw.httpUrl, 'PUT', '/api/routes/to-hook', { condition: 'true', endpoints: ['hook'] })).status).toBeLessThan(300)
        const before = (await readAll(gw.gateway, gw.gateway.topics.deadLetter)).length
        await publishJson(f.canary, 'hook-dev', { what })
        const dead = await waitFor(async () => {
          const all = await readAll(gw.gateway, gw.gateway.topics.deadLetter)
          return all.length > before && all.slice(before)
        }, 10_000, `the ${what} delivery dead-lettered`)
        if (JSON.stringify(dead.map((r) => r.headers)).includes('s3cret')) leakedInto.push('dead-letter headers')
        if (JSON.stringify(await endpointView(gw)).includes('s3cret')) leakedInto.push('GET /api/endpoints/hook lastError')
        expect((await api(gw.httpUrl, 'DELETE', '/api/routes/to-hook')).status).toBe(204)
        expect((await api(gw.httpUrl, 'DELETE', '/api/endpoints/hook')).status).toBe(204)
      }
      outcome[what] = { status: put.status, leakedInto }
    }
    expect(hook.requests, 'no request went out with a forged header').toBe(0)
    expect(outcome).toEqual({ crlf: { status: 400, leakedInto: [] }, nul: { status: 400, leakedInto: [] }, wide: { status: 400, leakedInto: [] } })
    await expectServing(f)
  })
})

/**
 * This process's active handles by type, less sockets: the 40 requests of the burst below leave
 * keep-alive connections to the API (Fastify's keepAliveTimeout is 72 s) on both ends.
 */
function resources(): Record<string, number> {
  const tally: Record<string, number> = {}
  for (const kind of process.getActiveResourcesInfo()) if (kind !== 'TCPSocketWrap' && kind !== 'Immediate') tally[kind] = (tally[kind] ?? 0) + 1
  return tally
}

describe('hostile: route churn while a device publishes', () => {
  let gw: TestGateway | undefined
  let client: MqttClient | undefined
  afterAll(async () => {
    await client?.endAsync(true).catch(() => undefined)
    await gw?.stop()
  })

  it('PUT/DELETE of one route 200 times keeps PUBACKs flowing, ends with the last definition, and leaks no consumer', async () => {
    gw = await startTestGateway(OVERRIDES)
    const running = gw
    const f = await fixture(running, 'churn-dev')
    client = f.canary
    expect((await api(running.httpUrl, 'PUT', '/api/endpoints/churn', { type: 'stream', topic: 'churn-out' })).status).toBe(201)
    expect((await api(running.httpUrl, 'PUT', '/api/routes/flappy', { condition: '$body.round >= 0', endpoints: ['churn'] })).status).toBe(201)
    await sleep(300)
    const resourcesBefore = resources()

    // The device publishes throughout: round -1 matches none of the churned conditions.
    let publishing = true
    const latencies: number[] = []
    const publisher = (async () => {
      for (let seq = 0; publishing; seq++) {
        const started = performance.now()
        await publishJson(f.canary, 'churn-dev', { seq, round: -1 })
        latencies.push(performance.now() - started)
        await sleep(5)
      }
    })()
    const answers: string[] = []
    for (let round = 0; round < 200; round++) {
      const put = await api(running.httpUrl, 'PUT', '/api/routes/flappy', { condition: `$body.round >= ${round}`, endpoints: ['churn'] })
      const del = await api(running.httpUrl, 'DELETE', '/api/routes/flappy')
      answers.push(`${put.status}/${del.status}`)
    }
    // Then a burst of both at once: each answers for itself, none fails.
    const burst = await Promise.all(
      Array.from({ length: 40 }, (_, i) => (i % 2 === 0 ? api(running.httpUrl, 'PUT', '/api/routes/flappy', { condition: `$body.round >= ${i}`, endpoints: ['churn'] }) : api(running.httpUrl, 'DELETE', '/api/routes/flappy'))),
    )
    const final = await api(running.httpUrl, 'PUT', '/api/routes/flappy', { condition: '$body.final = true', endpoints: ['churn'] })
    publishing = false
    await publisher

    // The first PUT replaces the route defined above; every other one creates it again.
    expect(answers).toEqual(['200/204', ...Array(199).fill('201/204')])
    for (const res of burst) {
      expect([200, 201, 204, 404], JSON.stringify(res.body)).toContain(res.status)
      if (res.status === 404) expect(errorCode(res)).toBe('E_ROUTE_NOT_FOUND')
    }
    expect([200, 201]).toContain(final.status)
    expect(latencies.length).toBeGreaterThan(20)
    expect(Math.max(...latencies), `the slowest of ${latencies.length} PUBACKs during the churn`).toBeLessThan(1500)

    const list = (await api(running.httpUrl, 'GET', '/api/routes')).body as { routes: Array<{ name: string; condition: string }>; endpoints: Array<{ name: string; routes: string[] }> }
    expect(list.routes.map((r) => [r.name, r.condition])).toEqual([['flappy', '$body.final = true']])
    expect(list.endpoints.map((e) => [e.name, e.routes])).toEqual([['churn', ['flappy']]])
    // Messages that every churned condition would match too: a consumer left running with an old plan would copy them.
    for (let i = 0; i < 5; i++) await publishJson(f.canary, 'churn-dev', { final: true, round: 1_000_000, i })
    const routed = await waitFor(async () => {
      const records = await readAll(running.gateway, 'churn-out').catch(() => [])
      return records.filter((r) => (JSON.parse(r.value.toString()) as { final?: boolean }).final === true).length >= 5 && records
    }, 10_000, 'the five final messages routed')
    await sleep(500)
    const after = await readAll(running.gateway, 'churn-out')
    expect(after.length, 'nothing but the final messages, each once').toBe(5)
    expect(routed.map((r) => (JSON.parse(r.value.toString()) as { i: number }).i)).toEqual([0, 1, 2, 3, 4])
    const metrics = await metricSamples(running)
    expect([...metrics.keys()].filter((k) => k.startsWith('streamgate_endpoint_lag'))).toEqual(['streamgate_endpoint_lag{endpoint="churn",topic="telemetry"}'])
    expect(metrics.get('streamgate_route_matched_total{route="flappy",endpoint="churn"}')).toBe(5)
    // An embedded consumer waits on a ref'd poll timer: one left running would be a Timeout more.
    const resourcesAfter = resources()
    expect(resourcesAfter.Timeout ?? 0, JSON.stringify({ before: resourcesBefore, after: resourcesAfter })).toBeLessThanOrEqual((resourcesBefore.Timeout ?? 0) + 2)
    expect(resourcesAfter.MessagePort).toBe(resourcesBefore.MessagePort)
    await expectServing(f)
  }, 60_000)
})
