import type { Database } from 'better-sqlite3'
import { GatewayError } from '../errors/catalogue.js'
import { checkAggregate, checkAlertRule, ruleAggregate, type AggregateDefinition, type AlertRuleDefinition } from '../analytics/definitions.js'
import type { AnalyticsDefinitions, AnalyticsStore, Checkpoint } from '../analytics/types.js'
import { prepared } from '../sqlite/statements.js'
import { guardRegistryFile, openRegistryDatabase } from './sqlite-schema.js'
import { aggregateInUse, aggregateNotFound, alertRuleNotFound } from './definition-errors.js'

interface DefinitionRow {
  name: string
  definition: string
}

interface CheckpointRow {
  partition: number
  next_offset: number
  fingerprint: string
  state: string
  pending: string
  marks: string
}

type Table = 'analytics_aggregates' | 'analytics_alert_rules'

/**
 * Aggregates, alert rules and their processors' checkpoints in the registry file (tables of
 * migration v6), on a connection of its own, written as SqliteRouteStore writes routes: each
 * definition change is one IMMEDIATE transaction that bumps analytics_changes. A checkpoint is one
 * row replaced whole, so its offset, state and pending outputs always belong together.
 */
export class SqliteAnalyticsStore implements AnalyticsStore {
  private db: Database | null = null

  constructor(private readonly options: { file: string }) {}

  async start(): Promise<void> {
    this.db ??= openRegistryDatabase(this.options.file, (fn) => guardRegistryFile(this.options.file, fn))
  }

  async stop(): Promise<void> {
    const db = this.db
    this.db = null
    db?.close()
  }

  async load(): Promise<AnalyticsDefinitions> {
    return this.run((db) =>
      db.transaction(() => ({
        version: version(db),
        // Checked again on the way out: another tool may have written the file.
        aggregates: rows(db, 'analytics_aggregates').map((row) => checkAggregate(JSON.parse(row.definition))),
        alertRules: rows(db, 'analytics_alert_rules').map((row) => checkAlertRule(JSON.parse(row.definition))),
      }))(),
    )
  }

  async version(): Promise<number> {
    return this.run(version)
  }

  async putAggregate(aggregate: AggregateDefinition): Promise<{ created: boolean }> {
    const checked = checkAggregate(aggregate)
    return this.write((db) => ({ created: upsert(db, 'analytics_aggregates', checked.name, checked) }))
  }

  async removeAggregate(name: string): Promise<void> {
    this.write((db) => {
      const user = rows(db, 'analytics_alert_rules').find((row) => ruleAggregate(JSON.parse(row.definition) as AlertRuleDefinition) === name)
      if (user) throw aggregateInUse(name, user.name)
      if (prepared(db, 'DELETE FROM analytics_aggregates WHERE name = ?').run(name).changes === 0) throw aggregateNotFound(name)
      prepared(db, 'DELETE FROM analytics_checkpoints WHERE processor = ?').run(`aggregate:${name}`)
    })
  }

  async putAlertRule(rule: AlertRuleDefinition): Promise<{ created: boolean }> {
    const checked = checkAlertRule(rule)
    return this.write((db) => {
      const aggregate = ruleAggregate(checked)
      if (aggregate !== undefined && !prepared(db, 'SELECT 1 FROM analytics_aggregates WHERE name = ?').get(aggregate)) throw aggregateNotFound(aggregate, checked.name)
      return { created: upsert(db, 'analytics_alert_rules', checked.name, checked) }
    })
  }

  async removeAlertRule(name: string): Promise<void> {
    this.write((db) => {
      if (prepared(db, 'DELETE FROM analytics_alert_rules WHERE name = ?').run(name).changes === 0) {
        throw alertRuleNotFound(name)
      }
      prepared(db, 'DELETE FROM analytics_checkpoints WHERE processor = ?').run(`alert:${name}`)
    })
  }

  async loadCheckpoint(processor: string, partition: number): Promise<Checkpoint | null> {
    return this.run((db) => {
      const row = prepared<unknown[], CheckpointRow>(db, 'SELECT * FROM analytics_checkpoints WHERE processor = ? AND partition = ?').get(processor, partition)
      return row ? toCheckpoint(row) : null
    })
  }

  async saveCheckpoint(processor: string, partition: number, cp: Checkpoint): Promise<void> {
    this.run((db) =>
      prepared(
        db,
        `INSERT INTO analytics_checkpoints (processor, partition, next_offset, fingerprint, state, pending, marks, updated_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?)
         ON CONFLICT (processor, partition) DO UPDATE SET next_offset = excluded.next_offset, fingerprint = excluded.fingerprint, state = excluded.state,
           pending = excluded.pending, marks = excluded.marks, updated_at = excluded.updated_at`,
      ).run(processor, partition, cp.offset, cp.fingerprint, JSON.stringify(cp.state ?? null), JSON.stringify(cp.pending), JSON.stringify(cp.marks), Date.now()),
    )
  }

  async clearPending(processor: string, partition: number): Promise<void> {
    this.run((db) => prepared(db, `UPDATE analytics_checkpoints SET pending = '[]', marks = '{}' WHERE processor = ? AND partition = ?`).run(processor, partition))
  }

  async checkpoints(processor: string): Promise<Array<{ partition: number; checkpoint: Checkpoint }>> {
    return this.run((db) =>
      prepared<unknown[], CheckpointRow>(db, 'SELECT * FROM analytics_checkpoints WHERE processor = ? ORDER BY partition')
        .all(processor)
        .map((row) => ({ partition: row.partition, checkpoint: toCheckpoint(row) })),
    )
  }

  private run<T>(fn: (db: Database) => T): T {
    const db = this.db
    if (!db) throw new GatewayError('E_REGISTRY_UNAVAILABLE', 'the analytics store is not started')
    return guardRegistryFile(this.options.file, () => fn(db))
  }

  private write<T>(fn: (db: Database) => T): T {
    return this.run((db) =>
      db
        .transaction(() => {
          const result = fn(db)
          prepared(db, 'UPDATE analytics_changes SET counter = counter + 1 WHERE id = 1').run()
          return result
        })
        .immediate(),
    )
  }
}

function toCheckpoint(row: CheckpointRow): Checkpoint {
  return { offset: row.next_offset, fingerprint: row.fingerprint, state: JSON.parse(row.state), pending: JSON.parse(row.pending), marks: JSON.parse(row.marks) }
}

function rows(db: Database, table: Table): DefinitionRow[] {
  return prepared<[], DefinitionRow>(db, `SELECT name, definition FROM ${table} ORDER BY name`).all()
}

function version(db: Database): number {
  return prepared<[], { counter: number }>(db, 'SELECT counter FROM analytics_changes WHERE id = 1').get()?.counter ?? 0
}

function upsert(db: Database, table: Table, name: string, definition: object): boolean {
  const existed = prepared(db, `SELECT 1 FROM ${table} WHERE name = ?`).get(name) !== undefined
  prepared(db, `INSERT INTO ${table} (name, definition, updated_at) VALUES (?, ?, ?)
                ON CONFLICT (name) DO UPDATE SET definition = excluded.definition, updated_at = excluded.updated_at`).run(name, JSON.stringify(definition), new Date().toISOString())
  return !existed
}
