/**
 * Status recovery on an API node: for bets of one user, the final and settled statuses this node
 * can vouch for now, built from its replica (the verdict, once final) and its ledger fold (the
 * settlement), in the shapes the status subject carries. A client that missed a status event (core
 * NATS delivers at most once) asks here. Only the user's own bets are answered: a bet id of another
 * user, or one this node's fold does not hold, is left out.
 */

import { type BetTerms, judge, type Replica } from '../../crdt/index.ts'
import type { BetStatus, LookupRequest } from '../../protocol/bets.ts'
import type { LedgerSync } from '../fabric/ledger-sync.ts'
import type { ReplicaSync } from '../fabric/replica-sync.ts'

export interface LookupSources {
  readonly replicas: ReplicaSync
  readonly ledger: LedgerSync
  readonly now: () => number
}

/**
 * Each bet's statuses in order (final, then settled). `finalAtMs` is when this node answered: the
 * moment the verdict first became final is not kept. A bet of an archived game is judged on the
 * game's archived replica, loaded for it (nodes/fabric/archive.ts).
 */
export async function lookupStatuses(sources: LookupSources, request: LookupRequest): Promise<BetStatus[]> {
  const { replicas, ledger, now } = sources
  const fold = ledger.foldFor(request.userId)
  const games = new Set<string>()
  for (const betId of request.betIds) {
    const gameId = fold.bet(request.userId, betId)?.gameId
    if (gameId !== undefined && replicas.replica(gameId) === undefined) games.add(gameId)
  }
  const archived = new Map<string, Replica | null>()
  for (const gameId of games) archived.set(gameId, await replicas.loadArchive(gameId))
  const balanceCents = fold.balance(request.userId)
  const statuses: BetStatus[] = []
  for (const betId of request.betIds) {
    const bet = fold.bet(request.userId, betId)
    // A bet the ledger refused for funds was answered at placement and has no later status.
    if (bet === null || bet.userId !== request.userId || bet.status === 'rejected') continue
    const game = (replicas.replica(bet.gameId) ?? archived.get(bet.gameId))?.game
    const verdict = game === undefined ? null : judge(game, bet as BetTerms)
    if (verdict?.final) {
      const { final: _final, ...rest } = verdict
      statuses.push({
        betId,
        status: 'final',
        stamp: bet.stamp,
        verdict: rest,
        finalAtMs: now(),
        balanceCents,
      })
    }
    if (bet.status === 'settled')
      statuses.push({
        betId,
        status: 'settled',
        outcome: bet.outcome,
        payoutCents: bet.payoutCents,
        balanceCents,
      })
  }
  return statuses
}
