import type { ConnectFields } from './wire.js'

/**
 * What fast-check generates: a plan per fuzz case, plain data with no bytes yet. `session.ts`
 * turns a plan into bytes and expectations. Keeping the two apart lets a plan be printed, and
 * lets the bytes depend on things fast-check does not know (the message ids of the case).
 */

/** Replaced by the case's own message id (`$.mid`) when the plan is built into bytes. */
export const MID = '{{mid}}'

/** A string of a packet made invalid in place: same byte length, so every length stays right. */
export interface Taint {
  kind: 'utf8' | 'nul'
  /** Where, as a fraction (0..65535) of the string's length. */
  at: number
  /** Which invalid sequence (index into INVALID_UTF8). */
  variant: number
}

/** Byte sequences that are not UTF-8 wherever they stand [MQTT-1.5.3-1]. */
export const INVALID_UTF8: readonly number[][] = [
  [0xff],
  [0xfe],
  [0xc0, 0x80], // overlong U+0000
  [0xc1, 0xbf], // overlong
  [0xed, 0xa0, 0x80], // UTF-16 surrogate U+D800 [MQTT-1.5.3-1]
  [0xe0, 0x80, 0x80], // overlong
  [0xf8, 0x88, 0x80, 0x80, 0x80], // 5-byte form
  [0xc3, 0x28], // lead byte without its continuation
]

export interface ConnectPlan extends Omit<ConnectFields<Uint8Array>, 'v5' | 'extraFlags'> {
  type: 'connect'
  extraFlags: number
  taint?: Taint & { field: 'clientId' | 'username' | 'password' | 'willTopic' }
}

/** How a correct gateway treats the topic of a PUBLISH from the authenticated device. */
export type TopicClass = { kind: 'telemetry' } | { kind: 'iothub' } | { kind: 'forbidden'; why: string }

export interface PublishPlan {
  type: 'publish'
  topic: string
  topicClass: TopicClass
  qos: 0 | 1 | 2
  retain: boolean
  dup: boolean
  payload: Uint8Array
  taint?: Taint
}

export interface SubscribePlan {
  type: 'subscribe'
  filters: Array<{ topic: string; qos: number }>
  /** Why a correct gateway refuses it (closes the connection, no SUBACK), or null. */
  forbidden: string | null
  taint?: Taint
}

export interface UnsubscribePlan {
  type: 'unsubscribe'
  filters: string[]
}

export interface AckPlan {
  type: 'ack'
  cmd: 'puback' | 'pubrec' | 'pubrel' | 'pubcomp'
  messageId: number
}

export interface SimplePlan {
  type: 'simple'
  cmd: 'pingreq' | 'disconnect' | 'pingresp'
}

/** Packets only a server sends; a client sending one breaks the protocol. */
export type ServerPlan =
  | { type: 'server'; cmd: 'connack'; returnCode: number; sessionPresent: boolean }
  | { type: 'server'; cmd: 'suback'; messageId: number; granted: number[] }
  | { type: 'server'; cmd: 'unsuback'; messageId: number }

export interface ReservedPlan {
  type: 'reserved'
  code: 0 | 15
  flags: number
  body: Uint8Array
}

export type PacketPlan = ConnectPlan | PublishPlan | SubscribePlan | UnsubscribePlan | AckPlan | SimplePlan | ServerPlan | ReservedPlan

/** Byte-level damage to one packet; positions are fractions (0..65535) of the packet's length. */
export type MutationPlan =
  | { kind: 'bitflip'; flips: Array<{ at: number; bit: number }> }
  | { kind: 'set-bytes'; writes: Array<{ at: number; value: number }> }
  | { kind: 'truncate'; keep: number }
  | { kind: 'length'; to: 'zero' | 'minus-one' | 'plus-one' | 'huge' | 'five-bytes' | 'random'; random: number }
  | { kind: 'string-length'; at: number; value: number }
  | { kind: 'insert'; at: number; bytes: Uint8Array }
  | { kind: 'delete'; at: number; count: number }
  | { kind: 'flags'; nibble: number }
  | { kind: 'append'; bytes: Uint8Array }

/** Write one step in several pieces, `trickleMs` apart, to exercise the parser's reassembly. */
export interface SplitPlan {
  cuts: number[]
  trickleMs: number
}

export type StepPlan =
  | { kind: 'packet'; packet: PacketPlan; mutation: MutationPlan | null; split: SplitPlan | null; pauseMs: number }
  | { kind: 'garbage'; bytes: Uint8Array; pauseMs: number }
  /** A fixed header announcing `announced` bytes (over a limit, typically), then `filler` bytes of it. */
  | { kind: 'oversize'; firstByte: number; announced: number; filler: number; pauseMs: number }
  /** Send again an earlier step (`of`: fraction of the steps so far), possibly damaged. */
  | { kind: 'duplicate'; of: number; mutation: MutationPlan | null; pauseMs: number }

/** How the session reaches the broker: its TCP port, or MQTT over WebSocket on the HTTP port. */
export type TransportPlan = { kind: 'tcp' } | { kind: 'ws'; path: string; protocol: string | null }

export interface SessionPlan {
  transport: TransportPlan
  /**
   * `valid`: a real CONNECT of the device (its SAS token is made at run time) and its CONNACK
   * first, so the steps reach the post-CONNACK handling. `raw`: the steps from the first byte.
   */
  login: 'valid' | 'raw'
  /** Index into the run's fuzz devices. */
  device: number
  clean: boolean
  keepalive: number
  steps: StepPlan[]
  /** Swap two steps after building (fractions of the step count), or not. */
  swap: [number, number] | null
}

/** Number of devices a run registers for fuzzing; plans refer to them by index. Fixed, so seeds replay. */
export const FUZZ_DEVICES = 32

export function fuzzDeviceId(index: number): string {
  return `fuzz-dev-${String(index).padStart(2, '0')}`
}

/** Scale a 0..65535 fraction to an index below `n` (n > 0). */
export function pick(fraction: number, n: number): number {
  return Math.min(n - 1, Math.floor((fraction / 65536) * n))
}
