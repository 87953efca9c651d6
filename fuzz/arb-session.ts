import fc from 'fast-check'
import { FUZZ_DEVICES, fuzzDeviceId, type MutationPlan, type SessionPlan, type SplitPlan, type StepPlan, type TransportPlan } from './plan.js'
import { anyPacket, connectPacket } from './arb-packets.js'
import { charsOf, memo, sometimes } from './arb-topics.js'
import { MAX_REMAINING_LENGTH } from './wire.js'

/** Byte mutations, steps and whole sessions (one connection each). */

const fraction = fc.nat(65535)
const deviceIds = Array.from({ length: FUZZ_DEVICES }, (_, i) => fuzzDeviceId(i))

export const mutation: fc.Arbitrary<MutationPlan> = fc.oneof(
  { arbitrary: fc.record({ kind: fc.constant('bitflip' as const), flips: fc.array(fc.record({ at: fraction, bit: fc.nat(7) }), { minLength: 1, maxLength: 8 }) }), weight: 4 },
  { arbitrary: fc.record({ kind: fc.constant('set-bytes' as const), writes: fc.array(fc.record({ at: fraction, value: fc.oneof(fc.constantFrom(0x00, 0xff, 0x7f, 0x80, 0xc0), fc.nat(255)) }), { minLength: 1, maxLength: 4 }) }), weight: 2 },
  { arbitrary: fc.record({ kind: fc.constant('truncate' as const), keep: fraction }), weight: 2 },
  {
    arbitrary: fc.record({ kind: fc.constant('length' as const), to: fc.constantFrom('zero' as const, 'minus-one' as const, 'plus-one' as const, 'huge' as const, 'five-bytes' as const, 'random' as const), random: fc.nat(MAX_REMAINING_LENGTH) }),
    weight: 3,
  },
  { arbitrary: fc.record({ kind: fc.constant('string-length' as const), at: fraction, value: fc.oneof(fc.constantFrom(0, 1, 0x7fff, 0xffff), fc.nat(65535)) }), weight: 2 },
  { arbitrary: fc.record({ kind: fc.constant('insert' as const), at: fraction, bytes: fc.uint8Array({ minLength: 1, maxLength: 16 }) }), weight: 1 },
  { arbitrary: fc.record({ kind: fc.constant('delete' as const), at: fraction, count: fc.integer({ min: 1, max: 8 }) }), weight: 1 },
  { arbitrary: fc.record({ kind: fc.constant('flags' as const), nibble: fc.nat(15) }), weight: 1 },
  { arbitrary: fc.record({ kind: fc.constant('append' as const), bytes: fc.uint8Array({ minLength: 1, maxLength: 32 }) }), weight: 1 },
)

const split: fc.Arbitrary<SplitPlan> = fc.record({ cuts: fc.array(fraction, { minLength: 1, maxLength: 5 }), trickleMs: fc.constantFrom(0, 0, 1, 3) })

const pause = fc.oneof({ arbitrary: fc.constant(0), weight: 12 }, { arbitrary: fc.integer({ min: 1, max: 30 }), weight: 1 })

/** Lengths announced by `oversize` steps: past every limit, up to the 4-byte maximum `ff ff ff 7f`. */
const announced = fc.oneof(
  fc.constantFrom(9000, 16_385, 65_536, 1_048_576, 16_777_216, MAX_REMAINING_LENGTH),
  fc.integer({ min: 8193, max: MAX_REMAINING_LENGTH }),
)

const oversize = fc.record({
  kind: fc.constant('oversize' as const),
  // CONNECT, PUBLISH (QoS 0 and 1), SUBSCRIBE, UNSUBSCRIBE, PINGREQ, PUBACK.
  firstByte: fc.constantFrom(0x10, 0x30, 0x32, 0x82, 0xa2, 0xc0, 0x40),
  announced,
  filler: fc.oneof(fc.constant(0), fc.integer({ min: 1, max: 4096 })),
  pauseMs: pause,
})

const garbage = fc.record({ kind: fc.constant('garbage' as const), bytes: fc.uint8Array({ minLength: 1, maxLength: 512 }), pauseMs: pause })

const step = memo((deviceId: string, otherId: string, mutationRate: number): fc.Arbitrary<StepPlan> => {
  const maybeMutation = sometimes(mutation, Math.round(mutationRate * 100), null)
  const packet = fc.record({
    kind: fc.constant('packet' as const),
    packet: anyPacket(deviceIds, deviceId, otherId),
    mutation: maybeMutation,
    split: sometimes(split, 12, null),
    pauseMs: pause,
  })
  const duplicate = fc.record({ kind: fc.constant('duplicate' as const), of: fraction, mutation: maybeMutation, pauseMs: pause })
  const choices: Array<fc.WeightedArbitrary<StepPlan>> = [
    { arbitrary: packet, weight: 80 },
    { arbitrary: oversize, weight: 3 },
    { arbitrary: duplicate, weight: 8 },
  ]
  // Garbage only where the session is meant to be damaged.
  if (mutationRate > 0) choices.push({ arbitrary: garbage, weight: 5 })
  return fc.oneof(...choices)
})

/** WebSocket upgrade paths: the two MQTT paths mostly, then near misses and what a percent-decoder chokes on. */
const wsPath = fc.oneof(
  { arbitrary: fc.constantFrom('/mqtt', '/$iothub/websocket'), weight: 8 },
  { arbitrary: fc.constantFrom('/%24iothub/websocket', '/mqtt?x=1', '/mqtt/', '//mqtt', '/MQTT', '/api/tail', '/', '*'), weight: 2 },
  { arbitrary: fc.constantFrom('/%', '/%E0%A4%A', '/%zz', '/mqtt%', '/%C0%AF', '/%ff', '/%2', '/%u0041'), weight: 2 },
  { arbitrary: charsOf('abcdefghijklmnopqrstuvwxyz0123456789-._~%!$&\'()*+,;=:@/?#[]', 1, 64).map((p) => `/${p}`), weight: 1 },
  { arbitrary: fc.integer({ min: 2000, max: 9000 }).map((n) => `/${'a'.repeat(n)}`), weight: 1 },
)

const transport: fc.Arbitrary<TransportPlan> = fc.oneof(
  { arbitrary: fc.constant({ kind: 'tcp' as const }), weight: 90 },
  {
    arbitrary: fc.record({
      kind: fc.constant('ws' as const),
      path: wsPath,
      protocol: fc.oneof({ arbitrary: fc.constant('mqtt'), weight: 8 }, { arbitrary: fc.constantFrom('mqttv3.1', null, 'mqtt, mqttv3.1', 'x'), weight: 2 }),
    }),
    weight: 10,
  },
)

const swap = sometimes(fc.tuple(fraction, fraction), 15, null)

/** Share of damaged steps in a session: some sessions stay well-formed, so the semantic oracles see them whole. */
const mutationRate = fc.constantFrom(0, 0, 0.1, 0.3, 0.6)

/** A session after a real CONNACK 0: its steps fuzz what an authenticated device may send. */
const validSession: fc.Arbitrary<SessionPlan> = fc.tuple(fc.nat(FUZZ_DEVICES - 1), mutationRate).chain(([device, rate]) =>
  fc.record({
    transport,
    login: fc.constant('valid' as const),
    device: fc.constant(device),
    clean: fc.boolean(),
    keepalive: fc.oneof({ arbitrary: fc.constant(60), weight: 4 }, { arbitrary: fc.constantFrom(0, 1, 180, 1177, 65535), weight: 1 }),
    steps: fc.array(step(deviceIds[device]!, deviceIds[(device + 1) % FUZZ_DEVICES]!, rate), { minLength: 1, maxLength: 12 }),
    swap,
  }),
)

/** A session from the first byte: a CONNECT (never with a valid token) or anything else, then more. */
const rawSession: fc.Arbitrary<SessionPlan> = fc.tuple(fc.nat(FUZZ_DEVICES - 1), fc.constantFrom(0.1, 0.3, 0.6)).chain(([device, rate]) => {
  const id = deviceIds[device]!
  const other = deviceIds[(device + 1) % FUZZ_DEVICES]!
  const first = fc.oneof(
    { arbitrary: fc.record({ kind: fc.constant('packet' as const), packet: connectPacket(deviceIds), mutation: sometimes(mutation, 25, null), split: sometimes(split, 12, null), pauseMs: fc.constant(0) }), weight: 60 },
    { arbitrary: fc.record({ kind: fc.constant('packet' as const), packet: anyPacket(deviceIds, id, other), mutation: sometimes(mutation, 30, null), split: fc.constant(null), pauseMs: fc.constant(0) }), weight: 15 },
    { arbitrary: garbage, weight: 10 },
    { arbitrary: oversize, weight: 6 },
  )
  return fc.record({
    transport,
    login: fc.constant('raw' as const),
    device: fc.constant(device),
    clean: fc.constant(true),
    keepalive: fc.constant(0),
    steps: fc.tuple(first, fc.array(step(id, other, rate), { maxLength: 7 })).map(([a, rest]) => [a, ...rest]),
    swap: fc.constant(null),
  })
})

export const sessionPlan: fc.Arbitrary<SessionPlan> = fc.oneof({ arbitrary: validSession, weight: 55 }, { arbitrary: rawSession, weight: 45 })

/**
 * The plan of case `index` of a run with `seed`. Each case has its own seed, derived from both,
 * so one case is generated (and replayed) alone, without generating the cases before it.
 */
export function planOf(seed: number, index: number): SessionPlan {
  return fc.sample(sessionPlan, { seed: caseSeed(seed, index), numRuns: 1 })[0]!
}

/** A 32-bit mix of the run seed and the case index (splitmix-style), so neighbouring cases differ. */
export function caseSeed(seed: number, index: number): number {
  let h = (seed ^ Math.imul(index + 1, 0x9e3779b9)) >>> 0
  h = Math.imul(h ^ (h >>> 16), 0x85ebca6b) >>> 0
  h = Math.imul(h ^ (h >>> 13), 0xc2b2ae35) >>> 0
  return (h ^ (h >>> 16)) | 0
}
