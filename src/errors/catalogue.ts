/**
 * The one error catalogue. Every error the gateway reports to a device, an API caller, the CLI
 * or the log carries a stable code from this table; callers branch on `code`, never on messages.
 * `docs/errors.md` lists every code (a unit test keeps the two in step).
 *
 * connack: the MQTT 3.1.1 CONNACK return code used when the error ends a CONNECT (1 unacceptable
 *   protocol version, 2 identifier rejected, 3 server unavailable, 4 bad user name or password,
 *   5 not authorized).
 * http: the status the HTTP API answers with.
 */
export const ERROR_CODES = {
  E_CONFIG_INVALID: { http: 500, connack: 3, summary: 'The configuration failed validation.' },
  E_BAD_REQUEST: { http: 400, connack: 3, summary: 'An API request body, query or parameter is invalid.' },
  E_UNAUTHORIZED: { http: 401, connack: 5, summary: 'The API request has no valid admin bearer token.' },
  E_NOT_FOUND: { http: 404, connack: 5, summary: 'The API route or resource does not exist.' },
  E_INTERNAL: { http: 500, connack: 3, summary: 'An unexpected internal failure; details are in the log only.' },
  E_NO_DATA: { http: 404, connack: 3, summary: 'A command that only reads found no gateway data in the data directory it was given (no gateway has run there); nothing was created.' },
  E_LISTEN_FAILED: { http: 500, connack: 3, summary: 'A listener could not bind its address (in use, or a privileged port without the right); the gateway did not start and exits.' },
  E_INTERNALS_CHANGED: { http: 500, connack: 3, summary: 'An Aedes or mqtt-packet internal the gateway relies on is missing or changed (a version other than the pinned one is installed); the gateway does not start.' },

  E_DEVICE_ID_INVALID: { http: 400, connack: 2, summary: 'The device id breaks the IoT Hub id rules.' },
  E_DEVICE_NOT_FOUND: { http: 404, connack: 5, summary: 'No device with that id is registered.' },
  E_DEVICE_EXISTS: { http: 409, connack: 5, summary: 'A device with that id is already registered.' },
  E_DEVICE_DISABLED: { http: 403, connack: 5, summary: 'The device is registered but disabled.' },
  E_REGISTRY_UNAVAILABLE: { http: 503, connack: 3, summary: 'The shared state (device registry, queues, sessions, routes) cannot be used: its SQLite file stayed locked past busy_timeout, cannot be opened, or was written by a newer streamgate; or PostgreSQL refused, dropped or timed out the connection or the statement.' },

  E_AUTH_CLIENT_ID_MISMATCH: { http: 401, connack: 2, summary: 'The MQTT client id does not equal the device id in the user name.' },
  E_AUTH_USERNAME_INVALID: { http: 401, connack: 4, summary: 'The MQTT user name is neither `<host>/<deviceId>/?...` nor a bare device id.' },
  E_AUTH_CREDENTIALS_MISSING: { http: 401, connack: 4, summary: 'The CONNECT carried no password (SAS token or device password).' },
  E_AUTH_TOKEN_MALFORMED: { http: 401, connack: 4, summary: 'The SAS token cannot be parsed.' },
  E_AUTH_EXPIRED: { http: 401, connack: 5, summary: 'The SAS token has expired (after the allowed clock skew).' },
  E_AUTH_AUDIENCE: { http: 401, connack: 5, summary: 'The SAS token resource (`sr`) names another host or device.' },
  E_AUTH_SIGNATURE: { http: 401, connack: 5, summary: 'The SAS token signature matches neither device key.' },
  E_AUTH_PASSWORD: { http: 401, connack: 5, summary: 'The device password is wrong, or the device has no password.' },
  E_AUTH_METHOD: { http: 401, connack: 5, summary: 'The credential kind is not allowed for this device (a password device presented a SAS token, or a SAS or password device only a client certificate).' },
  E_AUTH_CERT_EXPIRED: { http: 401, connack: 5, summary: 'The device certificate presented over TLS has expired.' },
  E_AUTH_CERT_NOT_YET_VALID: { http: 401, connack: 5, summary: 'The device certificate presented over TLS is not valid yet.' },
  E_AUTH_CERT_UNTRUSTED: { http: 401, connack: 5, summary: 'The device certificate matches neither the registered thumbprint nor a registered CA (with subject CN = device id), or an X.509 device connected without one.' },
  E_AUTH_RATE_LIMITED: { http: 429, connack: 3, summary: 'Too many failed password attempts from this address at this device; retry later.' },
  E_AUTH_BUSY: { http: 503, connack: 3, summary: 'Password checks are queued to capacity (auth.maxQueuedHashes, or auth.maxQueuedHashesPerAddress for this address); retry later.' },

  E_TOPIC_FORBIDDEN: { http: 403, connack: 5, summary: 'A device published or subscribed outside its own IoT Hub topics; the connection is closed.' },
  E_QOS_UNSUPPORTED: { http: 400, connack: 5, summary: 'QoS 2 is not supported (as in IoT Hub); the connection is closed.' },
  E_PAYLOAD_TOO_LARGE: { http: 413, connack: 5, summary: 'A payload exceeds the configured maximum; the connection is closed.' },
  E_PROTOCOL_ERROR: { http: 400, connack: 3, summary: 'A malformed or unexpected MQTT packet (including a string that is not valid UTF-8 [MQTT-1.5.3-1]); the connection is closed.' },
  E_PROTOCOL_VERSION: { http: 400, connack: 1, summary: 'The CONNECT asks for a protocol level other than MQTT 3.1 or 3.1.1; answered with CONNACK 1 [MQTT-3.1.2-2].' },
  E_PACKET_TOO_LARGE: { http: 413, connack: 3, summary: 'A packet exceeds its limit (limits.maxConnectPacketBytes before CONNACK, limits.maxSubscribePacketBytes for SUBSCRIBE); the connection is closed when its length is read.' },
  E_CONNECTION_LIMIT: { http: 503, connack: 3, summary: 'The gateway holds its maximum of connections (limits.maxConnections, http.maxConnections); new ones are closed at accept.' },
  E_PENDING_LIMIT: { http: 503, connack: 3, summary: 'Too many connections not yet authenticated, in all (the oldest is closed) or from this address (the new one is closed).' },
  E_SLOW_CONSUMER: { http: 503, connack: 3, summary: 'The device does not read what the gateway sends: past limits.maxOutboundBytes it is no longer read, past twice that or after limits.outboundDrainSeconds it is disconnected.' },
  E_PROPERTY_BAG_INVALID: { http: 400, connack: 5, summary: 'A topic property bag is not valid percent-encoding.' },

  E_STREAM_UNAVAILABLE: { http: 503, connack: 3, summary: 'The event stream cannot take records right now; nothing is acknowledged.' },
  E_STREAM_TOPIC_UNKNOWN: { http: 404, connack: 3, summary: 'The stream topic does not exist.' },
  E_STREAM_CLOSED: { http: 503, connack: 3, summary: 'The event stream has been stopped.' },
  E_SHUTTING_DOWN: { http: 503, connack: 3, summary: 'The gateway is shutting down.' },

  E_QUEUE_FULL: { http: 409, connack: 3, summary: "The device's cloud-to-device queue holds its maximum of messages (commands.maxQueueDepth); IoT Hub 403004." },
  E_DEVICE_OFFLINE: { http: 404, connack: 3, summary: 'The device is not connected, or not subscribed to direct methods, within the connect timeout; IoT Hub 404103.' },
  E_METHOD_TIMEOUT: { http: 504, connack: 3, summary: 'The device did not answer the direct method within its response timeout; IoT Hub 504101.' },
  E_TWIN_TOO_LARGE: { http: 413, connack: 3, summary: 'A twin section would exceed commands.maxTwinSectionBytes after the patch; nothing is changed.' },
  E_TWIN_TOO_DEEP: { http: 400, connack: 3, summary: 'A twin patch nests objects or arrays deeper than commands.maxTwinDepth (IoT Hub: 10); nothing is changed.' },
  E_GATEWAY_NOT_RUNNING: { http: 503, connack: 3, summary: 'The CLI command needs a running gateway on the data directory (send, invoke, twin, device-demo) and found none.' },
  E_TWIN_VERSION_MISMATCH: { http: 412, connack: 3, summary: 'The If-Match version does not equal the current desired-properties version; nothing is changed.' },

  E_ROUTE_QUERY_INVALID: { http: 400, connack: 3, summary: 'A route condition does not parse (IoT Hub routing query syntax) or exceeds its length or nesting bound; the message gives the column.' },
  E_ROUTE_NOT_FOUND: { http: 404, connack: 3, summary: 'No route with that name exists.' },
  E_ENDPOINT_NOT_FOUND: { http: 404, connack: 3, summary: 'No routing endpoint with that name exists (a route names an endpoint that was never defined).' },
  E_ENDPOINT_IN_USE: { http: 409, connack: 3, summary: 'The routing endpoint is named by a route; remove or change the route first.' },
  E_ENDPOINT_DELIVERY: { http: 502, connack: 3, summary: 'A routing endpoint refused or did not answer a delivery (webhook status, timeout, connection error); retried with back-off, then dead-lettered.' },
  E_AGGREGATE_NOT_FOUND: { http: 404, connack: 3, summary: 'No aggregate with that name exists (an alert rule names an aggregate that was never defined).' },
  E_AGGREGATE_IN_USE: { http: 409, connack: 3, summary: 'The aggregate is read by an alert rule; remove or change the rule first.' },
  E_ALERT_RULE_NOT_FOUND: { http: 404, connack: 3, summary: 'No alert rule with that name exists.' },
} as const

export type ErrorCode = keyof typeof ERROR_CODES

export class GatewayError extends Error {
  readonly code: ErrorCode
  /** Extra, non-secret facts for the log (never tokens, keys or payloads). */
  readonly details: Record<string, unknown> | undefined

  constructor(code: ErrorCode, message: string, details?: Record<string, unknown>, options?: { cause?: unknown }) {
    super(message, options)
    this.name = 'GatewayError'
    this.code = code
    this.details = details
  }

  get httpStatus(): number {
    return ERROR_CODES[this.code].http
  }

  /** Aedes reads `returnCode` from an authenticate error to choose the CONNACK code. */
  get returnCode(): number {
    return ERROR_CODES[this.code].connack
  }
}

export function isGatewayError(err: unknown): err is GatewayError {
  return err instanceof GatewayError
}

/** Wrap anything thrown into a GatewayError, keeping a GatewayError as it is. */
export function toGatewayError(err: unknown, fallback: ErrorCode = 'E_INTERNAL'): GatewayError {
  if (isGatewayError(err)) return err
  const message = err instanceof Error ? err.message : String(err)
  return new GatewayError(fallback, message, undefined, { cause: err })
}
