import type pg from 'pg'
import { GatewayError } from '../errors/catalogue.js'
import { migratePostgres } from '../postgres/migrate.js'
import { guardPostgres, inTransaction, type PostgresState, type Queryable } from '../postgres/pool.js'
import { COMMAND_MIGRATIONS } from './postgres-command-schema.js'
import type { AckMode, CommandQueue, Feedback, FeedbackStatus, NewMessage, PendingFeedback, QueuedMessage } from './types.js'

interface MessageRow {
  seq: string
  message_id: string
  device_id: string
  payload: Buffer
  properties: string
  content_type: string | null
  content_encoding: string | null
  ack: string
  enqueued_at: string
  expires_at: string
  delivery_count: number
  source_ref: string | null
}

/**
 * The CommandQueue on PostgreSQL, shared by every gateway on the schema: a message queued through
 * one instance is delivered by the one holding the device. It behaves as SqliteCommandQueue, call
 * for call (test/contract/command-queue.contract.ts runs on both).
 *
 * Where SQLite serialises writers with BEGIN IMMEDIATE:
 * - enqueue takes a transaction-level advisory lock on the device, so the depth check and the
 *   insert of two concurrent enqueues cannot both pass at `maxDepth - 1`;
 * - settle, purge and expire delete with RETURNING, so a message ends in exactly one of them
 *   (the second DELETE finds no row) and its feedback is written in that same transaction;
 * - the feedback claim takes rows FOR UPDATE SKIP LOCKED, each to one claimer, on the database's
 *   clock.
 * The pool belongs to the caller: stop() leaves it open.
 */
export class PostgresCommandQueue implements CommandQueue {
  private started = false

  constructor(private readonly state: PostgresState) {}

  async start(): Promise<void> {
    if (this.started) return
    await migratePostgres(this.state, 'commands', COMMAND_MIGRATIONS)
    this.started = true
  }

  async stop(): Promise<void> {
    this.started = false
  }

  async enqueue(m: NewMessage, maxDepth: number): Promise<QueuedMessage | null> {
    return this.write(async (client) => {
      await client.query("SELECT pg_advisory_xact_lock(hashtext('streamgate-c2d:' || $1))", [m.deviceId])
      if (m.sourceRef !== undefined) {
        // Kept while a replay could still queue a live message: until the message would expire.
        const taken = await client.query('INSERT INTO c2d_sources (source_ref, keep_until) VALUES ($1, $2) ON CONFLICT DO NOTHING', [m.sourceRef, m.expiresAt])
        if (taken.rowCount === 0) return null
      }
      const { rows: counted } = await client.query<{ n: number }>('SELECT count(*)::int AS n FROM c2d_messages WHERE device_id = $1', [m.deviceId])
      if (counted[0]!.n >= maxDepth) {
        throw new GatewayError('E_QUEUE_FULL', `the queue of device "${m.deviceId}" holds its maximum of ${maxDepth} messages`, { deviceId: m.deviceId })
      }
      const { rows } = await client.query<MessageRow>(
        `INSERT INTO c2d_messages (message_id, device_id, payload, properties, content_type, content_encoding, ack, enqueued_at, expires_at, source_ref)
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10) RETURNING *`,
        [m.messageId, m.deviceId, m.payload, JSON.stringify(m.properties), m.contentType ?? null, m.contentEncoding ?? null, m.ack, m.enqueuedAt, m.expiresAt, m.sourceRef ?? null],
      )
      return toMessage(rows[0]!)
    })
  }

  async list(deviceId: string): Promise<QueuedMessage[]> {
    return (await this.query<MessageRow>('SELECT * FROM c2d_messages WHERE device_id = $1 ORDER BY seq', [deviceId])).map(toMessage)
  }

  async head(deviceId: string): Promise<QueuedMessage | null> {
    const rows = await this.query<MessageRow>('SELECT * FROM c2d_messages WHERE device_id = $1 ORDER BY seq LIMIT 1', [deviceId])
    return rows[0] ? toMessage(rows[0]) : null
  }

  async recordDelivery(seq: number): Promise<number> {
    const rows = await this.query<{ delivery_count: number }>('UPDATE c2d_messages SET delivery_count = delivery_count + 1 WHERE seq = $1 RETURNING delivery_count', [seq])
    return rows[0]?.delivery_count ?? 0
  }

  async settle(seq: number, status: FeedbackStatus, at: number, reason?: string): Promise<boolean> {
    return this.write(async (client) => {
      const { rows } = await client.query<MessageRow>('DELETE FROM c2d_messages WHERE seq = $1 RETURNING *', [seq])
      if (!rows[0]) return false
      await addFeedback(client, [feedbackOf(rows[0], status, at, reason)])
      return true
    })
  }

  async purge(deviceId: string, at: number): Promise<number> {
    return this.write(async (client) => {
      const { rows } = await client.query<MessageRow>('DELETE FROM c2d_messages WHERE device_id = $1 RETURNING *', [deviceId])
      const ended = rows.sort(bySeq)
      await addFeedback(client, ended.map((row) => feedbackOf(row, 'purged', at)))
      return ended.length
    })
  }

  async expire(now: number): Promise<string[]> {
    return this.write(async (client) => {
      const { rows } = await client.query<MessageRow>('DELETE FROM c2d_messages WHERE expires_at <= $1 RETURNING *', [now])
      const ended = rows.sort(bySeq)
      await addFeedback(client, ended.map((row) => feedbackOf(row, 'expired', now)))
      return [...new Set(ended.map((r) => r.device_id))]
    })
  }

  async recordUnqueued(feedback: Feedback, sourceRef: string, keepUntil: number): Promise<void> {
    await this.write(async (client) => {
      const taken = await client.query('INSERT INTO c2d_sources (source_ref, keep_until) VALUES ($1, $2) ON CONFLICT DO NOTHING', [sourceRef, keepUntil])
      if ((taken.rowCount ?? 0) > 0) await addFeedback(client, [feedback])
    })
  }

  async pruneSources(before: number): Promise<number> {
    return this.run(async () => (await this.state.pool.query('DELETE FROM c2d_sources WHERE keep_until < $1', [before])).rowCount ?? 0)
  }

  async devicesWithMessages(): Promise<string[]> {
    return (await this.query<{ device_id: string }>('SELECT DISTINCT device_id FROM c2d_messages', [])).map((r) => r.device_id)
  }

  async depth(): Promise<{ messages: number; feedback: number }> {
    const rows = await this.query<{ messages: number; feedback: number }>(
      'SELECT (SELECT count(*)::int FROM c2d_messages) AS messages, (SELECT count(*)::int FROM c2d_feedback) AS feedback',
      [],
    )
    return rows[0]!
  }

  async pendingFeedback(limit: number, claimMs = 30_000): Promise<PendingFeedback[]> {
    // One statement: each row to one claimer (SKIP LOCKED), a lapsed claim (its writer died) free again.
    const rows = await this.query<{ id: string; body: string }>(
      `UPDATE c2d_feedback SET claimed_until = now() + $2::double precision * interval '1 millisecond'
       WHERE id IN (SELECT id FROM c2d_feedback WHERE claimed_until <= now() ORDER BY id LIMIT $1 FOR UPDATE SKIP LOCKED)
       RETURNING id, body`,
      [limit, claimMs],
    )
    return rows
      .map((r) => ({ id: Number(r.id), feedback: JSON.parse(r.body) as Feedback }))
      .sort((a, b) => a.id - b.id)
  }

  async releaseFeedback(ids: number[]): Promise<void> {
    if (ids.length === 0) return
    await this.query("UPDATE c2d_feedback SET claimed_until = '-infinity' WHERE id = ANY($1::bigint[])", [ids])
  }

  async removeFeedback(ids: number[]): Promise<void> {
    if (ids.length === 0) return
    await this.query('DELETE FROM c2d_feedback WHERE id = ANY($1::bigint[])', [ids])
  }

  /** Test and tooling aid: move a message's expiry (the API never accepts a TTL under 60 s). */
  async setExpiry(seq: number, expiresAt: number): Promise<void> {
    await this.query('UPDATE c2d_messages SET expires_at = $2 WHERE seq = $1', [seq, expiresAt])
  }

  private async query<R extends pg.QueryResultRow>(sql: string, values: unknown[]): Promise<R[]> {
    return this.run(async () => (await this.state.pool.query<R>(sql, values)).rows)
  }

  private async run<T>(fn: () => Promise<T>): Promise<T> {
    this.assertStarted()
    return guardPostgres(this.state, fn)
  }

  private async write<T>(fn: (client: pg.PoolClient) => Promise<T>): Promise<T> {
    this.assertStarted()
    return inTransaction(this.state, fn)
  }

  private assertStarted(): void {
    if (!this.started) throw new GatewayError('E_SHUTTING_DOWN', 'the command queue is closed')
  }
}

async function addFeedback(client: Queryable, feedback: readonly Feedback[]): Promise<void> {
  if (feedback.length === 0) return
  // In the order given: ids follow it (WITH ORDINALITY, ORDER BY).
  await client.query(
    'INSERT INTO c2d_feedback (body) SELECT f.body FROM unnest($1::text[]) WITH ORDINALITY AS f(body, n) ORDER BY f.n',
    [feedback.map((f) => JSON.stringify(f))],
  )
}

function bySeq(a: MessageRow, b: MessageRow): number {
  return Number(a.seq) - Number(b.seq)
}

function feedbackOf(row: MessageRow, status: FeedbackStatus, at: number, reason?: string): Feedback {
  const fb: Feedback = { messageId: row.message_id, deviceId: row.device_id, status, time: new Date(at).toISOString(), deliveryCount: row.delivery_count, ack: row.ack as AckMode }
  if (reason) fb.reason = reason
  return fb
}

function toMessage(row: MessageRow): QueuedMessage {
  const m: QueuedMessage = {
    seq: Number(row.seq),
    messageId: row.message_id,
    deviceId: row.device_id,
    payload: row.payload,
    properties: JSON.parse(row.properties) as Record<string, string>,
    ack: row.ack as AckMode,
    enqueuedAt: Number(row.enqueued_at),
    expiresAt: Number(row.expires_at),
    deliveryCount: row.delivery_count,
  }
  if (row.content_type !== null) m.contentType = row.content_type
  if (row.content_encoding !== null) m.contentEncoding = row.content_encoding
  if (row.source_ref !== null) m.sourceRef = row.source_ref
  return m
}
