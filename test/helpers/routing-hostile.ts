import { request as httpRequest } from 'node:http'
import { expect } from 'vitest'
import type { MqttClient } from 'mqtt'
import { connectDevice, sasFor, type TestGateway } from './gateway.js'
import { api, errorCode, TOKEN, type ApiResponse } from './commands.js'
import { JSON_UTF8, telemetryTopic } from './routing.js'

/** Shared by the hostile routing suites (test/hostile/routing-*.test.ts). */
export const OVERRIDES = { 'routing.reloadIntervalMs': '200', 'routing.restartDelayMs': '50', 'stream.embedded.pollIntervalMs': '20' }
export const UNAUTHORIZED = { error: { code: 'E_UNAUTHORIZED', message: 'missing or wrong admin token (Authorization: Bearer <token>)' } }

export function refused(res: ApiResponse, status: number, code: string, message: string | RegExp = /./): void {
  expect(res.status, JSON.stringify(res.body)).toBe(status)
  expect(errorCode(res), JSON.stringify(res.body)).toBe(code)
  const text = (res.body as { error: { message: unknown } }).error.message
  expect(typeof text).toBe('string')
  if (typeof message === 'string') expect(text).toContain(message)
  else expect(text).toMatch(message)
}

/** One request with the path sent as written (fetch would fold `%2E%2E` into `..` and drop it). */
export function rawApi(gw: TestGateway, method: string, path: string, body?: string): Promise<ApiResponse> {
  const { port } = new URL(gw.httpUrl)
  return new Promise((resolve, reject) => {
    const headers: Record<string, string> = { authorization: `Bearer ${TOKEN}` }
    if (body !== undefined) headers['content-type'] = 'application/json'
    const req = httpRequest({ host: '127.0.0.1', port: Number(port), method, path, headers }, (res) => {
      const chunks: Buffer[] = []
      res.on('data', (c: Buffer) => chunks.push(c))
      res.on('end', () => {
        const text = Buffer.concat(chunks).toString('utf8')
        resolve({ status: res.statusCode ?? 0, body: text ? (JSON.parse(text) as unknown) : null })
      })
    })
    req.on('error', reject)
    req.end(body)
  })
}

export interface Fixture {
  gw: TestGateway
  canary: MqttClient
  canaryId: string
}

export async function fixture(gw: TestGateway, canaryId: string): Promise<Fixture> {
  const device = await gw.gateway.registry.create({ deviceId: canaryId })
  return { gw, canary: await connectDevice(gw.mqttUrl, canaryId, sasFor(device)), canaryId }
}

/** The definitions alone (no live counters) and the store's change counter. */
export async function snapshot(gw: TestGateway): Promise<{ version: number; definitions: unknown }> {
  const { routes, endpoints } = await gw.gateway.routeStore.load()
  return { version: await gw.gateway.routeStore.version(), definitions: { routes, endpoints } }
}

/** Still serving: the API answers and a QoS 1 publish is acknowledged within a second. */
export async function expectServing(f: Fixture): Promise<void> {
  const list = await api(f.gw.httpUrl, 'GET', '/api/routes')
  expect(list.status).toBe(200)
  const started = Date.now()
  await f.canary.publishAsync(telemetryTopic(f.canaryId, JSON_UTF8), JSON.stringify({ canary: started }), { qos: 1 })
  expect(Date.now() - started).toBeLessThan(1000)
}
