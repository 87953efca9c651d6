/**
 * The syntax tree the parser (grammar.ts) builds and the compiler (compile.ts) turns into closures.
 * Every node keeps its source span so explain() can quote the text it evaluated.
 */
import type { FunctionSpec } from './functions.js'
import type { SystemPropertyName } from './index.js'

/** Half-open range of the condition text, 0-based. Widened to include parentheses around the node. */
export interface Span {
  start: number
  end: number
}

/** `<>` is parsed as `!=`; both mean the same. */
export type CompareOp = '=' | '!=' | '<' | '>' | '<=' | '>='
export type ArithOp = '+' | '-' | '*' | '/' | '%'

/**
 * One step of a $body or $twin path. One shape for both kinds of step (index -1 for a property
 * step) so the walk in values.ts stays monomorphic.
 */
export interface PathStep {
  /** Property name as written; '' for an index step. */
  readonly key: string
  /** `key` lower-cased at compile time, for the case-insensitive fallback. */
  readonly lower: string
  /** Array index, or -1 for a property step. */
  readonly index: number
}

export interface LiteralNode extends Span {
  kind: 'literal'
  value: unknown
}
/** `$name`: a system property, then the application property literally named `$name`. */
export interface SystemNode extends Span {
  kind: 'system'
  system: SystemPropertyName | undefined
  app: string
}
/** A bare name: an application property (lower-cased); `enqueuedTime` falls back to the system property. */
export interface AppNode extends Span {
  kind: 'app'
  app: string
  system: SystemPropertyName | undefined
}
export interface BodyNode extends Span {
  kind: 'body'
  path: readonly PathStep[]
}
/** The path starts at the twin root: ['tags', ...] or ['properties', 'desired' | 'reported', ...]. */
export interface TwinNode extends Span {
  kind: 'twin'
  path: readonly PathStep[]
}
export interface UnaryNode extends Span {
  kind: 'not' | 'neg'
  operand: Node
}
/** AND / OR chains are n-ary so `a AND b AND c ...` is one flat node, not a deep tree. */
export interface LogicalNode extends Span {
  kind: 'and' | 'or'
  operands: Node[]
}
export interface CompareNode extends Span {
  kind: 'compare'
  op: CompareOp
  left: Node
  right: Node
}
/** One precedence level of + - or * / %, left to right: ops[i] joins operands[i] and operands[i + 1]. */
export interface ArithNode extends Span {
  kind: 'arith'
  operands: Node[]
  ops: ArithOp[]
}
export interface CallNode extends Span {
  kind: 'call'
  fn: FunctionSpec
  args: Node[]
}

export type Node =
  | LiteralNode
  | SystemNode
  | AppNode
  | BodyNode
  | TwinNode
  | UnaryNode
  | LogicalNode
  | CompareNode
  | ArithNode
  | CallNode
