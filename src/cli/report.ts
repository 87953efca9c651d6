import { isGatewayError } from '../errors/catalogue.js'
import { UsageError } from './common.js'

/**
 * How every command ends on a failure: `error E_CODE: message` on stderr and exit 1, or for a
 * usage problem the message plus the command's usage text and exit 2 (the sysexits-style split
 * scripts rely on: 2 means "you called it wrong", 1 means "it failed").
 */
export const EXIT_OK = 0
export const EXIT_FAILURE = 1
export const EXIT_USAGE = 2

/** node:util parseArgs throws TypeErrors with codes ERR_PARSE_ARGS_* for bad flags. */
export function isUsageProblem(err: unknown): boolean {
  if (err instanceof UsageError) return true
  const code = (err as { code?: unknown } | null)?.code
  return typeof code === 'string' && code.startsWith('ERR_PARSE_ARGS_')
}

export function reportError(err: unknown, usage: string, stderr: NodeJS.WritableStream = process.stderr): number {
  if (isUsageProblem(err)) {
    stderr.write(`error: ${(err as Error).message}\n\n${synopsis(usage)}\n`)
    return EXIT_USAGE
  }
  if (isGatewayError(err)) {
    stderr.write(`error ${err.code}: ${err.message}\n`)
    return EXIT_FAILURE
  }
  const message = err instanceof Error ? err.message : String(err)
  stderr.write(`error E_INTERNAL: ${message}\n`)
  return EXIT_FAILURE
}

/**
 * A usage error shows the command's synopsis (its usage text up to the first blank line) and
 * where the rest is, not the whole help: the message must stay the thing the eye lands on.
 */
export function synopsis(usage: string): string {
  const head = usage.split('\n\n')[0]!
  const command = /^usage: (streamgate(?: [a-z][a-z-]*)?)/.exec(head)?.[1]
  return command ? `${head}\n\nrun "${command} --help" for every option` : head
}
