import { createHash, timingSafeEqual } from 'node:crypto'
import type { FastifyReply, FastifyRequest } from 'fastify'
import { GatewayError } from '../errors/catalogue.js'

/**
 * onRequest hook for every /api route: `Authorization: Bearer <adminToken>`.
 * Both sides are hashed before timingSafeEqual so that neither the content nor the length of the
 * admin token leaks through response timing. The header is never logged (the request log lines
 * carry method, route and status only; the logger also redacts `authorization`).
 */
export function bearerAuth(adminToken: string): (request: FastifyRequest, reply: FastifyReply) => Promise<void> {
  const authorized = adminTokenCheck(adminToken)
  return async (request) => {
    if (!authorized(request.headers.authorization)) {
      throw new GatewayError('E_UNAUTHORIZED', 'missing or wrong admin token (Authorization: Bearer <token>)')
    }
  }
}

/** Whether an Authorization header carries the admin token (also used outside Fastify's routes). */
export function adminTokenCheck(adminToken: string): (authorization: string | undefined) => boolean {
  if (adminToken.length === 0) throw new Error('adminToken must not be empty')
  const expected = digest(adminToken)
  return (authorization) => {
    const presented = bearerToken(authorization)
    return presented !== null && timingSafeEqual(digest(presented), expected)
  }
}

function digest(value: string): Buffer {
  return createHash('sha256').update(value, 'utf8').digest()
}

/** RFC 6750 section 2.1: the scheme is case-insensitive, the token is everything after it. */
function bearerToken(header: string | undefined): string | null {
  if (!header) return null
  const match = /^Bearer +(\S+)\s*$/i.exec(header)
  return match ? match[1]! : null
}
