import type { FastifyInstance } from 'fastify'
import { z } from 'zod'
import { GatewayError } from '../errors/catalogue.js'
import type { AggregateDefinition, AlertRuleDefinition } from '../analytics/definitions.js'
import type { AnalyticsService } from '../analytics/service.js'
import type { AnalyticsStore } from '../analytics/types.js'
import { parseWith } from './errors.js'
import { withName } from './routing.js'

/** Aggregates and alerts as the API uses them (handed in by the composition root). */
export interface AnalyticsApi {
  store: AnalyticsStore
  service: Pick<AnalyticsService, 'checkAggregate' | 'checkAlertRule' | 'reload' | 'aggregateStatus' | 'alertRuleStatus' | 'openAlerts'>
}

const nameParams = z.strictObject({ name: z.string().min(1).max(64) })

/**
 * /api/aggregates, /api/alert-rules and /api/alerts (the open alerts), behind the /api
 * bearer-token hook. A PUT or DELETE is in force when it answers: definitions are reloaded first.
 */
export function registerAnalyticsRoutes(api: FastifyInstance, analytics: AnalyticsApi): void {
  const { store, service } = analytics

  api.get('/aggregates', async () => {
    const { aggregates } = await store.load()
    return { aggregates: await Promise.all(aggregates.map(async (a) => ({ ...a, status: await service.aggregateStatus(a.name) }))) }
  })

  api.get('/aggregates/:name', async (request) => {
    const { name } = parseWith(nameParams, request.params, 'path')
    const aggregate = (await store.load()).aggregates.find((a) => a.name === name)
    if (!aggregate) throw aggregateNotFound(name)
    return { ...aggregate, status: await service.aggregateStatus(name) }
  })

  api.put('/aggregates/:name', async (request, reply) => {
    const { name } = parseWith(nameParams, request.params, 'path')
    const aggregate: AggregateDefinition = service.checkAggregate(withName(request.body, name))
    const { created } = await store.putAggregate(aggregate)
    await service.reload()
    return reply.code(created ? 201 : 200).send({ ...aggregate, status: await service.aggregateStatus(name) })
  })

  api.delete('/aggregates/:name', async (request, reply) => {
    const { name } = parseWith(nameParams, request.params, 'path')
    await store.removeAggregate(name)
    await service.reload()
    return reply.code(204).send()
  })

  api.get('/alert-rules', async () => {
    const { alertRules } = await store.load()
    return { alertRules: await Promise.all(alertRules.map(async (r) => ({ ...r, status: await service.alertRuleStatus(r.name) }))) }
  })

  api.get('/alert-rules/:name', async (request) => {
    const { name } = parseWith(nameParams, request.params, 'path')
    const rule = (await store.load()).alertRules.find((r) => r.name === name)
    if (!rule) throw new GatewayError('E_ALERT_RULE_NOT_FOUND', `alert rule "${name}" not found`, { rule: name })
    return { ...rule, status: await service.alertRuleStatus(name) }
  })

  api.put('/alert-rules/:name', async (request, reply) => {
    const { name } = parseWith(nameParams, request.params, 'path')
    const rule: AlertRuleDefinition = service.checkAlertRule(withName(request.body, name))
    const { created } = await store.putAlertRule(rule)
    await service.reload()
    return reply.code(created ? 201 : 200).send({ ...rule, status: await service.alertRuleStatus(name) })
  })

  api.delete('/alert-rules/:name', async (request, reply) => {
    const { name } = parseWith(nameParams, request.params, 'path')
    await store.removeAlertRule(name)
    await service.reload()
    return reply.code(204).send()
  })

  api.get('/alerts', async () => ({ alerts: await service.openAlerts() }))
}

function aggregateNotFound(name: string): GatewayError {
  return new GatewayError('E_AGGREGATE_NOT_FOUND', `aggregate "${name}" not found`, { aggregate: name })
}
