import type { FastifyInstance, FastifyRequest } from 'fastify'
import { GatewayError } from '../errors/catalogue.js'
import { deviceConnectionString } from '../registry/connection-string.js'
import { DEFAULT_LIST_LIMIT } from '../registry/validation.js'
import { toDeviceView, type Device, type DeviceView } from '../registry/types.js'
import type { ApiDeps, DeviceChange, LiveConnection } from './deps.js'
import { createDeviceBody, deviceParams, listQuery, patchDeviceBody, rotateKeyBody } from './device-schemas.js'
import { parseWith } from './errors.js'

/** A device as the API shows it, plus its connection string where one was just (re)issued. */
export type DeviceWithConnectionString = DeviceView & { connectionString: string | null }
export type DeviceDetail = DeviceView & { live?: LiveConnection | null; instanceId?: string | null }
export interface DeviceList {
  devices: DeviceView[]
  /** Pass as `after` for the next page; null once a page came back short. */
  next: string | null
}

/**
 * /api/devices routes. Registered inside the /api plugin, behind its bearer-token hook.
 * Device ids travel percent-encoded in the path (ids may hold `%`, `?`, `$`, ...); Fastify
 * decodes them before they reach `params.id`.
 */
export function registerDeviceRoutes(api: FastifyInstance, deps: ApiDeps): void {
  const { registry } = deps
  const notify = changeNotifier(deps)
  const withConnectionString = (device: Device): DeviceWithConnectionString => ({
    ...toDeviceView(device),
    connectionString: deviceConnectionString(deps.hostname, device),
  })

  api.post('/devices', async (request, reply) => {
    const body = parseWith(createDeviceBody, request.body, 'request body')
    const device = await registry.create(body)
    notify(request, device.deviceId, 'created')
    return reply
      .code(201)
      .header('location', `${request.url.split('?')[0]}/${encodeURIComponent(device.deviceId)}`)
      .send(withConnectionString(device))
  })

  api.get('/devices', async (request): Promise<DeviceList> => {
    const query = parseWith(listQuery, request.query, 'query')
    const devices = await registry.list(query)
    // A full page may be followed by an empty one; that costs a request, not a count query.
    const full = devices.length === (query.limit ?? DEFAULT_LIST_LIMIT)
    return { devices: devices.map(toDeviceView), next: full ? devices[devices.length - 1]!.deviceId : null }
  })

  api.get('/devices/:id', async (request): Promise<DeviceDetail> => {
    const device = await mustGet(deps, request)
    const view: DeviceDetail = toDeviceView(device)
    if (deps.deviceConnection) view.live = deps.deviceConnection(device.deviceId)
    if (deps.connectedInstance) view.instanceId = await deps.connectedInstance(device.deviceId)
    return view
  })

  api.delete('/devices/:id', async (request, reply) => {
    const { id } = parseWith(deviceParams, request.params, 'path')
    await registry.remove(id)
    notify(request, id, 'removed')
    return reply.code(204).send()
  })

  api.patch('/devices/:id', async (request): Promise<DeviceView> => {
    const { id } = parseWith(deviceParams, request.params, 'path')
    const body = parseWith(patchDeviceBody, request.body, 'request body')
    // Password first: it is the change that can still be refused (a password device cannot drop
    // its password), and refusing it must not leave a status change half applied.
    let device: Device | undefined
    if (body.password !== undefined) {
      device = await registry.setPassword(id, body.password)
      notify(request, id, 'password-changed')
    }
    if (body.status !== undefined) {
      device = await registry.setStatus(id, body.status)
      if (body.status === 'disabled') notify(request, id, 'disabled')
    }
    return toDeviceView(device!)
  })

  // Kick: the device's connection is closed wherever it is (the device may connect again at once).
  api.post('/devices/:id/disconnect', async (request, reply) => {
    const device = await mustGet(deps, request)
    notify(request, device.deviceId, 'kicked')
    return reply.code(202).send({ deviceId: device.deviceId, disconnecting: true })
  })

  api.post('/devices/:id/keys/rotate', async (request): Promise<DeviceWithConnectionString> => {
    const { id } = parseWith(deviceParams, request.params, 'path')
    // An empty POST (no body at all) means "rotate the primary key".
    const { key } = parseWith(rotateKeyBody, request.body ?? {}, 'request body')
    const device = await registry.rotateKey(id, key)
    notify(request, id, 'keys-rotated')
    return withConnectionString(device)
  })
}

async function mustGet(deps: ApiDeps, request: FastifyRequest): Promise<Device> {
  const { id } = parseWith(deviceParams, request.params, 'path')
  const device = await deps.registry.get(id)
  if (!device) throw new GatewayError('E_DEVICE_NOT_FOUND', `device "${id}" not found`, { deviceId: id })
  return device
}

/**
 * The change is committed before the gateway hears of it; a failing listener is logged, never
 * turned into a failed request (a retry would fail differently, e.g. 404 after a removal).
 */
function changeNotifier(deps: ApiDeps): (request: FastifyRequest, deviceId: string, change: DeviceChange) => void {
  return (request, deviceId, change) => {
    if (!deps.onDeviceChanged) return
    try {
      deps.onDeviceChanged(deviceId, change)
    } catch (err) {
      request.log.error({ err, deviceId, change }, 'onDeviceChanged listener failed')
    }
  }
}
