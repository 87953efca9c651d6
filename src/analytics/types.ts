/**
 * The analytics ports: what a stateful processor is (aggregate-processor.ts, alert-processor.ts),
 * and the store that keeps definitions and checkpoints in the registry's database
 * (src/registry/sqlite-analytics-store.ts and postgres-analytics-store.ts implement it; one
 * contract suite, test/contract/analytics-store.contract.ts, runs against both).
 */

import type { OutgoingRecord, StoredRecord } from '../stream/types.js'
import type { AggregateDefinition, AlertRuleDefinition } from './definitions.js'

export type { AggregateDefinition, AlertRuleDefinition } from './definitions.js'

/** One record a processor writes. `id` is unique within the processor: it finds an output again after a crash. */
export interface ProcessorOutput {
  id: string
  record: OutgoingRecord
  /** Event time the output is for (window end, alert time): emit delay = emit time - this. */
  eventTime: number
}

/**
 * Folds the records of one partition of its source topic into state and says what to write. It
 * is rebuilt from its checkpointed snapshot after a restart, so everything it holds is in
 * snapshot() and nothing is read from elsewhere.
 */
export interface Processor {
  /** Records of the partition in offset order; returns outputs due now. */
  process(records: StoredRecord[], now: number): ProcessorOutput[]
  /** Time passing. `caughtUp`: the partition was read to its end by the last read. */
  tick(now: number, caughtUp: boolean): ProcessorOutput[]
  /** JSON-able; a processor made from it continues exactly where this one is. */
  snapshot(): unknown
}

/** A checkpoint: the state after every record below `offset`, and outputs not yet known to be written. */
export interface Checkpoint {
  /** Next source offset to read. */
  offset: number
  /** Identifies the definition the state belongs to; state of another definition is not used. */
  fingerprint: string
  state: unknown
  /** Outputs decided before this checkpoint and written after it (recovered by reading the output back). */
  pending: PendingOutput[]
  /** Output topic's high watermark per partition when the checkpoint was taken: where the read-back starts. */
  marks: Record<string, number>
}

export interface PendingOutput {
  id: string
  key: string | null
  /** base64 */
  value: string
  headers: Record<string, string>
  timestamp: number
  eventTime: number
}

export interface AnalyticsDefinitions {
  /** Grows with every change, from this process or another (the service polls it). */
  version: number
  aggregates: AggregateDefinition[]
  alertRules: AlertRuleDefinition[]
}

export interface AnalyticsStore {
  start(): Promise<void>
  stop(): Promise<void>
  load(): Promise<AnalyticsDefinitions>
  version(): Promise<number>
  putAggregate(aggregate: AggregateDefinition): Promise<{ created: boolean }>
  /** E_AGGREGATE_NOT_FOUND; E_AGGREGATE_IN_USE while an alert rule reads it. Its checkpoints go with it. */
  removeAggregate(name: string): Promise<void>
  /** E_AGGREGATE_NOT_FOUND when the rule reads an aggregate that does not exist. */
  putAlertRule(rule: AlertRuleDefinition): Promise<{ created: boolean }>
  /** E_ALERT_RULE_NOT_FOUND. Its checkpoints (and so its open alerts) go with it. */
  removeAlertRule(name: string): Promise<void>
  loadCheckpoint(processor: string, partition: number): Promise<Checkpoint | null>
  saveCheckpoint(processor: string, partition: number, checkpoint: Checkpoint): Promise<void>
  /** The pending outputs are in the output topic: forget them (and the marks). */
  clearPending(processor: string, partition: number): Promise<void>
  /** Every partition's checkpoint of a processor (for the open alerts when no gateway runs). */
  checkpoints(processor: string): Promise<Array<{ partition: number; checkpoint: Checkpoint }>>
}
