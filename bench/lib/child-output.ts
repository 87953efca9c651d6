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

/**
 * The MQTT and HTTP ports a `streamgate start` child printed in its banner; rejects when the
 * child exits first or prints none within `timeoutMs`, with what it printed (`output()`).
 */
export function waitForBanner(child: ChildProcess, output: () => string, timeoutMs = 60_000): Promise<[mqttPort: number, httpPort: number]> {
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`gateway did not start:\n${output()}`)), timeoutMs)
    const check = (): void => {
      const mqtt = /MQTT \(TCP\)\s+mqtt:\/\/[^:]+:(\d+)/.exec(output())
      const http = /HTTP API\s+http:\/\/[^:]+:(\d+)/.exec(output())
      if (mqtt && http) {
        clearTimeout(timer)
        child.stdout!.off('data', check)
        resolve([Number(mqtt[1]), Number(http[1])])
      }
    }
    child.stdout!.on('data', check)
    child.once('exit', (code) => {
      clearTimeout(timer)
      reject(new Error(`gateway exited with ${code}:\n${output()}`))
    })
  })
}
