import { resolve, join } from 'node:path'
import { parseArgs } from 'node:util'
import { initDevCerts, issueDeviceCert } from '../app/dev-certs.js'
import { COMMON_OPTIONS, UsageError, configFromFlags } from './common.js'
import { reportError } from './report.js'

const USAGE = `usage: streamgate certs init [--hostname H ...] [--force] [--data-dir DIR] [--config FILE]
       streamgate certs device ID [--out DIR] [--days N] [--data-dir DIR] [--config FILE]

init    creates a development CA (<dataDir>/certs/ca.crt, kept if it exists unless --force) and a
        server certificate (server.crt, server.key) for the given host names (default: localhost
        and 127.0.0.1). The gateway uses them when mqtt.tls.enabled / http.wss.enabled is true and
        mqtt.tls.certFile / keyFile are empty. Devices trust ca.crt (Azure SDK: setOptions({ ca })).
device  issues a device certificate (subject CN = ID) from the development CA, for a device
        registered with --auth x509-ca; written to <dataDir>/certs/devices/ID.crt and ID.key.
Keys are written with mode 0600. For production, use certificates from your own PKI instead.`

const OPTIONS = {
  ...COMMON_OPTIONS,
  hostname: { type: 'string', multiple: true },
  force: { type: 'boolean' },
  out: { type: 'string' },
  days: { type: 'string' },
} as const

export async function certsCommand(argv: string[]): Promise<number> {
  try {
    const { values, positionals } = parseArgs({ args: argv, options: OPTIONS, allowPositionals: true, strict: true })
    if (values.help) {
      process.stdout.write(USAGE + '\n')
      return 0
    }
    const { hostname, ...rest } = values
    const config = configFromFlags(rest)
    const dataDir = resolve(config.dataDir)
    const [sub, id, ...extra] = positionals
    if (sub === 'init' && id === undefined) {
      const hosts = hostname && hostname.length > 0 ? hostname : ['localhost', '127.0.0.1']
      const r = await initDevCerts(dataDir, hosts, { force: values.force === true })
      process.stdout.write(
        [
          `${r.createdCa ? 'created' : 'kept'} development CA  ${r.caCert}`,
          `server certificate for ${hosts.join(', ')}  ${r.serverCert}  (key ${r.serverKey}, mode 0600)`,
          'Enable with --set mqtt.tls.enabled=true (and http.wss.enabled=true); devices must trust the CA file.',
          '',
        ].join('\n'),
      )
      return 0
    }
    if (sub === 'device' && id !== undefined && extra.length === 0) {
      const days = values.days === undefined ? undefined : Number(values.days)
      if (days !== undefined && (!Number.isInteger(days) || days < 1)) throw new UsageError('--days expects a positive integer')
      const r = await issueDeviceCert(dataDir, id, values.out ?? join(dataDir, 'certs', 'devices'), days === undefined ? {} : { days })
      process.stdout.write(
        `certificate ${r.cert}\nkey         ${r.key}\nthumbprint  ${r.thumbprint}\n` +
          `Register the device with \`streamgate devices add ${id} --auth x509-ca\` (after \`streamgate ca add ${join(dataDir, 'certs', 'ca.crt')}\`)\n` +
          `or with \`--auth x509-thumbprint --thumbprint ${r.thumbprint}\`.\n`,
      )
      return 0
    }
    throw new UsageError('expected `certs init` or `certs device ID`')
  } catch (err) {
    return reportError(err, USAGE)
  }
}
