import { readFileSync } from 'node:fs'
import { parseArgs } from 'node:util'

/**
 * bench/heap-diff: what N connections add to a V8 heap, by kind of object. Give it two heap
 * snapshots of the same process (idle, then holding N connections) and N; it prints bytes and
 * objects per connection for each constructor (closures, strings, arrays and code grouped by
 * type), largest first. Snapshots are written after a full GC, so only live objects count.
 *
 *   node --heapsnapshot-signal=SIGUSR2 dist/src/cli/main.js start   # then kill -USR2 <pid>, twice
 *   node dist/bench/heap-diff.js idle.heapsnapshot held.heapsnapshot --connections 5000 [--top 30]
 */
const { values, positionals } = parseArgs({
  allowPositionals: true,
  options: { connections: { type: 'string' }, top: { type: 'string', default: '30' } },
})
if (positionals.length !== 2 || !values.connections) {
  process.stderr.write('usage: node dist/bench/heap-diff.js IDLE.heapsnapshot HELD.heapsnapshot --connections N [--top K]\n')
  process.exit(2)
}
const connections = Number(values.connections)

interface Snapshot {
  snapshot: { meta: { node_fields: string[]; node_types: [string[], ...unknown[]] } }
  nodes: number[]
  strings: string[]
}

interface Tally {
  count: number
  bytes: number
}

/** Self size and count per object kind: constructor name for objects, the type for the rest. */
function tally(file: string): Map<string, Tally> {
  const s = JSON.parse(readFileSync(file, 'utf8')) as Snapshot
  const fields = s.snapshot.meta.node_fields
  const types = s.snapshot.meta.node_types[0]
  const [type, name, size] = ['type', 'name', 'self_size'].map((f) => fields.indexOf(f)) as [number, number, number]
  const kinds = new Map<string, Tally>()
  for (let i = 0; i < s.nodes.length; i += fields.length) {
    const t = types[s.nodes[i + type]!]!
    const n = s.strings[s.nodes[i + name]!]!
    const kind = t === 'object' || t === 'native' ? n.slice(0, 60) : t === 'closure' ? `closure ${n.slice(0, 50)}` : `(${t})`
    const k = kinds.get(kind) ?? { count: 0, bytes: 0 }
    k.count++
    k.bytes += s.nodes[i + size]!
    kinds.set(kind, k)
  }
  return kinds
}

const idle = tally(positionals[0]!)
const held = tally(positionals[1]!)
const rows = [...held].map(([kind, h]) => {
  const i = idle.get(kind) ?? { count: 0, bytes: 0 }
  return { kind, bytes: (h.bytes - i.bytes) / connections, count: (h.count - i.count) / connections }
})
const total = rows.reduce((sum, r) => sum + r.bytes, 0)
rows.sort((a, b) => b.bytes - a.bytes)
process.stdout.write(`live V8 heap per connection: ${total.toFixed(0)} bytes (${connections} connections)\n\n   bytes  objects  kind\n`)
for (const r of rows.slice(0, Number(values.top))) {
  process.stdout.write(`${r.bytes.toFixed(0).padStart(8)} ${r.count.toFixed(2).padStart(8)}  ${r.kind}\n`)
}
