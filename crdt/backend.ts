/**
 * The replica contract every CRDT backend implements, and the pieces they share.
 *
 * A replica stores a game document as two maps: entries under their keys (grow-only, see ops.ts)
 * and one watermark per writer. A commit writes a writer's entries and its new watermark in one
 * change, so a replica never sees the watermark without the entries below it. Updates and
 * snapshots are opaque bytes; applying them is idempotent and order-free.
 *
 * Heartbeats travel beside the document, not in it: a writer that heartbeats every few
 * milliseconds would otherwise grow the document's history without bound. A heartbeat names the
 * document version its writer had published; a replica holds it until it has that version too.
 */

import { CrdtError } from './errors.ts'
import type { GameState } from './game.ts'
import { addEntry, createGameState, raiseHeartbeat, setWatermark, watermarkOf } from './game.ts'
import { isNodeId, isStampKey, type StampKey } from './hlc.ts'
import { HEARTBEAT_VERSION_LENGTH_MAX, OPS_PER_COMMIT_MAX } from './limits.ts'
import type { Entry } from './ops.ts'
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
  /** Entries that were new to this replica. */
  readonly added: number
  /** Malformed entries, watermarks or heartbeats; every replica skips the same ones. */
  readonly skipped: number
  /**
   * The highest stamp among the entries and watermarks this made visible, for the node's clock to
   * merge; null if none. Entries count too: a restarted writer's new entries can become visible
   * before its older ones (and so before its watermark) on a Yjs replica.
   */
  readonly maxStamp: StampKey | null
}

/**
 * A writer's promise: it will never stamp at or below `stamp` again, and everything it stamped
 * before is in the document `version` (backend-specific, opaque) it had published.
 */
export interface Heartbeat {
  readonly writer: string
  readonly stamp: StampKey
  readonly version: string
}

export interface Replica {
  readonly backend: BackendName
  readonly game: GameState
  /** Store one writer's entries (stamped by its clock, in order); returns the update to publish. */
  commit(entries: readonly Entry[]): Uint8Array
  /** The writer's heartbeat at `stamp` (its clock's next tick), to publish beside the updates. */
  heartbeat(stamp: StampKey): Heartbeat
  /** Merge an update or a snapshot from anywhere; duplicates and any order are fine. */
  apply(update: Uint8Array): ApplyResult
  /** Admit a heartbeat (untrusted input), now or once this replica holds its version. */
  applyHeartbeat(heartbeat: unknown): ApplyResult
  /** The whole document, to restore a replica from. */
  snapshot(): Uint8Array
  stateHash(): string
}

export interface Backend {
  readonly name: BackendName
  create(options?: ReplicaOptions): Replica
  restore(snapshot: Uint8Array, options?: ReplicaOptions): Replica
}

/** A writer promises never to publish at or below its watermark; breaking that breaks finality. */
function assertAfter(writer: string, stamp: StampKey, previous: StampKey | null): void {
  if (previous !== null && stamp <= previous) {
    throw new CrdtError('WATERMARK_REGRESSION', `${writer} stamped ${stamp}, not after ${previous}`)
  }
}

export interface PreparedCommit {
  readonly entries: readonly Entry[]
  readonly writer: string
  readonly watermark: StampKey
}

/** Check a writer's own commit before it touches the document; a bad one is a programming error. */
export function prepareCommit(game: GameState, entries: readonly Entry[]): PreparedCommit {
  if (entries.length === 0 || entries.length > OPS_PER_COMMIT_MAX) {
    throw new CrdtError('INVALID_OP', `a commit holds 1-${OPS_PER_COMMIT_MAX} entries, got ${entries.length}`)
  }
  const writer = writerOf(entries[0] as Entry)
  const parsed: Entry[] = []
  let previous = watermarkOf(game, writer)
  for (const entry of entries) {
    const valid = parseEntry(entry)
    if (valid === null)
      throw new CrdtError('INVALID_OP', `malformed ${entry.kind} entry: ${JSON.stringify(entry)}`)
    if (writerOf(valid) !== writer)
      throw new CrdtError('INVALID_OP', 'a commit holds the entries of one writer')
    assertAfter(writer, valid.stamp, previous)
    previous = valid.stamp
    parsed.push(valid)
  }
  return { entries: parsed, writer, watermark: previous as StampKey }
}

/** Check a writer's own heartbeat: a stamp of its own, after its watermark. */
export function prepareHeartbeat(game: GameState, stamp: StampKey): string {
  if (!isStampKey(stamp))
    throw new CrdtError('INVALID_STAMP', `not an encoded stamp: ${JSON.stringify(stamp)}`)
  const writer = writerOf({ stamp })
  assertAfter(writer, stamp, watermarkOf(game, writer))
  return writer
}

export function parseHeartbeat(value: unknown): Heartbeat | null {
  if (typeof value !== 'object' || value === null) return null
  const { writer, stamp, version } = value as Record<string, unknown>
  const valid =
    isNodeId(writer) &&
    isStampKey(stamp) &&
    writerOf({ stamp }) === writer &&
    typeof version === 'string' &&
    version.length <= HEARTBEAT_VERSION_LENGTH_MAX
  return valid ? { writer, stamp, version } : null
}

/** Versions a replica remembers it holds (documents only grow, so a held version stays held). */
export const HELD_VERSIONS_MAX = 16

/**
 * `holds`, remembering the last versions it found held: a node checks the same version of each
 * writer in every heartbeat until the writer's document changes, and a writer process heartbeats
 * every game of its own each round.
 */
export function rememberHeld(
  holds: (version: string) => boolean | null,
): (version: string) => boolean | null {
  const held = new Set<string>()
  return (version) => {
    if (held.has(version)) return true
    const verdict = holds(version)
    if (verdict === true) {
      if (held.size >= HELD_VERSIONS_MAX) held.clear()
      held.add(version)
    }
    return verdict
  }
}

/** Feeds what a backend reads out of its document, and the heartbeats it admits, into the game state. */
export interface Ingest {
  readonly game: GameState
  entry(key: string, value: unknown): void
  watermark(writer: string, value: unknown): void
  /** Offer a heartbeat; `holds(version)` says whether the document has that version yet. */
  heartbeat(value: unknown, holds: (version: string) => boolean | null): void
  /** Admit the held heartbeats whose version the document now holds. */
  recheck(holds: (version: string) => boolean | null): void
  /** The counts since the last call, then reset. */
  take(): ApplyResult
}

export function createIngest(game: GameState = createGameState()): Ingest {
  let added = 0
  let skipped = 0
  let maxStamp: StampKey | null = null
  /** At most one held heartbeat per writer: the latest, since it promises the most. */
  const held = new Map<string, Heartbeat>()
  const raise = (stamp: StampKey) => {
    if (maxStamp === null || stamp > maxStamp) maxStamp = stamp
  }
  function admit(heartbeat: Heartbeat, holds: (version: string) => boolean | null): void {
    const verdict = holds(heartbeat.version)
    if (verdict === null) {
      skipped++
    } else if (verdict) {
      if (raiseHeartbeat(game, heartbeat.writer, heartbeat.stamp)) raise(heartbeat.stamp)
      // A later heartbeat held for this writer still waits for its own version.
      const waiting = held.get(heartbeat.writer)
      if (waiting !== undefined && waiting.stamp <= heartbeat.stamp) held.delete(heartbeat.writer)
    } else if ((held.get(heartbeat.writer)?.stamp ?? '') < heartbeat.stamp) {
      held.set(heartbeat.writer, heartbeat)
    }
  }
  return {
    game,
    entry(key, value) {
      if (game.entries.has(key)) return
      const entry = parseStoredEntry(key, value)
      if (entry === null) {
        skipped++
      } else if (addEntry(game, entry, key)) {
        added++
        raise(entry.stamp)
      }
    },
    watermark(writer, value) {
      if (!isStampKey(value) || writerOf({ stamp: value }) !== writer) {
        skipped++
        return
      }
      setWatermark(game, writer, value)
      raise(value)
    },
    heartbeat(value, holds) {
      const heartbeat = parseHeartbeat(value)
      if (heartbeat === null) skipped++
      else admit(heartbeat, holds)
    },
    recheck(holds) {
      for (const heartbeat of [...held.values()]) admit(heartbeat, holds)
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
