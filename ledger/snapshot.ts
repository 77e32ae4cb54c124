/**
 * Snapshots of the fold: the canonical JSON a node stores and restores from, validated on restore
 * (a snapshot is untrusted too: anything out of place throws). Pure.
 */

import { isOdds } from '../crdt/ops.ts'
import { betKeyOf, entryKeyOf, isUserId } from '../protocol/ids.ts'
import { openBet, refusedBet, settledBet } from './bet-state.ts'
import {
  BET_REFUSALS,
  type BetBase,
  type BetRefusal,
  type BetState,
  checkLedgerSums,
  type FoldCounts,
  IGNORE_REASONS,
  LEDGER_INFLOW_CENTS_MAX,
  LEDGER_SNAPSHOT_VERSION,
  type LedgerIgnoreReason,
  type LedgerRejectReason,
  type LedgerSnapshot,
  PLACED_AT_MS_MAX,
  POTENTIAL_PAYOUT_CENTS_MAX,
  payoutCents,
  REJECT_REASONS,
  SETTLEMENT_OUTCOMES,
  type SeenEntry,
  type SettlementOutcome,
} from './entries.ts'
import { field, isEntryId, isEntryKey, isIntegerIn, isRecord, type Raw } from './guards.ts'
import { parseAllowance, parseBetFields } from './parse.ts'
import {
  emptyState,
  inflowCents,
  moveAllowance,
  openExposure,
  requeueRetirement,
  type State,
} from './state.ts'

export function snapshotOf(state: State): LedgerSnapshot {
  const { depositsCents, withdrawalsCents, stakesCents, payoutsCents } = state.totals
  const userIds = [...state.balances.keys()].sort((a, b) => (a < b ? -1 : a > b ? 1 : 0))
  return {
    version: LEDGER_SNAPSHOT_VERSION,
    lastSeq: state.lastSeq,
    counts: { ...state.counts },
    flows: { depositsCents, withdrawalsCents, stakesCents, payoutsCents },
    balances: userIds.map((userId) => ({ userId, balanceCents: state.balances.get(userId) ?? 0 })),
    // Map order is insertion order, which is seq order both when folding and when restoring.
    entries: [...state.seen.values()],
    bets: [...state.bets.values()],
    transfers: [...state.transfers.values()],
    logTimeMs: state.logTimeMs,
    retired: { ...state.retired },
  }
}

function invalid(message: string): never {
  throw new TypeError(`invalid ledger snapshot: ${message}`)
}

export function isCents(value: unknown): value is number {
  return isIntegerIn(value, 0, Number.MAX_SAFE_INTEGER)
}

function parseCounts(value: unknown): FoldCounts {
  if (!isRecord(value)) return invalid('counts')
  const keys = ['applied', 'rejected', 'ignored', 'duplicate', 'conflict', 'malformed'] as const
  const counts = { applied: 0, rejected: 0, ignored: 0, duplicate: 0, conflict: 0, malformed: 0 }
  for (const key of keys) {
    const count = field(value, key)
    if (!isCents(count)) return invalid(`counts.${key}`)
    counts[key] = count
  }
  return counts
}

function parseFlows(value: unknown): LedgerSnapshot['flows'] {
  if (!isRecord(value)) return invalid('flows')
  const [depositsCents, withdrawalsCents, stakesCents, payoutsCents] = [
    'depositsCents',
    'withdrawalsCents',
    'stakesCents',
    'payoutsCents',
  ].map((key) => field(value, key))
  if (
    !isCents(depositsCents) ||
    !isCents(withdrawalsCents) ||
    !isCents(stakesCents) ||
    !isCents(payoutsCents)
  ) {
    return invalid('flows')
  }
  return { depositsCents, withdrawalsCents, stakesCents, payoutsCents }
}

function restoreBalances(state: State, value: unknown): void {
  if (!Array.isArray(value)) invalid('balances')
  let previous = ''
  for (const item of value) {
    const userId = isRecord(item) ? field(item, 'userId') : undefined
    const balanceCents = isRecord(item) ? field(item, 'balanceCents') : undefined
    if (!isUserId(userId) || !isCents(balanceCents) || userId <= previous) invalid('balances')
    state.balances.set(userId, balanceCents)
    state.totals.balancesCents += balanceCents
    previous = userId
  }
}

function parseSeenEntry(value: unknown, lastSeq: number): SeenEntry {
  if (!isRecord(value)) return invalid('entries')
  const [key, seq, digest, status, reason] = ['key', 'seq', 'digest', 'status', 'reason'].map((key) =>
    field(value, key),
  )
  const verdictValid =
    (status === 'applied' && reason === null) ||
    (status === 'rejected' &&
      REJECT_REASONS.includes(reason as LedgerRejectReason) &&
      reason !== 'MALFORMED') ||
    (status === 'ignored' && IGNORE_REASONS.includes(reason as LedgerIgnoreReason))
  const valid =
    isEntryKey(key) &&
    isIntegerIn(seq, 1, lastSeq) &&
    typeof digest === 'string' &&
    /^[A-Za-z0-9_-]{43}$/.test(digest) &&
    verdictValid
  if (!valid) return invalid(`entry ${JSON.stringify(value).slice(0, 200)}`)
  return Object.freeze({ key, seq, digest, status, reason } as SeenEntry)
}

function restoreEntries(state: State, value: unknown): void {
  if (!Array.isArray(value)) invalid('entries')
  let previousSeq = 0
  for (const item of value) {
    const seen = parseSeenEntry(item, state.lastSeq)
    // A batch's settlements share their message's sequence.
    if (seen.seq < previousSeq || state.seen.has(seen.key)) invalid(`entry ${seen.key} out of order`)
    state.seen.set(seen.key, seen)
    previousSeq = seen.seq
  }
}

function parseBetBase(raw: Raw, state: State): BetBase {
  const fields = parseBetFields(raw, 'betId')
  const placedSeq = field(raw, 'placedSeq')
  if (fields === null || state.seen.get(betKeyOf(fields.userId, fields.id))?.seq !== placedSeq) {
    return invalid(`bet ${JSON.stringify(raw).slice(0, 200)}`)
  }
  const { id: betId, ...rest } = fields
  return { betId, ...rest, placedSeq: placedSeq as number }
}

function parseSettledBet(raw: Raw, base: BetBase, state: State): BetState | null {
  const [outcome, settledOdds, payout, settlementId, settledSeq, retireAtMs] = [
    'outcome',
    'settledOdds',
    'payoutCents',
    'settlementId',
    'settledSeq',
    'retireAtMs',
  ].map((key) => field(raw, key))
  if (!SETTLEMENT_OUTCOMES.includes(outcome as SettlementOutcome) || !isOdds(settledOdds)) return null
  const settlement = isEntryId(settlementId)
    ? state.seen.get(entryKeyOf({ type: 'settlement', userId: base.userId, id: settlementId }))
    : undefined
  const valid =
    payout === payoutCents(base.stakeCents, settledOdds, outcome as SettlementOutcome) &&
    settlement?.status === 'applied' &&
    settlement.seq === settledSeq &&
    settledSeq > base.placedSeq &&
    isRetireAt(retireAtMs, state)
  if (!valid) return null
  return settledBet(base, {
    outcome: outcome as SettlementOutcome,
    settledOdds,
    payoutCents: payout as number,
    settlementId: settlementId as string,
    settledSeq: settledSeq as number,
    retireAtMs,
  })
}

/** A retirement still to come, within one retention of the ledger's time (state.ts). */
function isRetireAt(value: unknown, state: State): value is number {
  return isIntegerIn(value, state.logTimeMs + 1, state.logTimeMs + state.retentionMs)
}

/** Rebuild one bet, checked against the verdict its placement entry records. */
function parseBetState(value: unknown, state: State): BetState {
  if (!isRecord(value)) return invalid('bets')
  const base = parseBetBase(value, state)
  const placement = state.seen.get(betKeyOf(base.userId, base.betId))
  const status = field(value, 'status')
  const reason = field(value, 'reason')
  let bet: BetState | null = null
  if (status === 'open' && placement?.status === 'applied') bet = openBet(base)
  if (status === 'settled' && placement?.status === 'applied') bet = parseSettledBet(value, base, state)
  const refused = BET_REFUSALS.includes(reason as BetRefusal)
  const retireAtMs = field(value, 'retireAtMs')
  if (
    status === 'rejected' &&
    refused &&
    placement?.status === 'rejected' &&
    placement.reason === reason &&
    isRetireAt(retireAtMs, state)
  ) {
    bet = refusedBet(base, reason as BetRefusal, retireAtMs)
  }
  return bet === null ? invalid(`bet ${base.betId}`) : bet
}

/**
 * Restore bets in placement order, rebuild the open exposure and the queue of retirements; returns
 * the stakes and payouts they hold.
 */
function restoreBets(state: State, value: unknown): { stakesCents: number; payoutsCents: number } {
  if (!Array.isArray(value)) return invalid('bets')
  let previousSeq = 0
  let stakesCents = 0
  let payoutsCents = 0
  const retiring: BetState[] = []
  for (const item of value) {
    const bet = parseBetState(item, state)
    // The bets of one batch share their message's sequence.
    if (bet.placedSeq < previousSeq) return invalid(`bet ${bet.betId} out of order`)
    state.bets.set(betKeyOf(bet.userId, bet.betId), bet)
    previousSeq = bet.placedSeq
    if (bet.status !== 'rejected') stakesCents += bet.stakeCents
    if (bet.status === 'settled') payoutsCents += bet.payoutCents
    if (bet.status === 'open') openExposure(state, bet)
    else retiring.push(bet)
    const potential = state.exposures.get(bet.userId)?.potentialPayoutCents ?? 0
    if (potential > POTENTIAL_PAYOUT_CENTS_MAX) return invalid(`potential payout of ${bet.userId}`)
  }
  // The fold queued each at its retirement's time, which never goes back; bets that retire at one
  // time retire together, so their order among themselves does not matter. (A stable sort.)
  const retireAt = (bet: BetState) => (bet.status === 'open' ? 0 : bet.retireAtMs)
  for (const bet of retiring.sort((a, b) => retireAt(a) - retireAt(b))) requeueRetirement(state, bet)
  return { stakesCents, payoutsCents }
}

function parseRetired(value: unknown): State['retired'] {
  if (!isRecord(value)) return invalid('retired')
  const [bets, stakesCents, payoutsCents] = ['bets', 'stakesCents', 'payoutsCents'].map((key) =>
    field(value, key),
  )
  if (!isCents(bets) || !isCents(stakesCents) || !isCents(payoutsCents)) return invalid('retired')
  return { bets, stakesCents, payoutsCents }
}

/** Applied transfers, each one an applied entry the snapshot's entries name. */
function restoreTransfers(state: State, value: unknown): void {
  if (!Array.isArray(value)) invalid('transfers')
  for (const item of value) {
    const transfer = isRecord(item) ? parseAllowance(item) : null
    if (transfer === null) invalid('transfer')
    const key = entryKeyOf(transfer)
    if (state.seen.get(key)?.status !== 'applied' || state.transfers.has(key))
      invalid(`transfer ${transfer.id} is not an applied entry`)
    moveAllowance(state, transfer)
  }
}

/**
 * Rebuild a fold's state from an untrusted snapshot, checking every sum it can recompute; the
 * retention must be the one the snapshot's fold had (LEDGER_BET_RETENTION_MS).
 */
export function restoreState(value: unknown, retentionMs?: number): State {
  if (!isRecord(value) || field(value, 'version') !== LEDGER_SNAPSHOT_VERSION) return invalid('version')
  const state = emptyState(retentionMs)
  const lastSeq = field(value, 'lastSeq')
  if (!isCents(lastSeq)) return invalid('lastSeq')
  state.lastSeq = lastSeq
  const logTimeMs = field(value, 'logTimeMs')
  if (!isIntegerIn(logTimeMs, 0, PLACED_AT_MS_MAX)) return invalid('logTimeMs')
  state.logTimeMs = logTimeMs
  const retired = parseRetired(field(value, 'retired'))
  Object.assign(state.retired, retired)
  Object.assign(state.counts, parseCounts(field(value, 'counts')))
  const flows = parseFlows(field(value, 'flows'))
  Object.assign(state.totals, flows)
  restoreBalances(state, field(value, 'balances'))
  restoreEntries(state, field(value, 'entries'))
  const held = restoreBets(state, field(value, 'bets'))
  restoreTransfers(state, field(value, 'transfers'))
  if (
    held.stakesCents + retired.stakesCents !== flows.stakesCents ||
    held.payoutsCents + retired.payoutsCents !== flows.payoutsCents
  ) {
    return invalid('stakes or payouts do not match the bets, held and retired')
  }
  if (!checkLedgerSums(state.totals) || inflowCents(state) > LEDGER_INFLOW_CENTS_MAX) {
    return invalid('sums do not balance')
  }
  return state
}
