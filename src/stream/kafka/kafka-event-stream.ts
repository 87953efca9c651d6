import { Kafka } from 'kafkajs'
import { GatewayError } from '../../errors/catalogue.js'
import type {
  AppendResult,
  CommittedOffset,
  ConsumeOptions,
  Consumer,
  EventStream,
  OutgoingRecord,
  PartitionOffsets,
  StoredRecord,
  StreamHealth,
  TopicSpec,
} from '../types.js'
import { KafkaAppender, type RecordProducer } from './appender.js'
import { ThreadedKafkaAppender } from './producer-thread.js'
import { KafkaDirectConsumer } from './direct-consumer.js'
import { describeError, toKafkaStreamError } from './errors.js'
import { PartitionFetcher } from './fetcher.js'
import { RetryingConsumer } from './retrying-consumer.js'
import { KafkaGroupConsumer } from './group-consumer.js'
import { kafkaClientConfig, kafkaOptions, type KafkaEventStreamOptions, type KafkaStreamConfig } from './options.js'
import { KafkaTopics } from './topics.js'

type State = 'new' | 'open' | 'stopping' | 'stopped'

/** How long start() waits for the first provisioning attempt before going on in the background. */
const START_WAIT_MS = 5000

/**
 * EventStream on Apache Kafka through kafkajs. appender.ts holds the produce path (idempotent,
 * acks=all, one request in flight, murmur2 partitions from ../partitioner.ts), topics.ts
 * provisioning and metadata, group-consumer.ts consumer groups, direct-consumer.ts and fetcher.ts
 * group-less reads.
 *
 * Kafka is remote and may be down when the gateway starts: start() does not wait for it. Topics
 * are provisioned in the background and retried until it succeeds; meanwhile health() is not
 * ready, and appends fail fast with E_STREAM_UNAVAILABLE (the ingest holds the PUBACK and retries).
 * Once provisioned, the same loop keeps checking that the cluster answers, for health().
 */
export class KafkaEventStream implements EventStream {
  private state: State = 'new'
  private readonly kafka: Kafka
  private readonly appender: RecordProducer
  private readonly topics: KafkaTopics
  private readonly fetcher: PartitionFetcher
  private readonly consumers = new Set<Consumer>()
  /** Topics given to start() and not provisioned yet: appends to them wait for provisioning. */
  private readonly pending = new Set<string>()
  private provisioned = false
  private clusterError: string | null = null
  private monitor: NodeJS.Timeout | null = null
  private stopping: Promise<void> | null = null

  constructor(private readonly options: KafkaEventStreamOptions) {
    this.kafka = new Kafka(kafkaClientConfig(options))
    this.appender = options.producerThread ? new ThreadedKafkaAppender(options) : new KafkaAppender(this.kafka, options)
    this.topics = new KafkaTopics(this.kafka, options.replicationFactor, (message) => process.emitWarning(message, { code: 'STREAMGATE_KAFKA_TOPIC_MISMATCH' }))
    this.fetcher = new PartitionFetcher(this.kafka)
  }

  static fromConfig(config: KafkaStreamConfig, defaultPartitions?: number, extra: Partial<KafkaEventStreamOptions> = {}): KafkaEventStream {
    return new KafkaEventStream(kafkaOptions({ ...config, ...(defaultPartitions === undefined ? {} : { defaultPartitions }), ...extra }))
  }

  async start(topics: TopicSpec[]): Promise<void> {
    if (this.state === 'stopping' || this.state === 'stopped') throw new GatewayError('E_STREAM_CLOSED', 'the event stream has been stopped')
    const specs = topics.map((t) => this.validateSpec(t))
    for (const spec of specs) this.pending.add(spec.name)
    if (this.state === 'open') {
      await this.ensureTopics(specs)
      return
    }
    this.state = 'open'
    const first = this.provision(specs)
    await Promise.race([first, new Promise((resolve) => setTimeout(resolve, START_WAIT_MS).unref())])
  }

  async stop(): Promise<void> {
    if (this.state === 'new') this.state = 'stopped'
    if (this.state === 'stopped' && !this.stopping) return
    this.stopping ??= this.shutdown()
    return this.stopping
  }

  async ensureTopics(topics: TopicSpec[]): Promise<void> {
    this.requireOpen()
    const specs = topics.map((t) => this.validateSpec(t))
    await this.topics.ensure(specs)
    for (const spec of specs) this.pending.delete(spec.name)
  }

  async append(topic: string, records: OutgoingRecord[]): Promise<AppendResult[]> {
    this.requireOpen()
    if (this.pending.has(topic)) {
      throw new GatewayError('E_STREAM_UNAVAILABLE', `Kafka topic ${topic} is not provisioned yet: ${this.clusterError ?? 'connecting'}`, { topic })
    }
    const partitions = await this.topics.partitionCount(topic)
    return this.appender.append(topic, partitions, records)
  }

  async partitionCount(topic: string): Promise<number> {
    this.requireOpen()
    return this.topics.partitionCount(topic)
  }

  async offsets(topic: string): Promise<PartitionOffsets[]> {
    this.requireOpen()
    return this.topics.offsets(topic)
  }

  async read(topic: string, partition: number, offset: number, max: number): Promise<StoredRecord[]> {
    this.requireOpen()
    await this.requirePartition(topic, partition)
    try {
      return await this.fetchAt(topic, partition, offset, max)
    } catch (err) {
      if ((err as { type?: unknown }).type !== 'OFFSET_OUT_OF_RANGE') throw toKafkaStreamError(err, 'cannot read from Kafka', topic)
      // Below the low watermark (retention deleted it): read from the oldest record held, as the
      // embedded stream does. Past the high watermark: nothing yet.
      const low = (await this.topics.offsets(topic)).find((p) => p.partition === partition)?.low ?? 0
      return offset < low ? this.fetchAt(topic, partition, low, max) : []
    }
  }

  async committedOffsets(group: string, topic: string): Promise<CommittedOffset[]> {
    this.requireOpen()
    await this.topics.partitionCount(topic)
    const admin = await this.topics.connected()
    try {
      const [committed] = await admin.fetchOffsets({ groupId: group, topics: [topic] })
      return (committed?.partitions ?? []).filter((p) => Number(p.offset) >= 0).map((p) => ({ partition: p.partition, offset: Number(p.offset) }))
    } catch (err) {
      throw toKafkaStreamError(err, 'cannot read committed offsets', topic)
    }
  }

  /**
   * Starts a consumer. While Kafka is unreachable (or the topic is one start() is still
   * provisioning) it resolves anyway with a consumer that starts once the cluster answers; an
   * unknown topic otherwise rejects with E_STREAM_TOPIC_UNKNOWN.
   */
  async consume(options: ConsumeOptions): Promise<Consumer> {
    this.requireOpen()
    const retriable = (err: GatewayError): boolean => err.code === 'E_STREAM_UNAVAILABLE' || (err.code === 'E_STREAM_TOPIC_UNKNOWN' && this.pending.has(options.topic))
    const toError = (err: unknown): GatewayError => toKafkaStreamError(err, 'cannot start Kafka consumer', options.topic)
    try {
      return await this.startConsumer(options)
    } catch (err) {
      const error = toError(err)
      if (!retriable(error) || this.state !== 'open') throw error
      const consumer = new RetryingConsumer(options, () => this.startConsumer(options), retriable, toError, this.options.provisionRetryMs)
      return this.track(consumer)
    }
  }

  private async startConsumer(options: ConsumeOptions): Promise<Consumer> {
    this.requireOpen()
    const partitions = await this.topics.partitionCount(options.topic)
    for (const p of options.partitions ?? []) await this.requirePartition(options.topic, p)
    const consumer =
      options.group !== undefined && options.partitions === undefined
        ? await this.startGroupConsumer({ ...options, group: options.group })
        : await this.startDirectConsumer(options, options.partitions ?? Array.from({ length: partitions }, (_, i) => i))
    return this.track(consumer)
  }

  private track(consumer: Consumer): Consumer {
    this.consumers.add(consumer)
    return {
      // A consumer leaves its group through Kafka: with the broker frozen that waits for request
      // timeouts. Past appendTimeoutMs it finishes in the background (offsets are committed only
      // for handled batches, so at worst a batch is delivered again after a restart).
      stop: async () => {
        await settledWithin(consumer.stop(), this.options.appendTimeoutMs)
        this.consumers.delete(consumer)
      },
    }
  }

  observeAppendFailures(listener: (err: GatewayError) => void): void {
    this.appender.onAttemptFailed = listener
  }

  health(): StreamHealth {
    if (this.state !== 'open') return { ready: false, detail: this.state === 'new' ? 'not started' : 'stopped' }
    const brokers = this.options.brokers.join(',')
    if (!this.provisioned) return { ready: false, detail: `Kafka (${brokers}): topics not provisioned yet${this.clusterError ? `: ${this.clusterError}` : ''}` }
    // A stalled request is not cleared by a healthy metadata check: Kafka must answer it.
    const stall = this.appender.stall
    if (stall) return { ready: false, detail: `Kafka (${brokers}): ${stall.reason} (PUBACKs held for ${Math.round((Date.now() - stall.since) / 1000)} s)` }
    const failure = this.appender.lastError ?? this.clusterError
    if (failure) return { ready: false, detail: `Kafka (${brokers}): ${failure}` }
    const mismatches = [...this.topics.mismatches.values()]
    return mismatches.length > 0 ? { ready: true, detail: mismatches.join('; ') } : { ready: true }
  }

  /** Provisions `specs`, retrying until it succeeds or the stream stops; then watches the cluster. */
  private async provision(specs: TopicSpec[]): Promise<void> {
    try {
      await this.ensureTopics(specs)
      this.provisioned = true
      this.clusterError = null
      this.scheduleCheck()
    } catch (err) {
      this.clusterError = describeError(err)
      if (this.state !== 'open') return
      this.monitor = setTimeout(() => void this.provision(specs), this.options.provisionRetryMs)
    }
  }

  private scheduleCheck(): void {
    if (this.state !== 'open') return
    this.monitor = setTimeout(() => {
      const started = Date.now()
      void this.topics
        .connected()
        .then((admin) => admin.describeCluster())
        .then(
          () => {
            this.clusterError = null
            // A produce failure older than this successful check is over: without it, a gateway
            // that gets no traffic (e.g. taken out of a load balancer for being not ready) would
            // stay not ready after Kafka came back.
            this.appender.clearErrorBefore(started)
          },
          (err: unknown) => (this.clusterError = describeError(err)),
        )
        .finally(() => this.scheduleCheck())
    }, this.options.provisionRetryMs)
  }

  private async startGroupConsumer(options: ConsumeOptions & { group: string }): Promise<Consumer> {
    if (options.from !== 'earliest') await this.commitLatestForNewGroup(options.group, options.topic)
    const consumer = new KafkaGroupConsumer(this.kafka, options, {
      sessionTimeoutMs: this.options.sessionTimeoutMs,
      heartbeatIntervalMs: this.options.heartbeatIntervalMs ?? Math.floor(this.options.sessionTimeoutMs / 5),
      fetchMaxWaitMs: this.options.fetchMaxWaitMs,
    })
    await consumer.start(this.options.sessionTimeoutMs * 3)
    return consumer
  }

  private async startDirectConsumer(options: ConsumeOptions, partitions: number[]): Promise<Consumer> {
    const admin = await this.topics.connected()
    const watermarks = await this.topics.offsets(options.topic)
    const positions = new Map<number, number>()
    for (const p of partitions) {
      const w = watermarks.find((o) => o.partition === p)!
      positions.set(p, options.from === 'earliest' ? w.low : w.high)
    }
    if (options.group !== undefined) {
      try {
        const [committed] = await admin.fetchOffsets({ groupId: options.group, topics: [options.topic] })
        for (const c of committed?.partitions ?? []) {
          if (positions.has(c.partition) && Number(c.offset) >= 0) positions.set(c.partition, Number(c.offset))
        }
      } catch (err) {
        throw toKafkaStreamError(err, 'cannot read committed offsets', options.topic)
      }
    }
    const consumer = new KafkaDirectConsumer(options, { fetcher: this.fetcher, fetchMaxWaitMs: this.options.fetchMaxWaitMs, positions })
    consumer.start()
    return consumer
  }

  /**
   * For a group that starts at 'latest': partitions the group has never committed get the current
   * end committed now, so that 'latest' means "the end when consume() was called", not "the end
   * whenever the new member first fetches" (records appended in between would be skipped).
   * A group with active members refuses such a commit; their positions stand.
   */
  private async commitLatestForNewGroup(groupId: string, topic: string): Promise<void> {
    const admin = await this.topics.connected()
    try {
      const [committed] = await admin.fetchOffsets({ groupId, topics: [topic] })
      const fresh = new Set((committed?.partitions ?? []).filter((p) => Number(p.offset) < 0).map((p) => p.partition))
      if (fresh.size === 0) return
      const ends = (await this.topics.offsets(topic)).filter((o) => fresh.has(o.partition))
      await this.fetcher.commit(groupId, topic, ends.map((o) => ({ partition: o.partition, offset: o.high })))
    } catch (err) {
      const type = (err as { type?: unknown }).type
      if (type !== 'ILLEGAL_GENERATION' && type !== 'UNKNOWN_MEMBER_ID' && type !== 'REBALANCE_IN_PROGRESS') throw toKafkaStreamError(err, 'cannot set the start of a consumer group', topic)
    }
  }

  private async fetchAt(topic: string, partition: number, offset: number, max: number): Promise<StoredRecord[]> {
    const fetched = await this.fetcher.fetch([{ topic, partition, offset }], 0, max)
    return fetched.get(`${topic}/${partition}`) ?? []
  }

  private async requirePartition(topic: string, partition: number): Promise<void> {
    const count = await this.topics.partitionCount(topic)
    if (!Number.isInteger(partition) || partition < 0 || partition >= count) {
      throw new GatewayError('E_STREAM_TOPIC_UNKNOWN', `topic ${topic} has no partition ${partition} (it has ${count})`, { topic, partition })
    }
  }

  beginStop(): void {
    this.appender.beginStop()
  }

  private async shutdown(): Promise<void> {
    this.state = 'stopping'
    if (this.monitor) clearTimeout(this.monitor)
    this.monitor = null
    // Reverse order of use: flush what was appended, then consumers, then the clients.
    await this.appender.close()
    await Promise.all([...this.consumers].map((c) => c.stop()))
    this.consumers.clear()
    // With the broker frozen the clients' disconnects wait on it: bounded like the rest.
    await settledWithin(Promise.all([this.topics.close(), this.fetcher.disconnect().catch(() => undefined)]), this.options.appendTimeoutMs)
    this.state = 'stopped'
  }

  private requireOpen(): void {
    if (this.state === 'stopping' || this.state === 'stopped') throw new GatewayError('E_STREAM_CLOSED', 'the event stream has been stopped')
    if (this.state === 'new') throw new GatewayError('E_STREAM_CLOSED', 'the event stream has not been started')
  }

  private validateSpec(spec: TopicSpec): TopicSpec {
    const partitions = spec.partitions ?? this.options.defaultPartitions ?? 1
    if (typeof spec.name !== 'string' || !/^[a-zA-Z0-9._-]{1,249}$/.test(spec.name)) {
      throw new GatewayError('E_CONFIG_INVALID', `invalid Kafka topic name ${JSON.stringify(spec.name)} (letters, digits, '.', '_', '-'; at most 249)`)
    }
    if (!Number.isInteger(partitions) || partitions < 1) throw new GatewayError('E_CONFIG_INVALID', `topic ${spec.name}: partitions must be a positive integer`)
    return { name: spec.name, partitions }
  }
}

/** Waits for `work` to settle, or `ms` at most; whether it settled in time. */
function settledWithin(work: Promise<unknown>, ms: number): Promise<boolean> {
  return new Promise((resolve) => {
    const timer = setTimeout(() => resolve(false), ms)
    const done = (): void => {
      clearTimeout(timer)
      resolve(true)
    }
    work.then(done, done)
  })
}
