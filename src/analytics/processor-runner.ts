import { setTimeout as sleep } from 'node:timers/promises'
import { toGatewayError } from '../errors/catalogue.js'
import type { Logger } from '../observability/logger.js'
import type { EventStream, OutgoingRecord, StoredRecord } from '../stream/types.js'
import type { AnalyticsStore, Checkpoint, PendingOutput, Processor, ProcessorOutput } from './types.js'

/** Headers every output carries: which processor wrote it and its id within that processor. */
export const PROCESSOR_HEADER = 'processor'
export const OUTPUT_ID_HEADER = 'output-id'

export interface RunnerOptions {
  stream: EventStream
  store: AnalyticsStore
  /** `aggregate:<name>` / `alert:<name>`: the checkpoint's key and the outputs' processor header. */
  processorId: string
  fingerprint: string
  topic: string
  partition: number
  outputTopic: string
  /** A processor from a checkpointed snapshot (undefined: a fresh one). */
  make: (state: unknown) => Processor
  /** Told of every output once it is durable in the output topic. */
  emitted: (outputs: ProcessorOutput[], now: number) => void
  logger: Logger
  settings: RunnerSettings
  now?: () => number
}

export interface RunnerSettings {
  /** Records read per round. */
  readBatch: number
  /** Pause between reads of a partition that was read to its end. */
  pollMs: number
  /** Outputs wait at most this long for company before a checkpoint writes them (fewer, larger checkpoints). */
  emitIntervalMs: number
  /** Progress without outputs is checkpointed this often (bounds what a restart reads again). */
  checkpointIntervalMs: number
  /** Pause before a round that failed (stream or registry down) starts again from the checkpoint. */
  retryDelayMs: number
}

/**
 * Runs one processor over one partition of its source topic, with exactly-once output:
 *
 *  1. Read records from the checkpointed offset, fold them in (process/tick); outputs are decided.
 *  2. Checkpoint, in one registry transaction: the next offset, the state after those records, the
 *     decided outputs as `pending`, and the output topic's high watermarks (`marks`).
 *  3. Append the outputs, each with its processor and id headers. Then checkpoint again, pending empty.
 *
 * A crash before 2 loses only in-memory work: the records are read again from the old checkpoint
 * and fold into the same state. A crash between 2 and the end of 3 leaves pending outputs that may
 * or may not be in the output topic: on start the runner reads the output topic from `marks` to its
 * end, and appends only the pending outputs whose id it did not find there. No output is decided
 * outside a checkpoint, so none is written twice or lost. (Kafka: an append that was refused may
 * still land later, if the broker got it and the answer was lost; the stream's appender resends a
 * request as it was until it gets an answer, so a refused append is one that never got through.)
 */
export class ProcessorRunner {
  private processor: Processor | null = null
  private offset = 0
  private stopped = false
  private loop: Promise<void> | null = null
  private readonly abort = new AbortController()
  private readonly log: Logger
  private readonly now: () => number
  private lastSave = 0
  private savedOffset = -1
  private held: ProcessorOutput[] = []
  lastError: { code: string; message: string; at: string } | null = null

  constructor(private readonly options: RunnerOptions) {
    this.log = options.logger.child({ component: 'analytics', processor: options.processorId, partition: options.partition })
    this.now = options.now ?? Date.now
  }

  start(): void {
    this.loop ??= this.run()
  }

  async stop(): Promise<void> {
    this.stopped = true
    this.abort.abort()
    await this.loop
  }

  /** The live processor (for status: open windows, open alerts); null until it started. */
  get current(): Processor | null {
    return this.processor
  }

  /** Records of the partition not folded in yet (-1 when the stream cannot say now). */
  async lag(): Promise<number> {
    const high = (await this.options.stream.offsets(this.options.topic)).find((p) => p.partition === this.options.partition)?.high ?? 0
    return Math.max(0, high - this.offset)
  }

  private async run(): Promise<void> {
    while (!this.stopped) {
      try {
        await this.resume()
        await this.rounds()
      } catch (err) {
        if (this.stopped) break
        const e = toGatewayError(err)
        this.lastError = { code: e.code, message: e.message.slice(0, 512), at: new Date().toISOString() }
        this.log.warn({ err: e.message, code: e.code }, 'analytics round failed; resuming from the checkpoint')
        this.processor = null
        this.held = []
        await sleep(this.options.settings.retryDelayMs, undefined, { signal: this.abort.signal }).catch(() => undefined)
      }
    }
  }

  /** From the checkpoint: state, offset, and the pending outputs written if they are missing. */
  private async resume(): Promise<void> {
    const { store, stream, processorId, partition, topic, fingerprint } = this.options
    const cp = await store.loadCheckpoint(processorId, partition)
    if (cp && cp.pending.length > 0) await this.recover(cp)
    if (cp) {
      this.offset = cp.offset
      this.processor = this.options.make(cp.fingerprint === fingerprint ? cp.state : undefined)
      if (cp.fingerprint !== fingerprint) this.log.info('definition changed: state starts empty at the checkpointed offset')
    } else {
      // A new processor starts at the end of its source: it aggregates what arrives from now on.
      this.offset = (await stream.offsets(topic)).find((p) => p.partition === partition)?.high ?? 0
      this.processor = this.options.make(undefined)
    }
    this.savedOffset = cp?.offset ?? -1
    this.lastError = null
  }

  private async rounds(): Promise<void> {
    const { stream, topic, partition, settings } = this.options
    const processor = this.processor!
    while (!this.stopped) {
      const records: StoredRecord[] = await stream.read(topic, partition, this.offset, settings.readBatch)
      const now = this.now()
      if (records.length > 0) {
        this.held.push(...processor.process(records, now))
        this.offset = records[records.length - 1]!.offset + 1
      }
      const caughtUp = records.length < settings.readBatch
      this.held.push(...processor.tick(now, caughtUp))
      const since = now - this.lastSave
      if ((this.held.length > 0 && since >= settings.emitIntervalMs) || (this.offset !== this.savedOffset && since >= settings.checkpointIntervalMs)) {
        await this.commit(now)
      }
      if (caughtUp) await sleep(settings.pollMs, undefined, { signal: this.abort.signal }).catch(() => undefined)
    }
  }

  /** Steps 2 and 3 (see the class comment). */
  private async commit(now: number): Promise<void> {
    const { store, stream, processorId, partition, outputTopic, fingerprint } = this.options
    const outputs = this.held
    const marks: Record<string, number> = {}
    if (outputs.length > 0) for (const p of await stream.offsets(outputTopic)) marks[String(p.partition)] = p.high
    const pending = outputs.map(toPending)
    await store.saveCheckpoint(processorId, partition, { offset: this.offset, fingerprint, state: this.processor!.snapshot(), pending, marks })
    this.held = []
    this.lastSave = now
    this.savedOffset = this.offset
    if (outputs.length === 0) return
    await stream.append(outputTopic, outputs.map((o) => this.stamped(o.id, o.record)))
    this.options.emitted(outputs, this.now())
    await store.clearPending(processorId, partition)
  }

  /** Append the pending outputs of a checkpoint that the output topic does not hold since `marks`. */
  private async recover(cp: Checkpoint): Promise<void> {
    const { stream, store, processorId, partition, outputTopic } = this.options
    const written = new Set<string>()
    for (const p of await stream.offsets(outputTopic)) {
      let offset = cp.marks[String(p.partition)] ?? p.low
      while (offset < p.high) {
        const batch = await stream.read(outputTopic, p.partition, offset, 1000)
        if (batch.length === 0) break
        for (const r of batch) if (r.headers[PROCESSOR_HEADER] === processorId && r.headers[OUTPUT_ID_HEADER] !== undefined) written.add(r.headers[OUTPUT_ID_HEADER])
        offset = batch[batch.length - 1]!.offset + 1
      }
    }
    const missing = cp.pending.filter((o) => !written.has(o.id))
    if (missing.length > 0) {
      await stream.append(outputTopic, missing.map((o) => this.stamped(o.id, fromPending(o))))
      this.options.emitted(missing.map((o) => ({ id: o.id, record: fromPending(o), eventTime: o.eventTime })), this.now())
    }
    this.log.info({ pending: cp.pending.length, written: cp.pending.length - missing.length, appended: missing.length }, 'recovered the outputs of the last checkpoint')
    await store.clearPending(processorId, partition)
  }

  private stamped(id: string, record: OutgoingRecord): OutgoingRecord {
    return { ...record, headers: { ...(record.headers ?? {}), [PROCESSOR_HEADER]: this.options.processorId, [OUTPUT_ID_HEADER]: id } }
  }
}

function toPending(o: ProcessorOutput): PendingOutput {
  return { id: o.id, key: o.record.key, value: o.record.value.toString('base64'), headers: o.record.headers ?? {}, timestamp: o.record.timestamp ?? Date.now(), eventTime: o.eventTime }
}

function fromPending(o: PendingOutput): OutgoingRecord {
  return { key: o.key, value: Buffer.from(o.value, 'base64'), headers: o.headers, timestamp: o.timestamp }
}
