import { describe, expect, it } from 'vitest'
import { isReadableText, recordToJson } from '../../src/stream/format.js'
import type { StoredRecord } from '../../src/stream/types.js'

function record(value: Buffer): StoredRecord {
  return { topic: 'telemetry', partition: 3, offset: 42, key: 'dev-1', value, headers: { 'content-type': 'application/json' }, timestamp: 1_700_000_000_000 }
}

describe('recordToJson', () => {
  it('keeps every field and shows readable UTF-8 as text', () => {
    const json = recordToJson(record(Buffer.from('{"temp":21.5,"unit":"°C"}\r\n\tok')))
    expect(json).toEqual({
      topic: 'telemetry',
      partition: 3,
      offset: 42,
      key: 'dev-1',
      timestamp: 1_700_000_000_000,
      headers: { 'content-type': 'application/json' },
      value: '{"temp":21.5,"unit":"°C"}\r\n\tok',
      encoding: 'utf8',
    })
  })

  it('keeps a null key and an empty value (empty text is valid UTF-8)', () => {
    const json = recordToJson({ ...record(Buffer.alloc(0)), key: null })
    expect(json.key).toBeNull()
    expect(json).toMatchObject({ value: '', encoding: 'utf8' })
  })

  it('falls back to base64 for invalid UTF-8 and round-trips the bytes', () => {
    const bytes = Buffer.from([0xc3, 0x28, 0xff, 0x00, 0x41])
    const json = recordToJson(record(bytes))
    expect(json.encoding).toBe('base64')
    expect(Buffer.from(json.value, 'base64').equals(bytes)).toBe(true)
  })

  it('uses base64 for a truncated multi-byte sequence', () => {
    const euro = Buffer.from('€', 'utf8')
    expect(recordToJson(record(euro.subarray(0, 2))).encoding).toBe('base64')
  })
})

describe('isReadableText', () => {
  it.each([
    ['NUL', '\u0000'],
    ['bell', 'ring\u0007'],
    ['escape sequence', '\u001b[31mred'],
    ['DEL', 'a\u007f'],
    ['C1 control', 'a\u0085b'],
  ])('rejects valid UTF-8 containing %s', (_name, text) => {
    expect(isReadableText(Buffer.from(text, 'utf8'))).toBe(false)
  })

  it.each([
    ['tab, CR, LF', 'a\tb\r\nc'],
    ['non-ASCII letters and emoji', 'Grüße 😀 温度'],
    ['U+00A0 (first char after C1)', 'a\u00a0b'],
  ])('accepts %s', (_name, text) => {
    expect(isReadableText(Buffer.from(text, 'utf8'))).toBe(true)
  })
})
