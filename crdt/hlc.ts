/**
 * Hybrid logical clock stamps.
 *
 * A stamp is (wall ms, logical counter, node id), totally ordered in that order. Every component
 * ticks its clock when it sends and merges every stamp it receives, so anything it stamps later
 * is ordered after everything it has seen: a bet stamped by a node that has applied a suspension
 * is stamped after that suspension, whatever the wall clocks say.
 *
 * Stamps travel and are stored as fixed-width strings whose plain string order is the stamp
 * order, so they serve as map keys and SQLite sort keys as they are.
 */

import { ClockDriftError, CrdtError } from './errors.ts'
import {
  DEFAULT_MAX_DRIFT_MS,
  NODE_ID_LENGTH_MAX,
  STAMP_LOGICAL_DIGITS,
  STAMP_LOGICAL_MAX,
  STAMP_WALL_DIGITS,
} from './limits.ts'

export interface Stamp {
  readonly wall: number
  readonly logical: number
  readonly node: string
}

/** An encoded stamp: `wall.logical.node`, fixed width; string order is stamp order. */
export type StampKey = string

/** The physical clock an HLC reads; injectable for tests, the simulator and skew injection. */
export type ClockSource = () => number

/** Lowest printable ASCII below every character a node id may hold, so padding keeps order. */
const NODE_PAD = '+'
const WALL_MAX = 10 ** STAMP_WALL_DIGITS - 1
/** Node ids, unanchored: they name the node in every stamp. */
export const NODE_ID_SOURCE = `[a-z0-9][a-z0-9._-]{0,${NODE_ID_LENGTH_MAX - 1}}`
const NODE_ID_PATTERN = new RegExp(`^${NODE_ID_SOURCE}$`)
export const STAMP_KEY_LENGTH = STAMP_WALL_DIGITS + 1 + STAMP_LOGICAL_DIGITS + 1 + NODE_ID_LENGTH_MAX
const STAMP_KEY_PATTERN = new RegExp(
  `^(\\d{${STAMP_WALL_DIGITS}})\\.(\\d{${STAMP_LOGICAL_DIGITS}})\\.([a-z0-9][a-z0-9._-]*)(\\+*)$`,
)

export function isNodeId(value: unknown): value is string {
  return typeof value === 'string' && value.length <= NODE_ID_LENGTH_MAX && NODE_ID_PATTERN.test(value)
}

export function assertNodeId(value: unknown): asserts value is string {
  if (!isNodeId(value)) {
    throw new CrdtError(
      'INVALID_NODE_ID',
      `node id must be 1-${NODE_ID_LENGTH_MAX} characters of a-z, 0-9, '.', '_' or '-', starting with a letter or digit; got ${JSON.stringify(value)}`,
    )
  }
}

export function compareStamps(a: Stamp, b: Stamp): number {
  if (a.wall !== b.wall) return a.wall < b.wall ? -1 : 1
  if (a.logical !== b.logical) return a.logical < b.logical ? -1 : 1
  if (a.node === b.node) return 0
  return a.node < b.node ? -1 : 1
}

/**
 * The last stamp encoded, checked and decoded. A writer process's heartbeat round gives one stamp
 * to each of its games, and a node reads that stamp once per game of the beat: hundreds of times
 * the same value, each of which cost a regular expression before.
 */
const ORIGIN: Stamp = Object.freeze({ wall: 0, logical: 0, node: '0' })
const ORIGIN_KEY =
  '0'.repeat(STAMP_WALL_DIGITS) +
  '.' +
  '0'.repeat(STAMP_LOGICAL_DIGITS) +
  '.' +
  '0'.padEnd(NODE_ID_LENGTH_MAX, NODE_PAD)
/** Each starts as a real stamp and its key, so that nothing else can match it before it is set. */
const last = {
  encoded: ORIGIN,
  encodedKey: ORIGIN_KEY,
  validKey: ORIGIN_KEY,
  decodedKey: ORIGIN_KEY,
  decoded: ORIGIN,
}

export function encodeStamp(stamp: Stamp): StampKey {
  if (stamp === last.encoded) return last.encodedKey
  const key =
    String(stamp.wall).padStart(STAMP_WALL_DIGITS, '0') +
    '.' +
    String(stamp.logical).padStart(STAMP_LOGICAL_DIGITS, '0') +
    '.' +
    stamp.node.padEnd(NODE_ID_LENGTH_MAX, NODE_PAD)
  last.encoded = stamp
  last.encodedKey = key
  return key
}

export function isStampKey(value: unknown): value is StampKey {
  if (value === last.validKey) return true
  const valid =
    typeof value === 'string' && value.length === STAMP_KEY_LENGTH && STAMP_KEY_PATTERN.test(value)
  if (valid) last.validKey = value
  return valid
}

export function decodeStamp(key: string): Stamp {
  if (key === last.decodedKey) return last.decoded
  const match =
    typeof key === 'string' && key.length === STAMP_KEY_LENGTH ? STAMP_KEY_PATTERN.exec(key) : null
  if (match === null) throw new CrdtError('INVALID_STAMP', `not an encoded stamp: ${JSON.stringify(key)}`)
  const stamp = Object.freeze({ wall: Number(match[1]), logical: Number(match[2]), node: match[3] as string })
  last.decodedKey = key
  last.decoded = stamp
  return stamp
}

/** The node id inside an encoded stamp, without decoding the numbers. */
export function stampNode(key: StampKey): string {
  const start = STAMP_WALL_DIGITS + 1 + STAMP_LOGICAL_DIGITS + 1
  const end = key.indexOf(NODE_PAD, start)
  return key.slice(start, end === -1 ? undefined : end)
}

/** The wall-clock milliseconds inside an encoded stamp. */
export function stampWall(key: StampKey): number {
  return Number(key.slice(0, STAMP_WALL_DIGITS))
}

export interface HlcOptions {
  readonly node: string
  readonly clock?: ClockSource
  readonly maxDriftMs?: number
}

export interface Hlc {
  readonly node: string
  readonly maxDriftMs: number
  /** Tick for a local event or a send: strictly after every stamp this clock has issued or merged. */
  now(): Stamp
  /** Merge a remote stamp; throws ClockDriftError, leaving the clock untouched, if it leads too far. */
  receive(remote: Stamp): Stamp
  /** The latest stamp issued or merged, without ticking. */
  last(): Stamp
}

export function createHlc(options: HlcOptions): Hlc {
  assertNodeId(options.node)
  const node = options.node
  const clock = options.clock ?? Date.now
  const maxDriftMs = options.maxDriftMs ?? DEFAULT_MAX_DRIFT_MS
  if (!Number.isSafeInteger(maxDriftMs) || maxDriftMs < 0) {
    throw new RangeError(`maxDriftMs must be a non-negative integer, got ${maxDriftMs}`)
  }
  let wall = 0
  let logical = 0

  function physical(): number {
    const ms = Math.floor(clock())
    if (!Number.isSafeInteger(ms) || ms < 0 || ms > WALL_MAX) {
      throw new RangeError(`clock source returned ${ms}, outside 0..${WALL_MAX}`)
    }
    return ms
  }

  function advance(nextWall: number, nextLogical: number): Stamp {
    if (nextLogical > STAMP_LOGICAL_MAX) {
      throw new CrdtError('CLOCK_OVERFLOW', `logical counter passed ${STAMP_LOGICAL_MAX} at wall ${nextWall}`)
    }
    // The whole point of the clock: it never goes backwards. Crash rather than issue such a stamp.
    if (nextWall < wall || (nextWall === wall && nextLogical <= logical)) {
      throw new Error(`hlc invariant broken: ${nextWall}.${nextLogical} is not after ${wall}.${logical}`)
    }
    wall = nextWall
    logical = nextLogical
    return { wall, logical, node }
  }

  return {
    node,
    maxDriftMs,
    now() {
      const pt = physical()
      return pt > wall ? advance(pt, 0) : advance(wall, logical + 1)
    },
    receive(remote) {
      const pt = physical()
      if (remote.wall - pt > maxDriftMs) throw new ClockDriftError(remote.wall - pt, maxDriftMs)
      const nextWall = Math.max(wall, remote.wall, pt)
      if (nextWall === wall && nextWall === remote.wall) {
        return advance(nextWall, Math.max(logical, remote.logical) + 1)
      }
      if (nextWall === wall) return advance(nextWall, logical + 1)
      if (nextWall === remote.wall) return advance(nextWall, remote.logical + 1)
      return advance(nextWall, 0)
    },
    last() {
      return { wall, logical, node }
    },
  }
}

/** The lowest stamp any node can issue at this wall time: the start of a time range. */
export function firstStampAt(wallMs: number): StampKey {
  return encodeStamp({ wall: wallMs, logical: 0, node: '0' })
}

/** The highest stamp any node can issue at this wall time: the end of a time range. */
export function lastStampAt(wallMs: number): StampKey {
  return encodeStamp({ wall: wallMs, logical: STAMP_LOGICAL_MAX, node: 'z'.repeat(NODE_ID_LENGTH_MAX) })
}

/** Sorts after every encoded stamp: read "the latest" with a query at this stamp. */
export const AFTER_ALL_STAMPS: StampKey = '~'
