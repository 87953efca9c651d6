import type { Counter } from 'prom-client'
import type { Logger } from './logger.js'

/**
 * Warnings a client can cause at will (a refused publish, connect or connection) would let one
 * client write the log full: 16,645 lines in one fuzz run. Each kind (its error code) is logged
 * once per interval; the first line after a quiet interval says how many were left out. Metrics
 * count every occurrence, so nothing is lost but repetition. The key set is the error catalogue,
 * so the map stays small.
 */
export class RepeatLimitedLog {
  private readonly last = new Map<string, { at: number; leftOut: number }>()

  constructor(
    private readonly log: Logger,
    private readonly intervalMs: number,
    private readonly leftOutCounter?: Counter<'code'>,
    private readonly now: () => number = Date.now,
  ) {}

  warn(code: string, fields: Record<string, unknown>, message: string): void {
    this.write('warn', code, fields, message)
  }

  info(code: string, fields: Record<string, unknown>, message: string): void {
    this.write('info', code, fields, message)
  }

  private write(level: 'warn' | 'info', code: string, fields: Record<string, unknown>, message: string): void {
    const now = this.now()
    const entry = this.last.get(code)
    if (entry && now - entry.at < this.intervalMs) {
      entry.leftOut++
      this.leftOutCounter?.inc({ code })
      return
    }
    const leftOut = entry?.leftOut ?? 0
    this.last.set(code, { at: now, leftOut: 0 })
    this.log[level]({ code, ...fields, ...(leftOut > 0 ? { leftOut, leftOutSeconds: Math.round((now - entry!.at) / 1000) } : {}) }, leftOut > 0 ? `${message} (and ${leftOut} more like it not logged)` : message)
  }
}
