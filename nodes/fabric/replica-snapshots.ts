/**
 * Replica snapshots in the snapshot bucket: one key per game, holding the replica's snapshot and
 * the stream sequence it was taken at, and a checkpoint naming the games of the last round. A
 * node restores from them on start and follows the stream from the lowest sequence they still
 * stand for; replaying an update a snapshot already holds is a no-op, so overlap is harmless and a
 * gap is impossible.
 *
 * A round writes again only the games the stream changed since the snapshot this node last wrote
 * of them: with hundreds of matches, most have not changed in a round (a finished one never
 * does). Such a snapshot, taken at an earlier sequence, still stands for the round's sequence,
 * since no update of its game came in between, and the checkpoint says so under `stand` (game to
 * the sequence of the snapshot it relies on). Another writer may have replaced that snapshot
 * since; a restore therefore relies on `stand` only when the stored snapshot is the one named (its
 * sequence matches), and otherwise follows the stream from that snapshot's own sequence.
 */

import { deflateRawSync, inflateRawSync } from 'node:zlib'
import type { Logger } from 'pino'
import { type Backend, isId, type Replica } from '../../crdt/index.ts'
import type { ArchiveShelf } from './archive.ts'
import { names, SNAPSHOT_BYTES_MAX } from './streams.ts'
import type { SnapshotStore } from './transport.ts'

const CHECKPOINT_KEY = 'checkpoint'
/**
 * Snapshots a restore asks the bucket for at once: one at a time, a node of 500 games spent most of
 * its start waiting on round trips.
 */
export const SNAPSHOT_READS_IN_FLIGHT = 16

interface SnapshotRecord {
  readonly seq: number
  readonly bytes: Uint8Array
}

function encodeSnapshot(seq: number, bytes: Uint8Array): Uint8Array {
  const header = Buffer.alloc(8)
  header.writeDoubleBE(seq)
  return deflateRawSync(Buffer.concat([header, bytes]))
}

function decodeSnapshot(data: Uint8Array): SnapshotRecord {
  const raw = inflateRawSync(data, { maxOutputLength: 64 * SNAPSHOT_BYTES_MAX })
  return { seq: raw.readDoubleBE(0), bytes: new Uint8Array(raw.subarray(8)) }
}

interface Checkpoint {
  readonly seq: number
  readonly games: readonly string[]
  /** Game to the sequence of the snapshot that stands for `seq` (see the module comment). */
  readonly stand: ReadonlyMap<string, number>
  /** Archived games (archive.ts), each with its marker's sequence. */
  readonly archived: ReadonlyMap<string, number>
}

function parseCheckpoint(data: Uint8Array | undefined): Checkpoint | null {
  if (data === undefined) return null
  const value = JSON.parse(new TextDecoder().decode(data)) as {
    seq?: unknown
    games?: unknown
    stand?: unknown
    archived?: unknown
  }
  const games = Array.isArray(value.games) ? value.games.filter(isId) : []
  const stand = gameSeqs(value.stand)
  const archived = gameSeqs(value.archived)
  return Number.isSafeInteger(value.seq) ? { seq: value.seq as number, games, stand, archived } : null
}

/** A checkpoint's object of game to sequence, without what is not one. */
function gameSeqs(value: unknown): Map<string, number> {
  const seqs = new Map<string, number>()
  if (typeof value === 'object' && value !== null)
    for (const [gameId, seq] of Object.entries(value))
      if (isId(gameId) && Number.isSafeInteger(seq)) seqs.set(gameId, seq as number)
  return seqs
}

/**
 * Restore every game the checkpoint names from its snapshot, handing each to `into`, and note the
 * archived games it names; resolves with the stream sequence to follow from (1 without a complete
 * checkpoint). A game whose snapshot is gone but whose archive is in the bucket was archived after
 * the checkpoint: it is noted archived, and the stream's marker says so again.
 */
export async function restoreSnapshots(context: {
  readonly snapshots: SnapshotStore
  readonly backend: Backend
  readonly log: Logger
  /** A game restored from the snapshot taken at stream sequence `seq`. */
  readonly into: (gameId: string, replica: Replica, seq: number) => void
  readonly archives: ArchiveShelf
}): Promise<number> {
  const { snapshots, backend, log, archives } = context
  const checkpoint = parseCheckpoint((await snapshots.get(CHECKPOINT_KEY)) ?? undefined)
  if (checkpoint === null) return 1
  for (const [gameId, seq] of checkpoint.archived) archives.note(gameId, seq)
  let fromSeq = checkpoint.seq + 1
  for (let from = 0; from < checkpoint.games.length; from += SNAPSHOT_READS_IN_FLIGHT) {
    const gameIds = checkpoint.games.slice(from, from + SNAPSHOT_READS_IN_FLIGHT)
    const entries = await Promise.all(gameIds.map((gameId) => snapshots.get(names.snapshotKey(gameId))))
    for (const [i, gameId] of gameIds.entries()) {
      const entry = entries[i]
      if (entry === null || entry === undefined || entry.length === 0) {
        if ((await snapshots.get(names.archiveKey(gameId))) === null) return 1
        archives.note(gameId, 0)
        continue
      }
      const record = decodeSnapshot(entry)
      context.into(gameId, backend.restore(record.bytes), record.seq)
      if (checkpoint.stand.get(gameId) !== record.seq) fromSeq = Math.min(fromSeq, record.seq + 1)
    }
  }
  log.info({ games: checkpoint.games.length, fromSeq }, 'restored replicas from snapshots')
  return fromSeq
}

/**
 * Write the snapshot of each game changed since this node's last one of it, taken at stream
 * sequence `seq`, then the checkpoint naming every game and the archived ones; resolves with `seq`.
 * The snapshot of a game archived since this node last wrote it is deleted (the archive holds it). A snapshot over
 * SNAPSHOT_BYTES_MAX is left out (and logged), and so is a changed game `keep` names: a restore
 * uses the snapshot they have (with its own, lower, sequence), or follows the stream from the start
 * without one.
 */
export async function writeSnapshots(context: {
  readonly snapshots: SnapshotStore
  readonly log: Logger
  readonly seq: number
  readonly replicas: ReadonlyMap<string, Replica>
  /** Whether the stream changed the game after sequence `since`. */
  readonly changedSince: (gameId: string, since: number) => boolean
  /** The sequence of the snapshot of each game this node wrote last; updated here. */
  readonly written: Map<string, number>
  readonly keep?: (gameId: string) => boolean
  readonly archives: ArchiveShelf
}): Promise<number> {
  const { snapshots, log, seq, replicas, written, archives } = context
  for (const gameId of [...written.keys()]) {
    if (replicas.has(gameId)) continue
    await snapshots.delete(names.snapshotKey(gameId))
    written.delete(gameId)
  }
  const games = [...replicas.keys()]
  const stand: Record<string, number> = {}
  let rewritten = 0
  for (const gameId of games) {
    const last = written.get(gameId)
    if (last !== undefined && !context.changedSince(gameId, last)) {
      stand[gameId] = last
      continue
    }
    if (context.keep?.(gameId)) continue
    const data = encodeSnapshot(seq, (replicas.get(gameId) as Replica).snapshot())
    if (data.length > SNAPSHOT_BYTES_MAX) {
      log.error({ gameId, bytes: data.length }, 'snapshot over the size limit; not written')
      written.delete(gameId)
      continue
    }
    await snapshots.put(names.snapshotKey(gameId), data)
    written.set(gameId, seq)
    stand[gameId] = seq
    rewritten++
  }
  const archived = Object.fromEntries(archives.entries())
  await snapshots.put(CHECKPOINT_KEY, JSON.stringify({ seq, games, stand, archived }))
  log.debug({ games: games.length, rewritten, seq }, 'snapshot round written')
  return seq
}
