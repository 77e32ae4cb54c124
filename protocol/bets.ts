/**
 * The bet-acceptance protocol on NATS: what a placement, a lookup and a status hold, and the
 * coded errors. Every request is untrusted and validated here. The subjects are in subjects.ts.
 */

import { isId, isOdds, ODDS_POLICIES, type OddsPolicy, type Verdict } from '../crdt/index.ts'
import type { BetEntry, SettlementOutcome } from '../ledger/index.ts'
import { type ApiError, apiError } from './errors.ts'
import { BET_ID_PATTERN, ID_RULES, USER_ID_PATTERN } from './ids.ts'

/** Bets one lookup may name, and the size of the request that names them. */
export const LOOKUP_BETS_MAX = 100
export const LOOKUP_BYTES_MAX = 16 * 1024
export const REQUEST_BYTES_MAX = 4 * 1024

/** What a bettor sends: the bet's ledger fields that the API node does not fill in itself. */
export type PlaceBetRequest = Omit<BetEntry, 'type' | 'id' | 'stamp' | 'placedAtMs'> & {
  readonly betId: string
}

export type { ApiError, ApiErrorCode as ErrorCode } from './errors.ts'

/** A bet's terms: what a retry under the same id must repeat exactly to be the same bet. */
export const BET_TERM_KEYS = ['gameId', 'marketId', 'selectionId', 'stakeCents', 'odds', 'policy'] as const
export type PlacedTerms = Pick<PlaceBetRequest, (typeof BET_TERM_KEYS)[number]>

export function termsOf(bet: PlacedTerms): PlacedTerms {
  const [gameId, marketId, selectionId, stakeCents, odds, policy] = BET_TERM_KEYS.map((key) => bet[key])
  return { gameId, marketId, selectionId, stakeCents, odds, policy } as PlacedTerms
}

export const sameTerms = (a: PlacedTerms, b: PlacedTerms) => BET_TERM_KEYS.every((key) => a[key] === b[key])

export interface ProvisionalReply {
  readonly ok: true
  readonly betId: string
  readonly status: 'provisional'
  readonly stamp: string
  readonly verdict: Omit<Verdict, 'final'>
  readonly final: boolean
  readonly balanceCents: number
  readonly ledgerSeq: number
}

export type RefusedReply = { readonly ok: false; readonly error: ApiError }

/**
 * The bet that stands under an id a placement reused with other terms (BET_ID_REUSED): its terms
 * and its own answer, so that a client whose retry changed the body learns which body was booked.
 */
export interface StandingBet {
  readonly terms: PlacedTerms
  readonly reply: ProvisionalReply | RefusedReply
}

export type PlaceBetReply =
  | ProvisionalReply
  | (RefusedReply & {
      /** Present with BET_ID_REUSED: the user's bet booked under this id. */
      readonly standing?: StandingBet
    })

export interface FinalStatus {
  readonly betId: string
  readonly status: 'final'
  readonly stamp: string
  readonly verdict: Omit<Verdict, 'final'>
  readonly finalAtMs: number
  /** The user's balance in the announcing node's fold when it announced. */
  readonly balanceCents: number
}

export interface SettledStatus {
  readonly betId: string
  readonly status: 'settled'
  readonly outcome: SettlementOutcome
  readonly payoutCents: number
  /** The user's balance in the announcing node's fold when it announced. */
  readonly balanceCents: number
}

export type BetStatus = FinalStatus | SettledStatus

export interface LookupRequest {
  readonly userId: string
  readonly betIds: readonly string[]
}

export type LookupReply =
  | { readonly ok: true; readonly data: { readonly statuses: readonly BetStatus[] } }
  | { readonly ok: false; readonly error: ApiError }

/** Validate a lookup; returns the request or the list of problems. */
export function parseLookup(value: unknown): LookupRequest | string[] {
  if (typeof value !== 'object' || value === null || Array.isArray(value))
    return ['the request must be a JSON object']
  const v = value as Record<string, unknown>
  const problems: string[] = []
  if (typeof v.userId !== 'string' || !USER_ID_PATTERN.test(v.userId))
    problems.push(`userId: ${ID_RULES.userId}`)
  const betIds = v.betIds
  if (!Array.isArray(betIds) || betIds.length < 1 || betIds.length > LOOKUP_BETS_MAX)
    problems.push(`betIds: an array of 1-${LOOKUP_BETS_MAX} bet ids`)
  else if (!betIds.every((id) => typeof id === 'string' && BET_ID_PATTERN.test(id)))
    problems.push(`betIds: each ${ID_RULES.betId}`)
  for (const key of Object.keys(v))
    if (key !== 'userId' && key !== 'betIds') problems.push(`${key.slice(0, 40)}: unknown field`)
  if (problems.length > 0) return problems
  return { userId: v.userId as string, betIds: [...new Set(betIds as string[])] }
}

export { apiError }

/** Validate a placement; returns the request or the list of problems. */
export function parsePlaceBet(value: unknown): PlaceBetRequest | string[] {
  if (typeof value !== 'object' || value === null || Array.isArray(value))
    return ['the request must be a JSON object']
  const v = value as Record<string, unknown>
  const problems: string[] = []
  const check = (ok: boolean, problem: string) => {
    if (!ok) problems.push(problem)
  }
  check(
    typeof v.betId === 'string' && BET_ID_PATTERN.test(v.betId),
    'betId: 8-128 characters of A-Z a-z 0-9 _ . : -',
  )
  check(
    typeof v.userId === 'string' && USER_ID_PATTERN.test(v.userId),
    'userId: 1-64 characters of A-Z a-z 0-9 _ -',
  )
  check(isId(v.gameId), 'gameId: an id of up to 64 characters')
  check(isId(v.marketId), 'marketId: an id of up to 64 characters')
  check(isId(v.selectionId), 'selectionId: an id of up to 64 characters')
  check(Number.isSafeInteger(v.stakeCents) && (v.stakeCents as number) > 0, 'stakeCents: a positive integer')
  check(isOdds(v.odds), 'odds: decimal odds in thousandths, an integer from 1001 to 1000000')
  check(ODDS_POLICIES.includes(v.policy as OddsPolicy), `policy: one of ${ODDS_POLICIES.join(', ')}`)
  const known = new Set<string>(['betId', 'userId', ...BET_TERM_KEYS])
  for (const key of Object.keys(v)) if (!known.has(key)) problems.push(`${key.slice(0, 40)}: unknown field`)
  if (problems.length > 0) return problems
  return {
    betId: v.betId as string,
    userId: v.userId as string,
    gameId: v.gameId as string,
    marketId: v.marketId as string,
    selectionId: v.selectionId as string,
    stakeCents: v.stakeCents as number,
    odds: v.odds as number,
    policy: v.policy as OddsPolicy,
  }
}
