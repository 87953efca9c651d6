import { z } from 'zod'
import { GatewayError } from '../errors/catalogue.js'
import type { Headers, StoredRecord } from '../stream/types.js'
import { ROUTE_SOURCES, type EndpointDefinition, type RouteDefinition } from './definitions.js'
import { compileEnrichments } from './enrich.js'
import { RecordMessage } from './message.js'
import type { CompiledQuery } from './query/index.js'
import type { TwinDocument } from './twin-cache.js'

/**
 * `POST /api/routes/test` and `streamgate routes test`: a condition (and an endpoint's
 * enrichments) run against a sample message, with the reason it matched or not. The sample is
 * turned into the same stream record the ingest would write, so what matches here matches there.
 */

const MAX_SAMPLE_PROPERTIES = 64
const plainObject = z.record(z.string(), z.unknown())

export const routeTestBody = z.strictObject({
  /** A condition to try, or the name of a stored route (its condition and its endpoints' enrichments). */
  condition: z.string().optional(),
  route: z.string().max(64).optional(),
  /** Whose enrichments to show (default: the route's endpoints). */
  endpoint: z.string().max(64).optional(),
  source: z.enum(ROUTE_SOURCES).default('telemetry'),
  message: z
    .strictObject({
      deviceId: z.string().min(1).max(128).default('sample-device'),
      /** A JSON value (sent as application/json, UTF-8 unless the system properties say otherwise) or a string. */
      body: z.unknown().optional(),
      /** Application properties. */
      properties: z.record(z.string().max(256), z.string().max(4096)).default({}).refine((p) => Object.keys(p).length <= MAX_SAMPLE_PROPERTIES, `at most ${MAX_SAMPLE_PROPERTIES} properties`),
      contentType: z.string().max(256).optional(),
      contentEncoding: z.string().max(64).optional(),
      messageId: z.string().max(256).optional(),
      correlationId: z.string().max(256).optional(),
    })
    .prefault({}),
  /** The twin to read; default: the device's twin from the registry. */
  twin: z
    .strictObject({
      tags: plainObject.default({}),
      properties: z.strictObject({ desired: plainObject.default({}), reported: plainObject.default({}) }).prefault({}),
    })
    .optional(),
}).refine((b) => (b.condition === undefined) !== (b.route === undefined), 'give condition or route (one of them)')
export type RouteTestBody = z.infer<typeof routeTestBody>

export interface RouteTestResult {
  matched: boolean
  /** The condition's value: true, false, or what it was instead (null stands for undefined). */
  value: unknown
  reason: string
  steps: Array<{ text: string; value: unknown }>
  /** Per endpoint: the headers its enrichments would stamp. */
  enrichments: Record<string, Headers>
}

export function sampleRecord(body: RouteTestBody, topic: string): StoredRecord {
  const m = body.message
  const isText = typeof m.body === 'string'
  const value = m.body === undefined ? Buffer.alloc(0) : Buffer.from(isText ? (m.body as string) : JSON.stringify(m.body))
  const now = Date.now()
  const headers: Headers = { ...m.properties }
  const contentType = m.contentType ?? (isText || m.body === undefined ? undefined : 'application/json')
  const contentEncoding = m.contentEncoding ?? (contentType === undefined ? undefined : 'UTF-8')
  if (contentType !== undefined) headers['content-type'] = contentType
  if (contentEncoding !== undefined) headers['content-encoding'] = contentEncoding
  if (m.messageId !== undefined) headers['message-id'] = m.messageId
  if (m.correlationId !== undefined) headers['correlation-id'] = m.correlationId
  headers['device-id'] = m.deviceId
  headers['enqueued-time'] = String(now)
  return { topic, partition: 0, offset: 0, key: m.deviceId, value, headers, timestamp: now }
}

export function runRouteTest(body: RouteTestBody, query: CompiledQuery, endpoints: EndpointDefinition[], twin: TwinDocument | undefined, hubName: string): RouteTestResult {
  const record = sampleRecord(body, body.source)
  const message = new RecordMessage(record, body.source === 'telemetry' ? 'telemetry' : 'device-event', twin)
  const { value, steps } = query.explain(message)
  const enrichments: Record<string, Headers> = {}
  for (const endpoint of endpoints) {
    const stamped = compileEnrichments(endpoint.enrichments, hubName).apply({}, body.message.deviceId, twin)
    enrichments[endpoint.name] = stamped
  }
  return { matched: value === true, value: value === undefined ? null : value, reason: reasonFor(value, twin, query), steps: steps.map((s) => ({ text: s.text, value: s.value === undefined ? null : s.value })), enrichments }
}

function reasonFor(value: unknown, twin: TwinDocument | undefined, query: CompiledQuery): string {
  if (value === true) return 'the condition is true: the message is routed'
  if (value === false) return 'the condition is false: the message is not routed'
  const what = value === undefined ? 'undefined (a property it reads is missing, or values of different types were compared)' : `${JSON.stringify(value)}, not a boolean`
  const hint = query.usesTwin && twin === undefined ? '; the device has no twin (unknown device)' : ''
  return `the condition is ${what}${hint}: that counts as no match, as in IoT Hub`
}

/**
 * What a test runs: the given condition, or a stored route's condition and source; the named
 * endpoint's enrichments, else the route's endpoints'. E_ROUTE_NOT_FOUND, E_ENDPOINT_NOT_FOUND.
 */
export function resolveRouteTest(body: RouteTestBody, definitions: { routes: RouteDefinition[]; endpoints: EndpointDefinition[] }): { body: RouteTestBody; condition: string; endpoints: EndpointDefinition[] } {
  let condition = body.condition ?? 'true'
  let endpointNames = body.endpoint === undefined ? [] : [body.endpoint]
  let resolved = body
  if (body.route !== undefined) {
    const route = definitions.routes.find((r) => r.name === body.route)
    if (!route) throw new GatewayError('E_ROUTE_NOT_FOUND', `route "${body.route}" not found`, { route: body.route })
    condition = route.condition
    if (body.endpoint === undefined) endpointNames = route.endpoints
    resolved = { ...body, source: route.source }
  }
  return { body: resolved, condition, endpoints: endpointsFor(endpointNames, definitions.endpoints) }
}

export function endpointsFor(names: string[], all: EndpointDefinition[]): EndpointDefinition[] {
  return names.map((name) => {
    const found = all.find((e) => e.name === name)
    if (!found) throw new GatewayError('E_ENDPOINT_NOT_FOUND', `endpoint "${name}" not found`, { endpoint: name })
    return found
  })
}
