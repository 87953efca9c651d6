import { readFileSync } from 'node:fs'
import { connect, type Socket } from 'node:net'
import * as hdr from 'hdr-histogram-js'
import mqttPacket from 'mqtt-packet'
import { bodyTemplate, humidity, tempTenths, type BodyTemplate } from './aggregates-fixtures.js'

/**
 * The JSON load of bench/aggregates, as a child process of its own (so its CPU is measured apart
 * from the bench's and the gateway's): the C load generator's model (bench/loadgen/loadgen.c:
 * every connection keeps `window` QoS 1 publishes unacknowledged, sending the next on each
 * PUBACK; or `rate` publishes/s in all), with JSON bodies the C generator cannot send. Per
 * connection one PUBLISH packet is encoded once; each send copies it and patches the packet id
 * and the body's digits (temperature, humidity, sequence), and all sends of one event-loop turn
 * of a connection go out in one write. PUBACKs are parsed by hand.
 *
 *   node aggregates-publisher.js '<PublisherOptions as JSON>'
 *
 * stdout: `{"event":"publishing","at":<epoch ms>}` once every connection is up, then the result
 * (the C generator's JSON shape) on one line. Progress and errors on stderr.
 */

export interface PublisherOptions {
  port: number
  host: string
  /** A connections file (loadgen.ts writeConnections): clientId TAB username TAB password TAB topic. */
  connections: string
  window: number
  seconds: number
  warmupSeconds: number
  /** Publishes per second in all; 0 saturates. */
  rate: number
  payloadBytes: number
  concurrency: number
}

const DRAIN_MS = 10_000

interface Conn {
  index: number
  socket: Socket
  packet: Buffer
  idAt: number
  body: BodyTemplate
  bodyAt: number
  inFlight: number
  nextId: number
  seq: number
  /** Send time (performance.now()) by packet id. */
  sentAt: Float64Array
  left: Buffer | null
  up: boolean
}

/** phase: -1 connecting, 0 warm-up, 1 measuring, 2 draining (no new publishes). */
let phase = -1
let sent = 0
let acked = 0
let windowAcked = 0
let connected = 0
let refused = 0
let failed = 0
const latency = hdr.build({ lowestDiscernibleValue: 1, highestTrackableValue: 60_000_000, numberOfSignificantValueDigits: 2 })

function encodedPublish(topic: string, body: BodyTemplate): { packet: Buffer; idAt: number; bodyAt: number } {
  const packet = mqttPacket.generate({ cmd: 'publish', topic, payload: Buffer.from(body.text), qos: 1, messageId: 1, retain: false, dup: false })
  const bodyAt = packet.length - Buffer.byteLength(body.text)
  return { packet, idAt: bodyAt - 2, bodyAt }
}

/** Queue `n` publishes on `c` in one write. */
function send(c: Conn, n: number, now: number): void {
  if (n <= 0 || !c.up) return
  const size = c.packet.length
  const out = Buffer.allocUnsafe(size * n)
  for (let k = 0; k < n; k++) {
    const at = k * size
    c.packet.copy(out, at)
    const id = c.nextId
    c.nextId = id === 65535 ? 1 : id + 1
    out[at + c.idAt] = id >> 8
    out[at + c.idAt + 1] = id & 0xff
    c.sentAt[id] = now
    const b = at + c.bodyAt
    const seq = c.seq++
    const t = tempTenths(c.index, seq)
    out[b + c.body.tempAt] = 48 + Math.floor(t / 100)
    out[b + c.body.tempAt + 1] = 48 + (Math.floor(t / 10) % 10)
    out[b + c.body.tempAt + 3] = 48 + (t % 10)
    const h = humidity(c.index, seq)
    out[b + c.body.humAt] = 48 + Math.floor(h / 10)
    out[b + c.body.humAt + 1] = 48 + (h % 10)
    let s = seq
    for (let d = 9; d >= 0; d--) {
      out[b + c.body.seqAt + d] = 48 + (s % 10)
      s = Math.floor(s / 10)
    }
  }
  c.inFlight += n
  sent += n
  c.socket.write(out)
}

function onData(c: Conn, chunk: Buffer, saturate: boolean, window: number, onConnack: (c: Conn, rc: number) => void): void {
  const buf = c.left ? Buffer.concat([c.left, chunk]) : chunk
  c.left = null
  const now = performance.now()
  let at = 0
  let acks = 0
  while (at + 2 <= buf.length) {
    let len = 0
    let mul = 1
    let p = at + 1
    let complete = false
    while (p < buf.length && p < at + 5) {
      const b = buf[p++]!
      len += (b & 0x7f) * mul
      mul *= 128
      if (!(b & 0x80)) {
        complete = true
        break
      }
    }
    if (!complete || p + len > buf.length) break
    const type = buf[at]! & 0xf0
    if (type === 0x40 && len >= 2) {
      const id = (buf[p]! << 8) | buf[p + 1]!
      acks++
      if (phase === 1) latency.recordValue(Math.max(1, Math.round((now - c.sentAt[id]!) * 1000)))
    } else if (type === 0x20 && len >= 2) {
      onConnack(c, buf[p + 1]!)
    }
    at = p + len
  }
  if (at < buf.length) c.left = Buffer.from(buf.subarray(at))
  if (acks === 0) return
  c.inFlight -= acks
  acked += acks
  if (phase === 1) windowAcked += acks
  if (saturate && (phase === 0 || phase === 1)) send(c, Math.min(acks, window - c.inFlight), now)
}

function cpuSeconds(): number {
  const u = process.cpuUsage()
  return (u.user + u.system) / 1e6
}

async function main(o: PublisherOptions): Promise<void> {
  const body = bodyTemplate(o.payloadBytes)
  const lines = readFileSync(o.connections, 'utf8').split('\n').filter((l) => l.trim() !== '')
  const saturate = o.rate <= 0
  const conns: Conn[] = []
  let pending = 0
  let next = 0
  await new Promise<void>((resolve) => {
    const settle = (): void => {
      if (connected + refused + failed === lines.length) resolve()
      else openMore()
    }
    const onConnack = (c: Conn, rc: number): void => {
      pending--
      if (rc === 0) {
        c.up = true
        connected++
      } else {
        refused++
        c.socket.destroy()
      }
      settle()
    }
    const openMore = (): void => {
      while (next < lines.length && pending < o.concurrency) {
        const index = next++
        const [clientId, username, password, topic] = lines[index]!.split('\t') as [string, string, string, string]
        const { packet, idAt, bodyAt } = encodedPublish(topic, body)
        const socket = connect({ host: o.host, port: o.port })
        socket.setNoDelay(true)
        const c: Conn = { index, socket, packet, idAt, body, bodyAt, inFlight: 0, nextId: 1, seq: 0, sentAt: new Float64Array(65536), left: null, up: false }
        conns.push(c)
        pending++
        let settled = false
        const connack = (conn: Conn, rc: number): void => {
          settled = true
          onConnack(conn, rc)
        }
        socket.on('data', (chunk: Buffer) => onData(c, chunk, saturate, o.window, connack))
        socket.on('error', () => undefined)
        socket.on('close', () => {
          const wasUp = c.up
          c.up = false
          if (!settled) {
            settled = true
            pending--
            failed++
            settle()
          } else if (wasUp && phase < 2) failed++
        })
        socket.write(mqttPacket.generate({ cmd: 'connect', protocolId: 'MQTT', protocolVersion: 4, clientId, clean: true, keepalive: 0, ...(username ? { username } : {}), ...(password ? { password: Buffer.from(password) } : {}) }))
      }
    }
    openMore()
  })
  if (connected === 0) {
    process.stderr.write(`aggregates-publisher: no connection accepted (${refused} refused, ${failed} failed)\n`)
    process.exit(1)
  }
  const live = conns.filter((c) => c.up)
  process.stdout.write(`${JSON.stringify({ event: 'publishing', at: Date.now() })}\n`)
  phase = 0
  const start = performance.now()
  let timer: NodeJS.Timeout | null = null
  if (saturate) {
    for (const c of live) send(c, o.window, start)
  } else {
    // Publishes due since the start, round robin over connections with room in their window.
    let rr = 0
    let due = 0
    timer = setInterval(() => {
      const now = performance.now()
      const target = Math.floor((o.rate * (now - start)) / 1000)
      const counts = new Map<Conn, number>()
      let full = 0
      while (due < target && full < live.length) {
        const c = live[rr]!
        rr = (rr + 1) % live.length
        const queued = counts.get(c) ?? 0
        if (c.up && c.inFlight + queued < o.window) {
          counts.set(c, queued + 1)
          due++
          full = 0
        } else {
          full++
        }
      }
      for (const [c, n] of counts) send(c, n, now)
    }, 2)
  }
  await new Promise((r) => setTimeout(r, o.warmupSeconds * 1000))
  phase = 1
  const cpuAtWindow = cpuSeconds()
  const windowStart = performance.now()
  await new Promise((r) => setTimeout(r, o.seconds * 1000))
  phase = 2
  const windowEnd = performance.now()
  const cpu = cpuSeconds() - cpuAtWindow
  if (timer) clearInterval(timer)
  const deadline = performance.now() + DRAIN_MS
  while (acked < sent && performance.now() < deadline && live.some((c) => c.up)) await new Promise((r) => setTimeout(r, 20))
  const elapsed = (windowEnd - windowStart) / 1000
  const q = (p: number): number => latency.getValueAtPercentile(p) / 1000
  const result = {
    mode: saturate ? 'saturate' : 'rate',
    conns: lines.length,
    connected,
    refused,
    failed,
    sent,
    acked,
    windowAcked,
    seconds: elapsed,
    rate: windowAcked / elapsed,
    p50Ms: q(50),
    p90Ms: q(90),
    p99Ms: q(99),
    p999Ms: q(99.9),
    maxMs: latency.maxValue / 1000,
    cpuSeconds: cpu,
    cpuShare: cpu / elapsed,
  }
  process.stdout.write(`${JSON.stringify(result)}\n`)
  const disconnect = mqttPacket.generate({ cmd: 'disconnect' })
  for (const c of live) c.socket.end(disconnect)
  setTimeout(() => process.exit(0), 200).unref()
}

const arg = process.argv[2]
if (!arg) {
  process.stderr.write("usage: aggregates-publisher.js '<options JSON>'\n")
  process.exit(2)
}
main(JSON.parse(arg) as PublisherOptions).catch((err: unknown) => {
  process.stderr.write(`aggregates-publisher: ${(err as Error).stack ?? String(err)}\n`)
  process.exit(2)
})
