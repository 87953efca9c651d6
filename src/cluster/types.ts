/**
 * The cluster port: what an instance needs to act as one gateway with the others. PostgresCluster
 * implements it on the shared PostgreSQL; SoloCluster is the one-process case (SQLite state), where
 * this instance is the only one and owns whatever is connected to it.
 */

/**
 * What one instance asks of another. Each is a row for the target (so a lost wake-up is caught up):
 * - `replace`: a device connected elsewhere with a newer epoch; close the local connection if older.
 * - `kick`: close the device's connection (disabled, removed, keys rotated, password changed).
 * - `deliver`: the device's C2D queue changed; try delivering.
 * - `twin-desired`: the desired properties changed; notify the device.
 * - `method-call` / `method-result`: a direct method request for a device here, and its answer.
 */
export type SignalKind = 'replace' | 'kick' | 'deliver' | 'twin-desired' | 'method-call' | 'method-result'

export interface Signal {
  kind: SignalKind
  deviceId: string | null
  body: Record<string, unknown>
}

export type SignalHandler = (signal: Signal) => Promise<void> | void

export interface InstanceInfo {
  instanceId: string
  advertiseUrl: string
  streamBackend: string
  startedAt: string
  heartbeatAt: string
  connections: number
  /** Heartbeat within cluster.heartbeatTimeoutMs and not stopped. */
  alive: boolean
  /** The instance answering. */
  self: boolean
}

export interface ClaimResult {
  /** The device's new epoch: larger than any before it. */
  epoch: number
  /** The live instance that held the device before (it has been told to let go), or null. */
  replaced: string | null
}

export interface Cluster {
  readonly instanceId: string
  start(): Promise<void>
  stop(): Promise<void>
  instances(): Promise<InstanceInfo[]>
  /** Record this instance as the device's owner with a new epoch, and tell a previous live owner. */
  claim(deviceId: string, connectionId: string): Promise<ClaimResult>
  /** The connection of `epoch` ended: let go, unless a newer claim (anywhere) took the device since. */
  release(deviceId: string, epoch: number): Promise<void>
  /** The live instance holding the device, or null (connected nowhere, or on a dead instance). */
  ownerOf(deviceId: string): Promise<{ instanceId: string; epoch: number } | null>
  signal(instanceId: string, kind: SignalKind, deviceId: string | null, body?: Record<string, unknown>): Promise<void>
  onSignal(kind: SignalKind, handler: SignalHandler): void
  /** Take back the ownerships of dead instances; resolves with their device ids. */
  reapOwnerships(): Promise<string[]>
}
