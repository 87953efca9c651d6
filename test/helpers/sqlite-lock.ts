import { spawn } from 'node:child_process'

/** SQLite's write lock on a file, held by another process: a stuck writer, as a full disk would make commits fail. */
export interface WriteLock {
  /** Roll back and close; resolves with the holder's clock reading taken just before the ROLLBACK. */
  release(): Promise<number>
}

/**
 * Another process takes the write lock and holds it until told to let go (not for a fixed time:
 * on a loaded machine a timer in the child could run out before the test has looked).
 */
export function holdWriteLock(file: string): Promise<WriteLock> {
  const script = `
    const Database = require('better-sqlite3')
    const db = new Database(process.argv[1])
    db.exec('BEGIN IMMEDIATE')
    process.stdout.write('locked\\n')
    const release = () => { const at = Date.now(); db.exec('ROLLBACK'); db.close(); process.stdout.write('released ' + at + '\\n'); process.exit(0) }
    process.stdin.once('data', release)
    process.stdin.once('end', release)
    setTimeout(release, 120000).unref()
  `
  const child = spawn(process.execPath, ['-e', script, file], { cwd: process.cwd(), stdio: ['pipe', 'pipe', 'inherit'] })
  let out = ''
  child.stdout.on('data', (c: Buffer) => (out += c.toString()))
  const exited = new Promise<void>((r) => child.once('exit', () => r()))
  return new Promise((resolve, reject) => {
    child.stdout.once('data', () =>
      resolve({
        release: async () => {
          child.stdin.end('release\n')
          await exited
          const at = /released (\d+)/.exec(out)
          if (!at) throw new Error(`lock holder did not report its release: ${out}`)
          return Number(at[1])
        },
      }),
    )
    child.once('error', reject)
  })
}
