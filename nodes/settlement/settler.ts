/**
 * Settlement: for every open bet, once its verdict is final, refund it if it was rejected or
 * voided; once its market's result is agreed and final and its correction deadline final too, pay
 * it if it won. Each settlement is one ledger entry whose id is derived from the bet id, so any
 * number of settlement nodes may race: the ledger fold ignores a second settlement of a bet
 * forever after. A bet is paid at most once.
 *
 * Settlements decided in one pass are appended in batches (settlement-queue.ts): a market of
 * 10,000 bets is a hundred appends, not 10,000. A batch's id is derived from what it holds, so
 * JetStream stores a retried batch once. Accepted bets wait for their market's result in
 * result-wait.ts; a market under review (writers disagree on its result) is held, not paid.
 */

import type { Logger } from 'pino'
import { type BetTerms, isFinal, judge } from '../../crdt/index.ts'
import type { BetEntry } from '../../ledger/index.ts'
import type { FinalStatus } from '../../protocol/bets.ts'
import { betKeyOf } from '../../protocol/ids.ts'
import { createFinalityQueue, type FinalityQueue } from '../fabric/finality-queue.ts'
import type { LedgerSync } from '../fabric/ledger-sync.ts'
import type { ReplicaSync } from '../fabric/replica-sync.ts'
import type { Projection } from './projection.ts'
import { createResultWait } from './result-wait.ts'
import { createSettlementQueue } from './settlement-queue.ts'

export interface SettlerStats {
  settled: number
  held: number
  appendFailures: number
}

export interface Settler {
  readonly stats: SettlerStats
  /**
   * Settle what can be among the open bets of the games that changed since the last pass (replica,
   * new bet, archive); cheap to call often.
   */
  pass(): void
  openBets(): number
  close(): void
}

export interface SettlerOptions {
  readonly replicas: ReplicaSync
  readonly ledger: LedgerSync
  readonly projection: Projection
  readonly log: Logger
  readonly publishFinal?: (userId: string, status: FinalStatus) => void
  readonly now?: () => number
}

export function createSettler(options: SettlerOptions): Settler {
  const { ledger, log, projection, replicas } = options
  const now = options.now ?? Date.now
  /** Per game, open bets whose verdict is not yet final, by stamp. */
  const undecided = new Map<string, FinalityQueue<BetEntry>>()
  /** Open bets, by betKey. */
  const unsettled = new Set<string>()
  /**
   * Games to look at in the next pass: their replica changed while they held open bets, a bet of
   * theirs came, or they were archived. Nothing else moves a bet towards its settlement. (Passes
   * over every game at every ledger entry and beat took 23 % of a settlement node's busy time at
   * 500 matches.)
   */
  const dirty = new Set<string>()
  // An archived game's bets are decided on its archive, which is final (archive.ts).
  const stopArchives = replicas.onArchive((gameId) => dirty.add(gameId))
  const stats: SettlerStats = { settled: 0, held: 0, appendFailures: 0 }
  const { settle, flush } = createSettlementQueue({
    ledger,
    log,
    stats,
    isOpen: (userId, betId) => unsettled.has(betKeyOf(userId, betId)),
  })
  const results = createResultWait({
    replicas,
    isOpen: (userId, betId) => unsettled.has(betKeyOf(userId, betId)),
    settle,
  })

  /** Whether bets of the game wait here for their final verdict or for their market's result. */
  const hasOpenBets = (gameId: string) => (undecided.get(gameId)?.size() ?? 0) > 0 || results.waiting(gameId)
  // A change moves nothing for a game none of whose bets is open here (a pass over it would find
  // nothing to do), and every writer's beat changes each of its games 50 times a second.
  const stopReplicas = replicas.onChange(({ gameId }) => {
    if (hasOpenBets(gameId)) dirty.add(gameId)
  })

  const stopLedger = ledger.onEntry((_shard, seq, result, entry) => {
    if (entry?.type === 'bet' && (result.status === 'applied' || result.status === 'rejected')) {
      const { id: betId, type: _type, ...rest } = entry
      projection.placed({
        betId,
        ...rest,
        ledgerSeq: seq,
        funds: result.status === 'applied' ? 'debited' : 'refused',
      })
      if (result.status === 'applied') {
        unsettled.add(betKeyOf(entry.userId, betId))
        const queue = undecided.get(entry.gameId) ?? createFinalityQueue<BetEntry>()
        queue.add(entry)
        undecided.set(entry.gameId, queue)
        dirty.add(entry.gameId)
      }
    }
    if (entry?.type === 'settlement' && (result.status === 'applied' || result.status === 'ignored')) {
      const bet = ledger.foldFor(entry.userId).bet(entry.userId, entry.betId)
      if (bet?.status === 'settled')
        projection.settled(entry.userId, entry.betId, bet.outcome, bet.payoutCents, now())
      unsettled.delete(betKeyOf(entry.userId, entry.betId))
    }
  })

  /** Bets whose verdict turned final: refund the rejected, park the accepted until the result. */
  function decideFinal(gameId: string): void {
    const replica = replicas.replica(gameId)
    const queue = undecided.get(gameId)
    if (queue === undefined || queue.size() === 0) return
    if (replica === undefined) {
      // An archived game's bets are decided on its archived replica, loaded for a later pass.
      void replicas.loadArchive(gameId)
      return
    }
    for (const bet of queue.drain((stamp) => isFinal(replica.game, stamp))) {
      if (!unsettled.has(betKeyOf(bet.userId, bet.id))) continue
      const { final: _final, ...verdict } = judge(replica.game, bet as BetTerms)
      projection.finalized(bet.userId, bet.id, verdict, now())
      // The accepting API node announces the final verdict too; announcing it here as well means a
      // bettor still hears it if that node died first. Clients de-duplicate by bet id and status.
      options.publishFinal?.(bet.userId, {
        betId: bet.id,
        status: 'final',
        stamp: bet.stamp,
        verdict,
        finalAtMs: now(),
        balanceCents: ledger.foldFor(bet.userId).balance(bet.userId),
      })
      if (!verdict.accepted) {
        settle(bet, verdict.reason === 'VOIDED' ? 'void' : 'rejected')
        continue
      }
      results.park(gameId, bet, verdict.odds ?? bet.odds)
    }
  }

  return {
    stats,
    pass() {
      const games = [...dirty]
      dirty.clear()
      for (const gameId of games) decideFinal(gameId)
      stats.held = results.settleResults(games)
      // An archived game whose archive did not load (it is tried again) stays to look at.
      for (const gameId of games)
        if (replicas.replica(gameId) === undefined && hasOpenBets(gameId)) dirty.add(gameId)
      flush()
    },
    openBets: () => unsettled.size,
    close() {
      stopLedger()
      stopReplicas()
      stopArchives()
    },
  }
}
