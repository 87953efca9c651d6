import { pino, type Logger, type DestinationStream } from 'pino'

export type { Logger }

/**
 * The one pino root. Components take child loggers bound with `{ component }` (and `deviceId`
 * where there is one). Secrets are redacted wherever they appear under these keys; payloads are
 * never logged above debug.
 */
export const REDACT_PATHS = [
  'password',
  '*.password',
  'token',
  '*.token',
  'sas',
  '*.sas',
  'primaryKey',
  '*.primaryKey',
  'secondaryKey',
  '*.secondaryKey',
  'adminToken',
  '*.adminToken',
  'authorization',
  '*.authorization',
  'req.headers.authorization',
  'passwordHash',
  '*.passwordHash',
]

export function createLogger(level: string, destination?: DestinationStream): Logger {
  return pino(
    {
      level,
      base: { service: 'streamgate' },
      redact: { paths: REDACT_PATHS, censor: '[redacted]' },
      timestamp: pino.stdTimeFunctions.isoTime,
    },
    destination ?? pino.destination({ dest: 2, sync: false }),
  )
}
