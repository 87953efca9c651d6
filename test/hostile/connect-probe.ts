import { connect as netConnect, type Socket } from 'node:net'
import { connect as tlsConnect, type ConnectionOptions } from 'node:tls'
import mqttPacket from 'mqtt-packet'

/**
 * One raw MQTT 3.1.1 CONNECT over a real socket (mqtt-packet on the wire, no client library
 * logic in between), resolving with the CONNACK return code and how long it took. Hostile tests
 * open hundreds of these at once, from chosen loopback source addresses.
 */
export interface ProbeOptions {
  port: number
  host?: string
  /** Source address to bind (127.0.0.2, 127.0.0.3, ... act as different clients). */
  localAddress?: string
  clientId: string
  /** Default: the SDK form `localhost/<clientId>/?api-version=2021-04-12`. */
  username?: string
  password?: string
  /** Give up after this long (default 30 s). */
  timeoutMs?: number
  /** Connect over TLS with these options (client certificate, CA, servername). */
  tls?: ConnectionOptions
}

export interface ProbeOutcome {
  /** CONNACK return code, or how the connection ended without one. */
  code: number | 'closed' | 'timeout'
  ms: number
}

export function probeConnect(o: ProbeOptions): Promise<ProbeOutcome> {
  const t0 = performance.now()
  const host = o.host ?? '127.0.0.1'
  const local = o.localAddress === undefined ? {} : { localAddress: o.localAddress }
  const socket: Socket = o.tls === undefined ? netConnect({ host, port: o.port, ...local }) : tlsConnect({ host, port: o.port, ...local, ...o.tls })
  return new Promise<ProbeOutcome>((resolve) => {
    const finish = (code: ProbeOutcome['code']): void => {
      clearTimeout(timer)
      socket.destroy()
      resolve({ code, ms: performance.now() - t0 })
    }
    const timer = setTimeout(() => finish('timeout'), o.timeoutMs ?? 30_000)
    const parser = mqttPacket.parser({ protocolVersion: 4 })
    parser.once('packet', (p) => finish(p.cmd === 'connack' ? (p as { returnCode: number }).returnCode : 'closed'))
    socket.on('data', (b: Buffer) => parser.parse(b))
    socket.on('error', () => finish('closed'))
    socket.on('close', () => finish('closed'))
    socket.once(o.tls === undefined ? 'connect' : 'secureConnect', () => {
      socket.write(
        mqttPacket.generate({
          cmd: 'connect',
          protocolId: 'MQTT',
          protocolVersion: 4,
          clientId: o.clientId,
          clean: false,
          keepalive: 60,
          username: o.username ?? `localhost/${o.clientId}/?api-version=2021-04-12`,
          ...(o.password === undefined ? {} : { password: Buffer.from(o.password) }),
        }),
      )
    })
  })
}

/** How many outcomes had each code, e.g. `{ '3': 380, '5': 20 }`. */
export function tally(outcomes: readonly ProbeOutcome[]): Record<string, number> {
  const counts: Record<string, number> = {}
  for (const { code } of outcomes) counts[String(code)] = (counts[String(code)] ?? 0) + 1
  return counts
}
