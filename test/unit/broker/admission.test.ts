import { createServer, connect, type Server, type Socket } from 'node:net'
import { afterEach, describe, expect, it } from 'vitest'
import { ConnectionAdmission, connectionKey } from '../../../src/broker/admission.js'

/** Real sockets on 127.0.0.1: each accepted one is handed to the admission control under test. */
async function listen(onSocket: (s: Socket) => void): Promise<{ server: Server; port: number }> {
  const server = createServer(onSocket)
  await new Promise<void>((r) => server.listen({ host: '127.0.0.1', port: 0 }, r))
  const address = server.address()
  return { server, port: typeof address === 'object' && address ? address.port : 0 }
}

const until = async (check: () => boolean): Promise<void> => {
  for (let i = 0; i < 200 && !check(); i++) await new Promise((r) => setTimeout(r, 10))
  expect(check()).toBe(true)
}

describe('ConnectionAdmission', () => {
  let server: Server | null = null
  const clients: Socket[] = []
  afterEach(async () => {
    for (const c of clients) c.destroy()
    clients.length = 0
    await new Promise((r) => (server ? server.close(r) : r(undefined)))
    server = null
  })

  it('counts an established connection until it closes, once, after dropping its key', async () => {
    const admission = new ConnectionAdmission({ maxConnections: 10, maxPending: 10, maxPendingPerAddress: 10, maxHttp: 10 }, { refused: () => undefined })
    const accepted: Socket[] = []
    ;({ server } = await listen((s) => {
      expect(admission.admit(s, 'mqtt')).toBe(true)
      accepted.push(s)
    }))
    const port = (server.address() as { port: number }).port
    for (let i = 0; i < 3; i++) clients.push(connect(port, '127.0.0.1'))
    await until(() => accepted.length === 3)
    expect([admission.mqtt, admission.pending]).toEqual([3, 3])
    admission.established(connectionKey(accepted[0]!))
    admission.established(connectionKey(accepted[1]!))
    // Established twice: counted once.
    admission.established(connectionKey(accepted[1]!))
    expect([admission.mqtt, admission.pending]).toEqual([3, 1])
    clients[0]!.destroy()
    clients[2]!.destroy()
    await until(() => admission.mqtt === 1)
    expect(admission.pending).toBe(0)
    clients[1]!.destroy()
    await until(() => admission.mqtt === 0)
    expect(admission.pending).toBe(0)
  })
})
