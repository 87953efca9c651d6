import type { FastifyInstance } from 'fastify'
import type { QueuedMessage } from '../commands/types.js'
import type { CommandsApi } from './deps.js'
import { deviceParams } from './device-schemas.js'
import { ifMatchHeader, invokeMethodBody, methodParams, patchTwinBody, sendMessageBody } from './command-schemas.js'
import { parseWith } from './errors.js'
import { GatewayError } from '../errors/catalogue.js'
import { nestingExceeds } from '../protocol/json-depth.js'

/** A queued message as GET /api/devices/:id/messages shows it (payload as base64: it may be binary). */
export interface QueuedMessageView {
  messageId: string
  enqueuedTime: string
  expiryTime: string
  deliveryCount: number
  ack: string
  properties: Record<string, string>
  contentType: string | null
  contentEncoding: string | null
  payloadBase64: string
}

function toView(m: QueuedMessage): QueuedMessageView {
  return {
    messageId: m.messageId,
    enqueuedTime: new Date(m.enqueuedAt).toISOString(),
    expiryTime: new Date(m.expiresAt).toISOString(),
    deliveryCount: m.deliveryCount,
    ack: m.ack,
    properties: m.properties,
    contentType: m.contentType ?? null,
    contentEncoding: m.contentEncoding ?? null,
    payloadBase64: m.payload.toString('base64'),
  }
}

/**
 * /api/devices/:id/messages, /methods/:name and /twin, behind the /api bearer-token hook.
 * Errors are GatewayErrors mapped by errors.ts (E_QUEUE_FULL 409, E_DEVICE_OFFLINE 404,
 * E_METHOD_TIMEOUT 504, E_TWIN_VERSION_MISMATCH 412, E_TWIN_TOO_LARGE 413, ...).
 */
export function registerCommandRoutes(api: FastifyInstance, commands: CommandsApi, maxJsonDepth = 64): void {
  /** JSON.stringify recurses: a payload nested thousands of levels deep must be refused before it. */
  const shallow = (payload: unknown): void => {
    if (nestingExceeds(payload, maxJsonDepth)) throw new GatewayError('E_BAD_REQUEST', `payload nests objects or arrays more than ${maxJsonDepth} levels deep (http.maxJsonDepth)`)
  }
  api.post('/devices/:id/messages', async (request, reply) => {
    const { id } = parseWith(deviceParams, request.params, 'path')
    const body = parseWith(sendMessageBody, request.body, 'request body')
    shallow(body.payload)
    const isText = typeof body.payload === 'string'
    const payload = Buffer.from(isText ? (body.payload as string) : JSON.stringify(body.payload))
    const message = await commands.c2d.send(id, {
      payload,
      ...(body.properties ? { properties: body.properties } : {}),
      ...(body.messageId === undefined ? {} : { messageId: body.messageId }),
      ...(body.ttlSeconds === undefined ? {} : { ttlSeconds: body.ttlSeconds }),
      ...(body.ack === undefined ? {} : { ack: body.ack }),
      ...(body.contentEncoding === undefined ? {} : { contentEncoding: body.contentEncoding }),
      ...(body.contentType !== undefined ? { contentType: body.contentType } : isText ? {} : { contentType: 'application/json' }),
    })
    return reply.code(202).send({ messageId: message!.messageId, expiryTime: new Date(message!.expiresAt).toISOString() })
  })

  api.get('/devices/:id/messages', async (request) => {
    const { id } = parseWith(deviceParams, request.params, 'path')
    return { messages: (await commands.c2d.list(id)).map(toView) }
  })

  api.delete('/devices/:id/messages', async (request) => {
    const { id } = parseWith(deviceParams, request.params, 'path')
    return { purged: await commands.c2d.purge(id) }
  })

  api.post('/devices/:id/methods/:name', async (request) => {
    const { id, name } = parseWith(methodParams, request.params, 'path')
    const body = parseWith(invokeMethodBody, request.body ?? {}, 'request body')
    shallow(body.payload)
    return commands.methods.invoke(id, name, body)
  })

  api.get('/devices/:id/twin', async (request) => {
    const { id } = parseWith(deviceParams, request.params, 'path')
    return commands.twins.get(id)
  })

  api.patch('/devices/:id/twin', async (request) => {
    const { id } = parseWith(deviceParams, request.params, 'path')
    const body = parseWith(patchTwinBody, request.body, 'request body')
    const ifVersion = parseWith(ifMatchHeader, request.headers['if-match'], 'If-Match header')
    // Tags first: If-Match guards the desired version only, and a refused desired patch then
    // leaves the tags changed, as two separate IoT Hub updates would.
    let view = body.tags === undefined ? undefined : await commands.twins.patchTags(id, body.tags)
    if (body.desired !== undefined) view = await commands.twins.patchDesired(id, body.desired, ifVersion)
    return view
  })
}
