import type pg from 'pg'
import { checkAggregate, checkAlertRule, ruleAggregate, type AggregateDefinition, type AlertRuleDefinition } from '../analytics/definitions.js'
import type { AnalyticsDefinitions, AnalyticsStore, Checkpoint } from '../analytics/types.js'
import { migratePostgres } from '../postgres/migrate.js'
import { guardPostgres, type PostgresState } from '../postgres/pool.js'
import { aggregateInUse, aggregateNotFound, alertRuleNotFound } from './definition-errors.js'
import { changeTransaction, definitionExists, definitionRows, deleteDefinition, notStarted, readCounter, snapshotRead, upsertDefinition } from './postgres-definition-tables.js'
import { ANALYTICS_MIGRATIONS } from './postgres-analytics-schema.js'
import { storable } from './postgres-rows.js'

interface CheckpointRow {
  partition: number
  next_offset: string
  fingerprint: string
  state: string
  pending: string
  marks: string
}

const CHECKPOINT_COLUMNS = 'partition, next_offset, fingerprint, state, pending, marks'

/**
 * AnalyticsStore on PostgreSQL: aggregates, alert rules and their processors' checkpoints, shared
 * by every gateway on the schema, written as SqliteAnalyticsStore writes them. A definition change
 * is one transaction that bumps analytics_changes first (changeTransaction: writers in turn, so an
 * alert rule never reads a missing aggregate); removing a definition removes its checkpoints in
 * the same transaction. A checkpoint is one row replaced whole, so its offset, state and pending
 * outputs always belong together; checkpoints are not definition changes and leave the counter
 * alone. The pool belongs to the caller.
 */
export class PostgresAnalyticsStore implements AnalyticsStore {
  private readonly state: PostgresState
  private started = false

  constructor(options: { state: PostgresState }) {
    this.state = options.state
  }

  async start(): Promise<void> {
    if (this.started) return
    await migratePostgres(this.state, 'analytics', ANALYTICS_MIGRATIONS)
    this.started = true
  }

  async stop(): Promise<void> {
    this.started = false
  }

  async load(): Promise<AnalyticsDefinitions> {
    this.assertStarted()
    return snapshotRead(this.state, async (client) => ({
      version: await readCounter(client, 'analytics_changes'),
      // Checked again on the way out: another tool may have written the table.
      aggregates: (await definitionRows(client, 'analytics_aggregates')).map((row) => checkAggregate(JSON.parse(row.definition))),
      alertRules: (await definitionRows(client, 'analytics_alert_rules')).map((row) => checkAlertRule(JSON.parse(row.definition))),
    }))
  }

  async version(): Promise<number> {
    return this.run(() => readCounter(this.state.pool, 'analytics_changes'))
  }

  async putAggregate(aggregate: AggregateDefinition): Promise<{ created: boolean }> {
    const checked = checkAggregate(aggregate)
    return this.write(async (client) => ({ created: await upsertDefinition(client, 'analytics_aggregates', checked.name, checked) }))
  }

  async removeAggregate(name: string): Promise<void> {
    await this.write(async (client) => {
      const user = (await definitionRows(client, 'analytics_alert_rules')).find((row) => ruleAggregate(JSON.parse(row.definition) as AlertRuleDefinition) === name)
      if (user) throw aggregateInUse(name, user.name)
      if (!storable(name) || (await deleteDefinition(client, 'analytics_aggregates', name)) === 0) throw aggregateNotFound(name)
      await client.query('DELETE FROM analytics_checkpoints WHERE processor = $1', [`aggregate:${name}`])
    })
  }

  async putAlertRule(rule: AlertRuleDefinition): Promise<{ created: boolean }> {
    const checked = checkAlertRule(rule)
    return this.write(async (client) => {
      const aggregate = ruleAggregate(checked)
      if (aggregate !== undefined && !(await definitionExists(client, 'analytics_aggregates', aggregate))) throw aggregateNotFound(aggregate, checked.name)
      return { created: await upsertDefinition(client, 'analytics_alert_rules', checked.name, checked) }
    })
  }

  async removeAlertRule(name: string): Promise<void> {
    await this.write(async (client) => {
      if (!storable(name) || (await deleteDefinition(client, 'analytics_alert_rules', name)) === 0) throw alertRuleNotFound(name)
      await client.query('DELETE FROM analytics_checkpoints WHERE processor = $1', [`alert:${name}`])
    })
  }

  async loadCheckpoint(processor: string, partition: number): Promise<Checkpoint | null> {
    this.assertStarted()
    if (!storable(processor)) return null
    return this.run(async () => {
      const { rows } = await this.state.pool.query<CheckpointRow>(`SELECT ${CHECKPOINT_COLUMNS} FROM analytics_checkpoints WHERE processor = $1 AND partition = $2`, [processor, partition])
      return rows[0] ? toCheckpoint(rows[0]) : null
    })
  }

  async saveCheckpoint(processor: string, partition: number, cp: Checkpoint): Promise<void> {
    await this.run(() =>
      this.state.pool.query(
        `INSERT INTO analytics_checkpoints (processor, partition, next_offset, fingerprint, state, pending, marks, updated_at) VALUES ($1, $2, $3, $4, $5, $6, $7, now())
         ON CONFLICT (processor, partition) DO UPDATE SET next_offset = EXCLUDED.next_offset, fingerprint = EXCLUDED.fingerprint, state = EXCLUDED.state,
           pending = EXCLUDED.pending, marks = EXCLUDED.marks, updated_at = EXCLUDED.updated_at`,
        [processor, partition, cp.offset, cp.fingerprint, JSON.stringify(cp.state ?? null), JSON.stringify(cp.pending), JSON.stringify(cp.marks)],
      ),
    )
  }

  async clearPending(processor: string, partition: number): Promise<void> {
    this.assertStarted()
    if (!storable(processor)) return
    await this.run(() =>
      this.state.pool.query(`UPDATE analytics_checkpoints SET pending = '[]', marks = '{}' WHERE processor = $1 AND partition = $2`, [processor, partition]),
    )
  }

  async checkpoints(processor: string): Promise<Array<{ partition: number; checkpoint: Checkpoint }>> {
    this.assertStarted()
    if (!storable(processor)) return []
    return this.run(async () => {
      const { rows } = await this.state.pool.query<CheckpointRow>(`SELECT ${CHECKPOINT_COLUMNS} FROM analytics_checkpoints WHERE processor = $1 ORDER BY partition`, [processor])
      return rows.map((row) => ({ partition: row.partition, checkpoint: toCheckpoint(row) }))
    })
  }

  /** Against the pool once started, with PostgreSQL's availability failures as E_REGISTRY_UNAVAILABLE. */
  private async run<T>(fn: () => Promise<T>): Promise<T> {
    this.assertStarted()
    return guardPostgres(this.state, fn)
  }

  private async write<T>(fn: (client: pg.PoolClient) => Promise<T>): Promise<T> {
    this.assertStarted()
    return changeTransaction(this.state, 'analytics_changes', fn)
  }

  private assertStarted(): void {
    if (!this.started) throw notStarted('analytics store')
  }
}

function toCheckpoint(row: CheckpointRow): Checkpoint {
  return { offset: Number(row.next_offset), fingerprint: row.fingerprint, state: JSON.parse(row.state), pending: JSON.parse(row.pending), marks: JSON.parse(row.marks) }
}
