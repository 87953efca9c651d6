import { createServer } from 'node:net'
import { Aedes } from 'aedes'

/**
 * The baseline for bench/ingest: Aedes 1.2 with no hooks, default in-memory persistence,
 * QoS 1 PUBACKs written as fast as it can. Prints `listening <port>` once ready.
 */
const broker = await Aedes.createBroker()
const server = createServer((socket) => {
  socket.setNoDelay(true)
  broker.handle(socket)
})
server.listen({ host: '127.0.0.1', port: Number(process.argv[2] ?? 0) }, () => {
  const address = server.address()
  process.stdout.write(`listening ${typeof address === 'object' && address ? address.port : 0}\n`)
})
process.on('SIGTERM', () => {
  server.close()
  broker.close(() => process.exit(0))
})
