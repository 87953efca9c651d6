import type { FastifyInstance } from 'fastify'
import type { InstanceInfo } from '../cluster/types.js'

/** The instance list as the API serves it (handed in by the composition root). */
export interface ClusterApi {
  instanceId(): string
  instances(): Promise<InstanceInfo[]>
  /** This instance's device connections now. */
  liveConnections(): number
  /** The live instance holding the device's connection, per the shared ownership table (null: none known). */
  owner(deviceId: string): Promise<string | null>
}

/**
 * GET /api/instances: every instance registered on the shared state, alive or recently gone, with
 * its HTTP address, stream backend, heartbeat and device connections (as of its last heartbeat;
 * the answering instance's own count is live). One gateway alone lists itself.
 */
export function registerClusterRoutes(api: FastifyInstance, cluster: ClusterApi): void {
  api.get('/instances', async () => {
    const instances = await cluster.instances()
    return {
      instanceId: cluster.instanceId(),
      instances: instances.map((i) => (i.self ? { ...i, connections: cluster.liveConnections() } : i)),
    }
  })
}
