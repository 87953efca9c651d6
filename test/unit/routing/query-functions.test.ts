import { describe, expect, it } from 'vitest'
import { functionNames } from '../../../src/routing/query/functions.js'
import { compileQuery } from '../../../src/routing/query/index.js'
import { message } from './query-message.js'

/** Body values the calls below read, so arguments can be of any JSON type. */
const BODY = { s: 'Hello', n: -2.5, b: true, z: null, a: [1, 2], o: { k: 1 }, num: '42', bad: '4 2' }

function value(text: string): unknown {
  return compileQuery(text).evaluate(message({ body: BODY }))
}

describe('math functions (numbers only; non-finite results are undefined)', () => {
  it.each([
    ['ABS(-3)', 3], ['ABS($body.n)', 2.5], ['EXP(0)', 1], ['POWER(2, 10)', 1024], ['POWER(4, 0.5)', 2],
    ['SQUARE(-3)', 9], ['CEILING(1.2)', 2], ['CEILING(-1.2)', -1], ['FLOOR(1.8)', 1], ['FLOOR(-1.2)', -2],
    ['SIGN(-7)', -1], ['SIGN(0)', 0], ['SIGN(-0)', 0], ['SIGN(3)', 1], ['SQRT(16)', 4],
  ])('%s = %s', (text, expected) => {
    expect(value(text)).toBe(expected)
  })

  it.each([
    "ABS('3')", 'EXP($body.s)', 'POWER(2, $body.b)', "POWER('2', 2)", 'SQUARE($body.z)', 'CEILING($body.a)',
    'FLOOR($body.o)', 'SIGN($body.missing)', 'SQRT(-1)', 'EXP(1000)', 'POWER(-8, 1 / 3)', 'POWER(0, -1)',
  ])('%s is undefined', (text) => {
    expect(value(text)).toBeUndefined()
  })
})

describe('type checking and AS_NUMBER', () => {
  it.each([
    ['$body.a', [true, false, true, false, false, false, false, false]],
    ['$body.b', [false, true, true, false, false, false, true, false]],
    ['$body.z', [false, false, true, true, false, false, true, false]],
    ['$body.n', [false, false, true, false, true, false, true, false]],
    ['$body.o', [false, false, true, false, false, true, false, false]],
    ['$body.s', [false, false, true, false, false, false, true, true]],
    ['$body.missing', [false, false, false, false, false, false, false, false]],
  ])('IS_ARRAY IS_BOOL IS_DEFINED IS_NULL IS_NUMBER IS_OBJECT IS_PRIMITIVE IS_STRING of %s', (arg, expected) => {
    const names = ['IS_ARRAY', 'IS_BOOL', 'IS_DEFINED', 'IS_NULL', 'IS_NUMBER', 'IS_OBJECT', 'IS_PRIMITIVE', 'IS_STRING']
    expect(names.map((fn) => value(`${fn}(${arg})`))).toEqual(expected)
  })

  it('AS_NUMBER converts a string holding a JSON number, passes numbers through, else undefined', () => {
    expect(value('AS_NUMBER($body.num)')).toBe(42)
    expect(value("AS_NUMBER(' -1.5e1 ')")).toBe(-15)
    expect(value('AS_NUMBER(7)')).toBe(7)
    for (const arg of ['$body.bad', "''", "'0x10'", "'1e999'", "'NaN'", "'Infinity'", '$body.b', '$body.z', '$body.a', '$body.missing']) {
      expect(value(`AS_NUMBER(${arg})`), arg).toBeUndefined()
    }
  })
})

describe('string functions (strings only; case-sensitive)', () => {
  it.each([
    ["CONCAT('a', 'b')", 'ab'], ["CONCAT($body.s, ', ', 'world')", 'Hello, world'],
    ['LENGTH($body.s)', 5], ["LENGTH('')", 0], ["LOWER('ÀbC')", 'àbc'], ["UPPER('abc')", 'ABC'],
    ['SUBSTRING($body.s, 1, 3)', 'ell'], ['SUBSTRING($body.s, 1)', 'ello'], ['SUBSTRING($body.s, 1.9, 2.9)', 'el'],
    ['SUBSTRING($body.s, -3, 2)', 'He'], ['SUBSTRING($body.s, 9)', ''], ['SUBSTRING($body.s, 1, -1)', ''],
    ["INDEX_OF($body.s, 'l')", 2], ["INDEX_OF($body.s, 'x')", -1], ["INDEX_OF($body.s, '')", 0],
    ["STARTSWITH($body.s, 'He')", true], ["STARTS_WITH($body.s, 'he')", false],
    ["ENDSWITH($body.s, 'lo')", true], ["ends_with($body.s, 'LO')", false],
    ["CONTAINS($body.s, 'ell')", true], ["CONTAINS($body.s, 'ELL')", false],
    ["CONTAINS(LOWER($body.s), 'ell')", true],
  ])('%s = %j', (text, expected) => {
    expect(value(text)).toBe(expected)
  })

  it.each([
    "CONCAT('a', 1)", "CONCAT('a', $body.missing, 'b')", 'LENGTH($body.a)', 'LENGTH(5)', 'LOWER($body.z)',
    'UPPER($body.b)', "SUBSTRING(5, 1)", "SUBSTRING('abc', '1')", "SUBSTRING('abc', 0, $body.missing)",
    "INDEX_OF('abc', 1)", "STARTSWITH(1, '1')", "ENDSWITH('a', $body.o)", "CONTAINS($body.a, 1)",
  ])('%s is undefined', (text) => {
    expect(value(text)).toBeUndefined()
  })

  it('measures strings in UTF-16 code units', () => {
    expect(value("LENGTH('\u00e9\ud83d\ude00')")).toBe(3)
  })
})

describe('the function table', () => {
  it('has exactly the documented functions, plus the STARTS_WITH / ENDS_WITH spellings', () => {
    expect(functionNames().sort()).toEqual(
      [
        'ABS', 'EXP', 'POWER', 'SQUARE', 'CEILING', 'FLOOR', 'SIGN', 'SQRT',
        'AS_NUMBER', 'IS_ARRAY', 'IS_BOOL', 'IS_DEFINED', 'IS_NULL', 'IS_NUMBER', 'IS_OBJECT', 'IS_PRIMITIVE', 'IS_STRING',
        'CONCAT', 'LENGTH', 'LOWER', 'UPPER', 'SUBSTRING', 'INDEX_OF', 'STARTSWITH', 'ENDSWITH', 'CONTAINS',
        'STARTS_WITH', 'ENDS_WITH',
      ].sort(),
    )
  })

  it('a nested call clears nothing its caller still needs (argument arrays are per call site)', () => {
    expect(value("CONCAT(CONCAT('a', 'b'), CONCAT('c', CONCAT('d', 'e')))")).toBe('abcde')
    const q = compileQuery('LENGTH(CONCAT($body.s, $body.s))')
    expect(q.evaluate(message({ body: { s: 'ab' } }))).toBe(4)
    expect(q.evaluate(message({ body: { s: 'abc' } }))).toBe(6)
  })
})
