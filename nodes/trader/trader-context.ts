/**
 * What the parts of one trader share: its dependencies, its stats, and the little state that more
 * than one part reads or writes. It is one explicit object handed to each part, so a reader sees
 * who may touch what; anything only one part needs stays inside that part.
 */

import type { Logger } from 'pino'
import type { Hlc, Replica } from '../../crdt/index.ts'
import type { Side } from './feed.ts'
import {
  DEFAULT_TRADER_LIMITS,
  type TraderLimits,
  type TraderOptions,
  type TraderRole,
  type TraderStats,
} from './trader-types.ts'

export interface TraderState {
  /** Changed only by takeover.ts (a takeover, a stand-down); what the other parts may write hangs on it. */
  role: TraderRole
  /** When the feed last spoke; a takeover or a rejoin starts the count again. */
  lastFeedMs: number
  /** The point whose markets the feed last opened; null before the first and after a takeover or rejoin. */
  current: { point: number; server: Side } | null
}

export interface TraderContext {
  readonly options: TraderOptions
  readonly limits: TraderLimits
  readonly replica: Replica
  readonly hlc: Hlc
  readonly log: Logger
  readonly now: () => number
  /** This writer: the node of its HLC. */
  readonly me: string
  readonly stats: TraderStats
  readonly state: TraderState
}

export function createTraderContext(options: TraderOptions): TraderContext {
  const now = options.now ?? Date.now
  return {
    options,
    limits: { ...DEFAULT_TRADER_LIMITS, ...options.limits },
    replica: options.replica,
    hlc: options.hlc,
    log: options.log,
    now,
    me: options.hlc.node,
    stats: {
      opsWritten: 0,
      updatesPublished: 0,
      publishRetries: 0,
      heartbeats: 0,
      frozen: 0,
      staleSuspensions: 0,
      fencesWritten: 0,
      marketsVoidedOnTakeover: 0,
      marketsVoidedOnRejoin: 0,
      lateCorrections: 0,
    },
    state: { role: options.role ?? 'active', lastFeedMs: now(), current: null },
  }
}
