/**
 * Settlement: for every open bet, once its verdict is final, refund it if it was rejected or
 * voided; once its market's result is agreed and final, pay it if it won. Each settlement is one
 * ledger entry whose id is derived from the bet id, so any number of settlement nodes may race:
 * JetStream stores the entry once within its duplicate window, and the ledger fold ignores a
 * second settlement of a bet forever after. A bet is paid at most once.
 *
 * A market under review (writers disagree on its result) is held, not paid.
 */

import type { Logger } from 'pino'
import { type BetTerms, isFinal, judge, resultOf } from '../../crdt/index.ts'
import type { BetEntry, SettlementOutcome } from '../fabric/ledger.ts'
import type { LedgerSync } from '../fabric/ledger-sync.ts'
import type { ReplicaSync } from '../fabric/replica-sync.ts'
import type { Projection } from './projection.ts'

export const settlementId = (betId: string) => `settle-${betId}`
/** Settlement appends in flight at once. */
export const APPENDS_IN_FLIGHT_MAX = 256

export interface SettlerStats {
  settled: number
  held: number
  appendFailures: number
}

export interface Settler {
  readonly stats: SettlerStats
  /** Look at every open bet and settle what can be; cheap to call often. */
  pass(): void
  openBets(): number
  close(): void
}

export interface SettlerOptions {
  readonly replicas: ReplicaSync
  readonly ledger: LedgerSync
  readonly projection: Projection
  readonly log: Logger
  readonly now?: () => number
}

type Decision = { readonly outcome: SettlementOutcome; readonly odds?: number } | 'wait' | 'held'

function decide(options: SettlerOptions, bet: BetEntry, finalized: Set<string>): Decision {
  const replica = options.replicas.replica(bet.gameId)
  if (replica === undefined) return 'wait'
  const terms: BetTerms = bet
  const { final, ...verdict } = judge(replica.game, terms)
  if (!final) return 'wait'
  if (!finalized.has(bet.id)) {
    finalized.add(bet.id)
    options.projection.finalized(bet.id, verdict, (options.now ?? Date.now)())
  }
  if (!verdict.accepted) return { outcome: verdict.reason === 'VOIDED' ? 'void' : 'rejected' }
  const result = resultOf(replica.game, bet.marketId)
  if (result.state === 'review') return 'held'
  if (result.state === 'pending' || !isFinal(replica.game, result.stamp)) return 'wait'
  return result.winners.includes(bet.selectionId)
    ? { outcome: 'won', odds: verdict.odds ?? bet.odds }
    : { outcome: 'lost' }
}

export function createSettler(options: SettlerOptions): Settler {
  const { ledger, log, projection } = options
  const now = options.now ?? Date.now
  const open = new Map<string, BetEntry>()
  const inFlight = new Set<string>()
  const finalized = new Set<string>()
  const stats: SettlerStats = { settled: 0, held: 0, appendFailures: 0 }

  const stopLedger = ledger.onEntry((_shard, seq, result, entry) => {
    if (entry?.type === 'bet' && (result.status === 'applied' || result.status === 'rejected')) {
      const { id: betId, type: _type, ...rest } = entry
      projection.placed({
        betId,
        ...rest,
        ledgerSeq: seq,
        funds: result.status === 'applied' ? 'debited' : 'refused',
      })
      if (result.status === 'applied') open.set(betId, entry)
    }
    if (entry?.type === 'settlement' && (result.status === 'applied' || result.status === 'ignored')) {
      const bet = ledger.foldFor(entry.userId).bet(entry.betId)
      if (bet?.status === 'settled') projection.settled(entry.betId, bet.outcome, bet.payoutCents, now())
      open.delete(entry.betId)
    }
  })

  function settle(bet: BetEntry, outcome: SettlementOutcome, odds?: number): void {
    inFlight.add(bet.id)
    const entry = {
      type: 'settlement' as const,
      id: settlementId(bet.id),
      betId: bet.id,
      userId: bet.userId,
      outcome,
      ...(odds ? { odds } : {}),
    }
    ledger
      .append(entry)
      .then(() => {
        stats.settled++
      })
      .catch((error) => {
        stats.appendFailures++
        log.warn({ err: error, betId: bet.id }, 'settlement append failed; will retry')
      })
      .finally(() => inFlight.delete(bet.id))
  }

  return {
    stats,
    pass() {
      let held = 0
      for (const bet of open.values()) {
        if (inFlight.has(bet.id)) continue
        if (inFlight.size >= APPENDS_IN_FLIGHT_MAX) break
        const decision = decide(options, bet, finalized)
        if (decision === 'held') held++
        else if (decision !== 'wait') settle(bet, decision.outcome, decision.odds)
      }
      stats.held = held
    },
    openBets: () => open.size,
    close: stopLedger,
  }
}
