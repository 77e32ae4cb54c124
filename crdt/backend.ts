/**
 * The replica contract every CRDT backend implements, and the pieces they share.
 *
 * A replica stores a game document as two maps: stored entries under their keys (grow-only, see
 * ops.ts) and one watermark per writer. A commit writes a writer's entries and its new watermark
 * in one change, so a replica never sees the watermark without the entries below it. Updates and
 * snapshots are opaque bytes; applying them is idempotent and order-free.
 */

import { CrdtError } from './errors.ts'
import type { GameState } from './game.ts'
import { addEntry, createGameState, setWatermark, watermarkOf } from './game.ts'
import { isStampKey, type StampKey } from './hlc.ts'
import { OPS_PER_COMMIT_MAX } from './limits.ts'
import type { Entry, StoredEntry } from './ops.ts'
import { parseEntry, parseStoredEntry, writerOf } from './ops.ts'

export type BackendName = 'yjs' | 'automerge'

export interface ReplicaOptions {
  /**
   * The backend's actor id as an unsigned 32-bit integer. Random by default; the simulator sets
   * it from its seed so that runs replay byte for byte. Two live replicas must never share one.
   */
  readonly actor?: number
}

export interface ApplyResult {
  /** Stored entries that were new to this replica. */
  readonly added: number
  /** Malformed entries or watermarks the update carried; every replica skips the same ones. */
  readonly skipped: number
  /**
   * The highest stamp among the entries and watermarks the update made visible, for the node's
   * clock to merge; null if none. Entries count too: a restarted writer's new entries can become
   * visible before its older ones (and so before its watermark) on a Yjs replica.
   */
  readonly maxStamp: StampKey | null
}

export interface Replica {
  readonly backend: BackendName
  readonly game: GameState
  /** Store one writer's entries (stamped by its clock, in order); returns the update to publish. */
  commit(entries: readonly Entry[]): Uint8Array
  /** Merge an update or a snapshot from anywhere; duplicates and any order are fine. */
  apply(update: Uint8Array): ApplyResult
  /** The whole document, to restore a replica from. */
  snapshot(): Uint8Array
  stateHash(): string
}

export interface Backend {
  readonly name: BackendName
  create(options?: ReplicaOptions): Replica
  restore(snapshot: Uint8Array, options?: ReplicaOptions): Replica
}

export interface PreparedCommit {
  readonly stored: readonly StoredEntry[]
  readonly writer: string
  readonly watermark: StampKey
}

/** Check a writer's own commit before it touches the document; a bad one is a programming error. */
export function prepareCommit(game: GameState, entries: readonly Entry[]): PreparedCommit {
  if (entries.length === 0 || entries.length > OPS_PER_COMMIT_MAX) {
    throw new CrdtError('INVALID_OP', `a commit holds 1-${OPS_PER_COMMIT_MAX} entries, got ${entries.length}`)
  }
  const writer = writerOf(entries[0] as Entry)
  let previous = watermarkOf(game, writer)
  const stored: StoredEntry[] = []
  for (const entry of entries) {
    const parsed = parseEntry(entry)
    if (parsed === null)
      throw new CrdtError('INVALID_OP', `malformed ${entry.kind} entry: ${JSON.stringify(entry)}`)
    if (writerOf(parsed) !== writer)
      throw new CrdtError('INVALID_OP', 'a commit holds the entries of one writer')
    // A writer promises never to publish at or below its watermark; breaking that breaks finality.
    if (previous !== null && parsed.stamp <= previous) {
      throw new CrdtError('WATERMARK_REGRESSION', `${writer} stamped ${parsed.stamp}, not after ${previous}`)
    }
    previous = parsed.stamp
    if (parsed.kind !== 'heartbeat') stored.push(parsed)
  }
  return { stored, writer, watermark: previous as StampKey }
}

/** Feeds what a backend reads out of its document into the game state. */
export interface Ingest {
  readonly game: GameState
  entry(key: string, value: unknown): void
  watermark(writer: string, value: unknown): void
  /** The counts since the last call, then reset. */
  take(): ApplyResult
}

export function createIngest(game: GameState = createGameState()): Ingest {
  let added = 0
  let skipped = 0
  let maxStamp: StampKey | null = null
  return {
    game,
    entry(key, value) {
      const entry = parseStoredEntry(key, value)
      if (entry === null) {
        skipped++
      } else if (addEntry(game, entry)) {
        added++
        if (maxStamp === null || entry.stamp > maxStamp) maxStamp = entry.stamp
      }
    },
    watermark(writer, value) {
      if (!isStampKey(value) || writerOf({ kind: 'heartbeat', stamp: value }) !== writer) {
        skipped++
        return
      }
      setWatermark(game, writer, value)
      if (maxStamp === null || value > maxStamp) maxStamp = value
    },
    take() {
      const result = { added, skipped, maxStamp }
      added = 0
      skipped = 0
      maxStamp = null
      return result
    },
  }
}
