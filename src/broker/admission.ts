import type { Socket } from 'node:net'
import { addressKey } from '../auth/address-key.js'
import type { ErrorCode } from '../errors/catalogue.js'

/**
 * Admission control at accept(), for every listener: a socket costs a file descriptor before it
 * has said a word, so what an unauthenticated peer can hold is bounded here.
 *
 * - MQTT connections (TCP, TLS, WebSocket once upgraded) count against `maxConnections`, which
 *   fits the open-file limit (broker/fd-limit.ts); past it new sockets are closed at once.
 * - Of those, the ones not yet authenticated (TLS handshake, waiting for CONNECT, credentials
 *   being checked) are "pending": at most `maxPendingPerAddress` from one address (IPv6: its /64;
 *   the new socket is closed) and `maxPending` in all. When all are taken, the OLDEST pending
 *   socket is closed to make room: a slow-loris of idle sockets is pushed out by new arrivals,
 *   while a real device, which sends CONNECT right after connecting, is pending for milliseconds.
 * - HTTP connections to the API port are counted apart (`maxHttp`, http.maxConnections), so
 *   /healthz and the API stay reachable whatever devices hold; when full, the oldest socket that
 *   has not sent a request yet makes room. A WebSocket upgrade to MQTT moves its socket from the
 *   HTTP count to the MQTT pending count.
 * Pending sockets also have a deadline: the TLS handshake timeout and Aedes' connect timeout are
 * both `mqtt.connectTimeoutSeconds`.
 */

export interface AdmissionLimits {
  maxConnections: number
  maxPending: number
  maxPendingPerAddress: number
  maxHttp: number
}

export type AdmissionRefusal = 'max-connections' | 'pending-per-address' | 'pending-evicted' | 'http-connections' | 'http-evicted'

export interface AdmissionObserver {
  refused(reason: AdmissionRefusal, code: ErrorCode, address: string): void
}

type Kind = 'mqtt' | 'http'

interface Entry {
  /** Null once the connection is established: nothing looks it up by key after that. */
  key: string | null
  readonly socket: Socket
  readonly address: string
  kind: Kind
  pending: boolean
  /** Forgotten (closed, or evicted): counted out once. */
  gone: boolean
}

/** Sockets are found again by their 4-tuple: a TLS or WebSocket stream shares it with its raw socket. */
export function connectionKey(s: { remoteAddress?: string | undefined; remotePort?: number | undefined; localPort?: number | undefined }): string {
  return `${s.remoteAddress ?? ''}|${s.remotePort ?? 0}|${s.localPort ?? 0}`
}

export class ConnectionAdmission {
  private readonly entries = new Map<string, Entry>()
  /** Pending MQTT sockets, oldest first (a Set iterates in insertion order). */
  private readonly pendingSet = new Set<Entry>()
  private readonly pendingByAddress = new Map<string, number>()
  /** HTTP sockets that have not sent a request yet, oldest first. */
  private readonly idleHttp = new Set<Entry>()
  private mqttCount = 0
  private httpCount = 0

  constructor(
    readonly limits: AdmissionLimits,
    private readonly observer: AdmissionObserver,
  ) {}

  get pending(): number {
    return this.pendingSet.size
  }

  get mqtt(): number {
    return this.mqttCount
  }

  get http(): number {
    return this.httpCount
  }

  /** Call on a listener's raw 'connection'. False: the socket was closed. */
  admit(socket: Socket, kind: Kind): boolean {
    const address = addressKey(socket.remoteAddress ?? 'unknown')
    const key = connectionKey(socket)
    const entry: Entry = { key, socket, address, kind, pending: false, gone: false }
    if (kind === 'http' ? !this.roomForHttp(address) : !this.roomForMqtt(address)) {
      socket.destroy()
      return false
    }
    this.entries.set(key, entry)
    if (kind === 'http') {
      this.httpCount++
      this.idleHttp.add(entry)
    } else {
      this.mqttCount++
      this.addPending(entry)
    }
    socket.once('close', () => this.forget(entry))
    return true
  }

  /** An HTTP request arrived on the socket: it is no longer a candidate for eviction. */
  requestSeen(socket: Socket): void {
    const entry = this.entries.get(connectionKey(socket))
    if (entry) this.idleHttp.delete(entry)
  }

  /** A WebSocket upgrade to MQTT on the API port: the socket becomes a pending MQTT connection. */
  upgradeToMqtt(socket: Socket): boolean {
    const entry = this.entries.get(connectionKey(socket))
    if (!entry) return false
    if (entry.kind === 'mqtt') return true
    if (!this.roomForMqtt(entry.address)) return false
    this.httpCount--
    this.idleHttp.delete(entry)
    entry.kind = 'mqtt'
    this.mqttCount++
    this.addPending(entry)
    return true
  }

  /** The connection authenticated (CONNACK 0): it no longer counts as pending. */
  established(key: string): void {
    const entry = this.entries.get(key)
    if (!entry) return
    if (entry.pending) this.removePending(entry)
    if (entry.kind === 'mqtt') {
      // Only counted from now on, until its 'close': its key (a string per held connection) goes.
      this.entries.delete(key)
      entry.key = null
    }
  }

  private roomForMqtt(address: string): boolean {
    if (this.mqttCount >= this.limits.maxConnections) {
      this.observer.refused('max-connections', 'E_CONNECTION_LIMIT', address)
      return false
    }
    if ((this.pendingByAddress.get(address) ?? 0) >= this.limits.maxPendingPerAddress) {
      this.observer.refused('pending-per-address', 'E_PENDING_LIMIT', address)
      return false
    }
    if (this.pendingSet.size >= this.limits.maxPending) {
      const oldest = this.pendingSet.values().next().value as Entry
      this.removePending(oldest)
      this.observer.refused('pending-evicted', 'E_PENDING_LIMIT', oldest.address)
      oldest.socket.destroy()
    }
    return true
  }

  private roomForHttp(address: string): boolean {
    if (this.httpCount < this.limits.maxHttp) return true
    const oldest = this.idleHttp.values().next().value as Entry | undefined
    if (!oldest) {
      this.observer.refused('http-connections', 'E_CONNECTION_LIMIT', address)
      return false
    }
    this.idleHttp.delete(oldest)
    this.observer.refused('http-evicted', 'E_CONNECTION_LIMIT', oldest.address)
    // Its 'close' handler would free the slot asynchronously; the new socket takes it now.
    this.forget(oldest)
    oldest.socket.destroy()
    return true
  }

  private addPending(entry: Entry): void {
    entry.pending = true
    this.pendingSet.add(entry)
    this.pendingByAddress.set(entry.address, (this.pendingByAddress.get(entry.address) ?? 0) + 1)
  }

  private removePending(entry: Entry): void {
    if (!entry.pending) return
    entry.pending = false
    this.pendingSet.delete(entry)
    const n = (this.pendingByAddress.get(entry.address) ?? 1) - 1
    if (n <= 0) this.pendingByAddress.delete(entry.address)
    else this.pendingByAddress.set(entry.address, n)
  }

  private forget(entry: Entry): void {
    if (entry.gone) return
    entry.gone = true
    if (entry.key !== null && this.entries.get(entry.key) === entry) this.entries.delete(entry.key)
    this.removePending(entry)
    this.idleHttp.delete(entry)
    if (entry.kind === 'http') this.httpCount--
    else this.mqttCount--
  }
}
