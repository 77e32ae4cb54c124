/**
 * The markets the trader runs on each point, as pure functions of the game: their ids (`p<point>-`
 * and a kind), their prices, and the transition ops that move them. No I/O and no state of its own.
 */

import {
  AFTER_ALL_STAMPS,
  type GameState,
  type MarketStatus,
  type Op,
  type Prices,
  transitionAt,
} from '../../crdt/index.ts'
import type { Side } from './feed.ts'
import { twoWay } from './pricing.ts'

const SERVER_WINS = { first: 0.64, second: 0.55 }
const ACE = { first: 0.09, second: 0.02 }

export const marketIds = (point: number) => ({ winner: `p${point}-winner`, ace: `p${point}-ace` })

/** The last point whose markets the game holds (their ids are `p<point>-...`), or 0. */
export function lastPoint(game: GameState): number {
  let last = 0
  for (const marketId of game.markets.keys()) {
    const point = /^p(\d+)-/.exec(marketId)?.[1]
    if (point !== undefined) last = Math.max(last, Number(point))
  }
  return last
}

/** First- or second-serve prices of a point's two markets, with the book's margin. */
export function pointPrices(server: Side, second: boolean, margin: number): { winner: Prices; ace: Prices } {
  const serverWins = second ? SERVER_WINS.second : SERVER_WINS.first
  const homeWins = server === 'home' ? serverWins : 1 - serverWins
  return {
    winner: twoWay('home', 'away', homeWins, margin),
    ace: twoWay('yes', 'no', second ? ACE.second : ACE.first, margin),
  }
}

export const transition = (marketId: string, status: MarketStatus, prices: Prices, reason: string): Op => ({
  kind: 'transition',
  marketId,
  status,
  prices,
  reason,
})

/** A transition to `status` that keeps the market's latest prices. */
export const transitionTo = (game: GameState, marketId: string, status: MarketStatus, reason: string): Op =>
  transition(marketId, status, transitionAt(game, marketId, AFTER_ALL_STAMPS)?.prices ?? {}, reason)

export const statusOf = (game: GameState, marketId: string): MarketStatus | null =>
  transitionAt(game, marketId, AFTER_ALL_STAMPS)?.status ?? null
