import { describe, expect, it } from 'vitest'
import { HashGate, type HashGateOptions, type HashRefusal, type HashTicket } from '../../../src/auth/hash-gate.js'
import { GatewayError } from '../../../src/errors/catalogue.js'

const settle = async (): Promise<void> => {
  for (let i = 0; i < 5; i++) await Promise.resolve()
}

/**
 * The gate runs whatever check it is handed; here each check is a promise the test settles, so
 * the order in which checks start is observed exactly, without timing.
 */
class Checks {
  readonly started: string[] = []
  private readonly finishers = new Map<string, () => void>()

  /**
   * Admit `name` from `address` and run a check that ends when `finish(name)` is called. A refusal
   * at admission (thrown) comes back as a rejected `result`, like a refusal while waiting.
   */
  submit(gate: HashGate, address: string, name: string): { result: Promise<string> } {
    let ticket: HashTicket
    try {
      ticket = gate.admit(address)
    } catch (err) {
      const result = Promise.reject(err as Error)
      result.catch(() => undefined)
      return { result }
    }
    const result = ticket.run(
      () =>
        new Promise<string>((resolve) => {
          this.started.push(name)
          this.finishers.set(name, () => resolve(name))
        }),
    )
    // Refusals are inspected through `result` by the tests that expect them.
    result.catch(() => undefined)
    return { result }
  }

  async finish(name: string): Promise<void> {
    await settle()
    const f = this.finishers.get(name)
    if (f === undefined) throw new Error(`${name} is not running`)
    f()
    // Let the gate hand the slot on and the next check start.
    await settle()
  }
}

function gateWith(options: Partial<HashGateOptions> = {}): { gate: HashGate; refusals: HashRefusal[]; waits: number[] } {
  const refusals: HashRefusal[] = []
  const waits: number[] = []
  const gate = new HashGate({
    maxConcurrent: 1,
    maxQueued: 64,
    maxQueuedPerAddress: 8,
    observer: { refused: (r) => refusals.push(r), started: (ms) => waits.push(ms) },
    ...options,
  })
  return { gate, refusals, waits }
}

async function busyReason(result: Promise<unknown>): Promise<unknown> {
  const err = await result.then(
    () => null,
    (e: unknown) => e,
  )
  expect(err).toBeInstanceOf(GatewayError)
  expect((err as GatewayError).code).toBe('E_AUTH_BUSY')
  expect((err as GatewayError).returnCode).toBe(3)
  return (err as GatewayError).details?.reason
}

describe('HashGate', () => {
  it('runs at most maxConcurrent checks at once and starts waiting ones as slots free', async () => {
    const { gate } = gateWith({ maxConcurrent: 2 })
    const c = new Checks()
    for (const n of ['a1', 'a2', 'a3', 'a4']) c.submit(gate, 'A', n)
    await settle()
    expect(c.started).toEqual(['a1', 'a2'])
    expect(gate.stats).toEqual({ running: 2, waiting: 2 })
    await c.finish('a2')
    expect(c.started).toEqual(['a1', 'a2', 'a3'])
    await c.finish('a1')
    await c.finish('a3')
    await c.finish('a4')
    expect(c.started).toEqual(['a1', 'a2', 'a3', 'a4'])
    expect(gate.stats).toEqual({ running: 0, waiting: 0 })
  })

  it('serves waiting addresses in turn, so a long queue from one address delays another by one check', async () => {
    const { gate } = gateWith()
    const c = new Checks()
    for (let i = 1; i <= 5; i++) c.submit(gate, 'A', `a${i}`)
    c.submit(gate, 'B', 'b1')
    c.submit(gate, 'B', 'b2')
    c.submit(gate, 'C', 'c1')
    for (const n of ['a1', 'a2', 'b1', 'c1', 'a3', 'b2', 'a4']) await c.finish(n)
    // a1 held the slot at once; then A, B, C in turn, the served address moving to the back.
    expect(c.started).toEqual(['a1', 'a2', 'b1', 'c1', 'a3', 'b2', 'a4', 'a5'])
  })

  it('serves a deprioritised address only while nobody else waits, asking at each dispatch', async () => {
    const low = new Set(['A'])
    const { gate } = gateWith({ deprioritised: (address) => low.has(address) })
    const c = new Checks()
    c.submit(gate, 'B', 'b1')
    for (let i = 1; i <= 3; i++) c.submit(gate, 'A', `a${i}`)
    c.submit(gate, 'B', 'b2')
    c.submit(gate, 'C', 'c1')
    await c.finish('b1')
    await c.finish('b2')
    await c.finish('c1')
    expect(c.started).toEqual(['b1', 'b2', 'c1', 'a1'])
    // B fails meanwhile and goes last; A has recovered.
    c.submit(gate, 'B', 'b3')
    low.clear()
    low.add('B')
    await c.finish('a1')
    await c.finish('a2')
    expect(c.started).toEqual(['b1', 'b2', 'c1', 'a1', 'a2', 'a3'])
    await c.finish('a3')
    expect(c.started.at(-1)).toBe('b3')
  })

  it('refuses past maxQueuedPerAddress from one address (E_AUTH_BUSY) while other addresses still queue', async () => {
    const { gate, refusals } = gateWith({ maxQueuedPerAddress: 3 })
    const c = new Checks()
    const results = Array.from({ length: 6 }, (_, i) => c.submit(gate, 'A', `a${i}`).result)
    // One runs, three wait, two are refused.
    expect(await busyReason(results[4]!)).toBe('address-queue-full')
    expect(await busyReason(results[5]!)).toBe('address-queue-full')
    expect(() => gate.admit('A')).toThrow(GatewayError)
    c.submit(gate, 'B', 'b1')
    expect(gate.stats).toEqual({ running: 1, waiting: 4 })
    expect(refusals).toEqual(['address-queue-full', 'address-queue-full', 'address-queue-full'])
  })

  it('when the whole queue is full, drops the newest waiter of the longest queue for a shorter one', async () => {
    const { gate, refusals } = gateWith({ maxQueued: 4, maxQueuedPerAddress: 4 })
    const c = new Checks()
    c.submit(gate, 'A', 'a0')
    const a = [1, 2, 3].map((i) => c.submit(gate, 'A', `a${i}`).result)
    c.submit(gate, 'B', 'b1')
    expect(gate.stats).toEqual({ running: 1, waiting: 4 })
    // C has none waiting and A three: A's newest (a3) makes room.
    c.submit(gate, 'C', 'c1')
    expect(await busyReason(a[2]!)).toBe('queue-full')
    expect(gate.stats).toEqual({ running: 1, waiting: 4 })
    // Now A 2, B 1, C 1: D takes a2's place, and after that no queue is two longer than a newcomer's.
    c.submit(gate, 'D', 'd1')
    expect(await busyReason(a[1]!)).toBe('queue-full')
    expect(() => gate.admit('E')).toThrow(GatewayError)
    expect(refusals).toEqual(['queue-full', 'queue-full', 'queue-full'])
    for (const n of ['a0', 'a1', 'b1', 'c1']) await c.finish(n)
    expect(c.started).toEqual(['a0', 'a1', 'b1', 'c1', 'd1'])
  })

  it('refuses a dropped waiter also when its check is handed over only after the drop', async () => {
    const { gate } = gateWith({ maxQueued: 2, maxQueuedPerAddress: 2 })
    const c = new Checks()
    c.submit(gate, 'A', 'a0')
    gate.admit('A')
    const late = gate.admit('A')
    gate.admit('B')
    let ran = false
    expect(
      await busyReason(
        late.run(async () => {
          ran = true
        }),
      ),
    ).toBe('queue-full')
    expect(ran).toBe(false)
  })

  it('gives a place back on release, once, whether waiting or running', async () => {
    const { gate } = gateWith()
    const c = new Checks()
    const first = gate.admit('A')
    const second = gate.admit('A')
    c.submit(gate, 'B', 'b1')
    expect(gate.stats).toEqual({ running: 1, waiting: 2 })
    second.release()
    second.release()
    expect(gate.stats).toEqual({ running: 1, waiting: 1 })
    first.release()
    first.release()
    await settle()
    expect(c.started).toEqual(['b1'])
    expect(gate.stats).toEqual({ running: 1, waiting: 0 })
    await expect(first.run(async () => 'x')).rejects.toMatchObject({ code: 'E_INTERNAL' })
    await c.finish('b1')
    expect(gate.stats).toEqual({ running: 0, waiting: 0 })
  })

  it('frees the slot when a check throws, and reports how long each check waited', async () => {
    const { gate, waits } = gateWith()
    const failing = gate.admit('A')
    const next = gate.admit('B')
    await expect(failing.run(() => Promise.reject(new Error('scrypt failed')))).rejects.toThrow('scrypt failed')
    expect(await next.run(async () => 'ran')).toBe('ran')
    expect(gate.stats).toEqual({ running: 0, waiting: 0 })
    expect(waits).toHaveLength(2)
    for (const ms of waits) expect(ms).toBeGreaterThanOrEqual(0)
  })

  it('refuses nonsensical options', () => {
    expect(() => new HashGate({ maxConcurrent: 0, maxQueued: 1, maxQueuedPerAddress: 1 })).toThrow(RangeError)
    expect(() => new HashGate({ maxConcurrent: 1, maxQueued: 0, maxQueuedPerAddress: 1 })).toThrow(RangeError)
    expect(() => new HashGate({ maxConcurrent: 1, maxQueued: 1, maxQueuedPerAddress: 1.5 })).toThrow(RangeError)
  })
})
