import { toGatewayError } from '../errors/catalogue.js'
import type { Logger } from '../observability/logger.js'

/**
 * Start-up as data (STYLE: flows are ordered lists of small named steps): each step brings one
 * part up and returns how to take it down again. A step that fails rolls back what the steps
 * before it started, in reverse, and the error goes on to the caller (the CLI exits non-zero with
 * its code, e.g. E_LISTEN_FAILED naming the address). Stopping runs the same stops in the same
 * reverse order: listeners first, stores last.
 */
export type StopFn = () => Promise<void> | void

export interface StartStep {
  readonly name: string
  run(): Promise<StopFn | void> | StopFn | void
}

export class Lifecycle {
  private readonly stops: Array<{ name: string; stop: StopFn }> = []

  constructor(private readonly log: Logger) {}

  /** Run the steps in order; on a failure, undo the ones done and rethrow (as a GatewayError). */
  async start(steps: readonly StartStep[]): Promise<void> {
    for (const step of steps) {
      try {
        const stop = await step.run()
        if (stop) this.stops.push({ name: step.name, stop })
      } catch (err) {
        const error = toGatewayError(err)
        this.log.error({ step: step.name, code: error.code, err: error.message }, `start-up failed at "${step.name}"; stopping what was started`)
        await this.stop()
        throw error
      }
    }
  }

  /** Run every registered stop once, last registered first; one that fails is logged and the rest still run. */
  async stop(): Promise<void> {
    for (let next = this.stops.pop(); next; next = this.stops.pop()) {
      try {
        await next.stop()
      } catch (err) {
        this.log.error({ step: next.name, err: (err as Error).message }, `stopping "${next.name}" failed`)
      }
    }
  }

  /** Names of the steps whose stops are still registered (for tests and diagnostics). */
  get running(): string[] {
    return this.stops.map((s) => s.name)
  }
}
