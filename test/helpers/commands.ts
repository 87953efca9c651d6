import { connect, type IClientOptions, type MqttClient } from 'mqtt'
import type { StoredRecord } from '../../src/stream/types.js'
import type { Gateway } from '../../src/app/gateway.js'
import { readAll, waitFor } from './gateway.js'

export const TOKEN = 'test-admin-token-0123456789'

export interface ApiResponse {
  status: number
  body: unknown
}

/** One HTTP call to a gateway's API with the admin token (or the given one / none). */
export async function api(baseUrl: string, method: string, path: string, body?: unknown, options: { token?: string | null; headers?: Record<string, string> } = {}): Promise<ApiResponse> {
  const token = options.token === undefined ? TOKEN : options.token
  const headers: Record<string, string> = { ...(options.headers ?? {}) }
  if (token !== null) headers.authorization = `Bearer ${token}`
  if (body !== undefined) headers['content-type'] = 'application/json'
  const res = await fetch(`${baseUrl}${path}`, { method, headers, ...(body === undefined ? {} : { body: typeof body === 'string' ? body : JSON.stringify(body) }) })
  const text = await res.text()
  let parsed: unknown = text
  try {
    parsed = text ? JSON.parse(text) : null
  } catch {
    // not JSON: keep the text
  }
  return { status: res.status, body: parsed }
}

export interface Received {
  topic: string
  payload: string
  dup: boolean
}

/**
 * Connect with the collector already listening. A session's queued messages follow the CONNACK at
 * once and may arrive in the same TCP read: mqtt.js handles that PUBLISH (and acknowledges it)
 * before an `await connectAsync()` continues, so a collector attached afterwards misses it.
 */
export function connectCollecting(url: string, options: IClientOptions): Promise<{ client: MqttClient; got: Received[] }> {
  const client = connect(url, options)
  const got = collect(client)
  return new Promise((resolve, reject) => {
    const failed = (err: Error): void => {
      client.end(true)
      reject(err)
    }
    client.once('error', failed)
    client.once('connect', () => {
      client.off('error', failed)
      resolve({ client, got })
    })
  })
}

/** Collect every PUBLISH a device receives. */
export function collect(client: MqttClient): Received[] {
  const got: Received[] = []
  client.on('message', (topic, payload, packet) => got.push({ topic, payload: payload.toString(), dup: packet.dup === true }))
  return got
}

export interface FeedbackJson {
  messageId: string
  deviceId: string
  status: string
  deliveryCount: number
  time: string
  reason?: string
}

export async function feedbackRecords(gateway: Gateway): Promise<FeedbackJson[]> {
  const records: StoredRecord[] = await readAll(gateway, gateway.topics.commandFeedback)
  return records.map((r) => JSON.parse(r.value.toString()) as FeedbackJson)
}

export async function waitForFeedback(gateway: Gateway, count: number, timeoutMs = 15_000): Promise<FeedbackJson[]> {
  return waitFor(async () => {
    const fb = await feedbackRecords(gateway)
    return fb.length >= count ? fb : null
  }, timeoutMs, `${count} feedback records`)
}

export function errorCode(res: ApiResponse): string | undefined {
  return (res.body as { error?: { code?: string } } | null)?.error?.code
}

export function sleep(ms: number): Promise<void> {
  return new Promise((r) => setTimeout(r, ms))
}
