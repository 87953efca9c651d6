import { generateSasToken } from '../src/auth/sas.js'
import { CanaryLoop, type CanaryRound } from './canary.js'
import { DEFAULT_BOUNDS, runSession, type Bounds, type SessionResult } from './driver.js'
import { DEFAULT_FUZZ_ADDRESSES, type Failure, type FuzzDevice, type FuzzOptions, type FuzzReport } from './types.js'
import { FUZZ_DEVICES } from './plan.js'
import { caseOf, type Session } from './session.js'
import { OutputWatch } from './watch.js'
import { Tally } from './tally.js'
import { Blame } from './blame.js'

/**
 * A fuzz run against one gateway process: cases run over `concurrency` connections at a time
 * until `packets` packets were sent, while a canary device publishes, the process's output and
 * health are watched and its RSS is sampled. Checks, at every checkpoint and at the end: the
 * process is up and /healthz answers, nothing in its output looks like a crash, the canary got
 * every PUBACK within its bound, RSS grew less than its bound, and every acknowledged message is
 * in the stream. A failure names the case (or the cases running at the time) for replay.
 */

export type { Failure, FailureKind, FuzzDevice, FuzzOptions, FuzzReport, FuzzTarget } from './types.js'
export { DEFAULT_FUZZ_ADDRESSES } from './types.js'

/** What the process printed as it died, without its log lines (they name unrelated devices). */
function crashText(tail: string): string {
  return tail
    .split('\n')
    .filter((l) => !l.startsWith('{'))
    .join('\n')
}

/** The canary's mid of every round acknowledged, and the failures among its rounds. */
function canaryChecks(rounds: CanaryRound[], boundMs: number, suspects: (from: number, to: number) => number[]): { acked: string[]; failures: Failure[] } {
  const failures: Failure[] = []
  for (const r of rounds) {
    const bad = r.error ? `round ${r.round} failed: ${r.error}` : r.pubackMs >= boundMs ? `round ${r.round}: PUBACK after ${r.pubackMs.toFixed(0)} ms (bound ${boundMs} ms)` : null
    if (bad) failures.push({ kind: 'canary', signature: r.error ? 'canary: round failed' : 'canary: PUBACK too slow', what: bad, suspects: suspects(r.startedAt, r.endedAt) })
  }
  return { acked: rounds.filter((r) => !r.error).map((r) => r.mid), failures }
}

export async function runFuzz(options: FuzzOptions): Promise<FuzzReport> {
  return new FuzzRun(options).run()
}

class FuzzRun {
  private readonly bounds: Bounds
  private readonly tally = new Tally()
  private readonly failures: Failure[] = []
  private readonly watch: OutputWatch
  private readonly blame = new Blame()
  private readonly tokens = new Map<number, { password: string; until: number }>()
  private readonly acked = new Map<string, number>()
  /**
   * The last session of each device that logs in: the next waits for it. Two CONNECTs of one
   * client id at once may legitimately end the first before its CONNACK (the second takes over),
   * which would read as a refused valid device.
   */
  private readonly deviceBusy = new Map<string, Promise<unknown>>()
  private rssBaseline = 0
  private rssPeak = 0
  private stopped = false

  constructor(private readonly o: FuzzOptions) {
    if (o.devices.length !== FUZZ_DEVICES) throw new Error(`a fuzz run needs ${FUZZ_DEVICES} devices, got ${o.devices.length}`)
    this.bounds = { ...DEFAULT_BOUNDS, ...o.bounds }
    this.watch = new OutputWatch(o.target.output)
  }

  async run(): Promise<FuzzReport> {
    const { o } = this
    const t0 = performance.now()
    this.lastTick = t0
    this.rssBaseline = this.rssPeak = o.target.rss()
    const sampler = setInterval(() => (this.rssPeak = Math.max(this.rssPeak, o.target.rss())), 100)
    const tag = `${(o.seed >>> 0).toString(36)}-${Date.now().toString(36)}`
    const canary = o.canary ? new CanaryLoop(o.target.mqttUrl, { deviceId: o.canary.deviceId, password: () => this.token(o.canary!) }, tag) : null
    const watchdog = setInterval(() => void this.watchdog(), 250)
    try {
      await this.schedule(t0)
      await this.checkpoint()
    } finally {
      clearInterval(watchdog)
      clearInterval(sampler)
    }
    const rounds = canary ? await canary.stop() : []
    const canaryResult = canaryChecks(rounds, o.canaryPubackMs ?? 1000, (a, b) => this.blame.suspects(a, b))
    this.failures.push(...canaryResult.failures)
    if (!o.target.exited()) await this.checkStored(canaryResult.acked)
    return {
      seed: o.seed,
      tally: this.tally.summary(performance.now() - t0),
      durationMs: performance.now() - t0,
      rss: { baseline: this.rssBaseline, peak: this.rssPeak },
      canary: {
        rounds: rounds.length,
        failed: rounds.filter((r) => r.error).length,
        maxConnectMs: Math.max(0, ...rounds.map((r) => r.connectMs)),
        maxPubackMs: Math.max(0, ...rounds.map((r) => r.pubackMs)),
      },
      acked: [...this.acked.keys(), ...canaryResult.acked],
      failures: this.failures,
    }
  }

  /** Keep `concurrency` cases in flight until enough packets went out; drain at each checkpoint. */
  private async schedule(t0: number): Promise<void> {
    const { o } = this
    const every = o.checkpointPackets ?? 5000
    const cases = o.cases
    let next = 0
    let nextCheck = every
    const running = new Set<Promise<void>>()
    const more = (): boolean => !this.stopped && (cases ? next < cases.length : this.tally.packets < o.packets)
    while (more()) {
      if (o.maxDurationMs !== undefined && performance.now() - t0 > o.maxDurationMs) {
        this.fail({ kind: 'stalled', signature: 'stalled: run over its time bound', what: `only ${this.tally.packets} of ${o.packets} packets sent in ${(o.maxDurationMs / 1000).toFixed(0)} s` })
        break
      }
      const index = cases ? cases[next]! : next
      next++
      const p = this.runCase(index).finally(() => running.delete(p))
      running.add(p)
      const checkNow = cases ? every === 0 : this.tally.packets >= nextCheck
      if (running.size >= o.concurrency || checkNow) await Promise.race(running)
      if (checkNow) {
        await Promise.all(running)
        await this.checkpoint()
        nextCheck = this.tally.packets + every
        o.log?.(this.tally.progress(performance.now() - t0, this.rssPeak - this.rssBaseline))
      }
    }
    await Promise.all(running)
  }

  private async runCase(index: number): Promise<void> {
    const session = caseOf(this.o.seed, index, this.o.limits)
    if (session.login === 'valid') {
      const previous = this.deviceBusy.get(session.deviceId)
      let release!: () => void
      const mine = new Promise<void>((r) => (release = r))
      this.deviceBusy.set(session.deviceId, mine)
      await previous
      try {
        await this.runOne(index, session)
      } finally {
        release()
        if (this.deviceBusy.get(session.deviceId) === mine) this.deviceBusy.delete(session.deviceId)
      }
      return
    }
    await this.runOne(index, session)
  }

  private async runOne(index: number, session: Session): Promise<void> {
    const before = this.blame.casesOf(session.deviceId)
    this.blame.started(index, session.deviceId, session.transport.kind === 'ws' && this.o.target.httpPort !== undefined && !this.o.tcpOnly)
    let result: SessionResult
    const addresses = this.o.localAddresses ?? DEFAULT_FUZZ_ADDRESSES
    try {
      result = await runSession(session, {
        host: this.o.target.host ?? '127.0.0.1',
        port: this.o.target.mqttPort,
        ...(this.o.target.httpPort !== undefined && !this.o.tcpOnly ? { httpPort: this.o.target.httpPort } : {}),
        ...(addresses.length > 0 ? { localAddress: addresses[index % addresses.length]! } : {}),
        credentials: (d) => ({ deviceId: this.o.devices[d]!.deviceId, password: this.token(this.o.devices[d]!) }),
        bounds: this.bounds,
      })
    } finally {
      this.blame.finished(index, session.login === 'valid')
    }
    this.tally.add(result)
    this.o.onResult?.(result)
    for (const mid of result.acked) this.acked.set(mid, index)
    for (const f of result.findings) {
      const earlier = f.kind === 'valid-connect-refused' && before.length > 0 ? `; the device's earlier cases: ${before.join(', ')} (replay in order: --cases ${[...before, index].join(',')})` : ''
      this.fail({ ...f, what: f.what + earlier, case: index })
    }
  }

  private fail(f: Failure): void {
    // One case in flight is the case.
    if (f.case === undefined && f.suspects?.length === 1) {
      f.case = f.suspects[0]!
      delete f.suspects
    }
    this.failures.push(f)
    if (this.o.stopOnFailure) this.stopped = true
  }

  /** A SAS token for a device, renewed well before it expires (long runs outlast one). */
  private token(d: FuzzDevice): string {
    const index = this.o.devices.indexOf(d)
    const now = Date.now()
    const cached = this.tokens.get(index)
    if (cached && cached.until > now) return cached.password
    const password = generateSasToken({ host: 'localhost', deviceId: d.deviceId, key: d.primaryKey, expiresAt: Math.floor(now / 1000) + 3600 })
    this.tokens.set(index, { password, until: now + 600_000 })
    return password
  }

  private lastTick = performance.now()
  private ticking = false
  private lastCheckpoint = performance.now()

  private get perCase(): boolean {
    return this.o.cases !== undefined && this.o.checkpointPackets === 0
  }

  /** Every 250 ms: output and liveness, blamed on the cases in flight since the last look. */
  private async watchdog(): Promise<void> {
    if (this.ticking || this.stopped) return
    this.ticking = true
    const from = this.lastTick
    try {
      // Replaying case by case, the checkpoint after each case reads the output instead.
      if (!this.perCase) this.scanOutput(from)
      if (this.o.target.exited()) {
        this.stopped = true
        const tail = this.watch.tail()
        this.fail({ kind: 'process-exited', signature: 'process-exited: the gateway process died', what: `the gateway exited; last output:\n${tail}`, suspects: this.blame.suspects(from, performance.now(), crashText(tail)) })
      }
      this.blame.prune(performance.now() - 5000)
    } finally {
      this.lastTick = performance.now()
      this.ticking = false
    }
  }

  private scanOutput(from: number): void {
    for (const s of this.watch.scan()) {
      // A log line naming a device narrows the suspects to that device's cases.
      this.fail({ kind: 'output', signature: `output: ${s.sign}`, what: s.line, suspects: this.blame.suspects(from, performance.now(), s.line) })
    }
  }

  /** With no case in flight: the process is up, /healthz answers, RSS is within its bound. */
  private async checkpoint(): Promise<void> {
    const now = performance.now()
    this.scanOutput(this.lastCheckpoint)
    this.lastCheckpoint = now
    if (this.stopped && this.o.target.exited()) return
    if (!(await this.o.target.alive())) {
      // A process that just crashed may not have been reaped yet.
      if (!this.o.target.exited()) await new Promise((r) => setTimeout(r, 500))
      const exited = this.o.target.exited()
      this.fail({
        kind: exited ? 'process-exited' : 'healthz',
        signature: exited ? 'process-exited: the gateway process died' : 'healthz: /healthz did not answer 200',
        what: exited ? `the gateway exited; last output:\n${this.watch.tail()}` : '/healthz did not answer 200 within 5 s',
        suspects: this.blame.suspects(now - 2000, now),
      })
      this.stopped = true
    }
    const growth = this.rssPeak - this.rssBaseline
    if (growth >= this.o.rssGrowthBytes && !this.failures.some((f) => f.kind === 'rss')) {
      const mib = (n: number): string => (n / 1048576).toFixed(1)
      this.fail({ kind: 'rss', signature: 'rss: growth over its bound', what: `RSS grew by ${mib(growth)} MiB (bound ${mib(this.o.rssGrowthBytes)} MiB) by packet ${this.tally.packets}`, suspects: this.blame.suspects(now - 5000, now) })
    }
  }

  /** Everything the gateway acknowledged (to fuzz cases and the canary) is in the stream. */
  private async checkStored(canaryAcked: string[]): Promise<void> {
    const stored = await this.o.target.storedMessageIds()
    for (const [mid, index] of this.acked) {
      if (!stored.has(mid)) this.fail({ kind: 'lost', signature: 'lost: PUBACKed but not in the stream', what: `message ${mid} was acknowledged (PUBACK) but is not in the telemetry stream`, case: index })
    }
    for (const mid of canaryAcked) {
      if (!stored.has(mid)) this.fail({ kind: 'lost', signature: 'lost: canary message PUBACKed but not in the stream', what: `canary message ${mid} was acknowledged but is not in the stream` })
    }
  }
}
