import type { SessionStore } from '../broker/ports.js'
import { toGatewayError } from '../errors/catalogue.js'

/**
 * What a session backend stores: one row per (device, filter) with its granted QoS. Every method
 * is one statement or one transaction; the cache in front of it (CachedSessionStore) orders the
 * calls per device.
 */
export interface SessionRows {
  load(deviceId: string): Promise<Array<[filter: string, qos: number]>>
  put(deviceId: string, filter: string, qos: number): Promise<void>
  remove(deviceId: string, filters: readonly string[]): Promise<void>
  clear(deviceId: string): Promise<void>
}

interface Entry {
  /** Null while the device has none (most devices, most of the time): no empty Map per connection. */
  subs: Map<string, number> | null
  /** Connections of this process that restored the device and are not gone yet. */
  holds: number
}

const NONE: ReadonlyMap<string, number> = new Map()

const subsOf = (rows: Array<[string, number]>): Map<string, number> | null => (rows.length === 0 ? null : new Map(rows))

/**
 * The SessionStore the broker uses, in front of a backend that may be across a network
 * (SqliteSessionStore, PostgresSessionStore). The broker reads `subscriptions` on every delivery,
 * so it is served from memory: an entry per device connected to this process, filled by
 * `restore` before the CONNACK and dropped by the last `forget`.
 *
 * Per device, every backend call runs after the previous one (a chain of promises), so a
 * SUBSCRIBE, an UNSUBSCRIBE and the next connection's restore reach the store in the order they
 * happened. A write that fails is reported to `onWriteError` (the SUBACK was written long
 * before); a restore that fails rejects, and the broker refuses that CONNECT.
 */
export class CachedSessionStore implements SessionStore {
  private readonly entries = new Map<string, Entry>()
  private readonly chains = new Map<string, Promise<void>>()

  constructor(
    private readonly rows: SessionRows,
    private readonly onWriteError: (deviceId: string, err: unknown) => void,
  ) {}

  subscriptions(deviceId: string): ReadonlyMap<string, number> {
    return this.entries.get(deviceId)?.subs ?? NONE
  }

  addSubscription(deviceId: string, filter: string, qos: number): void {
    const entry = this.entries.get(deviceId)
    if (entry) (entry.subs ??= new Map()).set(filter, qos)
    this.write(deviceId, () => this.rows.put(deviceId, filter, qos))
  }

  removeSubscriptions(deviceId: string, filters: readonly string[]): void {
    const subs = this.entries.get(deviceId)?.subs
    for (const f of filters) subs?.delete(f)
    this.write(deviceId, () => this.rows.remove(deviceId, filters))
  }

  async restore(deviceId: string, cleanSession: boolean): Promise<void> {
    let loaded: Array<[string, number]>
    try {
      loaded = await this.run(deviceId, async () => {
        if (!cleanSession) return this.rows.load(deviceId)
        await this.rows.clear(deviceId)
        return []
      })
    } catch (err) {
      throw toGatewayError(err)
    }
    const entry = this.entries.get(deviceId)
    if (entry) {
      // A second connection of the device (the first is being replaced): both read the store's view.
      entry.subs = subsOf(loaded)
      entry.holds++
    } else {
      this.entries.set(deviceId, { subs: subsOf(loaded), holds: 1 })
    }
  }

  forget(deviceId: string): void {
    const entry = this.entries.get(deviceId)
    if (!entry) return
    entry.holds--
    if (entry.holds <= 0) this.entries.delete(deviceId)
  }

  async discard(deviceId: string): Promise<void> {
    const entry = this.entries.get(deviceId)
    if (entry) entry.subs = null
    await this.run(deviceId, () => this.rows.clear(deviceId))
  }

  /** Devices held in memory now (connected here). */
  get cachedDevices(): number {
    return this.entries.size
  }

  /** Resolves once every write started so far has reached the backend (or failed). */
  async flush(): Promise<void> {
    while (this.chains.size > 0) await Promise.allSettled([...this.chains.values()])
  }

  private write(deviceId: string, op: () => Promise<void>): void {
    this.run(deviceId, op).catch((err: unknown) => this.onWriteError(deviceId, err))
  }

  /** Run `op` after the device's earlier calls; its outcome is the caller's, the chain goes on. */
  private run<T>(deviceId: string, op: () => Promise<T>): Promise<T> {
    const previous = this.chains.get(deviceId) ?? Promise.resolve()
    const result = previous.then(op)
    const settled = result.then(
      () => undefined,
      () => undefined,
    )
    this.chains.set(deviceId, settled)
    void settled.then(() => {
      if (this.chains.get(deviceId) === settled) this.chains.delete(deviceId)
    })
    return result
  }
}
