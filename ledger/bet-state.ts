/**
 * A bet's state as the fold holds it: for each status one object literal naming every field, in
 * the key order a snapshot gives. Built so, V8 (Node 20) keeps every field in the object itself and
 * all bets of one status share one hidden class. A literal that spreads another before fields of
 * its own (`{ ...base, status }`) gets a hidden class of its own, and an object copied together
 * (`Object.assign({}, base, more)`) keeps most of its fields in a separate array: each cost a few
 * hundred bytes a bet, for every bet a fold holds (BENCHMARKS.md, "Bets built without a hidden
 * class each"). `offeredOdds` is undefined when the entry had none, which JSON (snapshots, state
 * hashes) leaves out, as it was left out before.
 */

import type { BetBase, BetRefusal, BetState, SettlementOutcome } from './entries.ts'

export function openBet(base: BetBase): BetState {
  return Object.freeze({
    betId: base.betId,
    userId: base.userId,
    gameId: base.gameId,
    marketId: base.marketId,
    selectionId: base.selectionId,
    stakeCents: base.stakeCents,
    odds: base.odds,
    policy: base.policy,
    stamp: base.stamp,
    placedAtMs: base.placedAtMs,
    offeredOdds: base.offeredOdds,
    placedSeq: base.placedSeq,
    status: 'open',
  })
}

export function refusedBet(base: BetBase, reason: BetRefusal, retireAtMs: number): BetState {
  return Object.freeze({
    betId: base.betId,
    userId: base.userId,
    gameId: base.gameId,
    marketId: base.marketId,
    selectionId: base.selectionId,
    stakeCents: base.stakeCents,
    odds: base.odds,
    policy: base.policy,
    stamp: base.stamp,
    placedAtMs: base.placedAtMs,
    offeredOdds: base.offeredOdds,
    placedSeq: base.placedSeq,
    status: 'rejected',
    reason,
    retireAtMs,
  })
}

/** What a settlement adds to an open bet. */
export interface Settled {
  readonly outcome: SettlementOutcome
  readonly settledOdds: number
  readonly payoutCents: number
  readonly settlementId: string
  readonly settledSeq: number
  readonly retireAtMs: number
}

export function settledBet(base: BetBase, settled: Settled): BetState {
  return Object.freeze({
    betId: base.betId,
    userId: base.userId,
    gameId: base.gameId,
    marketId: base.marketId,
    selectionId: base.selectionId,
    stakeCents: base.stakeCents,
    odds: base.odds,
    policy: base.policy,
    stamp: base.stamp,
    placedAtMs: base.placedAtMs,
    offeredOdds: base.offeredOdds,
    placedSeq: base.placedSeq,
    status: 'settled',
    outcome: settled.outcome,
    settledOdds: settled.settledOdds,
    payoutCents: settled.payoutCents,
    settlementId: settled.settlementId,
    settledSeq: settled.settledSeq,
    retireAtMs: settled.retireAtMs,
  })
}
