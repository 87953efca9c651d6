/**
 * Closes connections whose SAS token expires, as IoT Hub does (the Azure SDK renews its token
 * before that and reconnects with the new one). One interval timer for all connections, with
 * connections bucketed by the second they expire in: no timer per connection (memory per
 * connection is a headline figure), and expiries years away cost nothing until their second comes
 * (setTimeout could not take them: it holds at most 24.8 days).
 */
export class ExpiryWheel<T extends object> {
  private readonly buckets = new Map<number, Set<T>>()
  private readonly bucketOf = new WeakMap<T, number>()
  private timer: NodeJS.Timeout | null = null
  private lastSecond: number

  constructor(
    private readonly onExpired: (item: T) => void,
    private readonly now: () => number = Date.now,
    private readonly tickMs = 1000,
  ) {
    this.lastSecond = Math.floor(this.now() / 1000)
  }

  /** Expire `item` at `atMs` (ms since the epoch); replaces an earlier schedule of the same item. */
  schedule(item: T, atMs: number): void {
    this.cancel(item)
    if (!this.timer) {
      this.lastSecond = Math.floor(this.now() / 1000)
      this.timer = setInterval(() => this.tick(), this.tickMs).unref()
    }
    // A second the wheel has already passed would never be visited: such an item goes at the next tick.
    const second = Math.max(Math.ceil(atMs / 1000), this.lastSecond)
    let bucket = this.buckets.get(second)
    if (!bucket) this.buckets.set(second, (bucket = new Set()))
    bucket.add(item)
    this.bucketOf.set(item, second)
  }

  cancel(item: T): void {
    const second = this.bucketOf.get(item)
    if (second === undefined) return
    this.bucketOf.delete(item)
    const bucket = this.buckets.get(second)
    bucket?.delete(item)
    if (bucket?.size === 0) this.buckets.delete(second)
  }

  get size(): number {
    let n = 0
    for (const b of this.buckets.values()) n += b.size
    return n
  }

  /** Expire everything due by now (the timer calls it every second). */
  tick(): void {
    const nowSecond = Math.floor(this.now() / 1000)
    // A clock step backwards leaves lastSecond ahead; forwards, every skipped second is visited.
    const from = Math.min(this.lastSecond, nowSecond)
    // A long stall (or a clock jump of days) must not loop over every second in between.
    const due = nowSecond - from > 3600 ? [...this.buckets.keys()].filter((s) => s <= nowSecond) : range(from, nowSecond)
    this.lastSecond = nowSecond + 1
    for (const second of due) {
      const bucket = this.buckets.get(second)
      if (!bucket) continue
      this.buckets.delete(second)
      for (const item of bucket) {
        this.bucketOf.delete(item)
        this.onExpired(item)
      }
    }
    if (this.buckets.size === 0 && this.timer) {
      clearInterval(this.timer)
      this.timer = null
    }
  }

  stop(): void {
    if (this.timer) clearInterval(this.timer)
    this.timer = null
    this.buckets.clear()
  }
}

function range(from: number, to: number): number[] {
  const out: number[] = []
  for (let s = from; s <= to; s++) out.push(s)
  return out
}
