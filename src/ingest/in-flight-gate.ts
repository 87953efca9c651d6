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
   * Records in flight by admission time (ms), in admission order: a count per millisecond in two
   * plain arrays, not an object per record (at 100k records/s those were garbage the collector had
   * to chase) nor a Map (its table was reallocated as the few keys of a light load came and went:
   * a third of what the young generation promoted at 5,000 msg/s). The live entries are
   * [head, tail); entry i has the ticket `base + i`, so `done` finds it without a search.
   */
  private readonly admittedAt: number[] = []
  private readonly admittedCount: number[] = []
  private head = 0
  private tail = 0
  private base = 0

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
    return this.head < this.tail ? Math.max(0, this.now() - this.admittedAt[this.head]!) : 0
  }

  /** Mark a record admitted at `at` as in flight (the oldest-age metric); give what it returns to `done` when it settles. */
  track(at = this.now()): number {
    const last = this.tail - 1
    if (last >= this.head && this.admittedAt[last] === at) {
      this.admittedCount[last]!++
      return this.base + last
    }
    this.admittedAt[this.tail] = at
    this.admittedCount[this.tail] = 1
    return this.base + this.tail++
  }

  done(ticket: number): void {
    const i = ticket - this.base
    if (i < this.head || i >= this.tail || this.admittedCount[i] === 0) return
    this.admittedCount[i]!--
    while (this.head < this.tail && this.admittedCount[this.head] === 0) this.head++
    if (this.head === this.tail) {
      // Nothing in flight: start again at the front (the arrays keep their room).
      this.base += this.tail
      this.head = 0
      this.tail = 0
    } else if (this.head >= 1024 && this.head * 2 >= this.tail) {
      // One record held for long while thousands come and go: move the live ones to the front.
      this.admittedAt.copyWithin(0, this.head, this.tail)
      this.admittedCount.copyWithin(0, this.head, this.tail)
      this.base += this.head
      this.tail -= this.head
      this.head = 0
    }
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
