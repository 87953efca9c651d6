import { randomInt } from 'node:crypto'
import { parseArgs } from 'node:util'
import { describeCase, formatFailures, formatReport } from './report.js'
import { runFuzz } from './run.js'
import { defaultLimits, registerFuzzDevices, startGatewayProcess } from './target.js'

/**
 * `npm run fuzz`: fuzz a gateway process of its own with MQTT packets (docs/fuzzing.md).
 *
 *   npm run fuzz -- --packets 1000000 [--seed S] [--concurrency 24]   a long run
 *   npm run fuzz -- --seed S --case 1234                               replay one case, in detail
 *   npm run fuzz -- --seed S --cases 10-40,77                          replay cases one at a time, checking after each
 *   npm run fuzz -- --seed S --show 1234                               print a case's bytes, send nothing
 *
 * Exits 1 when a property failed; the failure names the seed, the case and its packets in hex.
 */
const { values } = parseArgs({
  options: {
    packets: { type: 'string', default: '20000' },
    seed: { type: 'string' },
    concurrency: { type: 'string', default: '24' },
    case: { type: 'string' },
    cases: { type: 'string' },
    show: { type: 'string' },
    'rss-mib': { type: 'string', default: '320' },
    'checkpoint-packets': { type: 'string', default: '10000' },
    'stop-on-failure': { type: 'boolean', default: false },
    /** Send the WebSocket sessions over TCP (to look past a crash on the HTTP port). */
    'tcp-only': { type: 'boolean', default: false },
    /** Print the gateway's output (its log, level warn) at the end. */
    'gateway-output': { type: 'boolean', default: false },
    /** Gateway configuration, passed on to `streamgate start --set` (repeatable). */
    set: { type: 'string', multiple: true },
    /** Node flags for the gateway process, e.g. "--max-old-space-size=128" (diagnostics). */
    'gateway-node-options': { type: 'string', default: '' },
    help: { type: 'boolean', short: 'h' },
  },
})

function int(name: string, text: string): number {
  const n = Number(text)
  if (!Number.isSafeInteger(n)) throw new Error(`--${name} must be an integer, got ${JSON.stringify(text)}`)
  return n
}

/** `10-40,77` -> [10, ..., 40, 77]. */
function caseList(text: string): number[] {
  return text.split(',').flatMap((part) => {
    const [a, b] = part.split('-').map((x) => int('cases', x.trim()))
    if (b === undefined) return [a!]
    return Array.from({ length: b - a! + 1 }, (_, i) => a! + i)
  })
}

async function main(): Promise<number> {
  if (values.help) {
    console.log('usage: npm run fuzz -- [--packets N] [--seed S] [--concurrency C] [--case I | --cases A-B,C | --show I] [--rss-mib M] [--stop-on-failure]')
    return 0
  }
  const seed = values.seed === undefined ? randomInt(2 ** 31) : int('seed', values.seed)
  const limits = defaultLimits()
  if (values.show !== undefined) {
    for (const index of caseList(values.show)) console.log(describeCase(seed, index, limits, Infinity))
    return 0
  }
  const cases = values.case !== undefined ? [int('case', values.case)] : values.cases !== undefined ? caseList(values.cases) : undefined
  const replay = cases !== undefined
  console.log(`[fuzz] seed ${seed}${replay ? `, replaying ${cases.length} case(s) one at a time` : ''}`)
  const gw = await startGatewayProcess((values.set ?? []).flatMap((kv) => ['--set', kv]), values['gateway-node-options'])
  try {
    const { devices, canary } = await registerFuzzDevices((id) => gw.addSasDevice(id))
    const report = await runFuzz({
      target: gw,
      devices,
      canary,
      seed,
      packets: int('packets', values.packets),
      concurrency: replay ? 1 : int('concurrency', values.concurrency),
      ...(cases ? { cases } : {}),
      limits,
      rssGrowthBytes: int('rss-mib', values['rss-mib']) * 1048576,
      checkpointPackets: replay ? 0 : int('checkpoint-packets', values['checkpoint-packets']),
      stopOnFailure: values['stop-on-failure'],
      tcpOnly: values['tcp-only'],
      log: (line) => console.log(line),
      onResult: (r) => {
        if (!replay) return
        console.log(`[fuzz] case ${r.index}: ${r.packetsSent} packets sent, ${r.end}, CONNACK ${r.connack ?? '-'}, received ${JSON.stringify(r.received)}${r.parseError ? `, unparsable reply: ${r.parseError}` : ''}${r.findings.length ? `, FAILED: ${r.findings.map((f) => f.what).join('; ')}` : ''}`)
        if (cases.length === 1) console.log(describeCase(seed, r.index, limits, Infinity))
      },
    })
    console.log(formatReport(report))
    if (report.failures.length > 0) console.log(formatFailures(report, limits))
    if (values['gateway-output']) console.log(`[fuzz] gateway output:\n${gw.output()}`)
    return report.failures.length > 0 ? 1 : 0
  } finally {
    await gw.stop()
  }
}

main().then(
  (code) => process.exit(code),
  (err: unknown) => {
    console.error(err)
    process.exit(2)
  },
)
