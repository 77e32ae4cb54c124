/** The limits one API node applies to placements, and their defaults (options.ts bounds them). */

export interface BetLimits {
  readonly stakeCentsMin: number
  readonly stakeCentsMax: number
  /** Open stakes one user may hold at once. */
  readonly userOpenStakeCentsMax: number
  /**
   * What the book may lose on one market: the winnings of its open bets at the odds offered at
   * their stamps. Each ledger shard holds an equal allowance of it, which its fold enforces.
   */
  readonly marketLiabilityCentsMax: number
  /** A replica whose slowest active writer's watermark is older than this refuses bets. */
  readonly staleMsMax: number
  readonly foldWaitMs: number
  /** Bets waiting for a final verdict; past this the node refuses new ones (OVERLOADED). */
  readonly pendingFinalMax: number
  /**
   * Placements of one user the ledger may refuse per minute on this node; past it, the node
   * refuses, without writing them, the user's placements its fold says the ledger would refuse.
   */
  readonly refusedPerUserPerMinuteMax: number
  /** Users whose refusals this node counts at once (refusal-window.ts). */
  readonly refusalUsersMax: number
}

export const DEFAULT_BET_LIMITS: BetLimits = {
  stakeCentsMin: 10,
  stakeCentsMax: 100_000,
  userOpenStakeCentsMax: 500_000,
  marketLiabilityCentsMax: 10_000_000,
  staleMsMax: 2_000,
  foldWaitMs: 2_000,
  pendingFinalMax: 50_000,
  refusedPerUserPerMinuteMax: 30,
  refusalUsersMax: 100_000,
}
