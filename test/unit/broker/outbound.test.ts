import { createServer, connect, type Server, type Socket } from 'node:net'
import { afterEach, describe, expect, it } from 'vitest'
import type { Client } from 'aedes'
import { drained, writePublish, type OutboundBound } from '../../../src/broker/outbound.js'
import type { GatewayError } from '../../../src/errors/catalogue.js'

/** A real loopback connection whose far end reads nothing, wrapped as the fields of an Aedes client outbound.ts uses. */
async function stalledPair(): Promise<{ client: Client; server: Server; reader: Socket; writer: Socket }> {
  let reader!: Socket
  const server = createServer((s) => {
    reader = s
    s.pause()
  })
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r))
  const writer = connect({ host: '127.0.0.1', port: (server.address() as { port: number }).port })
  await new Promise<void>((r) => writer.once('connect', () => r()))
  await new Promise((r) => setTimeout(r, 20))
  const client = { conn: writer, connected: true, closed: false } as unknown as Client
  return { client, server, reader, writer }
}

describe('outbound bound', () => {
  const cleanup: Array<() => void> = []
  afterEach(() => cleanup.splice(0).forEach((f) => f()))

  it('writes within the bound, waits while over it, and gives up after drainMs', async () => {
    const { client, server, reader, writer } = await stalledPair()
    cleanup.push(() => (writer.destroy(), reader.destroy(), server.close()))
    const overflows: string[] = []
    const bound: OutboundBound = { maxBytes: 256 * 1024, drainMs: 300, overflow: (_c, e: GatewayError) => overflows.push(e.code) }
    expect(drained(client, bound)).toBeNull()
    const payload = Buffer.alloc(64 * 1024)
    // Fill the kernel buffers first, then the socket's own: the reader reads nothing.
    while (writer.writableLength <= bound.maxBytes) await writePublish(client, { topic: 't', payload, qos: 0 }, bound)
    const waiting = drained(client, bound)
    expect(waiting).not.toBeNull()
    const t0 = Date.now()
    await expect(waiting).rejects.toMatchObject({ code: 'E_SLOW_CONSUMER' })
    expect(Date.now() - t0).toBeGreaterThanOrEqual(250)
    expect(overflows).toEqual(['E_SLOW_CONSUMER'])
  })

  it('resolves the wait once the reader drains the buffer', async () => {
    const { client, server, reader, writer } = await stalledPair()
    cleanup.push(() => (writer.destroy(), reader.destroy(), server.close()))
    const bound: OutboundBound = { maxBytes: 256 * 1024, drainMs: 10_000, overflow: () => undefined }
    while (writer.writableLength <= bound.maxBytes) await writePublish(client, { topic: 't', payload: Buffer.alloc(64 * 1024), qos: 0 }, bound)
    const waiting = drained(client, bound)!
    reader.resume()
    await expect(waiting).resolves.toBeUndefined()
  })

  it('refuses a write that would take the buffer past twice the bound, and reports the overflow', async () => {
    const { client, server, reader, writer } = await stalledPair()
    cleanup.push(() => (writer.destroy(), reader.destroy(), server.close()))
    const overflows: string[] = []
    const bound: OutboundBound = { maxBytes: 256 * 1024, drainMs: 10_000, overflow: (_c, e) => overflows.push(e.code) }
    let refused: unknown = null
    for (let i = 0; i < 10_000 && refused === null; i++) {
      await writePublish(client, { topic: 't', payload: Buffer.alloc(64 * 1024), qos: 0 }, bound).catch((err: unknown) => (refused = err))
    }
    expect(refused).toMatchObject({ code: 'E_SLOW_CONSUMER' })
    expect(writer.writableLength).toBeLessThanOrEqual(2 * bound.maxBytes)
    expect(overflows).toEqual(['E_SLOW_CONSUMER'])
  })
})
