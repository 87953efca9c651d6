import { mkdtempSync, rmSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { afterEach, beforeEach, describe, expect, it } from 'vitest'
import { AggregateProcessor } from '../../src/analytics/aggregate-processor.js'
import { checkAggregate } from '../../src/analytics/definitions.js'
import { OUTPUT_ID_HEADER, ProcessorRunner } from '../../src/analytics/processor-runner.js'
import { GatewayError } from '../../src/errors/catalogue.js'
import { createLogger } from '../../src/observability/logger.js'
import { SqliteAnalyticsStore } from '../../src/registry/sqlite-analytics-store.js'
import { SqliteEventStream } from '../../src/stream/embedded/sqlite-event-stream.js'
import type { AppendResult, EventStream, OutgoingRecord } from '../../src/stream/types.js'
import { waitFor } from '../helpers/gateway.js'

/**
 * The runner's exactly-once output across failures of the output append, on a real SQLite stream
 * and a real registry file: an append whose answer is lost after it landed, and one refused before
 * it landed. Either way every window is in the output once.
 */
describe('ProcessorRunner exactly-once output', () => {
  let dir: string
  let stream: SqliteEventStream
  let store: SqliteAnalyticsStore
  const runners: ProcessorRunner[] = []

  beforeEach(async () => {
    dir = mkdtempSync(join(tmpdir(), 'streamgate-runner-'))
    stream = new SqliteEventStream({
      file: join(dir, 'stream.db'), synchronous: 'NORMAL', maxBatchRecords: 1000, lingerMs: 0, retentionHours: 0,
      retentionMaxMiBPerPartition: 0, retentionIntervalSeconds: 0, pollIntervalMs: 20, busyTimeoutMs: 20,
    })
    await stream.start([{ name: 'telemetry', partitions: 1 }, { name: 'out', partitions: 2 }])
    store = new SqliteAnalyticsStore({ file: join(dir, 'registry.db') })
    await store.start()
  })
  afterEach(async () => {
    for (const r of runners.splice(0)) await r.stop()
    await store.stop()
    await stream.stop()
    rmSync(dir, { recursive: true, force: true })
  })

  const definition = checkAggregate({ name: 'sum', window: { sizeMs: 1000 }, timestampBy: '$body.ts', functions: [{ fn: 'sum', path: '$body.v' }], output: 'out' })
  const T = 1_800_000_000_000
  const record = (device: string, ts: number, v: number): OutgoingRecord => ({
    key: device,
    value: Buffer.from(JSON.stringify({ ts, v })),
    headers: { 'device-id': device, 'enqueued-time': String(ts), 'content-type': 'application/json', 'content-encoding': 'utf-8' },
  })

  /** The stream, with the output appends failing as `fail` says for the calls it names. */
  function faulty(fail: (call: number) => 'lost-answer' | 'refused' | null): { stream: EventStream; calls: () => number } {
    let calls = 0
    const wrapped = Object.create(stream) as EventStream
    wrapped.append = async (topic: string, records: OutgoingRecord[]): Promise<AppendResult[]> => {
      if (topic !== 'out') return stream.append(topic, records)
      const how = fail(++calls)
      if (how === 'refused') throw new GatewayError('E_STREAM_UNAVAILABLE', 'injected: refused before it landed')
      const results = await stream.append(topic, records)
      if (how === 'lost-answer') throw new GatewayError('E_STREAM_UNAVAILABLE', 'injected: landed, answer lost')
      return results
    }
    return { stream: wrapped, calls: () => calls }
  }

  function runner(s: EventStream): ProcessorRunner {
    const r = new ProcessorRunner({
      stream: s, store, processorId: 'aggregate:sum', fingerprint: 'f1', topic: 'telemetry', partition: 0, outputTopic: 'out',
      make: (state) => new AggregateProcessor(definition, state), emitted: () => undefined, logger: createLogger('silent'),
      settings: { readBatch: 3, pollMs: 10, emitIntervalMs: 0, checkpointIntervalMs: 50, retryDelayMs: 20 },
    })
    runners.push(r)
    return r
  }

  async function outputs(): Promise<Array<{ id: string; body: { windowStart: string; group: { deviceId: string }; sum_v: number } }>> {
    const out = []
    for (const p of [0, 1]) for (const r of await stream.read('out', p, 0, 10_000)) out.push({ id: r.headers[OUTPUT_ID_HEADER]!, body: JSON.parse(r.value.toString()) })
    return out
  }

  async function feed(windowsPerDevice: number): Promise<void> {
    for (let w = 0; w <= windowsPerDevice; w++) {
      await stream.append('telemetry', ['a', 'b', 'c'].flatMap((d) => [record(d, T + w * 1000 + 100, w), record(d, T + w * 1000 + 600, w)]))
    }
  }

  for (const mode of ['lost-answer', 'refused'] as const) {
    it(`writes every window once when an output append is ${mode === 'lost-answer' ? 'durable but its answer is lost' : 'refused'}`, async () => {
      await store.saveCheckpoint('aggregate:sum', 0, { offset: 0, fingerprint: 'f1', state: undefined, pending: [], marks: {} })
      const { stream: s, calls } = faulty((n) => (n % 2 === 1 ? mode : null))
      runner(s).start()
      await feed(6)
      const got = await waitFor(async () => {
        const o = await outputs()
        return o.length >= 18 && o
      }, 15_000, '18 windows')
      expect(calls()).toBeGreaterThan(2)
      await new Promise((r) => setTimeout(r, 200))
      const final = await outputs()
      expect(final).toHaveLength(18)
      expect(new Set(final.map((o) => o.id)).size).toBe(18)
      for (const o of got) expect(o.body.sum_v).toBe(2 * ((Date.parse(o.body.windowStart) - T) / 1000))
      const cp = await store.loadCheckpoint('aggregate:sum', 0)
      expect(cp?.pending).toEqual([])
    })
  }

  it('continues from the checkpoint after a stop: no window twice, none lost, the open one finished', async () => {
    await store.saveCheckpoint('aggregate:sum', 0, { offset: 0, fingerprint: 'f1', state: undefined, pending: [], marks: {} })
    const first = runner(stream)
    first.start()
    await feed(3)
    await waitFor(async () => (await outputs()).length >= 9, 15_000, 'first windows')
    await first.stop()
    // Window 3 is open in the checkpointed state; more of it arrives while nothing runs.
    await stream.append('telemetry', ['a', 'b', 'c'].map((d) => record(d, T + 3000 + 900, 100)))
    await stream.append('telemetry', ['a', 'b', 'c'].map((d) => record(d, T + 5000, 0)))
    runner(stream).start()
    const got = await waitFor(async () => {
      const o = await outputs()
      return o.length >= 15 && o
    }, 15_000, 'windows after the restart')
    const third = got.filter((o) => Date.parse(o.body.windowStart) === T + 3000)
    expect(third.map((o) => o.body.sum_v)).toEqual([106, 106, 106])
    expect(new Set(got.map((o) => o.id)).size).toBe(got.length)
  })

  it('starts a new processor at the end of its source: it aggregates what arrives from then on', async () => {
    await stream.append('telemetry', [record('a', T + 100, 1000), record('a', T + 200, 1000)])
    runner(stream).start()
    await waitFor(async () => (await store.loadCheckpoint('aggregate:sum', 0)) !== null, 5000, 'first checkpoint')
    await stream.append('telemetry', [record('a', T + 300, 1), record('a', T + 1500, 0)])
    const got = await waitFor(async () => {
      const o = await outputs()
      return o.length >= 1 && o
    }, 15_000, 'a window')
    expect(got.map((o) => o.body.sum_v)).toEqual([1])
  })
})
