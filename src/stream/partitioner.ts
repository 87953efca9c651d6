/**
 * Key → partition mapping shared by every EventStream backend. It reproduces the Apache Kafka
 * Java client (`Utils.murmur2`, `Utils.toPositive`, the default partitioner's
 * `toPositive(murmur2(keyBytes)) % numPartitions`), so a device's records land on the same
 * partition whether the gateway writes to Kafka or to the embedded stream, and Java/kafkajs
 * producers writing the same topic agree with us.
 */

const SEED = 0x9747b28c
const M = 0x5bd1e995
const R = 24

/**
 * Kafka's 32-bit murmur2 of `data`, as a signed 32-bit integer (Java `int`). Java's int
 * overflow is emulated with `Math.imul` and `| 0`; `>>>` matches Java's unsigned shift.
 */
export function murmur2(data: Uint8Array): number {
  const length = data.length
  let h = (SEED ^ length) | 0
  const length4 = length >>> 2

  for (let i = 0; i < length4; i++) {
    const i4 = i * 4
    let k = data[i4]! | (data[i4 + 1]! << 8) | (data[i4 + 2]! << 16) | (data[i4 + 3]! << 24)
    k = Math.imul(k, M)
    k ^= k >>> R
    k = Math.imul(k, M)
    h = Math.imul(h, M)
    h ^= k
  }

  // The Java version is a switch with deliberate fall-through over the 1-3 trailing bytes.
  const tail = length & ~3
  const rest = length % 4
  if (rest === 3) h ^= data[tail + 2]! << 16
  if (rest >= 2) h ^= data[tail + 1]! << 8
  if (rest >= 1) {
    h ^= data[tail]!
    h = Math.imul(h, M)
  }

  h ^= h >>> 13
  h = Math.imul(h, M)
  h ^= h >>> 15
  return h | 0
}

/** Kafka's `Utils.toPositive`: clears the sign bit (not `Math.abs`, which fails for MIN_VALUE). */
export function toPositive(n: number): number {
  return n & 0x7fffffff
}

/** The partition of a non-null key: murmur2 over the key's UTF-8 bytes, as Kafka does. */
export function partitionForKey(key: string, partitions: number): number {
  if (!Number.isInteger(partitions) || partitions < 1) {
    throw new RangeError(`partitions must be a positive integer, got ${partitions}`)
  }
  return toPositive(murmur2(Buffer.from(key, 'utf8'))) % partitions
}
