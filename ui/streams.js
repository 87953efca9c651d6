import { api } from './api.js'
import { h, fill, every, table } from './dom.js'

/** Streams: each topic's partitions and end offsets, and the consumer groups reading it with their lag (GET /api/streams). */
export function streams(root) {
  const list = h('div', { id: 'streams' })
  const line = h('p', { class: 'status' })
  fill(root, h('h1', {}, 'Streams'), line, list)
  return every(3000, line, async () => {
    const { data } = await api('GET', '/api/streams')
    fill(
      list,
      data.topics.map((t) =>
        h(
          'section',
          { class: 'card topic' },
          h('h2', {}, t.topic, h('span', { class: 'muted' }, ` · ${t.partitions.length} partitions · ${t.records.toLocaleString()} records held`)),
          table(['partition', 'low', 'end offset'], t.partitions.map((p) => [String(p.partition), String(p.low), String(p.high)])),
          h('h3', {}, 'consumer groups'),
          table(['group', 'lag', 'committed per partition'], t.groups.map((g) => [g.group, g.lag.toLocaleString(), g.partitions.map((p) => `${p.partition}:${p.committed ?? '–'}`).join(' ')]), 'none'),
        ),
      ),
    )
  })
}
