import { afterEach, beforeEach, describe, expect, it } from 'vitest'
import { checkAggregate, checkAlertRule, type AggregateInput, type AlertRuleInput } from '../../src/analytics/definitions.js'
import type { AggregateDefinition, AlertRuleDefinition, AnalyticsStore, Checkpoint } from '../../src/analytics/types.js'
import type { ErrorCode } from '../../src/errors/catalogue.js'

/**
 * The one contract every AnalyticsStore backend passes unchanged (SQLite, PostgreSQL). The
 * factory returns an empty store, not necessarily started; `another()` opens a second store on
 * the same storage, as a second gateway or the CLI would (not started); `cleanup` stops both and
 * removes whatever was created.
 */
export type AnalyticsStoreFactory = () => Promise<{ store: AnalyticsStore; another(): Promise<AnalyticsStore>; cleanup(): Promise<void> }>

async function expectCode(promise: Promise<unknown>, code: ErrorCode, details?: Record<string, unknown>): Promise<void> {
  await expect(promise).rejects.toMatchObject({ name: 'GatewayError', code, ...(details ? { details } : {}) })
}

/** Inputs as the API hands them over: unchecked, defaults not filled (the store checks them). */
const aggregate = (input: Partial<AggregateInput> & { name: string }): AggregateDefinition =>
  ({ window: { sizeMs: 60_000 }, functions: [{ fn: 'avg', path: '$body.temp' }], ...input }) as AggregateDefinition
const telemetryRule = (input: Partial<AlertRuleInput> & { name: string }): AlertRuleDefinition => ({ condition: '$body.temp > 90', ...input }) as AlertRuleDefinition
const aggregateRule = (name: string, of: string): AlertRuleDefinition => ({ name, source: { aggregate: of }, condition: '$body.avg_temp > 80' }) as AlertRuleDefinition

const checkpoint = (over: Partial<Checkpoint> = {}): Checkpoint => ({
  // Past 2^32: offsets of a long-lived topic must come back as the same numbers.
  offset: 2 ** 40 + 3,
  fingerprint: 'fp-1',
  state: { windows: [{ start: 1_795_755_000_000, sum: 21.5, text: 'ünï\u0000code' }], open: null, nested: { a: [1, [2, [3]]] } },
  pending: [{ id: 'w:1795755000000:dev1', key: 'dev1', value: Buffer.from('{"avg":21.5}').toString('base64'), headers: { 'content-type': 'application/json' }, timestamp: 1_795_755_060_000, eventTime: 1_795_755_060_000 }],
  marks: { '0': 12, '3': 2 ** 35 },
  ...over,
})

export function analyticsStoreContract(name: string, factory: AnalyticsStoreFactory): void {
  describe(`AnalyticsStore contract: ${name}`, () => {
    let store: AnalyticsStore
    let another: () => Promise<AnalyticsStore>
    let cleanup: () => Promise<void>

    beforeEach(async () => {
      const made = await factory()
      store = made.store
      another = made.another
      cleanup = made.cleanup
      await store.start()
      await store.start()
    })

    afterEach(async () => {
      await cleanup()
    })

    it('starts empty, with a version that load() and version() agree on', async () => {
      const loaded = await store.load()
      expect(loaded).toMatchObject({ aggregates: [], alertRules: [] })
      expect(Number.isInteger(loaded.version) && loaded.version >= 0).toBe(true)
      expect(await store.version()).toBe(loaded.version)
    })

    describe('aggregates', () => {
      it('creates an aggregate, then replaces it; load returns it checked, defaults filled', async () => {
        expect(await store.putAggregate(aggregate({ name: 'avg-temp' }))).toEqual({ created: true })
        expect((await store.load()).aggregates).toEqual([checkAggregate(aggregate({ name: 'avg-temp' }))])
        const replacement = aggregate({ name: 'avg-temp', window: { type: 'hopping', sizeMs: 60_000, hopMs: 10_000 }, groupBy: ['room'], output: 'agg-out' })
        expect(await store.putAggregate(replacement)).toEqual({ created: false })
        const { aggregates } = await store.load()
        expect(aggregates).toEqual([checkAggregate(replacement)])
        expect(aggregates[0]).toMatchObject({ source: 'telemetry', filter: 'true', latePolicy: 'drop', enabled: true })
      })

      it.each([
        ['a bad name', { name: 'bad name' }, 'E_BAD_REQUEST'],
        ['no functions', { name: 'a', functions: [] }, 'E_BAD_REQUEST'],
        ['a window below 100 ms', { name: 'a', window: { sizeMs: 5 } }, 'E_BAD_REQUEST'],
        ['one output field twice', { name: 'a', functions: [{ fn: 'avg', path: '$body.t' }, { fn: 'avg', path: '$body.t' }] }, 'E_BAD_REQUEST'],
        ['a filter that does not parse', { name: 'a', filter: 'temp >' }, 'E_ROUTE_QUERY_INVALID'],
      ] as const)('refuses an aggregate with %s (%s) and changes nothing', async (_label, input, code) => {
        const before = await store.version()
        await expectCode(store.putAggregate(aggregate(input as unknown as { name: string })), code)
        expect(await store.load()).toEqual({ version: before, aggregates: [], alertRules: [] })
      })

      it('removes an aggregate; an unknown one is E_AGGREGATE_NOT_FOUND', async () => {
        await store.putAggregate(aggregate({ name: 'gone' }))
        await store.putAggregate(aggregate({ name: 'stays' }))
        await store.removeAggregate('gone')
        expect((await store.load()).aggregates.map((a) => a.name)).toEqual(['stays'])
        await expectCode(store.removeAggregate('gone'), 'E_AGGREGATE_NOT_FOUND', { aggregate: 'gone' })
      })
    })

    describe('alert rules', () => {
      it('creates and replaces a rule over telemetry; load returns it checked', async () => {
        expect(await store.putAlertRule(telemetryRule({ name: 'hot' }))).toEqual({ created: true })
        expect((await store.load()).alertRules).toEqual([checkAlertRule(telemetryRule({ name: 'hot' }))])
        const replacement = telemetryRule({ name: 'hot', condition: '$body.temp > 95', clearCondition: '$body.temp < 80', forMs: 5000, severity: 'critical', value: '$body.temp' })
        expect(await store.putAlertRule(replacement)).toEqual({ created: false })
        expect((await store.load()).alertRules).toEqual([checkAlertRule(replacement)])
      })

      it('takes a rule over an aggregate only while the aggregate exists (E_AGGREGATE_NOT_FOUND)', async () => {
        const before = await store.version()
        await expectCode(store.putAlertRule(aggregateRule('slow', 'avg-temp')), 'E_AGGREGATE_NOT_FOUND', { aggregate: 'avg-temp', rule: 'slow' })
        expect((await store.load()).alertRules).toEqual([])
        expect(await store.version()).toBe(before)
        await store.putAggregate(aggregate({ name: 'avg-temp' }))
        expect(await store.putAlertRule(aggregateRule('slow', 'avg-temp'))).toEqual({ created: true })
        expect((await store.load()).alertRules).toEqual([checkAlertRule(aggregateRule('slow', 'avg-temp'))])
        // A refused replacement leaves the rule as it was.
        await expectCode(store.putAlertRule(aggregateRule('slow', 'missing')), 'E_AGGREGATE_NOT_FOUND')
        expect((await store.load()).alertRules).toEqual([checkAlertRule(aggregateRule('slow', 'avg-temp'))])
      })

      it('refuses a malformed rule with E_BAD_REQUEST and a bad condition with E_ROUTE_QUERY_INVALID', async () => {
        await expectCode(store.putAlertRule(telemetryRule({ name: 'r', condition: '' })), 'E_BAD_REQUEST')
        await expectCode(store.putAlertRule(telemetryRule({ name: 'r', severity: 'fatal' as 'info' })), 'E_BAD_REQUEST')
        await expectCode(store.putAlertRule(telemetryRule({ name: 'r', condition: '$body.temp >' })), 'E_ROUTE_QUERY_INVALID')
        await expectCode(store.putAlertRule(telemetryRule({ name: 'r', clearCondition: '((' })), 'E_ROUTE_QUERY_INVALID')
        expect((await store.load()).alertRules).toEqual([])
      })

      it('removes a rule; an unknown one is E_ALERT_RULE_NOT_FOUND', async () => {
        await store.putAlertRule(telemetryRule({ name: 'r1' }))
        await store.putAlertRule(telemetryRule({ name: 'r2' }))
        await store.removeAlertRule('r1')
        expect((await store.load()).alertRules.map((r) => r.name)).toEqual(['r2'])
        await expectCode(store.removeAlertRule('r1'), 'E_ALERT_RULE_NOT_FOUND', { rule: 'r1' })
      })
    })

    describe('aggregates in use', () => {
      it('refuses to remove an aggregate a rule reads, enabled or not (E_AGGREGATE_IN_USE), until no rule does', async () => {
        await store.putAggregate(aggregate({ name: 'avg' }))
        await store.putAlertRule({ ...aggregateRule('reader', 'avg'), enabled: false })
        await store.saveCheckpoint('aggregate:avg', 0, checkpoint())
        const before = await store.version()
        await expectCode(store.removeAggregate('avg'), 'E_AGGREGATE_IN_USE', { aggregate: 'avg', rule: 'reader' })
        expect((await store.load()).aggregates.map((a) => a.name)).toEqual(['avg'])
        expect(await store.version()).toBe(before)
        // A refused removal keeps the aggregate's checkpoints too.
        expect(await store.loadCheckpoint('aggregate:avg', 0)).toEqual(checkpoint())
        // Replacing the rule so it reads telemetry frees the aggregate.
        await store.putAlertRule(telemetryRule({ name: 'reader' }))
        await store.removeAggregate('avg')
        expect(await store.load()).toMatchObject({ aggregates: [], alertRules: [checkAlertRule(telemetryRule({ name: 'reader' }))] })
      })

      it('never lets a rule read a missing aggregate when a write and a removal race from two stores', async () => {
        const other = await another()
        await other.start()
        for (let i = 0; i < 12; i++) {
          await store.putAggregate(aggregate({ name: `a${i}` }))
          const [put, removed] = await Promise.allSettled([store.putAlertRule(aggregateRule(`r${i}`, `a${i}`)), other.removeAggregate(`a${i}`)])
          expect([put.status, removed.status].sort()).toEqual(['fulfilled', 'rejected'])
          const loser = (put.status === 'rejected' ? put.reason : (removed as PromiseRejectedResult).reason) as { code?: string }
          expect(loser.code).toBe(put.status === 'rejected' ? 'E_AGGREGATE_NOT_FOUND' : 'E_AGGREGATE_IN_USE')
        }
        const { aggregates, alertRules } = await store.load()
        const names = new Set(aggregates.map((a) => a.name))
        for (const rule of alertRules) if ('aggregate' in rule.source) expect(names.has(rule.source.aggregate)).toBe(true)
      })
    })

    describe('checkpoints', () => {
      it('answers null for a checkpoint never saved, then returns what was saved, numbers and strings exact', async () => {
        expect(await store.loadCheckpoint('aggregate:a', 0)).toBeNull()
        await store.saveCheckpoint('aggregate:a', 0, checkpoint())
        expect(await store.loadCheckpoint('aggregate:a', 0)).toEqual(checkpoint())
        expect(await store.loadCheckpoint('aggregate:a', 1)).toBeNull()
        expect(await store.loadCheckpoint('aggregate:b', 0)).toBeNull()
      })

      it('replaces a checkpoint whole; a state of undefined comes back as null', async () => {
        await store.saveCheckpoint('alert:r', 2, checkpoint())
        const next = checkpoint({ offset: 7, fingerprint: 'fp-2', state: undefined, pending: [], marks: {} })
        await store.saveCheckpoint('alert:r', 2, next)
        expect(await store.loadCheckpoint('alert:r', 2)).toEqual({ ...next, state: null })
        await store.saveCheckpoint('alert:r', 2, checkpoint({ offset: 0, state: 'just a string' }))
        expect(await store.loadCheckpoint('alert:r', 2)).toEqual(checkpoint({ offset: 0, state: 'just a string' }))
      })

      it('clearPending forgets the pending outputs and the marks and keeps the rest; without a checkpoint it does nothing', async () => {
        await store.saveCheckpoint('aggregate:a', 0, checkpoint())
        await store.saveCheckpoint('aggregate:a', 1, checkpoint())
        await store.clearPending('aggregate:a', 0)
        expect(await store.loadCheckpoint('aggregate:a', 0)).toEqual(checkpoint({ pending: [], marks: {} }))
        expect(await store.loadCheckpoint('aggregate:a', 1)).toEqual(checkpoint())
        await store.clearPending('aggregate:a', 9)
        expect(await store.loadCheckpoint('aggregate:a', 9)).toBeNull()
      })

      it("lists one processor's checkpoints by partition, numerically", async () => {
        for (const p of [10, 2, 0]) await store.saveCheckpoint('aggregate:a', p, checkpoint({ offset: p }))
        await store.saveCheckpoint('aggregate:b', 1, checkpoint())
        expect(await store.checkpoints('aggregate:a')).toEqual([0, 2, 10].map((p) => ({ partition: p, checkpoint: checkpoint({ offset: p }) })))
        expect((await store.checkpoints('aggregate:b')).map((c) => c.partition)).toEqual([1])
        expect(await store.checkpoints('aggregate:none')).toEqual([])
      })

      it("removing a definition removes its processor's checkpoints and no other's", async () => {
        await store.putAggregate(aggregate({ name: 'x' }))
        await store.putAggregate(aggregate({ name: 'y' }))
        await store.putAlertRule(telemetryRule({ name: 'x' }))
        for (const processor of ['aggregate:x', 'aggregate:y', 'alert:x', 'alert:y']) {
          for (const p of [0, 1]) await store.saveCheckpoint(processor, p, checkpoint({ offset: p }))
        }
        await store.removeAggregate('x')
        expect(await store.checkpoints('aggregate:x')).toEqual([])
        expect(await store.checkpoints('aggregate:y')).toHaveLength(2)
        expect(await store.checkpoints('alert:x')).toHaveLength(2)
        await store.removeAlertRule('x')
        expect(await store.checkpoints('alert:x')).toEqual([])
        // alert:y has no rule: nothing removed it.
        expect(await store.checkpoints('alert:y')).toHaveLength(2)
        expect(await store.checkpoints('aggregate:y')).toHaveLength(2)
      })

      it('answers a processor name that cannot exist (a NUL) as absent', async () => {
        expect(await store.loadCheckpoint('aggregate:\u0000', 0)).toBeNull()
        expect(await store.checkpoints('aggregate:\u0000')).toEqual([])
        await expect(store.clearPending('aggregate:\u0000', 0)).resolves.toBeUndefined()
      })
    })

    it('lists aggregates and rules by name in byte order', async () => {
      const names = ['b', 'B', 'a_1', 'a-1', 'a.1', 'A', '0', 'Z9']
      for (const n of names) await store.putAggregate(aggregate({ name: n }))
      for (const n of names) await store.putAlertRule(aggregateRule(n, n))
      const sorted = ['0', 'A', 'B', 'Z9', 'a-1', 'a.1', 'a_1', 'b']
      const { aggregates, alertRules } = await store.load()
      expect(aggregates.map((a) => a.name)).toEqual(sorted)
      expect(alertRules.map((r) => r.name)).toEqual(sorted)
    })

    it('counts every definition change: the version grows with each, never with a refused one or a checkpoint', async () => {
      const seen = [await store.version()]
      const grew = async (): Promise<void> => {
        const v = await store.version()
        expect(v).toBeGreaterThan(seen.at(-1)!)
        expect((await store.load()).version).toBe(v)
        seen.push(v)
      }
      const same = async (): Promise<void> => expect(await store.version()).toBe(seen.at(-1))
      await store.putAggregate(aggregate({ name: 'a' }))
      await grew()
      await store.putAggregate(aggregate({ name: 'a', output: 'other' }))
      await grew()
      await store.putAlertRule(aggregateRule('r', 'a'))
      await grew()
      await store.putAlertRule(aggregateRule('x', 'missing')).catch(() => undefined)
      await store.removeAggregate('a').catch(() => undefined)
      await store.removeAggregate('missing').catch(() => undefined)
      await store.removeAlertRule('missing').catch(() => undefined)
      await store.putAggregate(aggregate({ name: 'bad name' })).catch(() => undefined)
      await same()
      // Checkpoints are the processors' progress, not definitions: the service must not reload for them.
      await store.saveCheckpoint('aggregate:a', 0, checkpoint())
      await store.clearPending('aggregate:a', 0)
      await same()
      await store.removeAlertRule('r')
      await grew()
      await store.removeAggregate('a')
      await grew()
    })

    it('shows another store on the same storage every change at once (nothing cached)', async () => {
      const other = await another()
      await other.start()
      await store.putAggregate(aggregate({ name: 'a' }))
      expect((await other.load()).aggregates.map((a) => a.name)).toEqual(['a'])
      expect(await other.version()).toBe(await store.version())
      expect(await other.putAlertRule(aggregateRule('r', 'a'))).toEqual({ created: true })
      await expectCode(store.removeAggregate('a'), 'E_AGGREGATE_IN_USE')
      await store.saveCheckpoint('alert:r', 0, checkpoint())
      expect(await other.loadCheckpoint('alert:r', 0)).toEqual(checkpoint())
      await other.clearPending('alert:r', 0)
      expect(await store.loadCheckpoint('alert:r', 0)).toEqual(checkpoint({ pending: [], marks: {} }))
      await other.removeAlertRule('r')
      expect(await store.checkpoints('alert:r')).toEqual([])
    })

    it('answers a definition name that cannot exist (a NUL, empty, too long) with not found', async () => {
      await expectCode(store.removeAggregate('bad\u0000name'), 'E_AGGREGATE_NOT_FOUND')
      await expectCode(store.removeAggregate(''), 'E_AGGREGATE_NOT_FOUND')
      await expectCode(store.removeAlertRule('\u0000'), 'E_ALERT_RULE_NOT_FOUND')
      await expectCode(store.removeAlertRule('x'.repeat(10_000)), 'E_ALERT_RULE_NOT_FOUND')
    })

    it('answers E_REGISTRY_UNAVAILABLE before start and after stop; stop is safe twice', async () => {
      const other = await another()
      await expectCode(other.load(), 'E_REGISTRY_UNAVAILABLE')
      await expectCode(other.version(), 'E_REGISTRY_UNAVAILABLE')
      await expectCode(other.loadCheckpoint('aggregate:a', 0), 'E_REGISTRY_UNAVAILABLE')
      await expectCode(other.saveCheckpoint('aggregate:a', 0, checkpoint()), 'E_REGISTRY_UNAVAILABLE')
      await other.start()
      await other.putAggregate(aggregate({ name: 'a' }))
      await other.stop()
      await other.stop()
      await expectCode(other.removeAggregate('a'), 'E_REGISTRY_UNAVAILABLE')
      await expectCode(other.checkpoints('aggregate:a'), 'E_REGISTRY_UNAVAILABLE')
      expect((await store.load()).aggregates.map((a) => a.name)).toEqual(['a'])
      await store.stop()
      await store.stop()
    })
  })
}
