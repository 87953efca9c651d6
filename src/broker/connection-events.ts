import type { Aedes, Client } from 'aedes'
import type { Logger } from '../observability/logger.js'
import type { GatewayMetrics } from '../observability/metrics.js'
import type { GatewayError } from '../errors/catalogue.js'
import { sentDisconnect } from './aedes-internals.js'
import { contexts } from './device-connection.js'
import type { ConnectionObserver, DisconnectReason } from './ports.js'

/**
 * Aedes' connection events turned into the ConnectionObserver's connected/disconnected, with the
 * reason the gateway decided on (or the one Aedes saw), and counted by reason.
 */
export function wireConnectionEvents(aedes: Aedes, observer: ConnectionObserver, metrics: GatewayMetrics, logger: Logger, onGone: (client: Client) => void): void {
  aedes.on('client', (client) => {
    const ctx = contexts.get(client)
    if (!ctx) return
    ctx.announced = true
    metrics.connects.inc()
    metrics.connections.set(aedes.connectedClients)
    observer.connected(ctx)
  })
  aedes.on('clientDisconnect', (client) => {
    onGone(client)
    metrics.connections.set(aedes.connectedClients)
    const ctx = contexts.get(client)
    if (!ctx || ctx.closed) return
    ctx.closed = true
    if (!ctx.announced) return
    const reason: DisconnectReason = ctx.closeReason ?? (sentDisconnect(client) ? 'client-disconnect' : 'socket-closed')
    metrics.disconnects.inc({ reason })
    observer.disconnected(ctx, reason)
  })
  aedes.on('keepaliveTimeout', (client) => {
    const ctx = contexts.get(client)
    if (ctx && !ctx.closeReason) ctx.closeReason = 'keepalive-timeout'
  })
  aedes.on('clientError', (client, err) => {
    const ctx = contexts.get(client)
    if (ctx && !ctx.closeReason) ctx.closeReason = `error:${(err as Partial<GatewayError>).code ?? 'E_PROTOCOL_ERROR'}`
    logger.debug({ deviceId: client.id, err: err.message }, 'client error')
  })
  aedes.on('connectionError', (client, err) => {
    onGone(client)
    logger.debug({ clientId: client?.id, err: err.message }, 'connection error before CONNECT completed')
  })
}
