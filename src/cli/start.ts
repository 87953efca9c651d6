import { parseArgs } from 'node:util'
import { Gateway, type GatewayAddresses } from '../app/gateway.js'
import type { GatewayConfig } from '../config/schema.js'
import { COMMON_OPTIONS, configFromFlags } from './common.js'
import { reportError } from './report.js'

const USAGE = `usage: streamgate start [--config FILE] [--data-dir DIR] [--hostname H] [--mqtt-port N]
                        [--http-port N] [--admin-token T] [--log-level L] [--set key=value ...]

Starts the gateway: MQTT on TCP, MQTT over WebSocket and the HTTP API on the HTTP port,
the embedded stream and registry in the data directory. Stops cleanly on SIGINT/SIGTERM;
SIGHUP reloads the TLS certificate, key and CA files (renewals without a restart).
With --set mqtt.tls.enabled=true also MQTT over TLS (8883), with --set http.wss.enabled=true
MQTT over secure WebSocket (443), which the Azure IoT device SDK needs; \`streamgate certs init\`
makes a development certificate for them (docs/azure-migration.md).`

export async function startCommand(argv: string[]): Promise<number> {
  let config: GatewayConfig
  try {
    const { values } = parseArgs({ args: argv, options: COMMON_OPTIONS, allowPositionals: false, strict: true })
    if (values.help) {
      process.stdout.write(USAGE + '\n')
      return 0
    }
    config = configFromFlags(values)
  } catch (err) {
    return reportError(err, USAGE)
  }
  // A failure to start (a port in use, a stream that is down) reaches main, which prints its code.
  return run(config)
}

async function run(config: GatewayConfig): Promise<number> {
  const gateway = new Gateway({ config })
  const addresses = await gateway.start().catch((err: unknown) => {
    // Start-up rolled back what it had started (app/lifecycle.ts); a handle something left open
    // must not keep a failed gateway alive, so that a supervisor sees the exit.
    setTimeout(() => process.exit(process.exitCode ?? 1), 5000).unref()
    gateway.logger.flush()
    throw err
  })
  process.stdout.write(banner(config, addresses, gateway))

  await new Promise<void>((resolve) => {
    const shutdown = (signal: NodeJS.Signals): void => {
      gateway.logger.info({ signal }, 'stopping')
      gateway.stop().then(resolve, (err: unknown) => {
        gateway.logger.error({ err }, 'error while stopping')
        resolve()
      })
    }
    process.once('SIGINT', shutdown)
    process.once('SIGTERM', shutdown)
    // SIGHUP: renewed TLS certificate files are taken without a restart (a failure keeps the old ones).
    process.on('SIGHUP', () => {
      if (!addresses.mqtts && !addresses.wss) return void gateway.logger.warn('SIGHUP: no TLS listener runs; nothing to reload')
      gateway.reloadTls().catch((err: unknown) => gateway.logger.error({ code: (err as { code?: string }).code, err: (err as Error).message }, 'TLS reload failed; the previous certificate stays in use'))
    })
  })
  gateway.logger.flush()
  return 0
}

function banner(config: GatewayConfig, a: GatewayAddresses, gateway: Gateway): string {
  const http = `http://${a.http.host}:${a.http.port}`
  const lines = [
    'streamgate is running',
    `  MQTT (TCP)          mqtt://${a.mqtt.host}:${a.mqtt.port}`,
    `  MQTT over WebSocket ws://${a.http.host}:${a.http.port}/mqtt  and  /$iothub/websocket`,
    ...(a.mqtts ? [`  MQTT over TLS       mqtts://${a.mqtts.host}:${a.mqtts.port}  (Azure SDK Mqtt transport)`] : []),
    ...(a.wss ? [`  MQTT over secure WS wss://${a.wss.host}:${a.wss.port}/$iothub/websocket  and  /mqtt  (Azure SDK MqttWs)`] : []),
    `  HTTP API            ${http}/api   (health ${http}/healthz, metrics ${http}/metrics)`,
    config.stream.backend === 'kafka'
      ? `  event stream        Kafka at ${config.stream.kafka.brokers.join(',')}; data directory ${gateway.dataDir} (device registry, command queue)`
      : `  data directory      ${gateway.dataDir}  (embedded stream, device registry, command queue)`,
    `  device host name    ${config.hostname}`,
  ]
  if (!a.mqtts && !a.wss) {
    lines.push('  TLS                 off (Azure SDK devices need it: streamgate certs init, then --set mqtt.tls.enabled=true)')
  }
  if (gateway.adminToken.source === 'generated') {
    lines.push(
      '',
      `  A new admin token was generated and saved to ${gateway.dataDir}/admin-token (mode 0600).`,
      `  It is shown this once: ${gateway.adminToken.token}`,
    )
  }
  lines.push(
    '',
    'Add a device and watch its telemetry (in another terminal):',
    '  npx streamgate devices add dev1',
    '  npx streamgate tail telemetry --follow',
    '',
  )
  return lines.join('\n') + '\n'
}
