import { loadConfig, topicNames } from '../src/config/load.js'
import { createEventStream } from '../src/app/backends.js'
import type { Consumer, EventStream, StoredRecord } from '../src/stream/types.js'
import { SimError } from './errors.js'
import { preciseNow } from './device.js'
import { SeqTracker } from './seq-tracker.js'
import type { Stats } from './stats.js'

/**
 * Reads the gateway's telemetry topic through the gateway's own stream adapter,
 * createEventStream(config, 'tool'): its embedded stream (the SQLite file in --data-dir) or, with
 * --stream-config pointing at the gateway's config file, whatever backend that file names
 * (Kafka included: test/integration/kafka-gateway.test.ts). It matches this run's records by
 * device id + `sim-seq`. That yields end-to-end latency (send -> record readable), and the
 * stored, duplicated and lost counts. The latency includes the reader's poll interval when the
 * gateway runs in another process (stream.embedded.pollIntervalMs, 100 ms by default); we poll
 * faster, see POLL_MS.
 */

const POLL_MS = 10

export interface StreamTally {
  /** Distinct (device, seq) pairs found. */
  stored: number
  /** Records beyond the first for a (device, seq): redeliveries the stream holds twice. */
  duplicated: number
  /** Produced (per sentByDevice) but never found. */
  lost: number
}

export class StreamTracker {
  private stream: EventStream | null = null
  private consumer: Consumer | null = null
  private readonly seen = new Map<string, SeqTracker>()
  private duplicated = 0
  private storedCount = 0

  constructor(
    private readonly source: { dataDir?: string; configFile?: string },
    private readonly runId: string,
    private readonly stats: Stats,
  ) {}

  /** Start reading at the current end of the topic, before the first message is sent. */
  async start(): Promise<void> {
    try {
      const { dataDir, configFile } = this.source
      const overrides: Record<string, string> = { 'stream.embedded.pollIntervalMs': String(POLL_MS) }
      if (dataDir) overrides.dataDir = dataDir
      const config = loadConfig({ env: {}, overrides, ...(configFile ? { configFile } : {}) })
      const topic = topicNames(config).telemetry
      this.stream = createEventStream(config, 'tool')
      await this.stream.start([])
      this.consumer = await this.stream.consume({ topic, from: 'latest', maxBatch: 5000, handler: async (records) => this.onRecords(records) })
    } catch (err) {
      await this.stop()
      throw new SimError('E_SIM_STREAM', `cannot read the telemetry stream (${JSON.stringify(this.source)}): ${(err as Error).message}`)
    }
  }

  get stored(): number {
    return this.storedCount
  }

  /** Wait until `expected` distinct records were read or `timeoutMs` passed. */
  async waitFor(expected: number, timeoutMs: number): Promise<void> {
    const deadline = Date.now() + timeoutMs
    while (this.storedCount < expected && Date.now() < deadline) await new Promise((r) => setTimeout(r, 20))
  }

  tally(sentByDevice: Readonly<Record<string, number>>): StreamTally {
    let lost = 0
    for (const [deviceId, sent] of Object.entries(sentByDevice)) {
      lost += sent - (this.seen.get(deviceId)?.foundUpTo(sent) ?? 0)
    }
    return { stored: this.storedCount, duplicated: this.duplicated, lost }
  }

  async stop(): Promise<void> {
    await this.consumer?.stop()
    await this.stream?.stop()
    this.consumer = null
    this.stream = null
  }

  private onRecords(records: StoredRecord[]): void {
    const now = preciseNow()
    for (const record of records) {
      const h = record.headers
      if (h['sim-run'] !== this.runId) continue
      const deviceId = h['device-id'] ?? record.key ?? ''
      const seq = Number(h['sim-seq'])
      if (!Number.isSafeInteger(seq) || seq < 1) continue
      let seqs = this.seen.get(deviceId)
      if (!seqs) this.seen.set(deviceId, (seqs = new SeqTracker()))
      if (seqs.see(seq) === 'duplicate') {
        this.duplicated++
        continue
      }
      this.storedCount++
      this.stats.countStored()
      const sentAt = Number(h['sim-ts'])
      if (Number.isFinite(sentAt)) this.stats.record('e2e', (now - sentAt) * 1000)
    }
  }
}
