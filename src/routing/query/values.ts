/**
 * Value semantics of routing conditions, after IoT Hub's query language (a Cosmos DB style SQL
 * over JSON values: undefined, null, boolean, number, string, array, object).
 *
 * Comparisons (= != <> < > <= >=):
 *   - undefined on either side gives undefined (a missing property never matches, not even `!=`);
 *   - operands of different types give undefined (`'1' = 1` is undefined, not false): IoT Hub
 *     does not convert, so an application property (always a string) compared with a number is
 *     undefined; write AS_NUMBER(temperature) > 30;
 *   - numbers compare numerically, strings ordinally by UTF-16 code unit and case-sensitively
 *     (names are case-insensitive, values are not), booleans with false < true;
 *   - null = null is true and null != null false; ordering null (<, <=, ...) is undefined;
 *   - arrays and objects are not comparable: undefined.
 * Arithmetic (+ - * / % and unary -): numbers only, anything else gives undefined; a result that
 * is not a finite number (division or % by zero, overflow) is undefined, as JSON has no such number.
 */
import type { ArithOp, CompareOp, PathStep } from './ast.js'

export type Comparator = (a: number | string | boolean, b: number | string | boolean) => boolean

/** Picked once at compile time, so evaluation does not switch on the operator. */
export function comparator(op: CompareOp): Comparator {
  switch (op) {
    case '=': return (a, b) => a === b
    case '!=': return (a, b) => a !== b
    case '<': return (a, b) => a < b
    case '>': return (a, b) => a > b
    case '<=': return (a, b) => a <= b
    case '>=': return (a, b) => a >= b
  }
}

/** A comparison of two values, with the rules above. */
export function compareValues(op: CompareOp, cmp: Comparator, a: unknown, b: unknown): boolean | undefined {
  if (a === null || b === null) {
    if (a !== b) return undefined // null against undefined or a non-null value
    return op === '=' ? true : op === '!=' ? false : undefined
  }
  const type = typeof a
  if (type !== typeof b || (type !== 'number' && type !== 'string' && type !== 'boolean')) return undefined
  return cmp(a as number, b as number)
}

export function arithmetic(op: ArithOp, a: unknown, b: unknown): number | undefined {
  if (typeof a !== 'number' || typeof b !== 'number') return undefined
  let r: number
  switch (op) {
    case '+': r = a + b; break
    case '-': r = a - b; break
    case '*': r = a * b; break
    case '/': r = a / b; break
    case '%': r = a % b; break
  }
  return Number.isFinite(r) ? r : undefined
}

/** A number result of a function, with non-finite results (NaN, Infinity) as undefined. */
export function finite(n: number): number | undefined {
  return Number.isFinite(n) ? n : undefined
}

/**
 * Walk a $body or $twin path. A property step reads own properties of an object only (never an
 * array's `length` or an inherited `constructor`); an index step reads arrays only.
 */
export function walk(root: unknown, steps: readonly PathStep[]): unknown {
  let value = root
  for (let i = 0; i < steps.length; i++) {
    if (value === null || typeof value !== 'object') return undefined
    const step = steps[i] as PathStep
    if (step.index >= 0) {
      if (!Array.isArray(value)) return undefined
      value = value[step.index]
    } else {
      if (Array.isArray(value)) return undefined
      value = property(value as Record<string, unknown>, step)
    }
    if (value === undefined) return undefined
  }
  return value
}

/**
 * Names in $body and $twin paths are case-insensitive (IoT Hub: "the query isn't case-sensitive"
 * for twins; "device-to-cloud messaging isn't case-sensitive"). The exact spelling is tried first,
 * which costs one lookup; only on a miss are the keys scanned for a case-insensitive match, the
 * first in key order winning (IoT Hub recommends names unique regardless of case).
 */
function property(object: Record<string, unknown>, step: PathStep): unknown {
  if (Object.hasOwn(object, step.key)) return object[step.key]
  for (const key in object) {
    if (Object.hasOwn(object, key) && key.toLowerCase() === step.lower) {
      return object[key]
    }
  }
  return undefined
}
