import { z } from 'zod'
import { ACK_MODES } from '../commands/types.js'

/**
 * Request shapes of the message, method and twin routes (strict objects: a typo is a 400).
 * Limits that come from the configuration (TTL, sizes) are checked by the command services, so the
 * API, the CLI and the `commands` topic report them with the same codes.
 */
export const sendMessageBody = z.strictObject({
  /** A string is sent as its UTF-8 bytes; any other JSON value as its JSON text. */
  payload: z.unknown().refine((v) => v !== undefined, { message: 'payload is required' }),
  properties: z.record(z.string(), z.string()).optional(),
  messageId: z.string().optional(),
  ttlSeconds: z.number().int().optional(),
  ack: z.enum(ACK_MODES).optional(),
  contentType: z.string().min(1).max(256).optional(),
  contentEncoding: z.string().min(1).max(256).optional(),
})

export const invokeMethodBody = z.strictObject({
  payload: z.unknown().optional(),
  responseTimeoutSeconds: z.number().int().min(5).max(300).default(30),
  connectTimeoutSeconds: z.number().int().min(0).max(300).default(0),
})

/** Desired properties, tags (IoT Hub: set by the back end, never seen by the device), or both. */
export const patchTwinBody = z
  .strictObject({
    desired: z.record(z.string(), z.unknown()).optional(),
    tags: z.record(z.string(), z.unknown()).optional(),
  })
  .refine((body) => body.desired !== undefined || body.tags !== undefined, 'give desired, tags or both')

export const methodParams = z.strictObject({ id: z.string(), name: z.string() })

/** `If-Match: 3` or `If-Match: "3"` (an ETag is quoted); `*` means any version. */
export const ifMatchHeader = z
  .string()
  .regex(/^(\*|"?\d{1,15}"?)$/, 'If-Match must be a twin version number (or *)')
  .transform((v) => (v === '*' ? undefined : Number(v.replaceAll('"', ''))))
  .optional()
