import type { StreamsApi } from './streams.js'
import type { DeviceRegistry } from '../registry/types.js'
import type { GatewayMetrics } from '../observability/metrics.js'
import type { Logger } from '../observability/logger.js'
import type { C2dService } from '../commands/c2d-service.js'
import type { MethodInvoker } from '../commands/method-invoker.js'
import type { TwinService } from '../commands/twin-service.js'
import type { RoutingApi } from './routing.js'
import type { AnalyticsApi } from './analytics.js'
import type { ClusterApi } from './cluster.js'

/** The command channel as the API uses it (cloud-to-device messages, direct methods, twins). */
export interface CommandsApi {
  c2d: Pick<C2dService, 'send' | 'list' | 'purge'>
  methods: Pick<MethodInvoker, 'invoke'>
  twins: Pick<TwinService, 'get' | 'patchDesired' | 'patchTags'>
}

/**
 * An admin change the gateway reacts to: it records `created` and `removed` on `device-events`,
 * and disconnects the live device on the others (and on `removed`).
 */
export type DeviceChange = 'created' | 'removed' | 'disabled' | 'keys-rotated' | 'password-changed' | 'kicked'

export interface ReadinessReport {
  ready: boolean
  checks: Record<string, { ok: boolean; detail?: string }>
}

/** What this gateway instance knows of a device's live MQTT connection (not stored anywhere). */
export interface LiveConnection {
  connectedAt: string
  remoteAddress?: string
  /** 'tcp' | 'tls' | 'ws' | 'wss', as the broker reports it. */
  transport?: string
}

/**
 * Everything the HTTP API needs, handed in by the composition root.
 *
 * - adminToken: bearer token every /api route requires (see resolveAdminToken).
 * - hostname: the HostName put in connection strings (config `hostname`).
 * - readiness: called per GET /readyz; must be cheap and must not throw.
 * - onDeviceChanged: called after the change is committed; a throw is logged and does not fail the
 *   request (the change already happened).
 * - deviceConnection: when given, GET /api/devices/:id adds `live` (null when this instance has no
 *   connection for the device). The registry's connectionState is the fleet-wide view.
 */
export interface ApiDeps {
  registry: DeviceRegistry
  metrics: GatewayMetrics
  logger: Logger
  adminToken: string
  hostname: string
  readiness: () => ReadinessReport
  onDeviceChanged?: (deviceId: string, change: DeviceChange) => void
  deviceConnection?: (deviceId: string) => LiveConnection | null
  /** When given, GET /api/devices/:id adds `instanceId`: the instance holding its connection (null: none). */
  connectedInstance?: (deviceId: string) => Promise<string | null>
  /** When given, the message, method and twin routes are served. */
  commands?: CommandsApi
  /** When given, /api/routes and /api/endpoints are served. */
  routing?: RoutingApi
  analytics?: AnalyticsApi
  /** When given, /api/instances is served. */
  /** GET /api/streams: topics, offsets, consumer groups and lag. */
  streams?: StreamsApi
  cluster?: ClusterApi
  /** Largest request body in bytes; default 64 KiB (device admin bodies are tiny). */
  bodyLimit?: number
  /** Nesting levels of a JSON payload passed on to a device (http.maxJsonDepth; default 64). */
  maxJsonDepth?: number
}
