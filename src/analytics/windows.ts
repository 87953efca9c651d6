import type { AggregateFunction } from './definitions.js'

/**
 * Window assignment and the aggregate functions, as pure functions over plain data (the state is
 * checkpointed as JSON, see aggregate-processor.ts).
 *
 * Windows are aligned to the epoch: a tumbling window of size S holds [k·S, (k+1)·S); a hopping
 * window of size S and hop H starts at every k·H and holds [k·H, k·H + S). An instant belongs to
 * one tumbling window and to S/H hopping ones. Start inclusive, end exclusive.
 */

export interface WindowSpec {
  sizeMs: number
  /** Equal to sizeMs for tumbling windows. */
  hopMs: number
}

/** Starts of every window holding `t`, oldest first. */
export function windowStarts(t: number, spec: WindowSpec): number[] {
  const last = Math.floor(t / spec.hopMs) * spec.hopMs
  const starts: number[] = []
  for (let start = last - spec.sizeMs + spec.hopMs; start <= last; start += spec.hopMs) starts.push(start)
  return starts
}

/** The end of the oldest window holding `t`: that window closes first. */
export function firstWindowEnd(t: number, spec: WindowSpec): number {
  return windowStarts(t, spec)[0]! + spec.sizeMs
}

/** Running value of one function over one path in one window; JSON as it is (checkpointed). */
export interface Accumulator {
  /** Numbers seen. */
  n: number
  /** sum / avg: the sum; min / max: the extreme; first / last: the value. null before the first number. */
  v: number | null
  /** first / last: event time of v (ties keep the earlier arrival for first, the later for last). */
  t: number | null
}

export function emptyAccumulator(): Accumulator {
  return { n: 0, v: null, t: null }
}

/** Fold one number in. */
export function accumulate(fn: AggregateFunction, acc: Accumulator, value: number, time: number): void {
  acc.n++
  switch (fn) {
    case 'count':
      return
    case 'sum':
    case 'avg':
      acc.v = (acc.v ?? 0) + value
      return
    case 'min':
      if (acc.v === null || value < acc.v) acc.v = value
      return
    case 'max':
      if (acc.v === null || value > acc.v) acc.v = value
      return
    case 'first':
      if (acc.t === null || time < acc.t) {
        acc.v = value
        acc.t = time
      }
      return
    case 'last':
      if (acc.t === null || time >= acc.t) {
        acc.v = value
        acc.t = time
      }
      return
  }
}

/**
 * The output value: count is the numbers seen (0 when none); every other function is null when no
 * number was seen (as SQL's aggregates over an empty set), sum included.
 */
export function result(fn: AggregateFunction, acc: Accumulator): number | null {
  if (fn === 'count') return acc.n
  if (acc.n === 0) return null
  if (fn === 'avg') return acc.v! / acc.n
  return acc.v
}

/** A number for the functions: finite JSON numbers only (a numeric string is not one; nor is NaN). */
export function numberOf(value: unknown): number | undefined {
  return typeof value === 'number' && Number.isFinite(value) ? value : undefined
}

/** Event time from a body value: epoch milliseconds, or an ISO 8601 / RFC 3339 string. */
export function timeOf(value: unknown): number | undefined {
  if (typeof value === 'number') return Number.isFinite(value) && value >= 0 ? Math.floor(value) : undefined
  if (typeof value !== 'string' || value.length > 64 || !/^\d{4}-\d{2}-\d{2}T/.test(value)) return undefined
  const t = Date.parse(value)
  return Number.isNaN(t) ? undefined : t
}
