/**
 * Builds a RoutingMessage from plain objects for the query tests, the way the router's message
 * adapter presents a stream record: application property keys lower-cased, body parsed once.
 */
import type { RoutingMessage, RoutingTwin, SystemPropertyName } from '../../../src/routing/query/index.js'

export interface PlainMessage {
  system?: Partial<Record<SystemPropertyName, string>>
  app?: Record<string, string>
  /** The parsed JSON body; leave out for a message whose body is not JSON. */
  body?: unknown
  twin?: { tags?: Record<string, unknown>; desired?: Record<string, unknown>; reported?: Record<string, unknown> }
}

export function message(plain: PlainMessage = {}): RoutingMessage {
  const app = new Map(Object.entries(plain.app ?? {}).map(([k, v]) => [k.toLowerCase(), v]))
  const twin: RoutingTwin | undefined =
    plain.twin === undefined
      ? undefined
      : { tags: plain.twin.tags ?? {}, properties: { desired: plain.twin.desired ?? {}, reported: plain.twin.reported ?? {} } }
  return {
    system: (name) => plain.system?.[name],
    app: (lowerCaseName) => app.get(lowerCaseName),
    body: () => plain.body,
    twin: () => twin,
  }
}
