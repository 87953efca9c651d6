import { createHash } from 'node:crypto'

/**
 * Counts failed CONNECT attempts per key in a fixed window that opens at the key's first failure.
 * Once `maxFailures` failures fall in the window, `check` answers false until the window ends.
 * PasswordGuard uses two: per (source address, device id) pair, whose `check` refuses that pair's
 * password attempts, and per source address, whose `check` only moves the address to the back of
 * the password check queue. IoT Hub throttles new connections too (IoT Hub docs, "IoT Hub quotas
 * and throttling": device connections per unit); this is the failed-attempt part of it.
 *
 * Memory is bounded: at most `maxKeys` keys are tracked; expired entries are dropped when next
 * touched and, when full, the least recently failed key is forgotten. An attacker who floods
 * distinct keys can thus make the limiter forget a key early; PasswordGuard counts only attempts
 * that waited for a full scrypt check, so with the default cap that takes about 10,000 checks.
 */

export interface FailureLimiterOptions {
  /** Failures within one window after which `check` answers false. */
  maxFailures: number
  /** Window length in milliseconds (config `auth.failureWindowSeconds` * 1000). */
  windowMs: number
  /** Most keys tracked at once. */
  maxKeys?: number
  /** Clock in milliseconds; injectable for tests. */
  now?: () => number
}

interface Entry {
  windowStart: number
  failures: number
}

export const DEFAULT_MAX_TRACKED_KEYS = 10_000
/** Longer keys (an MQTT client id may be 64 KiB) are stored as their SHA-256, keeping entries small. */
const MAX_KEY_LENGTH = 256

function storedKey(key: string): string {
  return key.length <= MAX_KEY_LENGTH ? key : `sha256:${createHash('sha256').update(key).digest('hex')}`
}

export class FailureLimiter {
  private readonly maxFailures: number
  private readonly windowMs: number
  private readonly maxKeys: number
  private readonly now: () => number
  /** Insertion order = order of last failure, oldest first (entries are re-inserted on failure). */
  private readonly entries = new Map<string, Entry>()

  constructor(options: FailureLimiterOptions) {
    if (!Number.isInteger(options.maxFailures) || options.maxFailures < 1) throw new RangeError('maxFailures must be a positive integer')
    if (!(options.windowMs > 0)) throw new RangeError('windowMs must be positive')
    this.maxFailures = options.maxFailures
    this.windowMs = options.windowMs
    this.maxKeys = Math.max(1, options.maxKeys ?? DEFAULT_MAX_TRACKED_KEYS)
    this.now = options.now ?? Date.now
  }

  /** True while the key has fewer than maxFailures failures in its window. */
  check(key: string): boolean {
    const entry = this.live(storedKey(key))
    return entry === undefined || entry.failures < this.maxFailures
  }

  /** Failures of the key in its open window (0 when none). */
  failures(key: string): number {
    return this.live(storedKey(key))?.failures ?? 0
  }

  recordFailure(rawKey: string): void {
    const key = storedKey(rawKey)
    const entry = this.live(key)
    this.entries.delete(key)
    if (entry !== undefined) {
      entry.failures += 1
      this.entries.set(key, entry)
      return
    }
    this.makeRoom()
    this.entries.set(key, { windowStart: this.now(), failures: 1 })
  }

  /**
   * Take back one failure, for callers that count an attempt up front (so that concurrent
   * attempts cannot all pass `check` before any of them fails) and then learn it succeeded.
   */
  forgive(rawKey: string): void {
    const key = storedKey(rawKey)
    const entry = this.live(key)
    if (entry === undefined) return
    entry.failures -= 1
    if (entry.failures <= 0) this.entries.delete(key)
  }

  /** Forget a key (e.g. after an operator unlocks a device). */
  reset(key: string): void {
    this.entries.delete(storedKey(key))
  }

  /** Number of keys currently tracked (for metrics and tests). */
  get size(): number {
    return this.entries.size
  }

  /** The key's entry if its window is still open; an expired entry is dropped. */
  private live(key: string): Entry | undefined {
    const entry = this.entries.get(key)
    if (entry === undefined) return undefined
    if (this.now() - entry.windowStart >= this.windowMs) {
      this.entries.delete(key)
      return undefined
    }
    return entry
  }

  /**
   * O(1) per call: forget the keys whose last failure is oldest (the front of the Map). They are
   * the most likely to have expired; a full scan per failure would let a flood of distinct keys
   * cost 10k steps each.
   */
  private makeRoom(): void {
    while (this.entries.size >= this.maxKeys) {
      const oldest = this.entries.keys().next()
      if (oldest.done === true) return
      this.entries.delete(oldest.value)
    }
  }
}
