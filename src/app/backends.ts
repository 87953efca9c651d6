import { GatewayError } from '../errors/catalogue.js'
import { SqliteAnalyticsStore } from '../registry/sqlite-analytics-store.js'
import type { AnalyticsStore } from '../analytics/types.js'
import { join, resolve } from 'node:path'
import type { GatewayConfig } from '../config/schema.js'
import type { DeviceRegistry } from '../registry/types.js'
import { SqliteDeviceRegistry } from '../registry/sqlite-registry.js'
import { SqliteRouteStore } from '../registry/sqlite-route-store.js'
import type { RouteStore } from '../routing/types.js'
import type { EventStream } from '../stream/types.js'
import { SqliteEventStream } from '../stream/embedded/sqlite-event-stream.js'
import { KafkaEventStream } from '../stream/kafka/kafka-event-stream.js'

/**
 * The one place where backends are chosen from the configuration; the gateway and the CLI both
 * build their stream and registry here.
 */
export function createEventStream(config: GatewayConfig, role: 'gateway' | 'tool' = 'gateway'): EventStream {
  switch (config.stream.backend) {
    case 'embedded':
      // Retention is the gateway's job; a CLI process reading the same file leaves it alone, and
      // its few appends need no writer thread.
      return SqliteEventStream.fromConfig(config.stream.embedded, resolve(config.dataDir), config.stream.partitions, role === 'tool' ? { retentionIntervalSeconds: 0, writerThread: false, checkpointThread: false } : {})
    case 'kafka':
      // Retention is the brokers' job; a tool and the gateway are both plain Kafka clients.
      return KafkaEventStream.fromConfig(config.stream.kafka, config.stream.partitions, role === 'tool' ? { clientId: `${config.stream.kafka.clientId}-tool` } : {})
  }
}

/** Where the embedded stream keeps its file (for commands that must not create it). */
export function embeddedStreamFile(config: GatewayConfig): string {
  return join(resolve(config.dataDir), 'stream.db')
}

/**
 * state.backend postgres: the PostgreSQL adapters of the state ports are being built (the pool,
 * migrations and the cluster tables are in src/postgres and src/cluster); until they are wired a
 * configuration asking for it is refused, never silently served from SQLite.
 */
function refusePostgresState(config: GatewayConfig): void {
  if (config.state.backend === 'postgres') {
    throw new GatewayError('E_CONFIG_INVALID', 'state.backend postgres is not available in this build yet: use state.backend sqlite (the default)')
  }
}

export function createDeviceRegistry(config: GatewayConfig): DeviceRegistry {
  refusePostgresState(config)
  return new SqliteDeviceRegistry({ file: join(resolve(config.dataDir), 'registry.db') })
}

/** Routes live in the registry's database: every gateway sharing the registry runs the same ones. */
export function createAnalyticsStore(config: GatewayConfig): AnalyticsStore {
  refusePostgresState(config)
  return new SqliteAnalyticsStore({ file: join(resolve(config.dataDir), 'registry.db') })
}

export function createRouteStore(config: GatewayConfig): RouteStore {
  refusePostgresState(config)
  return new SqliteRouteStore({ file: join(resolve(config.dataDir), 'registry.db') })
}
