/**
 * Compiles the syntax tree into nested closures, once per condition. Everything that can be
 * decided from the text is decided here (operator, property name lower-cased, literal type,
 * function), so an evaluation only reads the message and combines values: no lower-casing, no
 * switch on node kinds, and no arrays or closures allocated.
 *
 * Three-valued logic (U = undefined; any non-boolean operand counts as U):
 *
 *   AND | T  F  U        OR | T  F  U        NOT |
 *   ----+---------       ---+---------       ----+---
 *    T  | T  F  U         T | T  T  T          T | F
 *    F  | F  F  F         F | T  F  U          F | T
 *    U  | U  F  U         U | T  U  U          U | U
 *
 * AND stops at the first false and OR at the first true; operands are evaluated left to right
 * (an undefined operand does not stop them: `U AND F` is still F).
 */
import type { AppNode, ArithNode, ArithOp, BodyNode, CallNode, CompareNode, LiteralNode, LogicalNode, Node, SystemNode, TwinNode } from './ast.js'
import type { RoutingMessage } from './index.js'
import { arithmetic, comparator, compareValues, walk } from './values.js'

export type Evaluator = (message: RoutingMessage) => unknown

export interface ExplainStep {
  text: string
  value: unknown
}

/** Collects explain() steps. Each compiled explain tree has its own; evaluation is synchronous. */
export interface Tracer {
  steps: ExplainStep[]
}

/**
 * Compile `node`. With a tracer, every comparison, logical operator and function call records
 * its source text and value after it is evaluated (children first, i.e. in evaluation order).
 */
export function compileNode(node: Node, text: string, tracer?: Tracer): Evaluator {
  const evaluate = compileKind(node, text, tracer)
  const traced = node.kind === 'compare' || node.kind === 'and' || node.kind === 'or' || node.kind === 'not' || node.kind === 'call'
  if (tracer === undefined || !traced) return evaluate
  const source = text.slice(node.start, node.end)
  return (m) => {
    const value = evaluate(m)
    tracer.steps.push({ text: source, value })
    return value
  }
}

/** Whether the tree reads $body / $twin (the router skips the twin lookup when it does not). */
export function references(node: Node | undefined, kind: 'body' | 'twin'): boolean {
  if (node === undefined) return false
  switch (node.kind) {
    case 'body':
    case 'twin':
      return node.kind === kind
    case 'not':
    case 'neg':
      return references(node.operand, kind)
    case 'and':
    case 'or':
    case 'arith':
      return node.operands.some((n) => references(n, kind))
    case 'compare':
      return references(node.left, kind) || references(node.right, kind)
    case 'call':
      return node.args.some((n) => references(n, kind))
    default:
      return false
  }
}

function compileKind(node: Node, text: string, tracer: Tracer | undefined): Evaluator {
  const sub = (n: Node): Evaluator => compileNode(n, text, tracer)
  switch (node.kind) {
    case 'not': {
      const operand = sub(node.operand)
      return (m) => {
        const v = operand(m)
        return typeof v === 'boolean' ? !v : undefined
      }
    }
    case 'neg': {
      const operand = sub(node.operand)
      return (m) => {
        const v = operand(m)
        return typeof v === 'number' ? -v : undefined
      }
    }
    case 'and':
    case 'or':
      return compileLogical(node, node.operands.map(sub))
    case 'compare':
      return compileCompare(node, sub(node.left), sub(node.right))
    case 'arith':
      return compileArithmetic(node, node.operands.map(sub))
    case 'call':
      return compileCall(node, node.args.map(sub))
    default:
      return compileLeaf(node)
  }
}

/** Constants and reads of the message. */
function compileLeaf(node: LiteralNode | SystemNode | AppNode | BodyNode | TwinNode): Evaluator {
  switch (node.kind) {
    case 'literal': {
      const value = node.value
      return () => value
    }
    case 'system': {
      const { system, app } = node
      if (system === undefined) return (m) => m.app(app)
      return (m) => {
        const v = m.system(system)
        return v !== undefined ? v : m.app(app)
      }
    }
    case 'app': {
      const { system, app } = node
      if (system === undefined) return (m) => m.app(app)
      return (m) => {
        const v = m.app(app)
        return v !== undefined ? v : m.system(system)
      }
    }
    case 'body': {
      const path = node.path
      const first = path[0]
      if (first === undefined || first.index >= 0) return () => undefined
      return (m) => walk(m.body(), path)
    }
    case 'twin': {
      const path = node.path
      return (m) => walk(m.twin(), path)
    }
  }
}

/** Left to right; once a step is undefined the rest cannot change that, so they are skipped. */
function compileArithmetic(node: ArithNode, operands: Evaluator[]): Evaluator {
  const ops = node.ops
  return (m) => {
    let acc = (operands[0] as Evaluator)(m)
    for (let i = 1; i < operands.length; i++) {
      acc = arithmetic(ops[i - 1] as ArithOp, acc, (operands[i] as Evaluator)(m))
      if (acc === undefined) return undefined
    }
    return acc
  }
}

function compileLogical(node: LogicalNode, operands: Evaluator[]): Evaluator {
  // stop: the value that decides the result (false for AND, true for OR).
  const stop = node.kind === 'and' ? false : true
  const [a, b] = operands as [Evaluator, Evaluator]
  if (operands.length === 2) {
    return (m) => {
      const x = a(m)
      if (x === stop) return stop
      const y = b(m)
      if (y === stop) return stop
      return x === !stop && y === !stop ? !stop : undefined
    }
  }
  return (m) => {
    let unknown = false
    for (let i = 0; i < operands.length; i++) {
      const v = (operands[i] as Evaluator)(m)
      if (v === stop) return stop
      if (v !== !stop) unknown = true
    }
    return unknown ? undefined : !stop
  }
}

function isPrimitiveLiteral(node: Node): node is Node & { kind: 'literal'; value: number | string | boolean } {
  if (node.kind !== 'literal') return false
  const t = typeof node.value
  return t === 'number' || t === 'string' || t === 'boolean'
}

/**
 * Against a number, string or boolean constant (the usual `$body.temp > 30`) the comparison is a
 * typeof check and one operator call; values.ts spells out the general rules this agrees with.
 */
function compileCompare(node: CompareNode, left: Evaluator, right: Evaluator): Evaluator {
  const op = node.op
  const cmp = comparator(op)
  if (isPrimitiveLiteral(node.right)) {
    const constant = node.right.value
    const type = typeof constant
    return (m) => {
      const v = left(m)
      return typeof v === type ? cmp(v as number, constant) : undefined
    }
  }
  if (isPrimitiveLiteral(node.left)) {
    const constant = node.left.value
    const type = typeof constant
    return (m) => {
      const v = right(m)
      return typeof v === type ? cmp(constant, v as number) : undefined
    }
  }
  return (m) => compareValues(op, cmp, left(m), right(m))
}

/**
 * The call site owns one argument array, refilled on each evaluation and cleared afterwards (so
 * it does not keep the last message's values alive). A call site is never active twice at once:
 * the tree has no cycles and evaluation is synchronous.
 */
function compileCall(node: CallNode, args: Evaluator[]): Evaluator {
  const apply = node.fn.apply
  const buffer: unknown[] = args.map(() => undefined)
  return (m) => {
    for (let i = 0; i < args.length; i++) buffer[i] = (args[i] as Evaluator)(m)
    const value = apply(buffer)
    buffer.fill(undefined)
    return value
  }
}
