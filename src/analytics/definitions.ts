import { z } from 'zod'
import { GatewayError } from '../errors/catalogue.js'
import { parseDefinition } from '../routing/definitions.js'
import { compileQuery } from '../routing/query/index.js'

/**
 * What an aggregate and an alert rule are, checked in one place (the API, the CLI offline, the
 * store's own reads), as routing/definitions.ts does for routes: a definition that reached the
 * registry is one the analytics service can run.
 */

const NAME = /^[A-Za-z0-9._-]{1,64}$/
const TOPIC = /^[A-Za-z0-9._-]{1,200}$/
const notDots = (text: string): boolean => text !== '.' && text !== '..'
const name = (what: string) =>
  z
    .string()
    .regex(NAME, `${what} names are 1 to 64 of A-Z a-z 0-9 . _ -`)
    .refine(notDots, `${what} names may not be . or ..`)
const topic = z.string().regex(TOPIC, 'topic names are 1 to 200 of A-Z a-z 0-9 . _ -').refine(notDots, 'a topic may not be named . or ..')

/** A `$body` path as the routing query language writes it: `$body.a.b[0].c`. */
const BODY_PATH = /^\$body(\.[A-Za-z_][A-Za-z0-9_]*|\[\d{1,6}\]){1,16}$/
const bodyPath = z.string().max(256).regex(BODY_PATH, 'a path is $body followed by .name or [index] steps (up to 16), e.g. $body.sensors[0].temp')

export const AGGREGATE_SOURCES = ['telemetry', 'device-events'] as const
export const AGGREGATE_FUNCTIONS = ['count', 'sum', 'avg', 'min', 'max', 'first', 'last'] as const
export type AggregateFunction = (typeof AGGREGATE_FUNCTIONS)[number]

/** Bounds: a definition is cheap to hold and its output record small. */
export const MAX_FUNCTIONS = 32
export const MAX_GROUP_BY = 8
/** Windows are at least 100 ms and at most a day; a hopping window spans at most 100 hops. */
export const MIN_WINDOW_MS = 100
export const MAX_WINDOW_MS = 86_400_000
export const MAX_HOPS_PER_WINDOW = 100

const functionSchema = z
  .strictObject({
    fn: z.enum(AGGREGATE_FUNCTIONS),
    /** The numbers aggregated (count counts the records whose path holds a number; every output has the record count as `count`). */
    path: bodyPath,
    /** Name of the output field; default `<fn>_<path>` (`avg_temp` for avg of $body.temp). */
    as: z.string().regex(/^[A-Za-z_][A-Za-z0-9_]{0,63}$/, 'as is 1 to 64 of A-Z a-z 0-9 _, not starting with a digit').optional(),
  })

const windowSchema = z
  .strictObject({
    type: z.enum(['tumbling', 'hopping']).default('tumbling'),
    sizeMs: z.number().int().min(MIN_WINDOW_MS).max(MAX_WINDOW_MS),
    /** Hopping windows only: a new window starts every hopMs (a divisor of sizeMs). */
    hopMs: z.number().int().min(MIN_WINDOW_MS).max(MAX_WINDOW_MS).optional(),
  })
  .refine((w) => w.type === 'tumbling' || w.hopMs !== undefined, { message: 'a hopping window needs hopMs', path: ['hopMs'] })
  .refine((w) => w.type === 'hopping' || w.hopMs === undefined, { message: 'hopMs is for hopping windows only', path: ['hopMs'] })
  .refine((w) => w.hopMs === undefined || (w.hopMs <= w.sizeMs && w.sizeMs % w.hopMs === 0), { message: 'hopMs must divide sizeMs', path: ['hopMs'] })
  .refine((w) => w.hopMs === undefined || w.sizeMs / w.hopMs <= MAX_HOPS_PER_WINDOW, { message: `a window may span at most ${MAX_HOPS_PER_WINDOW} hops`, path: ['hopMs'] })

export const aggregateSchema = z.strictObject({
  name: name('aggregate'),
  source: z.enum(AGGREGATE_SOURCES).default('telemetry'),
  /** Routing query language; only records it matches are aggregated. */
  filter: z.string().default('true'),
  /** Application properties grouped by besides the device id (case-insensitive, as in routing). */
  groupBy: z.array(z.string().regex(/^[A-Za-z0-9._-]{1,64}$/, 'groupBy names application properties: 1 to 64 of A-Z a-z 0-9 . _ -')).max(MAX_GROUP_BY).default([]),
  window: windowSchema,
  functions: z.array(functionSchema).min(1).max(MAX_FUNCTIONS),
  /**
   * Event time: a $body path holding epoch milliseconds or an ISO 8601 string; default the record's
   * enqueued time. A record whose path holds neither falls back to its enqueued time (counted).
   */
  timestampBy: bodyPath.optional(),
  /** A window closes once the device's watermark is this far past its end. */
  allowedLatenessMs: z.number().int().min(0).max(MAX_WINDOW_MS).default(0),
  /**
   * A device that sends nothing for this long (wall clock, once the source is read to its end) has
   * its watermark moved on by the wall clock, so its last windows close. Default 0 with enqueued
   * time (the gateway's clock is the wall clock), 10 s with timestampBy (a device's clock may run
   * faster or slower than the wall clock, and a pause must not close a window it is still filling).
   */
  idleTimeoutMs: z.number().int().min(0).max(MAX_WINDOW_MS).optional(),
  /** A record for a window of its device that already closed: dropped, or moved to the oldest open time. */
  latePolicy: z.enum(['drop', 'adjust']).default('drop'),
  /** Topic of the output records (stream.topicPrefix is put before it). */
  output: topic.default('aggregates'),
  enabled: z.boolean().default(true),
})
export type AggregateDefinition = z.infer<typeof aggregateSchema>
export type AggregateInput = z.input<typeof aggregateSchema>

export const alertRuleSchema = z
  .strictObject({
    name: name('alert rule'),
    /** Single messages of the telemetry topic, or the output records of one aggregate. */
    source: z.union([z.strictObject({ telemetry: z.literal(true) }), z.strictObject({ aggregate: name('aggregate') })]).default({ telemetry: true }),
    /** Routing query language over the message, or over the aggregate's output (`$body.avg_temp > 80`). */
    condition: z.string().min(1),
    /** Raise only when the condition held for this long (event time, from the first violating record). */
    forMs: z.number().int().min(0).max(MAX_WINDOW_MS).default(0),
    /** Clears an open alert when true; default: when the condition no longer holds. */
    clearCondition: z.string().min(1).optional(),
    /** Clears an open alert when no violating record came for this long (wall clock). */
    clearAfterMs: z.number().int().min(100).max(MAX_WINDOW_MS).optional(),
    /** The value written with the alert (a query expression such as `$body.temp`); default the record's JSON body. */
    value: z.string().min(1).optional(),
    severity: z.enum(['info', 'warning', 'critical']).default('warning'),
    enabled: z.boolean().default(true),
  })
export type AlertRuleDefinition = z.infer<typeof alertRuleSchema>
export type AlertRuleInput = z.input<typeof alertRuleSchema>

/** Validate an aggregate (its filter and paths compiled: E_ROUTE_QUERY_INVALID with the column). */
export function checkAggregate(input: unknown): AggregateDefinition {
  const aggregate = parseDefinition(aggregateSchema, input, 'aggregate')
  compileQuery(aggregate.filter)
  const fields = new Set<string>()
  for (const f of aggregate.functions) {
    const field = outputField(f)
    if (RESERVED_FIELDS.has(field) || fields.has(field)) throw new GatewayError('E_BAD_REQUEST', `aggregate.functions: output field "${field}" is used twice or is reserved; give one of them "as"`, { field: 'functions' })
    fields.add(field)
  }
  return aggregate
}

export function checkAlertRule(input: unknown): AlertRuleDefinition {
  const rule = parseDefinition(alertRuleSchema, input, 'alert rule')
  compileQuery(rule.condition)
  if (rule.clearCondition !== undefined) compileQuery(rule.clearCondition)
  if (rule.value !== undefined) compileQuery(rule.value)
  return rule
}

/** The aggregate an alert rule reads, or undefined for a rule over single messages. */
export function ruleAggregate(rule: AlertRuleDefinition): string | undefined {
  return 'aggregate' in rule.source ? rule.source.aggregate : undefined
}

/** Fields every output record has; a function's field may not take one of these names. */
const RESERVED_FIELDS = new Set(['windowStart', 'windowEnd', 'group', 'count', 'deviceId', 'skipped', 'late', 'adjusted'])

/** `<fn>_<path>` with the path's steps joined by `_` (`avg_sensors_0_temp`), or the function's `as`. */
export function outputField(f: { fn: AggregateFunction; path: string; as?: string | undefined }): string {
  if (f.as !== undefined) return f.as
  const steps = f.path.slice('$body'.length).split(/[.[\]]+/).filter((s) => s !== '')
  return `${f.fn}_${steps.join('_')}`
}
