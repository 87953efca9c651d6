import { readFileSync, renameSync, unlinkSync, writeFileSync } from 'node:fs'
import { join } from 'node:path'

/**
 * `<dataDir>/gateway.json`: how CLI processes find the gateway that runs on a data dir, so that
 * `streamgate devices ...` goes through its HTTP API (and the gateway hears about the change)
 * instead of writing the registry file behind its back.
 *
 * The file is a hint, never trusted alone: a gateway killed with SIGKILL leaves it behind, so
 * findRunningGateway also checks that the pid lives and that /healthz answers.
 * Write/read/remove are synchronous: they run once at start, and at stop possibly from an exit
 * path where nothing asynchronous completes.
 */
export interface RuntimeInfo {
  pid: number
  /** Base URL of the HTTP API as a local client can reach it (not 0.0.0.0). */
  httpUrl: string
  mqttUrl: string
  startedAt: string
}

export const RUNTIME_FILE = 'gateway.json'
const HEALTH_TIMEOUT_MS = 1000

export function runtimeFilePath(dataDir: string): string {
  return join(dataDir, RUNTIME_FILE)
}

/** Written to a temporary name and renamed, so a reader never sees half a file. */
export function writeRuntimeFile(dataDir: string, info: RuntimeInfo): void {
  const file = runtimeFilePath(dataDir)
  const tmp = `${file}.${process.pid}.tmp`
  writeFileSync(tmp, JSON.stringify(info, null, 2) + '\n', { mode: 0o644 })
  renameSync(tmp, file)
}

/** null when absent or not a runtime file (a torn or foreign file is treated as absent). */
export function readRuntimeFile(dataDir: string): RuntimeInfo | null {
  let text: string
  try {
    text = readFileSync(runtimeFilePath(dataDir), 'utf8')
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') return null
    throw err
  }
  try {
    const value: unknown = JSON.parse(text)
    return isRuntimeInfo(value) ? value : null
  } catch {
    return null
  }
}

/**
 * Remove the file if it is ours (`pid`, default this process): a second gateway started by
 * mistake on the same data dir must not, when it fails and stops, delete the first one's file.
 */
export function removeRuntimeFile(dataDir: string, pid: number = process.pid): void {
  const info = readRuntimeFile(dataDir)
  if (info && info.pid !== pid) return
  try {
    unlinkSync(runtimeFilePath(dataDir))
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code !== 'ENOENT') throw err
  }
}

/** The gateway serving this data dir right now, or null (no file, dead pid, or no answer in 1 s). */
export async function findRunningGateway(dataDir: string): Promise<{ httpUrl: string; mqttUrl: string } | null> {
  const info = readRuntimeFile(dataDir)
  if (!info || !isProcessAlive(info.pid)) return null
  const httpUrl = info.httpUrl.replace(/\/+$/, '')
  try {
    const res = await fetch(`${httpUrl}/healthz`, { signal: AbortSignal.timeout(HEALTH_TIMEOUT_MS) })
    await res.body?.cancel()
    return res.ok ? { httpUrl, mqttUrl: info.mqttUrl } : null
  } catch {
    return null
  }
}

/** Signal 0 checks existence only. EPERM: the process exists but belongs to another user. */
export function isProcessAlive(pid: number): boolean {
  try {
    process.kill(pid, 0)
    return true
  } catch (err) {
    return (err as NodeJS.ErrnoException).code === 'EPERM'
  }
}

function isRuntimeInfo(value: unknown): value is RuntimeInfo {
  if (typeof value !== 'object' || value === null) return false
  const v = value as Record<string, unknown>
  return (
    Number.isInteger(v.pid) &&
    (v.pid as number) > 0 &&
    typeof v.httpUrl === 'string' &&
    /^https?:\/\//.test(v.httpUrl) &&
    typeof v.mqttUrl === 'string' &&
    typeof v.startedAt === 'string'
  )
}
