/**
 * Parsing untrusted ledger messages: each entry is rebuilt field by field in a canonical key order,
 * or refused whole (null). Pure.
 */

import { ODDS_POLICIES, type OddsPolicy } from '../crdt/judge.ts'
import { isOdds } from '../crdt/ops.ts'
import { isUserId } from '../protocol/ids.ts'
import { SHARDS_MAX } from '../protocol/shards.ts'
import {
  type AllowanceEntry,
  AMOUNT_CENTS_MAX,
  BETS_PER_BATCH_MAX,
  type BetEntry,
  BOOK_USER_ID,
  type DepositEntry,
  type LedgerEntry,
  MARKET_LIABILITY_CENTS_MAX,
  PLACED_AT_MS_MAX,
  SETTLEMENT_OUTCOMES,
  SETTLEMENTS_PER_BATCH_MAX,
  type SettlementEntry,
  type SettlementOutcome,
  STAKE_CENTS_MAX,
  STAMP_LENGTH_MAX,
  type WithdrawalEntry,
} from './entries.ts'
import { field, isEntryId, isIntegerIn, isRecord, type Raw } from './guards.ts'

const STAMP_PATTERN = /^[\x21-\x7e]+$/

export function isStamp(value: unknown): value is string {
  return typeof value === 'string' && value.length <= STAMP_LENGTH_MAX && STAMP_PATTERN.test(value)
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

export function parseBetFields(raw: Raw, idKey: 'id' | 'betId'): BetFields | null {
  const [id, userId, gameId, marketId, selectionId] = [
    idKey,
    'userId',
    'gameId',
    'marketId',
    'selectionId',
  ].map((key) => field(raw, key))
  const [stakeCents, odds, policy, stamp, placedAtMs] = [
    'stakeCents',
    'odds',
    'policy',
    'stamp',
    'placedAtMs',
  ].map((key) => field(raw, key))
  const [openStakeLimitCents, offeredOdds, marketLiabilityLimitCents] = [
    'openStakeLimitCents',
    'offeredOdds',
    'marketLiabilityLimitCents',
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
    (openStakeLimitCents === undefined || isIntegerIn(openStakeLimitCents, 1, AMOUNT_CENTS_MAX)) &&
    (offeredOdds === undefined || isOdds(offeredOdds)) &&
    (marketLiabilityLimitCents === undefined ||
      isIntegerIn(marketLiabilityLimitCents, 0, MARKET_LIABILITY_CENTS_MAX))
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
    ...(offeredOdds === undefined ? {} : { offeredOdds: offeredOdds as number }),
    ...(marketLiabilityLimitCents === undefined
      ? {}
      : { marketLiabilityLimitCents: marketLiabilityLimitCents as number }),
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

/** An allowance grant or receipt: the book's own entry, on a market, between two shards. */
export function parseAllowance(raw: Raw): AllowanceEntry | null {
  const type = field(raw, 'type')
  const [id, userId, gameId, marketId, cents] = ['id', 'userId', 'gameId', 'marketId', 'cents'].map((key) =>
    field(raw, key),
  )
  const common =
    isEntryId(id) &&
    userId === BOOK_USER_ID &&
    isEntryId(gameId) &&
    isEntryId(marketId) &&
    isIntegerIn(cents, 1, MARKET_LIABILITY_CENTS_MAX)
  if (!common) return null
  const body = { id, userId: BOOK_USER_ID, gameId, marketId } as const
  if (type === 'allowance-grant') {
    const toShard = field(raw, 'toShard')
    const shareCents = field(raw, 'shareCents')
    if (!isIntegerIn(toShard, 0, SHARDS_MAX - 1) || !isIntegerIn(shareCents, 0, MARKET_LIABILITY_CENTS_MAX))
      return null
    return { type, ...body, toShard, cents, shareCents } as AllowanceEntry
  }
  if (type === 'allowance-receipt') {
    const fromShard = field(raw, 'fromShard')
    if (!isIntegerIn(fromShard, 0, SHARDS_MAX - 1)) return null
    return { type, ...body, fromShard, cents } as AllowanceEntry
  }
  return null
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
    case 'allowance-grant':
    case 'allowance-receipt':
      return parseAllowance(value)
    default:
      return null
  }
}

/** The kinds of batch message, each holding entries of one type, at most so many. */
const BATCHES = {
  settlements: { type: 'settlement', max: SETTLEMENTS_PER_BATCH_MAX, parse: parseSettlement },
  bets: { type: 'bet', max: BETS_PER_BATCH_MAX, parse: parseBet },
} as const

function parseBatch(raw: Raw, kind: keyof typeof BATCHES): LedgerEntry[] | null {
  const { type, max, parse } = BATCHES[kind]
  const id = field(raw, 'id')
  const items = field(raw, kind)
  if (!isEntryId(id) || !Array.isArray(items)) return null
  if (items.length < 1 || items.length > max) return null
  const parsed: LedgerEntry[] = []
  for (const item of items) {
    const entry = isRecord(item) && field(item, 'type') === type ? parse(item) : null
    if (entry === null) return null
    parsed.push(entry)
  }
  return parsed
}

/**
 * Validate an untrusted stream message and rebuild the entries it holds, in order: one for a single
 * entry, each entry of a batch; null when any part is invalid (a batch is refused whole).
 */
export function parseLedgerMessage(value: unknown): LedgerEntry[] | null {
  const type = isRecord(value) ? field(value, 'type') : undefined
  if (type === 'settlements' || type === 'bets') return parseBatch(value as Raw, type)
  const entry = parseLedgerEntry(value)
  return entry === null ? null : [entry]
}
