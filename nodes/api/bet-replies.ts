/**
 * Replies for a bet the ledger already holds: a retry of the same terms gets the bet's own answer
 * again (same stamp, same ledger sequence), a retry with other terms is refused and told which bet
 * stands; and the coded refusal of a bet the fold refused.
 */

import { judge } from '../../crdt/index.ts'
import type { BetState, LedgerRejectReason } from '../../ledger/index.ts'
import {
  apiError,
  type PlaceBetReply,
  type PlaceBetRequest,
  type ProvisionalReply,
  type RefusedReply,
  sameTerms,
  termsOf,
} from '../../protocol/bets.ts'
import { API_ERRORS, LEDGER_REFUSALS } from '../../protocol/errors.ts'
import type { LedgerSync } from '../fabric/ledger-sync.ts'
import type { ReplicaSync } from '../fabric/replica-sync.ts'

const sameBet = (record: BetState, request: PlaceBetRequest) =>
  record.userId === request.userId && sameTerms(record, request)

export interface BetReplies {
  replyFor(record: BetState, request: PlaceBetRequest): PlaceBetReply
}

export function createBetReplies(options: {
  readonly replicas: ReplicaSync
  readonly ledger: LedgerSync
}): BetReplies {
  const { replicas, ledger } = options
  /**
   * The reply for a bet the ledger already holds (a retry, here or at another node). A retry with
   * other terms is refused, and told which bet stands under the id and what became of it.
   */
  function replyFor(record: BetState, request: PlaceBetRequest): PlaceBetReply {
    if (!sameBet(record, request)) {
      const terms = termsOf(record)
      return {
        ...apiError('BET_ID_REUSED', `bet id ${request.betId} was used for another bet`),
        standing: { terms, reply: standingReply(record, { ...request, ...terms }) },
      }
    }
    return standingReply(record, request)
  }

  function standingReply(record: BetState, request: PlaceBetRequest): ProvisionalReply | RefusedReply {
    if (record.status === 'rejected') return refusal(record.reason)
    const replica = replicas.replica(record.gameId)
    const terms = { ...request, stamp: record.stamp }
    const { final, ...verdict } = replica ? judge(replica.game, terms) : { final: false, ...unknownVerdict }
    const balanceCents = ledger.foldFor(record.userId).balance(record.userId)
    return {
      ok: true,
      betId: record.betId,
      status: 'provisional',
      stamp: record.stamp,
      verdict,
      final,
      balanceCents,
      ledgerSeq: record.placedSeq,
    }
  }

  return { replyFor }
}

/** The coded refusal for a bet the ledger fold refused (protocol/errors.ts maps the reasons). */
export function refusal(reason: string | null): RefusedReply {
  const code = LEDGER_REFUSALS[reason as LedgerRejectReason] ?? 'INSUFFICIENT_FUNDS'
  return apiError(code, `the ledger refused the bet at its place in the ledger: ${API_ERRORS[code].meaning}`)
}

const unknownVerdict = { accepted: false, reason: 'UNKNOWN_MARKET' as const, odds: null, gameClockMs: null }
