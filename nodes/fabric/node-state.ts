/**
 * What a node holds, for the chaos checker to compare across nodes (served at `GET /debug/state`
 * on the ops port): its ledger fold (balances, every bet, settlements applied per bet, the money
 * flows) and, per game, its replica's state hash and its own verdict on every bet it knows, judged
 * on its own replica. Nodes that never saw the same ledger and replicas cannot give the same
 * answer, so equal answers are evidence of agreement, not of a shared source. Per ledger shard it
 * also gives the most each user and each market held open at once over the whole ledger, for the
 * chaos runs that check the limits held while bets were open, not only at the end.
 *
 * Every per-bet record is keyed by the bet's key (`betKeyOf(userId, betId)`, protocol/ids.ts), as
 * the fold keys it: two users' bets of one id are two bets here too.
 */

import { fenceOf, judge, writerOf, writersOf } from '../../crdt/index.ts'
import { type BetState, liabilityCents, marketKeyOf } from '../../ledger/index.ts'
import { betKeyOf, entryKeyParts, SETTLEMENT_ID_PREFIX } from '../../protocol/ids.ts'
import type { LedgerSync } from './ledger-sync.ts'
import type { StateOptions } from './ops-server.ts'
import type { ReplicaSync } from './replica-sync.ts'
import type { FollowerPhase, FollowerView } from './stream-follower.ts'

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
  /** Per ledger shard (by its index), the most its fold ever held open at once. */
  readonly peaks: Record<string, ExposurePeaks>
}

/**
 * The most one shard's fold held open at once, replayed from its bets in ledger order (a bet is
 * open from its placement's sequence until its settlement's): what the API nodes' limits bound,
 * though the fold at the end, its bets settled, shows none of it.
 */
export interface ExposurePeaks {
  /** Per user: the open stakes. */
  readonly openStakesCents: Record<string, number>
  /** Per market (`marketKeyOf(gameId, marketId)`): the liability at the bets' offered odds. */
  readonly marketLiabilityCents: Record<string, number>
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
  /** What it handled lately is being compared again with the stream (stream-check.ts). */
  readonly auditing: boolean
  /** What it handled is not what the stream holds: the node is about to exit and refold. */
  readonly diverged: boolean
}

export interface NodeState {
  /** Fabric updates this node dropped after a fence. */
  readonly droppedUpdates: number
  /** `fabric`, and `ledger-<shard>` for each ledger shard the node serves. */
  readonly streams: Readonly<Record<string, StreamPosition>>
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
  const position = (follower: FollowerView): StreamPosition => ({
    lastSeq: follower.lastSeq(),
    caughtUp: follower.caughtUp(),
    restarts: follower.restarts(),
    holes: follower.holes(),
    phase: follower.phase(),
    idleMs: follower.idleMs(),
    auditing: follower.auditing(),
    diverged: follower.diverged() !== null,
  })
  const streams: Record<string, StreamPosition> = { fabric: position(replicas.follower) }
  for (const [shard, follower] of ledger?.followers ?? []) streams[`ledger-${shard}`] = position(follower)
  if (ledger === undefined || options.replicasOnly)
    return { droppedUpdates, streams, replicas: replicaStates }
  const state: {
    balances: Record<string, number>
    bets: Record<string, LedgerState['bets'][string]>
    settlementsPerBet: Record<string, number>
    totals: { depositsCents: number; withdrawalsCents: number; stakesCents: number; payoutsCents: number }
    peaks: Record<string, ExposurePeaks>
  } = {
    balances: {},
    bets: {},
    settlementsPerBet: {},
    totals: { depositsCents: 0, withdrawalsCents: 0, stakesCents: 0, payoutsCents: 0 },
    peaks: {},
  }
  for (const shard of ledger.served) {
    const snapshot = ledger.fold(shard).toJSON()
    state.peaks[String(shard)] = exposurePeaks(snapshot.bets)
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

/**
 * Replay a shard's bets in ledger order, each open from its placement to its settlement, and keep
 * the most each user and each market held open at once. A refused bet was never open. Pure.
 */
export function exposurePeaks(bets: readonly BetState[]): ExposurePeaks {
  // One message may settle several bets at one sequence: at any sequence the settlements are taken
  // first, so a peak is never overstated.
  const moves: { seq: number; bet: BetState; sign: 1 | -1 }[] = []
  for (const bet of bets) {
    if (bet.status === 'rejected') continue
    moves.push({ seq: bet.placedSeq, bet, sign: 1 })
    if (bet.status === 'settled') moves.push({ seq: bet.settledSeq, bet, sign: -1 })
  }
  moves.sort((a, b) => a.seq - b.seq || a.sign - b.sign)
  const openStakes = new Map<string, number>()
  const liability = new Map<string, number>()
  const stakePeaks = new Map<string, number>()
  const liabilityPeaks = new Map<string, number>()
  const move = (now: Map<string, number>, peaks: Map<string, number>, key: string, cents: number) => {
    const next = (now.get(key) ?? 0) + cents
    now.set(key, next)
    if (next > (peaks.get(key) ?? 0)) peaks.set(key, next)
  }
  for (const { bet, sign } of moves) {
    move(openStakes, stakePeaks, bet.userId, sign * bet.stakeCents)
    move(liability, liabilityPeaks, marketKeyOf(bet.gameId, bet.marketId), sign * liabilityCents(bet))
  }
  // fromEntries defines own properties: a user id such as `__proto__` stays a plain key.
  return {
    openStakesCents: Object.fromEntries(stakePeaks),
    marketLiabilityCents: Object.fromEntries(liabilityPeaks),
  }
}
