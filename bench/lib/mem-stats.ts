import { readFileSync, writeFileSync } from 'node:fs'
import { dirname, join } from 'node:path'
import { fileURLToPath } from 'node:url'
import type { ChildProcess } from 'node:child_process'

/**
 * Memory figures from inside a benchmarked server (gateway or bare Aedes), the same way for both:
 * the child runs with `--expose-gc --import <this file>` and BENCH_MEMSTATS_FILE set; on SIGUSR2
 * it runs a full garbage collection and writes process.memoryUsage() to that file. RSS alone
 * counts garbage not yet collected and heap the collector keeps in reserve; after a full
 * collection the heap figure is what the connections hold.
 */

export interface MemStats {
  rss: number
  heapUsed: number
  heapTotal: number
  /** Memory outside the V8 heap that JS objects own (Buffers' contents among it). */
  external: number
  arrayBuffers: number
  at: number
}

const file = process.env.BENCH_MEMSTATS_FILE
if (file) {
  process.on('SIGUSR2', () => {
    const gc = (globalThis as { gc?: () => void }).gc
    gc?.()
    gc?.()
    writeFileSync(file, JSON.stringify({ ...process.memoryUsage(), at: Date.now() }))
  })
}

/** Node arguments and environment that turn this on in a child writing to `statsFile`. */
export function memStatsChild(statsFile: string): { nodeArgs: string[]; env: Record<string, string> } {
  return { nodeArgs: ['--expose-gc', '--import', join(dirname(fileURLToPath(import.meta.url)), 'mem-stats.js')], env: { BENCH_MEMSTATS_FILE: statsFile } }
}

/** Ask the child for its figures after a full collection; resolves once it has written them. */
export async function collectMemStats(child: ChildProcess, statsFile: string): Promise<MemStats> {
  const asked = Date.now()
  child.kill('SIGUSR2')
  for (let i = 0; i < 200; i++) {
    await new Promise((r) => setTimeout(r, 50))
    try {
      const stats = JSON.parse(readFileSync(statsFile, 'utf8')) as MemStats
      if (stats.at >= asked) return stats
    } catch {
      // Not written yet, or being written.
    }
  }
  throw new Error(`no memory figures from pid ${child.pid} within 10 s`)
}
