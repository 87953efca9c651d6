import type { GatewayMetrics } from '../observability/metrics.js'

/**
 * Bounds what the gateway holds between a device's publish and the stream's durable ack, in
 * records and in bytes. A publish that does not fit waits here; while it waits, Aedes does not
 * read the next chunk from that device's socket (it reads again only once every packet of the
 * previous chunk has been handled), so TCP flow control pushes back on the device. That is the
 * ingress backpressure: memory stays bounded and nothing is dropped.
 */
export class InFlightGate {
  private records = 0
  private bytes = 0
  private readonly waiters: Array<{ bytes: number; wake: () => void }> = []
  /**
   * Records in flight by admission time (ms), in admission order: the first key is the oldest.
   * A count per millisecond, not an object per record: at 100k records/s the objects were garbage
   * the collector had to chase.
   */
  private readonly admitted = new Map<number, number>()

  constructor(
    private readonly maxRecords: number,
    private readonly maxBytes: number,
    private readonly metrics: GatewayMetrics,
    private readonly now: () => number = Date.now,
  ) {
    metrics.oldestInFlightAgeMs = () => this.oldestAgeMs()
    // Read when scraped: two gauge sets per take and per release were a per-message cost.
    metrics.inFlightStats = () => ({ records: this.records, bytes: this.bytes })
  }

  /** Age of the oldest record accepted and not yet durable, 0 when none. */
  oldestAgeMs(): number {
    const first = this.admitted.keys().next()
    return first.done ? 0 : Math.max(0, this.now() - first.value)
  }

  /** Mark a record as in flight for the oldest-age metric; pass what it returns to `done` when it settles. */
  track(at = this.now()): number {
    this.admitted.set(at, (this.admitted.get(at) ?? 0) + 1)
    return at
  }

  done(at: number): void {
    const left = (this.admitted.get(at) ?? 1) - 1
    if (left > 0) this.admitted.set(at, left)
    else this.admitted.delete(at)
  }

  /** Take room for one record at once if there is some and nobody waits; false otherwise. */
  tryAcquire(bytes: number): boolean {
    if (this.waiters.length > 0 || !this.fits(bytes)) return false
    this.take(bytes)
    return true
  }

  /** Wait for room for one record of `bytes`. FIFO: no publish overtakes one that waits. */
  async acquire(bytes: number): Promise<void> {
    if (this.tryAcquire(bytes)) return
    this.metrics.backpressureWaits.inc()
    // release() takes the capacity on the waiter's behalf before waking it.
    await new Promise<void>((wake) => this.waiters.push({ bytes, wake }))
  }

  release(bytes: number): void {
    this.records -= 1
    this.bytes -= bytes
    while (this.waiters.length > 0 && this.fits(this.waiters[0]!.bytes)) {
      const next = this.waiters.shift()!
      this.take(next.bytes)
      next.wake()
    }
  }

  get inFlightRecords(): number {
    return this.records
  }

  get waiting(): number {
    return this.waiters.length
  }

  private fits(bytes: number): boolean {
    // A single record larger than the byte bound is still admitted when nothing else is in flight.
    return this.records < this.maxRecords && (this.bytes + bytes <= this.maxBytes || this.records === 0)
  }

  private take(bytes: number): void {
    this.records += 1
    this.bytes += bytes
  }
}
