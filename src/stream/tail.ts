import { setTimeout as sleep } from 'node:timers/promises'
import { GatewayError } from '../errors/catalogue.js'
import type { EventStream, StoredRecord } from './types.js'

/**
 * Reading a topic from a cursor per partition, without a consumer group: what `streamgate tail`
 * prints and what the API's live tail (`/api/streams/:topic/tail`) sends. Backend-neutral: it
 * uses only `offsets` and `read` of the EventStream port.
 */

/** `name` as given, or with the configured prefix when the bare name is not a topic. */
export async function resolveTopic(stream: EventStream, topicPrefix: string, name: string): Promise<string> {
  for (const candidate of [name, topicPrefix + name]) {
    try {
      await stream.partitionCount(candidate)
      return candidate
    } catch (err) {
      if (!(err instanceof GatewayError && err.code === 'E_STREAM_TOPIC_UNKNOWN')) throw err
    }
  }
  throw new GatewayError('E_STREAM_TOPIC_UNKNOWN', `no stream topic named "${name}"`)
}

/** Every partition of the topic, or the asked ones after checking that they exist. */
export async function selectPartitions(stream: EventStream, topic: string, asked: readonly string[] = []): Promise<number[]> {
  const count = await stream.partitionCount(topic)
  if (asked.length === 0) return Array.from({ length: count }, (_, i) => i)
  return asked.map((p) => {
    const n = Number(p)
    if (p.trim() === '' || !Number.isInteger(n) || n < 0 || n >= count) {
      throw new GatewayError('E_BAD_REQUEST', `partition ${p}: topic ${topic} has partitions 0..${count - 1}`, { partition: p })
    }
    return n
  })
}

export interface TailOptions {
  /** null: from the oldest record held; N: the last N records of each partition, then onwards. */
  lastN: number | null
  /** Keep reading new records until the signal aborts; otherwise stop at the end seen at start. */
  follow: boolean
  signal: AbortSignal
  /** Wait between reads that found nothing new. */
  pollMs: number
  /** Records per partition per read. */
  batch?: number
}

/**
 * Batches of records in the order a person reads them: each round reads every partition from its
 * cursor and merges the records by timestamp (then partition, offset). A partition's own order is
 * always kept. Ends when the signal aborts, or without `follow` at the end seen when it began.
 */
export async function* tailRecords(stream: EventStream, topic: string, partitions: readonly number[], o: TailOptions): AsyncGenerator<StoredRecord[]> {
  const batch = o.batch ?? 1000
  const marks = new Map((await stream.offsets(topic)).map((p) => [p.partition, p]))
  const mark = (p: number): { low: number; high: number } => marks.get(p) ?? { low: 0, high: 0 }
  const cursor = new Map(partitions.map((p) => [p, o.lastN === null ? mark(p).low : Math.max(mark(p).low, mark(p).high - o.lastN)]))
  const end = new Map(partitions.map((p) => [p, mark(p).high]))
  while (!o.signal.aborted) {
    const round: StoredRecord[] = []
    for (const p of partitions) {
      const limit = o.follow ? batch : Math.min(batch, end.get(p)! - cursor.get(p)!)
      if (limit <= 0) continue
      const records = await stream.read(topic, p, cursor.get(p)!, limit)
      if (records.length > 0) cursor.set(p, records[records.length - 1]!.offset + 1)
      round.push(...records)
    }
    if (round.length > 0) yield round.sort((a, b) => a.timestamp - b.timestamp || a.partition - b.partition || a.offset - b.offset)
    if (!o.follow && partitions.every((p) => cursor.get(p)! >= end.get(p)!)) return
    if (round.length === 0) await sleep(o.pollMs, undefined, { signal: o.signal }).catch(() => undefined)
  }
}
