import { GatewayError } from '../../errors/catalogue.js'

/** kafkajs errors carry the broker's error name in `type` (e.g. UNKNOWN_TOPIC_OR_PARTITION). */
function kafkaErrorType(err: unknown): string | undefined {
  if (typeof err !== 'object' || err === null) return undefined
  const type = (err as { type?: unknown }).type
  return typeof type === 'string' ? type : undefined
}

export function isUnknownTopic(err: unknown): boolean {
  const type = kafkaErrorType(err)
  return type === 'UNKNOWN_TOPIC_OR_PARTITION' || type === 'UNKNOWN_TOPIC_ID'
}

export function isTopicExists(err: unknown): boolean {
  return kafkaErrorType(err) === 'TOPIC_ALREADY_EXISTS'
}

/**
 * Maps anything a kafkajs call throws to the port's codes: an unknown topic stays
 * E_STREAM_TOPIC_UNKNOWN, everything else (connection refused, timeouts, leader elections,
 * authentication) is E_STREAM_UNAVAILABLE, which callers retry.
 */
export function toKafkaStreamError(err: unknown, what: string, topic?: string): GatewayError {
  if (err instanceof GatewayError) return err
  const message = describeError(err)
  if (isUnknownTopic(err)) {
    return new GatewayError('E_STREAM_TOPIC_UNKNOWN', `topic ${topic ?? '(unknown)'} does not exist`, topic ? { topic } : {}, { cause: err })
  }
  return new GatewayError('E_STREAM_UNAVAILABLE', `${what}: ${message}`, topic ? { topic } : {}, { cause: err })
}

/** The message, with the per-topic causes kafkajs collects in an aggregate error (createTopics). */
export function describeError(err: unknown): string {
  const message = err instanceof Error ? err.message : String(err)
  const inner = (err as { errors?: unknown } | null)?.errors
  if (!Array.isArray(inner) || inner.length === 0) return message
  const causes = inner.map((e: unknown) => {
    const topic = (e as { topic?: unknown }).topic
    return `${typeof topic === 'string' ? `${topic}: ` : ''}${e instanceof Error ? e.message : String(e)}`
  })
  return `${message} (${causes.join('; ')})`
}
