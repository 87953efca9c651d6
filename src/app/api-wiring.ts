import type { FastifyInstance } from 'fastify'
import type { GatewayConfig } from '../config/schema.js'
import type { Logger } from '../observability/logger.js'
import type { GatewayMetrics } from '../observability/metrics.js'
import type { DeviceRegistry } from '../registry/types.js'
import type { EventStream } from '../stream/types.js'
import type { GatewayBroker } from '../broker/gateway-broker.js'
import type { ListenerContext } from '../broker/listeners.js'
import type { CommandChannel } from '../commands/command-channel.js'
import type { DeviceEventWriter } from '../ingest/device-events.js'
import { createApiServer, type ReadinessReport } from '../api/server.js'
import { tailRoute } from '../api/tail-socket.js'
import type { RoutingApi } from '../api/routing.js'
import type { AnalyticsApi } from '../api/analytics.js'
import type { ClusterApi } from '../api/cluster.js'
import type { StreamsApi } from '../api/streams.js'
import { attachHttpEdge } from './edge.js'

export interface ApiParts {
  registry: DeviceRegistry
  stream: EventStream
  commands: CommandChannel
  events: DeviceEventWriter
  broker: GatewayBroker
  metrics: GatewayMetrics
  logger: Logger
  adminToken: string
  readiness: () => ReadinessReport
  /** Close the device's connection wherever it is (this instance or another). */
  kick: (deviceId: string) => void
  cluster: ClusterApi
  routing: Omit<RoutingApi, 'maxJsonDepth'>
  analytics: AnalyticsApi
  streams: Omit<StreamsApi, 'stream'>
}

/**
 * The HTTP API of a gateway with its upgrade routes (MQTT over WebSocket, the live tail), not yet
 * listening. `close` takes them down: WebSocket clients first, then the API (its requests end).
 */
export async function createGatewayApi(config: GatewayConfig, edge: ListenerContext, p: ApiParts): Promise<{ api: FastifyInstance; close: () => Promise<void> }> {
  const api = await createApiServer({
    registry: p.registry,
    commands: p.commands,
    routing: { ...p.routing, maxJsonDepth: config.http.maxJsonDepth },
    analytics: p.analytics,
    cluster: p.cluster,
    streams: { stream: p.stream, ...p.streams },
    // Method payloads (128 KiB) and C2D payloads (64 KiB) travel inside JSON bodies.
    bodyLimit: 2 * Math.max(config.commands.maxMethodPayloadBytes, config.commands.maxMessageBytes, config.commands.maxTwinSectionBytes) + 16 * 1024,
    maxJsonDepth: config.http.maxJsonDepth,
    metrics: p.metrics,
    logger: p.logger,
    adminToken: p.adminToken,
    hostname: config.hostname,
    readiness: p.readiness,
    // Removal, disabling, a key rotation or a password change ends the live connection at
    // once: the device must prove itself again with what is valid now. The registry wrote the
    // change's device event to its outbox; flushing writes it to the stream now.
    onDeviceChanged: (deviceId, change) => {
      if (change === 'created') {
        void p.events.flush()
        return
      }
      p.kick(deviceId)
      if (change === 'removed') {
        void p.events.flush()
        void p.commands.deviceRemoved(deviceId).catch((err: unknown) => p.logger.error({ err, deviceId }, 'could not purge the queue of a removed device'))
      }
    },
    connectedInstance: async (deviceId) => (p.broker.connectionOf(deviceId) ? p.cluster.instanceId() : ((await p.cluster.owner(deviceId)) ?? null)),
    deviceConnection: (deviceId) => {
      const ctx = p.broker.connectionOf(deviceId)
      return ctx ? { connectedAt: new Date(ctx.connectedAt).toISOString(), remoteAddress: ctx.remoteAddress, transport: ctx.transport } : null
    },
  })
  const tail = tailRoute({
    stream: p.stream,
    adminToken: p.adminToken,
    topicPrefix: config.stream.topicPrefix,
    // Each empty poll of Kafka is a fetch round trip to the broker; the SQLite file is cheap to poll.
    pollMs: config.stream.backend === 'kafka' ? 250 : config.stream.embedded.pollIntervalMs,
    logger: p.logger,
    maxBufferedBytes: config.http.tailMaxBufferedBytes,
  })
  const upgrades = attachHttpEdge(api.server, config, edge, p.metrics, [tail.route])
  return {
    api,
    close: async () => {
      await upgrades.close()
      await tail.close()
      await api.close()
    },
  }
}
