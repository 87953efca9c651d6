import { readFileSync } from 'node:fs'

/**
 * How many MQTT connections the process can hold. Every socket is a file descriptor; past the
 * open-file limit accept() fails (EMFILE) and the kernel resets new connections, /healthz among
 * them. Node raises its soft RLIMIT_NOFILE to the hard limit at start-up, so the soft limit read
 * here is what the process really has.
 */

/** Used where /proc is not there to read the limit from (not Linux). */
const FALLBACK_OPEN_FILES = 4096

/** The soft open-file limit of this process, from /proc/self/limits (Linux). */
export function openFileLimit(read: () => string = () => readFileSync('/proc/self/limits', 'utf8')): number {
  try {
    const m = /^Max open files\s+(\d+|unlimited)\s+/m.exec(read())
    if (!m) return FALLBACK_OPEN_FILES
    return m[1] === 'unlimited' ? Number.MAX_SAFE_INTEGER : Number(m[1])
  } catch {
    return FALLBACK_OPEN_FILES
  }
}

export interface ConnectionBudget {
  /** MQTT connections the gateway admits. */
  maxConnections: number
  /** The most the open-file limit allows (open files - reserve - HTTP connections). */
  fdAllows: number
  openFiles: number
  /** Set when a configured value above `fdAllows` was lowered. */
  lowered?: number
}

/**
 * `limits.maxConnections` as it applies: 0 means as many as the open-file limit allows after the
 * reserve and the HTTP connections; a configured value above that is lowered to it.
 */
export function connectionBudget(configured: number, fdReserve: number, httpConnections: number, openFiles = openFileLimit()): ConnectionBudget {
  const fdAllows = Math.max(1, openFiles - fdReserve - httpConnections)
  if (configured === 0) return { maxConnections: fdAllows, fdAllows, openFiles }
  if (configured > fdAllows) return { maxConnections: fdAllows, fdAllows, openFiles, lowered: configured }
  return { maxConnections: configured, fdAllows, openFiles }
}
