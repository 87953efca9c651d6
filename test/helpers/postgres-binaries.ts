import { existsSync, readdirSync } from 'node:fs'
import { hasCommand } from '../../bench/lib/local-kafka.js'

/** Whether scripts/postgres-local.sh can start a server here (Debian's postgresql package, or initdb on PATH). */
export function canRunLocalPostgres(): boolean {
  try {
    if (readdirSync('/usr/lib/postgresql').some((v) => existsSync(`/usr/lib/postgresql/${v}/bin/initdb`))) return true
  } catch {
    // no Debian layout: fall through to PATH
  }
  return hasCommand('initdb')
}
