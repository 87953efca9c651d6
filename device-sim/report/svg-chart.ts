/**
 * A small line chart as inline SVG (no scripts, no external assets), so the HTML report is one
 * self-contained file that opens anywhere.
 */

export interface Series {
  name: string
  color: string
  points: Array<[number, number]>
  dashed?: boolean
}

const W = 860
const H = 260
const PAD = { left: 64, right: 16, top: 16, bottom: 36 }

function esc(text: string): string {
  return text.replace(/[&<>"]/g, (c) => ({ '&': '&amp;', '<': '&lt;', '>': '&gt;', '"': '&quot;' })[c]!)
}

/** 1, 2 or 5 times a power of ten, so axis labels are round numbers. */
function niceStep(range: number, ticks: number): number {
  const raw = range / ticks
  const power = 10 ** Math.floor(Math.log10(raw || 1))
  const unit = [1, 2, 5, 10].find((m) => m * power >= raw) ?? 10
  return unit * power
}

function label(v: number): string {
  if (Math.abs(v) >= 10_000) return `${(v / 1000).toLocaleString('en-US', { maximumFractionDigits: 0 })}k`
  return v.toLocaleString('en-US', { maximumFractionDigits: 2 })
}

/** A scenario event drawn on the time axis: a line at `from`, or a band from `from` to `to`. */
export interface Marker {
  label: string
  from: number
  to?: number
}

export function lineChart(title: string, unit: string, series: readonly Series[], markers: readonly Marker[] = []): string {
  const all = series.flatMap((s) => s.points)
  const maxX = Math.max(1, ...all.map(([x]) => x))
  const yStep = niceStep(Math.max(...all.map(([, y]) => y), 0) || 1, 5)
  const maxY = Math.max(yStep, Math.ceil(Math.max(...all.map(([, y]) => y), 0) / yStep) * yStep)
  const sx = (x: number): number => PAD.left + (x / maxX) * (W - PAD.left - PAD.right)
  const sy = (y: number): number => H - PAD.bottom - (y / maxY) * (H - PAD.top - PAD.bottom)
  const grid: string[] = []
  for (let y = 0; y <= maxY + 1e-9; y += yStep) {
    grid.push(`<line x1="${PAD.left}" x2="${W - PAD.right}" y1="${sy(y)}" y2="${sy(y)}" stroke="#e5e7eb"/>`)
    grid.push(`<text x="${PAD.left - 8}" y="${sy(y) + 4}" text-anchor="end">${label(y)}</text>`)
  }
  const xStep = niceStep(maxX, 8)
  for (let x = 0; x <= maxX + 1e-9; x += xStep) {
    grid.push(`<text x="${sx(x)}" y="${H - PAD.bottom + 18}" text-anchor="middle">${label(x)} s</text>`)
  }
  const marks = markers.map((m) => {
    const x = sx(Math.min(m.from, maxX))
    const band = m.to === undefined ? '' : `<rect x="${x}" y="${PAD.top}" width="${Math.max(1, sx(Math.min(m.to, maxX)) - x)}" height="${H - PAD.top - PAD.bottom}" fill="#fde68a" opacity="0.35"/>`
    return `${band}<line x1="${x}" x2="${x}" y1="${PAD.top}" y2="${H - PAD.bottom}" stroke="#dc2626" stroke-dasharray="3 3"/><text x="${x + 4}" y="${PAD.top + 30}" fill="#b91c1c">${esc(m.label)}</text>`
  })
  const lines = series
    .filter((s) => s.points.length > 0)
    .map((s) => {
      const d = s.points.map(([x, y], i) => `${i === 0 ? 'M' : 'L'}${sx(x).toFixed(1)},${sy(y).toFixed(1)}`).join(' ')
      return `<path d="${d}" fill="none" stroke="${s.color}" stroke-width="2"${s.dashed ? ' stroke-dasharray="6 4"' : ''}/>`
    })
  const legend = series.map(
    (s, i) => `<g transform="translate(${PAD.left + 8 + i * 170},${PAD.top + 4})"><rect width="14" height="4" y="4" fill="${s.color}"/><text x="20" y="10">${esc(s.name)}</text></g>`,
  )
  return `<figure><figcaption>${esc(title)} <span class="unit">(${esc(unit)})</span></figcaption>
<svg viewBox="0 0 ${W} ${H}" role="img" aria-label="${esc(title)}" font-size="12" font-family="system-ui, sans-serif" fill="#374151">
${grid.join('\n')}
<line x1="${PAD.left}" x2="${PAD.left}" y1="${PAD.top}" y2="${H - PAD.bottom}" stroke="#9ca3af"/>
${marks.join('\n')}
${lines.join('\n')}
${legend.join('\n')}
</svg></figure>`
}
