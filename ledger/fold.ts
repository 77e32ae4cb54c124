/**
 * The ledger fold of one shard: apply messages in stream order, read balances, bets and exposure,
 * snapshot and restore. Pure.
 */

import { createHash } from 'node:crypto'
import { BOOK_USER_ID, betKeyOf, entryKeyOf } from '../protocol/ids.ts'
import { checkLedgerSums, type LedgerFold, liabilityCents, marketKeyOf } from './entries.ts'
import { isCents, restoreState, snapshotOf } from './snapshot.ts'
import { emptyState, foldMessage, type State } from './state.ts'

/** Recompute balances, open exposure and market liability from scratch and compare them with the running sums. */
function recomputedSumsMatch(state: State): boolean {
  let balancesCents = 0
  for (const balanceCents of state.balances.values()) {
    if (!isCents(balanceCents)) return false
    balancesCents += balanceCents
  }
  let openStakesCents = 0
  let openBets = 0
  const markets = new Map<string, number>()
  for (const bet of state.bets.values()) {
    if (bet.status !== 'open') continue
    openStakesCents += bet.stakeCents
    openBets += 1
    if (!state.exposures.get(bet.userId)?.betIds.has(bet.betId)) return false
    const key = marketKeyOf(bet.gameId, bet.marketId)
    if (liabilityCents(bet) > 0) markets.set(key, (markets.get(key) ?? 0) + liabilityCents(bet))
  }
  const exposed = [...state.exposures.values()].reduce((sum, exposure) => sum + exposure.betIds.size, 0)
  const marketsMatch =
    markets.size === state.markets.size &&
    [...markets].every(([key, cents]) => state.markets.get(key) === cents)
  const allowances = new Map<string, number>()
  for (const transfer of state.transfers.values()) {
    const key = marketKeyOf(transfer.gameId, transfer.marketId)
    const cents = transfer.type === 'allowance-grant' ? -transfer.cents : transfer.cents
    allowances.set(key, (allowances.get(key) ?? 0) + cents)
  }
  const allowancesMatch = [...allowances].every(([key, cents]) => (state.allowances.get(key) ?? 0) === cents)
  return (
    balancesCents === state.totals.balancesCents &&
    openStakesCents === state.totals.openStakesCents &&
    exposed === openBets &&
    marketsMatch &&
    allowancesMatch &&
    [...state.allowances.keys()].every((key) => allowances.has(key)) &&
    checkLedgerSums(state.totals)
  )
}

/**
 * A fold over one shard's log, empty or restored from a snapshot (which is validated: it throws).
 * `betRetentionMs` is for tests: every fold of a shard must keep bets equally long.
 */
export function createLedgerFold(snapshot?: unknown, options: { betRetentionMs?: number } = {}): LedgerFold {
  const state =
    snapshot === undefined
      ? emptyState(options.betRetentionMs)
      : restoreState(snapshot, options.betRetentionMs)
  const toJSON = () => snapshotOf(state)
  return {
    apply: (value, seq) => foldMessage(state, value, seq),
    balance: (userId) => state.balances.get(userId) ?? 0,
    bet: (userId, betId) => state.bets.get(betKeyOf(userId, betId)) ?? null,
    marketLiability: (gameId, marketId) => state.markets.get(marketKeyOf(gameId, marketId)) ?? 0,
    allowanceMoved: (gameId, marketId) => state.allowances.get(marketKeyOf(gameId, marketId)) ?? 0,
    transfer: (type, id) => state.transfers.get(entryKeyOf({ type, userId: BOOK_USER_ID, id })) ?? null,
    openBets(userId) {
      const betIds = state.exposures.get(userId)?.betIds ?? []
      return [...betIds].flatMap((betId) => state.bets.get(betKeyOf(userId, betId)) ?? [])
    },
    exposure(userId) {
      const exposure = state.exposures.get(userId)
      return {
        openBets: exposure?.betIds.size ?? 0,
        openStakesCents: exposure?.openStakesCents ?? 0,
        potentialPayoutCents: exposure?.potentialPayoutCents ?? 0,
      }
    },
    totals: () => ({ ...state.totals }),
    counts: () => ({ ...state.counts }),
    invariantHolds: () => recomputedSumsMatch(state),
    lastSeq: () => state.lastSeq,
    betsHeld: () => state.bets.size,
    retired: () => ({ ...state.retired }),
    toJSON,
    stateHash: () => createHash('sha256').update(JSON.stringify(toJSON())).digest('hex'),
  }
}
