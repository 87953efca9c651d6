import type { Cluster, ClaimResult, InstanceInfo, SignalHandler, SignalKind } from './types.js'

/**
 * The cluster of one (state.backend sqlite): this process is the only instance, every device it
 * holds is its own, and there is nobody to signal. Epochs are counted in memory.
 */
export class SoloCluster implements Cluster {
  private readonly epochs = new Map<string, number>()
  private readonly startedAt = new Date().toISOString()

  constructor(
    readonly instanceId: string,
    private readonly advertiseUrl: string,
    private readonly streamBackend: string,
    private readonly connections: () => number,
  ) {}

  async start(): Promise<void> {}
  async stop(): Promise<void> {}

  async instances(): Promise<InstanceInfo[]> {
    const now = new Date().toISOString()
    return [{ instanceId: this.instanceId, advertiseUrl: this.advertiseUrl, streamBackend: this.streamBackend, startedAt: this.startedAt, heartbeatAt: now, connections: this.connections(), alive: true, self: true }]
  }

  async claim(deviceId: string): Promise<ClaimResult> {
    const epoch = (this.epochs.get(deviceId) ?? 0) + 1
    this.epochs.set(deviceId, epoch)
    return { epoch, replaced: null }
  }

  async release(deviceId: string, epoch: number): Promise<void> {
    if (this.epochs.get(deviceId) === epoch) this.epochs.delete(deviceId)
  }

  async ownerOf(): Promise<null> {
    return null
  }

  async signal(instanceId: string, kind: SignalKind): Promise<void> {
    throw new Error(`no instance ${instanceId} to send ${kind} to: this gateway runs alone`)
  }

  onSignal(_kind: SignalKind, _handler: SignalHandler): void {}

  async reapOwnerships(): Promise<string[]> {
    return []
  }
}
