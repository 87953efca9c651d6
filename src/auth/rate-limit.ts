import { createHash } from 'node:crypto'

/**
 * Counts failed CONNECT attempts per key (a source address, a device id) in a fixed window that
 * opens at the key's first failure. Once `maxFailures` failures fall in the window, `check`
 * refuses the key until the window ends, even with correct credentials: that is what makes
 * guessing a password (scrypt, ~50 ms each) or a key unattractive. IoT Hub throttles new
 * connections too (docs/iothub-mqtt.md section 9); this is the failed-attempt part of it.
 *
 * Memory is bounded: at most `maxKeys` keys are tracked; expired entries are dropped when next
 * touched and, when full, the least recently failed key is forgotten. An attacker who floods
 * distinct keys can thus make the limiter forget a key early; with the default cap that takes
 * thousands of attempts (themselves limited per address) for each guess it frees.
 */

export interface FailureLimiterOptions {
  /** Failures within one window after which the key is refused. */
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

  /** True when the key may try again (it has fewer than maxFailures failures in its window). */
  check(key: string): boolean {
    const entry = this.live(storedKey(key))
    return entry === undefined || entry.failures < this.maxFailures
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
