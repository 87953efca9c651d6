#!/usr/bin/env node
import { readFileSync, writeFileSync } from 'node:fs'
import { SimError } from './errors.js'
import { findLocalGateway } from './local-gateway.js'
import { parseCli, USAGE } from './options.js'
import { renderHtml } from './report/html.js'
import { progressLine, summaryTable } from './report/summary.js'
import { runSimulation } from './simulate.js'
import { serveAsWorker } from './workers.js'

/**
 * streamgate-sim: parse flags or a scenario, run, print the summary, write --json / --html.
 * Exit code 0 when the run completed (whatever it measured), 2 on usage or setup errors.
 */
async function main(): Promise<number> {
  const parsed = parseCli(process.argv.slice(2), (file) => readFileSync(file, 'utf8'), findLocalGateway())
  if (parsed.mode === 'help') {
    process.stdout.write(USAGE)
    return 0
  }
  if (parsed.mode === 'worker') {
    serveAsWorker()
    return -1
  }
  const { scenario, json, html, quiet, notes } = parsed.options
  const log = (line: string): void => void (quiet || process.stderr.write(`${line}\n`))
  for (const note of notes) log(note)
  const live = process.stdout.isTTY && !quiet
  const t0 = Date.now()
  let previousSent = 0
  // First Ctrl-C ends the run early with a report; a second one exits at once.
  const stop = new AbortController()
  process.once('SIGINT', () => {
    log('\nstopping early (Ctrl-C again to exit now)')
    stop.abort()
    process.once('SIGINT', () => process.exit(130))
  })
  const report = await runSimulation(scenario, {
    log,
    stop: stop.signal,
    onProgress: (p) => {
      if (!live) return
      process.stdout.write(`\r${progressLine((Date.now() - t0) / 1000, p, previousSent)}\x1b[K`)
      previousSent = p.sent
    },
  })
  if (live) process.stdout.write('\n')
  if (!quiet) process.stdout.write(summaryTable(report))
  if (json) writeFileSync(json, JSON.stringify(report, null, 2))
  if (html) writeFileSync(html, renderHtml(report))
  return 0
}

main().then(
  (code) => {
    // A worker stays alive on its IPC channel until the parent disconnects it.
    if (code >= 0) process.exit(code)
  },
  (err: unknown) => {
    const code = err instanceof SimError ? err.code : 'E_SIM_UNEXPECTED'
    process.stderr.write(`streamgate-sim: ${code}: ${(err as Error).message}\n`)
    process.exit(2)
  },
)
