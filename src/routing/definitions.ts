import { z } from 'zod'
import { GatewayError } from '../errors/catalogue.js'
import { RESERVED_HEADERS } from '../ingest/envelope.js'
import { compileQuery, parseTwinPath } from './query/index.js'

/**
 * What a route and an endpoint are, checked in one place: the API, the CLI (offline), the config
 * seeds and the store's own reads all go through checkRoute / checkEndpoint, so a definition that
 * reached the registry is one the router can run.
 *
 * IoT Hub's model (Message routing, "Endpoints and routes"): endpoints are named, a route names
 * its source, its condition and its endpoints, and enrichments belong to an endpoint.
 */

/** IoT Hub route and endpoint names: letters, digits, `-`, `_`, `.`; up to 64 characters. */
const NAME = /^[A-Za-z0-9._-]{1,64}$/
/** Kafka's topic name rule (249 is its ceiling; the prefix and a margin come off it). */
const TOPIC = /^[A-Za-z0-9._-]{1,200}$/
/** IoT Hub allows 10 enrichments per endpoint; the key and value bounds are its documented ones. */
export const MAX_ENRICHMENTS = 10
const ENRICHMENT_KEY = /^[A-Za-z0-9._-]{1,64}$/
const MAX_ENRICHMENT_VALUE = 128
/** One route may fan out to this many endpoints (IoT Hub: 1; several is what users ask for). */
export const MAX_ROUTE_ENDPOINTS = 10

/** `alerts`: the alert-raised / alert-cleared records of the alert rules (analytics/), e.g. to call a webhook. */
export const ROUTE_SOURCES = ['telemetry', 'device-events', 'twin-changes', 'alerts'] as const
export type RouteSource = (typeof ROUTE_SOURCES)[number]

/** `.` and `..` fit the patterns, but URL clients rewrite them out of a path (and Kafka refuses them as topics). */
const notDots = (text: string): boolean => text !== '.' && text !== '..'

const name = (what: string) =>
  z
    .string()
    .regex(NAME, `${what} names are 1 to 64 of A-Z a-z 0-9 . _ -`)
    .refine(notDots, `${what} names may not be . or ..`)

const enrichmentSchema = z.strictObject({
  key: z
    .string()
    .regex(ENRICHMENT_KEY, 'enrichment keys are 1 to 64 of A-Z a-z 0-9 . _ -')
    .refine((key) => !RESERVED_HEADERS.has(key), 'an enrichment may not replace a header the gateway sets (device-id, enqueued-time, system properties)'),
  value: z
    .string()
    .min(1)
    .max(MAX_ENRICHMENT_VALUE)
    .refine((value) => !value.startsWith('$') || value === '$deviceId' || value === '$hubName' || parseTwinPath(value) !== null, 'a value starting with $ is $deviceId, $hubName or $twin.tags.x / $twin.properties.desired.x / $twin.properties.reported.x'),
})
export type Enrichment = z.infer<typeof enrichmentSchema>

const endpointBase = {
  name: name('endpoint'),
  enrichments: z
    .array(enrichmentSchema)
    .max(MAX_ENRICHMENTS)
    .default([])
    .refine((list) => new Set(list.map((e) => e.key)).size === list.length, 'enrichment keys must be unique'),
  /** Attempts of one delivery before its messages go to the dead-letter topic (stream endpoints: see router). */
  maxAttempts: z.number().int().min(1).max(1000).default(10),
  /** First pause after a failed attempt; doubles up to maxBackoffMs. */
  backoffMs: z.number().int().min(1).max(60_000).default(200),
  maxBackoffMs: z.number().int().min(1).max(300_000).default(5000),
  /**
   * Source records read, evaluated and committed together. A stop or crash hands at most this
   * many records' matches to the endpoint again; smaller means fewer resent, larger keeps up with
   * a faster ingest (each read is a round of deliveries and one commit).
   */
  readBatch: z.number().int().min(1).max(10_000).default(500),
}

const streamEndpointSchema = z.strictObject({
  ...endpointBase,
  type: z.literal('stream'),
  /** Topic of the gateway's stream backend (stream.topicPrefix is put before it). */
  topic: z.string().regex(TOPIC, 'topic names are 1 to 200 of A-Z a-z 0-9 . _ -').refine(notDots, 'a topic may not be named . or ..'),
  /** Partitions when the gateway creates the topic (default stream.partitions). */
  partitions: z.number().int().min(1).max(1024).optional(),
})

const webhookEndpointSchema = z.strictObject({
  ...endpointBase,
  type: z.literal('webhook'),
  url: z
    .string()
    .max(2048)
    .refine((text) => URL.canParse(text) && /^https?:$/.test(new URL(text).protocol), 'url must be an http:// or https:// URL')
    .refine((text) => !URL.canParse(text) || (new URL(text).username === '' && new URL(text).password === ''), 'url may not carry credentials; give them as authHeader'),
  /**
   * Sent as the Authorization header. A secret: never returned by the API, never logged. Only
   * what an HTTP header value may hold (RFC 9110 field-value: tab, visible ASCII, obs-text): a
   * CR, LF or NUL would otherwise fail every delivery with an error that quotes the value.
   */
  authHeader: z
    .string()
    .min(1)
    .max(4096)
    .regex(/^[\t\x20-\x7e\x80-\xff]+$/, 'authHeader may hold only tab, visible ASCII and Latin-1 characters (no CR, LF or NUL)')
    .optional(),
  /** One POST waits this long for its answer. */
  timeoutMs: z.number().int().min(100).max(120_000).default(5000),
  /** Messages in one POST, and their bytes (payloads as sent); a batch past either is split. */
  maxBatch: z.number().int().min(1).max(1000).default(100),
  maxBatchBytes: z.number().int().min(1024).max(16 * 1024 * 1024).default(1024 * 1024),
})

export const endpointSchema = z.discriminatedUnion('type', [streamEndpointSchema, webhookEndpointSchema])
export type EndpointDefinition = z.infer<typeof endpointSchema>
export type StreamEndpointDefinition = z.infer<typeof streamEndpointSchema>
export type WebhookEndpointDefinition = z.infer<typeof webhookEndpointSchema>
export type EndpointInput = z.input<typeof endpointSchema>

export const routeSchema = z.strictObject({
  name: name('route'),
  source: z.enum(ROUTE_SOURCES).default('telemetry'),
  /**
   * IoT Hub routing query; empty or `true` routes every message of the source. Its length bound
   * (MAX_QUERY_LENGTH) is the compiler's, so that it is reported as E_ROUTE_QUERY_INVALID with a
   * column like every other problem of a condition.
   */
  condition: z.string().default('true'),
  endpoints: z
    .array(name('endpoint'))
    .min(1)
    .max(MAX_ROUTE_ENDPOINTS)
    .refine((list) => new Set(list).size === list.length, 'a route names each endpoint once'),
  enabled: z.boolean().default(true),
})
export type RouteDefinition = z.infer<typeof routeSchema>
export type RouteInput = z.input<typeof routeSchema>

/** Validate a route (its condition compiled: E_ROUTE_QUERY_INVALID with the column); E_BAD_REQUEST otherwise. */
export function checkRoute(input: unknown): RouteDefinition {
  const route = parseDefinition(routeSchema, input, 'route')
  compileQuery(route.condition)
  return route
}

export function checkEndpoint(input: unknown): EndpointDefinition {
  const endpoint = parseDefinition(endpointSchema, input, 'endpoint')
  if (endpoint.maxBackoffMs < endpoint.backoffMs) throw new GatewayError('E_BAD_REQUEST', 'endpoint: maxBackoffMs must be at least backoffMs', { field: 'maxBackoffMs' })
  return endpoint
}

/** What the API shows of an endpoint: the Authorization header is a secret. */
export function endpointView(endpoint: EndpointDefinition): Record<string, unknown> {
  if (endpoint.type !== 'webhook') return { ...endpoint }
  const { authHeader, ...rest } = endpoint
  return { ...rest, hasAuthHeader: authHeader !== undefined }
}

/** Parse with a zod schema; the first issue becomes E_BAD_REQUEST naming its field (`route.endpoints.0`). */
export function parseDefinition<T>(schema: z.ZodType<T>, input: unknown, what: string): T {
  const result = schema.safeParse(input)
  if (result.success) return result.data
  const issue = result.error.issues[0]!
  const field = issue.path.join('.')
  throw new GatewayError('E_BAD_REQUEST', `${what}${field ? `.${field}` : ''}: ${issue.message}`, { field })
}
