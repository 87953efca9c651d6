#!/usr/bin/env node
import { readFileSync } from 'node:fs'
import { dirname, join } from 'node:path'
import { fileURLToPath } from 'node:url'
import { EXIT_OK, EXIT_USAGE, reportError } from './report.js'

/**
 * The `streamgate` command. Each command module is imported only when chosen: `devices` then
 * starts without loading the broker, the stream and their dependencies, and a half-finished
 * command cannot break the others.
 */
type Command = (argv: string[]) => Promise<number>

const COMMANDS: Record<string, { summary: string; load: () => Promise<Command> }> = {
  start: { summary: 'run the gateway', load: async () => (await import('./start.js')).startCommand },
  devices: { summary: 'add, list, show, remove, enable, disable devices; rotate keys; set passwords', load: async () => (await import('./devices.js')).devicesCommand },
  tail: { summary: 'print records of a stream topic', load: async () => (await import('./tail.js')).tailCommand },
  send: { summary: 'queue a cloud-to-device message for a device', load: async () => (await import('./commands.js')).sendCommand },
  invoke: { summary: 'call a direct method on a connected device', load: async () => (await import('./commands.js')).invokeCommand },
  'device-demo': { summary: 'connect as a device that prints what it receives and answers methods', load: async () => (await import('./device-demo.js')).deviceDemoCommand },
  certs: { summary: 'create a development CA, a server certificate and device certificates', load: async () => (await import('./certs.js')).certsCommand },
  ca: { summary: 'trust a CA for devices with X.509 certificates (--auth x509-ca)', load: async () => (await import('./ca.js')).caCommand },
  twin: { summary: "show a device twin or patch its desired properties", load: async () => (await import('./commands.js')).twinCommand },
  routes: { summary: 'list, add, remove message routes; test a condition against a sample message', load: async () => (await import('./routes.js')).routesCommand },
  endpoints: { summary: 'list, add, remove routing endpoints (stream topics, webhooks)', load: async () => (await import('./routes.js')).endpointsCommand },
  aggregates: { summary: 'list, add, remove windowed aggregates over telemetry', load: async () => (await import('./analytics.js')).aggregatesCommand },
  alerts: { summary: 'list open alerts; list, add, remove alert rules', load: async () => (await import('./analytics.js')).alertsCommand },
}

const USAGE = [
  'usage: streamgate <command> [options]',
  '',
  'commands:',
  ...Object.entries(COMMANDS).map(([name, c]) => `  ${name.padEnd(12)}${c.summary}`),
  '',
  'streamgate <command> --help   options of one command',
  'streamgate --version          print the version',
].join('\n')

export async function main(argv: string[]): Promise<number> {
  const [name, ...rest] = argv
  if (name === '--help' || name === '-h' || name === 'help') {
    process.stdout.write(USAGE + '\n')
    return EXIT_OK
  }
  if (name === '--version' || name === '-v') {
    process.stdout.write(version() + '\n')
    return EXIT_OK
  }
  if (name === undefined || !Object.hasOwn(COMMANDS, name)) {
    process.stderr.write(`${name === undefined ? 'error: missing command' : `error: unknown command "${name}"`}\n\n${USAGE}\n`)
    return EXIT_USAGE
  }
  try {
    const command = await COMMANDS[name]!.load()
    return await command(rest)
  } catch (err) {
    // Commands report their own errors with their own usage; this catches what escapes them.
    return reportError(err, `usage: streamgate ${name} [options]`)
  }
}

/** From package.json, found upwards from this file (src/cli in tests, dist/src/cli when built). */
function version(): string {
  let dir = dirname(fileURLToPath(import.meta.url))
  for (let i = 0; i < 5; i++) {
    try {
      const pkg = JSON.parse(readFileSync(join(dir, 'package.json'), 'utf8')) as { name?: string; version?: string }
      if (pkg.name === 'streamgate' && pkg.version) return pkg.version
    } catch {
      // no package.json here: keep going up
    }
    dir = dirname(dir)
  }
  return 'unknown'
}

// exitCode, not process.exit(): pending stdout/stderr writes (pipes are asynchronous) must finish.
process.exitCode = await main(process.argv.slice(2))
