/**
 * What a node holds, for the chaos checker to compare across nodes (served at `GET /debug/state`
 * on the ops port): its ledger fold (balances, every bet, settlements applied per bet, the money
 * flows) and, per game, its replica's state hash and its own verdict on every bet it knows, judged
 * on its own replica. Nodes that never saw the same ledger and replicas cannot give the same
 * answer, so equal answers are evidence of agreement, not of a shared source.
 *
 * Every per-bet record is keyed by the bet's key (`betKeyOf(userId, betId)`, protocol/ids.ts), as
 * the fold keys it: two users' bets of one id are two bets here too.
 */

import { fenceOf, judge, writerOf, writersOf } from '../../crdt/index.ts'
import { betKeyOf, entryKeyParts, SETTLEMENT_ID_PREFIX } from '../../protocol/ids.ts'
import type { LedgerSync } from './ledger-sync.ts'
import type { StateOptions } from './ops-server.ts'
import type { ReplicaSync } from './replica-sync.ts'
import type { FollowerPhase } from './stream-follower.ts'

export interface LedgerState {
  readonly balances: Record<string, number>
  /** Per bet key. */
  readonly bets: Record<
    string,
    {
      readonly userId: string
      readonly gameId: string
      readonly marketId: string
      readonly selectionId: string
      readonly stakeCents: number
      readonly odds: number
      readonly policy: string
      readonly stamp: string
      readonly status: string
      readonly outcome?: string
      readonly payoutCents?: number
      readonly settledOdds?: number
    }
  >
  /** Settlement entries the fold applied, per bet key: never more than one. */
  readonly settlementsPerBet: Record<string, number>
  readonly totals: {
    readonly depositsCents: number
    readonly withdrawalsCents: number
    readonly stakesCents: number
    readonly payoutsCents: number
  }
}

export interface ReplicaState {
  readonly stateHash: string
  /** Fenced writers of the game, each with the writer that fenced it. */
  readonly fenced: Record<string, string>
  /** Per bet key. */
  readonly verdicts: Record<
    string,
    {
      readonly accepted: boolean
      readonly reason: string | null
      readonly gameClockMs: number | null
      readonly final: boolean
    }
  >
}

/** Where a node's reading of a stream stands. */
export interface StreamPosition {
  readonly lastSeq: number
  readonly caughtUp: boolean
  /** Times its consumer was replaced. */
  readonly restarts: number
  /** Of those, times its consumer skipped a sequence. */
  readonly holes: number
  readonly phase: FollowerPhase
  /** Milliseconds since its last message (or its consumer opened). */
  readonly idleMs: number
}

export interface NodeState {
  /** Fabric updates this node dropped after a fence. */
  readonly droppedUpdates: number
  readonly streams: { readonly fabric: StreamPosition; readonly ledger?: StreamPosition }
  /** A trader's role (nodes/trader/trader.ts), and why it stood down if it did. */
  readonly trader?: { readonly role: string; readonly standDownReason: string | null }
  /** A gateway's status lookups, and the lost statuses they recovered (gateway/bets.ts). */
  readonly relay?: { readonly lookups: number; readonly recovered: number }
  readonly ledger?: LedgerState
  readonly replicas: Record<string, ReplicaState>
}

export function describeNode(
  parts: { replicas: ReplicaSync; ledger?: LedgerSync },
  options: Partial<StateOptions> = {},
): NodeState {
  const { replicas, ledger } = parts
  const replicaStates: Record<string, ReplicaState & { verdicts: ReplicaState['verdicts'] }> = {}
  for (const gameId of replicas.games()) {
    const replica = replicas.replica(gameId)
    if (replica === undefined) continue
    const fenced: Record<string, string> = {}
    for (const writer of writersOf(replica.game)) {
      const fence = fenceOf(replica.game, writer)
      if (fence !== null) fenced[writer] = writerOf(fence)
    }
    replicaStates[gameId] = { stateHash: replica.stateHash(), fenced, verdicts: {} }
  }
  const droppedUpdates = replicas.droppedUpdates()
  const position = ({ follower }: ReplicaSync | LedgerSync): StreamPosition => ({
    lastSeq: follower.lastSeq(),
    caughtUp: follower.caughtUp(),
    restarts: follower.restarts(),
    holes: follower.holes(),
    phase: follower.phase(),
    idleMs: follower.idleMs(),
  })
  const streams = { fabric: position(replicas), ...(ledger ? { ledger: position(ledger) } : {}) }
  if (ledger === undefined || options.replicasOnly)
    return { droppedUpdates, streams, replicas: replicaStates }
  const state: {
    balances: Record<string, number>
    bets: Record<string, LedgerState['bets'][string]>
    settlementsPerBet: Record<string, number>
    totals: { depositsCents: number; withdrawalsCents: number; stakesCents: number; payoutsCents: number }
  } = {
    balances: {},
    bets: {},
    settlementsPerBet: {},
    totals: { depositsCents: 0, withdrawalsCents: 0, stakesCents: 0, payoutsCents: 0 },
  }
  for (let shard = 0; shard < ledger.shards; shard++) {
    const snapshot = ledger.fold(shard).toJSON()
    for (const { userId, balanceCents } of snapshot.balances) state.balances[userId] = balanceCents
    for (const key of Object.keys(state.totals) as (keyof typeof state.totals)[])
      state.totals[key] += snapshot.flows[key]
    for (const entry of snapshot.entries) {
      const { type, userId, id } = entryKeyParts(entry.key)
      if (entry.status !== 'applied' || type !== 'settlement' || !id.startsWith(SETTLEMENT_ID_PREFIX))
        continue
      const betKey = betKeyOf(userId, id.slice(SETTLEMENT_ID_PREFIX.length))
      state.settlementsPerBet[betKey] = (state.settlementsPerBet[betKey] ?? 0) + 1
    }
    for (const bet of snapshot.bets) {
      const betKey = betKeyOf(bet.userId, bet.betId)
      state.bets[betKey] = {
        userId: bet.userId,
        gameId: bet.gameId,
        marketId: bet.marketId,
        selectionId: bet.selectionId,
        stakeCents: bet.stakeCents,
        odds: bet.odds,
        policy: bet.policy,
        stamp: bet.stamp,
        status: bet.status,
        ...(bet.status === 'settled'
          ? { outcome: bet.outcome, payoutCents: bet.payoutCents, settledOdds: bet.settledOdds }
          : {}),
      }
      const replica = replicas.replica(bet.gameId)
      const target = replicaStates[bet.gameId]
      if (replica === undefined || target === undefined || bet.status === 'rejected') continue
      const verdict = judge(replica.game, bet)
      target.verdicts[betKey] = {
        accepted: verdict.accepted,
        reason: verdict.reason,
        gameClockMs: verdict.gameClockMs,
        final: verdict.final,
      }
    }
  }
  return { droppedUpdates, streams, ledger: state, replicas: replicaStates }
}
