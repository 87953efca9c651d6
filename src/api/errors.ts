import type { FastifyError, FastifyInstance, FastifyReply, FastifyRequest } from 'fastify'
import type { z } from 'zod'
import { ERROR_CODES, GatewayError, isGatewayError, type ErrorCode } from '../errors/catalogue.js'
import { DEVICE_ID_RULE } from '../registry/validation.js'

/**
 * Error mapping at the HTTP edge: every failure leaves as
 * `{ "error": { "code", "message" } }` with the catalogue's status for that code. A 5xx body carries
 * only the catalogue's summary of its code; the real message, details and stack go to the log.
 */
export interface ApiErrorBody {
  error: { code: ErrorCode; message: string }
}

interface Mapped {
  status: number
  code: ErrorCode
  message: string
}

export function errorBody(code: ErrorCode, message: string): ApiErrorBody {
  return { error: { code, message } }
}

/** Turn a zod failure into E_BAD_REQUEST whose message lists every problem with its path. */
export function badRequest(what: string, error: z.ZodError): GatewayError {
  const problems = error.issues.map((issue) => `${issue.path.length ? issue.path.join('.') : '(root)'}: ${issue.message}`)
  return new GatewayError('E_BAD_REQUEST', `invalid ${what}: ${problems.join('; ')}`, { problems })
}

/** Parse with a zod schema or throw E_BAD_REQUEST. */
export function parseWith<T>(schema: z.ZodType<T>, value: unknown, what: string): T {
  const result = schema.safeParse(value)
  if (!result.success) throw badRequest(what, result.error)
  return result.data
}

function mapError(err: unknown, request?: FastifyRequest): Mapped {
  if (isGatewayError(err)) {
    const status = err.httpStatus
    return { status, code: err.code, message: status >= 500 ? ERROR_CODES[err.code].summary : err.message }
  }
  const statusCode = (err as Partial<FastifyError>).statusCode
  // Fastify's own client errors: body too large, bad JSON, wrong content type, ...
  if (typeof statusCode === 'number' && statusCode === 413) {
    return { status: 413, code: 'E_PAYLOAD_TOO_LARGE', message: 'request body is too large' }
  }
  if ((err as Partial<FastifyError>).code === 'FST_ERR_CTP_INVALID_MEDIA_TYPE') {
    // Fastify says only "Unsupported Media Type": say what the API takes and what it got.
    const got = request?.headers['content-type']
    const sent = got === undefined ? 'no Content-Type header' : `Content-Type ${JSON.stringify(got.slice(0, 100))}`
    return { status: 400, code: 'E_BAD_REQUEST', message: `the body must be JSON sent with "Content-Type: application/json" (the request had ${sent})` }
  }
  if (typeof statusCode === 'number' && statusCode >= 400 && statusCode < 500) {
    return { status: 400, code: 'E_BAD_REQUEST', message: (err as Error).message }
  }
  return { status: 500, code: 'E_INTERNAL', message: ERROR_CODES.E_INTERNAL.summary }
}

export function registerErrorHandlers(app: FastifyInstance): void {
  app.setErrorHandler((err: unknown, request: FastifyRequest, reply: FastifyReply) => {
    const mapped = mapError(err, request)
    if (mapped.status >= 500) {
      request.log.error({ err, code: mapped.code, route: request.routeOptions.url }, 'request failed')
    } else {
      request.log.debug({ code: mapped.code, message: (err as Error).message }, 'request rejected')
    }
    if (mapped.status === 401) void reply.header('www-authenticate', 'Bearer')
    return reply.code(mapped.status).send(errorBody(mapped.code, mapped.message))
  })

  // Upgrade requests (MQTT over WebSocket) never reach here: Node hands them to the server's
  // 'upgrade' listeners, which the composition root attaches, instead of to Fastify's router.
  app.setNotFoundHandler((request: FastifyRequest, reply: FastifyReply) => {
    return reply.code(404).send(errorBody('E_NOT_FOUND', `no route ${request.method} ${request.url.split('?')[0]}`))
  })
}

/**
 * Answers for what fails in Fastify's router before any route or hook runs (Fastify's
 * `frameworkErrors`): without this, a path parameter over `routerOptions.maxParamLength` gets
 * Fastify's own 414 body and a malformed percent-escape its own 400, both outside the envelope.
 * A path segment that long in the device-id place can be no valid id (128 characters, 384 when
 * percent-encoded), so it gets the code a bad id gets anywhere: 400 E_DEVICE_ID_INVALID. Neither
 * answer repeats the path: it may be kilobytes.
 */
export function frameworkErrorHandler(maxParamLength: number): (err: FastifyError, request: FastifyRequest, reply: FastifyReply) => void {
  return (err, request, reply) => {
    const mapped = mapFrameworkError(err, request.url, maxParamLength)
    if (mapped.status >= 500) request.log.error({ err, code: mapped.code }, 'request failed in the router')
    else request.log.debug({ code: mapped.code, fastifyCode: err.code }, 'request rejected by the router')
    void reply.code(mapped.status).send(errorBody(mapped.code, mapped.message))
  }
}

function mapFrameworkError(err: FastifyError, url: string, maxParamLength: number): Mapped {
  switch (err.code) {
    case 'FST_ERR_MAX_PARAM_LENGTH': {
      const segments = url.split('?')[0]!.split('/')
      // ['', 'api', 'devices', '<id>', ...]
      if (segments[1] === 'api' && segments[2] === 'devices' && (segments[3]?.length ?? 0) > maxParamLength) {
        return { status: 400, code: 'E_DEVICE_ID_INVALID', message: `the device id in the path is ${segments[3]!.length} characters long: ${DEVICE_ID_RULE}` }
      }
      return { status: 400, code: 'E_BAD_REQUEST', message: `a path parameter is longer than ${maxParamLength} characters` }
    }
    case 'FST_ERR_BAD_URL':
      return { status: 400, code: 'E_BAD_REQUEST', message: 'the path is not valid percent-encoded UTF-8' }
    default:
      return mapError(err)
  }
}

/**
 * Requests Node's HTTP parser refuses before Fastify sees them (a request line or headers over
 * Node's 16 KiB limit, headers not sent within http.headersTimeoutSeconds, bytes that are not
 * HTTP) are answered in the same envelope, then the socket is closed.
 */
export function clientErrorHandler(err: NodeJS.ErrnoException, socket: import('node:net').Socket): void {
  if (err.code === 'ECONNRESET' || socket.destroyed || !socket.writable) {
    socket.destroy()
    return
  }
  const [status, text, message] =
    err.code === 'HPE_HEADER_OVERFLOW'
      ? [431, 'Request Header Fields Too Large', 'the request line and headers exceed 16 KiB']
      : err.code === 'ERR_HTTP_REQUEST_TIMEOUT'
        ? [408, 'Request Timeout', 'the request headers did not arrive in time (http.headersTimeoutSeconds)']
        : [400, 'Bad Request', 'the request is not valid HTTP/1.1']
  const body = JSON.stringify(errorBody('E_BAD_REQUEST', message))
  socket.end(`HTTP/1.1 ${status} ${text}\r\nContent-Type: application/json\r\nContent-Length: ${Buffer.byteLength(body)}\r\nConnection: close\r\n\r\n${body}`)
  setTimeout(() => socket.destroy(), 2000).unref()
}
