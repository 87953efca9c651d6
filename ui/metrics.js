/**
 * Prometheus text from GET /metrics, read into samples, and the figures the overview shows:
 * rates between two scrapes and percentiles of a histogram's increase between them.
 */
export function parseMetrics(text) {
  const samples = new Map()
  for (const line of text.split('\n')) {
    if (line === '' || line.startsWith('#')) continue
    const space = line.lastIndexOf(' ')
    samples.set(line.slice(0, space), Number(line.slice(space + 1)))
  }
  return samples
}

/** `name{a="x",code="E_X"}` -> { a: 'x', code: 'E_X' } */
export function labelsOf(key) {
  const open = key.indexOf('{')
  if (open < 0) return {}
  const labels = {}
  for (const m of key.slice(open + 1, -1).matchAll(/([a-zA-Z_]+)="((?:[^"\\]|\\.)*)"/g)) labels[m[1]] = m[2]
  return labels
}

/** Sum of every series of a metric, optionally only those whose labels pass `keep`. */
export function total(samples, name, keep = () => true) {
  let sum = 0
  for (const [key, value] of samples) {
    const bare = key.split('{')[0]
    if (bare === name && keep(labelsOf(key))) sum += value
  }
  return sum
}

/** Totals of a metric by one label: [[labelValue, n], ...], largest first. */
export function byLabel(samples, name, label, keep = () => true) {
  const out = new Map()
  for (const [key, value] of samples) {
    if (key.split('{')[0] !== name) continue
    const labels = labelsOf(key)
    if (!keep(labels)) continue
    out.set(labels[label] ?? '', (out.get(labels[label] ?? '') ?? 0) + value)
  }
  return [...out].filter(([, n]) => n > 0).sort((a, b) => b[1] - a[1])
}

/** The q-quantile (0..1), in seconds, of what a histogram observed between two scrapes; null when nothing was. */
export function quantile(before, after, name, q) {
  const buckets = []
  for (const [key, value] of after) {
    if (key.split('{')[0] !== `${name}_bucket`) continue
    const le = labelsOf(key).le
    buckets.push([le === '+Inf' ? Infinity : Number(le), value - (before?.get(key) ?? 0)])
  }
  buckets.sort((a, b) => a[0] - b[0])
  const count = buckets.length ? buckets[buckets.length - 1][1] : 0
  if (count <= 0) return null
  const rank = q * count
  let previousLe = 0
  let previousCount = 0
  for (const [le, cumulative] of buckets) {
    if (cumulative >= rank) {
      if (le === Infinity) return previousLe
      // Linear inside the bucket, as Prometheus' histogram_quantile does.
      const inBucket = cumulative - previousCount
      return inBucket > 0 ? previousLe + ((le - previousLe) * (rank - previousCount)) / inBucket : le
    }
    previousLe = le
    previousCount = cumulative
  }
  return previousLe
}
