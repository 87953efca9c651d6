import type pg from 'pg'
import { GatewayError } from '../errors/catalogue.js'
import { hashPassword } from '../auth/password.js'
import { migratePostgres } from '../postgres/migrate.js'
import { guardPostgres, inTransaction, sqlState, type PostgresState } from '../postgres/pool.js'
import { DEVICE_ID_PATTERN } from './types.js'
import type {
  ConnectionFacts,
  ConnectionState,
  CreateDeviceInput,
  Device,
  DeviceRegistry,
  DeviceStatus,
  KeyName,
  PendingDeviceEvent,
  Twin,
  TwinPatchOptions,
  TwinProperties,
  TwinSectionName,
} from './types.js'
import {
  assertDeviceId,
  generateKey,
  notFound,
  resolveListOptions,
  validateAuthMethod,
  validateKey,
  validatePassword,
  validateStatus,
  validateThumbprintFor,
  type ListOptions,
} from './validation.js'
import { GATEWAY_RESTART, connectionEvent, registryEvent, twinEvent, type DeviceEvent } from './device-event.js'
import { claimEvents, countEvents, insertEvent, insertEvents, releaseEvents, removeEvents } from './postgres-event-outbox.js'
import { DEVICE_COLUMNS, TWIN_COLUMNS, toDevice, toTwin, type PgDeviceRow, type PgTwinRow } from './postgres-rows.js'
import { REGISTRY_MIGRATIONS } from './postgres-schema.js'
import { assertTwinDepth, assertTwinSize, mergeTwinPatch, validateTwinPatch } from './twin-document.js'

/**
 * DeviceRegistry on PostgreSQL, for several gateways (and the CLI) sharing one database. It
 * behaves as SqliteDeviceRegistry, call for call (one contract suite runs on both): nothing is
 * cached, each write is one statement or one transaction, and every change that is a device event
 * writes its outbox row in that same transaction.
 *
 * Where SQLite serialises writers with BEGIN IMMEDIATE, this takes row locks: a twin patch reads
 * its row FOR UPDATE, and the outbox claim is built for concurrent claimers
 * (postgres-event-outbox.ts). The pool belongs to the caller: stop() leaves it open.
 */
export class PostgresDeviceRegistry implements DeviceRegistry {
  private readonly state: PostgresState
  private started = false

  constructor(options: { state: PostgresState }) {
    this.state = options.state
  }

  async start(): Promise<void> {
    if (this.started) return
    await migratePostgres(this.state, 'registry', REGISTRY_MIGRATIONS)
    this.started = true
  }

  async stop(): Promise<void> {
    this.started = false
  }

  async create(input: CreateDeviceInput): Promise<Device> {
    assertDeviceId(input.deviceId)
    const authMethod = validateAuthMethod(input.authMethod ?? 'sas')
    const status = validateStatus(input.status ?? 'enabled')
    if (authMethod === 'password' && input.password === undefined) {
      throw new GatewayError('E_BAD_REQUEST', 'a device with authMethod "password" needs a password')
    }
    const thumbprint = validateThumbprintFor(authMethod, input.thumbprint)
    const primaryKey = input.primaryKey === undefined ? generateKey() : validateKey(input.primaryKey, 'primaryKey')
    const secondaryKey = input.secondaryKey === undefined ? generateKey() : validateKey(input.secondaryKey, 'secondaryKey')
    const passwordHash = input.password === undefined ? null : await hashPassword(validatePassword(input.password))
    const at = new Date()
    const row = await this.write(async (client) => {
      try {
        const { rows } = await client.query<PgDeviceRow>(
          `INSERT INTO devices (device_id, status, auth_method, primary_key, secondary_key, password_hash, created_at, updated_at, x509_thumbprint)
           VALUES ($1, $2, $3, $4, $5, $6, $7, $7, $8) RETURNING ${DEVICE_COLUMNS}`,
          [input.deviceId, status, authMethod, primaryKey, secondaryKey, passwordHash, at, thumbprint],
        )
        await insertEvent(client, registryEvent(input.deviceId, 'created', at))
        return rows[0]!
      } catch (err) {
        if (sqlState(err) === '23505') {
          throw new GatewayError('E_DEVICE_EXISTS', `device "${input.deviceId}" already exists`, { deviceId: input.deviceId })
        }
        throw err
      }
    })
    return toDevice(row)
  }

  async get(deviceId: string): Promise<Device | null> {
    if (!registrable(deviceId)) return null
    const rows = await this.query<PgDeviceRow>(`SELECT ${DEVICE_COLUMNS} FROM devices WHERE device_id = $1`, [deviceId])
    return rows[0] ? toDevice(rows[0]) : null
  }

  async list(options?: ListOptions): Promise<Device[]> {
    const { limit, after, prefix } = resolveListOptions(options)
    // No id holds U+0000 (PostgreSQL cannot store one): a prefix with it matches nothing.
    if (prefix?.includes('\u0000')) return []
    const where: string[] = []
    const args: unknown[] = []
    // PostgreSQL cannot hold U+0000: the cursor is cut there, which keeps the page SQLite
    // gives (no id contains one, so an id sorts after `a\0b` exactly when it sorts after `a`).
    if (after !== undefined) {
      args.push(beforeNul(after))
      where.push(`device_id > $${args.length}`)
    }
    if (prefix !== undefined) {
      args.push(prefix)
      where.push(`device_id >= $${args.length}`, `left(device_id, length($${args.length})) = $${args.length}`)
    }
    args.push(limit)
    const rows = await this.query<PgDeviceRow>(`SELECT ${DEVICE_COLUMNS} FROM devices${where.length ? ` WHERE ${where.join(' AND ')}` : ''} ORDER BY device_id LIMIT $${args.length}`, args)
    return rows.map(toDevice)
  }

  async remove(deviceId: string): Promise<void> {
    if (!registrable(deviceId)) throw notFound(deviceId)
    await this.write(async (client) => {
      if ((await client.query('DELETE FROM devices WHERE device_id = $1', [deviceId])).rowCount === 0) throw notFound(deviceId)
      await insertEvent(client, registryEvent(deviceId, 'deleted', new Date()))
    })
  }

  async setStatus(deviceId: string, status: DeviceStatus): Promise<Device> {
    return this.update(deviceId, 'status = $3', [validateStatus(status)])
  }

  async rotateKey(deviceId: string, which: KeyName): Promise<Device> {
    switch (which) {
      case 'primary':
        return this.update(deviceId, 'primary_key = $3', [generateKey()])
      case 'secondary':
        return this.update(deviceId, 'secondary_key = $3', [generateKey()])
      case 'both':
        return this.update(deviceId, 'primary_key = $3, secondary_key = $4', [generateKey(), generateKey()])
      default:
        throw new GatewayError('E_BAD_REQUEST', `key must be "primary", "secondary" or "both", got "${String(which)}"`)
    }
  }

  async setPassword(deviceId: string, password: string | null): Promise<Device> {
    if (password === null) {
      if (!registrable(deviceId)) throw notFound(deviceId)
      // One statement, so a concurrent change of auth method cannot slip between check and write.
      const rows = await this.query<PgDeviceRow>(
        `UPDATE devices SET password_hash = NULL, updated_at = $2
         WHERE device_id = $1 AND auth_method <> 'password' RETURNING ${DEVICE_COLUMNS}`,
        [deviceId, new Date()],
      )
      if (rows[0]) return toDevice(rows[0])
      if (await this.get(deviceId)) {
        throw new GatewayError('E_BAD_REQUEST', `device "${deviceId}" authenticates by password; its password cannot be removed`)
      }
      throw notFound(deviceId)
    }
    const hash = await hashPassword(validatePassword(password))
    return this.update(deviceId, 'password_hash = $3', [hash])
  }

  async recordConnection(deviceId: string, state: ConnectionState, at: Date, facts: ConnectionFacts = {}): Promise<number | null> {
    return this.write(async (client) => {
      // Connecting counts as activity (as IoT Hub's lastActivityTime); disconnecting does not.
      const { rows } = await client.query<{ connection_seq: string }>(
        `UPDATE devices SET
           connection_state = CASE WHEN $2 = 'connected' OR $4::text IS NULL OR connection_id IS NULL OR connection_id = $4 THEN $2 ELSE connection_state END,
           connection_state_updated_at = CASE WHEN $2 = 'connected' OR $4::text IS NULL OR connection_id IS NULL OR connection_id = $4 THEN $3 ELSE connection_state_updated_at END,
           connection_id = CASE WHEN $2 = 'connected' THEN $4 WHEN $4::text IS NULL OR connection_id = $4 THEN NULL ELSE connection_id END,
           connection_seq = connection_seq + 1,
           last_activity_at = CASE WHEN $2 = 'connected' THEN $3 ELSE last_activity_at END
         WHERE device_id = $1 RETURNING connection_seq`,
        [deviceId, state, at, facts.connectionId ?? null],
      )
      const sequence = rows[0] ? Number(rows[0].connection_seq) : null
      await insertEvent(client, connectionEvent(deviceId, state, at, sequence, facts))
      return sequence
    })
  }

  /**
   * Every connected device of the schema, or (`onlyDevices`) those of the ids given: with several
   * gateways on one schema, a restarting instance passes the devices it held, so the others'
   * devices stay connected. Ids PostgreSQL cannot hold (U+0000) were never registered: left out.
   */
  async resetConnections(at: Date, onlyDevices?: readonly string[]): Promise<string[]> {
    const scope = onlyDevices === undefined ? '' : ' AND device_id = ANY($2::text[])'
    const values: unknown[] = onlyDevices === undefined ? [at] : [at, onlyDevices.filter(registrable)]
    return this.write(async (client) => {
      const { rows } = await client.query<{ device_id: string; connection_seq: string }>(
        `UPDATE devices SET connection_state = 'disconnected', connection_state_updated_at = $1,
           connection_seq = connection_seq + 1, connection_id = NULL
         WHERE connection_state = 'connected'${scope} RETURNING device_id, connection_seq`,
        values,
      )
      // Ids are ASCII: JavaScript's code-unit order is byte order, as COLLATE "C" sorts.
      rows.sort((a, b) => (a.device_id < b.device_id ? -1 : a.device_id > b.device_id ? 1 : 0))
      const events: DeviceEvent[] = rows.map((r) => connectionEvent(r.device_id, 'disconnected', at, Number(r.connection_seq), { reason: GATEWAY_RESTART }))
      await insertEvents(client, events)
      return rows.map((r) => r.device_id)
    })
  }

  /** Unknown devices are ignored: touch runs on the telemetry path, after a racing removal too. */
  async touch(deviceId: string, at: Date): Promise<void> {
    if (!registrable(deviceId)) return
    await this.query('UPDATE devices SET last_activity_at = $2 WHERE device_id = $1', [deviceId, at])
  }

  async getTwin(deviceId: string): Promise<Twin | null> {
    if (!registrable(deviceId)) return null
    const rows = await this.query<PgTwinRow>(`SELECT ${TWIN_COLUMNS} FROM devices WHERE device_id = $1`, [deviceId])
    return rows[0] ? toTwin(rows[0]) : null
  }

  async patchTwin(deviceId: string, section: TwinSectionName, patch: TwinProperties, options: TwinPatchOptions): Promise<Twin> {
    // Depth first: everything after it recurses.
    assertTwinDepth(patch, options.maxDepth)
    const checked = validateTwinPatch(patch)
    if (!registrable(deviceId)) throw notFound(deviceId)
    const column = twinColumn(section)
    // Read FOR UPDATE, merge, write: a second gateway patching the same twin waits on the row
    // lock (up to lock_timeout) instead of merging into a version that is about to be replaced.
    return this.write(async (client) => {
      const { rows } = await client.query<PgTwinRow>(`SELECT ${TWIN_COLUMNS} FROM devices WHERE device_id = $1 FOR UPDATE`, [deviceId])
      if (!rows[0]) throw notFound(deviceId)
      const current = toTwin(rows[0])[section]
      if (options.ifVersion !== undefined && options.ifVersion !== current.version) {
        throw new GatewayError('E_TWIN_VERSION_MISMATCH', `the ${section} version is ${current.version}, not ${options.ifVersion}`, { version: current.version })
      }
      const merged = mergeTwinPatch(current.properties, checked)
      assertTwinSize(section, merged, options.maxBytes)
      const updated = await client.query<PgTwinRow>(
        `UPDATE devices SET ${column} = $2, ${column}_version = ${column}_version + 1 WHERE device_id = $1 RETURNING ${TWIN_COLUMNS}`,
        [deviceId, JSON.stringify(merged)],
      )
      const twin = toTwin(updated.rows[0]!)
      await insertEvent(client, twinEvent(deviceId, section, twin[section].version, checked, new Date()))
      return twin
    })
  }

  async pendingEvents(limit: number, claimMs = 30_000): Promise<PendingDeviceEvent[]> {
    return this.run(() => claimEvents(this.state.pool, limit, claimMs))
  }

  async removeEvents(ids: number[]): Promise<void> {
    await this.run(() => removeEvents(this.state.pool, ids))
  }

  async releaseEvents(ids: number[]): Promise<void> {
    await this.run(() => releaseEvents(this.state.pool, ids))
  }

  async pendingEventCount(): Promise<number> {
    return this.run(() => countEvents(this.state.pool))
  }

  /** Apply `assignments` ($3, $4, ...) plus updated_at to one device; E_DEVICE_NOT_FOUND when it is absent. */
  private async update(deviceId: string, assignments: string, values: unknown[]): Promise<Device> {
    if (!registrable(deviceId)) throw notFound(deviceId)
    const rows = await this.query<PgDeviceRow>(
      `UPDATE devices SET ${assignments}, updated_at = $2 WHERE device_id = $1 RETURNING ${DEVICE_COLUMNS}`,
      [deviceId, new Date(), ...values],
    )
    if (!rows[0]) throw notFound(deviceId)
    return toDevice(rows[0])
  }

  private async query<R extends pg.QueryResultRow>(sql: string, values: unknown[]): Promise<R[]> {
    return this.run(async () => (await this.state.pool.query<R>(sql, values)).rows)
  }

  /** Against the pool once started, with PostgreSQL's availability failures as E_REGISTRY_UNAVAILABLE. */
  private async run<T>(fn: () => Promise<T>): Promise<T> {
    this.assertStarted()
    return guardPostgres(this.state, fn)
  }

  /** One transaction: the change and its outbox event commit together or not at all. */
  private async write<T>(fn: (client: pg.PoolClient) => Promise<T>): Promise<T> {
    this.assertStarted()
    return inTransaction(this.state, fn)
  }

  private assertStarted(): void {
    if (!this.started) throw new GatewayError('E_REGISTRY_UNAVAILABLE', 'the device registry is not started')
  }
}

/**
 * Whether a device with this id can exist: ids outside the character rule were never registered
 * (and PostgreSQL cannot even hold some of them, U+0000), so such a lookup is "unknown" without a
 * query, which is what SQLite answers after one. The rule is the character pattern, not
 * assertDeviceId, to mirror SQLite where an older build may have registered `.` or `..`.
 */
function registrable(deviceId: string): boolean {
  return DEVICE_ID_PATTERN.test(deviceId)
}

/** `text` up to its first U+0000 (PostgreSQL cannot hold one), or all of it. */
function beforeNul(text: string): string {
  const nul = text.indexOf('\u0000')
  return nul === -1 ? text : text.slice(0, nul)
}

/** The section's column, from a closed set: never caller text in the SQL. */
function twinColumn(section: TwinSectionName): 'twin_desired' | 'twin_reported' | 'twin_tags' {
  switch (section) {
    case 'desired':
      return 'twin_desired'
    case 'reported':
      return 'twin_reported'
    case 'tags':
      return 'twin_tags'
    default:
      throw new GatewayError('E_BAD_REQUEST', `twin section must be "desired", "reported" or "tags", got ${JSON.stringify(section)}`)
  }
}
