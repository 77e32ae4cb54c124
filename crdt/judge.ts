/**
 * The verdict on a bet: a pure function of the replica's state and the bet's stamp.
 *
 * Every check reads only entries stamped at or before the bet, so once the stamp is final (see
 * game.ts) the verdict cannot change on any replica. The one exception is a void window, which a
 * feed correction may add after the fact, up to the market's correction deadline (game.ts): it
 * turns an accepted bet into VOIDED (refunded), and it is checked last so that it never touches a
 * bet that was rejected anyway. A VOIDED verdict is final only once the void's stamp is (judge()).
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

interface MarketVerdict {
  readonly reason: RejectReason | null
  readonly odds: number | null
  /** For VOIDED: the stamp of the void; its counting is settled only once that stamp is final. */
  readonly voidStamp?: StampKey
}

function marketVerdict(game: GameState, bet: BetTerms): MarketVerdict {
  const spec = specAt(game, bet.marketId, bet.stamp)
  if (spec === null) return { reason: 'UNKNOWN_MARKET', odds: null }
  if (selectionOf(spec, bet.selectionId) === null) return { reason: 'UNKNOWN_SELECTION', odds: null }
  const transition = transitionAt(game, bet.marketId, bet.stamp)
  const offered = transition?.prices[bet.selectionId] ?? null
  if (transition?.status !== 'open') return { reason: 'MARKET_NOT_OPEN', odds: offered }
  if (offered === null) return { reason: 'SELECTION_NOT_OFFERED', odds: null }
  if (!honours(bet.policy, offered, bet.odds)) return { reason: 'PRICE_CHANGED', odds: offered }
  const voided = voidAt(game, bet.marketId, bet.stamp)
  if (voided !== null) return { reason: 'VOIDED', odds: offered, voidStamp: voided.stamp }
  return { reason: null, odds: offered }
}

/**
 * A VOIDED verdict is final only once the void's own stamp is: whether a void counts depends on
 * the market's first result claim (its correction deadline, game.ts), and a claim stamped before
 * the void can still arrive from another writer until then, moving the deadline before the void.
 * Once the void's stamp is final, every claim that could move it is held, so VOIDED never turns
 * back into an acceptance.
 */
export function judge(game: GameState, bet: BetTerms): Verdict {
  const { reason, odds, voidStamp } = marketVerdict(game, bet)
  const final = isFinal(game, bet.stamp) && (voidStamp === undefined || isFinal(game, voidStamp))
  return {
    accepted: reason === null,
    reason,
    odds,
    gameClockMs: gameClockAt(game, bet.stamp),
    final,
  }
}
