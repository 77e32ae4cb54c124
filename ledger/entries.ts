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

import { createHash, hash } from 'node:crypto'
import type { OddsPolicy } from '../crdt/judge.ts'
import { ODDS_MAX, ODDS_SCALE } from '../crdt/limits.ts'
import { isOdds } from '../crdt/ops.ts'
import { BOOK_USER_ID } from '../protocol/ids.ts'
import { isIntegerIn } from './guards.ts'

export { BOOK_USER_ID }

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
/**
 * The largest liability limit a bet entry may carry for its market: far above any book's, and low
 * enough that a market's open liability (at most this plus one bet's) stays an exact integer.
 */
export const MARKET_LIABILITY_CENTS_MAX = 1_000_000_000_000_000
/** Bet stamps are opaque here; an encoded HLC stamp is 45 characters. */
export const STAMP_LENGTH_MAX = 64
/** The latest instant a JavaScript Date can hold. */
export const PLACED_AT_MS_MAX = 8_640_000_000_000_000
/**
 * 2: entries and bets are keyed by kind and user too (protocol/ids.ts, entryKeyOf).
 * 3: the allowance transfers a shard applied (`transfers`).
 * 4: settled and refused bets retire (`logTimeMs`, `retired`, and each such bet's `retireAtMs`).
 */
export const LEDGER_SNAPSHOT_VERSION = 4
/**
 * How long the fold keeps a bet once it is settled or refused, by the ledger's own time (the latest
 * `placedAtMs` it has folded): then the bet and its entries' ids leave the fold's memory, so that
 * what a node holds grows with the bets of the last few minutes, not with the day's. A placement
 * retried within this (and always while its bet is open) gets its original answer; one retried
 * later is a new bet. Every fold of a shard must use the same value, or they diverge when such a
 * retry comes: it is one constant, not an option. At least the stream's duplicate window (a test
 * checks it).
 */
export const LEDGER_BET_RETENTION_MS = 10 * 60_000
/**
 * The most one entry moves the ledger's time forward. Bets are stamped by nodes whose clocks stay
 * within the drift bound of each other, so entries move it by seconds; one node's clock far ahead
 * moves it this much per entry, not by hours at once.
 */
export const LEDGER_TIME_STEP_MAX_MS = 60_000
/** Settlements in one batch message; the stream's message size bounds a batch too (see streams.ts). */
export const SETTLEMENTS_PER_BATCH_MAX = 256
/** Bets in one batch message (an API node's group commit); the message size bounds it too. */
export const BETS_PER_BATCH_MAX = SETTLEMENTS_PER_BATCH_MAX

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
  /**
   * The price offered at the bet's stamp, as the placing node judged it: the market's liability
   * counts the bet at it, never at the odds the client asked for. Absent when the node held no price
   * for the selection at the stamp: such a bet can stand only if an update stamped before it
   * arrives late, and counts nothing.
   */
  readonly offeredOdds?: number
  /**
   * This shard's allowance of the market's liability limit, as the placing node's limit said. The
   * fold refuses the bet past it (MARKET_LIABILITY_LIMIT), so racing bets cannot pass it together.
   */
  readonly marketLiabilityLimitCents?: number
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

/**
 * A market's liability allowance leaving this shard for another (the bounded counter: the sum of
 * the shards' allowances never passes the market's limit). Applied only if the shard's unused
 * allowance covers it: its share (`shareCents`, what its bets carry as `marketLiabilityLimitCents`)
 * plus what it received, minus what it gave and its open liability on the market. The id names the
 * transfer; the receipt on the taking shard carries the same id.
 */
export interface AllowanceGrantEntry {
  readonly type: 'allowance-grant'
  readonly id: string
  readonly userId: typeof BOOK_USER_ID
  readonly gameId: string
  readonly marketId: string
  readonly toShard: number
  readonly cents: number
  readonly shareCents: number
}

/**
 * Allowance arriving from another shard, appended only after that shard applied the grant of the
 * same id. Always applied; a repeat of the id is a duplicate, so a transfer counts once.
 */
export interface AllowanceReceiptEntry {
  readonly type: 'allowance-receipt'
  readonly id: string
  readonly userId: typeof BOOK_USER_ID
  readonly gameId: string
  readonly marketId: string
  readonly fromShard: number
  readonly cents: number
}

export type AllowanceEntry = AllowanceGrantEntry | AllowanceReceiptEntry

export type LedgerEntry =
  | DepositEntry
  | WithdrawalEntry
  | BetEntry
  | SettlementEntry
  | AllowanceGrantEntry
  | AllowanceReceiptEntry

/** Settlements of bets of one shard in one message. The id only names the message (`Nats-Msg-Id`). */
export interface SettlementBatch {
  readonly type: 'settlements'
  readonly id: string
  readonly settlements: readonly SettlementEntry[]
}

/**
 * Bets of users of one shard in one message: the bets an API node took while its previous append
 * to the shard was in flight (group commit). Folded as its bets one after another, each with its
 * own verdict, all at the message's sequence. The id only names the message (`Nats-Msg-Id`).
 */
export interface BetBatch {
  readonly type: 'bets'
  readonly id: string
  readonly bets: readonly BetEntry[]
}

/** What an entry did the first time the fold saw its id. */
export type EntryStatus = 'applied' | 'rejected' | 'ignored'
export type FoldStatus = EntryStatus | 'duplicate' | 'conflict'
export type LedgerRejectReason =
  | 'MALFORMED'
  | 'INSUFFICIENT_FUNDS'
  | 'UNKNOWN_BET'
  | 'LEDGER_LIMIT'
  | 'USER_STAKE_LIMIT'
  | 'MARKET_LIABILITY_LIMIT'
  | 'ALLOWANCE_SHORT'
export type LedgerIgnoreReason = 'BET_NOT_OPEN' | 'ALREADY_SETTLED'
export type FoldReason = LedgerRejectReason | LedgerIgnoreReason | 'ID_REUSED'

export const REJECT_REASONS: readonly LedgerRejectReason[] = [
  'MALFORMED',
  'INSUFFICIENT_FUNDS',
  'UNKNOWN_BET',
  'LEDGER_LIMIT',
  'USER_STAKE_LIMIT',
  'MARKET_LIABILITY_LIMIT',
  'ALLOWANCE_SHORT',
]
export const IGNORE_REASONS: readonly LedgerIgnoreReason[] = ['BET_NOT_OPEN', 'ALREADY_SETTLED']

/** The verdict on an entry's first appearance. */
export type Verdict =
  | { readonly status: 'applied'; readonly reason: null }
  | { readonly status: 'rejected'; readonly reason: LedgerRejectReason }
  | { readonly status: 'ignored'; readonly reason: LedgerIgnoreReason }

export interface ResultBase {
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
export type BetRefusal = 'INSUFFICIENT_FUNDS' | 'USER_STAKE_LIMIT' | 'MARKET_LIABILITY_LIMIT' | 'LEDGER_LIMIT'
export const BET_REFUSALS: readonly BetRefusal[] = [
  'INSUFFICIENT_FUNDS',
  'USER_STAKE_LIMIT',
  'MARKET_LIABILITY_LIMIT',
  'LEDGER_LIMIT',
]

/** A bet as the fold keeps it: the entry's fields (the stamp too, so that a node answering a
 * retried placement can judge the bet at its stamp again) and where the ledger placed it. */
export interface BetBase extends Omit<BetEntry, 'type' | 'id'> {
  readonly betId: string
  readonly placedSeq: number
}

export type BetState =
  | (BetBase & { readonly status: 'open' })
  | (BetBase & {
      readonly status: 'rejected'
      readonly reason: BetRefusal
      /** The ledger time (LEDGER_BET_RETENTION_MS) at which the bet leaves the fold. */
      readonly retireAtMs: number
    })
  | (BetBase & {
      readonly status: 'settled'
      readonly outcome: SettlementOutcome
      /** The odds the payout was computed at. */
      readonly settledOdds: number
      readonly payoutCents: number
      readonly settlementId: string
      readonly settledSeq: number
      readonly retireAtMs: number
    })

/** The bets that left a fold (LEDGER_BET_RETENTION_MS): how many, and the money they had moved. */
export interface RetiredBets {
  readonly bets: number
  /** Stakes of the retired bets the ledger had accepted (a refused bet moved none). */
  readonly stakesCents: number
  readonly payoutsCents: number
}

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

/** What the fold remembers of every entry, under its key (kind, user and id: protocol/ids.ts). */
export interface SeenEntry {
  readonly key: string
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
  /** The ledger's time: the latest `placedAtMs` folded (0 before the first bet). */
  readonly logTimeMs: number
  readonly retired: RetiredBets
  /** Allowance grants and receipts applied, in the order applied. */
  readonly transfers: readonly AllowanceEntry[]
}

export interface LedgerFold {
  /**
   * Fold one stream message at stream sequence `seq`; sequences must strictly increase. One result
   * per entry the message holds: one for a single entry or a malformed message, one per settlement
   * of a batch, in order.
   */
  apply(value: unknown, seq: number): readonly FoldResult[]
  balance(userId: string): number
  /** A user's bet; another user's bet of the same id is not it. */
  bet(userId: string, betId: string): BetState | null
  /** What the open bets of this shard on one market would lose the book, at their offered odds. */
  marketLiability(gameId: string, marketId: string): number
  /**
   * The market's liability allowance this shard received from others minus what it gave them; its
   * allowance is its share plus this (AllowanceGrantEntry).
   */
  allowanceMoved(gameId: string, marketId: string): number
  /** An applied allowance transfer of this shard: the grant or the receipt of that id. */
  transfer(type: AllowanceEntry['type'], id: string): AllowanceEntry | null
  /** The user's open bets in placement order. */
  openBets(userId: string): BetState[]
  exposure(userId: string): Exposure
  totals(): LedgerTotals
  counts(): FoldCounts
  /** Recompute every derived sum from scratch and check it; O(users + bets). */
  invariantHolds(): boolean
  /** The last sequence folded, 0 before the first. */
  lastSeq(): number
  /** Bets the fold holds now: open ones, and settled or refused ones not retired yet. */
  betsHeld(): number
  retired(): RetiredBets
  toJSON(): LedgerSnapshot
  /** sha256 (hex) of the canonical snapshot, for comparing folds across nodes. */
  stateHash(): string
}

/**
 * SHA-256 of a string, base64url. Node's one-shot `hash` (from 20.12) costs a third of a Hash
 * object for inputs this small, and a fold digests every entry; older Nodes get the Hash object.
 */
export const sha256: (data: string | Uint8Array) => string =
  typeof hash === 'function'
    ? (data) => hash('sha256', data, 'base64url')
    : (data) => createHash('sha256').update(data).digest('base64url')

/** The identity of an entry's body: equal canonical bodies have equal digests. */
export function entryDigest(entry: LedgerEntry): string {
  return sha256(JSON.stringify(entry))
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

/**
 * What a bet would lose the book if it won, in cents: its winnings at the price offered at its
 * stamp. A bet without an offered price counts nothing (BetEntry.offeredOdds says why).
 */
export function liabilityCents(bet: Pick<BetEntry, 'stakeCents' | 'offeredOdds'>): number {
  if (bet.offeredOdds === undefined) return 0
  return payoutCents(bet.stakeCents, bet.offeredOdds, 'won') - bet.stakeCents
}

/** Markets are known by game and market id; neither id can hold a space. */
export const marketKeyOf = (gameId: string, marketId: string) => `${gameId} ${marketId}`

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
