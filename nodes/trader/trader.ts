/**
 * The trader: runs one game's markets from a feed. It keeps the game clock, opens, suspends,
 * reprices, results and voids each point's markets (market-lifecycle.ts), heartbeats so that
 * verdicts turn final, and suspends everything when the feed goes stale or the kill switch is
 * thrown. Every op is committed to the local replica first and then published until JetStream
 * acknowledges it (commit-pipeline.ts). A standby among the game's writers takes over from a
 * silent active trader, a restarted trader rejoins its game, and a fenced one stands down for good
 * (takeover.ts).
 *
 * This module assembles those parts around one shared context (trader-context.ts) and keeps the
 * public names in one place, so importers need only this file.
 */

import type { Stamp } from '../../crdt/index.ts'
import { createCommitPipeline } from './commit-pipeline.ts'
import { createMarketLifecycle } from './market-lifecycle.ts'
import { createTakeover } from './takeover.ts'
import { createTraderContext } from './trader-context.ts'
import type { Trader, TraderOptions } from './trader-types.ts'

export { marketIds } from './point-markets.ts'
export { runningWriter } from './takeover.ts'
export {
  DEFAULT_TRADER_LIMITS,
  type Trader,
  type TraderLimits,
  type TraderOptions,
  type TraderPublisher,
  type TraderRole,
  type TraderStats,
  type UpdateFence,
} from './trader-types.ts'

export function createTrader(options: TraderOptions): Trader {
  const context = createTraderContext(options)
  const { state, stats } = context
  const pipeline = createCommitPipeline(context)
  const lifecycle = createMarketLifecycle(context, pipeline)
  const takeover = createTakeover(context, pipeline)

  function step(): void {
    // A trader another writer has fenced must not fence, write or heartbeat: that comes first.
    if (state.role === 'fenced' || takeover.standDownIfFenced()) return
    takeover.fenceSilentWriters()
    lifecycle.suspendIfStale()
    pipeline.retry()
  }

  function heartbeat(stamp?: Stamp): void {
    if (state.role !== 'fenced') pipeline.heartbeat(stamp)
  }

  return {
    stats,
    role: () => state.role,
    backlog: pipeline.backlog,
    fencedReason: takeover.fencedReason,
    standDown: takeover.standDown,
    handle: lifecycle.handle,
    tick() {
      step()
      heartbeat()
    },
    step,
    heartbeat,
    kill: lifecycle.kill,
    resume: lifecycle.resume,
    rejoin: takeover.rejoin,
    flush: pipeline.flush,
  }
}
