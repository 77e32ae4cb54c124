/**
 * The checks a placement passes before it is written, each against this node's fold: the stake,
 * the user's open stakes, the refusal cap, and the market's liability at the offered price. The
 * fold checks the limits again at the entry's place in the ledger, so these only spare the ledger
 * entries it would refuse; they never decide alone.
 */

import { liabilityCents } from '../../ledger/index.ts'
import { apiError, type PlaceBetReply, type PlaceBetRequest } from '../../protocol/bets.ts'
import type { LedgerSync } from '../fabric/ledger-sync.ts'
import type { Allowances } from './allowance.ts'
import type { BetLimits } from './bet-limits.ts'
import type { RefusalWindow } from './refusal-window.ts'

export interface BetChecks {
  /** Stake, open stakes and the refusal cap: what needs no replica. */
  beforeStamp(request: PlaceBetRequest): PlaceBetReply | null
  /** The market's liability, with this bet counted at the price offered at its stamp. */
  liability(request: PlaceBetRequest, offeredOdds: number | undefined): PlaceBetReply | null
}

export function createBetChecks(options: {
  readonly limits: BetLimits
  readonly ledger: LedgerSync
  readonly refusals: RefusalWindow
  /** The market liability escrow over the region's shards (allowance.ts). */
  readonly allowances: Allowances
}): BetChecks {
  const { limits, ledger, refusals, allowances } = options
  function checkLimits(request: PlaceBetRequest): PlaceBetReply | null {
    if (request.stakeCents < limits.stakeCentsMin || request.stakeCents > limits.stakeCentsMax) {
      return apiError('STAKE_LIMIT', `stake must be ${limits.stakeCentsMin}-${limits.stakeCentsMax} cents`)
    }
    const open = ledger.foldFor(request.userId).exposure(request.userId).openStakesCents
    if (open + request.stakeCents > limits.userOpenStakeCentsMax) {
      return apiError('USER_STAKE_LIMIT', `open stakes would pass ${limits.userOpenStakeCentsMax} cents`)
    }
    return null
  }

  /** A user past the refusal cap: what the fold already refuses is not written again. */
  function checkAbuse(request: PlaceBetRequest): PlaceBetReply | null {
    // A node still reading the ledger back at start sees balances of zero: it judges nobody.
    if (!ledger.caughtUp()) return null
    if (ledger.foldFor(request.userId).balance(request.userId) >= request.stakeCents) return null
    // Counted before the write, so a burst of them in flight at once cannot pass the cap either.
    const abusing = refusals.abusing(request.userId)
    refusals.record(request.userId)
    if (!abusing) return null
    return apiError(
      'INSUFFICIENT_FUNDS',
      `the balance cannot cover the stake, and past ${limits.refusedPerUserPerMinuteMax} refused placements a minute nothing more is written: deposit, or wait`,
    )
  }

  /**
   * The market's liability as this node's fold of the user's shard holds it, with this bet counted
   * at the price offered at its stamp, against the shard's allowance; past it, allowance is asked
   * of the other shards. The fold checks it again at the entry's position, so this only spares the
   * ledger an entry it would refuse.
   */
  function checkLiability(request: PlaceBetRequest, offeredOdds: number | undefined): PlaceBetReply | null {
    const cents = liabilityCents({ stakeCents: request.stakeCents, offeredOdds })
    return allowances.check(ledger.shardOf(request.userId), request.gameId, request.marketId, cents)
  }

  return {
    beforeStamp: (request) => checkLimits(request) ?? checkAbuse(request),
    liability: checkLiability,
  }
}
