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
  /** Settle every market that can be; returns how many bets are held under review. */
  settleResults(): number
}

export function createResultWait(options: {
  readonly replicas: ReplicaSync
  readonly isOpen: (userId: string, betId: string) => boolean
  readonly settle: (bet: BetEntry, outcome: SettlementOutcome, odds?: number) => void
}): ResultWait {
  const { replicas, isOpen, settle } = options
  /** Per game and market (marketKeyOf), accepted bets waiting for the result, by betKey. */
  const awaiting = new Map<
    string,
    { gameId: string; marketId: string; bets: Map<string, { bet: BetEntry; odds: number }> }
  >()

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
   * Markets whose result is agreed and final, and past the correction deadline: pay the winners,
   * close the losers.
   */
  function settleResults(): number {
    let held = 0
    for (const [key, market] of awaiting) {
      const { marketId } = market
      const replica = replicas.replica(market.gameId)
      if (replica === undefined) {
        // An archived game's results are read from its archived replica, loaded for a later pass.
        void replicas.loadArchive(market.gameId)
        continue
      }
      refundVoided(replica.game, marketId, market.bets)
      const result = resultOf(replica.game, marketId)
      if (result.state === 'review') held += market.bets.size
      if (result.state !== 'agreed' || !isFinal(replica.game, result.stamp)) continue
      // A correction may still void bets until the deadline: pay only once it is final too.
      const deadline = correctionDeadline(replica.game, marketId)
      if (deadline !== null && !isFinal(replica.game, deadline)) continue
      for (const { bet, odds } of market.bets.values()) {
        if (isOpen(bet.userId, bet.id))
          settle(bet, result.winners.includes(bet.selectionId) ? 'won' : 'lost', odds)
      }
      awaiting.delete(key)
    }
    return held
  }

  return {
    park(gameId, bet, odds) {
      const key = marketKeyOf(gameId, bet.marketId)
      const market = awaiting.get(key) ?? { gameId, marketId: bet.marketId, bets: new Map() }
      market.bets.set(betKeyOf(bet.userId, bet.id), { bet, odds })
      awaiting.set(key, market)
    },
    settleResults,
  }
}
