/**
 * The fold's state and its transitions: what one entry does to balances, bets and exposure, with
 * the invariants checked after each. Pure.
 */

import { betKeyOf, entryKeyOf } from '../protocol/ids.ts'
import { openBet, refusedBet, settledBet } from './bet-state.ts'
import {
  type AllowanceEntry,
  type BetBase,
  type BetEntry,
  type BetRefusal,
  type BetState,
  checkLedgerSums,
  type DepositEntry,
  entryDigest,
  type FoldCounts,
  type FoldResult,
  LEDGER_BET_RETENTION_MS,
  LEDGER_INFLOW_CENTS_MAX,
  LEDGER_TIME_STEP_MAX_MS,
  type LedgerEntry,
  type LedgerIgnoreReason,
  type LedgerRejectReason,
  type LedgerTotals,
  liabilityCents,
  MARKET_LIABILITY_CENTS_MAX,
  marketKeyOf,
  POTENTIAL_PAYOUT_CENTS_MAX,
  payoutCents,
  type SeenEntry,
  type SettlementEntry,
  type Verdict,
  type WithdrawalEntry,
} from './entries.ts'
import { isIntegerIn } from './guards.ts'
import { parseLedgerMessage } from './parse.ts'

interface MutableExposure {
  readonly betIds: Set<string>
  openStakesCents: number
  potentialPayoutCents: number
}

export interface State {
  lastSeq: number
  readonly counts: { -readonly [K in keyof FoldCounts]: number }
  readonly totals: { -readonly [K in keyof LedgerTotals]: number }
  readonly balances: Map<string, number>
  readonly seen: Map<string, SeenEntry>
  readonly bets: Map<string, BetState>
  readonly exposures: Map<string, MutableExposure>
  /** Open liability by market (marketKeyOf), at the bets' offered odds; markets without are absent. */
  readonly markets: Map<string, number>
  /** Allowance transfers applied, by entry key, in the order applied. */
  readonly transfers: Map<string, AllowanceEntry>
  /** Allowance received minus given, by market (marketKeyOf); markets without are absent. */
  readonly allowances: Map<string, number>
  /** LEDGER_BET_RETENTION_MS, or a test's own. */
  readonly retentionMs: number
  /** The ledger's time: the latest `placedAtMs` folded. */
  logTimeMs: number
  /**
   * Settled and refused bets in the order they will retire: each is queued when it settles or is
   * refused, at the ledger time then plus the retention, and that time never goes back, so the
   * queue is in `retireAtMs` order. From `retiringHead` on; before it, undefined. The bets, not
   * their keys: a key made again here would be a third copy of it held for every bet (`seen` and
   * `bets` share one).
   */
  readonly retiring: (RetiringBet | undefined)[]
  retiringHead: number
  readonly retired: { bets: number; stakesCents: number; payoutsCents: number }
}

const APPLIED: Verdict = { status: 'applied', reason: null }
const rejected = (reason: LedgerRejectReason): Verdict => ({ status: 'rejected', reason })
const ignored = (reason: LedgerIgnoreReason): Verdict => ({ status: 'ignored', reason })

export function emptyState(retentionMs = LEDGER_BET_RETENTION_MS): State {
  if (!isIntegerIn(retentionMs, 1, Number.MAX_SAFE_INTEGER))
    throw new RangeError(`a bet retention of ${retentionMs} ms`)
  return {
    lastSeq: 0,
    counts: { applied: 0, rejected: 0, ignored: 0, duplicate: 0, conflict: 0, malformed: 0 },
    totals: {
      depositsCents: 0,
      withdrawalsCents: 0,
      stakesCents: 0,
      payoutsCents: 0,
      balancesCents: 0,
      openStakesCents: 0,
    },
    balances: new Map(),
    seen: new Map(),
    bets: new Map(),
    exposures: new Map(),
    markets: new Map(),
    transfers: new Map(),
    allowances: new Map(),
    retentionMs,
    logTimeMs: 0,
    retiring: [],
    retiringHead: 0,
    retired: { bets: 0, stakesCents: 0, payoutsCents: 0 },
  }
}

type RetiringBet = Exclude<BetState, { status: 'open' }>

/** When a bet settled or refused now (by the ledger's time) retires; queue it once it is built. */
const retirementOf = (state: State) => state.logTimeMs + state.retentionMs

/** Queue a restored bet: restore hands them over in `retireAtMs` order. */
export function requeueRetirement(state: State, bet: BetState): void {
  if (bet.status !== 'open') state.retiring.push(bet)
}

/**
 * Let go of the settled and refused bets whose retention the ledger's time has passed: the bet,
 * and the ids of its placement and settlement, so a later entry with one of them is new. Their
 * money stays counted in the totals and in `retired`.
 */
function retireExpired(state: State): void {
  const { retiring } = state
  while (state.retiringHead < retiring.length) {
    const bet = retiring[state.retiringHead] as RetiringBet
    if (bet.retireAtMs > state.logTimeMs) break
    const key = betKeyOf(bet.userId, bet.betId)
    if (state.bets.get(key) === bet) {
      state.bets.delete(key)
      state.seen.delete(key)
      state.retired.bets += 1
      if (bet.status === 'settled') {
        state.seen.delete(entryKeyOf({ type: 'settlement', userId: bet.userId, id: bet.settlementId }))
        state.retired.stakesCents += bet.stakeCents
        state.retired.payoutsCents += bet.payoutCents
      }
    }
    // Let the retired bet go now, not when the consumed head is dropped.
    retiring[state.retiringHead] = undefined
    state.retiringHead += 1
  }
  // Drop the consumed head now and then, not at every retirement: a splice is O(length).
  if (state.retiringHead > 1024 && state.retiringHead * 2 > retiring.length) {
    retiring.splice(0, state.retiringHead)
    state.retiringHead = 0
  }
}

export function inflowCents(state: State): number {
  return state.totals.depositsCents + state.totals.payoutsCents
}

function credit(state: State, userId: string, deltaCents: number): void {
  state.balances.set(userId, (state.balances.get(userId) ?? 0) + deltaCents)
  state.totals.balancesCents += deltaCents
}

function exposureOf(state: State, userId: string): MutableExposure {
  let exposure = state.exposures.get(userId)
  if (exposure === undefined) {
    exposure = { betIds: new Set(), openStakesCents: 0, potentialPayoutCents: 0 }
    state.exposures.set(userId, exposure)
  }
  return exposure
}

/** Count an open bet in its user's exposure, on placement or on restore. */
export function openExposure(state: State, bet: BetState): void {
  const exposure = exposureOf(state, bet.userId)
  exposure.betIds.add(bet.betId)
  exposure.openStakesCents += bet.stakeCents
  exposure.potentialPayoutCents += payoutCents(bet.stakeCents, bet.odds, 'won')
  state.totals.openStakesCents += bet.stakeCents
  addLiability(state, bet, liabilityCents(bet))
}

function addLiability(state: State, bet: BetState, cents: number): void {
  if (cents === 0) return
  const key = marketKeyOf(bet.gameId, bet.marketId)
  const next = (state.markets.get(key) ?? 0) + cents
  // Forget markets without open liability, so the map grows with open bets, not with history.
  if (next === 0) state.markets.delete(key)
  else state.markets.set(key, next)
}

function closeExposure(state: State, bet: BetState): void {
  const exposure = exposureOf(state, bet.userId)
  exposure.betIds.delete(bet.betId)
  exposure.openStakesCents -= bet.stakeCents
  exposure.potentialPayoutCents -= payoutCents(bet.stakeCents, bet.odds, 'won')
  state.totals.openStakesCents -= bet.stakeCents
  addLiability(state, bet, -liabilityCents(bet))
  // Forget users without open bets, so the map grows with open exposure, not with history.
  if (exposure.betIds.size === 0) state.exposures.delete(bet.userId)
}

function applyMovement(state: State, entry: DepositEntry | WithdrawalEntry): Verdict {
  if (entry.type === 'deposit') {
    if (inflowCents(state) + entry.amountCents > LEDGER_INFLOW_CENTS_MAX) return rejected('LEDGER_LIMIT')
    state.totals.depositsCents += entry.amountCents
    credit(state, entry.userId, entry.amountCents)
    return APPLIED
  }
  if ((state.balances.get(entry.userId) ?? 0) < entry.amountCents) return rejected('INSUFFICIENT_FUNDS')
  state.totals.withdrawalsCents += entry.amountCents
  credit(state, entry.userId, -entry.amountCents)
  return APPLIED
}

function betRefusal(state: State, entry: BetEntry): BetRefusal | null {
  if ((state.balances.get(entry.userId) ?? 0) < entry.stakeCents) return 'INSUFFICIENT_FUNDS'
  const openCents = state.exposures.get(entry.userId)?.openStakesCents ?? 0
  if (entry.openStakeLimitCents !== undefined && openCents + entry.stakeCents > entry.openStakeLimitCents)
    return 'USER_STAKE_LIMIT'
  const key = marketKeyOf(entry.gameId, entry.marketId)
  const marketCents = (state.markets.get(key) ?? 0) + liabilityCents(entry)
  // The shard's allowance: its share, as the entry carries it, and what transfers moved.
  if (
    entry.marketLiabilityLimitCents !== undefined &&
    marketCents > entry.marketLiabilityLimitCents + (state.allowances.get(key) ?? 0)
  )
    return 'MARKET_LIABILITY_LIMIT'
  const potentialCents = state.exposures.get(entry.userId)?.potentialPayoutCents ?? 0
  const overLimit =
    potentialCents + payoutCents(entry.stakeCents, entry.odds, 'won') > POTENTIAL_PAYOUT_CENTS_MAX ||
    marketCents > Number.MAX_SAFE_INTEGER
  return overLimit ? 'LEDGER_LIMIT' : null
}

/** `key` is the entry's (entryKeyOf), which `seen` holds too: one string for both maps. */
function applyBet(state: State, entry: BetEntry, seq: number, key: string): Verdict {
  const base: BetBase = {
    betId: entry.id,
    userId: entry.userId,
    gameId: entry.gameId,
    marketId: entry.marketId,
    selectionId: entry.selectionId,
    stakeCents: entry.stakeCents,
    odds: entry.odds,
    policy: entry.policy,
    stamp: entry.stamp,
    placedAtMs: entry.placedAtMs,
    // Kept so that the bet's liability is released at the same odds it was counted at.
    offeredOdds: entry.offeredOdds,
    placedSeq: seq,
  }
  const refusal = betRefusal(state, entry)
  if (refusal !== null) {
    // Remember the refused bet, so that a later settlement of it is recognised and ignored.
    const refused = refusedBet(base, refusal, retirementOf(state))
    state.bets.set(key, refused)
    state.retiring.push(refused)
    return rejected(refusal)
  }
  const bet = openBet(base)
  state.bets.set(key, bet)
  credit(state, entry.userId, -entry.stakeCents)
  state.totals.stakesCents += entry.stakeCents
  openExposure(state, bet)
  return APPLIED
}

function applySettlement(state: State, entry: SettlementEntry, seq: number): Verdict {
  // Keyed by user: a settlement naming another user's bet finds no bet.
  const bet = state.bets.get(betKeyOf(entry.userId, entry.betId))
  if (bet === undefined) return rejected('UNKNOWN_BET')
  if (bet.status === 'rejected') return ignored('BET_NOT_OPEN')
  // The at-most-once payout: whatever settles a bet first, in stream order, is its only payout.
  if (bet.status === 'settled') return ignored('ALREADY_SETTLED')
  const settledOdds = entry.odds ?? bet.odds
  const payout = payoutCents(bet.stakeCents, settledOdds, entry.outcome)
  if (inflowCents(state) + payout > LEDGER_INFLOW_CENTS_MAX) return rejected('LEDGER_LIMIT')
  const settled = settledBet(bet, {
    outcome: entry.outcome,
    settledOdds,
    payoutCents: payout,
    settlementId: entry.id,
    settledSeq: seq,
    retireAtMs: retirementOf(state),
  })
  // The map keeps the key it holds: the one `seen` holds too.
  state.bets.set(betKeyOf(bet.userId, bet.betId), settled)
  state.retiring.push(settled)
  closeExposure(state, bet)
  state.totals.payoutsCents += payout
  credit(state, entry.userId, payout)
  return APPLIED
}

/** Count an applied transfer in its market's allowance, on folding or on restore. */
export function moveAllowance(state: State, entry: AllowanceEntry): void {
  const key = marketKeyOf(entry.gameId, entry.marketId)
  const next =
    (state.allowances.get(key) ?? 0) + (entry.type === 'allowance-grant' ? -entry.cents : entry.cents)
  if (next === 0) state.allowances.delete(key)
  else state.allowances.set(key, next)
  state.transfers.set(entryKeyOf(entry), entry)
}

/**
 * A grant leaves only unused allowance: the shard's share plus what it holds from transfers, less
 * its open liability. So however grants, receipts and bets interleave, the shards' allowances sum
 * to at most their shares, and no shard's liability passes its allowance.
 */
function applyAllowance(state: State, entry: AllowanceEntry): Verdict {
  const key = marketKeyOf(entry.gameId, entry.marketId)
  const moved = state.allowances.get(key) ?? 0
  if (entry.type === 'allowance-grant') {
    const unused = entry.shareCents + moved - (state.markets.get(key) ?? 0)
    if (entry.cents > unused) return rejected('ALLOWANCE_SHORT')
  } else if (moved + entry.cents > MARKET_LIABILITY_CENTS_MAX) {
    return rejected('LEDGER_LIMIT')
  }
  moveAllowance(state, entry)
  return APPLIED
}

function applyEntry(state: State, entry: LedgerEntry, seq: number, key: string): Verdict {
  switch (entry.type) {
    case 'deposit':
    case 'withdrawal':
      return applyMovement(state, entry)
    case 'bet':
      return applyBet(state, entry, seq, key)
    case 'settlement':
      return applySettlement(state, entry, seq)
    case 'allowance-grant':
    case 'allowance-receipt':
      return applyAllowance(state, entry)
  }
}

/** Checked after every entry: a violation is a bug in this module, so the fold stops dead. */
function assertInvariants(state: State, userId: string): void {
  const balanceCents = state.balances.get(userId) ?? 0
  if (!isIntegerIn(balanceCents, 0, LEDGER_INFLOW_CENTS_MAX) || !checkLedgerSums(state.totals)) {
    throw new Error(
      `ledger invariant violated at seq ${state.lastSeq}: balance of ${userId} is ${balanceCents}, ` +
        `totals ${JSON.stringify(state.totals)}`,
    )
  }
}

function assertNextSeq(lastSeq: number, seq: number): void {
  if (!Number.isSafeInteger(seq) || seq <= lastSeq) {
    throw new RangeError(`ledger fold: sequence ${seq} does not follow ${lastSeq}`)
  }
}

const balanceOf = (state: State, entry: LedgerEntry) => state.balances.get(entry.userId) ?? 0

/** A known id again: the same body reports the first verdict, another body is refused. */
function repeatResult(state: State, entry: LedgerEntry, seen: SeenEntry, digest: string): FoldResult {
  if (seen.digest !== digest) {
    state.counts.conflict += 1
    return {
      entryId: entry.id,
      userId: entry.userId,
      balanceCents: balanceOf(state, entry),
      status: 'conflict',
      reason: 'ID_REUSED',
      conflictsWith: seen.seq,
    }
  }
  state.counts.duplicate += 1
  return {
    entryId: entry.id,
    userId: entry.userId,
    balanceCents: balanceOf(state, entry),
    status: 'duplicate',
    reason: seen.reason,
    original: seen.status,
    duplicateOf: seen.seq,
  }
}

const MALFORMED_RESULT: FoldResult = Object.freeze({
  entryId: null,
  userId: null,
  balanceCents: null,
  status: 'rejected',
  reason: 'MALFORMED',
})

export function foldMessage(state: State, value: unknown, seq: number): readonly FoldResult[] {
  assertNextSeq(state.lastSeq, seq)
  state.lastSeq = seq
  const entries = parseLedgerMessage(value)
  if (entries === null) {
    state.counts.rejected += 1
    state.counts.malformed += 1
    return [MALFORMED_RESULT]
  }
  const results = entries.map((entry) => foldEntry(state, entry, seq))
  retireExpired(state)
  return results
}

function foldEntry(state: State, entry: LedgerEntry, seq: number): FoldResult {
  if (entry.type === 'bet' && entry.placedAtMs > state.logTimeMs)
    // One entry moves the ledger's time at most LEDGER_TIME_STEP_MAX_MS (after the first): a node's
    // clock far ahead cannot retire every settled bet at once. Time lost after a quiet spell is
    // made up by the next entries; a bet retires later then, never sooner.
    state.logTimeMs =
      state.logTimeMs === 0
        ? entry.placedAtMs
        : Math.min(entry.placedAtMs, state.logTimeMs + LEDGER_TIME_STEP_MAX_MS)
  const digest = entryDigest(entry)
  const key = entryKeyOf(entry)
  const seen = state.seen.get(key)
  if (seen !== undefined) return repeatResult(state, entry, seen, digest)
  const verdict = applyEntry(state, entry, seq, key)
  // Every field named in the literal, as bet-state.ts builds bets: one hidden class for all, and
  // every field in the object itself.
  state.seen.set(
    key,
    Object.freeze({ key, seq, digest, status: verdict.status, reason: verdict.reason } as SeenEntry),
  )
  state.counts[verdict.status] += 1
  assertInvariants(state, entry.userId)
  return {
    entryId: entry.id,
    userId: entry.userId,
    balanceCents: balanceOf(state, entry),
    status: verdict.status,
    reason: verdict.reason,
  } as FoldResult
}
