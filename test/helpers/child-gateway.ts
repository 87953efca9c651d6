import { spawn, execFileSync, type ChildProcess } from 'node:child_process'
import { existsSync, mkdirSync, readdirSync, rmSync, statSync } from 'node:fs'
import { join, dirname } from 'node:path'
import { fileURLToPath } from 'node:url'
import { waitForBanner } from '../../bench/lib/child-output.js'

const root = join(dirname(fileURLToPath(import.meta.url)), '..', '..')
export const CLI = join(root, 'dist', 'src', 'cli', 'main.js')

/**
 * Build once if dist is missing or older than the sources (npm test builds first anyway).
 * tsc emits despite type errors; a type error elsewhere in the tree (work in progress of another
 * change) must not stop a restart test whose own code compiles, so only a missing CLI fails here.
 */
export function ensureBuilt(): void {
  if (isFresh()) return
  // Test files run in parallel processes: one builds while the others wait, so that no child
  // gateway starts from a dist/ another tsc is halfway through writing.
  const lock = join(root, 'dist', '.test-build-lock')
  mkdirSync(dirname(lock), { recursive: true })
  for (;;) {
    try {
      mkdirSync(lock)
      break
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code !== 'EEXIST') throw err
      // A lock older than 5 minutes is left over from a killed run.
      const held = statSync(lock, { throwIfNoEntry: false })
      if (held && Date.now() - held.mtimeMs > 300_000) rmSync(lock, { recursive: true, force: true })
      Atomics.wait(new Int32Array(new SharedArrayBuffer(4)), 0, 0, 200)
    }
  }
  try {
    if (isFresh()) return
    execFileSync('npx', ['tsc', '-p', 'tsconfig.json'], { cwd: root, stdio: 'inherit' })
  } catch (err) {
    if (!existsSync(CLI)) throw err
  } finally {
    rmSync(lock, { recursive: true, force: true })
  }
}

function isFresh(): boolean {
  const stamp = existsSync(CLI) ? statSync(CLI).mtimeMs : 0
  return stamp !== 0 && stamp >= newestMtime(join(root, 'src'))
}

/** Newest modification time of any file under `dir` (a directory's own mtime misses edits). */
function newestMtime(dir: string): number {
  let newest = 0
  for (const entry of readdirSync(dir, { withFileTypes: true, recursive: true })) {
    if (entry.isFile()) newest = Math.max(newest, statSync(join(entry.parentPath, entry.name)).mtimeMs)
  }
  return newest
}

export interface ChildGateway {
  child: ChildProcess
  /** The gateway's own process id (the node process, also when started through a shell). */
  pid: number
  mqttPort: number
  httpPort: number
  output(): string
  /** SIGKILL and wait for the exit. */
  kill(signal?: NodeJS.Signals): Promise<void>
}

export interface ChildOptions {
  /**
   * Open-file limit (soft and hard) of the gateway process, set with the shell's `ulimit -n`
   * before `exec node`: a test can then fill the table with a few thousand sockets.
   */
  openFiles?: number
  /** Extra arguments after `start` (e.g. `--set key=value`). */
  args?: string[]
}

/** Run `streamgate start` as a child process on free ports; resolves once it printed its banner. */
export async function startChildGateway(dataDir: string, env: Record<string, string> = {}, options: ChildOptions = {}): Promise<ChildGateway> {
  const argv = [CLI, 'start', ...(options.args ?? [])]
  // `exec` keeps the pid: signals and /proc/<pid> reach node itself, not a shell.
  const [command, args] =
    options.openFiles === undefined
      ? [process.execPath, argv]
      : ['/bin/sh', ['-c', `ulimit -n ${Math.floor(options.openFiles)} && exec "$0" "$@"`, process.execPath, ...argv]]
  const child = spawn(command, args, {
    env: {
      PATH: process.env.PATH ?? '',
      STREAMGATE_DATA_DIR: dataDir,
      STREAMGATE_MQTT_PORT: '0',
      STREAMGATE_HTTP_PORT: '0',
      STREAMGATE_ADMIN_TOKEN: 'child-admin-token-0123456789',
      STREAMGATE_LOG_LEVEL: 'warn',
      ...env,
    },
    stdio: ['ignore', 'pipe', 'pipe'],
  })
  let out = ''
  child.stdout!.on('data', (c: Buffer) => (out += c.toString()))
  child.stderr!.on('data', (c: Buffer) => (out += c.toString()))
  // Generous: a cold node start plus SQLite recovery on a loaded 2-core machine.
  const ports = await waitForBanner(child, () => out)
  return {
    child,
    pid: child.pid!,
    mqttPort: ports[0],
    httpPort: ports[1],
    output: () => out,
    kill: (signal = 'SIGKILL') =>
      new Promise<void>((resolve) => {
        if (child.exitCode !== null || child.signalCode !== null) return resolve()
        child.once('exit', () => resolve())
        child.kill(signal)
      }),
  }
}
