/**
 * The trader's side of archiving (nodes/fabric/archive.ts): a game this process runs is archived
 * once its feed said the match ended, `archiveAfterMs` has passed since, the trader is still the
 * game's active writer, and its replica holds exactly what the stream holds of the game (nothing
 * of its own unacknowledged or unread) and nothing that can still change (`isConcluded`). The
 * grace period is the window for late corrections, disputes and settlements to run on the live
 * replica; after it, they run on the archived one.
 */

import type { Logger } from 'pino'
import { isConcluded } from '../../crdt/index.ts'
import type { ReplicaSync } from '../fabric/replica-sync.ts'
import type { Trader } from './trader.ts'

/** How long after a match ends it is archived, by default (`--archive-after-ms`; 0: never). */
export const ARCHIVE_AFTER_MS_DEFAULT = 300_000
/** The longest grace period an operator may set: a week. */
export const ARCHIVE_AFTER_MS_MAX = 7 * 24 * 3_600_000
/** How often an ended game is looked at (isConcluded reads the whole replica). */
export const ARCHIVE_CHECK_MS = 1_000

/** What the archiver needs of one game's trader. */
export interface ArchivableGame {
  readonly gameId: string
  readonly trader: Trader
  /** The highest stream sequence JetStream gave one of this game's updates. */
  lastAckSeq(): number
}

export interface MatchArchiver {
  /** The game's feed said the match ended. */
  ended(gameId: string): void
  /** Archive the game if it is due (see the module comment); cheap to call every round. */
  consider(game: ArchivableGame): void
  /** Archives written by this process. */
  archived(): number
}

export function createMatchArchiver(context: {
  readonly replicas: ReplicaSync
  readonly writer: string
  readonly archiveAfterMs: number
  readonly now: () => number
  readonly log: Logger
}): MatchArchiver {
  const { replicas, writer, archiveAfterMs, now, log } = context
  /** Per game whose match ended, when, and when it was last looked at. */
  const endedGames = new Map<string, { endedAtMs: number; checkedAtMs: number }>()
  const writing = new Set<string>()
  let archived = 0

  function due(game: ArchivableGame): boolean {
    const ended = endedGames.get(game.gameId)
    const at = now()
    if (
      ended === undefined ||
      at - ended.endedAtMs < archiveAfterMs ||
      at - ended.checkedAtMs < ARCHIVE_CHECK_MS
    )
      return false
    ended.checkedAtMs = at
    const replica = replicas.replica(game.gameId)
    return (
      !replicas.isArchived(game.gameId) &&
      replica !== undefined &&
      game.trader.role() === 'active' &&
      game.trader.backlog() === 0 &&
      replicas.lastSeq() >= game.lastAckSeq() &&
      isConcluded(replica.game)
    )
  }

  return {
    ended(gameId) {
      if (archiveAfterMs > 0 && !endedGames.has(gameId))
        endedGames.set(gameId, { endedAtMs: now(), checkedAtMs: Number.NEGATIVE_INFINITY })
    },
    consider(game) {
      if (writing.has(game.gameId) || !due(game)) return
      writing.add(game.gameId)
      replicas
        .archive(game.gameId, { writer })
        .then((seq) => {
          archived++
          endedGames.delete(game.gameId)
          log.info({ gameId: game.gameId, seq }, 'archived the match')
        })
        .catch((error: unknown) =>
          log.warn({ gameId: game.gameId, err: error }, 'could not archive the match; trying again'),
        )
        .finally(() => writing.delete(game.gameId))
    },
    archived: () => archived,
  }
}
