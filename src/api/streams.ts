import type { FastifyInstance } from 'fastify'
import type { EventStream } from '../stream/types.js'

/** What GET /api/streams needs: the stream, and the topics and consumer groups this gateway uses. */
export interface StreamsApi {
  stream: EventStream
  /** The gateway's own topics and the topics its stream endpoints write to. */
  topics(): string[]
  /** The consumer groups this gateway runs (commands, routing endpoints) and the topic each reads. */
  groups(): Array<{ group: string; topic: string }>
}

export interface TopicView {
  topic: string
  partitions: Array<{ partition: number; low: number; high: number }>
  /** Records held now (sum of high - low). */
  records: number
  groups: GroupView[]
}

export interface GroupView {
  group: string
  /** Records not yet committed by the group, over every partition (a partition it never committed counts from low). */
  lag: number
  partitions: Array<{ partition: number; committed: number | null; lag: number }>
}

/**
 * GET /api/streams: the topics the gateway uses with their partitions and offsets, and the
 * consumer groups reading each with their lag. A topic that does not exist (yet) is left out.
 */
export function registerStreamRoutes(api: FastifyInstance, streams: StreamsApi): void {
  api.get('/streams', async (): Promise<{ topics: TopicView[] }> => {
    const groups = streams.groups()
    const topics: TopicView[] = []
    for (const topic of [...new Set(streams.topics())].sort()) {
      const offsets = await streams.stream.offsets(topic).catch((err: unknown) => {
        if ((err as { code?: string }).code === 'E_STREAM_TOPIC_UNKNOWN') return null
        throw err
      })
      if (offsets === null) continue
      const partitions = offsets.map((p) => ({ partition: p.partition, low: p.low, high: p.high })).sort((a, b) => a.partition - b.partition)
      const views: GroupView[] = []
      for (const { group } of groups.filter((g) => g.topic === topic)) {
        const committed = new Map((await streams.stream.committedOffsets(group, topic)).map((c) => [c.partition, c.offset]))
        const perPartition = partitions.map((p) => {
          const at = committed.get(p.partition) ?? null
          return { partition: p.partition, committed: at, lag: Math.max(0, p.high - Math.max(at ?? p.low, p.low)) }
        })
        views.push({ group, lag: perPartition.reduce((n, p) => n + p.lag, 0), partitions: perPartition })
      }
      topics.push({ topic, partitions, records: partitions.reduce((n, p) => n + (p.high - p.low), 0), groups: views })
    }
    return { topics }
  })
}
