import type { X509Certificate } from 'node:crypto'
import type { GatewayConfig } from '../config/schema.js'
import type { GatewayMetrics } from '../observability/metrics.js'
import type { DeviceRegistry } from '../registry/types.js'
import { Authenticator } from './authenticator.js'
import { PasswordGuard, type PasswordGuardObserver } from './password-guard.js'

/** The metrics the password checks report to (GatewayMetrics has them all). */
export type PasswordMetrics = Pick<GatewayMetrics, 'passwordChecks' | 'passwordRefusals' | 'passwordWaitSeconds' | 'passwordCheckStats'>

export interface AuthenticatorOptions {
  /** Clock in milliseconds (tests). */
  now?: () => number
  /** CAs registered with `streamgate ca add`, for x509-ca devices. */
  trustedCas?: () => readonly X509Certificate[]
  metrics?: PasswordMetrics
}

function metricsObserver(metrics: PasswordMetrics): PasswordGuardObserver {
  return {
    refused: (reason) => metrics.passwordRefusals.inc({ reason }),
    started: (waitedMs) => {
      metrics.passwordChecks.inc()
      metrics.passwordWaitSeconds.observe(waitedMs / 1000)
    },
  }
}

/** The Authenticator as configured by `hostname` and `auth.*`, with its limiters and password check queue. */
export function createAuthenticator(config: Pick<GatewayConfig, 'hostname' | 'auth'>, registry: Pick<DeviceRegistry, 'get'>, options: AuthenticatorOptions = {}): Authenticator {
  const { auth } = config
  const { now, trustedCas, metrics } = options
  const passwords = new PasswordGuard({
    maxFailuresPerPair: auth.maxFailuresPerDevice,
    maxFailuresPerAddress: auth.maxFailuresPerAddress,
    windowMs: auth.failureWindowSeconds * 1000,
    maxConcurrentHashes: auth.maxConcurrentHashes,
    maxQueuedHashes: auth.maxQueuedHashes,
    maxQueuedHashesPerAddress: auth.maxQueuedHashesPerAddress,
    ...(now === undefined ? {} : { now }),
    ...(metrics === undefined ? {} : { observer: metricsObserver(metrics) }),
  })
  if (metrics !== undefined) metrics.passwordCheckStats = () => passwords.gate.stats
  return new Authenticator({
    registry,
    hostname: config.hostname,
    clockSkewSeconds: auth.clockSkewSeconds,
    passwords,
    x509MaxIntermediates: auth.x509MaxIntermediates,
    ...(now === undefined ? {} : { now }),
    ...(trustedCas === undefined ? {} : { trustedCas }),
  })
}
