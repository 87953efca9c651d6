import type { Database } from 'better-sqlite3'
import { GatewayError } from '../errors/catalogue.js'
import { hashPassword } from '../auth/password.js'
import { guardRegistryFile, openRegistryDatabase } from './sqlite-schema.js'
import {
  assertDeviceId,
  generateKey,
  validateKey,
  validatePassword,
  resolveListOptions,
  validateAuthMethod, validateThumbprintFor,
  validateStatus,
  notFound,
  type ListOptions,
} from './validation.js'
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
import { GATEWAY_RESTART, connectionEvent, registryEvent, twinEvent } from './device-event.js'
import { claimEvents, countEvents, insertEvent, releaseEvents, removeEvents } from './sqlite-event-outbox.js'
import { SELECT_DEVICE, SELECT_TWIN, sqliteCode, toDevice, toTwin, type DeviceRow, type TwinRow } from './sqlite-rows.js'
import { assertTwinDepth, assertTwinSize, mergeTwinPatch, validateTwinPatch } from './twin-document.js'
import { prepared } from '../sqlite/statements.js'

/**
 * DeviceRegistry on one SQLite file (`<dataDir>/registry.db`, apart from the embedded stream so
 * that stream group commits never wait on registry writes and vice versa).
 *
 * The running gateway and `streamgate devices` CLI processes open the same file at the same time,
 * so nothing is cached in memory: every call is one statement (or one transaction) against the
 * file, and each write is atomic on its own. WAL lets readers proceed during a write; busy_timeout
 * makes a writer wait up to 5 s for another process's write instead of failing at once.
 */
/** How long connection changes gather before their shared transaction, and how many at most. */
const CONNECTION_COMMIT_MS = 5
const CONNECTION_COMMIT_MAX = 500

export class SqliteDeviceRegistry implements DeviceRegistry {
  readonly file: string
  private db: Database | null = null
  /** Connection changes waiting for the next shared transaction (see recordConnection). */
  private connectionChanges: ConnectionChange[] = []
  private connectionTimer: NodeJS.Timeout | null = null

  constructor(options: { file: string }) {
    this.file = options.file
  }

  async start(): Promise<void> {
    if (this.db) return
    this.db = openRegistryDatabase(this.file, (fn) => this.guard(fn))
  }

  async stop(): Promise<void> {
    // Changes already accepted are written before the file closes.
    this.writeConnectionChanges()
    const db = this.db
    this.db = null
    db?.close()
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
    const secondaryKey =
      input.secondaryKey === undefined ? generateKey() : validateKey(input.secondaryKey, 'secondaryKey')
    const passwordHash = input.password === undefined ? null : await hashPassword(validatePassword(input.password))
    const at = new Date()
    const now = at.toISOString()
    const row = this.write((db) => {
      try {
        const created = prepared<unknown[], DeviceRow>(db,
            `INSERT INTO devices (device_id, status, auth_method, primary_key, secondary_key, password_hash, created_at, updated_at, x509_thumbprint)
             VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?) RETURNING *`,
          )
          .get(input.deviceId, status, authMethod, primaryKey, secondaryKey, passwordHash, now, now, thumbprint)
        insertEvent(db, registryEvent(input.deviceId, 'created', at))
        return created
      } catch (err) {
        if (sqliteCode(err) === 'SQLITE_CONSTRAINT_PRIMARYKEY') {
          throw new GatewayError('E_DEVICE_EXISTS', `device "${input.deviceId}" already exists`, { deviceId: input.deviceId })
        }
        throw err
      }
    })
    return toDevice(row!)
  }

  async get(deviceId: string): Promise<Device | null> {
    const row = this.run((db) => prepared<unknown[], DeviceRow>(db, SELECT_DEVICE).get(deviceId))
    return row ? toDevice(row) : null
  }

  async list(options?: ListOptions): Promise<Device[]> {
    const { limit, after, prefix } = resolveListOptions(options)
    // A prefix starts the scan at itself in the id index; substr() keeps only the ids it starts.
    const where: string[] = []
    const args: unknown[] = []
    if (after !== undefined) {
      where.push('device_id > ?')
      args.push(after)
    }
    if (prefix !== undefined) {
      where.push('device_id >= ?', 'substr(device_id, 1, ?) = ?')
      args.push(prefix, prefix.length, prefix)
    }
    const sql = `SELECT * FROM devices${where.length ? ` WHERE ${where.join(' AND ')}` : ''} ORDER BY device_id LIMIT ?`
    const rows = this.run((db) => prepared<unknown[], DeviceRow>(db, sql).all(...args, limit))
    return rows.map(toDevice)
  }

  async remove(deviceId: string): Promise<void> {
    this.write((db) => {
      if (prepared(db, 'DELETE FROM devices WHERE device_id = ?').run(deviceId).changes === 0) throw notFound(deviceId)
      insertEvent(db, registryEvent(deviceId, 'deleted', new Date()))
    })
  }

  async setStatus(deviceId: string, status: DeviceStatus): Promise<Device> {
    return this.update(deviceId, 'status = ?', [validateStatus(status)])
  }

  async rotateKey(deviceId: string, which: KeyName): Promise<Device> {
    switch (which) {
      case 'primary':
        return this.update(deviceId, 'primary_key = ?', [generateKey()])
      case 'secondary':
        return this.update(deviceId, 'secondary_key = ?', [generateKey()])
      case 'both':
        return this.update(deviceId, 'primary_key = ?, secondary_key = ?', [generateKey(), generateKey()])
      default:
        throw new GatewayError('E_BAD_REQUEST', `key must be "primary", "secondary" or "both", got "${String(which)}"`)
    }
  }

  async setPassword(deviceId: string, password: string | null): Promise<Device> {
    if (password === null) {
      // One statement, so a concurrent change of auth method cannot slip between check and write.
      const row = this.run((db) =>
        prepared<unknown[], DeviceRow>(db,
            `UPDATE devices SET password_hash = NULL, updated_at = ?
             WHERE device_id = ? AND auth_method <> 'password' RETURNING *`,
          )
          .get(new Date().toISOString(), deviceId),
      )
      if (row) return toDevice(row)
      if (await this.get(deviceId)) {
        throw new GatewayError('E_BAD_REQUEST', `device "${deviceId}" authenticates by password; its password cannot be removed`)
      }
      throw notFound(deviceId)
    }
    const hash = await hashPassword(validatePassword(password))
    return this.update(deviceId, 'password_hash = ?', [hash])
  }

  /**
   * Group commit: the connection changes of CONNECTION_COMMIT_MS (a connect storm brings one per
   * turn of the event loop, so a per-turn group held one change) are written in one transaction,
   * each with its event, instead of a transaction each; at CONNECTION_COMMIT_MAX changes the
   * transaction runs at once. A change's promise settles once that transaction has committed. If
   * the shared transaction fails, each change is tried again in a transaction of its own, so that
   * only a change at fault fails. Changes keep their call order, in the file and in the outbox.
   * No device waits for this: its CONNACK does not depend on the record.
   */
  recordConnection(deviceId: string, state: ConnectionState, at: Date, facts: ConnectionFacts = {}): Promise<number | null> {
    if (!this.db) return Promise.reject(new GatewayError('E_REGISTRY_UNAVAILABLE', 'the device registry is not started'))
    return new Promise((resolve, reject) => {
      this.connectionChanges.push({ deviceId, state, at, facts, resolve, reject })
      if (this.connectionChanges.length >= CONNECTION_COMMIT_MAX) this.writeConnectionChanges()
      else if (!this.connectionTimer) this.connectionTimer = setTimeout(() => this.writeConnectionChanges(), CONNECTION_COMMIT_MS)
    })
  }

  private writeConnectionChanges(): void {
    if (this.connectionTimer) clearTimeout(this.connectionTimer)
    this.connectionTimer = null
    const changes = this.connectionChanges
    this.connectionChanges = []
    if (changes.length === 0) return
    let sequences: Array<number | null>
    try {
      sequences = this.write((db) => changes.map((c) => applyConnectionChange(db, c)))
    } catch {
      for (const change of changes) {
        try {
          change.resolve(this.write((db) => applyConnectionChange(db, change)))
        } catch (err) {
          change.reject(err)
        }
      }
      return
    }
    changes.forEach((c, i) => c.resolve(sequences[i]!))
  }

  async resetConnections(at: Date, onlyDevices?: readonly string[]): Promise<string[]> {
    // Scoped to the ids given (one JSON array parameter, as releaseEvents), or every device.
    const scope = onlyDevices === undefined ? '' : ' AND device_id IN (SELECT value FROM json_each(?))'
    const values: unknown[] = onlyDevices === undefined ? [at.toISOString()] : [at.toISOString(), JSON.stringify(onlyDevices)]
    return this.write((db) => {
      const rows = prepared<unknown[], { device_id: string; connection_seq: number }>(db,
          `UPDATE devices SET connection_state = 'disconnected', connection_state_updated_at = ?,
             connection_seq = connection_seq + 1, connection_id = NULL
           WHERE connection_state = 'connected'${scope} RETURNING device_id, connection_seq`,
        )
        .all(...values)
        .sort((a, b) => (a.device_id < b.device_id ? -1 : a.device_id > b.device_id ? 1 : 0))
      for (const r of rows) insertEvent(db, connectionEvent(r.device_id, 'disconnected', at, r.connection_seq, { reason: GATEWAY_RESTART }))
      return rows.map((r) => r.device_id)
    })
  }

  /** Unknown devices are ignored: touch runs on the telemetry path, after a racing removal too. */
  async touch(deviceId: string, at: Date): Promise<void> {
    this.run((db) =>
      prepared(db, 'UPDATE devices SET last_activity_at = ? WHERE device_id = ?').run(at.toISOString(), deviceId),
    )
  }

  async getTwin(deviceId: string): Promise<Twin | null> {
    const row = this.run((db) => prepared<unknown[], TwinRow>(db, SELECT_TWIN).get(deviceId))
    return row ? toTwin(row) : null
  }

  async patchTwin(deviceId: string, section: TwinSectionName, patch: TwinProperties, options: TwinPatchOptions): Promise<Twin> {
    // Depth first: everything after it recurses.
    assertTwinDepth(patch, options.maxDepth)
    const checked = validateTwinPatch(patch)
    const column = `twin_${section}` as const
    // Read, merge and write in one IMMEDIATE transaction: a CLI or second gateway patching the same
    // twin waits on busy_timeout instead of losing an update.
    return this.run((db) =>
      db.transaction(() => {
        const row = prepared<unknown[], TwinRow>(db, SELECT_TWIN).get(deviceId)
        if (!row) throw notFound(deviceId)
        const current = toTwin(row)[section]
        if (options.ifVersion !== undefined && options.ifVersion !== current.version) {
          throw new GatewayError('E_TWIN_VERSION_MISMATCH', `the ${section} version is ${current.version}, not ${options.ifVersion}`, { version: current.version })
        }
        const merged = mergeTwinPatch(current.properties, checked)
        assertTwinSize(section, merged, options.maxBytes)
        prepared(db, `UPDATE devices SET ${column} = ?, ${column}_version = ${column}_version + 1 WHERE device_id = ?`).run(JSON.stringify(merged), deviceId)
        const twin = toTwin(prepared<unknown[], TwinRow>(db, SELECT_TWIN).get(deviceId)!)
        insertEvent(db, twinEvent(deviceId, section, twin[section].version, checked, new Date()))
        return twin
      }).immediate(),
    )
  }

  async pendingEvents(limit: number, claimMs = 30_000): Promise<PendingDeviceEvent[]> {
    return this.run((db) => claimEvents(db, limit, claimMs, Date.now()))
  }

  async removeEvents(ids: number[]): Promise<void> {
    this.run((db) => removeEvents(db, ids))
  }

  async releaseEvents(ids: number[]): Promise<void> {
    this.run((db) => releaseEvents(db, ids))
  }

  async pendingEventCount(): Promise<number> {
    return this.run(countEvents)
  }

  /** Apply `assignments` (plus updated_at) to one device; E_DEVICE_NOT_FOUND when it is absent. */
  private update(deviceId: string, assignments: string, values: unknown[]): Device {
    const row = this.run((db) =>
      prepared<unknown[], DeviceRow>(db, `UPDATE devices SET ${assignments}, updated_at = ? WHERE device_id = ? RETURNING *`)
        .get(...values, new Date().toISOString(), deviceId),
    )
    if (!row) throw notFound(deviceId)
    return toDevice(row)
  }

  /** Run against the open database, mapping SQLite's lock and I/O failures to catalogue codes. */
  private run<T>(fn: (db: Database) => T): T {
    const db = this.db
    if (!db) throw new GatewayError('E_REGISTRY_UNAVAILABLE', 'the device registry is not started')
    return this.guard(() => fn(db))
  }

  /**
   * One IMMEDIATE transaction: the change and its outbox event commit together or not at all.
   * IMMEDIATE takes the write lock up front, so a transaction never has to upgrade a read lock
   * another process's write could block (SQLITE_BUSY without waiting).
   */
  private write<T>(fn: (db: Database) => T): T {
    return this.run((db) => db.transaction(() => fn(db)).immediate())
  }

  private guard<T>(fn: () => T): T {
    return guardRegistryFile(this.file, fn)
  }
}

interface ConnectionChange {
  deviceId: string
  state: ConnectionState
  at: Date
  facts: ConnectionFacts
  resolve: (sequence: number | null) => void
  reject: (err: unknown) => void
}

/** One device's connection change and its outbox event; returns the new sequence (null: unknown device). */
function applyConnectionChange(db: Database, change: ConnectionChange): number | null {
  const { deviceId, state, at, facts } = change
  // Connecting counts as activity (as IoT Hub's lastActivityTime); disconnecting does not.
  const row = prepared<unknown[], { connection_seq: number }>(db,
      `UPDATE devices SET
         connection_state = CASE WHEN @state = 'connected' OR @conn IS NULL OR connection_id IS NULL OR connection_id = @conn THEN @state ELSE connection_state END,
         connection_state_updated_at = CASE WHEN @state = 'connected' OR @conn IS NULL OR connection_id IS NULL OR connection_id = @conn THEN @at ELSE connection_state_updated_at END,
         connection_id = CASE WHEN @state = 'connected' THEN @conn WHEN @conn IS NULL OR connection_id = @conn THEN NULL ELSE connection_id END,
         connection_seq = connection_seq + 1,
         last_activity_at = CASE WHEN @state = 'connected' THEN @at ELSE last_activity_at END
       WHERE device_id = @id RETURNING connection_seq`,
    )
    .get({ state, conn: facts.connectionId ?? null, at: at.toISOString(), id: deviceId })
  const sequence = row ? row.connection_seq : null
  insertEvent(db, connectionEvent(deviceId, state, at, sequence, facts))
  return sequence
}
