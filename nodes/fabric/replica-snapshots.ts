/**
 * Replica snapshots in the snapshot bucket: one key per game, holding the replica's snapshot and
 * the stream sequence it was taken at, and a checkpoint naming the games of the last round. A
 * node restores from them on start and follows the stream from the lowest sequence they hold;
 * replaying an update a snapshot already holds is a no-op, so overlap is harmless and a gap is
 * impossible.
 */

import { deflateRawSync, inflateRawSync } from 'node:zlib'
import type { Logger } from 'pino'
import { type Backend, isId, type Replica } from '../../crdt/index.ts'
import { names, SNAPSHOT_BYTES_MAX } from './streams.ts'
import type { SnapshotStore } from './transport.ts'

const CHECKPOINT_KEY = 'checkpoint'

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

function parseCheckpoint(data: Uint8Array | undefined): { seq: number; games: string[] } | null {
  if (data === undefined) return null
  const value = JSON.parse(new TextDecoder().decode(data)) as { seq?: unknown; games?: unknown }
  const games = Array.isArray(value.games) ? value.games.filter(isId) : []
  return Number.isSafeInteger(value.seq) ? { seq: value.seq as number, games } : null
}

/**
 * Restore every game the checkpoint names from its snapshot, handing each to `into`; resolves with
 * the stream sequence to follow from (1 without a complete checkpoint).
 */
export async function restoreSnapshots(context: {
  readonly snapshots: SnapshotStore
  readonly backend: Backend
  readonly log: Logger
  readonly into: (gameId: string, replica: Replica) => void
}): Promise<number> {
  const { snapshots, backend, log } = context
  const checkpoint = parseCheckpoint((await snapshots.get(CHECKPOINT_KEY)) ?? undefined)
  if (checkpoint === null) return 1
  let fromSeq = checkpoint.seq + 1
  for (const gameId of checkpoint.games) {
    const entry = await snapshots.get(names.snapshotKey(gameId))
    if (entry === null || entry.length === 0) return 1
    const record = decodeSnapshot(entry)
    context.into(gameId, backend.restore(record.bytes))
    fromSeq = Math.min(fromSeq, record.seq + 1)
  }
  log.info({ games: checkpoint.games.length, fromSeq }, 'restored replicas from snapshots')
  return fromSeq
}

/**
 * Write each game's snapshot, taken at stream sequence `seq`, then the checkpoint naming them;
 * resolves with `seq`. A snapshot over SNAPSHOT_BYTES_MAX is left out (and logged), and so is a
 * game `keep` names: the checkpoint names it still, and a restore uses the snapshot it has (with
 * its own, lower, sequence), or follows the stream from the start without one.
 */
export async function writeSnapshots(context: {
  readonly snapshots: SnapshotStore
  readonly log: Logger
  readonly seq: number
  readonly replicas: ReadonlyMap<string, Replica>
  readonly keep?: (gameId: string) => boolean
}): Promise<number> {
  const { snapshots, log, seq, replicas } = context
  const games = [...replicas.keys()]
  for (const gameId of games) {
    if (context.keep?.(gameId)) continue
    const data = encodeSnapshot(seq, (replicas.get(gameId) as Replica).snapshot())
    if (data.length > SNAPSHOT_BYTES_MAX) {
      log.error({ gameId, bytes: data.length }, 'snapshot over the size limit; not written')
      continue
    }
    await snapshots.put(names.snapshotKey(gameId), data)
  }
  await snapshots.put(CHECKPOINT_KEY, JSON.stringify({ seq, games }))
  return seq
}
