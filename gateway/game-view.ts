/**
 * What a client sees of a game, and how it follows it: the view (clock, score, live markets) is
 * read from the gateway's replica after each change, compared with the last one, and the
 * difference becomes a delta with the game's next sequence number. Each delta is serialized once
 * and the same bytes go to every subscriber. The last `resumeDeltasMax` deltas are kept, so a
 * client that reconnects with the last sequence it saw gets only what it missed; one further
 * behind, or from another gateway (another epoch), gets a fresh snapshot.
 */

import {
  AFTER_ALL_STAMPS,
  currentClock,
  type GameState,
  resultOf,
  specAt,
  stampWall,
  transitionAt,
} from '../crdt/index.ts'
import type { ReplicaSync } from '../nodes/fabric/replica-sync.ts'
import { type ClockView, type DeltaFrame, encodeFrame, type GameView, type MarketView } from './protocol.ts'

/** Point-winner markets (`p<N>-winner`, see nodes/trader/point-markets.ts) count towards the score. */
const SCORING_MARKET = /-winner$/

export interface ViewLimits {
  /** Closed markets kept in the view (the most recent ones), so a page can show recent results. */
  readonly closedMarketsShown: number
  /** Deltas kept per game for clients that resume. */
  readonly resumeDeltasMax: number
}

function marketView(game: GameState, marketId: string): MarketView | null {
  const spec = specAt(game, marketId, AFTER_ALL_STAMPS)
  if (spec === null) return null
  const transition = transitionAt(game, marketId, AFTER_ALL_STAMPS)
  const result = resultOf(game, marketId)
  return {
    marketId,
    name: spec.name,
    selections: spec.selections.map(({ id, name }) => ({ id, name })),
    status: transition?.status ?? 'suspended',
    prices: transition?.status === 'open' ? { ...transition.prices } : {},
    result:
      result.state === 'agreed' ? { state: 'agreed', winners: [...result.winners] } : { state: result.state },
    sinceMs: stampWall((transition ?? spec).stamp),
  }
}

/** The view of a game as its replica holds it now. */
export function readGameView(gameId: string, game: GameState, closedMarketsShown: number): GameView {
  const setting = currentClock(game)
  const clock: ClockView | null =
    setting === null
      ? null
      : {
          period: setting.period,
          running: setting.running,
          clockMs: setting.clockMs,
          atMs: stampWall(setting.stamp),
        }
  const score: Record<string, number> = {}
  const live: MarketView[] = []
  const closed: MarketView[] = []
  for (const marketId of game.markets.keys()) {
    const view = marketView(game, marketId)
    if (view === null) continue
    if (SCORING_MARKET.test(marketId) && view.result.state === 'agreed')
      for (const winner of view.result.winners) score[winner] = (score[winner] ?? 0) + 1
    if (view.status === 'closed') closed.push(view)
    else live.push(view)
  }
  closed.sort((a, b) => b.sinceMs - a.sinceMs)
  const markets = [...live, ...closed.slice(0, closedMarketsShown)]
  return { gameId, clock, score, markets }
}

const sameJson = (a: unknown, b: unknown) => JSON.stringify(a) === JSON.stringify(b)

/** What changed from one view to the next, or null when nothing did. */
export function diffViews(
  before: GameView,
  after: GameView,
): Pick<DeltaFrame, 'clock' | 'score' | 'markets' | 'removed'> | null {
  const delta: {
    clock?: ClockView | null
    score?: Record<string, number>
    markets?: MarketView[]
    removed?: string[]
  } = {}
  if (!sameJson(before.clock, after.clock)) delta.clock = after.clock
  if (!sameJson(before.score, after.score)) delta.score = { ...after.score }
  const old = new Map(before.markets.map((market) => [market.marketId, JSON.stringify(market)]))
  const changed = after.markets.filter((market) => old.get(market.marketId) !== JSON.stringify(market))
  if (changed.length > 0) delta.markets = changed
  const kept = new Set(after.markets.map((market) => market.marketId))
  const removed = before.markets.filter((market) => !kept.has(market.marketId)).map((m) => m.marketId)
  if (removed.length > 0) delta.removed = removed
  return Object.keys(delta).length === 0 ? null : delta
}

/** Apply a delta to a view: what a client does, and what the tests check clients end up with. */
export function applyDelta(
  view: GameView,
  delta: Pick<DeltaFrame, 'clock' | 'score' | 'markets' | 'removed'>,
): GameView {
  const markets = new Map(view.markets.map((market) => [market.marketId, market]))
  for (const marketId of delta.removed ?? []) markets.delete(marketId)
  for (const market of delta.markets ?? []) markets.set(market.marketId, market)
  return {
    gameId: view.gameId,
    clock: delta.clock === undefined ? view.clock : delta.clock,
    score: delta.score ?? view.score,
    markets: [...markets.values()],
  }
}

export interface GameFeed {
  readonly gameId: string
  seq(): number
  view(): GameView
  /** Deltas after `seq`, oldest first, or null when they are no longer all kept. */
  deltasSince(seq: number): readonly Buffer[] | null
  onDelta(listener: (frame: Buffer, seq: number) => void): () => void
}

export interface GameFeeds {
  readonly epoch: string
  /** The game's feed, or undefined when this gateway's replica does not know the game. */
  feed(gameId: string): GameFeed | undefined
  close(): void
}

interface FeedState extends GameFeed {
  refresh(): void
}

function createFeed(gameId: string, game: GameState, epoch: string, limits: ViewLimits): FeedState {
  let current = readGameView(gameId, game, limits.closedMarketsShown)
  let seq = 0
  const kept: Buffer[] = []
  const listeners = new Set<(frame: Buffer, seq: number) => void>()
  return {
    gameId,
    seq: () => seq,
    view: () => current,
    deltasSince(since) {
      if (since > seq || since < seq - kept.length) return null
      return kept.slice(kept.length - (seq - since))
    },
    onDelta(listener) {
      listeners.add(listener)
      return () => listeners.delete(listener)
    },
    refresh() {
      const next = readGameView(gameId, game, limits.closedMarketsShown)
      const change = diffViews(current, next)
      current = next
      if (change === null) return
      seq++
      const frame = encodeFrame({ type: 'delta', gameId, epoch, seq, ...change, atMs: Date.now() })
      kept.push(frame)
      if (kept.length > limits.resumeDeltasMax) kept.shift()
      for (const listener of listeners) listener(frame, seq)
    },
  }
}

/** Views of the games in a replica sync, refreshed at most once per tick per game. */
export function createGameFeeds(replicas: ReplicaSync, epoch: string, limits: ViewLimits): GameFeeds {
  const feeds = new Map<string, FeedState>()
  const due = new Set<string>()
  let scheduled = false
  const flush = () => {
    scheduled = false
    for (const gameId of due) feeds.get(gameId)?.refresh()
    due.clear()
  }
  const stop = replicas.onChange(({ gameId, source, result }) => {
    if (source !== 'stream' || result.added === 0 || !feeds.has(gameId)) return
    due.add(gameId)
    if (!scheduled) {
      scheduled = true
      setImmediate(flush)
    }
  })
  // An archived game's view goes with its replica (nodes/fabric/archive.ts): nothing changes it any more.
  const stopArchives = replicas.onArchive((gameId) => feeds.delete(gameId))
  return {
    epoch,
    feed(gameId) {
      let feed = feeds.get(gameId)
      if (feed === undefined) {
        const replica = replicas.replica(gameId)
        if (replica === undefined) return undefined
        feed = createFeed(gameId, replica.game, epoch, limits)
        feeds.set(gameId, feed)
      }
      return feed
    },
    close() {
      stop()
      stopArchives()
      due.clear()
    },
  }
}
