/**
 * Takeover, rejoin and stand-down: how a trader comes to run a match someone else (or an earlier
 * life of itself) was running, and how it stops for good.
 *
 * A game may have standby traders among its writers. A standby heartbeats (so finality waits for
 * it too, which is what keeps the fence sound; see crdt FenceOp) but writes nothing. Any trader
 * that has heard nothing from another writer of its game for `takeoverAfterMs` fences it. A standby
 * that fences the active trader becomes active: in the same commit it closes every market left
 * without a result and voids its bets (nobody knows what happened while no trader watched, so they
 * are refunded), then asks its feed for the match from the next point. A trader restarted on a game
 * it was running rejoins it the same way, without a fence.
 *
 * A trader that the log has fenced, or whose own update was dropped after someone else's fence,
 * stands down for good: its replica holds updates that no other replica will, so it writes,
 * heartbeats and snapshots nothing more.
 */

import {
  AFTER_ALL_STAMPS,
  activeWriters,
  type Entry,
  encodeStamp,
  fenceOf,
  firstStampAt,
  type GameState,
  genesisOf,
  isValidEntry,
  type Op,
  resultOf,
  specAt,
  stampOps,
  writerOf,
} from '../../crdt/index.ts'
import type { CommitPipeline } from './commit-pipeline.ts'
import { lastPoint, transitionTo } from './point-markets.ts'
import { createSilentWriters } from './silent-writers.ts'
import type { TraderContext } from './trader-context.ts'

export interface Takeover {
  /** Stand down if another writer has fenced this one; true when the trader has stood down. */
  standDownIfFenced(): boolean
  standDown(reason: string): void
  fencedReason(): string | null
  /** Fence the writers not heard from for takeoverAfterMs; a standby may take the match over. */
  fenceSilentWriters(): void
  /** Close and void what an earlier life of this trader left unresulted; the last point held. */
  rejoin(): number
}

/**
 * The writer running the match: the author of the latest entry other than membership (admit,
 * retire, fence), or null before the genesis. Standbys write nothing else.
 */
export function runningWriter(game: GameState): string | null {
  let latest: Entry | null = genesisOf(game)
  for (const entry of game.entries.values()) {
    if (entry.kind === 'admit' || entry.kind === 'retire' || entry.kind === 'fence') continue
    if (latest !== null && entry.stamp <= latest.stamp) continue
    if (isValidEntry(game, entry)) latest = entry
  }
  return latest === null ? null : writerOf(latest)
}

export function createTakeover(
  context: TraderContext,
  pipeline: Pick<CommitPipeline, 'commit' | 'discard'>,
): Takeover {
  const { replica, log, limits, options, stats, state, now, me } = context
  const silentWriters = createSilentWriters(context)
  let fencedReason: string | null = null

  function standDown(reason: string): void {
    if (state.role === 'fenced') return
    state.role = 'fenced'
    fencedReason = reason
    pipeline.discard()
    log.error({ reason }, 'standing down: this trader writes nothing more for the game')
    options.onStandDown?.(reason)
  }

  /**
   * Fence the silent writers. A standby that takes over closes every market without a result, and
   * voids its bets up to the takeover, in the same commit as the fences.
   */
  function fenceSilentWriters(): void {
    if (limits.takeoverAfterMs <= 0 || !(options.caughtUp?.() ?? true)) return
    if (!activeWriters(replica.game).includes(me)) return
    const silent = silentWriters.find()
    if (silent.length === 0) return
    const takingOver = state.role === 'standby' && takesOver(replica.game, me, silent)
    const entries = closeUnresulted(
      context,
      silent.map((writer): Op => ({ kind: 'fence', writer })),
      takingOver ? 'trader takeover' : null,
    )
    const voids = entries.filter((entry) => entry.kind === 'void').length
    log.warn({ fenced: silent, takingOver, voided: voids }, 'fencing writers not heard from')
    // A fence that was not committed took nothing over: the standby stays a standby.
    if (!pipeline.commit(entries)) return
    stats.fencesWritten += silent.length
    stats.marketsVoidedOnTakeover += voids
    for (const writer of silent) silentWriters.forget(writer)
    if (!takingOver) return
    state.role = 'active'
    state.current = null
    state.lastFeedMs = now()
    options.onTakeover?.(lastPoint(replica.game))
  }

  return {
    standDownIfFenced() {
      const fence = fenceOf(replica.game, me)
      const fencer = options.fencedBy?.() ?? (fence === null ? null : writerOf(fence))
      if (fencer !== null) standDown(`fenced by ${fencer}`)
      return fencer !== null
    },
    standDown,
    fencedReason: () => fencedReason,
    fenceSilentWriters,
    rejoin() {
      const entries = closeUnresulted(context, [], 'trader restart')
      const voided = entries.filter((entry) => entry.kind === 'void').length
      if (entries.length > 0 && pipeline.commit(entries)) stats.marketsVoidedOnRejoin += voided
      state.current = null
      state.lastFeedMs = now()
      const afterPoint = lastPoint(replica.game)
      log.warn({ afterPoint, voided }, 'rejoined the match after a restart')
      return afterPoint
    },
  }
}

/**
 * Whether a standby that fences `silent` takes the match over: when no other writer is left to run
 * it, or when the writer it fences is the one running it (with two standbys, the other standby is
 * heard all along).
 */
function takesOver(game: GameState, me: string, silent: readonly string[]): boolean {
  const running = runningWriter(game)
  return (
    activeWriters(game).every((writer) => writer === me || silent.includes(writer)) ||
    (running !== null && running !== me && silent.includes(running))
  )
}

/**
 * Stamp `first`, then (with a reason) close every market without a result and void its bets up to
 * the close: what a trader that takes over or rejoins cannot know, it refunds.
 */
function closeUnresulted(
  context: Pick<TraderContext, 'hlc' | 'replica'>,
  first: readonly Op[],
  reason: string | null,
): Entry[] {
  const { hlc, replica } = context
  const unresulted = reason === null ? [] : unresultedMarkets(replica.game)
  // Every one is closed again, closed or not: a close by the writer this commit fences may be
  // stamped after the fence, and then it stops counting the moment the fence is applied.
  const entries = stampOps(hlc, [
    ...first,
    ...unresulted.map((id) => transitionTo(replica.game, id, 'closed', reason as string)),
  ])
  if (unresulted.length === 0) return entries
  const to = entries.at(-1)?.stamp ?? encodeStamp(hlc.now())
  const voids = stampOps(
    hlc,
    unresulted.map(
      (marketId): Op => ({ kind: 'void', marketId, from: firstStampAt(0), to, reason: reason as string }),
    ),
  )
  return [...entries, ...voids]
}

/** Markets with no result yet, closed or not. */
function unresultedMarkets(game: GameState): string[] {
  return [...game.markets.keys()].filter(
    (id) => resultOf(game, id).state === 'pending' && specAt(game, id, AFTER_ALL_STAMPS),
  )
}
