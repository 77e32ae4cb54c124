/**
 * Archiving a finished match: its final snapshot is kept, its replica leaves every node's memory,
 * and its updates leave the stream.
 *
 * The trader running the match archives it once the feed has said the match ended, a grace period
 * has passed (`--archive-after-ms`), and its replica holds nothing that can still change
 * (`isConcluded` in crdt/game.ts: every entry final, no market open, every result agreed and past
 * its correction deadline). It writes the replica's snapshot under `archive.<gameId>` in the
 * snapshot bucket, then appends an archive marker to the game's subject: an update with no body and
 * the ARCHIVE_HEADER header, sent under the writer's name like any update (a fenced writer's
 * marker is dropped with its other updates). Every node reads the marker at the same place in the
 * stream, and there drops the game's replica and its log fences and remembers the game as archived;
 * a later update of the game (a writer that missed the marker) is passed over. Traders and
 * settlement nodes then purge the game's messages below the marker from the streams they can name;
 * the marker stays, so a node that reads the stream from before it still learns the game's fate,
 * and a follower passes over the purged sequences (stream-reading.ts). The game's regular snapshot
 * key is deleted by each node that wrote it, at its next snapshot round.
 *
 * An archived game still answers: bet lookups, retries and late settlements load its snapshot from
 * the bucket on demand (ArchiveShelf.load), and a node keeps the last ARCHIVES_LOADED_MAX of them.
 * A bet on an archived game is refused `GAME_ARCHIVED`.
 */

import { deflateRawSync, inflateRawSync } from 'node:zlib'
import type { Logger } from 'pino'
import type { Backend, Replica } from '../../crdt/index.ts'
import { names, SNAPSHOT_BYTES_MAX } from './streams.ts'
import type { SnapshotStore } from './transport.ts'

/** The header that makes an update its game's archive marker (value `1`). */
export const ARCHIVE_HEADER = 'Fabric-Archive'
/** Archived games' replicas a node keeps loaded (each up to SNAPSHOT_BYTES_MAX compressed in the bucket). */
export const ARCHIVES_LOADED_MAX = 8
/**
 * Archived games a node remembers by id, and its checkpoint names: past this, the oldest are
 * forgotten, and a bet on one is refused UNKNOWN_GAME instead of GAME_ARCHIVED (lookups and
 * settlements still find its snapshot in the bucket).
 */
export const ARCHIVED_KNOWN_MAX = 10_000
/** A game the bucket had no archive of is not asked about again for this long. */
export const ARCHIVE_MISS_RETRY_MS = 5_000

/** The archive marker's message id: a marker sent twice is stored once. */
export const archiveMsgId = (gameId: string) => `archive.${gameId}`

/** An archive: the replica's document, compressed. */
export function encodeArchive(replica: Replica): Uint8Array {
  return deflateRawSync(replica.snapshot())
}

/**
 * The replica an archive holds, closed: nothing changes an archived game after its marker, so every
 * stamp is final on it (the document alone holds each writer's watermark only as of its last
 * commit, short of the correction deadlines and of bets stamped after the match).
 */
export function decodeArchive(backend: Backend, data: Uint8Array): Replica {
  const replica = backend.restore(
    new Uint8Array(inflateRawSync(data, { maxOutputLength: ARCHIVE_RAW_BYTES_MAX })),
  )
  replica.game.closed = true
  return replica
}

/** The most an archive may inflate to, as for a snapshot (replica-snapshots.ts). */
const ARCHIVE_RAW_BYTES_MAX = 64 * SNAPSHOT_BYTES_MAX

export interface ArchiveShelf {
  /** Whether this node knows the game is archived. */
  known(gameId: string): boolean
  /** The game was archived by the marker at stream sequence `seq`. */
  note(gameId: string, seq: number): void
  /** The archived games this node knows, each with its marker's sequence, oldest first. */
  entries(): ReadonlyArray<readonly [string, number]>
  /** The game's archived replica, if it is loaded now. */
  loaded(gameId: string): Replica | undefined
  /** The game's archived replica, loaded from the bucket if need be; null when it has none. */
  load(gameId: string): Promise<Replica | null>
  /** How many archived games this node knows. */
  count(): number
  /** Archives loaded from the bucket since start. */
  loads(): number
}

export function createArchiveShelf(context: {
  readonly snapshots: SnapshotStore
  readonly backend: Backend
  readonly log: Logger
  readonly now?: () => number
}): ArchiveShelf {
  const { snapshots, backend, log } = context
  const now = context.now ?? Date.now
  const known = new Map<string, number>()
  /** Loaded replicas, least recently used first. */
  const loaded = new Map<string, Replica>()
  const loading = new Map<string, Promise<Replica | null>>()
  const missedAt = new Map<string, number>()
  let loads = 0

  function note(gameId: string, seq: number): void {
    known.delete(gameId)
    known.set(gameId, seq)
    if (known.size > ARCHIVED_KNOWN_MAX) known.delete(known.keys().next().value as string)
  }

  async function fetch(gameId: string): Promise<Replica | null> {
    const data = await snapshots.get(names.archiveKey(gameId))
    if (data === null || data.length === 0) {
      if (missedAt.size >= ARCHIVED_KNOWN_MAX) missedAt.clear()
      missedAt.set(gameId, now())
      return null
    }
    const replica = decodeArchive(backend, data)
    loads++
    if (!known.has(gameId)) note(gameId, 0)
    loaded.set(gameId, replica)
    if (loaded.size > ARCHIVES_LOADED_MAX) loaded.delete(loaded.keys().next().value as string)
    return replica
  }

  return {
    known: (gameId) => known.has(gameId),
    note,
    entries: () => [...known],
    count: () => known.size,
    loaded(gameId) {
      const replica = loaded.get(gameId)
      if (replica !== undefined) {
        loaded.delete(gameId)
        loaded.set(gameId, replica)
      }
      return replica
    },
    load(gameId) {
      const replica = loaded.get(gameId)
      if (replica !== undefined) return Promise.resolve(replica)
      if (now() - (missedAt.get(gameId) ?? Number.NEGATIVE_INFINITY) < ARCHIVE_MISS_RETRY_MS)
        return Promise.resolve(null)
      let pending = loading.get(gameId)
      if (pending === undefined) {
        pending = fetch(gameId)
          .catch((error: unknown) => {
            log.warn({ gameId, err: error }, 'could not load an archived game')
            return null
          })
          .finally(() => loading.delete(gameId))
        loading.set(gameId, pending)
      }
      return pending
    },
    loads: () => loads,
  }
}
