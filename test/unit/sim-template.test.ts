import { describe, expect, it } from 'vitest'
import { PayloadTemplate, compileProperties } from '../../device-sim/template.js'
import { SimError } from '../../device-sim/errors.js'

const render = (text: string, seq = 1, size = 0): unknown => JSON.parse(PayloadTemplate.compile(text, size).instantiate()({ deviceId: 'dev-1', seq }).toString())

describe('payload templates', () => {
  it('keeps the type of a value that is one generator, interpolates inside longer strings', () => {
    const out = render('{"n":"{{int 5 5}}","id":"{{deviceId}}","label":"dev {{deviceId}} #{{seq}}","s":"{{seq}}","fixed":true}', 7) as Record<string, unknown>
    expect(out).toEqual({ n: 5, id: 'dev-1', label: 'dev dev-1 #7', s: 7, fixed: true })
  })

  it('draws ints and floats inside their range, floats with the asked digits', () => {
    for (let i = 0; i < 200; i++) {
      const out = render('{"i":"{{int -3 3}}","f":"{{float 1 2 1}}"}') as { i: number; f: number }
      expect(Number.isInteger(out.i) && out.i >= -3 && out.i <= 3).toBe(true)
      expect(out.f >= 1 && out.f <= 2).toBe(true)
      expect(String(out.f).split('.')[1]?.length ?? 0).toBeLessThanOrEqual(1)
    }
  })

  it('walks per device: steps bounded by STEP and clamped to [MIN, MAX], state not shared between devices', () => {
    const template = PayloadTemplate.compile('{"t":"{{walk 10 1 9 11}}"}')
    const a = template.instantiate()
    const b = template.instantiate()
    let prev = 10
    for (let seq = 1; seq <= 300; seq++) {
      const t = (JSON.parse(a({ deviceId: 'a', seq }).toString()) as { t: number }).t
      expect(Math.abs(t - prev)).toBeLessThanOrEqual(1.0005)
      expect(t >= 9 && t <= 11).toBe(true)
      prev = t
    }
    const first = (JSON.parse(b({ deviceId: 'b', seq: 1 }).toString()) as { t: number }).t
    expect(Math.abs(first - 10)).toBeLessThanOrEqual(1.0005)
  })

  it('choice, uuid, timestamp and now produce well-formed values', () => {
    const out = render('{"c":"{{choice red green}}","u":"{{uuid}}","ts":"{{timestamp}}","now":"{{now}}"}') as Record<string, unknown>
    expect(['red', 'green']).toContain(out.c)
    expect(out.u).toMatch(/^[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$/)
    expect(new Date(out.ts as string).toISOString()).toBe(out.ts)
    expect(Math.abs((out.now as number) - Date.now())).toBeLessThan(5000)
  })

  it('pads a JSON object to exactly --payload-size bytes and keeps it valid JSON', () => {
    for (const size of [64, 100, 1000, 4096]) {
      const buf = PayloadTemplate.compile('{"a":"{{seq}}"}', size).instantiate()({ deviceId: 'd', seq: 1 })
      expect(buf.length).toBe(size)
      expect((JSON.parse(buf.toString()) as { a: number }).a).toBe(1)
    }
    // Already larger: unchanged.
    expect(PayloadTemplate.compile('{"a":"xxxxxxxxxx"}', 5).instantiate()({ deviceId: 'd', seq: 1 }).toString()).toBe('{"a":"xxxxxxxxxx"}')
  })

  it('plain text templates are padded with spaces', () => {
    const buf = PayloadTemplate.compile('hello {{deviceId}}', 20).instantiate()({ deviceId: 'd', seq: 1 })
    expect(buf.toString()).toBe('hello d' + ' '.repeat(13))
  })

  it('refuses unknown generators and bad arguments when compiling, with E_SIM_SCENARIO', () => {
    expect(() => PayloadTemplate.compile('{"x":"{{nope}}"}')).toThrow(SimError)
    expect(() => PayloadTemplate.compile('{"x":"{{int a 3}}"}')).toThrow(/int: argument 1 must be a number/)
    try {
      PayloadTemplate.compile('{"x":"{{choice}}"}')
    } catch (err) {
      expect((err as SimError).code).toBe('E_SIM_SCENARIO')
    }
  })

  it('application properties render as strings', () => {
    const props = compileProperties({ kind: 'sensor', seq: '{{seq}}', who: '{{deviceId}}' })
    expect(props({ deviceId: 'dev-9', seq: 3 })).toEqual({ kind: 'sensor', seq: '3', who: 'dev-9' })
  })
})
