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
  private readonly overWs = new Set<number>()

  started(index: number, deviceId: string, ws: boolean): void {
    this.deviceOf.set(index, deviceId)
    if (ws) this.overWs.add(index)
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

  /**
   * Cases in flight at any time between `from` and `to` (performance.now() times). `hint`, the
   * text that showed the failure, narrows them: to the cases of the device it names, to the
   * WebSocket sessions when it mentions an upgrade or WebSocket (when any such case ran).
   */
  suspects(from: number, to: number, hint = ''): number[] {
    const out = new Set<number>()
    for (const [index, startedAt] of this.active) if (startedAt <= to) out.add(index)
    for (const e of this.ended) if (e.startedAt <= to && e.endedAt >= from) out.add(e.index)
    let all = [...out].sort((a, b) => a - b)
    const named = /"(?:deviceId|clientId)":"([^"]+)"/.exec(hint)?.[1]
    const narrow = (keep: (i: number) => boolean): void => {
      const some = all.filter(keep)
      if (some.length > 0) all = some
    }
    if (named !== undefined) narrow((i) => this.deviceOf.get(i) === named)
    if (/upgrade|websocket/i.test(hint)) narrow((i) => this.overWs.has(i))
    return all
  }

  /** Forget cases that ended before `before`. */
  prune(before: number): void {
    while (this.ended.length > 0 && this.ended[0]!.endedAt < before) this.ended.shift()
  }
}
