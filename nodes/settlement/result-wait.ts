/**
 * Accepted bets whose verdict is final, parked by game and market until the market's result is
 * agreed and final and its correction deadline final too; then the winners are paid and the losers
 * closed. A bet that a void window added later covers is refunded once the void is final, whether
 * or not a result ever comes. A market under review (writers disagree) is held, not paid.
 */

import {
  type BetTerms,
  correctionDeadline,
  type GameState,
  isFinal,
  judge,
  resultOf,
  voidAt,
} from '../../crdt/index.ts'
import { type BetEntry, marketKeyOf, type SettlementOutcome } from '../../ledger/index.ts'
import { betKeyOf } from '../../protocol/ids.ts'
import type { ReplicaSync } from '../fabric/replica-sync.ts'

export interface ResultWait {
  /** Park an accepted bet, final at `odds`, until its market's result. */
  park(gameId: string, bet: BetEntry, odds: number): void
  /**
   * Settle every market of these games that can be (the games whose replicas changed: nothing else
   * moves a market towards its settlement); returns how many bets are held under review, in every
   * game.
   */
  settleResults(gameIds: Iterable<string>): number
  /** Whether accepted bets of the game wait for a result. */
  waiting(gameId: string): boolean
}

export function createResultWait(options: {
  readonly replicas: ReplicaSync
  readonly isOpen: (userId: string, betId: string) => boolean
  readonly settle: (bet: BetEntry, outcome: SettlementOutcome, odds?: number) => void
}): ResultWait {
  const { replicas, isOpen, settle } = options
  /** Per game, then market, accepted bets waiting for the result, by betKey. */
  const awaiting = new Map<string, Map<string, Map<string, { bet: BetEntry; odds: number }>>>()
  /** Bets held under review, per game and market (marketKeyOf), as last seen. */
  const heldByMarket = new Map<string, number>()
  let held = 0

  function setHeld(key: string, count: number): void {
    held += count - (heldByMarket.get(key) ?? 0)
    if (count === 0) heldByMarket.delete(key)
    else heldByMarket.set(key, count)
  }

  /**
   * Accepted bets that a void window added later covers (a feed correction, a trader takeover):
   * refund them once the void is final, whether or not a result ever comes.
   */
  function refundVoided(game: GameState, marketId: string, bets: Map<string, { bet: BetEntry }>): void {
    if ((game.markets.get(marketId)?.voids.length ?? 0) === 0) return
    for (const [id, { bet }] of bets) {
      const verdict = judge(game, bet as BetTerms)
      const window = voidAt(game, bet.marketId, bet.stamp)
      if (verdict.reason !== 'VOIDED' || window === null || !isFinal(game, window.stamp)) continue
      bets.delete(id)
      if (isOpen(bet.userId, bet.id)) settle(bet, 'void')
    }
  }

  /**
   * Markets of the game whose result is agreed and final, and past the correction deadline: pay
   * the winners, close the losers.
   */
  function settleGame(
    gameId: string,
    markets: Map<string, Map<string, { bet: BetEntry; odds: number }>>,
  ): void {
    const replica = replicas.replica(gameId)
    if (replica === undefined) {
      // An archived game's results are read from its archived replica, loaded for a later pass
      // (its loading counts as a change of the game).
      void replicas.loadArchive(gameId)
      return
    }
    for (const [marketId, bets] of markets) {
      refundVoided(replica.game, marketId, bets)
      const result = resultOf(replica.game, marketId)
      setHeld(marketKeyOf(gameId, marketId), result.state === 'review' ? bets.size : 0)
      if (result.state !== 'agreed' || !isFinal(replica.game, result.stamp)) continue
      // A correction may still void bets until the deadline: pay only once it is final too.
      const deadline = correctionDeadline(replica.game, marketId)
      if (deadline !== null && !isFinal(replica.game, deadline)) continue
      for (const { bet, odds } of bets.values()) {
        if (isOpen(bet.userId, bet.id))
          settle(bet, result.winners.includes(bet.selectionId) ? 'won' : 'lost', odds)
      }
      markets.delete(marketId)
    }
    if (markets.size === 0) awaiting.delete(gameId)
  }

  return {
    park(gameId, bet, odds) {
      const markets = awaiting.get(gameId) ?? new Map<string, Map<string, { bet: BetEntry; odds: number }>>()
      const bets = markets.get(bet.marketId) ?? new Map<string, { bet: BetEntry; odds: number }>()
      bets.set(betKeyOf(bet.userId, bet.id), { bet, odds })
      markets.set(bet.marketId, bets)
      awaiting.set(gameId, markets)
    },
    settleResults(gameIds) {
      for (const gameId of gameIds) {
        const markets = awaiting.get(gameId)
        if (markets !== undefined) settleGame(gameId, markets)
      }
      return held
    },
    waiting: (gameId) => awaiting.has(gameId),
  }
}
