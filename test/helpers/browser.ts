import { existsSync } from 'node:fs'

/** Debian's chromium (or CHROMIUM_PATH); playwright-core never downloads a browser here. */
export function chromiumPath(): string | null {
  for (const candidate of [process.env.CHROMIUM_PATH, '/usr/bin/chromium', '/usr/bin/chromium-browser']) {
    if (candidate && existsSync(candidate)) return candidate
  }
  return null
}
