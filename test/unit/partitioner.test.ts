import { randomBytes } from 'node:crypto'
import { describe, expect, it } from 'vitest'
import { Partitioners, type PartitionMetadata } from 'kafkajs'
import { murmur2, partitionForKey, toPositive } from '../../src/stream/partitioner.js'

describe('murmur2', () => {
  // The vectors of Kafka's own UtilsTest.testMurmur2 (clients/src/test/java/org/apache/kafka/common/utils).
  const kafkaVectors: Array<[string, Buffer, number]> = [
    ['21', Buffer.from('21'), -973932308],
    ['foobar', Buffer.from('foobar'), -790332482],
    ['a-little-bit-long-string', Buffer.from('a-little-bit-long-string'), -985981536],
    ['a-little-bit-longer-string', Buffer.from('a-little-bit-longer-string'), -1486304829],
    ['lkjh234lh9fiuh90y23oiuhsafujhadof229phr9h19h89h8', Buffer.from('lkjh234lh9fiuh90y23oiuhsafujhadof229phr9h19h89h8'), -58897971],
    ["bytes 'a','b','c'", Buffer.from([0x61, 0x62, 0x63]), 479470107],
  ]

  it.each(kafkaVectors)('matches Kafka Utils.murmur2 for %s', (_label, bytes, expected) => {
    expect(murmur2(bytes)).toBe(expected)
  })
})

describe('toPositive', () => {
  it('clears the sign bit rather than negating', () => {
    expect(toPositive(-1)).toBe(0x7fffffff)
    expect(toPositive(-(2 ** 31))).toBe(0)
    expect(toPositive(5)).toBe(5)
    expect(toPositive(-973932308)).toBe(-973932308 & 0x7fffffff)
  })
})

describe('partitionForKey', () => {
  it('uses the UTF-8 bytes of the key', () => {
    const key = 'gerät-ü-😀'
    expect(partitionForKey(key, 7)).toBe(toPositive(murmur2(Buffer.from(key, 'utf8'))) % 7)
  })

  it('rejects a partition count below 1', () => {
    expect(() => partitionForKey('a', 0)).toThrow(RangeError)
  })

  it('agrees with kafkajs JavaCompatiblePartitioner for random keys and partition counts', () => {
    const partitioner = Partitioners.JavaCompatiblePartitioner()
    for (let i = 0; i < 500; i++) {
      const partitions = 1 + (i % 64)
      const partitionMetadata = metadata(partitions)
      // Mix ASCII device ids with arbitrary Unicode so multi-byte UTF-8 and every tail length occur.
      const key = i % 2 === 0 ? `device-${randomBytes(1 + (i % 13)).toString('hex')}` : randomUnicode(1 + (i % 9))
      const expected = partitioner({ topic: 't', partitionMetadata, message: { key, value: null } })
      expect(partitionForKey(key, partitions), `key ${JSON.stringify(key)} over ${partitions}`).toBe(expected)
    }
  })

  it('hashes arbitrary bytes (>= 0x80, every tail length) like kafkajs does for Buffer keys', () => {
    const partitioner = Partitioners.JavaCompatiblePartitioner()
    const partitions = 1021 // a prime, so most of the hash takes part in the comparison
    const partitionMetadata = metadata(partitions)
    for (let i = 0; i < 300; i++) {
      const key = randomBytes(i % 40)
      const expected = partitioner({ topic: 't', partitionMetadata, message: { key, value: null } })
      expect(toPositive(murmur2(key)) % partitions, key.toString('hex')).toBe(expected)
    }
  })
})

function randomUnicode(length: number): string {
  const codePoints = [0x41, 0xe9, 0x20ac, 0x1f600, 0x4e2d, 0x30, 0x7a]
  let out = ''
  for (let i = 0; i < length; i++) {
    out += String.fromCodePoint(codePoints[randomBytes(1)[0]! % codePoints.length]!)
  }
  return out
}

/** Partition metadata as kafkajs hands it to a partitioner; every partition has a leader. */
function metadata(partitions: number): PartitionMetadata[] {
  return Array.from({ length: partitions }, (_, partitionId) => ({
    partitionId,
    leader: 0,
    partitionErrorCode: 0,
    replicas: [0],
    isr: [0],
  }))
}
