/**
 * This node's replicas, one per game, and what the log has decided about their writers. Updates
 * come in stream order and are dropped or applied as the log's fences decide (log-fences.ts);
 * writers' beats (writer-beats.ts) are applied, game by game, to games the node already holds. Every stamp a replica takes passes
 * through the node's clock guard before anyone hears of the change. No I/O: replica-sync.ts feeds
 * it from the stream, the heartbeats and the snapshots.
 */

import type { Logger } from 'pino'
import {
  type ApplyResult,
  activeWriters,
  type Backend,
  decodeStamp,
  fenceOf,
  isId,
  maxStamp,
  type Replica,
  type StampKey,
  writerOf,
  writersOf,
} from '../../crdt/index.ts'
import { ARCHIVE_HEADER, type ArchiveShelf } from './archive.ts'
import type { ClockGuard } from './clock-guard.ts'
import { createLogFences, type FenceDropReason, type LogFences } from './log-fences.ts'
import type { StreamMessage } from './stream-follower.ts'
import { FENCE_HEADER, FENCE_STAMPS_HEADER, fencesOf, WRITER_HEADER } from './update-author.ts'
import {
  createBeatReader,
  createRepeatFilter,
  parseWriterBeat,
  WRITER_BEAT_BYTES_MAX,
} from './writer-beats.ts'

/**
 * The games one node holds at once: live ones, and finished ones not archived yet (archive.ts). As
 * many as one writer may write.
 */
export const GAMES_PER_NODE_MAX = 1_000

export type ReplicaChange = {
  readonly gameId: string
  readonly result: ApplyResult
  /** `archive`: an archived game's replica was loaded (archive.ts); nothing in it changed. */
  readonly source: 'stream' | 'heartbeat' | 'archive'
}

export type ArchiveListener = (
  gameId: string,
  seq: number,
  subject: string,
  replica: Replica | undefined,
) => void

/** An update the replica dropped because its writer, or the writer it fences, is fenced already. */
export type DroppedUpdate = {
  readonly gameId: string
  readonly seq: number
  readonly writer: string
  readonly reason: FenceDropReason
}

export interface GameReplicas {
  /** Every replica, by game (archived games' are not among them). */
  readonly replicas: ReadonlyMap<string, Replica>
  /**
   * The game's replica, created empty if this node has not seen the game yet (writers use it);
   * throws for a game this node knows is archived.
   */
  replicaFor(gameId: string): Replica
  /**
   * A game restored from its snapshot, a prefix of the log up to stream sequence `seq`: updates of
   * the game at or below it are the log's already decided, and are not decided again.
   */
  restore(gameId: string, replica: Replica, seq: number): void
  /** An update, in stream order. */
  applyUpdate(message: StreamMessage): void
  /** A writer's beat (untrusted bytes): a heartbeat for each game it stands for. */
  applyBeat(data: Uint8Array): void
  /** The writer that fenced `writer` in the game, by the log's account, or null. */
  fencedBy(gameId: string, writer: string): string | null
  /** The stream sequence of the last update of the game this node read (0: none since it started). */
  lastSeqOf(gameId: string): number
  droppedUpdates(): number
  /** What writers' beats have cost this node since it started. */
  beatWork(): BeatWork
  onChange(listener: (change: ReplicaChange) => void): () => void
  onDrop(listener: (dropped: DroppedUpdate) => void): () => void
  /**
   * A game's archive marker was read (at stream sequence `seq`, on `subject`): its replica, given
   * (undefined if this node held none), has left.
   */
  onArchive(listener: ArchiveListener): () => void
}

export interface BeatWork {
  /** Beats read: not a repeat of one just read, not this node's own. */
  readonly beats: number
  /** Games' heartbeats those beats gave replicas this node holds. */
  readonly heartbeats: number
  /** Time spent on beats, the listeners their changes woke included, in seconds. */
  readonly seconds: number
}

/** `fabric.<region>.game.<gameId>`: the game, from any region. */
function gameIdOf(subject: string): string {
  return subject.split('.')[3] ?? ''
}

export function createGameReplicas(context: {
  readonly backend: Backend
  readonly clock: ClockGuard
  readonly log: Logger
  /** The archived games this node knows (archive.ts). */
  readonly archives: ArchiveShelf
  /**
   * This node's own writer id: a writer's replicas took each heartbeat as it made it, so its own
   * beats, which it hears back like anyone's, are passed over (a beat of 500 games read for nothing,
   * 50 times a second).
   */
  readonly ownWriter?: string
}): GameReplicas {
  const { backend, clock, log, archives, ownWriter } = context
  const replicas = new Map<string, Replica>()
  const listeners = new Set<(change: ReplicaChange) => void>()
  const archiveListeners = new Set<ArchiveListener>()
  const fences = createGameFences(log)
  const beats = createBeatReader((gameId) => replicas.has(gameId))
  const isRepeat = createRepeatFilter()
  /** Per game, the sequence of the last update read, applied or dropped. */
  const lastSeqs = new Map<string, number>()
  /** Per game restored from a snapshot, the stream sequence the snapshot was taken at. */
  const restoredThrough = new Map<string, number>()
  const beatWork = { beats: 0, heartbeats: 0, seconds: 0 }
  /** The highest stamp handed to the clock guard (stamp keys sort as stamps do). */
  let mergedUpTo: StampKey | null = null

  /**
   * The node's clock takes every stamp the replica now holds before anyone hears of the change; a
   * stamp beyond the drift bound is held by the guard, which stops judging until the clock takes it.
   */
  function merge(gameId: string, result: ApplyResult, source: ReplicaChange['source']): void {
    // A writer's beat brings one stamp to each of its games: the clock, which only moves forward,
    // has taken (or holds) any stamp at or below the highest one already given to it.
    if (result.maxStamp !== null && (mergedUpTo === null || result.maxStamp > mergedUpTo)) {
      mergedUpTo = result.maxStamp
      // Not offsets(): it works out every writer's offset, and this runs per game and beat.
      const wasSafe = clock.heldLeadMs() === 0
      clock.merge(decodeStamp(result.maxStamp))
      if (wasSafe && clock.heldLeadMs() > 0)
        log.warn({ gameId, ...clock.offsets() }, 'holding a stamp beyond the maximum drift; judging stops')
    }
    for (const listener of listeners) listener({ gameId, result, source })
  }

  function replicaFor(gameId: string): Replica {
    let replica = replicas.get(gameId)
    if (replica === undefined) {
      if (archives.known(gameId)) throw new RangeError(`game ${gameId} is archived`)
      if (replicas.size >= GAMES_PER_NODE_MAX) throw new RangeError(`more than ${GAMES_PER_NODE_MAX} games`)
      replica = backend.create()
      replicas.set(gameId, replica)
    }
    return replica
  }

  /** The game's marker, in stream order: the replica and everything kept about it go. */
  function archive(gameId: string, message: StreamMessage): void {
    const replica = replicas.get(gameId)
    replicas.delete(gameId)
    lastSeqs.delete(gameId)
    restoredThrough.delete(gameId)
    fences.forget(gameId)
    archives.note(gameId, message.seq)
    log.info({ gameId, seq: message.seq }, 'game archived')
    for (const listener of archiveListeners) listener(gameId, message.seq, message.subject, replica)
  }

  /** A writer's beat: each game it stands for takes the heartbeat. */
  function readBeat(data: Uint8Array): void {
    if (data.length > WRITER_BEAT_BYTES_MAX || isRepeat(data)) return
    const beat = parseWriterBeat(data)
    if (beat === null || beat.writer === ownWriter) return
    beatWork.beats++
    const { writer, stamp } = beat
    let observed = false
    beats.visit(beat, (gameId, version) => {
      const replica = replicas.get(gameId)
      if (replica === undefined) return
      // A beat's stamp is its writer's clock as it was sent: a sample of that writer's offset,
      // if it writes a game this node holds (anybody else's clock says nothing about this node's).
      if (!observed && activeWriters(replica.game).includes(writer)) {
        clock.observeWriter(writer, decodeStamp(stamp).wall)
        observed = true
      }
      beatWork.heartbeats++
      merge(gameId, replica.applyHeartbeat({ writer, stamp, version }), 'heartbeat')
    })
  }

  return {
    replicas,
    replicaFor,
    restore(gameId, replica, seq) {
      replicas.set(gameId, replica)
      restoredThrough.set(gameId, seq)
      fences.restore(gameId, replica)
      // The node's clock must pass everything the snapshot holds before it stamps anything.
      merge(
        gameId,
        { added: replica.game.entries.size, skipped: 0, maxStamp: maxStamp(replica.game) },
        'stream',
      )
    },
    applyUpdate(message) {
      const gameId = gameIdOf(message.subject)
      if (!isId(gameId)) return
      // After its marker, nothing changes an archived game (a writer that missed the marker, or a
      // marker sent again).
      if (archives.known(gameId)) return
      if (message.headers?.get(ARCHIVE_HEADER)) {
        if (fences.admits(gameId, message)) archive(gameId, message)
        return
      }
      if (replicas.has(gameId) || replicas.size < GAMES_PER_NODE_MAX) lastSeqs.set(gameId, message.seq)
      // A node follows the stream from the lowest sequence its snapshots stand for, so it reads
      // again updates that a game's later snapshot holds (or that the log dropped before it). The
      // log decided them then; deciding them again against the fences the snapshot restored would
      // not decide them the same way (a takeover read again "fences a writer already fenced", and
      // every later update of its writer was dropped: a restarted node's replica missed them).
      if (message.seq <= (restoredThrough.get(gameId) ?? 0)) return
      if (!fences.admits(gameId, message)) return
      try {
        merge(gameId, replicaFor(gameId).apply(message.data), 'stream')
      } catch (error) {
        log.error({ gameId, seq: message.seq, err: error }, 'skipped an update the replica refused')
      }
    },
    applyBeat(data) {
      const startedAt = performance.now()
      try {
        readBeat(data)
      } finally {
        beatWork.seconds += (performance.now() - startedAt) / 1_000
      }
    },
    fencedBy: fences.fencedBy,
    lastSeqOf: (gameId) => lastSeqs.get(gameId) ?? 0,
    droppedUpdates: fences.dropped,
    beatWork: () => ({ ...beatWork }),
    onChange(listener) {
      listeners.add(listener)
      return () => listeners.delete(listener)
    },
    onDrop: fences.onDrop,
    onArchive(listener) {
      archiveListeners.add(listener)
      return () => archiveListeners.delete(listener)
    },
  }
}

/** Per game, the fences the log has accepted so far in stream order (log-fences.ts), and the updates it dropped. */
function createGameFences(log: Logger) {
  const byGame = new Map<string, LogFences>()
  const dropListeners = new Set<(dropped: DroppedUpdate) => void>()
  let dropped = 0

  function of(gameId: string): LogFences {
    let fences = byGame.get(gameId)
    if (fences === undefined) {
      fences = createLogFences()
      byGame.set(gameId, fences)
    }
    return fences
  }

  return {
    /** A snapshot is a prefix of the log (writers snapshot only then): its fences are the log's. */
    restore(gameId: string, replica: Replica): void {
      for (const writer of writersOf(replica.game)) {
        const fence = fenceOf(replica.game, writer)
        if (fence !== null) of(gameId).record(writer, writerOf(fence), fence.stamp)
      }
    },
    /** Decide an update in stream order: true to apply it; a dropped one is counted, logged and told. */
    admits(gameId: string, message: StreamMessage): boolean {
      const writer = message.headers?.get(WRITER_HEADER)
      const reason = of(gameId).decide(
        writer,
        fencesOf(message.headers?.get(FENCE_HEADER), message.headers?.get(FENCE_STAMPS_HEADER)),
      )
      if (reason === null) return true
      const event: DroppedUpdate = { gameId, seq: message.seq, writer: writer as string, reason }
      dropped++
      log.warn(event, 'dropped an update after a fence')
      for (const listener of dropListeners) listener(event)
      return false
    },
    fencedBy: (gameId: string, writer: string) => byGame.get(gameId)?.fencedBy(writer) ?? null,
    forget: (gameId: string) => byGame.delete(gameId),
    dropped: () => dropped,
    onDrop(listener: (dropped: DroppedUpdate) => void): () => void {
      dropListeners.add(listener)
      return () => dropListeners.delete(listener)
    },
  }
}
