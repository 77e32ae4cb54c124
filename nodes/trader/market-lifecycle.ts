/**
 * The markets' life on each point, driven by the feed. A point start opens "point winner" and
 * "ace" markets with prices; the serve suspends them; a fault reprices them for the second serve
 * (or freezes a market whose price would jump past the sanity band); the point end results and
 * closes them; a correction voids a window of bets. Open markets suspend when the feed goes stale
 * or the kill switch is thrown, and points open suspended while the switch stays thrown.
 *
 * The ops of each step are built by pure functions of the game below; the lifecycle decides when
 * to write them, and writes through the commit pipeline.
 */

import {
  AFTER_ALL_STAMPS,
  clockAt,
  correctionDeadline,
  encodeStamp,
  firstStampAt,
  type GameState,
  genesisOf,
  lastStampAt,
  type Op,
  type StampKey,
  transitionAt,
} from '../../crdt/index.ts'
import type { CommitPipeline } from './commit-pipeline.ts'
import type { FeedEvent, Side } from './feed.ts'
import { marketIds, pointPrices, statusOf, transition, transitionTo } from './point-markets.ts'
import { largestMove } from './pricing.ts'
import type { TraderContext } from './trader-context.ts'

export interface MarketLifecycle {
  /** Act on one feed event; only the active trader does. */
  handle(event: FeedEvent): void
  /** Suspend the open markets if the feed has said nothing for staleFeedMs. */
  suspendIfStale(): void
  /** Throw the kill switch: suspend every open market, and open the next points suspended. */
  kill(reason: string): void
  resume(): void
}

export function createMarketLifecycle(
  context: TraderContext,
  pipeline: Pick<CommitPipeline, 'write'>,
): MarketLifecycle {
  const { replica, hlc, log, limits, options, stats, state, now } = context
  const { write } = pipeline
  let killed = false

  const openNow = () => openMarkets(replica.game, state.current)
  const suspendOpen = (reason: string) =>
    write(openNow().map((id) => transitionTo(replica.game, id, 'suspended', reason)))

  function reprice(point: number): void {
    if (state.current?.point !== point || killed) return
    const { ops, frozen } = secondServeOps(replica.game, state.current, limits)
    stats.frozen += frozen
    write(ops)
  }

  function correct(point: number, fromMs: number, toMs: number): void {
    // Written all the same, for the record; every replica ignores it past the deadline.
    if (isLateCorrection(replica.game, point, now())) {
      stats.lateCorrections++
      log.warn({ point }, 'feed correction after the correction deadline; it voids nothing')
    }
    write(correctionOps(point, fromMs, toMs))
  }

  function handle(event: FeedEvent): void {
    if (state.role !== 'active') return
    state.lastFeedMs = now()
    switch (event.type) {
      case 'match-start':
        if (genesisOf(replica.game) === null) {
          write([{ kind: 'game', gameId: options.gameId, writers: [...options.writers] }])
        }
        write([{ kind: 'clock', period: 1, running: true, clockMs: 0 }])
        return
      case 'point-start':
        state.current = { point: event.point, server: event.server }
        write(pointStartOps(event.point, event.server, killed, limits.margin))
        return
      case 'serve':
        suspendOpen('serve')
        return
      case 'fault':
        reprice(event.point)
        return
      case 'point-end':
        write(pointEndOps(replica.game, event.point, event.winner, event.ace))
        return
      case 'correction':
        correct(event.point, event.fromMs, event.toMs)
        return
      case 'alive':
        return // the feed was heard (above), nothing else
      case 'match-end':
        suspendOpen('match ended')
        write([stoppedClockOp(replica.game, encodeStamp(hlc.now()))])
    }
  }

  return {
    handle,
    suspendIfStale() {
      if (now() - state.lastFeedMs > limits.staleFeedMs && openNow().length > 0) {
        stats.staleSuspensions++
        suspendOpen('stale feed')
      }
    },
    kill(reason) {
      killed = true
      suspendOpen(`kill switch: ${reason}`.slice(0, 200))
    },
    resume() {
      killed = false
    },
  }
}

/** The current point's markets that are open. */
export function openMarkets(game: GameState, current: { readonly point: number } | null): string[] {
  if (current === null) return []
  const ids = marketIds(current.point)
  return [ids.winner, ids.ace].filter((id) => statusOf(game, id) === 'open')
}

/** A point's two markets, open at first-serve prices (suspended while the kill switch is thrown). */
export function pointStartOps(point: number, server: Side, killed: boolean, margin: number): Op[] {
  const ids = marketIds(point)
  const prices = pointPrices(server, false, margin)
  const status = killed ? 'suspended' : 'open'
  const reason = killed ? 'kill switch' : 'point starts'
  const selections = (a: string, b: string) => [
    { id: a, name: a },
    { id: b, name: b },
  ]
  return [
    {
      kind: 'market',
      marketId: ids.winner,
      name: `Point ${point}: winner`,
      selections: selections('home', 'away'),
    },
    {
      kind: 'market',
      marketId: ids.ace,
      name: `Point ${point}: ace on the next serve`,
      selections: selections('yes', 'no'),
    },
    transition(ids.winner, status, prices.winner, reason),
    transition(ids.ace, status, prices.ace, reason),
  ]
}

/**
 * After a fault: each market the serve suspended reopens at second-serve prices, unless a price
 * would jump past the band; then it is frozen instead, suspended at its old prices.
 */
export function secondServeOps(
  game: GameState,
  current: { readonly point: number; readonly server: Side },
  limits: { readonly margin: number; readonly priceJumpMax: number },
): { ops: Op[]; frozen: number } {
  const ids = marketIds(current.point)
  const prices = pointPrices(current.server, true, limits.margin)
  const ops: Op[] = []
  let frozen = 0
  for (const [id, next] of [
    [ids.winner, prices.winner],
    [ids.ace, prices.ace],
  ] as const) {
    const before = transitionAt(game, id, AFTER_ALL_STAMPS)
    if (before?.status !== 'suspended' || before.reason !== 'serve') continue
    if (largestMove(before.prices, next) > limits.priceJumpMax) {
      frozen++
      ops.push(transition(id, 'suspended', before.prices, 'price jump: frozen'))
    } else {
      ops.push(transition(id, 'open', next, 'second serve'))
    }
  }
  return { ops, frozen }
}

/** The point's results, and both markets closed at their last prices. */
export function pointEndOps(game: GameState, point: number, winner: Side, ace: boolean): Op[] {
  const ids = marketIds(point)
  return [
    { kind: 'result', marketId: ids.winner, winners: [winner] },
    { kind: 'result', marketId: ids.ace, winners: [ace ? 'yes' : 'no'] },
    transitionTo(game, ids.winner, 'closed', 'resulted'),
    transitionTo(game, ids.ace, 'closed', 'resulted'),
  ]
}

/** Whether a correction of the point comes after its markets' correction deadline. */
export function isLateCorrection(game: GameState, point: number, nowMs: number): boolean {
  const deadline = correctionDeadline(game, marketIds(point).winner)
  return deadline !== null && firstStampAt(nowMs) > deadline
}

/** Void the bets on both of the point's markets stamped in [fromMs, toMs]. */
export function correctionOps(point: number, fromMs: number, toMs: number): Op[] {
  const ids = marketIds(point)
  const window = { from: firstStampAt(fromMs), to: lastStampAt(toMs), reason: 'feed correction' }
  return [
    { kind: 'void', marketId: ids.winner, ...window },
    { kind: 'void', marketId: ids.ace, ...window },
  ]
}

/** The game clock stopped where it stands at `stamp`, when the match ends. */
export function stoppedClockOp(game: GameState, stamp: StampKey): Op {
  const clock = clockAt(game, stamp)
  return { kind: 'clock', period: clock?.period ?? 1, running: false, clockMs: clock?.clockMs ?? 0 }
}
