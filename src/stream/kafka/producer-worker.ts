import { parentPort, workerData } from 'node:worker_threads'
import { Kafka } from 'kafkajs'
import { toGatewayError } from '../../errors/catalogue.js'
import { decodeBatchRecords } from '../embedded/record-batch.js'
import type { WireError } from '../embedded/writer-protocol.js'
import { KafkaAppender } from './appender.js'
import { kafkaClientConfig, type KafkaEventStreamOptions } from './options.js'
import type { FromProducer, ProducerState, ToProducer } from './producer-thread.js'

/**
 * The Kafka producer thread (started by producer-thread.ts): its own kafkajs client and the
 * KafkaAppender, nothing else. kafkajs's encoding and the produce requests run here; the event
 * loop goes on speaking MQTT on the other core.
 */
const options = workerData as KafkaEventStreamOptions
const port = parentPort!
const appender = new KafkaAppender(new Kafka(kafkaClientConfig(options)), options)

const post = (message: FromProducer, transfer: ArrayBuffer[] = []): void => port.postMessage(message, transfer)
const state = (): ProducerState => ({ stall: appender.stall, lastError: appender.lastError })
const wire = (err: unknown): WireError => {
  const e = toGatewayError(err, 'E_STREAM_UNAVAILABLE')
  return { code: e.code, message: e.message, ...(e.details ? { details: e.details } : {}) }
}

appender.onAttemptFailed = (err) => post({ type: 'attemptFailed', error: wire(err) })

// The stall is set by a timer inside the appender: report changes even when no call settles.
let reported = JSON.stringify(state())
const watch = setInterval(() => {
  const now = JSON.stringify(state())
  if (now === reported) return
  reported = now
  post({ type: 'state', state: state() })
}, 100)

port.on('message', (message: ToProducer) => {
  switch (message.type) {
    case 'append':
      append(message.ids, message.partitions, message.data, message.length)
      break
    case 'beginStop':
      appender.beginStop()
      break
    case 'clearErrorBefore':
      appender.clearErrorBefore(message.before)
      break
    case 'close':
      void close()
      break
  }
})

function append(ids: number[], partitions: number[], data: ArrayBuffer, length: number): void {
  decodeBatchRecords(data, length).forEach((call, i) => {
    const id = ids[i]!
    appender.append(call.topic, partitions[i]!, call.records).then(
      (results) => {
        const placed = new Float64Array(results.length * 2)
        results.forEach((r, j) => {
          placed[2 * j] = r.partition
          placed[2 * j + 1] = r.offset
        })
        post({ type: 'placed', id, placed, state: state() }, [placed.buffer])
      },
      (err: unknown) => post({ type: 'failed', id, error: wire(err), state: state() }),
    )
  })
}

async function close(): Promise<void> {
  try {
    await appender.close()
  } catch {
    // Every call has been answered by then; the producer's disconnect is all that failed.
  }
  clearInterval(watch)
  // Let the answers of the last calls (settled in microtasks) go out first.
  await new Promise((resolve) => setImmediate(resolve))
  post({ type: 'closed', state: state() })
}
