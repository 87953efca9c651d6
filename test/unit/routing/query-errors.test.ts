import { describe, expect, it } from 'vitest'
import { GatewayError } from '../../../src/errors/catalogue.js'
import { compileQuery, MAX_FUNCTION_ARGS, MAX_QUERY_DEPTH, MAX_QUERY_LENGTH } from '../../../src/routing/query/index.js'

function failure(text: string): GatewayError {
  try {
    compileQuery(text)
  } catch (err) {
    expect(err).toBeInstanceOf(GatewayError)
    return err as GatewayError
  }
  throw new Error(`compiled: ${text.slice(0, 80)}`)
}

function expectInvalid(text: string, column: number, message?: RegExp): void {
  const err = failure(text)
  expect(err.code).toBe('E_ROUTE_QUERY_INVALID')
  expect(err.details?.column).toBe(column)
  expect(err.message).toContain(`column ${column}`)
  if (message !== undefined) expect(err.message).toMatch(message)
}

describe('malformed conditions name the column', () => {
  it.each([
    // [condition, column, message]
    ["processingPath = 'hot", 18, /unterminated string/],
    ['a = "x', 5, /unterminated string/],
    ['a = 1 )', 7, /expected an operator or the end of the condition .*found '\)'/],
    ['a = 1 b', 7, /found 'b'/],
    ['true false', 6, /found 'false'/],
    ['a = 1 AND', 10, /expected an operand at column 10 \(found the end of the condition\)/],
    ['a =', 4, /expected an operand/],
    ['a = = 1', 5, /expected an operand .*found '='/],
    ['x == 1', 4, /expected an operand/],
    ['AND a = 1', 1, /expected an operand .*found 'AND'/],
    ['NOT', 4, /expected an operand/],
    ["a = NOT 'x'", 5, /expected an operand .*found 'NOT'/],
    ['()', 2, /expected an operand .*found '\)'/],
    ['(a = 1', 7, /expected '\)'/],
    ['(a = 1 b', 8, /expected '\)' .*found 'b'/],
    ['FOO(1)', 1, /unknown function 'FOO'/],
    ['$body.x = bar(1)', 11, /unknown function 'bar'/],
    ['LENGTH()', 1, /LENGTH takes 1 argument, not 0/],
    ["x = length('a', 'b')", 5, /LENGTH takes 1 argument, not 2/],
    ["CONCAT('a')", 1, /CONCAT takes 2 to 32 arguments, not 1/],
    ["SUBSTRING('a')", 1, /SUBSTRING takes 2 or 3 arguments, not 1/],
    ["POWER(2, 3, 4) = 8", 1, /POWER takes 2 arguments, not 3/],
    ["LENGTH('a'", 11, /expected ',' or '\)'/],
    ["LENGTH('a' 'b')", 12, /expected ',' or '\)' .*found a string/],
    ['$body.', 7, /expected a property name .*found the end of the condition/],
    ['$body.a. = 1', 10, /expected a property name .*found '='/],
    ['$body.[0] = 1', 7, /expected a property name .*found '\['/],
    ["$body.'a' = 1", 7, /expected a property name .*found a string/],
    ['$body.a.0 = 1', 9, /expected a property name .*found '0'/],
    ['$body.a[x] = 1', 9, /expected an array index/],
    ['$body.a[-1] = 1', 9, /expected an array index .*found '-'/],
    ['$body.a[1.5] = 1', 9, /expected an array index/],
    ['$body.a[1 = 1', 11, /expected '\]'/],
    ['$twin = 1', 7, /expected '.tags' or '.properties'/],
    ['$twin.foo = 1', 7, /expected 'tags' or 'properties' .*found 'foo'/],
    ['$twin.properties = 1', 18, /expected '.desired' or '.reported'/],
    ['$twin.properties.wanted.x = 1', 18, /expected 'desired' or 'reported' .*found 'wanted'/],
    ['$ = 1', 2, /expected a property name after '\$'/],
    ['x = 1.2.3', 5, /invalid number '1.2.3'/],
    ['x = 12abc', 5, /invalid number '12abc'/],
    ['x = 1e', 5, /invalid number '1e'/],
    ['x = 1e+', 5, /invalid number '1e'/],
    ['x = 1.', 5, /invalid number '1.'/],
    ['x = 0x', 5, /invalid number '0x'/],
    ['x = 1e999', 5, /invalid number/],
    ['x # 1', 3, /unexpected character '#'/],
    ['!x', 1, /unexpected character '!'/],
    ["x = 'a\\nb'", 7, /invalid escape '\\n'/],
    ["x = '\\u12'", 6, /invalid escape '\\u'/],
    ['1 < 2 < 3', 7, /comparisons do not chain/],
    ['a = 1\nAND', 10, /expected an operand/],
  ])('%j fails at column %i', (text, column, message) => {
    expectInvalid(text, column, message)
  })

  it('a non-string condition is rejected, not thrown as a TypeError', () => {
    expect(failure(null as unknown as string).code).toBe('E_ROUTE_QUERY_INVALID')
  })
})

describe('bounds', () => {
  it(`accepts exactly MAX_QUERY_LENGTH (${MAX_QUERY_LENGTH}) characters and rejects one more`, () => {
    const fits = `true${' '.repeat(MAX_QUERY_LENGTH - 4)}`
    expect(compileQuery(fits).evaluate({} as never)).toBe(true)
    expectInvalid(`${fits} `, MAX_QUERY_LENGTH + 1, /longer than 4096 characters/)
  })

  it.each([
    ['100,000 (', '('.repeat(100_000)],
    ['100,000 NOT', 'NOT '.repeat(100_000)],
    ['100,000 -', '-'.repeat(100_000)],
  ])('%s is E_ROUTE_QUERY_INVALID, never a RangeError', (_name, text) => {
    expectInvalid(text, MAX_QUERY_LENGTH + 1)
  })

  it(`nests ${MAX_QUERY_DEPTH} levels and no more, without recursing past the bound`, () => {
    const d = MAX_QUERY_DEPTH
    expect(compileQuery(`${'('.repeat(d)}true${')'.repeat(d)}`).evaluate({} as never)).toBe(true)
    expect(compileQuery(`${'NOT '.repeat(d)}true`).evaluate({} as never)).toBe(true) // 64 is even
    expect(compileQuery(`${'-'.repeat(d)}1 = 1`).evaluate({} as never)).toBe(true)
    // The level past the bound is reported where it starts; the text fits in the length bound,
    // so this is the depth check speaking, and it runs at 2,000 levels of input as at 65.
    expectInvalid(`${'('.repeat(d + 1)}true${')'.repeat(d + 1)}`, d + 1, /nesting deeper than 64 levels/)
    expectInvalid(`${'('.repeat(2000)}true${')'.repeat(2000)}`, d + 1, /nesting/)
    expectInvalid(`${'NOT '.repeat(1000)}true`, 4 * d + 1, /nesting/)
    expectInvalid(`${'-'.repeat(4000)}1`, d + 1, /nesting/)
    expectInvalid(`${'ABS('.repeat(d + 1)}1${')'.repeat(d + 1)}`, 4 * d + 4, /nesting/)
  })

  it(`takes ${MAX_FUNCTION_ARGS} function arguments and reports the one past it`, () => {
    const args = (n: number): string => Array.from({ length: n }, () => "'a'").join(', ')
    expect(compileQuery(`CONCAT(${args(MAX_FUNCTION_ARGS)})`).evaluate({} as never)).toBe('a'.repeat(MAX_FUNCTION_ARGS))
    // CONCAT( is 7 characters, each "'a', " 5: the 33rd argument starts at offset 7 + 32 * 5.
    expectInvalid(`CONCAT(${args(MAX_FUNCTION_ARGS + 1)})`, 7 + 5 * MAX_FUNCTION_ARGS + 1, /more than 32 function arguments/)
    expectInvalid(`IS_NULL(${args(500)})`, 8 + 5 * MAX_FUNCTION_ARGS + 1, /more than 32/)
  })
})
