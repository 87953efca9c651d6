/**
 * Which cases ran when, as which device: what a failure seen in the process (a crash, a log
 * line, a slow canary round) is blamed on, and what a device refused later had been through.
 */
export class Blame {
  private readonly active = new Map<number, number>()
  private readonly ended: Array<{ index: number; startedAt: number; endedAt: number }> = []
  /** The last cases that logged in as each device, oldest first. */
  private readonly history = new Map<string, number[]>()
  private readonly deviceOf = new Map<number, string>()

  started(index: number, deviceId: string): void {
    this.deviceOf.set(index, deviceId)
    this.active.set(index, performance.now())
  }

  finished(index: number, loggedIn: boolean): void {
    this.ended.push({ index, startedAt: this.active.get(index) ?? performance.now(), endedAt: performance.now() })
    this.active.delete(index)
    const deviceId = this.deviceOf.get(index)
    if (loggedIn && deviceId !== undefined) this.history.set(deviceId, [...this.casesOf(deviceId), index].slice(-8))
  }

  /** The last cases that logged in as `deviceId` (before any running now). */
  casesOf(deviceId: string): number[] {
    return [...(this.history.get(deviceId) ?? [])]
  }

  /** Cases in flight at any time between `from` and `to` (performance.now() times); of `deviceId` only, if it ran any. */
  suspects(from: number, to: number, deviceId?: string): number[] {
    const out = new Set<number>()
    for (const [index, startedAt] of this.active) if (startedAt <= to) out.add(index)
    for (const e of this.ended) if (e.startedAt <= to && e.endedAt >= from) out.add(e.index)
    const all = [...out].sort((a, b) => a - b)
    const theirs = deviceId === undefined ? [] : all.filter((i) => this.deviceOf.get(i) === deviceId)
    return theirs.length > 0 ? theirs : all
  }

  /** Forget cases that ended before `before`. */
  prune(before: number): void {
    while (this.ended.length > 0 && this.ended[0]!.endedAt < before) this.ended.shift()
  }
}
