/**
 * What must hold at the end of a product simulation, checked from outside the nodes: against the
 * raw log (read by an auditor that joins at the end), against what each bettor was told, and
 * against what each API node's replica held when it was sent a bet.
 *
 * 1. Every acknowledged bet is stored, as that user's, with the terms that user sent.
 * 2. Every node computes the same final verdict and game-clock millisecond for every stored bet.
 * 3. No bet is finally accepted that a node stamped after applying its market's suspension, unless
 *    the market reopened between the two stamps (a suspension by a writer fenced before it stamped
 *    it never counted).
 * 4. A final verdict never changes (an acceptance may later be VOIDED by a correction; a VOIDED
 *    never turns back).
 * 5. Every stored bet is settled once, as its verdict and the market's result say; no balance is
 *    negative and the ledger sums.
 * 6. No node found its folds diverged; no bet in a settlement's namespace was accepted.
 */

import {
  type BetTerms,
  isValidEntry,
  judge,
  resultOf,
  type StampKey,
  stampNode,
  type Verdict,
} from '../../../crdt/index.ts'
import type { BetState } from '../../../ledger/index.ts'
import type { LedgerSync } from '../../../nodes/fabric/ledger-sync.ts'
import type { ReplicaSync } from '../../../nodes/fabric/replica-sync.ts'
import type { PlaceBetReply } from '../../../protocol/bets.ts'
import type { HeardFinal } from './nodes.ts'
import type { World } from './world.ts'

export interface PlacedBet {
  readonly userId: string
  readonly betId: string
  readonly body: Readonly<Record<string, unknown>>
  readonly node: string
  readonly kind: 'plain' | 'colliding id' | 'changed body' | 'settlement id' | 'race' | 'misrouted'
  readonly sentAtMs: number
  /** The market's latest transition on the node's replica when the bet was sent. */
  readonly seen: { readonly status: string; readonly stamp: StampKey } | null
  reply: PlaceBetReply | null
}

interface NodeView {
  readonly node?: string
  readonly replicas: ReplicaSync
  readonly ledger: LedgerSync
}

export interface RunToCheck {
  readonly world: World
  readonly placed: readonly PlacedBet[]
  readonly heard: readonly HeardFinal[]
  readonly auditor: { readonly replicas: ReplicaSync; readonly ledger: LedgerSync }
  readonly nodes: readonly NodeView[]
  readonly gameId: string
}

const FAILURES_MAX = 20
const key = (userId: string, betId: string) => `${userId}/${betId}`
const same = (a: Omit<Verdict, 'final'>, b: Omit<Verdict, 'final'>) =>
  a.accepted === b.accepted && a.reason === b.reason && a.odds === b.odds && a.gameClockMs === b.gameClockMs

function termsOf(record: BetState): BetTerms {
  return {
    stamp: record.stamp,
    marketId: record.marketId,
    selectionId: record.selectionId,
    odds: record.odds,
    policy: record.policy,
  }
}

export function checkRun(run: RunToCheck): string[] {
  const failures: string[] = []
  const fail = (message: string) => {
    if (failures.length < FAILURES_MAX) failures.push(message)
  }
  const game = run.auditor.replicas.replica(run.gameId)?.game
  if (game === undefined) return ['the auditor holds no game']
  const finalOf = new Map<string, Verdict>()
  const stored = new Map<string, BetState>()
  /** Per bet, the placement that stamped it: a retry is answered with the first one's stamp. */
  const stampedBy = new Map<string, PlacedBet>()
  /** Bets sent at least once to a node that serves their shard. */
  const routedWell = new Set<string>()
  for (const bet of run.placed) {
    const reply = bet.reply
    const betKey = key(bet.userId, bet.betId)
    if (reply?.ok && stampNode(reply.stamp) === bet.node && !stampedBy.has(betKey)) stampedBy.set(betKey, bet)
    if (bet.kind !== 'misrouted') routedWell.add(betKey)
  }

  for (const bet of run.placed) {
    const reply = bet.reply
    if (reply === null) {
      fail(`${bet.userId}/${bet.betId} (${bet.kind}) never got an answer`)
      continue
    }
    if (bet.kind === 'settlement id' && reply.ok)
      fail(`${bet.betId} in the settlement namespace was accepted`)
    if (bet.kind === 'misrouted') {
      const betKey = key(bet.userId, bet.betId)
      // A request that is bad in itself is refused as such before its routing is looked at.
      if (reply.ok || (reply.error.code !== 'WRONG_SHARD' && reply.error.code !== 'BAD_REQUEST'))
        fail(
          `${bet.userId}/${bet.betId}, sent to ${bet.node}, which does not serve its shard, got ${JSON.stringify(reply)}`,
        )
      // Stored only if the same bet also went to a node serving its shard (a retry, a race).
      if (
        !routedWell.has(betKey) &&
        run.auditor.ledger.foldFor(bet.userId).bet(bet.userId, bet.betId) !== null
      )
        fail(`${bet.userId}/${bet.betId}, refused as misrouted, is stored`)
      continue
    }
    if (!reply.ok) continue
    // 1. Stored, as this user's, with these terms.
    const record = run.auditor.ledger.foldFor(bet.userId).bet(bet.userId, bet.betId)
    if (record === null || record.userId !== bet.userId) {
      fail(
        `${bet.userId}/${bet.betId} (${bet.kind}) was acknowledged but the ledger holds no such bet of that user`,
      )
      continue
    }
    if (record.stamp !== reply.stamp || record.stakeCents !== bet.body.stakeCents) {
      fail(`${bet.userId}/${bet.betId} (${bet.kind}) was acknowledged with terms the ledger does not hold`)
      continue
    }
    if (record.status === 'rejected') continue
    stored.set(key(bet.userId, bet.betId), record)
    const { final, ...verdict } = judge(game, termsOf(record))
    if (!final) {
      fail(`${bet.userId}/${bet.betId} is still provisional at the end`)
      continue
    }
    finalOf.set(key(bet.userId, bet.betId), { ...verdict, final })
    // 3. No late accept.
    // A suspension counts only if its writer was active when it stamped it: a zombie trader's close,
    // stamped after the fence that ended its span, stops counting once the fence arrives.
    const transitions = game.markets.get(record.marketId)?.transitions ?? []
    const seen = bet.seen
    const seenCounts =
      seen !== null &&
      seen.status !== 'open' &&
      transitions.some((t) => t.stamp === seen.stamp && isValidEntry(game, t))
    const stamper = stampedBy.get(key(bet.userId, bet.betId)) === bet
    if (stamper && verdict.accepted && seen !== null && seenCounts) {
      const reopened = transitions.some(
        (t) =>
          t.status === 'open' &&
          t.stamp > (bet.seen as { stamp: string }).stamp &&
          t.stamp < record.stamp &&
          isValidEntry(game, t),
      )
      if (!reopened)
        fail(
          `${bet.userId}/${bet.betId} was accepted at ${record.stamp}, though ${bet.node} had applied the market ${seen.status} at ${seen.stamp}`,
        )
    }
  }

  // 2. Every node agrees.
  for (const view of run.nodes) {
    const replica = view.replicas.replica(run.gameId)
    if (replica === undefined) {
      fail(`${view.node} holds no game`)
      continue
    }
    for (const [betKey, record] of stored) {
      const verdict = finalOf.get(betKey)
      if (verdict === undefined) continue
      const theirs = judge(replica.game, termsOf(record))
      if (!theirs.final || !same(theirs, verdict))
        fail(`${view.node} judges ${betKey} ${JSON.stringify(theirs)}, the log ${JSON.stringify(verdict)}`)
    }
    const diverged = view.ledger.diverged()
    if (diverged !== null) fail(`${view.node} found its ledger diverged: ${diverged}`)
  }

  // 4. A final verdict never changes.
  for (const { node, userId, status } of run.heard) {
    const end = finalOf.get(key(userId, status.betId))
    if (end === undefined) continue
    const voidedLater = status.verdict.accepted && end.reason === 'VOIDED'
    if (!voidedLater && !same(status.verdict, end))
      fail(
        `${node} announced ${userId}/${status.betId} final as ${JSON.stringify(status.verdict)}, the end verdict is ${JSON.stringify(end)}`,
      )
  }

  // 5. Settled once, rightly; the money adds up.
  for (const [betKey, record] of stored) {
    const verdict = finalOf.get(betKey)
    if (verdict === undefined) continue
    const settled = run.auditor.ledger.foldFor(record.userId).bet(record.userId, record.betId)
    if (settled?.status !== 'settled') {
      const result = resultOf(game, record.marketId)
      fail(
        `${betKey} was never settled (${settled?.status}; ${record.marketId} ${JSON.stringify(verdict)}, result ${result.state})`,
      )
      continue
    }
    const result = resultOf(game, record.marketId)
    const expected = verdict.accepted
      ? result.state === 'agreed'
        ? result.winners.includes(record.selectionId)
          ? 'won'
          : 'lost'
        : 'pending'
      : verdict.reason === 'VOIDED'
        ? 'void'
        : 'rejected'
    if (settled.outcome !== expected)
      fail(`${betKey} was settled ${settled.outcome}, its verdict says ${expected}`)
  }
  for (let shard = 0; shard < run.auditor.ledger.shards; shard++) {
    const fold = run.auditor.ledger.fold(shard)
    if (!fold.invariantHolds()) fail(`shard ${shard}'s fold breaks its invariants`)
  }
  return failures
}
