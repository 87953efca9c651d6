import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest'
import { startTestGateway, type TestGateway } from '../helpers/gateway.js'
import { api, TOKEN } from '../helpers/commands.js'
import { FAST_ANALYTICS } from '../helpers/analytics.js'
import { OVERRIDES, UNAUTHORIZED, expectServing, fixture, rawApi, refused, type Fixture } from '../helpers/routing-hostile.js'

/**
 * The aggregates and alerts surface under attack: /api/aggregates, /api/alert-rules and
 * /api/alerts fed wrong tokens, hostile names, definitions past every bound (windows too small,
 * too many hops, functions, groupBy), filters built to overflow the parser, and bodies nested
 * 10,000 deep. Each refusal has its status and code, changes nothing (the analytics store's
 * change counter stands still) and leaves the gateway serving.
 */
async function snapshot(gw: TestGateway): Promise<{ version: number; definitions: unknown }> {
  const { aggregates, alertRules } = await gw.gateway.analyticsStore.load()
  return { version: await gw.gateway.analyticsStore.version(), definitions: { aggregates, alertRules } }
}

const AGG = { window: { sizeMs: 1000 }, functions: [{ fn: 'avg', path: '$body.temp' }] }

describe('hostile: the aggregates and alerts API', () => {
  let f: Fixture
  let baseline: { version: number; definitions: unknown }

  beforeAll(async () => {
    const gw = await startTestGateway({ ...OVERRIDES, ...FAST_ANALYTICS })
    f = await fixture(gw, 'an-canary')
    expect((await api(gw.httpUrl, 'PUT', '/api/aggregates/base', AGG)).status).toBe(201)
    expect((await api(gw.httpUrl, 'PUT', '/api/alert-rules/base', { source: { aggregate: 'base' }, condition: '$body.avg_temp > 80' })).status).toBe(201)
    baseline = await snapshot(gw)
  })

  afterAll(async () => {
    await f?.canary.endAsync(true).catch(() => undefined)
    await f?.gw.stop()
  })

  afterEach(async () => {
    const now = await snapshot(f.gw)
    const before = baseline
    baseline = now
    expect(now, 'no refused request changed a definition').toEqual(before)
    await expectServing(f)
  })

  it('answers 401 E_UNAUTHORIZED without the admin token on every route, and creates nothing', async () => {
    const calls: Array<[string, string, unknown?]> = [
      ['GET', '/api/aggregates'],
      ['GET', '/api/aggregates/base'],
      ['PUT', '/api/aggregates/intruder', AGG],
      ['DELETE', '/api/aggregates/base'],
      ['GET', '/api/alert-rules'],
      ['GET', '/api/alert-rules/base'],
      ['PUT', '/api/alert-rules/intruder', { condition: 'true' }],
      ['DELETE', '/api/alert-rules/base'],
      ['GET', '/api/alerts'],
    ]
    for (const [method, path, body] of calls) {
      for (const token of [null, '', 'wrong', TOKEN.slice(0, -1), `${TOKEN}x`]) {
        const res = await api(f.gw.httpUrl, method, path, body, { token })
        expect({ method, path, token, status: res.status, body: res.body }).toEqual({ method, path, token, status: 401, body: UNAUTHORIZED })
      }
    }
  })

  it('refuses hostile names in the path and in the body', async () => {
    for (const name of ['..', '.', 'a'.repeat(65), 'x y', 'a%2Fb', '%00']) {
      const res = await api(f.gw.httpUrl, 'PUT', `/api/aggregates/${name}`, AGG)
      expect(res.status, name).toBeGreaterThanOrEqual(400)
      expect(res.status, name).toBeLessThan(500)
    }
    refused(await api(f.gw.httpUrl, 'PUT', '/api/aggregates/one', { ...AGG, name: 'other' }), 400, 'E_BAD_REQUEST', 'the body names "other"')
    refused(await api(f.gw.httpUrl, 'PUT', '/api/alert-rules/one', ['not', 'an', 'object']), 400, 'E_BAD_REQUEST')
  })

  it('refuses definitions past every bound with a typed error', async () => {
    const put = (body: unknown) => api(f.gw.httpUrl, 'PUT', '/api/aggregates/bad', body)
    refused(await put({ ...AGG, window: { sizeMs: 10 } }), 400, 'E_BAD_REQUEST', 'sizeMs')
    refused(await put({ ...AGG, window: { sizeMs: 86_400_001 } }), 400, 'E_BAD_REQUEST', 'sizeMs')
    refused(await put({ ...AGG, window: { type: 'hopping', sizeMs: 86_400_000, hopMs: 100 } }), 400, 'E_BAD_REQUEST', 'hops')
    refused(await put({ ...AGG, window: { type: 'hopping', sizeMs: 1000, hopMs: 300 } }), 400, 'E_BAD_REQUEST', 'divide')
    refused(await put({ ...AGG, window: { type: 'hopping', sizeMs: 1000 } }), 400, 'E_BAD_REQUEST', 'hopMs')
    refused(await put({ ...AGG, functions: Array.from({ length: 33 }, (_, i) => ({ fn: 'sum', path: `$body.v${i}` })) }), 400, 'E_BAD_REQUEST', 'functions')
    refused(await put({ ...AGG, functions: [] }), 400, 'E_BAD_REQUEST', 'functions')
    refused(await put({ ...AGG, functions: [{ fn: 'median', path: '$body.v' }] }), 400, 'E_BAD_REQUEST', 'fn')
    refused(await put({ ...AGG, functions: [{ fn: 'avg', path: '$twin.tags.x' }] }), 400, 'E_BAD_REQUEST', '$body')
    refused(await put({ ...AGG, functions: [{ fn: 'avg', path: `$body${'.a'.repeat(17)}` }] }), 400, 'E_BAD_REQUEST', 'path')
    refused(await put({ ...AGG, functions: [{ fn: 'avg', path: '$body.t' }, { fn: 'avg', path: '$body.t' }] }), 400, 'E_BAD_REQUEST', 'twice')
    refused(await put({ ...AGG, functions: [{ fn: 'avg', path: '$body.t', as: 'windowStart' }] }), 400, 'E_BAD_REQUEST', 'reserved')
    refused(await put({ ...AGG, groupBy: Array.from({ length: 9 }, (_, i) => `p${i}`) }), 400, 'E_BAD_REQUEST', 'groupBy')
    refused(await put({ ...AGG, output: 'telemetry' }), 400, 'E_BAD_REQUEST', 'writes itself')
    refused(await put({ ...AGG, output: 'alerts' }), 400, 'E_BAD_REQUEST', 'writes itself')
    refused(await put({ ...AGG, unknownField: 1 }), 400, 'E_BAD_REQUEST')
    refused(await put({ ...AGG, filter: '('.repeat(100_000) }), 400, 'E_ROUTE_QUERY_INVALID')
    refused(await put({ ...AGG, filter: `${'NOT '.repeat(70)}true` }), 400, 'E_ROUTE_QUERY_INVALID')
    const rule = (body: unknown) => api(f.gw.httpUrl, 'PUT', '/api/alert-rules/bad', body)
    refused(await rule({ condition: '$body.t >' }), 400, 'E_ROUTE_QUERY_INVALID', 'column')
    refused(await rule({ condition: 'true', clearCondition: ')' }), 400, 'E_ROUTE_QUERY_INVALID')
    refused(await rule({ condition: 'true', forMs: -1 }), 400, 'E_BAD_REQUEST', 'forMs')
    refused(await rule({ condition: 'true', clearAfterMs: 1 }), 400, 'E_BAD_REQUEST', 'clearAfterMs')
    refused(await rule({ condition: 'true', source: { aggregate: 'missing' } }), 404, 'E_AGGREGATE_NOT_FOUND')
    refused(await rule({ condition: 'true', source: { topic: 'anything' } }), 400, 'E_BAD_REQUEST')
    refused(await api(f.gw.httpUrl, 'DELETE', '/api/aggregates/base'), 409, 'E_AGGREGATE_IN_USE')
    refused(await api(f.gw.httpUrl, 'DELETE', '/api/aggregates/nothing'), 404, 'E_AGGREGATE_NOT_FOUND')
    refused(await api(f.gw.httpUrl, 'DELETE', '/api/alert-rules/nothing'), 404, 'E_ALERT_RULE_NOT_FOUND')
  })

  it('refuses a body nested 10,000 deep or over the size limit without a stack overflow', async () => {
    const deep = `{"window":${'['.repeat(10_000)}${']'.repeat(10_000)}}`
    const res = await rawApi(f.gw, 'PUT', '/api/aggregates/deep', deep)
    expect(res.status).toBeGreaterThanOrEqual(400)
    expect(res.status).toBeLessThan(500)
    const huge = await rawApi(f.gw, 'PUT', '/api/aggregates/huge', JSON.stringify({ ...AGG, filter: 'x'.repeat(4 * 1024 * 1024) }))
    expect([400, 413]).toContain(huge.status)
  })
})
