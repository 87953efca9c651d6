import { SqliteAnalyticsStore } from '../registry/sqlite-analytics-store.js'
import { PostgresAnalyticsStore } from '../registry/postgres-analytics-store.js'
import { PostgresDeviceRegistry } from '../registry/postgres-registry.js'
import { PostgresRouteStore } from '../registry/postgres-route-store.js'
import { createPostgresState, type PostgresState } from '../postgres/pool.js'
import type { SessionStore } from '../broker/ports.js'
import type { CommandQueue } from '../commands/types.js'
import { SqliteCommandQueue } from '../commands/sqlite-command-queue.js'
import { SqliteSessionStore } from '../commands/sqlite-session-store.js'
import { PostgresCommandQueue } from '../commands/postgres-command-queue.js'
import { PostgresSessionStore } from '../commands/postgres-session-store.js'
import type { AnalyticsStore } from '../analytics/types.js'
import { existsSync } from 'node:fs'
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
 * The state stores of one process (gateway or CLI command), all on the backend state.backend
 * names: SQLite files in the data dir, or one PostgreSQL pool shared by every store. Each store
 * is created by the caller when it needs it and started and stopped by it; `end` closes what the
 * stores share (the pool) and comes last.
 */
export interface StateStores {
  readonly backend: 'sqlite' | 'postgres'
  /** The shared pool (state.backend postgres), for the cluster tables. */
  readonly postgres: PostgresState | null
  registry(): DeviceRegistry
  routes(): RouteStore
  analytics(): AnalyticsStore
  commandQueue(): ManagedCommandQueue
  sessions(onWriteError?: (deviceId: string, err: unknown) => void): ManagedSessionStore
  /** Whether queues and sessions exist yet (SQLite: commands.db; PostgreSQL: always). */
  hasCommandState(): boolean
  end(): Promise<void>
}

export interface ManagedCommandQueue extends CommandQueue {
  start(): Promise<void> | void
  stop(): Promise<void> | void
  /** Test and tooling aid: move a message's expiry (the API never accepts a TTL under 60 s). */
  setExpiry(seq: number, expiresAt: number): Promise<void>
}

export interface ManagedSessionStore extends SessionStore {
  start(): Promise<void> | void
  stop(): Promise<void>
}

export function openStateStores(config: GatewayConfig, role: 'gateway' | 'tool' = 'gateway', applicationName?: string): StateStores {
  const dataDir = resolve(config.dataDir)
  if (config.state.backend === 'sqlite') {
    const registryFile = join(dataDir, 'registry.db')
    const commandsFile = join(dataDir, 'commands.db')
    return {
      backend: 'sqlite',
      postgres: null,
      registry: () => new SqliteDeviceRegistry({ file: registryFile }),
      routes: () => new SqliteRouteStore({ file: registryFile }),
      analytics: () => new SqliteAnalyticsStore({ file: registryFile }),
      commandQueue: () => new SqliteCommandQueue(commandsFile),
      sessions: (onWriteError) => new SqliteSessionStore(commandsFile, onWriteError),
      hasCommandState: () => existsSync(commandsFile),
      end: async () => undefined,
    }
  }
  const state = createPostgresState({ ...config.state.postgres, applicationName: applicationName ?? (role === 'tool' ? 'streamgate-cli' : 'streamgate') })
  return {
    backend: 'postgres',
    postgres: state,
    registry: () => new PostgresDeviceRegistry({ state }),
    routes: () => new PostgresRouteStore({ state }),
    analytics: () => new PostgresAnalyticsStore({ state }),
    commandQueue: () => new PostgresCommandQueue(state),
    sessions: (onWriteError) => new PostgresSessionStore(state, onWriteError),
    hasCommandState: () => true,
    end: () => state.end(),
  }
}

/** A store opened for one CLI command, with the state it needs closed after it. */
export async function openToolStore<T extends { start(): Promise<void> | void; stop(): Promise<void> | void }>(
  config: GatewayConfig,
  pick: (stores: StateStores) => T,
): Promise<{ store: T; close(): Promise<void> }> {
  const stores = openStateStores(config, 'tool')
  const store = pick(stores)
  try {
    await store.start()
  } catch (err) {
    await stores.end()
    throw err
  }
  return {
    store,
    close: async () => {
      try {
        await store.stop()
      } finally {
        await stores.end()
      }
    },
  }
}
