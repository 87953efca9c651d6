import { readFileSync } from 'node:fs'
import { resolve } from 'node:path'
import { parseArgs } from 'node:util'
import { addTrustedCa, removeTrustedCa, TrustedCaStore } from '../auth/ca-store.js'
import { thumbprint } from '../auth/x509.js'
import { COMMON_OPTIONS, UsageError, configFromFlags } from './common.js'
import { reportError } from './report.js'

const USAGE = `usage: streamgate ca add FILE [--data-dir DIR] [--config FILE]
       streamgate ca list [--data-dir DIR] [--config FILE]
       streamgate ca remove THUMBPRINT [--data-dir DIR] [--config FILE]

add     trust a CA certificate (PEM) for devices registered with --auth x509-ca: a device
        certificate issued by it whose subject CN equals the device id is accepted. Stored in
        <dataDir>/cas/; a running gateway picks it up at the next CONNECT. The development CA of
        \`certs init\` is <dataDir>/certs/ca.crt.
list    print the trusted CAs.
remove  stop trusting the CA with this SHA-256 thumbprint (as \`ca list\` prints it); its devices
        are refused from their next CONNECT (connections already open stay until they end).`

export async function caCommand(argv: string[]): Promise<number> {
  try {
    const { values, positionals } = parseArgs({ args: argv, options: COMMON_OPTIONS, allowPositionals: true, strict: true })
    if (values.help) {
      process.stdout.write(USAGE + '\n')
      return 0
    }
    const dataDir = resolve(configFromFlags(values).dataDir)
    const [sub, file, ...extra] = positionals
    if (sub === 'add' && file !== undefined && extra.length === 0) {
      const ca = addTrustedCa(dataDir, readFileSync(file, 'utf8'))
      process.stdout.write(`trusted CA ${ca.subject.replace(/\n/g, ', ')}  thumbprint ${ca.thumbprint}  valid to ${ca.validTo}\n`)
      return 0
    }
    if (sub === 'list' && file === undefined) {
      for (const ca of new TrustedCaStore(dataDir).list()) process.stdout.write(`${thumbprint(ca)}  ${ca.subject.replace(/\n/g, ', ')}  valid to ${ca.validTo}\n`)
      return 0
    }
    if (sub === 'remove' && file !== undefined && extra.length === 0) {
      removeTrustedCa(dataDir, file)
      process.stdout.write(`removed trusted CA ${file}\n`)
      return 0
    }
    throw new UsageError('expected `ca add FILE`, `ca list` or `ca remove THUMBPRINT`')
  } catch (err) {
    return reportError(err, USAGE)
  }
}
