import { randomUUID } from 'node:crypto'
import { SimError } from './errors.js'

/**
 * Payload templates: JSON in which a string value `"{{generator args}}"` is replaced by a
 * generated value of its own type (numbers stay numbers), and a generator inside a longer string
 * is interpolated as text. Generators:
 *   {{int MIN MAX}}            random integer in [MIN, MAX]
 *   {{float MIN MAX [DIGITS]}} random float, DIGITS decimals (default 2)
 *   {{walk START STEP [MIN MAX]}} random walk per device: moves by up to ±STEP each message
 *   {{seq}}                    the message's sequence number (1, 2, ...)
 *   {{choice A B C}}           one of the words
 *   {{deviceId}}               the device id
 *   {{timestamp}}              ISO time of sending; {{now}} epoch milliseconds
 *   {{uuid}}                   a random UUID
 * Compiled once per template; walks keep their state per device (instantiate()).
 */

export interface RenderContext {
  deviceId: string
  seq: number
}

type Gen = (ctx: RenderContext) => string | number
type GenFactory = (args: string[]) => Gen

function num(args: string[], index: number, name: string, fallback?: number): number {
  const raw = args[index]
  if (raw === undefined && fallback !== undefined) return fallback
  const value = Number(raw)
  if (raw === undefined || !Number.isFinite(value)) throw new SimError('E_SIM_SCENARIO', `template generator ${name}: argument ${index + 1} must be a number`)
  return value
}

const GENERATORS: Record<string, GenFactory> = {
  int: (args) => {
    const min = num(args, 0, 'int')
    const max = num(args, 1, 'int')
    return () => min + Math.floor(Math.random() * (max - min + 1))
  },
  float: (args) => {
    const min = num(args, 0, 'float')
    const max = num(args, 1, 'float')
    const digits = num(args, 2, 'float', 2)
    return () => Number((min + Math.random() * (max - min)).toFixed(digits))
  },
  walk: (args) => {
    const start = num(args, 0, 'walk')
    const step = num(args, 1, 'walk')
    const min = num(args, 2, 'walk', -Infinity)
    const max = num(args, 3, 'walk', Infinity)
    let value = start
    return () => {
      value = Math.min(max, Math.max(min, value + (Math.random() * 2 - 1) * step))
      return Number(value.toFixed(3))
    }
  },
  seq: () => (ctx) => ctx.seq,
  choice: (args) => {
    if (args.length === 0) throw new SimError('E_SIM_SCENARIO', 'template generator choice needs at least one word')
    return () => args[Math.floor(Math.random() * args.length)]!
  },
  deviceId: () => (ctx) => ctx.deviceId,
  timestamp: () => () => new Date().toISOString(),
  now: () => () => Date.now(),
  uuid: () => () => randomUUID(),
}

const PLACEHOLDER = /\{\{\s*([A-Za-z]+)((?:\s+[^\s}]+)*)\s*\}\}/g

type Node = (ctx: RenderContext) => unknown

/** A compiled template; call instantiate() once per device (walk state is per device). */
export class PayloadTemplate {
  private constructor(
    private readonly source: unknown,
    private readonly payloadSize: number,
  ) {}

  /** `text` is JSON (or plain text, sent as is apart from placeholders); `payloadSize` pads to that many bytes. */
  static compile(text: string, payloadSize = 0): PayloadTemplate {
    let source: unknown
    try {
      source = JSON.parse(text)
    } catch {
      source = text
    }
    const template = new PayloadTemplate(source, payloadSize)
    template.instantiate() // validate every generator now, not on the first message
    return template
  }

  instantiate(): (ctx: RenderContext) => Buffer {
    const node = compileNode(this.source)
    const size = this.payloadSize
    return (ctx) => pad(node(ctx), size)
  }
}

function compileNode(value: unknown): Node {
  if (typeof value === 'string') return compileString(value)
  if (Array.isArray(value)) {
    const items = value.map(compileNode)
    return (ctx) => items.map((item) => item(ctx))
  }
  if (value !== null && typeof value === 'object') {
    const fields = Object.entries(value).map(([key, v]) => [key, compileNode(v)] as const)
    return (ctx) => Object.fromEntries(fields.map(([key, node]) => [key, node(ctx)]))
  }
  return () => value
}

function compileString(text: string): Node {
  const parts: Array<string | Gen> = []
  let last = 0
  for (const m of text.matchAll(PLACEHOLDER)) {
    const factory = GENERATORS[m[1]!]
    if (!factory) throw new SimError('E_SIM_SCENARIO', `unknown template generator "${m[1]}"`, { known: Object.keys(GENERATORS) })
    if (m.index > last) parts.push(text.slice(last, m.index))
    parts.push(factory(m[2]!.trim() === '' ? [] : m[2]!.trim().split(/\s+/)))
    last = m.index + m[0].length
  }
  if (last < text.length) parts.push(text.slice(last))
  if (parts.length === 1 && typeof parts[0] === 'function') return parts[0] // typed value
  return (ctx) => parts.map((p) => (typeof p === 'string' ? p : String(p(ctx)))).join('')
}

/**
 * Serialise and pad to `size` bytes: objects get a `_fill` string field (so the payload stays
 * valid JSON), other values trailing spaces. A payload already at or above `size` is unchanged.
 */
function pad(value: unknown, size: number): Buffer {
  const text = typeof value === 'string' ? value : JSON.stringify(value)
  const length = Buffer.byteLength(text)
  if (length >= size) return Buffer.from(text)
  if (value !== null && typeof value === 'object' && !Array.isArray(value)) {
    const overhead = Buffer.byteLength(JSON.stringify({ ...value, _fill: '' })) - length
    const fill = Math.max(0, size - length - overhead)
    return Buffer.from(JSON.stringify({ ...value, _fill: 'x'.repeat(fill) }))
  }
  return Buffer.from(text + ' '.repeat(size - length))
}

/** Compile application-property templates (strings only: property values are text). */
export function compileProperties(properties: Record<string, string>): (ctx: RenderContext) => Record<string, string> {
  const nodes = Object.entries(properties).map(([key, v]) => [key, compileString(v)] as const)
  return (ctx) => Object.fromEntries(nodes.map(([key, node]) => [key, String(node(ctx))]))
}

export const DEFAULT_PAYLOAD = '{"deviceId":"{{deviceId}}","seq":"{{seq}}","temperature":"{{walk 21 0.3 -20 60}}","humidity":"{{int 30 90}}","status":"{{choice ok ok ok warn}}","ts":"{{timestamp}}"}'
