import type { Server as HttpServer } from 'node:http'
import type { GatewayConfig } from '../config/schema.js'
import type { Logger } from '../observability/logger.js'
import type { GatewayMetrics } from '../observability/metrics.js'
import { RepeatLimitedLog } from '../observability/repeat-log.js'
import { ConnectionAdmission } from '../broker/admission.js'
import { connectionBudget } from '../broker/fd-limit.js'
import type { GatewayBroker } from '../broker/gateway-broker.js'
import { admitHttpConnections, mqttOverWebSocket, type ListenerContext } from '../broker/listeners.js'
import { attachUpgradeRouter, type UpgradeRoute } from '../broker/upgrade-router.js'

/**
 * The edge: admission control for every listener, sized to the process's open-file limit, and the
 * HTTP port's WebSocket upgrades (MQTT over WebSocket and the routes the API adds, such as the
 * live tail) behind one router.
 */
export function createAdmission(config: GatewayConfig, metrics: GatewayMetrics, logger: Logger): { admission: ConnectionAdmission; refusals: RepeatLimitedLog } {
  const budget = connectionBudget(config.limits.maxConnections, config.limits.fdReserve, config.http.maxConnections)
  if (budget.lowered !== undefined) {
    logger.warn(
      { configured: budget.lowered, maxConnections: budget.maxConnections, openFiles: budget.openFiles },
      `limits.maxConnections ${budget.lowered} is more than the open-file limit of ${budget.openFiles} allows; using ${budget.maxConnections}`,
    )
  }
  const refusals = new RepeatLimitedLog(logger.child({ component: 'admission' }), config.log.repeatIntervalSeconds * 1000, metrics.logLinesLeftOut)
  const l = config.limits
  const admission = new ConnectionAdmission(
    { maxConnections: budget.maxConnections, maxPending: l.maxPendingConnections, maxPendingPerAddress: l.maxPendingConnectionsPerAddress, maxHttp: config.http.maxConnections },
    {
      refused: (reason, code, address) => {
        metrics.connectionsRefused.inc({ reason })
        refusals.warn(code, { reason, address }, `connection closed at accept: ${reason}`)
      },
    },
  )
  metrics.watchAdmission(() => ({ pending: admission.pending, mqtt: admission.mqtt, http: admission.http, maxConnections: budget.maxConnections }))
  return { admission, refusals }
}

export function listenerContext(config: GatewayConfig, broker: GatewayBroker, admission: ConnectionAdmission, metrics: GatewayMetrics, refusals: RepeatLimitedLog): ListenerContext {
  return {
    broker,
    admission,
    handshakeTimeoutMs: config.mqtt.connectTimeoutSeconds * 1000,
    onAcceptError: (err, listener) => {
      metrics.acceptErrors.inc({ code: err.code ?? 'unknown' })
      refusals.warn(err.code ?? 'E_INTERNAL', { listener, err: err.message }, 'accept() failed on a listener')
    },
  }
}

/** WebSocket messages are bounded like MQTT packets: the largest payload plus its topic and headers. */
export function wsMaxMessageBytes(config: GatewayConfig): number {
  return config.limits.maxPayloadBytes + 70 * 1024
}

/**
 * Put the API's HTTP server under admission control and route its upgrades: MQTT over WebSocket
 * first, then `routes` (the live tail). Returns what closes them (WebSocket clients terminated).
 */
export function attachHttpEdge(server: HttpServer, config: GatewayConfig, ctx: ListenerContext, metrics: GatewayMetrics, routes: readonly UpgradeRoute[]): { close(): Promise<void> } {
  admitHttpConnections(server, ctx, config.http.headersTimeoutSeconds * 1000)
  const ws = mqttOverWebSocket(ctx, wsMaxMessageBytes(config), 'ws', true)
  const router = attachUpgradeRouter(server, [ws.route, ...routes], (status) => metrics.upgradeRefusals.inc({ status: String(status) }))
  return {
    close: async () => {
      router.close()
      await ws.close()
    },
  }
}
