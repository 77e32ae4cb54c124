/**
 * A bet's state as the fold holds it: one object literal naming every field of every status, in
 * the key order a snapshot gives, those a status lacks left undefined (which JSON, so snapshots
 * and state hashes, leaves out, as it left the keys out before). Built so, V8 (Node 20) keeps every
 * field in the object itself and all bets share one hidden class. A literal that spreads another
 * before fields of its own (`{ ...base, status }`) gets a hidden class of its own, and an object
 * copied together (`Object.assign({}, base, more)`) keeps most of its fields in a separate array:
 * each cost a few hundred bytes a bet, for every bet a fold holds (BENCHMARKS.md, "Bets built
 * without a hidden class each").
 */

import type { BetBase, BetRefusal, BetState } from './entries.ts'

type SettledBet = Extract<BetState, { status: 'settled' }>
type RefusedBet = Extract<BetState, { status: 'rejected' }>
/** What a settlement adds to an open bet. */
export type Settled = Omit<SettledBet, keyof BetBase | 'status'>

interface Rest {
  readonly reason?: BetRefusal
  readonly settled?: Settled
  readonly retireAtMs?: number
}

function betState(base: BetBase, status: BetState['status'], rest: Rest): BetState {
  const { settled } = rest
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
    status,
    reason: rest.reason,
    outcome: settled?.outcome,
    settledOdds: settled?.settledOdds,
    payoutCents: settled?.payoutCents,
    settlementId: settled?.settlementId,
    settledSeq: settled?.settledSeq,
    retireAtMs: settled?.retireAtMs ?? rest.retireAtMs,
  }) as BetState
}

export const openBet = (base: BetBase): BetState => betState(base, 'open', {})

export const refusedBet = (base: BetBase, reason: BetRefusal, retireAtMs: number) =>
  betState(base, 'rejected', { reason, retireAtMs }) as RefusedBet

export const settledBet = (base: BetBase, settled: Settled) =>
  betState(base, 'settled', { settled }) as SettledBet
