import type { Admin, Kafka } from 'kafkajs'
import { GatewayError } from '../../errors/catalogue.js'
import type { PartitionOffsets, TopicSpec } from '../types.js'
import { isTopicExists, isUnknownTopic, toKafkaStreamError } from './errors.js'

/** Reads of a topic's offsets before a kafkajs TypeError (an incomplete answer) is given up on. */
const OFFSETS_ATTEMPTS = 4

/** Partition counts change only by an operator's hand; cached this long. */
const PARTITION_CACHE_MS = 30_000

/**
 * Topic provisioning and metadata through the kafkajs admin client. Topics the gateway needs are
 * created with the configured partitions and replication factor; a topic that already exists is
 * never altered (adding partitions would move keys to other partitions), only compared, and a
 * difference is reported through `mismatches`.
 */
export class KafkaTopics {
  private admin: Promise<Admin> | null = null
  private readonly partitions = new Map<string, { count: number; at: number }>()
  /** Lookups under way, shared by the appends that arrive meanwhile. */
  private readonly lookups = new Map<string, Promise<number>>()
  /** Human-readable differences between existing topics and what the gateway asked for. */
  readonly mismatches = new Map<string, string>()

  constructor(
    private readonly kafka: Kafka,
    private readonly replicationFactor: number,
    private readonly onMismatch: (message: string) => void,
  ) {}

  async close(): Promise<void> {
    const current = this.admin
    this.admin = null
    if (current) await current.then((a) => a.disconnect()).catch(() => undefined)
  }

  async ensure(specs: TopicSpec[]): Promise<void> {
    if (specs.length === 0) {
      await this.connected()
      return
    }
    const admin = await this.connected()
    const existing = await this.describe(admin, specs.map((s) => s.name))
    const missing = specs.filter((s) => !existing.has(s.name))
    if (missing.length > 0) {
      try {
        await admin.createTopics({
          waitForLeaders: true,
          timeout: 10_000,
          topics: missing.map((s) => ({ topic: s.name, numPartitions: s.partitions, replicationFactor: this.replicationFactor > 0 ? this.replicationFactor : -1 })),
        })
      } catch (err) {
        // Created meanwhile by another gateway or a tool: compared below like any existing topic.
        if (!isTopicExists(err) && !hasOnlyExistsErrors(err)) throw toKafkaStreamError(err, 'cannot create Kafka topics')
      }
    }
    const now = await this.describe(admin, specs.map((s) => s.name))
    for (const spec of specs) {
      const actual = now.get(spec.name)
      if (!actual) throw new GatewayError('E_STREAM_UNAVAILABLE', `topic ${spec.name} was not created`)
      this.partitions.set(spec.name, { count: actual.partitions, at: Date.now() })
      if (missing.includes(spec)) continue
      this.compare(spec, actual)
    }
  }

  /**
   * Partition count; E_STREAM_TOPIC_UNKNOWN for a missing topic. A known count is answered at once; past PARTITION_CACHE_MS it is looked up again in the
   * background, so an append never waits on a metadata request once its topic is known (with
   * Kafka frozen such a request would hold it for the admin's timeouts and retries).
   */
  async partitionCount(topic: string): Promise<number> {
    const cached = this.partitions.get(topic)
    if (cached) {
      if (Date.now() - cached.at >= PARTITION_CACHE_MS) this.lookup(topic).catch(() => undefined)
      return cached.count
    }
    return this.lookup(topic)
  }

  private lookup(topic: string): Promise<number> {
    let lookup = this.lookups.get(topic)
    if (!lookup) {
      lookup = (async () => {
        const found = (await this.describe(await this.connected(), [topic])).get(topic)
        if (!found) {
          this.partitions.delete(topic)
          throw new GatewayError('E_STREAM_TOPIC_UNKNOWN', `topic ${topic} does not exist`, { topic })
        }
        this.partitions.set(topic, { count: found.partitions, at: Date.now() })
        return found.partitions
      })().finally(() => this.lookups.delete(topic))
      this.lookups.set(topic, lookup)
    }
    return lookup
  }

  async offsets(topic: string): Promise<PartitionOffsets[]> {
    await this.partitionCount(topic)
    const admin = await this.connected()
    for (let attempt = 1; ; attempt++) {
      try {
        const offsets = await admin.fetchTopicOffsets(topic)
        return offsets.map((o) => ({ partition: o.partition, low: Number(o.low), high: Number(o.high) })).sort((a, b) => a.partition - b.partition)
      } catch (err) {
        // Right after a broker restart, a ListOffsets answer can lack the topic while leaders are
        // being elected, and kafkajs then fails with a TypeError of its own: read again, briefly.
        if (err instanceof TypeError && attempt < OFFSETS_ATTEMPTS) {
          await new Promise((r) => setTimeout(r, 200 * attempt))
          continue
        }
        throw toKafkaStreamError(err, 'cannot read Kafka offsets', topic)
      }
    }
  }

  async connected(): Promise<Admin> {
    this.admin ??= (async () => {
      const admin = this.kafka.admin({ retry: { retries: 2, initialRetryTime: 100, maxRetryTime: 1000 } })
      await admin.connect()
      return admin
    })()
    try {
      return await this.admin
    } catch (err) {
      this.admin = null
      throw toKafkaStreamError(err, 'cannot connect to Kafka')
    }
  }

  /** Topics that exist among `names`, with partition count and replication factor. */
  private async describe(admin: Admin, names: string[]): Promise<Map<string, { partitions: number; replicas: number }>> {
    const out = new Map<string, { partitions: number; replicas: number }>()
    const results = await Promise.all(
      names.map(async (name) => {
        try {
          const { topics } = await admin.fetchTopicMetadata({ topics: [name] })
          return topics[0]
        } catch (err) {
          if (isUnknownTopic(err)) return undefined
          throw toKafkaStreamError(err, 'cannot read Kafka topic metadata', name)
        }
      }),
    )
    for (const topic of results) {
      if (!topic || topic.partitions.length === 0) continue
      out.set(topic.name, { partitions: topic.partitions.length, replicas: Math.min(...topic.partitions.map((p) => p.replicas.length)) })
    }
    return out
  }

  private compare(spec: TopicSpec, actual: { partitions: number; replicas: number }): void {
    const problems: string[] = []
    if (actual.partitions !== spec.partitions) {
      problems.push(`has ${actual.partitions} partitions, configured ${spec.partitions} (keys are placed by the existing count; the topic is left unchanged)`)
    }
    if (this.replicationFactor > 0 && actual.replicas !== this.replicationFactor) {
      problems.push(`has replication factor ${actual.replicas}, configured ${this.replicationFactor} (left unchanged)`)
    }
    if (problems.length === 0) {
      this.mismatches.delete(spec.name)
      return
    }
    const message = `Kafka topic ${spec.name} ${problems.join('; ')}`
    if (this.mismatches.get(spec.name) !== message) this.onMismatch(message)
    this.mismatches.set(spec.name, message)
  }
}

/** kafkajs reports per-topic creation failures as a KafkaJSAggregateError of broker errors. */
function hasOnlyExistsErrors(err: unknown): boolean {
  const errors = (err as { errors?: unknown }).errors
  return Array.isArray(errors) && errors.length > 0 && errors.every((e) => isTopicExists(e))
}
