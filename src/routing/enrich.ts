import type { Headers } from '../stream/types.js'
import type { Enrichment } from './definitions.js'
import { parseTwinPath } from './query/index.js'
import type { TwinDocument } from './twin-cache.js'

/**
 * IoT Hub message enrichments, per endpoint: up to 10 key/value pairs stamped on every message
 * the endpoint gets, as headers (application properties). A value is a static string,
 * `$deviceId`, `$hubName` (the gateway's hostname), or a twin path (`$twin.tags.x`,
 * `$twin.properties.desired.x`, `$twin.properties.reported.x`) read through the twin cache. As in
 * IoT Hub, a twin path that leads nowhere stamps the path text itself, so a missing tag is visible
 * downstream rather than silently absent; a value that is not a string is stamped as its JSON.
 * An enrichment replaces an application property of the same name (the gateway's own headers
 * cannot be named: definitions.ts refuses them).
 */

type Resolve = (deviceId: string, twin: TwinDocument | undefined) => string

export interface CompiledEnrichments {
  readonly usesTwin: boolean
  apply(headers: Headers, deviceId: string, twin: TwinDocument | undefined): Headers
}

export function compileEnrichments(list: readonly Enrichment[], hubName: string): CompiledEnrichments {
  let usesTwin = false
  const resolvers: Array<[string, Resolve]> = list.map(({ key, value }) => {
    if (value === '$deviceId') return [key, (deviceId) => deviceId]
    if (value === '$hubName') return [key, () => hubName]
    const path = value.startsWith('$twin.') ? parseTwinPath(value) : null
    if (!path) return [key, () => value]
    usesTwin = true
    return [key, (_, twin) => (twin === undefined ? value : stamp(path(twin), value))]
  })
  return {
    usesTwin,
    apply(headers, deviceId, twin) {
      if (resolvers.length === 0) return headers
      const out = { ...headers }
      for (const [key, resolve] of resolvers) out[key] = resolve(deviceId, twin)
      return out
    },
  }
}

function stamp(found: unknown, pathText: string): string {
  if (found === undefined) return pathText
  return typeof found === 'string' ? found : JSON.stringify(found)
}
