import { formatPropertyBag } from '../../src/protocol/property-bag.js'
import type { AggregateInput } from '../../src/analytics/definitions.js'

/**
 * What bench/aggregates aggregates: three aggregates over the telemetry topic, 1-second tumbling
 * windows by default, every one matching every record (so each reads and folds the whole
 * ingest): statistics of $body.temp, of $body.hum, and first/last temperature grouped by an
 * application property. Devices send a small JSON body `{"temp":21.5,"hum":40,"seq":"..."}` with
 * the property bag that makes it JSON to the gateway ($.ct, $.ce) and a `site` property.
 */

export const AGGREGATE_OUTPUT = 'aggregates'
export const SITES = ['north', 'south', 'east', 'west'] as const

export interface BenchAggregate {
  name: string
  body: Omit<AggregateInput, 'name'>
}

export function benchAggregates(windowMs: number, latenessMs: number): BenchAggregate[] {
  const common = { source: 'telemetry' as const, window: { type: 'tumbling' as const, sizeMs: windowMs }, allowedLatenessMs: latenessMs, output: AGGREGATE_OUTPUT }
  return [
    {
      name: 'temp-stats',
      body: { ...common, filter: 'true', functions: [{ fn: 'avg', path: '$body.temp' }, { fn: 'min', path: '$body.temp' }, { fn: 'max', path: '$body.temp' }] },
    },
    {
      name: 'hum-stats',
      body: { ...common, filter: 'true', functions: [{ fn: 'avg', path: '$body.hum' }, { fn: 'sum', path: '$body.hum' }, { fn: 'count', path: '$body.hum' }] },
    },
    {
      name: 'site-temp',
      body: { ...common, filter: 'IS_DEFINED(site)', groupBy: ['site'], functions: [{ fn: 'first', path: '$body.temp' }, { fn: 'last', path: '$body.temp' }] },
    },
  ]
}

/** Application properties of device `i`. */
export const deviceProperties = (i: number): Record<string, string> => ({ site: SITES[i % SITES.length]! })

/** The telemetry topic of device `i`: JSON content type and encoding when `json`, and its `site`. */
export function aggregateTopic(deviceId: string, i: number, json: boolean): string {
  const system = json ? { contentType: 'application/json', contentEncoding: 'utf-8' } : {}
  return `devices/${deviceId}/messages/events/${formatPropertyBag({ system, application: deviceProperties(i) })}`
}

/**
 * The JSON body template: fixed-width digits patched per publish (temp as NN.N, hum as NN, seq as
 * a string of ten digits: a JSON number may not have leading zeros), padded with a "pad" string to `bytes` when that is longer than the bare body.
 */
export interface BodyTemplate {
  text: string
  tempAt: number
  humAt: number
  seqAt: number
}

export function bodyTemplate(bytes: number): BodyTemplate {
  const bare = '{"temp":00.0,"hum":00,"seq":"0000000000"'
  const padding = bytes - bare.length - 1 - ',"pad":""'.length
  const text = `${bare}${padding > 0 ? `,"pad":"${'x'.repeat(padding)}"` : ''}}`
  return { text, tempAt: text.indexOf('"temp":') + 7, humAt: text.indexOf('"hum":') + 6, seqAt: text.indexOf('"seq":') + 7 }
}

/** Temperature in tenths (15.0 to 34.9) and humidity (30 to 89) of publish `seq` of device `i`. */
export const tempTenths = (i: number, seq: number): number => 150 + ((seq * 37 + i * 11) % 200)
export const humidity = (i: number, seq: number): number => 30 + ((seq + i * 3) % 60)

/** The body of publish `seq` of device `i` as text (for the in-process measurements). */
export function bodyText(template: BodyTemplate, i: number, seq: number): string {
  const t = tempTenths(i, seq)
  const chars = template.text.split('')
  const put = (at: number, digits: string): void => void chars.splice(at, digits.length, ...digits.split(''))
  put(template.tempAt, `${Math.floor(t / 10)}.${t % 10}`)
  put(template.humAt, String(humidity(i, seq)))
  put(template.seqAt, String(seq % 1e10).padStart(10, '0'))
  return chars.join('')
}
