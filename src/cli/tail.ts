import { existsSync } from 'node:fs'
import { parseArgs } from 'node:util'
import { setTimeout as sleep } from 'node:timers/promises'
import type { GatewayConfig } from '../config/schema.js'
import { GatewayError } from '../errors/catalogue.js'
import { createEventStream, embeddedStreamFile } from '../app/backends.js'
import type { EventStream, StoredRecord } from '../stream/types.js'
import { recordToJson } from '../stream/format.js'
import { resolveTopic, selectPartitions, tailRecords } from '../stream/tail.js'
import { COMMON_OPTIONS, UsageError, configFromFlags } from './common.js'
import { reportError } from './report.js'

const USAGE = `usage: streamgate tail TOPIC [--from-beginning] [--follow] [--group G] [--partition P ...] [--lines N]

Prints records of a stream topic, one JSON object per line:
  {"topic","partition","offset","key","timestamp","headers","value","encoding"}
value is UTF-8 text when the bytes are readable text, else base64 (encoding says which).

  --from-beginning  start at the oldest record still held
  --follow, -f      keep printing new records until interrupted
  --group G         read as consumer group G: resume after its committed offsets and commit progress
  --partition P     only these partitions (repeatable)
  --lines N         without --from-beginning or a group: start N records before the end of each
                    partition (default 10)
TOPIC is a stream topic name (telemetry, device-events, commands, command-feedback,
routing-deadletter, or a routing endpoint's topic); the
configured topic prefix is added when the bare name does not exist.`

const OPTIONS = {
  ...COMMON_OPTIONS,
  'from-beginning': { type: 'boolean' },
  follow: { type: 'boolean', short: 'f' },
  group: { type: 'string' },
  partition: { type: 'string', multiple: true },
  lines: { type: 'string' },
} as const

export async function tailCommand(argv: string[]): Promise<number> {
  try {
    return await tail(argv)
  } catch (err) {
    return reportError(err, USAGE)
  }
}

async function tail(argv: string[]): Promise<number> {
  const { values, positionals } = parseArgs({ args: argv, options: OPTIONS, allowPositionals: true, strict: true })
  if (values.help) {
    process.stdout.write(USAGE + '\n')
    return 0
  }
  if (positionals.length !== 1) throw new UsageError('tail needs exactly one TOPIC')
  // A group's partitions are assigned by the group, not chosen by hand.
  if (values.group && values.partition) throw new UsageError('--partition cannot be combined with --group')
  const config = configFromFlags(values)
  const stream = await openStream(config)
  const stop = new AbortController()
  const onSignal = (): void => stop.abort()
  process.once('SIGINT', onSignal)
  process.once('SIGTERM', onSignal)
  try {
    const topic = await resolveTopic(stream, config.stream.topicPrefix, positionals[0]!)
    const partitions = await selectPartitions(stream, topic, values.partition).catch((err: unknown) => {
      throw err instanceof GatewayError && err.code === 'E_BAD_REQUEST' ? new UsageError(`--${err.message}`) : err
    })
    const options = { follow: values.follow === true, signal: stop.signal, pollMs: config.stream.embedded.pollIntervalMs }
    if (values.group) {
      await tailGroup(stream, topic, partitions, values.group, values['from-beginning'] === true, options)
    } else {
      const lines = values.lines === undefined ? 10 : Number(values.lines)
      if (!Number.isInteger(lines) || lines < 0) throw new UsageError('--lines expects a whole number')
      for await (const records of tailRecords(stream, topic, partitions, { ...options, lastN: values['from-beginning'] === true ? null : lines })) print(records)
    }
  } finally {
    process.off('SIGINT', onSignal)
    process.off('SIGTERM', onSignal)
    await stream.stop()
  }
  return 0
}

async function openStream(config: GatewayConfig): Promise<EventStream> {
  if (config.stream.backend === 'embedded' && !existsSync(embeddedStreamFile(config))) {
    throw new GatewayError('E_STREAM_UNAVAILABLE', `no embedded stream in ${config.dataDir}: start the gateway there first (or pass --data-dir)`)
  }
  const stream = createEventStream(config, 'tool')
  await stream.start([])
  return stream
}

interface TailOptions {
  follow: boolean
  signal: AbortSignal
  pollMs: number
}

function print(records: StoredRecord[]): void {
  if (records.length > 0) process.stdout.write(records.map((r) => JSON.stringify(recordToJson(r))).join('\n') + '\n')
}

/** As a consumer group: the stream resumes after committed offsets and commits what was printed. */
async function tailGroup(stream: EventStream, topic: string, partitions: number[], group: string, fromBeginning: boolean, o: TailOptions): Promise<void> {
  const end = new Map((await stream.offsets(topic)).map((p) => [p.partition, p.high]))
  const reached = new Map<number, number>()
  const caughtUp = (): boolean => partitions.every((p) => (reached.get(p) ?? -1) + 1 >= end.get(p)!)
  let failure: Error | null = null
  const consumer = await stream.consume({
    topic,
    group,
    from: fromBeginning ? 'earliest' : 'latest',
    handler: async (records) => {
      print(records)
      const last = records[records.length - 1]
      if (last) reached.set(last.partition, last.offset)
    },
    onError: (err) => (failure = err),
  })
  try {
    // Without --follow, stop once every partition has reached the end seen at start (or has
    // nothing to read for a few polls: the group may already be past it).
    let idle = 0
    let lastSeen = -1
    while (!o.signal.aborted && !failure) {
      await sleep(o.pollMs, undefined, { signal: o.signal }).catch(() => undefined)
      if (o.follow) continue
      if (caughtUp()) break
      const seen = [...reached.values()].reduce((a, b) => a + b, 0)
      idle = seen === lastSeen ? idle + 1 : 0
      lastSeen = seen
      if (idle >= 10) break
    }
  } finally {
    await consumer.stop()
  }
  if (failure) throw failure
}
