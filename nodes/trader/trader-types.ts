/**
 * The trader's public types: what `createTrader` (trader.ts) is given, what it publishes through,
 * what it counts, and what it offers. They live apart from trader.ts so that its parts
 * (market-lifecycle.ts, takeover.ts, commit-pipeline.ts) can import them without importing the
 * module that assembles the parts, which would make a cycle.
 */

import type { Logger } from 'pino'
import type { Entry, Heartbeat, Hlc, Replica, Stamp, StampKey } from '../../crdt/index.ts'
import type { FeedEvent } from './feed.ts'

export interface TraderLimits {
  readonly heartbeatMs: number
  /** Markets suspend when the feed says nothing for this long while they are open. */
  readonly staleFeedMs: number
  /** A reprice moving any price by more than this fraction freezes the market instead. */
  readonly priceJumpMax: number
  readonly margin: number
  /** Unpublished updates held for retry before the trader refuses to write more. */
  readonly unpublishedMax: number
  /** Fence a writer of the game not heard from for this long (0: never take over). */
  readonly takeoverAfterMs: number
}

export const DEFAULT_TRADER_LIMITS: TraderLimits = {
  heartbeatMs: 20,
  staleFeedMs: 8_000,
  priceJumpMax: 0.5,
  margin: 0.05,
  unpublishedMax: 1_000,
  takeoverAfterMs: 0,
}

export interface UpdateFence {
  readonly target: string
  readonly stamp: StampKey
}

export interface TraderPublisher {
  /** `fences`: the writers this update fences (a takeover), with the stamps of the fences. */
  publishUpdate(update: Uint8Array, msgId: string, fences: readonly UpdateFence[]): Promise<unknown>
  publishHeartbeat(heartbeat: Heartbeat): void
}

export interface TraderOptions {
  readonly gameId: string
  readonly writers: readonly string[]
  readonly replica: Replica
  readonly hlc: Hlc
  readonly publisher: TraderPublisher
  readonly log: Logger
  readonly limits?: Partial<TraderLimits>
  readonly now?: () => number
  /** Called with every batch of entries this writer commits, in order: its own record of them. */
  readonly onCommit?: (entries: readonly Entry[]) => void
  /** `standby`: heartbeat only, until taking over from the active trader. Default `active`. */
  readonly role?: 'active' | 'standby'
  /** Whether this node's replica has caught up with the log; a trader behind it never fences. */
  readonly caughtUp?: () => boolean
  /** The writer that fenced this one by the log's account (replica-sync.ts), or null. */
  readonly fencedBy?: () => string | null
  /** A standby took over: start the feed from the point after `afterPoint`. */
  readonly onTakeover?: (afterPoint: number) => void
  /** The trader stood down (see takeover.ts). */
  readonly onStandDown?: (reason: string) => void
  /**
   * Whether a heartbeat stamped at this wall time keeps the writer's promise across restarts
   * (clock-ceiling.ts); a heartbeat it does not cover is skipped. Default: every one.
   */
  readonly mayPromise?: (wallMs: number) => boolean
}

export type TraderRole = 'active' | 'standby' | 'fenced'

export interface TraderStats {
  opsWritten: number
  updatesPublished: number
  publishRetries: number
  heartbeats: number
  frozen: number
  staleSuspensions: number
  fencesWritten: number
  marketsVoidedOnTakeover: number
  /** Markets left without a result by an earlier life of this trader, voided when it rejoined. */
  marketsVoidedOnRejoin: number
  /** Corrections that came after their market's correction deadline, and so void nothing. */
  lateCorrections: number
}

export interface Trader {
  readonly stats: TraderStats
  role(): TraderRole
  /** Updates committed and not yet acknowledged by JetStream. */
  backlog(): number
  /** Why the trader stood down, once it has. */
  fencedReason(): string | null
  /** Stand down for good (see takeover.ts). */
  standDown(reason: string): void
  handle(event: FeedEvent): void
  /** `step` then `heartbeat`; call every heartbeatMs. */
  tick(): void
  /** Fence silent writers, check the feed for staleness, retry unpublished updates. */
  step(): void
  /**
   * Promise that the replica holds everything this writer stamped up to `stamp` (default: the
   * clock's next tick), unless the trader stood down or cannot promise yet. A process running
   * many games steps them all, then heartbeats them all with one stamp (trader-node.ts).
   */
  heartbeat(stamp?: Stamp): void
  kill(reason: string): void
  resume(): void
  /**
   * Pick up a match this writer was running before it restarted: close every market left without a
   * result and void its bets (nobody watched it while the trader was down), and return the last
   * point the replica holds, for the feed to resume after. Call once the replica has caught up.
   */
  rejoin(): number
  /** Resolves when every committed update has been acknowledged. */
  flush(): Promise<void>
}
