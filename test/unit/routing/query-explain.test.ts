import fc from 'fast-check'
import { describe, expect, it } from 'vitest'
import { GatewayError } from '../../../src/errors/catalogue.js'
import { compileQuery, MAX_QUERY_LENGTH } from '../../../src/routing/query/index.js'
import { message } from './query-message.js'

describe('explain()', () => {
  const m = message({ app: { processingPath: 'hot' }, body: { temp: 35 } })

  it('lists comparisons, logical operators and calls with their source text, children first', () => {
    const q = compileQuery("$body.temp > 30 AND (processingPath = 'cold' OR NOT IS_DEFINED($body.x))")
    expect(q.explain(m)).toEqual({
      value: true,
      steps: [
        { text: '$body.temp > 30', value: true },
        { text: "processingPath = 'cold'", value: false },
        { text: 'IS_DEFINED($body.x)', value: false },
        { text: 'NOT IS_DEFINED($body.x)', value: true },
        { text: "(processingPath = 'cold' OR NOT IS_DEFINED($body.x))", value: true },
        { text: "$body.temp > 30 AND (processingPath = 'cold' OR NOT IS_DEFINED($body.x))", value: true },
      ],
    })
  })

  it('shows short-circuiting: what was not evaluated is not listed', () => {
    const q = compileQuery("$body.temp < 30 AND processingPath = 'hot'")
    expect(q.explain(m)).toEqual({
      value: false,
      steps: [
        { text: '$body.temp < 30', value: false },
        { text: "$body.temp < 30 AND processingPath = 'hot'", value: false },
      ],
    })
  })

  it('shows undefined values and a condition without steps', () => {
    expect(compileQuery('missing = 1').explain(m)).toEqual({ value: undefined, steps: [{ text: 'missing = 1', value: undefined }] })
    expect(compileQuery('').explain(m)).toEqual({ value: true, steps: [] })
    expect(compileQuery('$body.temp').explain(m)).toEqual({ value: 35, steps: [] })
  })

  it('gives each call its own steps', () => {
    const q = compileQuery("processingPath = 'hot'")
    const first = q.explain(m)
    const second = q.explain(message({ app: { processingPath: 'cold' } }))
    expect(first.steps).toEqual([{ text: "processingPath = 'hot'", value: true }])
    expect(second.steps).toEqual([{ text: "processingPath = 'hot'", value: false }])
  })
})

/** Random small conditions over a random message, from the pieces the language has. */
const leaf = fc.constantFrom(
  '1', '0', '-2.5', '30', "'hot'", "'a'", "''", 'true', 'false', 'null', 'undefined',
  'processingPath', 'level', '$contentType', '$body.temp', '$body.s', '$body.flag', '$body.arr[0]', '$body.obj', '$body.n',
  '$twin.tags.floor', '$twin.properties.reported.battery', 'missing',
)
const { expr } = fc.letrec<{ expr: string }>((tie) => ({
  expr: fc.oneof(
    { depthSize: 'small', maxDepth: 5 },
    leaf,
    fc.tuple(tie('expr'), fc.constantFrom('=', '!=', '<>', '<', '>', '<=', '>='), tie('expr')).map(([a, op, b]) => `(${a}) ${op} (${b})`),
    fc.tuple(tie('expr'), fc.constantFrom('AND', 'OR', 'and', 'Or'), tie('expr')).map(([a, op, b]) => `${a} ${op} ${b}`),
    fc.tuple(tie('expr'), fc.constantFrom('+', '-', '*', '/', '%'), tie('expr')).map(([a, op, b]) => `((${a}) ${op} (${b}))`),
    tie('expr').map((a) => `NOT (${a})`),
    tie('expr').map((a) => `-(${a})`),
    fc.tuple(fc.constantFrom('IS_DEFINED', 'LENGTH', 'ABS', 'LOWER', 'IS_STRING', 'AS_NUMBER'), tie('expr')).map(([f, a]) => `${f}(${a})`),
    fc.tuple(fc.constantFrom('CONCAT', 'CONTAINS', 'POWER'), tie('expr'), tie('expr')).map(([f, a, b]) => `${f}(${a}, ${b})`),
  ),
}))
const json = fc.oneof(fc.constant(null), fc.boolean(), fc.integer({ min: -50, max: 50 }), fc.constantFrom('hot', 'a', '', 'Hot'))
const plain = fc.record({
  app: fc.record({ processingPath: fc.constantFrom('hot', 'cold'), level: fc.constantFrom('1', '35') }, { requiredKeys: [] }),
  system: fc.record({ contentType: fc.constantFrom('application/json', 'text/plain') }, { requiredKeys: [] }),
  body: fc.option(fc.record({ temp: json, s: json, flag: json, arr: fc.array(json, { maxLength: 2 }), obj: fc.dictionary(fc.constantFrom('k'), json), n: json }, { requiredKeys: [] }), { nil: undefined }),
  twin: fc.option(fc.record({ tags: fc.record({ floor: json }), reported: fc.record({ battery: json }) }), { nil: undefined }),
})

describe('properties', () => {
  it('explain() agrees with evaluate(), and its last step (if any) is the whole condition', () => {
    fc.assert(
      fc.property(expr, plain, (text, p) => {
        const q = compileQuery(text)
        const m = message(p)
        const value = q.evaluate(m)
        const explained = q.explain(m)
        expect(explained.value).toStrictEqual(value)
        const last = explained.steps.at(-1)
        if (last !== undefined && last.text === text) expect(last.value).toStrictEqual(value)
        for (const step of explained.steps) expect(text).toContain(step.text)
      }),
      { numRuns: 500 },
    )
  })

  it('AND / OR / NOT follow the three-valued truth tables of compile.ts', () => {
    type V = boolean | undefined
    const logic = fc.letrec<{ node: { text: string; value: V } }>((tie) => ({
      node: fc.oneof(
        { depthSize: 'small', maxDepth: 6 },
        fc.constantFrom<{ text: string; value: V }>({ text: 'true', value: true }, { text: 'false', value: false }, { text: 'missing = 1', value: undefined }, { text: '7', value: undefined }),
        tie('node').map((a) => ({ text: `NOT (${a.text})`, value: a.value === undefined ? undefined : !a.value })),
        fc.tuple(tie('node'), tie('node')).map(([a, b]) => ({
          text: `(${a.text}) AND (${b.text})`,
          value: a.value === false || b.value === false ? false : a.value === true && b.value === true ? true : undefined,
        })),
        fc.tuple(tie('node'), tie('node')).map(([a, b]) => ({
          text: `(${a.text}) OR (${b.text})`,
          value: a.value === true || b.value === true ? true : a.value === false && b.value === false ? false : undefined,
        })),
      ),
    }))
    fc.assert(
      fc.property(logic.node, (n) => {
        // `AND true` maps a non-boolean result (the bare leaf 7) to undefined, as logic sees it.
        expect(compileQuery(`(${n.text}) AND true`).evaluate(message())).toBe(n.value)
      }),
      { numRuns: 500 },
    )
  })

  it('any text either compiles or fails with E_ROUTE_QUERY_INVALID and a column inside it', () => {
    const pieces = fc.constantFrom('(', ')', '[', ']', '.', ',', "'", '"', '\\', '$', '$body', '$twin', '.tags', 'NOT ', ' AND ', ' OR ', '=', '<>', '<', '-', '+', '*', '/', '%', '1', '0x', 'e', '1.5', 'a', ' ', 'LENGTH', 'CONCAT', '#', '!')
    const text = fc.oneof(fc.string({ maxLength: 40 }), fc.array(pieces, { maxLength: 30 }).map((p) => p.join('')))
    fc.assert(
      fc.property(text, (t) => {
        try {
          compileQuery(t).evaluate(message({ body: { a: 1 } }))
        } catch (err) {
          expect(err).toBeInstanceOf(GatewayError)
          const e = err as GatewayError
          expect(e.code).toBe('E_ROUTE_QUERY_INVALID')
          const column = e.details?.column as number
          expect(column).toBeGreaterThanOrEqual(1)
          expect(column).toBeLessThanOrEqual(Math.min(t.length, MAX_QUERY_LENGTH) + 1)
        }
      }),
      { numRuns: 2000 },
    )
  })
})

describe('compiled shortcuts agree with the general rules', () => {
  it('comparing with a literal (either side) gives what comparing two read values gives', () => {
    const primitive = fc.oneof(fc.constant(null), fc.boolean(), fc.integer({ min: -3, max: 3 }), fc.double({ noNaN: true, noDefaultInfinity: true }), fc.constantFrom('a', 'B', '', 'ab'))
    const value = fc.oneof(primitive, fc.constant([1]), fc.constant({ k: 1 }), fc.constant(undefined))
    const literal = (v: unknown): string => (typeof v === 'string' ? `'${v}'` : typeof v === 'number' ? `(${String(v)})` : String(v))
    fc.assert(
      fc.property(value, primitive, fc.constantFrom('=', '!=', '<>', '<', '>', '<=', '>='), (a, b, op) => {
        fc.pre(typeof b !== 'number' || Number.isFinite(b))
        const m = message({ body: a === undefined ? { b } : { a, b } })
        const general = compileQuery(`$body.a ${op} $body.b`).evaluate(m)
        expect(compileQuery(`$body.a ${op} ${literal(b)}`).evaluate(m)).toBe(general)
        const mirrored = compileQuery(`$body.b ${op} $body.a`).evaluate(m)
        expect(compileQuery(`${literal(b)} ${op} $body.a`).evaluate(m)).toBe(mirrored)
      }),
      { numRuns: 1000 },
    )
  })
})
