/**
 * Azure IoT Hub message-routing conditions: parse once (lexer.ts, grammar.ts), compile into
 * closures (compile.ts), evaluate per stream record. Semantics follow Microsoft Learn, "IoT Hub
 * message routing query syntax" and "IoT Hub query language for device and module twins, jobs,
 * and message routing"; the decisions where those pages are silent are written next to the code
 * they concern (grammar.ts, values.ts, functions.ts, compile.ts) and summarised in docs.
 */
import { compileNode, references, type Evaluator, type ExplainStep, type Tracer } from './compile.js'
import { GatewayError } from '../../errors/catalogue.js'
import { parseCondition } from './grammar.js'
import { walk } from './values.js'

export { MAX_QUERY_DEPTH, MAX_QUERY_LENGTH } from './grammar.js'
export { MAX_FUNCTION_ARGS } from './functions.js'
export type { ExplainStep } from './compile.js'

export type SystemPropertyName = 'contentType' | 'contentEncoding' | 'connectionDeviceId' | 'messageId' | 'correlationId' | 'enqueuedTime'

/** The device twin sections a routing condition can read. */
export interface RoutingTwin {
  tags: Record<string, unknown>
  properties: { desired: Record<string, unknown>; reported: Record<string, unknown> }
}

/** What a condition reads. The router builds one per stream record; reads are lazy. */
export interface RoutingMessage {
  /** System property by canonical name ('enqueuedTime' is an ISO 8601 string); undefined when absent. */
  system(name: SystemPropertyName): string | undefined
  /**
   * Application property by name, looked up case-insensitively: the message adapter lower-cases
   * keys and the compiler passes names lower-cased. undefined when absent.
   */
  app(lowerCaseName: string): string | undefined
  /**
   * The parsed JSON body, or undefined when the body is not JSON (the adapter decides that from
   * content type/encoding). Called lazily, at most once per message by the adapter's caching.
   */
  body(): unknown
  /** The device twin, or undefined when unknown. */
  twin(): RoutingTwin | undefined
}

export interface CompiledQuery {
  readonly text: string
  /** The condition reads $body / $twin (the router skips the twin lookup when false). */
  readonly usesBody: boolean
  readonly usesTwin: boolean
  /**
   * The raw value: true/false, or anything else (undefined, a number, ...) which the router
   * counts as "undefined condition" and treats as no match.
   */
  evaluate(message: RoutingMessage): unknown
  /**
   * Evaluate and say why: every comparison, logical operator and function call with its source
   * text and value, in evaluation order, plus the final value. For `POST /api/routes/test`.
   */
  explain(message: RoutingMessage): { value: unknown; steps: ExplainStep[] }
}

const ALWAYS_TRUE: Evaluator = () => true

/**
 * Parse and compile; throws GatewayError('E_ROUTE_QUERY_INVALID', message, { column }) with a
 * 1-based column and a message saying what was expected. An empty or blank condition is `true`
 * (IoT Hub: "If no condition is provided, it evaluates to true by default").
 */
export function compileQuery(text: string): CompiledQuery {
  if (typeof text !== 'string') {
    throw new GatewayError('E_ROUTE_QUERY_INVALID', 'the condition must be a string at column 1', { column: 1 })
  }
  const tree = parseCondition(text)
  const evaluate = tree === undefined ? ALWAYS_TRUE : compileNode(tree, text)
  // The traced tree is compiled on first use: most routes are never explained.
  let traced: { tracer: Tracer; evaluate: Evaluator } | undefined
  const explain = (message: RoutingMessage): { value: unknown; steps: ExplainStep[] } => {
    if (traced === undefined) {
      const tracer: Tracer = { steps: [] }
      traced = { tracer, evaluate: tree === undefined ? ALWAYS_TRUE : compileNode(tree, text, tracer) }
    }
    const steps: ExplainStep[] = []
    traced.tracer.steps = steps
    try {
      return { value: traced.evaluate(message), steps }
    } finally {
      traced.tracer.steps = []
    }
  }
  return Object.freeze({
    text,
    usesBody: references(tree, 'body'),
    usesTwin: references(tree, 'twin'),
    evaluate,
    explain,
  })
}

/**
 * A getter for a twin value path as message enrichments use it: `$twin.tags.x.y`,
 * `$twin.properties.desired.x`, `$twin.properties.reported.x` (names case-insensitive, `[n]`
 * indexes arrays). null when the text is not such a path; never throws.
 */
export function parseTwinPath(text: string): ((twin: RoutingTwin | undefined) => unknown) | null {
  if (typeof text !== 'string' || !/^\s*\$twin\b/i.test(text)) return null
  let tree
  try {
    tree = parseCondition(text)
  } catch {
    return null
  }
  if (tree === undefined || tree.kind !== 'twin') return null
  const path = tree.path
  return (twin) => walk(twin, path)
}
