import { GatewayError } from '../errors/catalogue.js'

/**
 * Admission control for password checks. One scrypt check costs ~50 ms of CPU (password.ts) and
 * Node runs them on its small libuv pool, so without a bound every CONNECT with a guessed password
 * is hashed and a real device waits behind all of them (400 guesses from one address once held a
 * real device for 8 to 14 s). Here:
 *
 * - at most `maxConcurrent` checks run at once (config auth.maxConcurrentHashes);
 * - the others wait in one queue per source address, served in turn (round robin), so one
 *   address's backlog delays another address by at most one check per turn;
 * - addresses that `deprioritised` names (too many failed checks lately) are served only when no
 *   other address is waiting;
 * - at most `maxQueuedPerAddress` wait from one address and `maxQueued` in all. Past the first
 *   the newcomer is refused; when the whole queue is full, the newest waiter of the address with
 *   the longest queue makes room for an address with a shorter one (dropping from the longest
 *   queue, as fair-queueing routers do), so a few busy addresses cannot fill the queue for
 *   everybody else. A refusal is E_AUTH_BUSY (CONNACK 3, "server unavailable", MQTT 3.1.1
 *   section 3.2.2.3), decided without hashing.
 *
 * Memory: at most `maxConcurrent + maxQueued` tickets exist at once.
 */

export type HashRefusal = 'queue-full' | 'address-queue-full'

export interface HashGateOptions {
  maxConcurrent: number
  maxQueued: number
  maxQueuedPerAddress: number
  /** Asked at each dispatch, so an address that fails meanwhile moves back while it waits. */
  deprioritised?: (address: string) => boolean
  /** Told of each refusal and each check that starts (for metrics). */
  observer?: HashGateObserver
}

export interface HashGateObserver {
  refused(reason: HashRefusal): void
  /** A check got its slot after waiting `waitedMs` (0 when a slot was free). */
  started(waitedMs: number): void
}

/** A place in the gate: waiting for a slot, holding one, or done. */
export interface HashTicket {
  /** Wait for the slot (or the refusal), run `check`, and give the slot back. */
  run<T>(check: () => Promise<T>): Promise<T>
  /** Give back the place or the slot without running; safe to call more than once. */
  release(): void
}

const NO_OBSERVER: HashGateObserver = { refused: () => undefined, started: () => undefined }

function busy(reason: HashRefusal): GatewayError {
  const message = reason === 'queue-full' ? 'Password checks are queued to capacity; retry later' : 'Too many password checks waiting from this address; retry later'
  return new GatewayError('E_AUTH_BUSY', message, { reason })
}

class Ticket implements HashTicket {
  state: 'waiting' | 'running' | 'done' = 'waiting'
  readonly enqueuedAt = performance.now()
  readonly granted: Promise<void>
  grant!: () => void
  private reject!: (err: GatewayError) => void
  /** Set when the gate dropped this waiter to make room (dropFromLongestQueue). */
  private refusedWith: GatewayError | undefined

  constructor(readonly address: string, private readonly gate: HashGate) {
    this.granted = new Promise<void>((resolve, reject) => {
      this.grant = resolve
      this.reject = reject
    })
    // A waiter dropped before the flow awaits it must not surface as an unhandled rejection.
    this.granted.catch(() => undefined)
  }

  refuse(err: GatewayError): void {
    this.refusedWith = err
    this.reject(err)
  }

  async run<T>(check: () => Promise<T>): Promise<T> {
    if (this.refusedWith !== undefined) throw this.refusedWith
    if (this.state === 'done') throw new GatewayError('E_INTERNAL', 'password check ticket used after release')
    await this.granted
    try {
      return await check()
    } finally {
      this.release()
    }
  }

  release(): void {
    this.gate.release(this)
  }
}

export class HashGate {
  private readonly maxConcurrent: number
  private readonly maxQueued: number
  private readonly maxQueuedPerAddress: number
  private readonly deprioritised: (address: string) => boolean
  private readonly observer: HashGateObserver
  private runningCount = 0
  private waitingCount = 0
  /** Waiters per address; Map order is the round-robin order (a served address moves to the end). */
  private readonly queues = new Map<string, Ticket[]>()

  constructor(options: HashGateOptions) {
    for (const key of ['maxConcurrent', 'maxQueued', 'maxQueuedPerAddress'] as const) {
      if (!Number.isInteger(options[key]) || options[key] < 1) throw new RangeError(`${key} must be a positive integer`)
    }
    this.maxConcurrent = options.maxConcurrent
    this.maxQueued = options.maxQueued
    this.maxQueuedPerAddress = options.maxQueuedPerAddress
    this.deprioritised = options.deprioritised ?? (() => false)
    this.observer = options.observer ?? NO_OBSERVER
  }

  /** Checks running and waiting now (for metrics and tests). */
  get stats(): { running: number; waiting: number } {
    return { running: this.runningCount, waiting: this.waitingCount }
  }

  /**
   * Take a place for one check from `address` (an addressKey), or throw E_AUTH_BUSY. Synchronous,
   * so a caller can decide and charge an attempt without another attempt running in between.
   */
  admit(address: string): HashTicket {
    const ticket = new Ticket(address, this)
    if (this.runningCount < this.maxConcurrent && this.waitingCount === 0) {
      this.start(ticket)
      return ticket
    }
    const mine = this.queues.get(address)?.length ?? 0
    if (mine >= this.maxQueuedPerAddress) throw this.refusal('address-queue-full')
    if (this.waitingCount >= this.maxQueued && !this.dropFromLongestQueue(mine)) throw this.refusal('queue-full')
    const queue = this.queues.get(address)
    if (queue === undefined) this.queues.set(address, [ticket])
    else queue.push(ticket)
    this.waitingCount += 1
    return ticket
  }

  /** Called by Ticket.release. */
  release(ticket: Ticket): void {
    const was = ticket.state
    ticket.state = 'done'
    if (was === 'running') {
      this.runningCount -= 1
      this.dispatch()
    } else if (was === 'waiting') {
      this.unqueue(ticket)
    }
  }

  private start(ticket: Ticket): void {
    ticket.state = 'running'
    this.runningCount += 1
    this.observer.started(performance.now() - ticket.enqueuedAt)
    ticket.grant()
  }

  private dispatch(): void {
    while (this.runningCount < this.maxConcurrent && this.waitingCount > 0) {
      const address = this.nextAddress()
      const queue = this.queues.get(address)!
      const ticket = queue.shift()!
      this.queues.delete(address)
      if (queue.length > 0) this.queues.set(address, queue)
      this.waitingCount -= 1
      this.start(ticket)
    }
  }

  /** The first address in turn that is not deprioritised, else the first in turn. */
  private nextAddress(): string {
    let first: string | undefined
    for (const address of this.queues.keys()) {
      first ??= address
      if (!this.deprioritised(address)) return address
    }
    return first!
  }

  /**
   * Make room for a newcomer whose address has `mine` waiters: refuse the newest waiter of the
   * longest queue if that queue is at least two longer (else the two would only swap places).
   * Among equally long queues a deprioritised address gives way first.
   */
  private dropFromLongestQueue(mine: number): boolean {
    let victim: Ticket[] | undefined
    let victimDeprioritised = false
    for (const [address, queue] of this.queues) {
      const low = this.deprioritised(address)
      if (victim === undefined || queue.length > victim.length || (queue.length === victim.length && low && !victimDeprioritised)) {
        victim = queue
        victimDeprioritised = low
      }
    }
    if (victim === undefined || victim.length < mine + 2) return false
    const dropped = victim[victim.length - 1]!
    this.unqueue(dropped)
    dropped.state = 'done'
    dropped.refuse(this.refusal('queue-full'))
    return true
  }

  private unqueue(ticket: Ticket): void {
    const queue = this.queues.get(ticket.address)
    const index = queue?.indexOf(ticket) ?? -1
    if (queue === undefined || index < 0) return
    queue.splice(index, 1)
    this.waitingCount -= 1
    if (queue.length === 0) this.queues.delete(ticket.address)
  }

  private refusal(reason: HashRefusal): GatewayError {
    this.observer.refused(reason)
    return busy(reason)
  }
}
