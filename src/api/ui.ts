import { existsSync, readdirSync, readFileSync } from 'node:fs'
import { createRequire } from 'node:module'
import { dirname, join } from 'node:path'
import { fileURLToPath } from 'node:url'
import type { FastifyInstance, FastifyReply } from 'fastify'
import { errorBody } from './errors.js'

/**
 * The operations console at /ui (docs/console.md): static files from the repository's `ui/`
 * folder and uPlot's two files, read once at start into memory and served by name from that
 * fixed list, so that no request path ever reaches the file system. Every action the console
 * takes goes through /api with the admin token the user signs in with; these files need none.
 *
 * The Content-Security-Policy allows scripts, styles and connections from this origin only:
 * no inline script, no eval, no other site. What a device sends is put into the page as text
 * (ui/dom.js), never as HTML.
 */
export const CONSOLE_CSP = [
  "default-src 'none'",
  "script-src 'self'",
  "style-src 'self'",
  "img-src 'self' data:",
  "connect-src 'self'",
  "base-uri 'none'",
  "form-action 'none'",
  "frame-ancestors 'none'",
].join('; ')

const TYPES: Record<string, string> = {
  '.html': 'text/html; charset=utf-8',
  '.js': 'text/javascript; charset=utf-8',
  '.css': 'text/css; charset=utf-8',
  '.svg': 'image/svg+xml',
}

interface Asset {
  body: Buffer
  type: string
}

/** `ui/` found upwards from this file (src/api in tests, dist/src/api when built). */
function uiFolder(): string | null {
  let dir = dirname(fileURLToPath(import.meta.url))
  for (let i = 0; i < 5; i++) {
    if (existsSync(join(dir, 'ui', 'index.html'))) return join(dir, 'ui')
    dir = dirname(dir)
  }
  return null
}

function loadAssets(): Map<string, Asset> {
  const assets = new Map<string, Asset>()
  const folder = uiFolder()
  if (folder === null) return assets
  for (const name of readdirSync(folder)) {
    const type = TYPES[name.slice(name.lastIndexOf('.'))]
    if (type) assets.set(name, { body: readFileSync(join(folder, name)), type })
  }
  const uplot = dirname(createRequire(import.meta.url).resolve('uplot'))
  assets.set('vendor/uPlot.iife.min.js', { body: readFileSync(join(uplot, 'uPlot.iife.min.js')), type: TYPES['.js']! })
  assets.set('vendor/uPlot.min.css', { body: readFileSync(join(uplot, 'uPlot.min.css')), type: TYPES['.css']! })
  return assets
}

export function registerConsoleRoutes(app: FastifyInstance): void {
  const assets = loadAssets()
  const send = (reply: FastifyReply, asset: Asset): FastifyReply =>
    reply
      .header('content-type', asset.type)
      .header('content-security-policy', CONSOLE_CSP)
      .header('x-content-type-options', 'nosniff')
      .header('referrer-policy', 'no-referrer')
      .header('cache-control', 'no-cache')
      .send(asset.body)
  const notFound = (reply: FastifyReply, path: string): FastifyReply => reply.code(404).send(errorBody('E_NOT_FOUND', `no console file ${path.slice(0, 200)}`))

  app.get('/ui', async (_request, reply) => reply.redirect('/ui/', 302))
  app.get('/ui/', async (_request, reply) => {
    const index = assets.get('index.html')
    return index ? send(reply, index) : notFound(reply, 'index.html')
  })
  app.get('/ui/*', async (request, reply) => {
    const name = (request.params as { '*': string })['*']
    const asset = assets.get(name)
    return asset ? send(reply, asset) : notFound(reply, name)
  })
}
