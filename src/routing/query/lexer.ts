/**
 * Lexer for IoT Hub routing conditions: turns the text into tokens once, at compile time.
 * The token rules are the terminals of the EBNF at the top of grammar.ts.
 *
 * Sources: Microsoft Learn, "IoT Hub query language for device and module twins, jobs, and
 * message routing" (string literals in single or double quotes with the escapes \' \" \\ \uXXXX;
 * decimal and 0x hexadecimal numbers) and "IoT Hub message routing query syntax" (property names
 * may not contain whitespace or ()<>@,;:\"/?={}; `$dt-dataschema` and `$dt-subject` are names).
 */
import { queryError } from './errors.js'

export type TokenKind = 'name' | 'number' | 'string' | 'punct' | 'eof'

export interface Token {
  readonly kind: TokenKind
  /** Source text of the token (for a string, with its quotes). */
  readonly text: string
  /** Upper-cased `text` for names (keywords and function names are case-insensitive). */
  readonly upper: string
  /** The value of a number or string literal. */
  readonly value: number | string | undefined
  readonly start: number
  readonly end: number
}

const PUNCT_2 = new Set(['!=', '<>', '<=', '>='])
const PUNCT_1 = new Set(['(', ')', '[', ']', ',', '.', '=', '<', '>', '+', '-', '*', '/', '%'])
const NUMBER = /^(?:0[xX][0-9a-fA-F]+|[0-9]+(?:\.[0-9]+)?(?:[eE][+-]?[0-9]+)?)$/
const NON_ASCII_NAME_START = /\p{L}/u
const NON_ASCII_NAME_PART = /[\p{L}\p{N}\p{Mn}\p{Mc}\p{Pc}]/u
const WHITESPACE = /\s/

function isAsciiLetter(c: string): boolean {
  return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z')
}
function isDigit(c: string | undefined): boolean {
  return c !== undefined && c >= '0' && c <= '9'
}
function isNameStart(c: string): boolean {
  return isAsciiLetter(c) || c === '_' || c === '$' || (c > '\x7f' && NON_ASCII_NAME_START.test(c))
}
function isNamePart(c: string): boolean {
  return isNameStart(c) || isDigit(c) || (c > '\x7f' && NON_ASCII_NAME_PART.test(c))
}

export function tokenize(text: string): Token[] {
  const tokens: Token[] = []
  let i = 0
  while (i < text.length) {
    const c = text[i] as string
    if (WHITESPACE.test(c)) {
      i++
      continue
    }
    const previous = tokens[tokens.length - 1]
    const afterDot = previous !== undefined && previous.kind === 'punct' && previous.text === '.'
    let token: Token
    if (isDigit(c)) {
      if (afterDot) throw queryError(`expected a property name at {column} (found '${c}')`, i)
      token = lexNumber(text, i)
    } else if (isNameStart(c)) {
      token = lexName(text, i, afterDot)
    } else if (c === "'" || c === '"') {
      token = lexString(text, i)
    } else {
      const two = text.slice(i, i + 2)
      const op = PUNCT_2.has(two) ? two : PUNCT_1.has(c) ? c : undefined
      if (op === undefined) throw queryError(`unexpected character '${c}' at {column}`, i)
      token = { kind: 'punct', text: op, upper: op, value: undefined, start: i, end: i + op.length }
    }
    tokens.push(token)
    i = token.end
  }
  tokens.push({ kind: 'eof', text: '', upper: '', value: undefined, start: text.length, end: text.length })
  return tokens
}

/**
 * A name runs over letters, digits, `_` and `$`. A `-` joins two parts of a name only inside a
 * `$`-name or a path segment (IoT Hub documents `$dt-dataschema` and `$dt-subject`), and only
 * when a letter or `_` follows it, so `$body.a-1` and `$body.a - b` still subtract. A bare
 * application property name never contains `-`: IoT Hub has no escape for such names.
 */
function lexName(text: string, start: number, afterDot: boolean): Token {
  const hyphens = afterDot || text[start] === '$'
  let j = start + 1
  for (;;) {
    const c = text[j]
    if (c === undefined) break
    if (isNamePart(c)) {
      j++
    } else if (hyphens && c === '-' && text[j + 1] !== undefined && (isAsciiLetter(text[j + 1] as string) || text[j + 1] === '_')) {
      j += 2
    } else {
      break
    }
  }
  const name = text.slice(start, j)
  return { kind: 'name', text: name, upper: name.toUpperCase(), value: undefined, start, end: j }
}

/**
 * The number is the longest run of name characters and dots (plus an exponent sign), checked as a
 * whole, so `1.2.3`, `12abc`, `1e` and `0x` are one clear error rather than a confusing token pair.
 */
function lexNumber(text: string, start: number): Token {
  let j = start
  const hex = text[start] === '0' && (text[start + 1] === 'x' || text[start + 1] === 'X')
  for (;;) {
    const c = text[j]
    if (c === undefined) break
    const exponentSign = !hex && (c === '+' || c === '-') && (text[j - 1] === 'e' || text[j - 1] === 'E') && isDigit(text[j + 1])
    if (isNamePart(c) || c === '.' || exponentSign) j++
    else break
  }
  const raw = text.slice(start, j)
  const value = NUMBER.test(raw) ? (hex ? parseInt(raw.slice(2), 16) : Number(raw)) : Number.NaN
  if (!Number.isFinite(value)) throw queryError(`invalid number '${raw}' at {column}`, start)
  return { kind: 'number', text: raw, upper: raw, value, start, end: j }
}

const ESCAPES: Readonly<Record<string, string>> = { "'": "'", '"': '"', '\\': '\\' }

function lexString(text: string, start: number): Token {
  const quote = text[start]
  let value = ''
  let j = start + 1
  for (;;) {
    const c = text[j]
    if (c === undefined) throw queryError('unterminated string starting at {column}', start)
    if (c === quote) break
    if (c !== '\\') {
      value += c
      j++
      continue
    }
    const e = text[j + 1]
    const simple = e === undefined ? undefined : ESCAPES[e]
    if (simple !== undefined) {
      value += simple
      j += 2
    } else if (e === 'u' && /^[0-9a-fA-F]{4}$/.test(text.slice(j + 2, j + 6))) {
      value += String.fromCharCode(parseInt(text.slice(j + 2, j + 6), 16))
      j += 6
    } else {
      // Only the escapes IoT Hub documents; `\n` and friends are an error rather than a guess.
      throw queryError(`invalid escape '\\${e ?? ''}' in a string at {column}; allowed: \\' \\" \\\\ \\uXXXX`, j)
    }
  }
  return { kind: 'string', text: text.slice(start, j + 1), upper: '', value, start, end: j + 1 }
}
