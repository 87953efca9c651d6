import { z } from 'zod'
import { MAX_LIST_LIMIT } from '../registry/validation.js'

/**
 * Request shapes of the device routes. Objects are strict (an unknown key is a 400, so a typo
 * such as `satus` is not silently ignored). Id syntax, key encoding and password length are left
 * to the registry, so the API, the CLI and every backend report them with the same codes
 * (E_DEVICE_ID_INVALID, E_BAD_REQUEST).
 */
const status = z.enum(['enabled', 'disabled'])

export const createDeviceBody = z.strictObject({
  deviceId: z.string(),
  authMethod: z.enum(['sas', 'password', 'x509-thumbprint', 'x509-ca']).optional(),
  thumbprint: z.string().optional(),
  password: z.string().optional(),
  status: status.optional(),
  primaryKey: z.string().optional(),
  secondaryKey: z.string().optional(),
})

export const patchDeviceBody = z
  .strictObject({
    status: status.optional(),
    /** null removes the password (not allowed for a password device). */
    password: z.string().nullable().optional(),
  })
  .refine((body) => body.status !== undefined || body.password !== undefined, {
    message: 'give at least one of status, password',
  })

export const rotateKeyBody = z.strictObject({
  key: z.enum(['primary', 'secondary', 'both']).default('primary'),
})

export const listQuery = z.strictObject({
  limit: z.coerce.number().int().min(1).max(MAX_LIST_LIMIT).optional(),
  after: z.string().optional(),
  /** Only ids starting with this; at most a device id's length. */
  prefix: z.string().max(128).optional(),
})

export const deviceParams = z.strictObject({ id: z.string() })
