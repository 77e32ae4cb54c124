/**
 * The game document's read model, independent of the CRDT backend that stores it.
 *
 * A backend feeds it every entry and watermark it holds; the state it derives depends only on that
 * set, never on arrival order, so replicas holding the same entries answer every query the same.
 *
 * Who may write: the genesis entry names the first writers; an active writer may admit another,
 * who may write after the admission's stamp; a writer may retire itself, and an active writer may
 * fence another (a takeover: see FenceOp). An entry by anyone else, or outside its writer's span,
 * is ignored by every query.
 *
 * Finality: a writer's watermark is the highest stamp it has published, and it promises never to
 * publish at or below it again. It advances two ways. Every commit stores it in the same change as
 * the commit's entries, and both backends make it visible only after every earlier op of that
 * writer: Automerge because a change waits for all its dependencies, Yjs because a client's structs
 * integrate in order and a restarted writer's new watermark item names its previous one as origin.
 * (A restarted writer's new entries may show before its older ones on Yjs; its watermark does not.)
 * Between commits the writer sends heartbeats beside the document: a stamp and the document
 * version it had published by then; a replica admits one only once it holds that version. Hence
 * once every writer that may write at or before stamp `s` has a watermark at or past `s`, nothing
 * at or before `s` can still change, and a verdict about `s` is final.
 */

import { createHash } from 'node:crypto'
import type { StampKey } from './hlc.ts'
import { AFTER_ALL_STAMPS, lastStampAt, stampWall } from './hlc.ts'
import { CORRECTION_WINDOW_MS, WRITERS_PER_GAME_MAX } from './limits.ts'
import type {
  AdmitOp,
  ClockOp,
  Entry,
  FenceOp,
  GameOp,
  MarketOp,
  MarketStatus,
  ResultOp,
  RetireOp,
  Selection,
  TransitionOp,
  VoidOp,
} from './ops.ts'
import { entryKey, writerOf } from './ops.ts'

export interface MarketState {
  readonly specs: Entry<MarketOp>[]
  readonly transitions: Entry<TransitionOp>[]
  readonly results: Entry<ResultOp>[]
  readonly voids: Entry<VoidOp>[]
}

interface WriterSpan {
  readonly from: StampKey
  /** The last stamp of the writer that counts, once it has retired or been fenced. */
  through: StampKey | null
  /** The fence that ended the span, if another writer ended it. */
  fence: Entry<FenceOp> | null
}

export interface GameState {
  readonly entries: Map<string, Entry>
  /** Per writer, the watermark its latest commit stored in the document. */
  readonly watermarks: Map<string, StampKey>
  /** Per writer, the highest heartbeat this replica has admitted (never stored, never hashed). */
  readonly heartbeats: Map<string, StampKey>
  readonly geneses: Entry<GameOp>[]
  readonly membership: Entry<AdmitOp | RetireOp | FenceOp>[]
  readonly clocks: Entry<ClockOp>[]
  readonly markets: Map<string, MarketState>
  /** Writer spans derived from geneses and membership; null when they must be derived again. */
  spans: Map<string, WriterSpan> | null
  /**
   * Set on a replica of an archived game (nodes/fabric/archive.ts): nothing changes the game after
   * its archive marker, so every stamp is final, a bet stamped after the match as much as any.
   */
  closed: boolean
}

export function createGameState(): GameState {
  return {
    entries: new Map(),
    watermarks: new Map(),
    heartbeats: new Map(),
    geneses: [],
    membership: [],
    clocks: [],
    markets: new Map(),
    spans: null,
    closed: false,
  }
}

/** Index of the first element whose stamp is greater than `stamp`. */
function upperBound(list: readonly { stamp: StampKey }[], stamp: StampKey): number {
  let low = 0
  let high = list.length
  while (low < high) {
    const mid = (low + high) >>> 1
    if ((list[mid] as { stamp: StampKey }).stamp <= stamp) low = mid + 1
    else high = mid
  }
  return low
}

function insertSorted<T extends { stamp: StampKey }>(list: T[], entry: T): void {
  const last = list[list.length - 1]
  if (last === undefined || last.stamp < entry.stamp) list.push(entry)
  else list.splice(upperBound(list, entry.stamp), 0, entry)
}

function marketState(game: GameState, marketId: string): MarketState {
  let market = game.markets.get(marketId)
  if (market === undefined) {
    market = { specs: [], transitions: [], results: [], voids: [] }
    game.markets.set(marketId, market)
  }
  return market
}

/** Record an entry (stored under `key`); returns false when the replica already had it. */
export function addEntry(game: GameState, entry: Entry, key = entryKey(entry)): boolean {
  if (game.entries.has(key)) return false
  game.entries.set(key, entry)
  switch (entry.kind) {
    case 'game':
      insertSorted(game.geneses, entry)
      game.spans = null
      break
    case 'admit':
    case 'retire':
    case 'fence':
      insertSorted(game.membership, entry)
      game.spans = null
      break
    case 'clock':
      insertSorted(game.clocks, entry)
      break
    case 'market':
      insertSorted(marketState(game, entry.marketId).specs, entry)
      break
    case 'transition':
      insertSorted(marketState(game, entry.marketId).transitions, entry)
      break
    case 'result':
      insertSorted(marketState(game, entry.marketId).results, entry)
      break
    case 'void':
      insertSorted(marketState(game, entry.marketId).voids, entry)
      break
  }
  return true
}

/** Record the watermark the document holds for a writer. */
export function setWatermark(game: GameState, writer: string, stamp: StampKey): void {
  game.watermarks.set(writer, stamp)
}

/** Record an admitted heartbeat: a max-register, so late or repeated heartbeats change nothing. */
export function raiseHeartbeat(game: GameState, writer: string, stamp: StampKey): boolean {
  const current = game.heartbeats.get(writer)
  if (current !== undefined && current >= stamp) return false
  game.heartbeats.set(writer, stamp)
  return true
}

/** The writer's watermark: the higher of its last commit and its last admitted heartbeat. */
export function watermarkOf(game: GameState, writer: string): StampKey | null {
  const stored = game.watermarks.get(writer)
  const promised = game.heartbeats.get(writer)
  if (stored === undefined) return promised ?? null
  return promised !== undefined && promised > stored ? promised : stored
}

function isActive(span: WriterSpan | undefined, stamp: StampKey): boolean {
  return span !== undefined && span.from <= stamp && (span.through === null || stamp <= span.through)
}

function deriveSpans(game: GameState): Map<string, WriterSpan> {
  const spans = new Map<string, WriterSpan>()
  const genesis = game.geneses[0]
  if (genesis === undefined) return spans
  for (const writer of genesis.writers) spans.set(writer, { from: genesis.stamp, through: null, fence: null })
  for (const entry of game.membership) {
    const author = writerOf(entry)
    if (entry.stamp <= genesis.stamp || !isActive(spans.get(author), entry.stamp)) continue
    if (entry.kind === 'retire') {
      ;(spans.get(author) as WriterSpan).through = entry.stamp
    } else if (entry.kind === 'fence') {
      const target = spans.get(entry.writer)
      if (target !== undefined && isActive(target, entry.stamp)) {
        target.through = entry.stamp
        target.fence = entry
      }
    } else if (!spans.has(entry.writer) && spans.size < WRITERS_PER_GAME_MAX) {
      spans.set(entry.writer, { from: entry.stamp, through: null, fence: null })
    }
  }
  return spans
}

function writerSpans(game: GameState): Map<string, WriterSpan> {
  if (game.spans === null) game.spans = deriveSpans(game)
  return game.spans
}

/** Whether an entry counts: its writer was active when it was stamped. */
export function isValidEntry(game: GameState, entry: { stamp: StampKey }): boolean {
  return isActive(writerSpans(game).get(writerOf(entry as Entry)), entry.stamp)
}

export function genesisOf(game: GameState): Entry<GameOp> | null {
  return game.geneses[0] ?? null
}

/** Every writer the game has had, sorted. */
export function writersOf(game: GameState): string[] {
  return [...writerSpans(game).keys()].sort()
}

/** Writers that have not retired, sorted. */
export function activeWriters(game: GameState): string[] {
  const active: string[] = []
  for (const [writer, span] of writerSpans(game)) if (span.through === null) active.push(writer)
  return active.sort()
}

/** The fence that ended the writer's span, or null while no other writer has fenced it. */
export function fenceOf(game: GameState, writer: string): Entry<FenceOp> | null {
  return writerSpans(game).get(writer)?.fence ?? null
}

/** True once no entry at or before `stamp` can still arrive (see the module comment). */
export function isFinal(game: GameState, stamp: StampKey): boolean {
  if (game.closed) return true
  if (game.geneses.length === 0) return false
  for (const [writer, span] of writerSpans(game)) {
    // Holding the fence means holding every entry of the fenced writer that counts (FenceOp).
    if (span.from >= stamp || span.fence !== null) continue
    const needed = span.through !== null && span.through < stamp ? span.through : stamp
    const watermark = watermarkOf(game, writer)
    if (watermark === null || watermark < needed) return false
  }
  return true
}

/** The latest valid entry at or before `stamp`. */
function latestAt<T extends { stamp: StampKey }>(
  game: GameState,
  list: readonly T[],
  stamp: StampKey,
): T | null {
  for (let i = upperBound(list, stamp) - 1; i >= 0; i--) {
    const entry = list[i] as T
    if (isValidEntry(game, entry)) return entry
  }
  return null
}

export interface ClockReading {
  readonly period: number
  readonly running: boolean
  readonly clockMs: number
}

/** The game clock as it stood at `stamp`, or null before the clock was first set. */
export function clockAt(game: GameState, stamp: StampKey): ClockReading | null {
  const setting = latestAt(game, game.clocks, stamp)
  if (setting === null) return null
  const elapsedMs = setting.running ? stampWall(stamp) - stampWall(setting.stamp) : 0
  return { period: setting.period, running: setting.running, clockMs: setting.clockMs + elapsedMs }
}

export function gameClockAt(game: GameState, stamp: StampKey): number | null {
  return clockAt(game, stamp)?.clockMs ?? null
}

/** The current clock setting: the last writer wins by stamp. */
export function currentClock(game: GameState): Entry<ClockOp> | null {
  return latestAt(game, game.clocks, AFTER_ALL_STAMPS)
}

/** The market's spec in force at `stamp`: the earliest valid one; later specs never replace it. */
export function specAt(game: GameState, marketId: string, stamp: StampKey): Entry<MarketOp> | null {
  const specs = game.markets.get(marketId)?.specs ?? []
  for (const spec of specs) {
    if (spec.stamp > stamp) return null
    if (isValidEntry(game, spec)) return spec
  }
  return null
}

export function selectionOf(spec: MarketOp, selectionId: string): Selection | null {
  return spec.selections.find((selection) => selection.id === selectionId) ?? null
}

export function transitionAt(game: GameState, marketId: string, stamp: StampKey): Entry<TransitionOp> | null {
  return latestAt(game, game.markets.get(marketId)?.transitions ?? [], stamp)
}

export function statusAt(game: GameState, marketId: string, stamp: StampKey): MarketStatus | null {
  return transitionAt(game, marketId, stamp)?.status ?? null
}

export function priceAt(
  game: GameState,
  marketId: string,
  selectionId: string,
  stamp: StampKey,
): number | null {
  return transitionAt(game, marketId, stamp)?.prices[selectionId] ?? null
}

/**
 * The void window on the market covering `stamp`, if any. Voids may be written after the fact, but
 * only up to the market's correction deadline: a void stamped later comes after the market may
 * have been paid, and counts nowhere.
 */
export function voidAt(game: GameState, marketId: string, stamp: StampKey): Entry<VoidOp> | null {
  const deadline = correctionDeadline(game, marketId)
  for (const entry of game.markets.get(marketId)?.voids ?? []) {
    if (deadline !== null && entry.stamp > deadline) continue
    if (entry.from <= stamp && stamp <= entry.to && isValidEntry(game, entry)) return entry
  }
  return null
}

/**
 * The last stamp at which a void on the market still counts: CORRECTION_WINDOW_MS after its first
 * result claim, or null while it has none. Settlement pays a market only once this stamp is final,
 * so it has seen every void that will ever count, and a payout is never followed by a refund.
 */
export function correctionDeadline(game: GameState, marketId: string): StampKey | null {
  // Claims are kept in stamp order: the first valid one is the earliest.
  const first = game.markets.get(marketId)?.results.find((claim) => isValidEntry(game, claim))
  return first === undefined ? null : correctionDeadlineAfter(first.stamp)
}

/** The correction deadline of a market whose first result claim is stamped `resultStamp`. */
export function correctionDeadlineAfter(resultStamp: StampKey): StampKey {
  return lastStampAt(stampWall(resultStamp) + CORRECTION_WINDOW_MS)
}

export type MarketResult =
  | { readonly state: 'pending' }
  | { readonly state: 'agreed'; readonly winners: readonly string[]; readonly stamp: StampKey }
  | { readonly state: 'review'; readonly claims: readonly Entry<ResultOp>[] }

const PENDING: MarketResult = Object.freeze({ state: 'pending' })

/**
 * The market's outcome from every writer's latest claim: one claim or agreeing claims settle it,
 * disagreeing claims put it under review instead of paying anyone.
 */
export function resultOf(game: GameState, marketId: string): MarketResult {
  const results = game.markets.get(marketId)?.results
  // Settlement asks this of every waiting market at every beat; most have no claim yet.
  if (results === undefined || results.length === 0) return PENDING
  const latestByWriter = new Map<string, Entry<ResultOp>>()
  for (const claim of results) {
    if (isValidEntry(game, claim)) latestByWriter.set(writerOf(claim), claim)
  }
  const claims = [...latestByWriter.values()]
  const first = claims[0]
  if (first === undefined) return PENDING
  const outcome = first.winners.join(',')
  if (claims.some((claim) => claim.winners.join(',') !== outcome)) return { state: 'review', claims }
  const stamp = claims.reduce((max, claim) => (claim.stamp > max ? claim.stamp : max), first.stamp)
  return { state: 'agreed', winners: first.winners, stamp }
}

/**
 * True once nothing in the game can change a verdict or a payout any more: every entry is final, no
 * market is open, and every market with a result claim has an agreed result whose correction
 * deadline is final too (a market under review is not concluded). A finished match is archived
 * only then (nodes/fabric/archive.ts); whether the match has ended is the feed's to say.
 */
export function isConcluded(game: GameState): boolean {
  let last: StampKey | null = null
  for (const entry of game.entries.values()) if (last === null || entry.stamp > last) last = entry.stamp
  if (last === null || !isFinal(game, last)) return false
  for (const [marketId, market] of game.markets) {
    const latest = latestAt(game, market.transitions, AFTER_ALL_STAMPS)
    if (latest?.status === 'open') return false
    if (market.results.length === 0) continue
    const result = resultOf(game, marketId)
    const deadline = correctionDeadline(game, marketId)
    if (result.state !== 'agreed' || deadline === null || !isFinal(game, deadline)) return false
  }
  return true
}

/** The highest stamp of any entry or watermark the replica holds, for a restarting node's clock. */
export function maxStamp(game: GameState): StampKey | null {
  let max: StampKey | null = null
  const raise = (stamp: StampKey) => {
    if (max === null || stamp > max) max = stamp
  }
  for (const stamp of game.watermarks.values()) raise(stamp)
  for (const stamp of game.heartbeats.values()) raise(stamp)
  for (const entry of game.entries.values()) raise(entry.stamp)
  return max
}

/**
 * A digest of the document the replica holds, in canonical order. Replicas with the same entries
 * have the same hash, whichever backend stores them. Heartbeats are not part of the document.
 */
export function stateHash(game: GameState): string {
  const hash = createHash('sha256')
  for (const key of [...game.entries.keys()].sort()) {
    hash
      .update(key)
      .update('\n')
      .update(JSON.stringify(game.entries.get(key)))
      .update('\n')
  }
  for (const writer of [...game.watermarks.keys()].sort()) {
    hash.update(`watermark/${writer}\n${game.watermarks.get(writer)}\n`)
  }
  return hash.digest('hex')
}
