import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import WebSocket from 'ws'
import type { MqttClient } from 'mqtt'
import type { RecordJson } from '../../src/stream/format.js'
import { connectDevice, sasFor, startTestGateway, waitFor, type TestGateway } from '../helpers/gateway.js'

/**
 * The API's live tail: GET /api/streams/:topic/tail upgraded to a WebSocket, with a real device
 * publishing over MQTT and a real `ws` client reading. Refusals are HTTP answers before the upgrade.
 */
describe('live tail over WebSocket (/api/streams/:topic/tail)', () => {
  let gw: TestGateway
  let device: MqttClient
  const sockets: WebSocket[] = []

  beforeAll(async () => {
    gw = await startTestGateway()
    const d = await gw.gateway.registry.create({ deviceId: 'tail-dev' })
    device = await connectDevice(gw.mqttUrl, 'tail-dev', sasFor(d))
    for (let i = 1; i <= 3; i++) await device.publishAsync('devices/tail-dev/messages/events/kind=early', `early-${i}`, { qos: 1 })
  })
  afterAll(async () => {
    for (const ws of sockets) ws.terminate()
    await device?.endAsync()
    await gw?.stop()
  })

  const url = (path: string): string => `${gw.httpUrl.replace('http', 'ws')}${path}`
  const auth = (): { headers: Record<string, string> } => ({ headers: { authorization: `Bearer ${gw.config.adminToken}` } })

  /** Open a tail and collect what it sends. */
  const openTail = async (path: string): Promise<{ ws: WebSocket; records: RecordJson[] }> => {
    const ws = new WebSocket(url(path), auth())
    sockets.push(ws)
    const records: RecordJson[] = []
    ws.on('message', (data) => records.push(JSON.parse(data.toString()) as RecordJson))
    await new Promise<void>((resolve, reject) => {
      ws.once('open', () => resolve())
      ws.once('error', reject)
    })
    return { ws, records }
  }

  /** The HTTP answer to an upgrade the gateway refuses: status and JSON error body. */
  const refusal = (path: string, headers: Record<string, string> = auth().headers): Promise<{ status: number; code: string }> =>
    new Promise((resolve, reject) => {
      const ws = new WebSocket(url(path), { headers })
      ws.once('open', () => reject(new Error(`${path} was upgraded`)))
      ws.once('error', () => undefined)
      ws.once('unexpected-response', (_req, res) => {
        let body = ''
        res.on('data', (chunk: Buffer) => (body += chunk.toString()))
        res.on('end', () => resolve({ status: res.statusCode ?? 0, code: (JSON.parse(body) as { error: { code: string } }).error.code }))
      })
    })

  const publishedTail = async (): Promise<void> => {
    await device.publishAsync('devices/tail-dev/messages/events/kind=live', 'live-1', { qos: 1 })
  }

  it('from=beginning: the records already held, in order, then new ones as they are written', async () => {
    const { records } = await openTail('/api/streams/telemetry/tail?from=beginning')
    await waitFor(() => records.length >= 3, 5000, 'the three earlier records')
    expect(records.map((r) => r.value)).toEqual(['early-1', 'early-2', 'early-3'])
    expect(records[0]).toMatchObject({ topic: 'telemetry', key: 'tail-dev', encoding: 'utf8', headers: { 'device-id': 'tail-dev', kind: 'early' } })
    expect(records[1]!.offset).toBe(records[0]!.offset + 1)
    await publishedTail()
    await waitFor(() => records.some((r) => r.value === 'live-1'), 5000, 'the live record')
    expect(records.at(-1)).toMatchObject({ value: 'live-1', headers: { kind: 'live' } })
  })

  it('lines=N starts N records before the end of each partition; from=end only sends what comes next', async () => {
    const last = await openTail('/api/streams/telemetry/tail?lines=2')
    const next = await openTail('/api/streams/telemetry/tail?from=end')
    await waitFor(() => last.records.length >= 2, 5000, 'the last two records')
    expect(last.records.map((r) => r.value)).toEqual(['early-3', 'live-1'])
    await device.publishAsync('devices/tail-dev/messages/events/', 'live-2', { qos: 1 })
    await waitFor(() => next.records.length >= 1 && last.records.length >= 3, 5000, 'live-2 on both tails')
    expect(next.records.map((r) => r.value)).toEqual(['live-2'])
    expect(last.records.map((r) => r.value)).toEqual(['early-3', 'live-1', 'live-2'])
  })

  it('takes the bare topic name or the prefixed one, and other topics (device-events)', async () => {
    const { records } = await openTail('/api/streams/device-events/tail?from=beginning')
    await waitFor(() => records.some((r) => (JSON.parse(r.value) as { type: string }).type === 'connected'), 5000, 'the connected event')
    expect(records.every((r) => r.key === 'tail-dev')).toBe(true)
  })

  it('refuses with the API error body: no or wrong token 401, unknown topic 404, bad partition or query 400', async () => {
    expect(await refusal('/api/streams/telemetry/tail', {})).toEqual({ status: 401, code: 'E_UNAUTHORIZED' })
    expect(await refusal('/api/streams/telemetry/tail', { authorization: 'Bearer wrong-token' })).toEqual({ status: 401, code: 'E_UNAUTHORIZED' })
    expect(await refusal('/api/streams/no-such-topic/tail')).toEqual({ status: 404, code: 'E_STREAM_TOPIC_UNKNOWN' })
    expect(await refusal('/api/streams/telemetry/tail?partition=99')).toEqual({ status: 400, code: 'E_BAD_REQUEST' })
    expect(await refusal('/api/streams/telemetry/tail?lines=abc')).toEqual({ status: 400, code: 'E_BAD_REQUEST' })
    expect(await refusal('/api/streams/telemetry/tail?from=yesterday')).toEqual({ status: 400, code: 'E_BAD_REQUEST' })
  })

  it('a chosen partition only: the device\'s partition has its records, another has none of them', async () => {
    const { records: all } = await openTail('/api/streams/telemetry/tail?from=beginning')
    await waitFor(() => all.length >= 5, 5000, 'all records')
    const mine = all[0]!.partition
    const other = (mine + 1) % gw.config.stream.partitions
    const { records: own } = await openTail(`/api/streams/telemetry/tail?from=beginning&partition=${mine}`)
    const { ws, records: elsewhere } = await openTail(`/api/streams/telemetry/tail?from=beginning&partition=${other}`)
    await waitFor(() => own.length >= 5, 5000, 'the partition records')
    expect(own.map((r) => r.value)).toEqual(all.map((r) => r.value))
    expect(ws.readyState).toBe(WebSocket.OPEN)
    expect(elsewhere).toEqual([])
  })

  it('closes open tails with 1001 when the gateway stops', async () => {
    const { ws } = await openTail('/api/streams/telemetry/tail')
    const closed = new Promise<number>((resolve) => ws.once('close', (code) => resolve(code)))
    await device.endAsync()
    await gw.stop()
    expect(await closed).toBe(1001)
  })
})
