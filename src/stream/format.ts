import { isUtf8 } from 'node:buffer'
import type { Headers, StoredRecord } from './types.js'

/**
 * The JSON shape of a stored record, shared by the CLI `tail`, the API's live tail and anything
 * else that shows records to people. Device payloads are usually JSON or text, so the value is
 * shown as text when that is lossless and readable, and as base64 otherwise.
 */
export interface RecordJson {
  topic: string
  partition: number
  offset: number
  key: string | null
  timestamp: number
  headers: Headers
  value: string
  encoding: 'utf8' | 'base64'
}

export function recordToJson(r: StoredRecord): RecordJson {
  const text = isReadableText(r.value)
  return {
    topic: r.topic,
    partition: r.partition,
    offset: r.offset,
    key: r.key,
    timestamp: r.timestamp,
    headers: r.headers,
    value: text ? r.value.toString('utf8') : r.value.toString('base64'),
    encoding: text ? 'utf8' : 'base64',
  }
}

/**
 * Valid UTF-8 without control characters other than tab, CR and LF. Other C0 controls, DEL and
 * the C1 range (U+0080-U+009F) mark binary data or would garble a terminal, so they go base64.
 */
export function isReadableText(bytes: Buffer): boolean {
  if (!isUtf8(bytes)) return false
  const text = bytes.toString('utf8')
  for (let i = 0; i < text.length; i++) {
    const c = text.charCodeAt(i)
    if (c < 0x20 ? c !== 0x09 && c !== 0x0a && c !== 0x0d : c >= 0x7f && c <= 0x9f) return false
  }
  return true
}
