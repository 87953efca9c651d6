import type { Kafka } from 'kafkajs'
import { GatewayError } from '../../errors/catalogue.js'
import type { Headers, StoredRecord } from '../types.js'

/**
 * Direct partition reads (Kafka Fetch requests at an offset, no consumer group) and offset commits
 * outside group membership (Kafka's "standalone" consumers, generation -1), which kafkajs only
 * does inside its group consumer. `EventStream.read()` and group-less consumers need them, so
 * this uses the cluster object kafkajs builds for its own producer/consumer/admin. kafkajs 2.2.4 is
 * the last release of kafkajs (pinned by package-lock), and the members used here are the ones its
 * consumer uses; the typed view below is all of them, checked once when the fetcher is created.
 */
interface RawRecord {
  offset: string
  timestamp: string
  key: Buffer | null
  value: Buffer | null
  headers: Record<string, Buffer | Buffer[] | undefined>
  isControlRecord: boolean
}

interface RawFetchResponse {
  responses: Array<{ topicName: string; partitions: Array<{ partition: number; errorCode: number; highWatermark: string; messages: RawRecord[] }> }>
}

interface RawBroker {
  offsetCommit(request: {
    groupId: string
    groupGenerationId: number
    memberId: string
    topics: Array<{ topic: string; partitions: Array<{ partition: number; offset: string }> }>
  }): Promise<unknown>
  fetch(request: {
    maxWaitTime: number
    minBytes: number
    maxBytes: number
    isolationLevel: number
    topics: Array<{ topic: string; partitions: Array<{ partition: number; fetchOffset: string; maxBytes: number }> }>
  }): Promise<RawFetchResponse>
}

interface RawCluster {
  connect(): Promise<void>
  disconnect(): Promise<void>
  addMultipleTargetTopics(topics: string[]): Promise<void>
  refreshMetadata(): Promise<void>
  findLeaderForPartitions(topic: string, partitions: number[]): Record<string, number[]>
  findBroker(args: { nodeId: string }): Promise<RawBroker>
  findGroupCoordinator(args: { groupId: string }): Promise<RawBroker>
}

type CreateCluster = (options: { allowAutoTopicCreation: boolean; metadataMaxAge: number }) => RawCluster

/** kafkajs' connection pool: index 1 carries Fetch requests, index 0 the rest. */
interface BrokerWithPool {
  connectionPool: { getConnection(index: number): Promise<unknown> }
}
const FETCH_CONNECTION = 1

const READ_COMMITTED = 1
const PARTITION_MAX_BYTES = 4 * 1024 * 1024

export interface FetchPosition {
  topic: string
  partition: number
  offset: number
}

export class PartitionFetcher {
  private readonly cluster: RawCluster
  private connected: Promise<void> | null = null
  private setup: Promise<unknown> = Promise.resolve()

  constructor(kafka: Kafka) {
    const key = Object.getOwnPropertySymbols(kafka).find((s) => s.description === 'private:Kafka:createCluster')
    const create = key === undefined ? undefined : (kafka as unknown as Record<symbol, unknown>)[key]
    if (typeof create !== 'function') {
      throw new GatewayError('E_STREAM_UNAVAILABLE', 'this kafkajs version has no cluster factory; streamgate needs kafkajs 2.2.x')
    }
    this.cluster = (create as CreateCluster).call(kafka, { allowAutoTopicCreation: false, metadataMaxAge: 60_000 })
  }

  /**
   * Commits offsets for a group without joining it. The group coordinator accepts this only while
   * the group has no active members (else ILLEGAL_GENERATION / UNKNOWN_MEMBER_ID is thrown).
   */
  async commit(groupId: string, topic: string, offsets: Array<{ partition: number; offset: number }>): Promise<void> {
    await this.connect()
    const coordinator = await this.cluster.findGroupCoordinator({ groupId })
    await coordinator.offsetCommit({
      groupId,
      groupGenerationId: -1,
      memberId: '',
      topics: [{ topic, partitions: offsets.map((o) => ({ partition: o.partition, offset: String(o.offset) })) }],
    })
  }

  private async connect(): Promise<void> {
    this.connected ??= this.cluster.connect().catch((err: unknown) => {
      this.connected = null
      throw err
    })
    await this.connected
  }

  async disconnect(): Promise<void> {
    this.connected = null
    await this.cluster.disconnect()
  }

  /**
   * Records at and after each position (at most `maxRecords` per partition), waiting up to
   * `maxWaitMs` for a partition with nothing new. Keyed by `topic/partition`.
   */
  async fetch(positions: FetchPosition[], maxWaitMs: number, maxRecords: number): Promise<Map<string, StoredRecord[]>> {
    const leaders = await this.leadersFor(positions)
    const out = new Map<string, StoredRecord[]>()
    await Promise.all(
      leaders.map(async ({ broker, group }) => {
        const response = await broker.fetch({
          maxWaitTime: maxWaitMs,
          minBytes: 1,
          maxBytes: 16 * 1024 * 1024,
          isolationLevel: READ_COMMITTED,
          topics: topicsOf(group),
        })
        for (const topicResponse of response.responses) {
          for (const part of topicResponse.partitions) {
            const from = group.find((p) => p.topic === topicResponse.topicName && p.partition === part.partition)?.offset ?? 0
            out.set(`${topicResponse.topicName}/${part.partition}`, toStored(topicResponse.topicName, part.partition, part.messages, from, maxRecords))
          }
        }
      }),
    )
    return out
  }

  /**
   * Metadata, brokers and their fetch connections, one caller at a time. kafkajs 2.2.4 sends Fetch
   * requests on a connection of their own that it opens at the first one
   * (network/connectionPool.js getConnection: `if (!connection.isConnected()) await
   * connection.connect()`), so concurrent first fetches (one per partition reader) each opened a
   * socket and the connection kept only the last: the others were never closed and kept the
   * process alive after the gateway stopped. Opening it here, serialised, leaves broker.fetch a
   * connected one.
   */
  private leadersFor(positions: FetchPosition[]): Promise<Array<{ broker: RawBroker; group: FetchPosition[] }>> {
    const run = this.setup.then(async () => {
      await this.connect()
      await this.cluster.addMultipleTargetTopics([...new Set(positions.map((p) => p.topic))])
      const out: Array<{ broker: RawBroker; group: FetchPosition[] }> = []
      for (const [nodeId, group] of this.groupByLeader(positions)) {
        const broker = await this.cluster.findBroker({ nodeId })
        await (broker as Partial<BrokerWithPool>).connectionPool?.getConnection?.(FETCH_CONNECTION)
        out.push({ broker, group })
      }
      return out
    })
    this.setup = run.catch(() => undefined)
    return run
  }

  private groupByLeader(positions: FetchPosition[]): Map<string, FetchPosition[]> {
    const byLeader = new Map<string, FetchPosition[]>()
    for (const position of positions) {
      const leaders = this.cluster.findLeaderForPartitions(position.topic, [position.partition])
      const nodeId = Object.keys(leaders)[0]
      if (nodeId === undefined) {
        throw new GatewayError('E_STREAM_TOPIC_UNKNOWN', `topic ${position.topic} has no partition ${position.partition}`)
      }
      byLeader.set(nodeId, [...(byLeader.get(nodeId) ?? []), position])
    }
    return byLeader
  }
}

function topicsOf(positions: FetchPosition[]): Array<{ topic: string; partitions: Array<{ partition: number; fetchOffset: string; maxBytes: number }> }> {
  const topics = new Map<string, Array<{ partition: number; fetchOffset: string; maxBytes: number }>>()
  for (const p of positions) {
    topics.set(p.topic, [...(topics.get(p.topic) ?? []), { partition: p.partition, fetchOffset: String(p.offset), maxBytes: PARTITION_MAX_BYTES }])
  }
  return [...topics].map(([topic, partitions]) => ({ topic, partitions }))
}

/** A fetch returns whole record batches, so records before the requested offset are dropped here. */
function toStored(topic: string, partition: number, raw: RawRecord[], from: number, max: number): StoredRecord[] {
  const out: StoredRecord[] = []
  for (const r of raw) {
    const offset = Number(r.offset)
    if (r.isControlRecord || offset < from) continue
    out.push({ topic, partition, offset, key: r.key === null ? null : r.key.toString('utf8'), value: r.value ?? Buffer.alloc(0), headers: toHeaders(r.headers), timestamp: Number(r.timestamp) })
    if (out.length >= max) break
  }
  return out
}

/** Kafka allows repeated header keys; the gateway never writes them, so the last one wins. */
export function toHeaders(raw: Record<string, Buffer | Buffer[] | undefined> | undefined): Headers {
  const headers: Headers = {}
  for (const [key, value] of Object.entries(raw ?? {})) {
    if (value === undefined) continue
    const last = Array.isArray(value) ? value[value.length - 1] : value
    if (last !== undefined) headers[key] = last.toString('utf8')
  }
  return headers
}
