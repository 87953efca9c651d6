import { GatewayError } from '../errors/catalogue.js'
import { addressKey } from './address-key.js'
import { HashGate, type HashRefusal, type HashTicket } from './hash-gate.js'
import { verifyPassword } from './password.js'
import { FailureLimiter } from './rate-limit.js'

/**
 * What stands between a CONNECT with a password and scrypt. Only passwords get this: a SAS token
 * is an HMAC-SHA256 under a 256-bit key (nothing to guess; checking one costs microseconds) and a
 * certificate is proven by the TLS handshake, so those are always checked and never refused for
 * anybody's failures. A password can be guessed and each check costs ~50 ms of CPU, so:
 *
 * 1. Failed password checks are counted per (source address, device id) pair. A pair with
 *    auth.maxFailuresPerDevice failures in the window has its further password attempts at that
 *    device refused unchecked (E_AUTH_RATE_LIMITED, CONNACK 3). That is the source's own
 *    budget: the same device from any other address, and that address for any other device, are
 *    unaffected, so knowing a device id is not enough to keep the device offline. Guessing stays
 *    bounded to that many guesses per window per address (IPv6: per /64, addressKey).
 * 2. Failed password checks are counted per source address too; an address with
 *    auth.maxFailuresPerAddress of them in the window has its checks served after everybody
 *    else's (HashGate `deprioritised`). Nobody is refused for it: a NAT or load balancer in front
 *    of a guesser slows its password devices only while others wait for a check.
 * 3. Every check, the dummy one for unknown devices included, goes through the HashGate: bounded
 *    concurrency, bounded fair queues, E_AUTH_BUSY past them.
 *
 * Both counters record a failure only after its scrypt check ran, so each counted failure cost
 * the client a full check it waited its turn for. Cheap attempts (refusals, SAS failures, waiters
 * dropped from the queue) therefore cannot flood the limiters' tracked keys (FailureLimiter
 * `maxKeys`) to make them forget a guesser: forgetting one pair takes about 10,000 checks.
 */

export type PasswordRefusal = HashRefusal | 'rate-limited'

export interface PasswordGuardObserver {
  refused(reason: PasswordRefusal): void
  /** A password check started after waiting `waitedMs` for its slot. */
  started(waitedMs: number): void
}

export interface PasswordGuardOptions {
  /** Config auth.maxFailuresPerDevice: failed checks of one address at one device per window. */
  maxFailuresPerPair: number
  /** Config auth.maxFailuresPerAddress: failed checks of one address per window, then it goes last. */
  maxFailuresPerAddress: number
  /** Config auth.failureWindowSeconds * 1000. */
  windowMs: number
  maxConcurrentHashes: number
  maxQueuedHashes: number
  maxQueuedHashesPerAddress: number
  /** Keys each limiter tracks at most (default DEFAULT_MAX_TRACKED_KEYS). */
  maxTrackedKeys?: number
  now?: () => number
  observer?: PasswordGuardObserver
}

/** How a CONNECT that took a place ended, for PasswordAttempt.settle. */
export type PasswordOutcome = 'accepted' | 'failed' | 'not-counted'

export class PasswordGuard {
  readonly pairs: FailureLimiter
  readonly addresses: FailureLimiter
  readonly gate: HashGate
  private readonly observer: PasswordGuardObserver | undefined
  private readonly maxFailuresPerPair: number
  /**
   * Attempts admitted and not yet settled, per pair: each counts as a failure until it is settled
   * (charged up front). At most maxConcurrentHashes + maxQueuedHashes entries, as the gate holds.
   */
  private readonly pending = new Map<string, number>()

  constructor(options: PasswordGuardOptions) {
    this.maxFailuresPerPair = options.maxFailuresPerPair
    const common = { windowMs: options.windowMs, ...(options.maxTrackedKeys === undefined ? {} : { maxKeys: options.maxTrackedKeys }), ...(options.now === undefined ? {} : { now: options.now }) }
    this.pairs = new FailureLimiter({ maxFailures: options.maxFailuresPerPair, ...common })
    this.addresses = new FailureLimiter({ maxFailures: options.maxFailuresPerAddress, ...common })
    this.observer = options.observer
    this.gate = new HashGate({
      maxConcurrent: options.maxConcurrentHashes,
      maxQueued: options.maxQueuedHashes,
      maxQueuedPerAddress: options.maxQueuedHashesPerAddress,
      deprioritised: (address) => !this.addresses.check(address),
      ...(options.observer === undefined ? {} : { observer: options.observer }),
    })
  }

  /**
   * Refuse the attempt, or give it a place in the gate and charge it to its pair up front: N
   * parallel guesses must not all pass the check while the first scrypt runs. Synchronous, so no
   * other attempt runs between the check and the charge. `settle` turns the charge into a
   * recorded failure, or drops it.
   */
  admit(deviceId: string, remoteAddress: string): PasswordAttempt {
    const address = addressKey(remoteAddress)
    // Addresses never contain a space, so the pair key cannot be read two ways.
    const pair = `${address} ${deviceId}`
    const pending = this.pending.get(pair) ?? 0
    if (this.pairs.failures(pair) + pending >= this.maxFailuresPerPair) {
      this.observer?.refused('rate-limited')
      throw new GatewayError('E_AUTH_RATE_LIMITED', 'Too many failed password attempts from this address at this device; retry later')
    }
    const ticket = this.gate.admit(address)
    this.pending.set(pair, pending + 1)
    return new PasswordAttempt(ticket, (outcome) => this.settle(pair, address, outcome))
  }

  private settle(pair: string, address: string, outcome: PasswordOutcome): void {
    const pending = (this.pending.get(pair) ?? 1) - 1
    if (pending > 0) this.pending.set(pair, pending)
    else this.pending.delete(pair)
    if (outcome !== 'failed') return
    this.pairs.recordFailure(pair)
    this.addresses.recordFailure(address)
  }
}

/** One admitted password CONNECT: at most one check, then exactly one settle. */
export class PasswordAttempt {
  private settled = false

  constructor(private readonly ticket: HashTicket, private readonly onSettle: (outcome: PasswordOutcome) => void) {}

  /** Verify `password` against a scrypt record (a dummy one for unknown devices) in the gate. */
  check(password: string, record: string): Promise<boolean> {
    return this.ticket.run(() => verifyPassword(password, record))
  }

  /**
   * The CONNECT ended. A failure is recorded against the pair and the address; otherwise
   * (accepted, or refused for a reason that is not the client's, like E_AUTH_BUSY or a registry
   * error) the up-front charge is dropped.
   */
  settle(outcome: PasswordOutcome): void {
    if (this.settled) return
    this.settled = true
    this.ticket.release()
    this.onSettle(outcome)
  }
}
