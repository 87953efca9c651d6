import type { Client } from 'aedes'

/**
 * Refuse oversize PUBLISH packets as soon as their fixed header is parsed, before the body is
 * buffered: Aedes' parser (mqtt-packet 9) has no size limit and would otherwise hold a packet of
 * any announced length (up to 256 MiB) in memory. The exact payload check happens again in the
 * ingest pipeline; this guard only bounds memory per connection.
 *
 * It wraps the parser's `_parseLength` step (mqtt-packet internals, pinned with aedes 1.2.0;
 * test/integration/limits.test.ts fails if that changes).
 */
const TOPIC_AND_ID_OVERHEAD = 2 + 65535 + 2

interface ParserInternals {
  packet: { cmd?: string; length: number }
  _parseLength: () => boolean
  emit(event: 'error', err: Error): boolean
}

export function guardPacketSize(client: Client, maxPayloadBytes: number, onOversize: () => void): void {
  const parser = (client as unknown as { _parser?: ParserInternals })._parser
  if (!parser || typeof parser._parseLength !== 'function') {
    throw new Error('aedes/mqtt-packet internals changed: cannot guard packet size')
  }
  const limit = maxPayloadBytes + TOPIC_AND_ID_OVERHEAD
  const original = parser._parseLength.bind(parser)
  parser._parseLength = () => {
    const complete = original()
    if (complete && parser.packet.length > limit && parser.packet.cmd === 'publish') {
      onOversize()
      client.conn.destroy()
      return false
    }
    return complete
  }
}
