/**
 * The built-in functions of routing conditions, as listed in Microsoft Learn, "IoT Hub query
 * language for device and module twins, jobs, and message routing", section Functions (math,
 * type checking and casting, string). Names are case-insensitive (`is_defined`, `length` in the
 * docs' own examples). Arity is checked at compile time; a wrong argument type gives undefined
 * at evaluation, like every other type mismatch (see values.ts).
 *
 * Where the docs are silent:
 *   - strings are measured and indexed in UTF-16 code units (LENGTH, SUBSTRING, INDEX_OF), as
 *     .NET and JavaScript strings are;
 *   - SUBSTRING truncates start and length toward zero, treats a negative start as 0 and a
 *     negative length as 0; past the end it gives '';
 *   - STARTSWITH / ENDSWITH are the documented spellings; STARTS_WITH / ENDS_WITH are accepted too;
 *   - AS_NUMBER accepts a string holding a JSON number (optionally with surrounding whitespace);
 *   - IS_DEFINED is true for any defined value; IoT Hub documents it for primitives only and
 *     says objects and arrays "aren't supported" without saying what happens, so we do not fail;
 *   - CONTAINS, STARTSWITH, ENDSWITH and INDEX_OF are case-sensitive; use LOWER() to fold.
 */
import { finite } from './values.js'

/**
 * `apply` reads its arguments from `args`, an array the compiled call site owns and refills on
 * every evaluation (so a call allocates nothing). It must not keep the array.
 */
export interface FunctionSpec {
  /** Canonical (documented) name, for messages. */
  readonly name: string
  readonly minArgs: number
  readonly maxArgs: number
  readonly apply: (args: readonly unknown[]) => unknown
}

/** Most arguments any call may have (CONCAT is the only variadic function). */
export const MAX_FUNCTION_ARGS = 32

type Apply = FunctionSpec['apply']

function math(f: (x: number) => number): Apply {
  return (args) => {
    const x = args[0]
    return typeof x === 'number' ? finite(f(x)) : undefined
  }
}

function is(test: (x: unknown) => boolean): Apply {
  return (args) => test(args[0])
}

function text1(f: (s: string) => unknown): Apply {
  return (args) => {
    const s = args[0]
    return typeof s === 'string' ? f(s) : undefined
  }
}

function text2(f: (s: string, t: string) => unknown): Apply {
  return (args) => {
    const s = args[0]
    const t = args[1]
    return typeof s === 'string' && typeof t === 'string' ? f(s, t) : undefined
  }
}

const JSON_NUMBER = /^\s*-?(?:0|[1-9][0-9]*)(?:\.[0-9]+)?(?:[eE][+-]?[0-9]+)?\s*$/

function asNumber(args: readonly unknown[]): unknown {
  const x = args[0]
  if (typeof x === 'number') return x
  if (typeof x !== 'string' || !JSON_NUMBER.test(x)) return undefined
  return finite(Number(x))
}

function concat(args: readonly unknown[]): unknown {
  let out = ''
  for (let i = 0; i < args.length; i++) {
    const s = args[i]
    if (typeof s !== 'string') return undefined
    out += s
  }
  return out
}

function substring(args: readonly unknown[]): unknown {
  const s = args[0]
  const start = args[1]
  const length = args.length > 2 ? args[2] : Number.MAX_SAFE_INTEGER
  if (typeof s !== 'string' || typeof start !== 'number' || typeof length !== 'number') return undefined
  if (Number.isNaN(start) || Number.isNaN(length)) return undefined
  const from = Math.max(0, Math.trunc(start))
  const count = Math.max(0, Math.trunc(length))
  return s.slice(from, from + count)
}

function isObject(x: unknown): boolean {
  return x !== null && typeof x === 'object' && !Array.isArray(x)
}

function isPrimitive(x: unknown): boolean {
  return x === null || typeof x === 'string' || typeof x === 'number' || typeof x === 'boolean'
}

function fn(name: string, minArgs: number, maxArgs: number, apply: Apply): FunctionSpec {
  return Object.freeze({ name, minArgs, maxArgs, apply })
}

const startsWith = fn('STARTSWITH', 2, 2, text2((s, t) => s.startsWith(t)))
const endsWith = fn('ENDSWITH', 2, 2, text2((s, t) => s.endsWith(t)))

const TABLE: readonly FunctionSpec[] = [
  fn('ABS', 1, 1, math(Math.abs)),
  fn('EXP', 1, 1, math(Math.exp)),
  fn('POWER', 2, 2, (args) => {
    const x = args[0]
    const y = args[1]
    return typeof x === 'number' && typeof y === 'number' ? finite(Math.pow(x, y)) : undefined
  }),
  fn('SQUARE', 1, 1, math((x) => x * x)),
  fn('CEILING', 1, 1, math(Math.ceil)),
  fn('FLOOR', 1, 1, math(Math.floor)),
  fn('SIGN', 1, 1, math((x) => Math.sign(x) || 0)), // || 0: SIGN(-0) is 0, not -0
  fn('SQRT', 1, 1, math(Math.sqrt)),

  fn('AS_NUMBER', 1, 1, asNumber),
  fn('IS_ARRAY', 1, 1, is(Array.isArray)),
  fn('IS_BOOL', 1, 1, is((x) => typeof x === 'boolean')),
  fn('IS_DEFINED', 1, 1, is((x) => x !== undefined)),
  fn('IS_NULL', 1, 1, is((x) => x === null)),
  fn('IS_NUMBER', 1, 1, is((x) => typeof x === 'number')),
  fn('IS_OBJECT', 1, 1, is(isObject)),
  fn('IS_PRIMITIVE', 1, 1, is(isPrimitive)),
  fn('IS_STRING', 1, 1, is((x) => typeof x === 'string')),

  fn('CONCAT', 2, MAX_FUNCTION_ARGS, concat),
  fn('LENGTH', 1, 1, text1((s) => s.length)),
  fn('LOWER', 1, 1, text1((s) => s.toLowerCase())),
  fn('UPPER', 1, 1, text1((s) => s.toUpperCase())),
  fn('SUBSTRING', 2, 3, substring),
  fn('INDEX_OF', 2, 2, text2((s, t) => s.indexOf(t))),
  startsWith,
  endsWith,
  fn('CONTAINS', 2, 2, text2((s, t) => s.includes(t))),
]

const BY_NAME: ReadonlyMap<string, FunctionSpec> = new Map([
  ...TABLE.map((spec) => [spec.name, spec] as const),
  ['STARTS_WITH', startsWith],
  ['ENDS_WITH', endsWith],
])

/** The function named `upperName` (already upper-cased), or undefined. */
export function lookupFunction(upperName: string): FunctionSpec | undefined {
  return BY_NAME.get(upperName)
}

/** Every accepted spelling, upper-cased (for tests and the admin UI's completion). */
export function functionNames(): string[] {
  return [...BY_NAME.keys()]
}
