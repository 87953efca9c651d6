import { existsSync, readdirSync, readFileSync } from 'node:fs'
import { dirname, join, resolve } from 'node:path'
import { describe, expect, it } from 'vitest'
import { partitionForKey } from '../../src/stream/partitioner.js'

/**
 * The repository stands on its own: what the README, the docs and the code comments cite is in
 * the repository, and the README's examples show what the code does.
 */
const ROOT = resolve(import.meta.dirname, '../..')
const read = (path: string): string => readFileSync(join(ROOT, path), 'utf8')

function filesUnder(dir: string, ext: RegExp): string[] {
  return readdirSync(join(ROOT, dir), { recursive: true, withFileTypes: true })
    .filter((e) => e.isFile() && ext.test(e.name))
    .map((e) => join(e.parentPath, e.name).slice(ROOT.length + 1))
}

const MARKDOWN = ['README.md', ...filesUnder('docs', /\.md$/)]
const CODE = ['src', 'device-sim', 'bench', 'test', 'fuzz', 'scripts'].flatMap((d) => filesUnder(d, /\.(ts|mjs|js|sh|c)$/))

describe('the repository stands on its own', () => {
  it('every relative link in the README and docs/ points at a file that exists', () => {
    const broken: string[] = []
    for (const file of MARKDOWN) {
      for (const [, target] of read(file).matchAll(/\]\(([^)#\s]+)(?:#[^)]*)?\)/g)) {
        if (/^[a-z]+:/i.test(target!)) continue
        if (!existsSync(resolve(ROOT, dirname(file), target!))) broken.push(`${file}: ${target}`)
      }
    }
    expect(broken).toEqual([])
  })

  it('every docs/*.md that code, scripts or the README names exists', () => {
    const missing = new Set<string>()
    for (const file of [...CODE, ...MARKDOWN]) {
      for (const [path] of read(file).matchAll(/\bdocs\/[A-Za-z0-9_-]+\.md/g)) if (!existsSync(join(ROOT, path))) missing.add(`${file}: ${path}`)
    }
    expect([...missing]).toEqual([])
  })

  it('nothing cites a design map, style guide or protocol note outside the repository', () => {
    const outside = [...CODE, ...MARKDOWN].filter((file) => /\.\.\/shared\/|\bDESIGN\.md\b|\bSTYLE\.md\b/.test(read(file)) && !file.endsWith('docs-links.test.ts'))
    expect(outside).toEqual([])
  })

  it('the protocol sections cited as §N exist in docs/iothub-mqtt.md', () => {
    const headings = new Set([...read('docs/iothub-mqtt.md').matchAll(/^## (\d+)\. /gm)].map((m) => m[1]))
    const cited = new Set<string>()
    for (const file of CODE.filter((f) => !f.startsWith('test/'))) for (const [, n] of read(file).matchAll(/\(§(\d+)\)/g)) cited.add(n!)
    expect(cited.size).toBeGreaterThan(0)
    for (const n of cited) expect(headings.has(n), `§${n}`).toBe(true)
  })

  it("the README's stream records show the partition each key really lands on (8 partitions)", () => {
    const records = [...read('README.md').matchAll(/^\s*(\{"topic":.*\})\s*$/gm)].map((m) => JSON.parse(m[1]!) as { key: string; partition: number })
    expect(records.length).toBeGreaterThan(0)
    for (const r of records) expect(r.partition, `key ${r.key}`).toBe(partitionForKey(r.key, 8))
  })
})
