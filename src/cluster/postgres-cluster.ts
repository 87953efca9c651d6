import pg from 'pg'
import { GatewayError } from '../errors/catalogue.js'
import type { Logger } from '../observability/logger.js'
import { migratePostgres } from '../postgres/migrate.js'
import { guardPostgres, inTransaction, type PostgresState } from '../postgres/pool.js'
import { CLUSTER_MIGRATIONS } from './postgres-cluster-schema.js'
import type { Cluster, ClaimResult, InstanceInfo, Signal, SignalHandler, SignalKind } from './types.js'

export interface PostgresClusterOptions {
  state: PostgresState
  /** The connection string, for the one LISTEN connection outside the pool. */
  url: string
  instanceId: string
  advertiseUrl: string
  streamBackend: 'embedded' | 'kafka'
  heartbeatIntervalMs: number
  heartbeatTimeoutMs: number
  signalPollMs: number
  /** Device connections held now (written with each heartbeat). */
  connections: () => number
  logger: Logger
}

/** The NOTIFY channel every instance of a schema listens on; the payload names the target instance. */
function channelOf(schema: string): string {
  return `streamgate_${schema}`.slice(0, 63)
}

/**
 * The cluster on PostgreSQL: the instance list with heartbeats, the device ownership with its
 * per-device epoch, and signals. A signal is a row for its target instance plus a NOTIFY that
 * only says "look": the target reads and deletes its rows on the notification and on a poll every
 * signalPollMs, so a notification lost (LISTEN connection dropped, instance busy) delays a signal
 * by at most one poll and loses none. No consensus of our own: PostgreSQL's transactions decide.
 */
export class PostgresCluster implements Cluster {
  readonly instanceId: string
  private readonly handlers = new Map<SignalKind, SignalHandler>()
  private readonly log: Logger
  private listener: pg.Client | null = null
  private heartbeatTimer: NodeJS.Timeout | null = null
  private pollTimer: NodeJS.Timeout | null = null
  private draining: Promise<void> | null = null
  private drainAgain = false
  private stopped = false
  private readonly timeoutMs: number
  /** Devices this id held in its previous life, taken back at start (reported by the first reap). */
  private inherited: string[] = []

  constructor(private readonly options: PostgresClusterOptions) {
    this.instanceId = options.instanceId
    this.log = options.logger.child({ component: 'cluster', instanceId: options.instanceId })
    this.timeoutMs = Math.round(options.heartbeatTimeoutMs)
  }

  async start(): Promise<void> {
    const { state } = this.options
    await migratePostgres(state, 'cluster', CLUSTER_MIGRATIONS)
    await this.register()
    await this.listen()
    this.heartbeatTimer = setInterval(() => void this.heartbeat(), this.options.heartbeatIntervalMs)
    this.heartbeatTimer.unref()
    this.pollTimer = setInterval(() => this.drainSignals(), this.options.signalPollMs)
    this.pollTimer.unref()
    this.drainSignals()
  }

  /** Leave the list (others stop sending to this instance at once) and close the LISTEN connection. */
  async stop(): Promise<void> {
    if (this.stopped) return
    this.stopped = true
    if (this.heartbeatTimer) clearInterval(this.heartbeatTimer)
    if (this.pollTimer) clearInterval(this.pollTimer)
    await this.draining?.catch(() => undefined)
    const client = this.listener
    this.listener = null
    await client?.end().catch(() => undefined)
    await guardPostgres(this.options.state, async () => {
      await this.options.state.pool.query('UPDATE cluster_instances SET stopped_at = now(), connections = 0 WHERE instance_id = $1', [this.instanceId])
      await this.options.state.pool.query('DELETE FROM cluster_signals WHERE instance_id = $1', [this.instanceId])
    }).catch((err: unknown) => this.log.warn({ err: (err as Error).message }, 'could not leave the instance list'))
  }

  /** The SQL condition "instance row `alias` is alive": not stopped, heartbeat within the timeout (an integer of our own). */
  private live(alias: string): string {
    return `${alias}.stopped_at IS NULL AND ${alias}.heartbeat_at > now() - interval '${this.timeoutMs} milliseconds'`
  }

  onSignal(kind: SignalKind, handler: SignalHandler): void {
    this.handlers.set(kind, handler)
  }

  async instances(): Promise<InstanceInfo[]> {
    const { rows } = await guardPostgres(this.options.state, () =>
      this.options.state.pool.query<{ instance_id: string; advertise_url: string; stream_backend: string; started_at: Date; heartbeat_at: Date; connections: number; alive: boolean }>(
        `SELECT instance_id, advertise_url, stream_backend, started_at, heartbeat_at, connections, (${this.live('c')}) AS alive
         FROM cluster_instances c ORDER BY instance_id`,
      ),
    )
    return rows.map((r) => ({
      instanceId: r.instance_id,
      advertiseUrl: r.advertise_url,
      streamBackend: r.stream_backend,
      startedAt: r.started_at.toISOString(),
      heartbeatAt: r.heartbeat_at.toISOString(),
      connections: r.connections,
      alive: r.alive,
      self: r.instance_id === this.instanceId,
    }))
  }

  async claim(deviceId: string, connectionId: string): Promise<ClaimResult> {
    return inTransaction(this.options.state, async (client) => {
      const before = await client.query<{ instance_id: string | null; epoch: string; alive: boolean | null }>(
        `SELECT o.instance_id, o.epoch, (SELECT ${this.live('i')} FROM cluster_instances i WHERE i.instance_id = o.instance_id) AS alive
         FROM device_owners o WHERE o.device_id = $1 FOR UPDATE`,
        [deviceId],
      )
      const row = await client.query<{ epoch: string }>(
        `INSERT INTO device_owners (device_id, instance_id, connection_id, epoch, since) VALUES ($1, $2, $3, 1, now())
         ON CONFLICT (device_id) DO UPDATE SET instance_id = EXCLUDED.instance_id, connection_id = EXCLUDED.connection_id,
           epoch = device_owners.epoch + 1, since = now()
         RETURNING epoch`,
        [deviceId, this.instanceId, connectionId],
      )
      const epoch = Number(row.rows[0]!.epoch)
      const previous = before.rows[0]
      const replaced = previous?.instance_id && previous.instance_id !== this.instanceId && previous.alive ? previous.instance_id : null
      if (replaced) await this.insertSignal(client, replaced, 'replace', deviceId, { epoch })
      return { epoch, replaced }
    })
  }

  async release(deviceId: string, epoch: number): Promise<void> {
    await guardPostgres(this.options.state, () =>
      this.options.state.pool.query(
        'UPDATE device_owners SET instance_id = NULL, connection_id = NULL, since = now() WHERE device_id = $1 AND instance_id = $2 AND epoch = $3',
        [deviceId, this.instanceId, epoch],
      ),
    )
  }

  async ownerOf(deviceId: string): Promise<{ instanceId: string; epoch: number } | null> {
    const { rows } = await guardPostgres(this.options.state, () =>
      this.options.state.pool.query<{ instance_id: string; epoch: string }>(
        `SELECT o.instance_id, o.epoch FROM device_owners o JOIN cluster_instances i ON i.instance_id = o.instance_id
         WHERE o.device_id = $1 AND ${this.live('i')}`,
        [deviceId],
      ),
    )
    const r = rows[0]
    return r ? { instanceId: r.instance_id, epoch: Number(r.epoch) } : null
  }

  async signal(instanceId: string, kind: SignalKind, deviceId: string | null, body: Record<string, unknown> = {}): Promise<void> {
    await guardPostgres(this.options.state, async () => {
      const client = await this.options.state.pool.connect()
      try {
        await this.insertSignal(client, instanceId, kind, deviceId, body)
      } finally {
        client.release()
      }
    })
  }

  /**
   * Ownerships of instances whose heartbeat lapsed (and of this instance's previous life under
   * the same id): handed back to nobody, with the epoch raised so that the dead instance can never
   * write them again. Resolves with the device ids taken, for their `disconnected` events.
   */
  async reapOwnerships(): Promise<string[]> {
    const { rows } = await guardPostgres(this.options.state, () =>
      this.options.state.pool.query<{ device_id: string }>(
        `UPDATE device_owners o SET instance_id = NULL, connection_id = NULL, epoch = o.epoch + 1, since = now()
         WHERE o.instance_id IS NOT NULL AND NOT EXISTS (
           SELECT 1 FROM cluster_instances i WHERE i.instance_id = o.instance_id AND ${this.live('i')})
         RETURNING o.device_id`,
      ),
    )
    const inherited = this.inherited
    this.inherited = []
    return [...new Set([...inherited, ...rows.map((r) => r.device_id)])].sort()
  }

  private async insertSignal(client: pg.PoolClient | pg.Client, instanceId: string, kind: SignalKind, deviceId: string | null, body: Record<string, unknown>): Promise<void> {
    await client.query(
      `WITH s AS (INSERT INTO cluster_signals (instance_id, kind, device_id, body) VALUES ($1, $2, $3, $4) RETURNING instance_id)
       SELECT pg_notify($5, instance_id) FROM s`,
      [instanceId, kind, deviceId, JSON.stringify(body), channelOf(this.options.state.schema)],
    )
  }

  private async register(): Promise<void> {
    const { options } = this
    await inTransaction(options.state, async (client) => {
      await client.query('SELECT pg_advisory_xact_lock(hashtext($1))', [`streamgate-instances:${options.state.schema}`])
      const others = await client.query<{ instance_id: string; stream_backend: string }>(
        `SELECT instance_id, stream_backend FROM cluster_instances c WHERE instance_id <> $1 AND ${this.live('c')}`,
        [this.instanceId],
      )
      const embedded = options.streamBackend === 'embedded' ? this.instanceId : others.rows.find((r) => r.stream_backend === 'embedded')?.instance_id
      if (others.rows.length > 0 && embedded !== undefined) {
        throw new GatewayError(
          'E_CONFIG_INVALID',
          `several gateway instances need stream.backend kafka: instance ${embedded} runs on the embedded stream (a file of its own data dir), and ${others.rows.length} other instance(s) share this PostgreSQL schema (${others.rows.map((r) => r.instance_id).join(', ')})`,
          { instanceId: this.instanceId, others: others.rows.map((r) => r.instance_id) },
        )
      }
      await client.query(
        `INSERT INTO cluster_instances (instance_id, advertise_url, stream_backend, started_at, heartbeat_at, connections, stopped_at)
         VALUES ($1, $2, $3, now(), now(), 0, NULL)
         ON CONFLICT (instance_id) DO UPDATE SET advertise_url = EXCLUDED.advertise_url, stream_backend = EXCLUDED.stream_backend,
           started_at = now(), heartbeat_at = now(), connections = 0, stopped_at = NULL`,
        [this.instanceId, options.advertiseUrl, options.streamBackend],
      )
      // Signals addressed to this id's previous life are stale: that process and its connections are gone.
      await client.query('DELETE FROM cluster_signals WHERE instance_id = $1', [this.instanceId])
      // So are its ownerships (it was killed, or stopped with devices still on it): let go of them
      // now, with the epoch raised; the first reapOwnerships hands their ids out.
      const own = await client.query<{ device_id: string }>(
        `UPDATE device_owners SET instance_id = NULL, connection_id = NULL, epoch = epoch + 1, since = now()
         WHERE instance_id = $1 RETURNING device_id`,
        [this.instanceId],
      )
      this.inherited = own.rows.map((r) => r.device_id)
    })
  }

  /**
   * The heartbeat goes over the LISTEN connection, which is outside the pool: a pool that every
   * connecting device keeps busy (a connect storm) must not delay it past the timeout, or the
   * others would take this live instance for dead and reap its devices. The pool is the way
   * only while the LISTEN connection is being re-opened.
   */
  private async heartbeat(): Promise<void> {
    if (this.stopped) return
    try {
      await (this.listener ?? this.options.state.pool).query('UPDATE cluster_instances SET heartbeat_at = now(), connections = $2 WHERE instance_id = $1', [this.instanceId, this.options.connections()])
      // Signals for instances that are gone will never be read.
      await this.options.state.pool.query(`DELETE FROM cluster_signals s WHERE NOT EXISTS (SELECT 1 FROM cluster_instances i WHERE i.instance_id = s.instance_id AND ${this.live('i')})`)
    } catch (err) {
      this.log.warn({ err: (err as Error).message }, 'heartbeat not written')
    }
  }

  /** The LISTEN connection: outside the pool (LISTEN belongs to a session). Re-opened when it drops. */
  private async listen(): Promise<void> {
    if (this.stopped) return
    // In the schema and under the statement timeout of the pool's connections: the heartbeat
    // is written over this connection too.
    const client = new pg.Client({
      connectionString: this.options.url,
      application_name: `streamgate-listen-${this.instanceId}`,
      connectionTimeoutMillis: 5000,
      statement_timeout: this.options.heartbeatTimeoutMs,
      options: `-c search_path=${this.options.state.schema}`,
    })
    client.on('error', () => undefined)
    client.on('notification', (n) => {
      if (n.payload === this.instanceId) this.drainSignals()
    })
    client.on('end', () => {
      if (this.stopped || this.listener !== client) return
      this.listener = null
      this.log.warn('LISTEN connection closed; signals are polled until it is back')
      setTimeout(() => void this.listen().catch(() => undefined), this.options.signalPollMs).unref()
    })
    await client.connect()
    await client.query(`LISTEN ${channelOf(this.options.state.schema)}`)
    this.listener = client
    // Anything sent while no connection listened is waiting in the table.
    this.drainSignals()
  }

  /** Read and handle this instance's signals, oldest first; calls while a round runs make it run once more. */
  private drainSignals(): void {
    if (this.stopped && !this.draining) return
    if (this.draining) {
      this.drainAgain = true
      return
    }
    this.draining = (async () => {
      do {
        this.drainAgain = false
        let signals: Signal[]
        try {
          const { rows } = await this.options.state.pool.query<{ id: string; kind: SignalKind; device_id: string | null; body: Record<string, unknown> }>(
            `DELETE FROM cluster_signals WHERE id IN (SELECT id FROM cluster_signals WHERE instance_id = $1 ORDER BY id LIMIT 500 FOR UPDATE SKIP LOCKED)
             RETURNING id, kind, device_id, body`,
            [this.instanceId],
          )
          signals = rows.sort((a, b) => Number(a.id) - Number(b.id)).map((r) => ({ kind: r.kind, deviceId: r.device_id, body: r.body }))
          if (rows.length === 500) this.drainAgain = true
        } catch (err) {
          this.log.warn({ err: (err as Error).message }, 'signals not read')
          return
        }
        for (const s of signals) {
          const handler = this.handlers.get(s.kind)
          if (!handler) continue
          try {
            await handler(s)
          } catch (err) {
            this.log.warn({ kind: s.kind, deviceId: s.deviceId, err: (err as Error).message }, 'signal not handled')
          }
        }
      } while (this.drainAgain && !this.stopped)
    })().finally(() => {
      this.draining = null
    })
  }
}
