import type { ChildProcess } from 'node:child_process'

/** Resolves with the first match of `pattern` in a child's stdout (servers print where they listen). */
export function waitForLine(child: ChildProcess, pattern: RegExp): Promise<RegExpMatchArray> {
  return new Promise((resolve, reject) => {
    let out = ''
    const onData = (chunk: Buffer): void => {
      out += chunk.toString()
      const m = pattern.exec(out)
      if (m) {
        child.stdout!.off('data', onData)
        resolve(m)
      }
    }
    child.stdout!.on('data', onData)
    child.once('exit', (code) => reject(new Error(`server exited (${code}) before it was ready:\n${out}`)))
  })
}
