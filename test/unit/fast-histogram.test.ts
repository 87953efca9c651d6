import { describe, expect, it } from 'vitest'
import { Histogram, Registry } from 'prom-client'
import { FastHistogram } from '../../src/observability/fast-histogram.js'

describe('FastHistogram', () => {
  const buckets = [0.001, 0.01, 0.1, 1]
  const values = [0, 0.0005, 0.001, 0.0011, 0.05, 0.1, 0.5, 1, 3, 12, 0.01]

  it('scrapes exactly as a prom-client Histogram given the same observations', async () => {
    const fastRegistry = new Registry()
    const fast = new FastHistogram({ name: 'x_seconds', help: 'h', buckets }, fastRegistry)
    const promRegistry = new Registry()
    const prom = new Histogram({ name: 'x_seconds', help: 'h', buckets, registers: [promRegistry] })
    for (const v of values) {
      fast.observe(v)
      prom.observe(v)
    }
    const text = await fastRegistry.metrics()
    expect(text).toBe(await promRegistry.metrics())
    expect(text).toContain('x_seconds_bucket{le="0.001"} 3')
    expect(text).toContain('x_seconds_bucket{le="+Inf"} 11')
    expect(text).toContain('x_seconds_count 11')
  })

  it('counts a value equal to a bound in that bucket, and resets to zero', async () => {
    const registry = new Registry()
    const fast = new FastHistogram({ name: 'y_seconds', help: 'h', buckets: [1, 2] }, registry)
    fast.observe(1)
    fast.observe(2.5)
    const values = (await fast.get()).values.map((v) => [v.metricName, v.labels.le, v.value])
    expect(values).toEqual([
      ['y_seconds_bucket', 1, 1],
      ['y_seconds_bucket', 2, 1],
      ['y_seconds_bucket', '+Inf', 2],
      ['y_seconds_sum', undefined, 3.5],
      ['y_seconds_count', undefined, 2],
    ])
    registry.resetMetrics()
    expect((await fast.get()).values.every((v) => v.value === 0)).toBe(true)
  })
})
