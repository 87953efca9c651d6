import { INVALID_UTF8, pick, type MutationPlan, type SplitPlan, type Taint } from './plan.js'
import { bodyOffset, MAX_REMAINING_LENGTH, varint, type Field } from './wire.js'

/** Applying mutation plans to bytes. Every function returns new bytes and leaves its input alone. */

export function mutate(bytes: Buffer, m: MutationPlan): Buffer {
  const out = Buffer.from(bytes)
  const at = (f: number, n = out.length): number => pick(f, Math.max(1, n))
  switch (m.kind) {
    case 'bitflip':
      for (const { at: f, bit } of m.flips) if (out.length > 0) out[at(f)]! ^= 1 << bit
      return out
    case 'set-bytes':
      for (const { at: f, value } of m.writes) if (out.length > 0) out[at(f)] = value
      return out
    case 'truncate':
      return out.subarray(0, at(m.keep))
    case 'length':
      return withRemainingLength(out, lengthTo(m, out.length - bodyOffset(out)))
    case 'string-length': {
      // A 2-byte length somewhere after the fixed header: usually a topic, id or string length.
      const start = bodyOffset(out)
      if (out.length < start + 2) return out
      out.writeUInt16BE(m.value, start + at(m.at, out.length - start - 1))
      return out
    }
    case 'insert': {
      const i = at(m.at, out.length + 1)
      return Buffer.concat([out.subarray(0, i), m.bytes, out.subarray(i)])
    }
    case 'delete': {
      const i = at(m.at)
      return Buffer.concat([out.subarray(0, i), out.subarray(i + m.count)])
    }
    case 'flags':
      if (out.length > 0) out[0] = (out[0]! & 0xf0) | m.nibble
      return out
    case 'append':
      return Buffer.concat([out, m.bytes])
  }
}

function lengthTo(m: Extract<MutationPlan, { kind: 'length' }>, actual: number): number | 'five-bytes' {
  switch (m.to) {
    case 'zero':
      return 0
    case 'minus-one':
      return Math.max(0, actual - 1)
    case 'plus-one':
      return actual + 1
    case 'huge':
      return MAX_REMAINING_LENGTH
    case 'five-bytes':
      return 'five-bytes'
    case 'random':
      return m.random
  }
}

/** The same packet with another remaining length; `five-bytes` writes the invalid `ff ff ff ff 7f`. */
function withRemainingLength(packet: Buffer, length: number | 'five-bytes'): Buffer {
  if (packet.length === 0) return packet
  const len = length === 'five-bytes' ? Buffer.from([0xff, 0xff, 0xff, 0xff, 0x7f]) : varint(length)
  return Buffer.concat([packet.subarray(0, 1), len, packet.subarray(bodyOffset(packet))])
}

/**
 * Put an invalid UTF-8 sequence or U+0000 inside a string field, overwriting as many bytes as it
 * has: the string's length and the packet's stay right, so the damage is semantic only. Returns
 * null when the field is too short to hold it.
 */
export function taintField(bytes: Buffer, field: Field | undefined, taint: Taint, skip = 0): Buffer | null {
  if (!field) return null
  const seq = taint.kind === 'nul' ? [0x00] : INVALID_UTF8[taint.variant % INVALID_UTF8.length]!
  // `skip`: leave the string's first bytes alone (a topic's levels, so the damage lands in its bag).
  const [offset, length] = field[1] - skip >= seq.length ? [field[0] + skip, field[1] - skip] : field
  if (length < seq.length) return null
  const out = Buffer.from(bytes)
  const at = offset + pick(taint.at, length - seq.length + 1)
  out.set(seq, at)
  return out
}

/** Piece sizes for writing `length` bytes in parts (cut points are fractions of the length). */
export function pieces(length: number, split: SplitPlan | null): number[] {
  if (!split || length < 2) return [length]
  const cuts = [...new Set(split.cuts.map((c) => 1 + pick(c, length - 1)))].sort((a, b) => a - b)
  const sizes: number[] = []
  let prev = 0
  for (const c of [...cuts, length]) {
    if (c > prev) sizes.push(c - prev)
    prev = c
  }
  return sizes
}
