/*
 * Grammar of routing conditions (ISO 14977 EBNF: { } repeats, [ ] is optional, (* *) comments).
 * Check it against Microsoft Learn, "IoT Hub message routing query syntax" and "IoT Hub query
 * language for device and module twins, jobs, and message routing" (Expressions and conditions,
 * Operators, Functions). Keywords, function names and all property names are case-insensitive.
 *
 *   condition      = [ or ] ;                        (* empty or blank text means true *)
 *   or             = and , { "OR" , and } ;
 *   and            = not , { "AND" , not } ;
 *   not            = "NOT" , not | comparison ;
 *   comparison     = additive , [ compare_op , additive ] ;   (* a = b = c is an error *)
 *   compare_op     = "=" | "!=" | "<>" | "<" | ">" | "<=" | ">=" ;
 *   additive       = multiplicative , { ( "+" | "-" ) , multiplicative } ;
 *   multiplicative = unary , { ( "*" | "/" | "%" ) , unary } ;
 *   unary          = "-" , unary | primary ;
 *   primary        = number | string | "TRUE" | "FALSE" | "NULL" | "UNDEFINED"
 *                  | call | reference | "(" , or , ")" ;
 *   call           = function_name , "(" , [ or , { "," , or } ] , ")" ;   (* functions.ts *)
 *   reference      = body_ref | twin_ref | system_ref | app_ref ;
 *   body_ref       = "$body" , { step } ;
 *   twin_ref       = "$twin" , "." , ( "tags" | "properties" , "." , ( "desired" | "reported" ) ) ,
 *                    { step } ;
 *   step           = "." , name | "[" , integer , "]" ;
 *   system_ref     = "$" , name ;       (* $contentType, $contentEncoding, $connectionDeviceId,
 *                                          $messageId, $correlationId, $enqueuedTime *)
 *   app_ref        = name ;             (* an application property, e.g. processingPath *)
 *
 * Terminals (lexer.ts): name = ( letter | "_" | "$" ) , { letter | digit | "_" | "$" } , with "-"
 * inside $-names and path steps ($dt-subject); number = digits , [ "." , digits ] ,
 * [ ( "e" | "E" ) , [ "+" | "-" ] , digits ] | "0x" , hex_digits ; integer = digits ;
 * string = "'" ... "'" | '"' ... '"' with the escapes \' \" \\ \uXXXX.
 *
 * Precedence, loosest first: OR, AND, NOT, comparison, + -, * / %, unary -. So
 * `NOT a = 1 AND b = 2` is `(NOT (a = 1)) AND (b = 2)` and `1 + 2 * 3 = 7` is true.
 *
 * Where this differs from the documented grammar, and why:
 *   - the docs' array constants ([1, 2]) are not supported: no routing function takes an array
 *     and comparisons on arrays are undefined, so they could only ever yield undefined;
 *   - unary minus and NOT, listed among the operators but absent from the docs' grammar, are here;
 *   - comparisons do not chain; `a < b < c` would compare a boolean with c (always undefined),
 *     so it is reported as the likely mistake it is;
 *   - `$body` with no property step, or one starting with an index, parses but is always
 *     undefined: the docs say queries "on the entire body reference" are not supported and give
 *     `$body[0] = 'Feb'` as returning undefined;
 *   - `$twin` must be followed by tags or properties.desired / properties.reported (what a
 *     routing twin holds); anything else is a compile error rather than a silent undefined.
 *
 * Bounds: the text is at most MAX_QUERY_LENGTH characters, checked before lexing; nesting
 * (parentheses, NOT, unary minus, function calls) at most MAX_QUERY_DEPTH levels, counted on the
 * way down so the parser recurses at most that deep whatever the input; at most
 * MAX_FUNCTION_ARGS arguments per call. AND/OR and arithmetic chains are parsed by loops into
 * flat nodes, so the tree is never deeper than the nesting bound allows.
 */
import type { ArithOp, CompareOp, Node, PathStep, TwinNode } from './ast.js'
import { queryError } from './errors.js'
import { lookupFunction, MAX_FUNCTION_ARGS } from './functions.js'
import type { SystemPropertyName } from './index.js'
import { tokenize, type Token } from './lexer.js'

/**
 * IoT Hub documents no length limit for a route condition. Conditions arrive through the admin
 * API only, but are still bounded: 4096 characters is four times any realistic condition and
 * keeps parsing well under a millisecond.
 */
export const MAX_QUERY_LENGTH = 4096
/** Levels of parentheses, NOT, unary minus and function calls inside one another. */
export const MAX_QUERY_DEPTH = 64

/** `$name` (lower-cased, without `$`) → system property. Bare `enqueuedTime` also reads it (docs before 2023). */
const SYSTEM_PROPERTIES: ReadonlyMap<string, SystemPropertyName> = new Map([
  ['contenttype', 'contentType'],
  ['contentencoding', 'contentEncoding'],
  ['connectiondeviceid', 'connectionDeviceId'],
  ['messageid', 'messageId'],
  ['correlationid', 'correlationId'],
  ['enqueuedtime', 'enqueuedTime'],
])

const CONSTANTS: ReadonlyMap<string, unknown> = new Map<string, unknown>([
  ['TRUE', true],
  ['FALSE', false],
  ['NULL', null],
  ['UNDEFINED', undefined],
])

const COMPARE_OPS: ReadonlyMap<string, CompareOp> = new Map([
  ['=', '='], ['!=', '!='], ['<>', '!='], ['<', '<'], ['>', '>'], ['<=', '<='], ['>=', '>='],
])
const ADDITIVE: ReadonlySet<string> = new Set(['+', '-'])
const MULTIPLICATIVE: ReadonlySet<string> = new Set(['*', '/', '%'])

/** Parse a condition; undefined for an empty (or blank) one, which means true. */
export function parseCondition(text: string): Node | undefined {
  if (text.length > MAX_QUERY_LENGTH) {
    throw queryError(`condition longer than ${MAX_QUERY_LENGTH} characters (${text.length}) at {column}`, MAX_QUERY_LENGTH)
  }
  return new Parser(tokenize(text)).parse()
}

function describe(t: Token): string {
  if (t.kind === 'eof') return 'the end of the condition'
  return t.kind === 'string' ? 'a string' : `'${t.text}'`
}

function isPunct(t: Token, text: string): boolean {
  return t.kind === 'punct' && t.text === text
}

function step(key: string): PathStep {
  return { key, lower: key.toLowerCase(), index: -1 }
}

class Parser {
  private pos = 0
  private depth = 0

  constructor(private readonly tokens: readonly Token[]) {}

  parse(): Node | undefined {
    if (this.peek().kind === 'eof') return undefined
    const node = this.or()
    const t = this.peek()
    if (t.kind !== 'eof') throw queryError(`expected an operator or the end of the condition at {column} (found ${describe(t)})`, t.start)
    return node
  }

  private peek(): Token {
    return this.tokens[this.pos] as Token
  }

  /** The current token, then move on (never past the final eof). */
  private next(): Token {
    const t = this.peek()
    if (t.kind !== 'eof') this.pos++
    return t
  }

  /** End offset of the last token consumed. */
  private get end(): number {
    return (this.tokens[this.pos - 1] as Token).end
  }

  private isKeyword(t: Token, keyword: string): boolean {
    return t.kind === 'name' && t.upper === keyword
  }

  /** Count one nesting level before descending, so the bound holds before the stack grows. */
  private enter(t: Token): void {
    if (++this.depth > MAX_QUERY_DEPTH) throw queryError(`nesting deeper than ${MAX_QUERY_DEPTH} levels at {column}`, t.start)
  }

  private or(): Node {
    return this.logical('OR', 'or', () => this.and())
  }

  private and(): Node {
    return this.logical('AND', 'and', () => this.not())
  }

  private logical(keyword: string, kind: 'and' | 'or', operand: () => Node): Node {
    const first = operand()
    if (!this.isKeyword(this.peek(), keyword)) return first
    const operands = [first]
    while (this.isKeyword(this.peek(), keyword)) {
      this.next()
      operands.push(operand())
    }
    return { kind, operands, start: first.start, end: this.end }
  }

  private not(): Node {
    const t = this.peek()
    if (!this.isKeyword(t, 'NOT')) return this.comparison()
    this.next()
    this.enter(t)
    const operand = this.not()
    this.depth--
    return { kind: 'not', operand, start: t.start, end: operand.end }
  }

  private comparison(): Node {
    const left = this.arithmetic(ADDITIVE, () => this.arithmetic(MULTIPLICATIVE, () => this.unary()))
    const op = COMPARE_OPS.get(this.peek().kind === 'punct' ? this.peek().text : '')
    if (op === undefined) return left
    this.next()
    const right = this.arithmetic(ADDITIVE, () => this.arithmetic(MULTIPLICATIVE, () => this.unary()))
    const after = this.peek()
    if (after.kind === 'punct' && COMPARE_OPS.has(after.text)) {
      throw queryError(`comparisons do not chain: unexpected '${after.text}' at {column}; add parentheses`, after.start)
    }
    return { kind: 'compare', op, left, right, start: left.start, end: right.end }
  }

  private arithmetic(ops: ReadonlySet<string>, operand: () => Node): Node {
    const first = operand()
    const isOp = (t: Token): boolean => t.kind === 'punct' && ops.has(t.text)
    if (!isOp(this.peek())) return first
    const operands = [first]
    const opList: ArithOp[] = []
    while (isOp(this.peek())) {
      opList.push(this.next().text as ArithOp)
      operands.push(operand())
    }
    return { kind: 'arith', operands, ops: opList, start: first.start, end: this.end }
  }

  private unary(): Node {
    const t = this.peek()
    if (!isPunct(t, '-')) return this.primary()
    this.next()
    this.enter(t)
    const operand = this.unary()
    this.depth--
    // Fold -<number> so `x > -5` compares with a constant like `x > 5` does.
    if (operand.kind === 'literal' && typeof operand.value === 'number') {
      return { kind: 'literal', value: -operand.value, start: t.start, end: operand.end }
    }
    return { kind: 'neg', operand, start: t.start, end: operand.end }
  }

  private primary(): Node {
    const t = this.next()
    if (t.kind === 'number' || t.kind === 'string') return { kind: 'literal', value: t.value, start: t.start, end: t.end }
    if (t.kind === 'name') return this.named(t)
    if (isPunct(t, '(')) return this.parenthesized(t)
    throw queryError(`expected an operand at {column} (found ${describe(t)})`, t.start)
  }

  private parenthesized(open: Token): Node {
    this.enter(open)
    const inner = this.or()
    const close = this.next()
    if (!isPunct(close, ')')) throw queryError(`expected ')' at {column} (found ${describe(close)})`, close.start)
    this.depth--
    // The span includes the parentheses, so an enclosing node's text stays balanced in explain().
    inner.start = open.start
    inner.end = close.end
    return inner
  }

  private named(t: Token): Node {
    if (t.text.startsWith('$')) return this.dollar(t)
    if (CONSTANTS.has(t.upper)) return { kind: 'literal', value: CONSTANTS.get(t.upper), start: t.start, end: t.end }
    if (t.upper === 'AND' || t.upper === 'OR' || t.upper === 'NOT') {
      throw queryError(`expected an operand at {column} (found ${describe(t)})`, t.start)
    }
    if (isPunct(this.peek(), '(')) return this.call(t)
    const app = t.text.toLowerCase()
    return { kind: 'app', app, system: app === 'enqueuedtime' ? 'enqueuedTime' : undefined, start: t.start, end: t.end }
  }

  private call(name: Token): Node {
    const fn = lookupFunction(name.upper)
    if (fn === undefined) throw queryError(`unknown function '${name.text}' at {column}`, name.start)
    this.enter(this.next())
    const args: Node[] = []
    if (!isPunct(this.peek(), ')')) {
      for (;;) {
        if (args.length === MAX_FUNCTION_ARGS) {
          throw queryError(`more than ${MAX_FUNCTION_ARGS} function arguments at {column}`, this.peek().start)
        }
        args.push(this.or())
        if (!isPunct(this.peek(), ',')) break
        this.next()
      }
    }
    const close = this.next()
    if (!isPunct(close, ')')) throw queryError(`expected ',' or ')' at {column} (found ${describe(close)})`, close.start)
    this.depth--
    if (args.length < fn.minArgs || args.length > fn.maxArgs) {
      const range = fn.minArgs === fn.maxArgs ? `${fn.minArgs}` : fn.maxArgs === fn.minArgs + 1 ? `${fn.minArgs} or ${fn.maxArgs}` : `${fn.minArgs} to ${fn.maxArgs}`
      const noun = fn.maxArgs === 1 ? 'argument' : 'arguments'
      throw queryError(`${fn.name} takes ${range} ${noun}, not ${args.length}, at {column}`, name.start)
    }
    return { kind: 'call', fn, args, start: name.start, end: close.end }
  }

  /**
   * `$name`: the docs say a `$`-prefixed name is looked up in the system properties first, then
   * among the application properties (where the name keeps its `$`).
   */
  private dollar(t: Token): Node {
    const lower = t.text.slice(1).toLowerCase()
    if (lower === '') throw queryError(`expected a property name after '$' at {column}`, t.end)
    if (lower === 'body') return { kind: 'body', path: this.path(), start: t.start, end: this.end }
    if (lower === 'twin') return this.twin(t)
    return { kind: 'system', system: SYSTEM_PROPERTIES.get(lower), app: `$${lower}`, start: t.start, end: t.end }
  }

  private twin(t: Token): TwinNode {
    const section = this.stepName(`'.tags' or '.properties'`)
    let root: PathStep[]
    if (section.upper === 'TAGS') {
      root = [step('tags')]
    } else if (section.upper === 'PROPERTIES') {
      const which = this.stepName(`'.desired' or '.reported'`)
      if (which.upper !== 'DESIRED' && which.upper !== 'REPORTED') {
        throw queryError(`expected 'desired' or 'reported' at {column} (found ${describe(which)})`, which.start)
      }
      root = [step('properties'), step(which.upper.toLowerCase())]
    } else {
      throw queryError(`expected 'tags' or 'properties' at {column} (found ${describe(section)})`, section.start)
    }
    return { kind: 'twin', path: [...root, ...this.path()], start: t.start, end: this.end }
  }

  /** `.` then a name, for the fixed part of a $twin path. */
  private stepName(expected: string): Token {
    const dot = this.next()
    if (!isPunct(dot, '.')) throw queryError(`expected ${expected} at {column} (found ${describe(dot)})`, dot.start)
    const name = this.next()
    if (name.kind !== 'name') throw queryError(`expected a property name at {column} (found ${describe(name)})`, name.start)
    return name
  }

  private path(): PathStep[] {
    const steps: PathStep[] = []
    for (;;) {
      const t = this.peek()
      if (isPunct(t, '.')) {
        this.next()
        const name = this.next()
        if (name.kind !== 'name') throw queryError(`expected a property name at {column} (found ${describe(name)})`, name.start)
        steps.push(step(name.text))
      } else if (isPunct(t, '[')) {
        this.next()
        const index = this.next()
        if (index.kind !== 'number' || !Number.isSafeInteger(index.value)) {
          throw queryError(`expected an array index (a whole number) at {column} (found ${describe(index)})`, index.start)
        }
        const close = this.next()
        if (!isPunct(close, ']')) throw queryError(`expected ']' at {column} (found ${describe(close)})`, close.start)
        steps.push({ key: '', lower: '', index: index.value as number })
      } else {
        return steps
      }
    }
  }
}
