/**
 * The money ledger of one shard of users: a deterministic fold over the shard's totally ordered log
 * (one JetStream stream per shard). Pure: no I/O, no clock, no randomness.
 *
 * A bet is one append to its user's shard, and the stake debit is the bet record. Every node that
 * folds the shard in stream order computes the same balances and the same verdict for every entry:
 * a debit that the balance at its position cannot cover is rejected by everyone alike, and a
 * settlement of a bet that is already settled is a no-op everywhere. Hence at most one payout per
 * bet whatever races or retries happen, without locks or compare-and-set: the stream's order is the
 * only arbiter.
 *
 * A stream message holds one entry, or a batch of settlements (one settlement node's work for many
 * bets of one shard, appended at once). A batch is folded as its settlements one after another, all
 * at the message's sequence; it adds nothing else, so batching changes throughput, not money.
 *
 * Entries come from other processes and are untrusted. `parseLedgerEntry` rebuilds each one field
 * by field in a canonical key order, or returns null; the fold counts such entries and changes no
 * money. An entry id names one body forever: a repeat of the same body is a duplicate and reports
 * the first verdict again (so a retried placement learns what became of it), and a different body
 * under a known id is a conflict that changes nothing.
 *
 * Memory: the fold remembers every entry id for its whole life, because forgetting one would let a
 * late retry apply twice. Each remembered entry costs its id, a 43-character digest of its body and
 * a small record (roughly 250 bytes in V8), and each bet adds its state (roughly 300 bytes more), so
 * ten million entries hold a few gigabytes. Shards are sized with that in mind.
 *
 * Arithmetic: every amount is an integer number of cents, and the limits below keep every running
 * sum an exact integer (at most Number.MAX_SAFE_INTEGER). An entry that would take a sum past that
 * range is rejected with LEDGER_LIMIT, the same on every node, rather than crash the shard.
 */

import { createHash } from 'node:crypto'
import { ODDS_POLICIES, type OddsPolicy } from '../../crdt/judge.ts'
import { ODDS_MAX, ODDS_MIN, ODDS_SCALE } from '../../crdt/limits.ts'
import { ENTRY_ID_LENGTH_MAX, ENTRY_ID_PATTERN, isUserId } from '../../protocol/ids.ts'

/** One deposit or withdrawal: ten million units of currency. */
export const AMOUNT_CENTS_MAX = 1_000_000_000
/** One stake: one hundred thousand units of currency. */
export const STAKE_CENTS_MAX = 10_000_000
/** The largest payout of one bet: the largest stake won at the largest odds. */
export const PAYOUT_CENTS_MAX = (STAKE_CENTS_MAX * ODDS_MAX) / ODDS_SCALE
/**
 * Money that ever entered the shard (deposits plus payouts). Balances, withdrawals and stakes are
 * all bounded by it, because no balance goes negative, so bounding it keeps all of them exact.
 */
export const LEDGER_INFLOW_CENTS_MAX = Number.MAX_SAFE_INTEGER
/**
 * One user's potential payout over open bets: ten billion units of currency. No real bettor comes
 * near it (the API's risk limits are far tighter); it is here so that the running sum stays exact.
 */
export const POTENTIAL_PAYOUT_CENTS_MAX = 1_000_000_000_000
/** Bet stamps are opaque here; an encoded HLC stamp is 45 characters. */
export const STAMP_LENGTH_MAX = 64
/** The latest instant a JavaScript Date can hold. */
export const PLACED_AT_MS_MAX = 8_640_000_000_000_000
export const LEDGER_SNAPSHOT_VERSION = 1
/** Settlements in one batch message; the stream's message size bounds a batch too (see streams.ts). */
export const SETTLEMENTS_PER_BATCH_MAX = 256

// stake × odds must be an exact integer for payoutCents to be exact, and a potential payout just
// below its bound plus one more bet's must be exact too; the limits guarantee both.
if (
  STAKE_CENTS_MAX * ODDS_MAX > Number.MAX_SAFE_INTEGER ||
  POTENTIAL_PAYOUT_CENTS_MAX + PAYOUT_CENTS_MAX > Number.MAX_SAFE_INTEGER ||
  AMOUNT_CENTS_MAX > LEDGER_INFLOW_CENTS_MAX
) {
  throw new Error('ledger limits allow inexact integer arithmetic')
}

export type SettlementOutcome = 'won' | 'lost' | 'void' | 'rejected'
export const SETTLEMENT_OUTCOMES: readonly SettlementOutcome[] = ['won', 'lost', 'void', 'rejected']

export interface DepositEntry {
  readonly type: 'deposit'
  readonly id: string
  readonly userId: string
  readonly amountCents: number
}

export interface WithdrawalEntry {
  readonly type: 'withdrawal'
  readonly id: string
  readonly userId: string
  readonly amountCents: number
}

/** A bet placement: the id is the bet id, and the entry debits the stake. */
export interface BetEntry {
  readonly type: 'bet'
  readonly id: string
  readonly userId: string
  readonly gameId: string
  readonly marketId: string
  readonly selectionId: string
  readonly stakeCents: number
  /** Decimal odds in thousandths the bettor took. */
  readonly odds: number
  readonly policy: OddsPolicy
  readonly stamp: string
  readonly placedAtMs: number
  /**
   * The most the user may hold in open stakes, this bet included, as the placing API node's limit
   * said. The fold refuses the bet past it (USER_STAKE_LIMIT), so bets racing on any number of
   * nodes cannot pass it together. Absent on entries of older nodes: no limit in the fold.
   */
  readonly openStakeLimitCents?: number
}

export interface SettlementEntry {
  readonly type: 'settlement'
  readonly id: string
  readonly betId: string
  readonly userId: string
  readonly outcome: SettlementOutcome
  /** The odds the bet stands at, in thousandths; present on every 'won' settlement. */
  readonly odds?: number
}

export type LedgerEntry = DepositEntry | WithdrawalEntry | BetEntry | SettlementEntry

/** Settlements of bets of one shard in one message. The id only names the message (`Nats-Msg-Id`). */
export interface SettlementBatch {
  readonly type: 'settlements'
  readonly id: string
  readonly settlements: readonly SettlementEntry[]
}

/** What an entry did the first time the fold saw its id. */
export type EntryStatus = 'applied' | 'rejected' | 'ignored'
export type FoldStatus = EntryStatus | 'duplicate' | 'conflict'
export type LedgerRejectReason =
  | 'MALFORMED'
  | 'INSUFFICIENT_FUNDS'
  | 'UNKNOWN_BET'
  | 'USER_MISMATCH'
  | 'LEDGER_LIMIT'
  | 'USER_STAKE_LIMIT'
export type LedgerIgnoreReason = 'BET_NOT_OPEN' | 'ALREADY_SETTLED'
export type FoldReason = LedgerRejectReason | LedgerIgnoreReason | 'ID_REUSED'

const REJECT_REASONS: readonly LedgerRejectReason[] = [
  'MALFORMED',
  'INSUFFICIENT_FUNDS',
  'UNKNOWN_BET',
  'USER_MISMATCH',
  'LEDGER_LIMIT',
  'USER_STAKE_LIMIT',
]
const IGNORE_REASONS: readonly LedgerIgnoreReason[] = ['BET_NOT_OPEN', 'ALREADY_SETTLED']

/** The verdict on an entry's first appearance. */
export type Verdict =
  | { readonly status: 'applied'; readonly reason: null }
  | { readonly status: 'rejected'; readonly reason: LedgerRejectReason }
  | { readonly status: 'ignored'; readonly reason: LedgerIgnoreReason }

interface ResultBase {
  /** Null only for a malformed entry, whose fields cannot be trusted. */
  readonly entryId: string | null
  readonly userId: string | null
  /** The user's balance after this entry. */
  readonly balanceCents: number | null
}

export type FoldResult =
  | (ResultBase & Verdict)
  | (ResultBase & {
      readonly status: 'duplicate'
      /** The reason of the first verdict, which `original` carries. */
      readonly reason: LedgerRejectReason | LedgerIgnoreReason | null
      readonly original: EntryStatus
      /** The stream sequence of the entry's first appearance. */
      readonly duplicateOf: number
    })
  | (ResultBase & {
      readonly status: 'conflict'
      readonly reason: 'ID_REUSED'
      readonly conflictsWith: number
    })

/**
 * Why a placement was refused: the balance at its position, the user's open-stake limit the entry
 * carries, or the exact-arithmetic bound.
 */
export type BetRefusal = 'INSUFFICIENT_FUNDS' | 'USER_STAKE_LIMIT' | 'LEDGER_LIMIT'
export const BET_REFUSALS: readonly BetRefusal[] = ['INSUFFICIENT_FUNDS', 'USER_STAKE_LIMIT', 'LEDGER_LIMIT']

/** A bet as the fold keeps it: the entry's fields (the stamp too, so that a node answering a
 * retried placement can judge the bet at its stamp again) and where the ledger placed it. */
interface BetBase extends Omit<BetEntry, 'type' | 'id'> {
  readonly betId: string
  readonly placedSeq: number
}

export type BetState =
  | (BetBase & { readonly status: 'open' })
  | (BetBase & { readonly status: 'rejected'; readonly reason: BetRefusal })
  | (BetBase & {
      readonly status: 'settled'
      readonly outcome: SettlementOutcome
      /** The odds the payout was computed at. */
      readonly settledOdds: number
      readonly payoutCents: number
      readonly settlementId: string
      readonly settledSeq: number
    })

/** The money that moved through the shard; every field counts cents. */
export interface LedgerTotals {
  readonly depositsCents: number
  readonly withdrawalsCents: number
  /** Stakes of accepted bets, open or settled. */
  readonly stakesCents: number
  readonly payoutsCents: number
  readonly balancesCents: number
  readonly openStakesCents: number
}

export interface Exposure {
  readonly openBets: number
  readonly openStakesCents: number
  /** What the open bets would pay if all won at the odds taken. */
  readonly potentialPayoutCents: number
}

/** Messages folded, by result status; `malformed` counts the rejected ones that did not parse. */
export interface FoldCounts {
  readonly applied: number
  readonly rejected: number
  readonly ignored: number
  readonly duplicate: number
  readonly conflict: number
  readonly malformed: number
}

/** What the fold remembers of every entry id. */
export interface SeenEntry {
  readonly id: string
  readonly seq: number
  /** sha256 (base64url) of the canonical body. */
  readonly digest: string
  readonly status: EntryStatus
  readonly reason: LedgerRejectReason | LedgerIgnoreReason | null
}

export interface UserBalance {
  readonly userId: string
  readonly balanceCents: number
}

/**
 * A fold's whole state as plain JSON, in canonical order (entries by seq, bets by placement seq,
 * balances by user id), so equal folds give equal snapshots. Derived sums are not stored: restore
 * recomputes them and checks them against what is.
 */
export interface LedgerSnapshot {
  readonly version: typeof LEDGER_SNAPSHOT_VERSION
  readonly lastSeq: number
  readonly counts: FoldCounts
  readonly flows: Pick<LedgerTotals, 'depositsCents' | 'withdrawalsCents' | 'stakesCents' | 'payoutsCents'>
  readonly balances: readonly UserBalance[]
  readonly entries: readonly SeenEntry[]
  readonly bets: readonly BetState[]
}

export interface LedgerFold {
  /**
   * Fold one stream message at stream sequence `seq`; sequences must strictly increase. One result
   * per entry the message holds: one for a single entry or a malformed message, one per settlement
   * of a batch, in order.
   */
  apply(value: unknown, seq: number): readonly FoldResult[]
  balance(userId: string): number
  bet(betId: string): BetState | null
  /** The user's open bets in placement order. */
  openBets(userId: string): BetState[]
  exposure(userId: string): Exposure
  totals(): LedgerTotals
  counts(): FoldCounts
  /** Recompute every derived sum from scratch and check it; O(users + bets). */
  invariantHolds(): boolean
  /** The last sequence folded, 0 before the first. */
  lastSeq(): number
  toJSON(): LedgerSnapshot
  /** sha256 (hex) of the canonical snapshot, for comparing folds across nodes. */
  stateHash(): string
}

// ---------------------------------------------------------------------------------------------
// Parsing untrusted entries

type Raw = Record<string, unknown>

const STAMP_PATTERN = /^[\x21-\x7e]+$/
/**
 * Keys that only a hostile or broken writer sends. Refusing the entry outright is simpler to reason
 * about than dropping them and hoping no consumer ever spreads the raw object.
 */
const FORBIDDEN_KEYS = ['__proto__', 'constructor', 'prototype']

function isEntryId(value: unknown): value is string {
  return (
    typeof value === 'string' &&
    value.length >= 1 &&
    value.length <= ENTRY_ID_LENGTH_MAX &&
    ENTRY_ID_PATTERN.test(value)
  )
}

function isIntegerIn(value: unknown, min: number, max: number): value is number {
  return Number.isSafeInteger(value) && (value as number) >= min && (value as number) <= max
}

function isOdds(value: unknown): value is number {
  return isIntegerIn(value, ODDS_MIN, ODDS_MAX)
}

function isStamp(value: unknown): value is string {
  return typeof value === 'string' && value.length <= STAMP_LENGTH_MAX && STAMP_PATTERN.test(value)
}

/** A plain object (JSON-shaped), with none of the keys that only serve prototype pollution. */
function isRecord(value: unknown): value is Raw {
  if (typeof value !== 'object' || value === null || Array.isArray(value)) return false
  const proto = Object.getPrototypeOf(value)
  if (proto !== Object.prototype && proto !== null) return false
  return FORBIDDEN_KEYS.every((key) => !Object.hasOwn(value, key))
}

/** An own data property only: inherited values and getters read as missing. */
function field(raw: Raw, key: string): unknown {
  return Object.getOwnPropertyDescriptor(raw, key)?.value
}

function parseMovement(type: 'deposit' | 'withdrawal', raw: Raw): DepositEntry | WithdrawalEntry | null {
  const id = field(raw, 'id')
  const userId = field(raw, 'userId')
  const amountCents = field(raw, 'amountCents')
  if (!isEntryId(id) || !isUserId(userId) || !isIntegerIn(amountCents, 1, AMOUNT_CENTS_MAX)) return null
  return { type, id, userId, amountCents }
}

/** The fields a bet entry and a snapshot's bet state share, validated; null when any is invalid. */
type BetFields = Omit<BetEntry, 'type' | 'id'> & { readonly id: string }

function parseBetFields(raw: Raw, idKey: 'id' | 'betId'): BetFields | null {
  const [id, userId, gameId, marketId, selectionId] = [
    idKey,
    'userId',
    'gameId',
    'marketId',
    'selectionId',
  ].map((key) => field(raw, key))
  const [stakeCents, odds, policy, stamp, placedAtMs, openStakeLimitCents] = [
    'stakeCents',
    'odds',
    'policy',
    'stamp',
    'placedAtMs',
    'openStakeLimitCents',
  ].map((key) => field(raw, key))
  const valid =
    isEntryId(id) &&
    isUserId(userId) &&
    isEntryId(gameId) &&
    isEntryId(marketId) &&
    isEntryId(selectionId) &&
    isIntegerIn(stakeCents, 1, STAKE_CENTS_MAX) &&
    isOdds(odds) &&
    ODDS_POLICIES.includes(policy as OddsPolicy) &&
    isStamp(stamp) &&
    isIntegerIn(placedAtMs, 0, PLACED_AT_MS_MAX) &&
    (openStakeLimitCents === undefined || isIntegerIn(openStakeLimitCents, 1, AMOUNT_CENTS_MAX))
  if (!valid) return null
  // -0 would print as 0 but is not Object.is-equal to it; normalise so equal bodies are equal values.
  return {
    id,
    userId,
    gameId,
    marketId,
    selectionId,
    stakeCents,
    odds,
    policy: policy as OddsPolicy,
    stamp,
    placedAtMs: placedAtMs + 0,
    ...(openStakeLimitCents === undefined ? {} : { openStakeLimitCents: openStakeLimitCents as number }),
  }
}

function parseBet(raw: Raw): BetEntry | null {
  const fields = parseBetFields(raw, 'id')
  return fields === null ? null : { type: 'bet', ...fields }
}

function parseSettlement(raw: Raw): SettlementEntry | null {
  const id = field(raw, 'id')
  const betId = field(raw, 'betId')
  const userId = field(raw, 'userId')
  const outcome = field(raw, 'outcome') as SettlementOutcome
  const odds = field(raw, 'odds')
  if (!isEntryId(id) || !isEntryId(betId) || !isUserId(userId)) return null
  if (!SETTLEMENT_OUTCOMES.includes(outcome)) return null
  // A won bet pays at the odds it stands at, which only the settler knows; null is not "absent".
  if (odds === undefined) return outcome === 'won' ? null : { type: 'settlement', id, betId, userId, outcome }
  return isOdds(odds) ? { type: 'settlement', id, betId, userId, outcome, odds } : null
}

/** Validate an untrusted value and rebuild it in canonical key order, or return null. */
export function parseLedgerEntry(value: unknown): LedgerEntry | null {
  if (!isRecord(value)) return null
  const type = field(value, 'type')
  switch (type) {
    case 'deposit':
    case 'withdrawal':
      return parseMovement(type, value)
    case 'bet':
      return parseBet(value)
    case 'settlement':
      return parseSettlement(value)
    default:
      return null
  }
}

function parseBatch(raw: Raw): LedgerEntry[] | null {
  const id = field(raw, 'id')
  const settlements = field(raw, 'settlements')
  if (!isEntryId(id) || !Array.isArray(settlements)) return null
  if (settlements.length < 1 || settlements.length > SETTLEMENTS_PER_BATCH_MAX) return null
  const parsed: LedgerEntry[] = []
  for (const item of settlements) {
    const entry = isRecord(item) && field(item, 'type') === 'settlement' ? parseSettlement(item) : null
    if (entry === null) return null
    parsed.push(entry)
  }
  return parsed
}

/**
 * Validate an untrusted stream message and rebuild the entries it holds, in order: one for a single
 * entry, each settlement of a batch; null when any part is invalid (a batch is refused whole).
 */
export function parseLedgerMessage(value: unknown): LedgerEntry[] | null {
  if (isRecord(value) && field(value, 'type') === 'settlements') return parseBatch(value)
  const entry = parseLedgerEntry(value)
  return entry === null ? null : [entry]
}

/** The identity of an entry's body: equal canonical bodies have equal digests. */
export function entryDigest(entry: LedgerEntry): string {
  return createHash('sha256').update(JSON.stringify(entry)).digest('base64url')
}

/**
 * What a bet pays on settlement, in cents: a win pays stake × odds rounded down to the cent, a loss
 * nothing, and a void or rejected bet refunds the stake.
 */
export function payoutCents(stakeCents: number, odds: number, outcome: SettlementOutcome): number {
  if (!isIntegerIn(stakeCents, 1, STAKE_CENTS_MAX) || !isOdds(odds)) {
    throw new RangeError(`payoutCents: stake ${stakeCents} or odds ${odds} out of range`)
  }
  switch (outcome) {
    case 'won': {
      // Exact below 2^53 (asserted at load); subtracting the remainder keeps the division exact too.
      const product = stakeCents * odds
      return (product - (product % ODDS_SCALE)) / ODDS_SCALE
    }
    case 'lost':
      return 0
    case 'void':
    case 'rejected':
      return stakeCents
  }
}

/** The ledger identity: every cent in a balance came in and did not go out again. */
export function checkLedgerSums(totals: LedgerTotals): boolean {
  const values = Object.values(totals)
  if (!values.every((value) => isIntegerIn(value, 0, Number.MAX_SAFE_INTEGER))) return false
  const { depositsCents, withdrawalsCents, stakesCents, payoutsCents, balancesCents, openStakesCents } =
    totals
  return (
    balancesCents + withdrawalsCents + stakesCents === depositsCents + payoutsCents &&
    openStakesCents <= stakesCents
  )
}

// ---------------------------------------------------------------------------------------------
// The fold's state and its transitions

interface MutableExposure {
  readonly betIds: Set<string>
  openStakesCents: number
  potentialPayoutCents: number
}

interface State {
  lastSeq: number
  readonly counts: { -readonly [K in keyof FoldCounts]: number }
  readonly totals: { -readonly [K in keyof LedgerTotals]: number }
  readonly balances: Map<string, number>
  readonly seen: Map<string, SeenEntry>
  readonly bets: Map<string, BetState>
  readonly exposures: Map<string, MutableExposure>
}

const APPLIED: Verdict = { status: 'applied', reason: null }
const rejected = (reason: LedgerRejectReason): Verdict => ({ status: 'rejected', reason })
const ignored = (reason: LedgerIgnoreReason): Verdict => ({ status: 'ignored', reason })

function emptyState(): State {
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
  }
}

function inflowCents(state: State): number {
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
function openExposure(state: State, bet: BetState): void {
  const exposure = exposureOf(state, bet.userId)
  exposure.betIds.add(bet.betId)
  exposure.openStakesCents += bet.stakeCents
  exposure.potentialPayoutCents += payoutCents(bet.stakeCents, bet.odds, 'won')
  state.totals.openStakesCents += bet.stakeCents
}

function closeExposure(state: State, bet: BetState): void {
  const exposure = exposureOf(state, bet.userId)
  exposure.betIds.delete(bet.betId)
  exposure.openStakesCents -= bet.stakeCents
  exposure.potentialPayoutCents -= payoutCents(bet.stakeCents, bet.odds, 'won')
  state.totals.openStakesCents -= bet.stakeCents
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
  const potentialCents = state.exposures.get(entry.userId)?.potentialPayoutCents ?? 0
  const overLimit =
    potentialCents + payoutCents(entry.stakeCents, entry.odds, 'won') > POTENTIAL_PAYOUT_CENTS_MAX
  return overLimit ? 'LEDGER_LIMIT' : null
}

function applyBet(state: State, entry: BetEntry, seq: number): Verdict {
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
    placedSeq: seq,
  }
  const refusal = betRefusal(state, entry)
  if (refusal !== null) {
    // Remember the refused bet, so that a later settlement of it is recognised and ignored.
    state.bets.set(entry.id, Object.freeze({ ...base, status: 'rejected', reason: refusal }))
    return rejected(refusal)
  }
  const bet: BetState = Object.freeze({ ...base, status: 'open' })
  state.bets.set(entry.id, bet)
  credit(state, entry.userId, -entry.stakeCents)
  state.totals.stakesCents += entry.stakeCents
  openExposure(state, bet)
  return APPLIED
}

function applySettlement(state: State, entry: SettlementEntry, seq: number): Verdict {
  const bet = state.bets.get(entry.betId)
  if (bet === undefined) return rejected('UNKNOWN_BET')
  if (bet.userId !== entry.userId) return rejected('USER_MISMATCH')
  if (bet.status === 'rejected') return ignored('BET_NOT_OPEN')
  // The at-most-once payout: whatever settles a bet first, in stream order, is its only payout.
  if (bet.status === 'settled') return ignored('ALREADY_SETTLED')
  const settledOdds = entry.odds ?? bet.odds
  const payout = payoutCents(bet.stakeCents, settledOdds, entry.outcome)
  if (inflowCents(state) + payout > LEDGER_INFLOW_CENTS_MAX) return rejected('LEDGER_LIMIT')
  const settled: BetState = Object.freeze({
    ...bet,
    status: 'settled',
    outcome: entry.outcome,
    settledOdds,
    payoutCents: payout,
    settlementId: entry.id,
    settledSeq: seq,
  })
  state.bets.set(bet.betId, settled)
  closeExposure(state, bet)
  state.totals.payoutsCents += payout
  credit(state, entry.userId, payout)
  return APPLIED
}

function applyEntry(state: State, entry: LedgerEntry, seq: number): Verdict {
  switch (entry.type) {
    case 'deposit':
    case 'withdrawal':
      return applyMovement(state, entry)
    case 'bet':
      return applyBet(state, entry, seq)
    case 'settlement':
      return applySettlement(state, entry, seq)
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

function resultBase(state: State, entry: LedgerEntry): ResultBase {
  return { entryId: entry.id, userId: entry.userId, balanceCents: state.balances.get(entry.userId) ?? 0 }
}

/** A known id again: the same body reports the first verdict, another body is refused. */
function repeatResult(state: State, entry: LedgerEntry, seen: SeenEntry, digest: string): FoldResult {
  if (seen.digest !== digest) {
    state.counts.conflict += 1
    return { ...resultBase(state, entry), status: 'conflict', reason: 'ID_REUSED', conflictsWith: seen.seq }
  }
  state.counts.duplicate += 1
  return {
    ...resultBase(state, entry),
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

function foldMessage(state: State, value: unknown, seq: number): readonly FoldResult[] {
  assertNextSeq(state.lastSeq, seq)
  state.lastSeq = seq
  const entries = parseLedgerMessage(value)
  if (entries === null) {
    state.counts.rejected += 1
    state.counts.malformed += 1
    return [MALFORMED_RESULT]
  }
  return entries.map((entry) => foldEntry(state, entry, seq))
}

function foldEntry(state: State, entry: LedgerEntry, seq: number): FoldResult {
  const digest = entryDigest(entry)
  const seen = state.seen.get(entry.id)
  if (seen !== undefined) return repeatResult(state, entry, seen, digest)
  const verdict = applyEntry(state, entry, seq)
  state.seen.set(entry.id, Object.freeze({ id: entry.id, seq, digest, ...verdict }))
  state.counts[verdict.status] += 1
  assertInvariants(state, entry.userId)
  return { ...resultBase(state, entry), ...verdict }
}

// ---------------------------------------------------------------------------------------------
// Snapshots

function snapshotOf(state: State): LedgerSnapshot {
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
  }
}

function invalid(message: string): never {
  throw new TypeError(`invalid ledger snapshot: ${message}`)
}

function isCents(value: unknown): value is number {
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
  const [id, seq, digest, status, reason] = ['id', 'seq', 'digest', 'status', 'reason'].map((key) =>
    field(value, key),
  )
  const verdictValid =
    (status === 'applied' && reason === null) ||
    (status === 'rejected' &&
      REJECT_REASONS.includes(reason as LedgerRejectReason) &&
      reason !== 'MALFORMED') ||
    (status === 'ignored' && IGNORE_REASONS.includes(reason as LedgerIgnoreReason))
  const valid =
    isEntryId(id) &&
    isIntegerIn(seq, 1, lastSeq) &&
    typeof digest === 'string' &&
    /^[A-Za-z0-9_-]{43}$/.test(digest) &&
    verdictValid
  if (!valid) return invalid(`entry ${JSON.stringify(value).slice(0, 200)}`)
  return Object.freeze({ id, seq, digest, ...({ status, reason } as Verdict) })
}

function restoreEntries(state: State, value: unknown): void {
  if (!Array.isArray(value)) invalid('entries')
  let previousSeq = 0
  for (const item of value) {
    const seen = parseSeenEntry(item, state.lastSeq)
    // A batch's settlements share their message's sequence.
    if (seen.seq < previousSeq || state.seen.has(seen.id)) invalid(`entry ${seen.id} out of order`)
    state.seen.set(seen.id, seen)
    previousSeq = seen.seq
  }
}

function parseBetBase(raw: Raw, state: State): BetBase {
  const fields = parseBetFields(raw, 'betId')
  const placedSeq = field(raw, 'placedSeq')
  if (fields === null || state.seen.get(fields.id)?.seq !== placedSeq) {
    return invalid(`bet ${JSON.stringify(raw).slice(0, 200)}`)
  }
  const { id: betId, ...rest } = fields
  return { betId, ...rest, placedSeq: placedSeq as number }
}

function parseSettledBet(raw: Raw, base: BetBase, state: State): BetState | null {
  const [outcome, settledOdds, payout, settlementId, settledSeq] = [
    'outcome',
    'settledOdds',
    'payoutCents',
    'settlementId',
    'settledSeq',
  ].map((key) => field(raw, key))
  if (!SETTLEMENT_OUTCOMES.includes(outcome as SettlementOutcome) || !isOdds(settledOdds)) return null
  const settlement = isEntryId(settlementId) ? state.seen.get(settlementId) : undefined
  const valid =
    payout === payoutCents(base.stakeCents, settledOdds, outcome as SettlementOutcome) &&
    settlement?.status === 'applied' &&
    settlement.seq === settledSeq &&
    settledSeq > base.placedSeq
  if (!valid) return null
  return {
    ...base,
    status: 'settled',
    outcome: outcome as SettlementOutcome,
    settledOdds,
    payoutCents: payout as number,
    settlementId: settlementId as string,
    settledSeq: settledSeq as number,
  }
}

/** Rebuild one bet, checked against the verdict its placement entry records. */
function parseBetState(value: unknown, state: State): BetState {
  if (!isRecord(value)) return invalid('bets')
  const base = parseBetBase(value, state)
  const placement = state.seen.get(base.betId)
  const status = field(value, 'status')
  const reason = field(value, 'reason')
  let bet: BetState | null = null
  if (status === 'open' && placement?.status === 'applied') bet = { ...base, status }
  if (status === 'settled' && placement?.status === 'applied') bet = parseSettledBet(value, base, state)
  const refused = BET_REFUSALS.includes(reason as BetRefusal)
  if (status === 'rejected' && refused && placement?.status === 'rejected' && placement.reason === reason) {
    bet = { ...base, status, reason: reason as BetRefusal }
  }
  return bet === null ? invalid(`bet ${base.betId}`) : Object.freeze(bet)
}

/** Restore bets in placement order and rebuild the open exposure; returns the payouts they hold. */
function restoreBets(state: State, value: unknown): { stakesCents: number; payoutsCents: number } {
  if (!Array.isArray(value)) return invalid('bets')
  let previousSeq = 0
  let stakesCents = 0
  let payoutsCents = 0
  for (const item of value) {
    const bet = parseBetState(item, state)
    if (bet.placedSeq <= previousSeq) return invalid(`bet ${bet.betId} out of order`)
    state.bets.set(bet.betId, bet)
    previousSeq = bet.placedSeq
    if (bet.status !== 'rejected') stakesCents += bet.stakeCents
    if (bet.status === 'settled') payoutsCents += bet.payoutCents
    if (bet.status === 'open') openExposure(state, bet)
    const potential = state.exposures.get(bet.userId)?.potentialPayoutCents ?? 0
    if (potential > POTENTIAL_PAYOUT_CENTS_MAX) return invalid(`potential payout of ${bet.userId}`)
  }
  return { stakesCents, payoutsCents }
}

/** Rebuild a fold's state from an untrusted snapshot, checking every sum it can recompute. */
function restoreState(value: unknown): State {
  if (!isRecord(value) || field(value, 'version') !== LEDGER_SNAPSHOT_VERSION) return invalid('version')
  const state = emptyState()
  const lastSeq = field(value, 'lastSeq')
  if (!isCents(lastSeq)) return invalid('lastSeq')
  state.lastSeq = lastSeq
  Object.assign(state.counts, parseCounts(field(value, 'counts')))
  const flows = parseFlows(field(value, 'flows'))
  Object.assign(state.totals, flows)
  restoreBalances(state, field(value, 'balances'))
  restoreEntries(state, field(value, 'entries'))
  const held = restoreBets(state, field(value, 'bets'))
  if (held.stakesCents !== flows.stakesCents || held.payoutsCents !== flows.payoutsCents) {
    return invalid('stakes or payouts do not match the bets')
  }
  if (!checkLedgerSums(state.totals) || inflowCents(state) > LEDGER_INFLOW_CENTS_MAX) {
    return invalid('sums do not balance')
  }
  return state
}

// ---------------------------------------------------------------------------------------------
// The fold

/** Recompute balances and open exposure from scratch and compare them with the running sums. */
function recomputedSumsMatch(state: State): boolean {
  let balancesCents = 0
  for (const balanceCents of state.balances.values()) {
    if (!isCents(balanceCents)) return false
    balancesCents += balanceCents
  }
  let openStakesCents = 0
  let openBets = 0
  for (const bet of state.bets.values()) {
    if (bet.status !== 'open') continue
    openStakesCents += bet.stakeCents
    openBets += 1
    if (!state.exposures.get(bet.userId)?.betIds.has(bet.betId)) return false
  }
  const exposed = [...state.exposures.values()].reduce((sum, exposure) => sum + exposure.betIds.size, 0)
  return (
    balancesCents === state.totals.balancesCents &&
    openStakesCents === state.totals.openStakesCents &&
    exposed === openBets &&
    checkLedgerSums(state.totals)
  )
}

/** A fold over one shard's log, empty or restored from a snapshot (which is validated: it throws). */
export function createLedgerFold(snapshot?: unknown): LedgerFold {
  const state = snapshot === undefined ? emptyState() : restoreState(snapshot)
  const toJSON = () => snapshotOf(state)
  return {
    apply: (value, seq) => foldMessage(state, value, seq),
    balance: (userId) => state.balances.get(userId) ?? 0,
    bet: (betId) => state.bets.get(betId) ?? null,
    openBets(userId) {
      const betIds = state.exposures.get(userId)?.betIds ?? []
      return [...betIds].flatMap((betId) => state.bets.get(betId) ?? [])
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
    toJSON,
    stateHash: () => createHash('sha256').update(JSON.stringify(toJSON())).digest('hex'),
  }
}
