/**
 * The ops a writer records in a game document, and their validation.
 *
 * An entry is an op with the stamp it was issued at, stored under a key derived from its kind and
 * stamp, so the document is a grow-only set of entries that two replicas can only ever agree on:
 * no key is ever written twice with different values. The writer of an entry is the node inside
 * its stamp. (Heartbeats are not ops: they travel beside the document, see backend.ts.)
 *
 * Entries arrive inside CRDT updates from other processes and are untrusted: `parseEntry`
 * rebuilds each one field by field in a canonical key order, or returns null. Every replica
 * skips the same malformed entries, so they cannot make replicas disagree.
 */

import { encodeStamp, isNodeId, isStampKey, type StampKey, stampNode } from './hlc.ts'
import {
  GAME_CLOCK_MS_MAX,
  GAME_PERIOD_MAX,
  ID_LENGTH_MAX,
  NAME_LENGTH_MAX,
  ODDS_MAX,
  ODDS_MIN,
  REASON_LENGTH_MAX,
  SELECTIONS_PER_MARKET_MAX,
  WRITERS_PER_GAME_MAX,
} from './limits.ts'

export type MarketStatus = 'open' | 'suspended' | 'closed'
export const MARKET_STATUSES: readonly MarketStatus[] = ['open', 'suspended', 'closed']

export interface Selection {
  readonly id: string
  readonly name: string
}

/** Decimal odds in thousandths per selection id. */
export type Prices = Readonly<Record<string, number>>

/** Genesis: the game exists and these writers may write it from this stamp on. */
export interface GameOp {
  readonly kind: 'game'
  readonly gameId: string
  readonly writers: readonly string[]
}
/** An active writer admits another; the newcomer may write only after this stamp. */
export interface AdmitOp {
  readonly kind: 'admit'
  readonly writer: string
}
/**
 * The writer stops writing: this is its last op that counts. A writer only retires itself, so the
 * retirement arrives after every op it published before it, and no replica waits for it again.
 */
export interface RetireOp {
  readonly kind: 'retire'
}
/**
 * An active writer takes over from another: the fenced writer's entries stamped after this op do
 * not count, and no replica waits for its watermark again. The second half is sound only where a
 * replica applies the fenced writer's updates in log order and drops those after the fence, so
 * that holding the fence means holding every entry of the fenced writer that will ever count:
 * nodes/fabric/replica-sync.ts does that for the fabric stream (see docs/architecture.md).
 */
export interface FenceOp {
  readonly kind: 'fence'
  readonly writer: string
}
export interface ClockOp {
  readonly kind: 'clock'
  readonly period: number
  readonly running: boolean
  /** The game clock's value at this op's stamp. */
  readonly clockMs: number
}
export interface MarketOp {
  readonly kind: 'market'
  readonly marketId: string
  readonly name: string
  readonly selections: readonly Selection[]
}
export interface TransitionOp {
  readonly kind: 'transition'
  readonly marketId: string
  readonly status: MarketStatus
  readonly prices: Prices
  readonly reason: string
}
/** One writer's claim of a market's outcome; an empty list of winners means no selection won. */
export interface ResultOp {
  readonly kind: 'result'
  readonly marketId: string
  readonly winners: readonly string[]
}
/** Bets on the market stamped within [from, to] are void (feed correction, VAR, ...). */
export interface VoidOp {
  readonly kind: 'void'
  readonly marketId: string
  readonly from: StampKey
  readonly to: StampKey
  readonly reason: string
}
export type Op = GameOp | AdmitOp | RetireOp | FenceOp | ClockOp | MarketOp | TransitionOp | ResultOp | VoidOp
export type OpKind = Op['kind']
export type Entry<O extends Op = Op> = O & { readonly stamp: StampKey }

/** The document key of an entry: unique, because a stamp is unique. */
export function entryKey(entry: Entry): string {
  return `${entry.kind}/${entry.stamp}`
}

/** The writer of anything stamped: the node inside its stamp. */
export function writerOf(stamped: { readonly stamp: StampKey }): string {
  return stampNode(stamped.stamp)
}

type Raw = Record<string, unknown>

/** Game, market and selection ids, unanchored (protocol/ids.ts builds the wire's grammars from it). */
export const ID_SOURCE = `[A-Za-z0-9][A-Za-z0-9_.:-]{0,${ID_LENGTH_MAX - 1}}`
const ID_PATTERN = new RegExp(`^${ID_SOURCE}$`)

export function isId(value: unknown): value is string {
  return typeof value === 'string' && ID_PATTERN.test(value)
}

function isText(value: unknown, max: number): value is string {
  return typeof value === 'string' && value.length <= max
}

export function isOdds(value: unknown): value is number {
  return Number.isSafeInteger(value) && (value as number) >= ODDS_MIN && (value as number) <= ODDS_MAX
}

function isRecord(value: unknown): value is Raw {
  return typeof value === 'object' && value !== null && !Array.isArray(value)
}

function parseWriters(value: unknown): string[] | null {
  if (!Array.isArray(value) || value.length === 0 || value.length > WRITERS_PER_GAME_MAX) return null
  if (!value.every(isNodeId) || new Set(value).size !== value.length) return null
  return [...value].sort()
}

function parseSelections(value: unknown): Selection[] | null {
  if (!Array.isArray(value) || value.length === 0 || value.length > SELECTIONS_PER_MARKET_MAX) return null
  const selections: Selection[] = []
  for (const item of value) {
    if (!isRecord(item) || !isId(item.id) || !isText(item.name, NAME_LENGTH_MAX)) return null
    selections.push({ id: item.id, name: item.name })
  }
  return new Set(selections.map((s) => s.id)).size === selections.length ? selections : null
}

function parsePrices(value: unknown): Prices | null {
  if (!isRecord(value)) return null
  const keys = Object.keys(value).sort()
  if (keys.length > SELECTIONS_PER_MARKET_MAX) return null
  const prices: Record<string, number> = {}
  for (const key of keys) {
    const odds = value[key]
    if (!isId(key) || !isOdds(odds)) return null
    prices[key] = odds
  }
  return prices
}

function parseWinners(value: unknown): string[] | null {
  if (!Array.isArray(value) || value.length > SELECTIONS_PER_MARKET_MAX || !value.every(isId)) return null
  return new Set(value).size === value.length ? [...value].sort() : null
}

/** Rebuild an entry of `kind` at `stamp` from untrusted fields, or return null. */
function parseFields(kind: unknown, raw: Raw, stamp: StampKey): Entry | null {
  switch (kind) {
    case 'game': {
      const writers = parseWriters(raw.writers)
      return isId(raw.gameId) && writers ? { kind: 'game', gameId: raw.gameId, writers, stamp } : null
    }
    case 'admit':
      return isNodeId(raw.writer) ? { kind: 'admit', writer: raw.writer, stamp } : null
    case 'retire':
      return { kind: 'retire', stamp }
    case 'fence':
      return isNodeId(raw.writer) && raw.writer !== stampNode(stamp)
        ? { kind: 'fence', writer: raw.writer, stamp }
        : null
    case 'clock': {
      const { period, running, clockMs } = raw
      const valid =
        Number.isSafeInteger(period) &&
        (period as number) >= 0 &&
        (period as number) <= GAME_PERIOD_MAX &&
        typeof running === 'boolean' &&
        Number.isSafeInteger(clockMs) &&
        (clockMs as number) >= 0 &&
        (clockMs as number) <= GAME_CLOCK_MS_MAX
      return valid
        ? {
            kind: 'clock',
            period: period as number,
            running: running as boolean,
            clockMs: clockMs as number,
            stamp,
          }
        : null
    }
    case 'market': {
      const selections = parseSelections(raw.selections)
      return isId(raw.marketId) && isText(raw.name, NAME_LENGTH_MAX) && selections
        ? { kind: 'market', marketId: raw.marketId, name: raw.name, selections, stamp }
        : null
    }
    case 'transition': {
      const prices = parsePrices(raw.prices)
      const status = raw.status as MarketStatus
      return isId(raw.marketId) &&
        MARKET_STATUSES.includes(status) &&
        prices &&
        isText(raw.reason, REASON_LENGTH_MAX)
        ? { kind: 'transition', marketId: raw.marketId, status, prices, reason: raw.reason, stamp }
        : null
    }
    case 'result': {
      const winners = parseWinners(raw.winners)
      return isId(raw.marketId) && winners ? { kind: 'result', marketId: raw.marketId, winners, stamp } : null
    }
    case 'void': {
      const { from, to } = raw
      const valid =
        isId(raw.marketId) &&
        isStampKey(from) &&
        isStampKey(to) &&
        from <= to &&
        isText(raw.reason, REASON_LENGTH_MAX)
      return valid
        ? { kind: 'void', marketId: raw.marketId as string, from, to, reason: raw.reason as string, stamp }
        : null
    }
    default:
      return null
  }
}

/** Validate an untrusted entry and rebuild it canonically, or return null. */
export function parseEntry(value: unknown): Entry | null {
  if (!isRecord(value) || !isStampKey(value.stamp)) return null
  return parseFields(value.kind, value, value.stamp)
}

/**
 * What the document stores under an entry's key: the op's fields without its kind and stamp,
 * which the key already holds. A stamp is 45 characters; this keeps snapshots small.
 */
export function storedValue(entry: Entry): Record<string, unknown> {
  const { kind: _kind, stamp: _stamp, ...fields } = entry
  return fields
}

/** Validate an entry read back from the document under `key`, or return null. */
export function parseStoredEntry(key: string, value: unknown): Entry | null {
  const slash = key.indexOf('/')
  if (slash === -1 || !isRecord(value)) return null
  const stamp = key.slice(slash + 1)
  return isStampKey(stamp) ? parseFields(key.slice(0, slash), value, stamp) : null
}

/** Stamp a writer's ops in order with its clock, ready to commit. */
export function stampOps(
  clock: { now(): { wall: number; logical: number; node: string } },
  ops: readonly Op[],
): Entry[] {
  return ops.map((op) => ({ ...op, stamp: encodeStamp(clock.now()) }))
}
