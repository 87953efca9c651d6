import { GatewayError } from '../../errors/catalogue.js'
import type { Headers, OutgoingRecord } from '../types.js'
import { serializeHeaders } from './store.js'

/**
 * The wire format between the event loop and the stream's writer thread (writer-thread.ts): the
 * records of several append() calls packed into ONE ArrayBuffer, which postMessage transfers
 * without copying. One buffer per batch instead of a structured clone of every record and its
 * Buffer: cloning a small Buffer costs more than the SQLite insert it feeds.
 *
 * Layout (little-endian): u32 call count; per call: u16 topic length, topic (UTF-8), u32 record
 * count; then every record of every call in order: u8 flags (1 = null key, 2 = no headers,
 * 4 = telemetry headers), f64 timestamp, u32 key length, key (UTF-8), u32 value length, value,
 * u32 headers length, headers (the JSON text the `records.headers` column stores).
 *
 * "Telemetry headers" are the headers of most telemetry records: exactly `device-id` (the key)
 * and `enqueued-time` (the timestamp). They are not sent at all; the writer thread rebuilds the
 * same JSON text from the key and the timestamp. That moves the header JSON, a tenth of the
 * encoding's cost on the event loop, to the thread that has time for it.
 */

export interface BatchCall {
  topic: string
  records: OutgoingRecord[]
}

/** A record as the writer thread reads it back: headers already in their stored form. */
export interface DecodedRecord {
  key: string | null
  value: Buffer
  headers: string | null
  timestamp: number
}

const NULL_KEY = 1
const NO_HEADERS = 2
const TELEMETRY_HEADERS = 4
/** Stands for the telemetry headers in `headers` below (encodeBatch writes no text for them). */
const DERIVED = ''
/** flags + timestamp + three lengths. */
const RECORD_FIXED = 1 + 8 + 4 + 4 + 4

/**
 * Pack the calls into one transferable buffer. `now` stamps records without a timestamp, so the
 * time is the append's, not the commit's. The records have passed checkRecord.
 */
export function encodeBatch(calls: readonly BatchCall[], now: () => number): { data: ArrayBuffer; length: number } {
  const headers: Array<string | null> = []
  // An upper bound, not the exact size: UTF-8 takes at most 3 bytes per UTF-16 unit, and
  // measuring every string first (Buffer.byteLength) cost more than the slack.
  let size = 4
  for (const call of calls) {
    size += 2 + 3 * call.topic.length + 4
    for (const record of call.records) {
      const text = isTelemetryHeaders(record) ? DERIVED : serializeHeaders(record.headers)
      headers.push(text)
      size += RECORD_FIXED + record.value.length + 3 * ((record.key?.length ?? 0) + (text?.length ?? 0))
    }
  }
  // Its own ArrayBuffer (not a slice of Node's shared pool), so that it can be transferred.
  const buf = Buffer.allocUnsafeSlow(size)
  let at = buf.writeUInt32LE(calls.length, 0)
  for (const call of calls) {
    const topicBytes = buf.write(call.topic, at + 2)
    buf.writeUInt16LE(topicBytes, at)
    at = buf.writeUInt32LE(call.records.length, at + 2 + topicBytes)
  }
  let h = 0
  const stamp = now()
  for (const call of calls) {
    for (const record of call.records) {
      const text = headers[h++]!
      at = buf.writeUInt8((record.key === null ? NULL_KEY : 0) | (text === null ? NO_HEADERS : 0) | (text === DERIVED ? TELEMETRY_HEADERS : 0), at)
      at = buf.writeDoubleLE(record.timestamp ?? stamp, at)
      at = writeText(buf, record.key, at)
      at = buf.writeUInt32LE(record.value.length, at)
      at += record.value.copy(buf, at)
      at = writeText(buf, text, at)
    }
  }
  return { data: buf.buffer, length: at }
}

/** The calls of a packed batch, records decoded; values are views into `data`, not copies. */
export function decodeBatch(data: ArrayBuffer, length: number): Array<{ topic: string; records: DecodedRecord[] }> {
  return decodeCalls(data, length, (buf, flags, key, timestamp, start, end) =>
    flags & TELEMETRY_HEADERS ? telemetryHeadersJson(key!, timestamp) : flags & NO_HEADERS ? null : buf.toString('utf8', start, end),
  )
}

/** The same, with headers as objects (for Kafka, whose client takes them so): telemetry headers are never turned into text. */
export function decodeBatchRecords(data: ArrayBuffer, length: number): Array<{ topic: string; records: OutgoingRecord[] }> {
  return decodeCalls(data, length, (buf, flags, key, timestamp, start, end): Headers | undefined =>
    flags & TELEMETRY_HEADERS
      ? { 'device-id': key!, 'enqueued-time': String(timestamp) }
      : flags & NO_HEADERS
        ? undefined
        : (JSON.parse(buf.toString('utf8', start, end)) as Headers),
  )
}

type HeaderReader<H> = (buf: Buffer, flags: number, key: string | null, timestamp: number, start: number, end: number) => H

function decodeCalls<H>(data: ArrayBuffer, length: number, readHeaders: HeaderReader<H>): Array<{ topic: string; records: Array<{ key: string | null; value: Buffer; headers: H; timestamp: number }> }> {
  const buf = Buffer.from(data, 0, length)
  const calls: Array<{ topic: string; records: Array<{ key: string | null; value: Buffer; headers: H; timestamp: number }>; count: number }> = []
  let at = 4
  for (let i = buf.readUInt32LE(0); i > 0; i--) {
    const topicLength = buf.readUInt16LE(at)
    const topic = buf.toString('utf8', at + 2, at + 2 + topicLength)
    at += 2 + topicLength
    calls.push({ topic, records: [], count: buf.readUInt32LE(at) })
    at += 4
  }
  for (const call of calls) {
    for (let i = 0; i < call.count; i++) {
      const flags = buf[at]!
      const timestamp = buf.readDoubleLE(at + 1)
      at += 9
      const keyLength = buf.readUInt32LE(at)
      const key = flags & NULL_KEY ? null : buf.toString('utf8', at + 4, at + 4 + keyLength)
      at += 4 + keyLength
      const valueLength = buf.readUInt32LE(at)
      const value = buf.subarray(at + 4, at + 4 + valueLength)
      at += 4 + valueLength
      const headersLength = buf.readUInt32LE(at)
      const headers = readHeaders(buf, flags, key, timestamp, at + 4, at + 4 + headersLength)
      at += 4 + headersLength
      call.records.push({ key, value, headers, timestamp })
    }
  }
  return calls.map(({ topic, records }) => ({ topic, records }))
}

/** True when the headers are exactly `{ device-id: key, enqueued-time: String(timestamp) }`, in that order. */
function isTelemetryHeaders(record: OutgoingRecord): boolean {
  const { headers, key, timestamp } = record
  if (!headers || key === null || timestamp === undefined) return false
  let n = 0
  for (const name in headers) {
    if ((n === 0 && name !== 'device-id') || (n === 1 && name !== 'enqueued-time') || n > 1) return false
    n++
  }
  return n === 2 && headers['device-id'] === key && headers['enqueued-time'] === String(timestamp)
}

/** The JSON.stringify of the telemetry headers (same text, same key order). */
function telemetryHeadersJson(key: string, timestamp: number): string {
  return `{"device-id":${JSON.stringify(key)},"enqueued-time":"${String(timestamp)}"}`
}

function writeText(buf: Buffer, text: string | null, at: number): number {
  if (text === null) return buf.writeUInt32LE(0, at)
  const length = buf.write(text, at + 4)
  buf.writeUInt32LE(length, at)
  return at + 4 + length
}

/** Throws E_BAD_REQUEST unless the record can be stored; encodeBatch takes only checked records. */
export function checkRecord(topic: string, record: OutgoingRecord): void {
  if (!Buffer.isBuffer(record.value)) throw new GatewayError('E_BAD_REQUEST', 'record value must be a Buffer', { topic })
  if (record.key !== null && typeof record.key !== 'string') throw new GatewayError('E_BAD_REQUEST', 'record key must be a string or null', { topic })
}
