/**
 * A task that runs one at a time and, asked again while it runs, runs once more afterwards: how
 * the outbox writers (device events, command feedback) drain their rows to the stream. Every
 * change asks for a run; a burst of changes costs one run in progress plus one more.
 */
export class RerunningTask {
  private running: Promise<void> | null = null
  private again = false

  constructor(private readonly task: () => Promise<void>) {}

  /** Resolves when the run in progress (or the one started now) ends. */
  run(): Promise<void> {
    if (this.running) {
      this.again = true
      return this.running
    }
    this.running = this.task().finally(() => {
      this.running = null
      if (this.again) {
        this.again = false
        void this.run()
      }
    })
    return this.running
  }

  /** Resolves once no run is in progress (a rerun included). */
  async idle(): Promise<void> {
    while (this.running) await this.running
  }
}
