import type { Database } from 'better-sqlite3'
import { GatewayError } from '../errors/catalogue.js'
import { openCommandsFile } from './sqlite-command-schema.js'
import type { AckMode, CommandQueue, Feedback, FeedbackStatus, NewMessage, PendingFeedback, QueuedMessage } from './types.js'
import { prepared } from '../sqlite/statements.js'

interface MessageRow {
  seq: number
  message_id: string
  device_id: string
  payload: Buffer
  properties: string
  content_type: string | null
  content_encoding: string | null
  ack: string
  enqueued_at: number
  expires_at: number
  delivery_count: number
  source_ref: string | null
}

/**
 * SQLite adapter of the CommandQueue port on `<dataDir>/commands.db` (the sessions live in the
 * same file, owned by SqliteSessionStore). Statements are synchronous (better-sqlite3); the
 * methods return promises so that a networked store (PostgresCommandQueue) fits the same port.
 */
export class SqliteCommandQueue implements CommandQueue {
  private db: Database | null = null

  constructor(readonly file: string) {}

  start(): void {
    this.db ??= openCommandsFile(this.file)
  }

  stop(): void {
    this.db?.close()
    this.db = null
  }

  async enqueue(m: NewMessage, maxDepth: number): Promise<QueuedMessage | null> {
    const db = this.conn()
    return db.transaction((): QueuedMessage | null => {
      if (m.sourceRef !== undefined) {
        // Kept while a replay could still queue a live message: until the message would expire.
        const taken = prepared(db, 'INSERT OR IGNORE INTO c2d_sources (source_ref, keep_until) VALUES (?, ?)').run(m.sourceRef, m.expiresAt)
        if (taken.changes === 0) return null
      }
      const { n } = prepared<unknown[], { n: number }>(db, 'SELECT count(*) AS n FROM c2d_messages WHERE device_id = ?').get(m.deviceId)!
      if (n >= maxDepth) {
        throw new GatewayError('E_QUEUE_FULL', `the queue of device "${m.deviceId}" holds its maximum of ${maxDepth} messages`, { deviceId: m.deviceId })
      }
      const row = prepared<unknown[], MessageRow>(db,
          `INSERT INTO c2d_messages (message_id, device_id, payload, properties, content_type, content_encoding, ack, enqueued_at, expires_at, source_ref)
           VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?) RETURNING *`,
        )
        .get(m.messageId, m.deviceId, m.payload, JSON.stringify(m.properties), m.contentType ?? null, m.contentEncoding ?? null, m.ack, m.enqueuedAt, m.expiresAt, m.sourceRef ?? null)
      return toMessage(row!)
    }).immediate()
  }

  async list(deviceId: string): Promise<QueuedMessage[]> {
    return prepared<unknown[], MessageRow>(this.conn(), 'SELECT * FROM c2d_messages WHERE device_id = ? ORDER BY seq').all(deviceId).map(toMessage)
  }

  async head(deviceId: string): Promise<QueuedMessage | null> {
    const row = prepared<unknown[], MessageRow>(this.conn(), 'SELECT * FROM c2d_messages WHERE device_id = ? ORDER BY seq LIMIT 1').get(deviceId)
    return row ? toMessage(row) : null
  }

  async recordDelivery(seq: number): Promise<number> {
    const row = prepared<unknown[], { delivery_count: number }>(this.conn(), 'UPDATE c2d_messages SET delivery_count = delivery_count + 1 WHERE seq = ? RETURNING delivery_count').get(seq)
    return row?.delivery_count ?? 0
  }

  async settle(seq: number, status: FeedbackStatus, at: number, reason?: string): Promise<boolean> {
    const db = this.conn()
    return db.transaction(() => {
      const row = prepared<unknown[], MessageRow>(db, 'DELETE FROM c2d_messages WHERE seq = ? RETURNING *').get(seq)
      if (!row) return false
      this.addFeedback(feedbackOf(row, status, at, reason))
      return true
    }).immediate()
  }

  async purge(deviceId: string, at: number): Promise<number> {
    const db = this.conn()
    return db.transaction(() => {
      const rows = prepared<unknown[], MessageRow>(db, 'DELETE FROM c2d_messages WHERE device_id = ? RETURNING *').all(deviceId)
      rows.sort((a, b) => a.seq - b.seq)
      for (const row of rows) this.addFeedback(feedbackOf(row, 'purged', at))
      return rows.length
    }).immediate()
  }

  async expire(now: number): Promise<string[]> {
    const db = this.conn()
    return db.transaction(() => {
      const rows = prepared<unknown[], MessageRow>(db, 'DELETE FROM c2d_messages WHERE expires_at <= ? RETURNING *').all(now)
      rows.sort((a, b) => a.seq - b.seq)
      for (const row of rows) this.addFeedback(feedbackOf(row, 'expired', now))
      return [...new Set(rows.map((r) => r.device_id))]
    }).immediate()
  }

  async recordUnqueued(feedback: Feedback, sourceRef: string, keepUntil: number): Promise<void> {
    const db = this.conn()
    db.transaction(() => {
      const taken = prepared(db, 'INSERT OR IGNORE INTO c2d_sources (source_ref, keep_until) VALUES (?, ?)').run(sourceRef, keepUntil)
      if (taken.changes > 0) this.addFeedback(feedback)
    }).immediate()
  }

  async pruneSources(before: number): Promise<number> {
    return prepared(this.conn(), 'DELETE FROM c2d_sources WHERE keep_until < ?').run(before).changes
  }

  async devicesWithMessages(): Promise<string[]> {
    return prepared<unknown[], { device_id: string }>(this.conn(), 'SELECT DISTINCT device_id FROM c2d_messages').all().map((r) => r.device_id)
  }

  async depth(): Promise<{ messages: number; feedback: number }> {
    const count = (table: string): number => prepared<unknown[], { n: number }>(this.conn(), `SELECT COUNT(*) AS n FROM ${table}`).get()!.n
    return { messages: count('c2d_messages'), feedback: count('c2d_feedback') }
  }

  async pendingFeedback(limit: number, claimMs = 30_000): Promise<PendingFeedback[]> {
    const now = Date.now()
    // Claimed in one statement, so two gateways on this file never write the same rows; a writer
    // that dies leaves its claim to expire and another writes them (at-least-once only then).
    return prepared<unknown[], { id: number; body: string }>(this.conn(), 
        `UPDATE c2d_feedback SET claimed_until = ?
         WHERE id IN (SELECT id FROM c2d_feedback WHERE claimed_until <= ? ORDER BY id LIMIT ?)
         RETURNING id, body`,
      )
      .all(now + claimMs, now, limit)
      .sort((a, b) => a.id - b.id)
      .map((r) => ({ id: r.id, feedback: JSON.parse(r.body) as Feedback }))
  }

  async releaseFeedback(ids: number[]): Promise<void> {
    const release = prepared(this.conn(), 'UPDATE c2d_feedback SET claimed_until = 0 WHERE id = ?')
    this.conn().transaction(() => ids.forEach((id) => release.run(id)))()
  }

  async removeFeedback(ids: number[]): Promise<void> {
    const del = prepared(this.conn(), 'DELETE FROM c2d_feedback WHERE id = ?')
    this.conn().transaction(() => ids.forEach((id) => del.run(id)))()
  }

  /** Test and tooling aid: move a message's expiry (the API never accepts a TTL under 60 s). */
  async setExpiry(seq: number, expiresAt: number): Promise<void> {
    prepared(this.conn(), 'UPDATE c2d_messages SET expires_at = ? WHERE seq = ?').run(expiresAt, seq)
  }

  private addFeedback(feedback: Feedback): void {
    prepared(this.conn(), 'INSERT INTO c2d_feedback (body) VALUES (?)').run(JSON.stringify(feedback))
  }

  private conn(): Database {
    if (!this.db) throw new GatewayError('E_SHUTTING_DOWN', 'the command queue is closed')
    return this.db
  }
}

function feedbackOf(row: MessageRow, status: FeedbackStatus, at: number, reason?: string): Feedback {
  const fb: Feedback = { messageId: row.message_id, deviceId: row.device_id, status, time: new Date(at).toISOString(), deliveryCount: row.delivery_count, ack: row.ack as AckMode }
  if (reason) fb.reason = reason
  return fb
}

function toMessage(row: MessageRow): QueuedMessage {
  const m: QueuedMessage = {
    seq: row.seq,
    messageId: row.message_id,
    deviceId: row.device_id,
    payload: row.payload,
    properties: JSON.parse(row.properties) as Record<string, string>,
    ack: row.ack as AckMode,
    enqueuedAt: row.enqueued_at,
    expiresAt: row.expires_at,
    deliveryCount: row.delivery_count,
  }
  if (row.content_type !== null) m.contentType = row.content_type
  if (row.content_encoding !== null) m.contentEncoding = row.content_encoding
  if (row.source_ref !== null) m.sourceRef = row.source_ref
  return m
}
