/**
 * The verdict on a bet: a pure function of the replica's state and the bet's stamp.
 *
 * Every check reads only entries stamped at or before the bet, so once the stamp is final (see
 * game.ts) the verdict cannot change on any replica. The one exception is a void window, which a
 * feed correction may add after the fact, up to the market's correction deadline (game.ts): it
 * turns an accepted bet into VOIDED (refunded), and it is checked last so that it never touches a
 * bet that was rejected anyway.
 */

import type { GameState } from './game.ts'
import { gameClockAt, isFinal, selectionOf, specAt, transitionAt, voidAt } from './game.ts'
import type { StampKey } from './hlc.ts'

/** How the odds a bettor took compare with the odds offered at the bet's stamp. */
export type OddsPolicy = 'exact' | 'better' | 'any'
export const ODDS_POLICIES: readonly OddsPolicy[] = ['exact', 'better', 'any']

export interface BetTerms {
  readonly stamp: StampKey
  readonly marketId: string
  readonly selectionId: string
  /** Decimal odds in thousandths the bettor saw. */
  readonly odds: number
  readonly policy: OddsPolicy
}

export type RejectReason =
  | 'UNKNOWN_MARKET'
  | 'UNKNOWN_SELECTION'
  | 'MARKET_NOT_OPEN'
  | 'SELECTION_NOT_OFFERED'
  | 'PRICE_CHANGED'
  | 'VOIDED'

export interface Verdict {
  readonly accepted: boolean
  readonly reason: RejectReason | null
  /** The odds the bet stands at: the price offered at its stamp (null when none was). */
  readonly odds: number | null
  /** The game clock at the bet's stamp, null before the clock was first set. */
  readonly gameClockMs: number | null
  /** True once no op at or before the stamp can still arrive. */
  readonly final: boolean
}

function honours(policy: OddsPolicy, offered: number, taken: number): boolean {
  switch (policy) {
    case 'exact':
      return offered === taken
    case 'better':
      return offered >= taken
    case 'any':
      return true
  }
}

function marketVerdict(game: GameState, bet: BetTerms): { reason: RejectReason | null; odds: number | null } {
  const spec = specAt(game, bet.marketId, bet.stamp)
  if (spec === null) return { reason: 'UNKNOWN_MARKET', odds: null }
  if (selectionOf(spec, bet.selectionId) === null) return { reason: 'UNKNOWN_SELECTION', odds: null }
  const transition = transitionAt(game, bet.marketId, bet.stamp)
  const offered = transition?.prices[bet.selectionId] ?? null
  if (transition?.status !== 'open') return { reason: 'MARKET_NOT_OPEN', odds: offered }
  if (offered === null) return { reason: 'SELECTION_NOT_OFFERED', odds: null }
  if (!honours(bet.policy, offered, bet.odds)) return { reason: 'PRICE_CHANGED', odds: offered }
  if (voidAt(game, bet.marketId, bet.stamp) !== null) return { reason: 'VOIDED', odds: offered }
  return { reason: null, odds: offered }
}

export function judge(game: GameState, bet: BetTerms): Verdict {
  const { reason, odds } = marketVerdict(game, bet)
  return {
    accepted: reason === null,
    reason,
    odds,
    gameClockMs: gameClockAt(game, bet.stamp),
    final: isFinal(game, bet.stamp),
  }
}
