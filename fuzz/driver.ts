import type mqttPacket from 'mqtt-packet'
import { FuzzConnection, type End } from './connection.js'
import type { Expectation, Session, Step } from './session.js'
import { encodeConnect } from './wire.js'

/**
 * Runs one fuzz case over a real TCP connection and checks what the gateway did against the
 * case's expectations. A refused CONNECT, a closed connection or a dropped forbidden publish is
 * what a correct gateway does; only the findings below are failures.
 */

export type FindingKind =
  | 'valid-connect-refused'
  | 'connack-code'
  | 'connect-unanswered'
  | 'oversize-kept-open'
  | 'acknowledged-refused'
  | 'acknowledged-unauthenticated'
  | 'upgrade-refused'

export interface Finding {
  kind: FindingKind
  /** Groups findings of one cause: the kind plus the rule broken. */
  signature: string
  what: string
  step?: number
}

export interface Bounds {
  /** We close a connection once nothing has moved on it for this long. */
  idleMs: number
  /** A registered device with a valid SAS token gets CONNACK 0 within this. */
  connackMs: number
  /** A complete CONNECT as the first packet is answered (CONNACK or close) within this. */
  answerMs: number
  /** A packet announcing more than its limit gets its connection closed within this. */
  closeMs: number
  /** Longest any one case may take (our own safety net). */
  sessionMs: number
}

export const DEFAULT_BOUNDS: Readonly<Bounds> = Object.freeze({ idleMs: 100, connackMs: 5000, answerMs: 5000, closeMs: 2000, sessionMs: 20_000 })

export interface DriverEnv {
  host: string
  port: number
  /** Source address of the connection (a loopback address other than the canary's), or the default. */
  localAddress?: string
  /** The HTTP port, for sessions over WebSocket; without it they run over TCP. */
  httpPort?: number
  /** A valid SAS token for fuzz device `device`, made now. */
  credentials(device: number): { deviceId: string; password: string }
  bounds: Bounds
}

export interface SessionResult {
  index: number
  login: Session['login']
  transport: 'tcp' | 'ws'
  /** HTTP status of the WebSocket upgrade. */
  upgrade: number | null
  deviceId: string
  /** Packets (steps, and the valid CONNECT) written before the connection closed. */
  packetsSent: number
  bytesSent: number
  end: End
  /** Return code of the first CONNACK, if one came. */
  connack: number | null
  received: Record<string, number>
  /** `$.mid`s of QoS 1 telemetry the gateway acknowledged. */
  acked: string[]
  findings: Finding[]
  parseError: string | null
  startedAt: number
  endedAt: number
}

const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms))

export async function runSession(session: Session, env: DriverEnv): Promise<SessionResult> {
  const { bounds } = env
  const startedAt = performance.now()
  const result: SessionResult = {
    index: session.index, login: session.login, transport: 'tcp', upgrade: null, deviceId: session.deviceId, packetsSent: 0, bytesSent: 0, end: 'connect-failed',
    connack: null, received: {}, acked: [], findings: [], parseError: null, startedAt, endedAt: startedAt,
  }
  const find = (kind: FindingKind, rule: string, what: string, step?: number): void => {
    result.findings.push({ kind, signature: `${kind}: ${rule}`, what, ...(step === undefined ? {} : { step }) })
  }
  /** Expectations by packet id, of framed steps sent while the stream was still clean. */
  const registry = new Map<number, { expect: Expectation; step: number }>()
  let dirty = false
  const onPacket = (p: mqttPacket.Packet): void => {
    result.received[p.cmd] = (result.received[p.cmd] ?? 0) + 1
    if (p.cmd === 'connack' && result.connack === null) result.connack = p.returnCode ?? -1
    const acks = p.cmd === 'puback' || p.cmd === 'pubrec' || p.cmd === 'suback' || (p.cmd === 'connack' && p.returnCode === 0)
    if (session.login === 'raw' && acks) {
      find('acknowledged-unauthenticated', `${p.cmd.toUpperCase()}${p.cmd === 'connack' ? ' 0' : ''} on a connection that never sent valid credentials`, `the gateway sent ${p.cmd.toUpperCase()} ${p.messageId ?? ''}`)
      return
    }
    if (p.cmd !== 'puback' && p.cmd !== 'pubrec' && p.cmd !== 'suback') return
    const reg = p.messageId === undefined ? undefined : registry.get(p.messageId)
    if (reg?.expect.kind === 'ack' && p.cmd === 'puback') result.acked.push(reg.expect.mid)
    // After damaged bytes an ack with this id may be for a packet the gateway read out of them.
    if (reg?.expect.kind === 'refuse' && !dirty) {
      find('acknowledged-refused', reg.expect.why, `${p.cmd.toUpperCase()} for step ${reg.step}, which a correct gateway refuses (${reg.expect.why})`, reg.step)
    }
  }
  const ws = session.transport.kind === 'ws' && env.httpPort !== undefined ? session.transport : null
  if (ws) result.transport = 'ws'
  const conn = await FuzzConnection.open(
    { host: env.host, port: ws ? env.httpPort! : env.port, ...(env.localAddress ? { localAddress: env.localAddress } : {}), timeoutMs: bounds.connackMs, ...(ws ? { ws: { path: ws.path, protocol: ws.protocol } } : {}) },
    onPacket,
  )
  if (!conn) return { ...result, endedAt: performance.now() }
  if (ws) {
    result.upgrade = conn.upgradeStatus
    if (conn.upgradeStatus !== 101) {
      if (MQTT_WS_PATHS.has(ws.path) && ws.protocol === 'mqtt') find('upgrade-refused', 'MQTT over WebSocket upgrade refused', `upgrade to ${ws.path} with sub-protocol mqtt answered ${conn.upgradeStatus ?? 'nothing'}`)
      conn.destroy()
      return { ...result, end: conn.end ?? 'closed-by-us', endedAt: performance.now() }
    }
  }
  const cap = setTimeout(() => conn.destroy(), bounds.sessionMs)
  try {
    if (session.login === 'valid' && !(await validConnect(session, env, conn, result, find))) return result
    await sendSteps(session, env, conn, result, registry, find, () => (dirty = true))
    await conn.settle(bounds.idleMs, bounds.sessionMs)
  } finally {
    clearTimeout(cap)
    conn.destroy()
    result.end = conn.end ?? 'closed-by-us'
    result.parseError = conn.parseError
    result.endedAt = performance.now()
  }
  return result
}

/** The gateway's MQTT over WebSocket paths (mqtt.js' default and IoT Hub's). */
const MQTT_WS_PATHS = new Set(['/mqtt', '/$iothub/websocket'])

type Find = (kind: FindingKind, rule: string, what: string, step?: number) => void

/** The real CONNECT of a registered device, which must be accepted with CONNACK 0. */
async function validConnect(session: Session, env: DriverEnv, conn: FuzzConnection, result: SessionResult, find: Find): Promise<boolean> {
  const { deviceId, password } = env.credentials(session.device)
  const bytes = validConnectBytes(deviceId, password, session.clean, session.keepalive).bytes
  conn.write(bytes)
  result.packetsSent++
  result.bytesSent += bytes.length
  await conn.until(() => result.connack !== null, env.bounds.connackMs)
  if (result.connack === 0) return true
  const how = result.connack !== null ? `CONNACK ${result.connack}` : conn.closed ? 'closed without CONNACK' : `no CONNACK within ${env.bounds.connackMs} ms`
  find('valid-connect-refused', how, `registered device ${deviceId} with a valid SAS token got ${how}`)
  return false
}

export function validConnectBytes(deviceId: string, password: string, clean: boolean, keepalive: number): ReturnType<typeof encodeConnect> {
  return encodeConnect({ protocolId: 'MQTT', level: 4, clientId: deviceId, clean, keepalive, username: `localhost/${deviceId}/?api-version=2021-04-12`, password: Buffer.from(password) })
}

async function sendSteps(
  session: Session,
  env: DriverEnv,
  conn: FuzzConnection,
  result: SessionResult,
  registry: Map<number, { expect: Expectation; step: number }>,
  find: Find,
  markDirty: () => void,
): Promise<void> {
  const { bounds } = env
  let answerBy = 0
  for (const [i, step] of session.steps.entries()) {
    if (step.pauseMs > 0) await sleep(step.pauseMs)
    if (conn.closed) break
    if (!step.framed) markDirty()
    const e = step.expect
    if (e && (e.kind === 'ack' || e.kind === 'refuse') && step.messageId !== undefined) registry.set(step.messageId, { expect: e, step: i })
    if (!(await write(conn, step))) break
    result.packetsSent++
    result.bytesSent += step.bytes.length
    if (e?.kind === 'answer') answerBy = performance.now() + bounds.answerMs
    if (e?.kind === 'connack') {
      await conn.until(() => result.connack !== null, bounds.answerMs)
      if (result.connack !== e.code) {
        const got = result.connack !== null ? `CONNACK ${result.connack}` : conn.closed ? 'the connection closed without a CONNACK' : `no answer within ${bounds.answerMs} ms`
        find('connack-code', `${e.why.replace(/level \d+/, 'level N')}: expected CONNACK ${e.code}`, `${got}; expected CONNACK ${e.code} (${e.why})`, i)
      }
    }
    if (e?.kind === 'close') {
      if (!(await conn.until(() => conn.closed, bounds.closeMs))) find('oversize-kept-open', oversizeRule(e.why), `connection still open ${bounds.closeMs} ms after ${e.why}`, i)
      return
    }
  }
  if (answerBy > 0) {
    const answered = await conn.until(() => result.connack !== null, answerBy - performance.now())
    if (!answered && !conn.closed) find('connect-unanswered', 'complete CONNECT neither answered nor closed', `no CONNACK and the connection still open ${bounds.answerMs} ms after a complete CONNECT`, 0)
  }
}

/** The rule without the numbers, so that one cause is one signature. */
function oversizeRule(why: string): string {
  return why.replace(/announcing \d+ bytes/, 'announcing more than its limit')
}

async function write(conn: FuzzConnection, step: Step): Promise<boolean> {
  let offset = 0
  for (const [k, size] of step.pieces.entries()) {
    if (k > 0 && step.trickleMs > 0) await sleep(step.trickleMs)
    if (!conn.write(step.bytes.subarray(offset, offset + size))) return offset > 0
    offset += size
  }
  return true
}
