/**
 * What in a gateway's output means it broke rather than refused a client: an uncaught exception
 * or rejection (Node prints the stack to stderr), a stack overflow, V8 running out of heap, an
 * error or fatal pino line (client-caused problems are logged at warn: config `log.*`), and
 * process warnings such as MaxListenersExceededWarning (a leak of listeners per connection).
 */
const SIGNS: ReadonlyArray<readonly [name: string, pattern: RegExp]> = [
  ['stack overflow', /Maximum call stack size exceeded/],
  ['out of memory', /JavaScript heap out of memory|FATAL ERROR|Allocation failed/],
  ['uncaught exception', /uncaughtException|unhandledRejection|UnhandledPromiseRejection|\bUncaught /],
  ['stack trace', /(?:^|\\n|\n)\s{2,}at (?:[^\s(]+ \()?(?:file:|node:|\/)[^\s)]*:\d+:\d+\)?/],
  ['JavaScript error', /^(?:[A-Za-z]*Error|Error)(?: \[[A-Z_]+\])?: /],
  ['error log', /"level":(?:50|60)\b/],
  ['process warning', /\(node:\d+\) (?!DeprecationWarning|ExperimentalWarning)\w+Warning/],
]

export interface OutputSign {
  sign: string
  line: string
}

/** Reads a process's accumulated output from where it last stopped and reports the bad lines. */
export class OutputWatch {
  private offset: number

  constructor(private readonly output: () => string) {
    this.offset = output().length
  }

  /** New lines since the last call that look like a crash (at most `max`). */
  scan(max = 20): OutputSign[] {
    const text = this.output()
    // Keep a partial last line for the next call.
    const end = text.lastIndexOf('\n') + 1
    if (end <= this.offset) return []
    const fresh = text.slice(this.offset, end)
    this.offset = end
    const found: OutputSign[] = []
    for (const line of fresh.split('\n')) {
      const hit = SIGNS.find(([, re]) => re.test(line))
      if (hit && found.length < max) found.push({ sign: hit[0], line: line.length > 400 ? `${line.slice(0, 400)}…` : line })
    }
    return found
  }

  /** The last `chars` characters of the output, for a report after the process died. */
  tail(chars = 3000): string {
    const text = this.output()
    return text.slice(Math.max(0, text.length - chars))
  }
}
