import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http'
import type { AddressInfo } from 'node:net'
import type { MqttClient } from 'mqtt'

/** What a webhook endpoint posts (routing/sinks.ts). */
export interface WebhookMessage {
  topic: string
  partition: number
  offset: number
  deviceId: string
  enqueuedTime: string
  headers: Record<string, string>
  body: string
  bodyEncoding: 'utf8' | 'base64'
}

export interface WebhookReceiver {
  url: string
  /** Every POST as received, in arrival order (also those answered with an error). */
  posts: Array<{ headers: IncomingMessage['headers']; messages: WebhookMessage[]; status: number }>
  /** Messages of the POSTs answered 2xx, in arrival order. */
  delivered(): WebhookMessage[]
  /** How to answer the next POST (default 200). */
  respond: (messages: WebhookMessage[]) => number | Promise<number>
  close(): Promise<void>
}

/** A real HTTP server on 127.0.0.1 playing a webhook endpoint. */
export async function startWebhookReceiver(): Promise<WebhookReceiver> {
  const receiver: WebhookReceiver = {
    url: '',
    posts: [],
    delivered: () => receiver.posts.filter((p) => p.status >= 200 && p.status < 300).flatMap((p) => p.messages),
    respond: () => 200,
    close: async () => {
      server.closeAllConnections()
      await new Promise<void>((resolve) => server.close(() => resolve()))
    },
  }
  const server: Server = createServer((req: IncomingMessage, res: ServerResponse) => {
    const chunks: Buffer[] = []
    req.on('data', (c: Buffer) => chunks.push(c))
    req.on('end', () => {
      void (async () => {
        const body = JSON.parse(Buffer.concat(chunks).toString('utf8')) as { messages: WebhookMessage[] }
        const status = await receiver.respond(body.messages)
        receiver.posts.push({ headers: req.headers, messages: body.messages, status })
        res.writeHead(status).end()
      })()
    })
  })
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve))
  receiver.url = `http://127.0.0.1:${(server.address() as AddressInfo).port}/hook`
  return receiver
}

/** An IoT Hub telemetry topic with a property bag (system properties as `$.ct`, `$.ce`, ...). */
export function telemetryTopic(deviceId: string, props: Record<string, string> = {}): string {
  const bag = Object.entries(props).map(([k, v]) => `${encodeURIComponent(k)}=${encodeURIComponent(v)}`).join('&')
  return `devices/${deviceId}/messages/events/${bag}`
}

export const JSON_UTF8 = { '$.ct': 'application/json', '$.ce': 'utf-8' }

export async function publishJson(client: MqttClient, deviceId: string, body: unknown, props: Record<string, string> = {}): Promise<void> {
  await client.publishAsync(telemetryTopic(deviceId, { ...JSON_UTF8, ...props }), JSON.stringify(body), { qos: 1 })
}
