import { connectAsync } from 'mqtt'

/**
 * A device that keeps proving the gateway serves real devices while it is fuzzed: every round a
 * new connection (clean session 0, like the Azure SDK), one QoS 1 telemetry publish, its PUBACK,
 * DISCONNECT. The same shape as the hostile harness's canary, for runs outside the tests.
 */

export interface CanaryRound {
  round: number
  startedAt: number
  endedAt: number
  connectMs: number
  pubackMs: number
  mid: string
  error?: string
}

export class CanaryLoop {
  readonly rounds: CanaryRound[] = []
  private running = true
  private readonly done: Promise<void>

  constructor(
    private readonly mqttUrl: string,
    private readonly device: { deviceId: string; password: () => string },
    private readonly tag: string,
    private readonly pauseMs = 100,
  ) {
    this.done = this.loop()
  }

  private async loop(): Promise<void> {
    while (this.running) {
      this.rounds.push(await this.probe(this.rounds.length))
      await new Promise((r) => setTimeout(r, this.pauseMs))
    }
  }

  private async probe(round: number): Promise<CanaryRound> {
    const { deviceId } = this.device
    const mid = `canary-${this.tag}-${round}`
    const startedAt = performance.now()
    const r: CanaryRound = { round, startedAt, endedAt: startedAt, connectMs: 0, pubackMs: 0, mid }
    try {
      const client = await withTimeout(connectAsync(this.mqttUrl, {
        clientId: deviceId,
        username: `localhost/${deviceId}/?api-version=2021-04-12`,
        password: this.device.password(),
        clean: false,
        protocolVersion: 4,
        reconnectPeriod: 0,
        connectTimeout: 10_000,
      }), 12_000, 'no CONNACK within 12 s')
      const t1 = performance.now()
      r.connectMs = t1 - startedAt
      try {
        await withTimeout(client.publishAsync(`devices/${deviceId}/messages/events/%24.mid=${mid}`, `canary ${round}`, { qos: 1 }), 12_000, 'no PUBACK within 12 s')
        r.pubackMs = performance.now() - t1
      } finally {
        await withTimeout(client.endAsync(), 2000, 'DISCONNECT not done').catch(() => client.end(true))
      }
    } catch (err) {
      r.error = (err as Error).message
    }
    r.endedAt = performance.now()
    return r
  }

  /** Let the current round finish. */
  async stop(): Promise<CanaryRound[]> {
    this.running = false
    await this.done
    return this.rounds
  }
}

/**
 * mqtt.js' connectAsync never settles when the server closes the socket after CONNECT without a
 * CONNACK (reconnectPeriod 0): a canary must not wait forever for a gateway that just died.
 */
function withTimeout<T>(p: Promise<T>, ms: number, what: string): Promise<T> {
  let timer: NodeJS.Timeout | undefined
  const timeout = new Promise<never>((_, reject) => {
    timer = setTimeout(() => reject(new Error(what)), ms)
  })
  return Promise.race([p, timeout]).finally(() => clearTimeout(timer))
}
