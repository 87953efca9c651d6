import { describe, expect, it } from 'vitest'
import { buildReport } from '../../device-sim/report/build.js'
import { renderHtml } from '../../device-sim/report/html.js'
import { summaryTable } from '../../device-sim/report/summary.js'
import { parseScenario } from '../../device-sim/scenario.js'
import { Stats } from '../../device-sim/stats.js'

function sampleReport(): ReturnType<typeof buildReport> {
  const startedAt = Date.now() - 3000
  const stats = new Stats(startedAt)
  for (let i = 1; i <= 50; i++) {
    stats.count('sent')
    stats.count('sentQos1')
    stats.count('acked')
    stats.record('puback', 1000 + i * 10)
    stats.deviceSent('d1', i)
  }
  stats.count('disconnects')
  stats.error('CONNACK_5')
  const scenario = parseScenario(
    { gateway: 'mqtt://<script>alert(1)</script>:1883', duration: 3, groups: [{ count: 1, name: 'a & b' }], events: [{ type: 'reconnect-storm', at: 1, percent: 40 }] },
    'test',
  )
  return buildReport(scenario, stats.snapshot(), { stored: 49, duplicated: 0, lost: 1 }, { runId: 'run1', startedAt, elapsedS: 3 })
}

describe('simulator report output', () => {
  it('the HTML page is self-contained, escapes what it shows, and draws the charts with the events marked', () => {
    const html = renderHtml(sampleReport())
    expect(html).not.toMatch(/<script/i)
    expect(html).not.toMatch(/(src|href)=/)
    expect(html).toContain('&lt;script&gt;')
    expect(html).toContain('a &amp; b')
    expect(html.match(/<svg /g)).toHaveLength(3)
    expect(html).toContain('Throughput over time')
    expect(html).toContain('Latency over time')
    expect(html).toContain('storm: 40% dropped')
    expect(html).toMatch(/<path d="M[\d.]+,[\d.]+/)
    expect(html).toContain('CONNACK_5')
  })

  it('the summary table shows counts, loss basis, latency percentiles and errors', () => {
    const text = summaryTable(sampleReport())
    expect(text).toMatch(/sent 50 .*acked 50/)
    expect(text).toMatch(/stored 49 +duplicated 0 +lost 1 \(by stream\)/)
    expect(text).toMatch(/puback +50 +1\.\d\d/)
    expect(text).toMatch(/CONNACK_5 +1/)
  })
})
