/**
 * Replica sync over JetStream: one CRDT replica per game, fed by the region's fabric stream
 * (updates, R3) and by heartbeats (core NATS), restored from snapshots on start.
 *
 * Start: read the checkpoint in the snapshot bucket (the games and the stream sequence of the last
 * snapshot round), restore each game's replica from its snapshot, then tail the stream with an
 * ordered consumer from the lowest snapshot sequence. Replaying an update a snapshot already holds
 * is a no-op, so overlap is harmless; a gap is impossible. Writers commit on their own replica and
 * publish; their update comes back through the stream and changes nothing the second time.
 *
 * Takeover (crdt FenceOp): every update names its writer in a header, and a takeover names the
 * writers it fences. In stream order, an update by a writer the log has already fenced is dropped,
 * and so is a fence of a writer the log has already fenced; the log's fences are kept apart from
 * the replica, which on a writer's own node also holds commits the log may drop. Every node reads one game's updates in the
 * same order (a game is written to one region's stream, and sourcing keeps each origin's order),
 * so all drop the same updates: the first fence in the log wins, and a replica that holds a fence
 * holds every update of the fenced writer that will ever count, which is what lets finality stop
 * waiting for it.
 */

import { deflateRawSync, inflateRawSync } from 'node:zlib'
import type { Logger } from 'pino'
import {
  type ApplyResult,
  activeWriters,
  type Backend,
  decodeStamp,
  fenceOf,
  type Heartbeat,
  type Hlc,
  isId,
  isNodeId,
  isStampKey,
  maxStamp,
  type Replica,
  writerOf,
  writersOf,
} from '../../crdt/index.ts'
import { regionNames } from '../../protocol/subjects.ts'
import { type ClockGuard, createClockGuard } from './clock-guard.ts'
import { createLogFences, type FenceDropReason, type LogFence } from './log-fences.ts'
import type { FollowerView } from './stream-follower.ts'
import { names, SNAPSHOT_BYTES_MAX } from './streams.ts'
import type { FabricTransport, SnapshotStore } from './transport.ts'

/** A heartbeat is a few hundred bytes of JSON; anything larger is not one. */
export const HEARTBEAT_BYTES_MAX = 8 * 1024
export const GAMES_PER_NODE_MAX = 1_000
const CHECKPOINT_KEY = 'checkpoint'
/** The writer whose ops an update holds. */
export const WRITER_HEADER = 'Fabric-Writer'
/** The writers an update fences (comma-separated): a takeover. */
export const FENCE_HEADER = 'Fabric-Fence'
/** The stamps of those fences, in the same order (comma-separated); see log-fences.ts. */
export const FENCE_STAMPS_HEADER = 'Fabric-Fence-Stamps'

/** Who wrote an update, and whom it fences, at which stamps. */
export interface UpdateAuthor {
  readonly writer: string
  readonly fences?: readonly { readonly target: string; readonly stamp: string }[]
}

export type ReplicaChange = {
  readonly gameId: string
  readonly result: ApplyResult
  readonly source: 'stream' | 'heartbeat'
}

/** An update the replica dropped because its writer, or the writer it fences, is fenced already. */
export type DroppedUpdate = {
  readonly gameId: string
  readonly seq: number
  readonly writer: string
  readonly reason: FenceDropReason
}

export interface ReplicaSyncOptions {
  /** Streams, heartbeats and the snapshot bucket (transport.ts: NATS, or memory in the simulator). */
  readonly transport: FabricTransport
  readonly region: string
  readonly backend: Backend
  readonly hlc: Hlc
  readonly log: Logger
  /**
   * Every region of a super-cluster (nodes/fabric/regions.ts), this node's included: the node then
   * follows GLOBAL_FABRIC_<region>, which holds every region's updates, and hears every region's
   * heartbeats. Absent or one region: the region's own FABRIC stream.
   */
  readonly regions?: readonly string[]
  /** The node's wall clock, the HLC's source (clock-guard.ts); default Date.now. */
  readonly now?: () => number
}

export interface ReplicaSync {
  replica(gameId: string): Replica | undefined
  /** The game's replica, created empty if this node has not seen the game yet (writers use it). */
  replicaFor(gameId: string): Replica
  games(): string[]
  /** The writer that fenced `writer` in the game, by the log's account, or null. */
  fencedBy(gameId: string, writer: string): string | null
  /** Updates dropped after a fence (see the module comment), since start. */
  droppedUpdates(): number
  /** The stream sequence of the last update applied. */
  lastSeq(): number
  /** How its reading of the stream goes: consumers replaced, holes, phase (stream-follower.ts). */
  readonly follower: FollowerView
  /** Whether this node's clock holds every stamp its replicas hold (clock-guard.ts). */
  readonly clock: ClockGuard
  /** True once the consumer has delivered everything the stream held when this node started. */
  caughtUp(): boolean
  onChange(listener: (change: ReplicaChange) => void): () => void
  onDrop(listener: (dropped: DroppedUpdate) => void): () => void
  /** Publish a writer's update durably; resolves with its stream sequence. */
  publishUpdate(gameId: string, update: Uint8Array, msgId: string, author?: UpdateAuthor): Promise<number>
  publishHeartbeat(gameId: string, heartbeat: Heartbeat): void
  /** Write every game's snapshot, then the checkpoint naming them. */
  writeSnapshots(): Promise<number>
  close(): Promise<void>
}

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

/** `fabric.<region>.game.<gameId>` or `heartbeat.<region>.game.<gameId>`: the game, from any region. */
function gameIdOf(subject: string): string {
  return subject.split('.')[3] ?? ''
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
async function restoreSnapshots(context: {
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

/** The fences an update's headers name, each with its stamp when the writer sent them. */
function fencesOf(targets: string | undefined, stamps: string | undefined): LogFence[] {
  if (!targets) return []
  const stampList = stamps ? stamps.split(',') : []
  return targets.split(',').map((target, i) => {
    const stamp = stampList[i]
    return isStampKey(stamp) ? { target, stamp } : { target }
  })
}

/** A heartbeat's stamp is its writer's clock as it was sent: a sample of that writer's offset. */
function observeHeartbeat(clock: ClockGuard, replica: Replica, value: unknown): void {
  if (typeof value !== 'object' || value === null) return
  const { writer, stamp } = value as { writer?: unknown; stamp?: unknown }
  // Only the game's active writers: anybody else's clock says nothing about this node's.
  if (!isNodeId(writer) || !isStampKey(stamp) || !activeWriters(replica.game).includes(writer)) return
  clock.observeWriter(writer, decodeStamp(stamp).wall)
}

export async function createReplicaSync(options: ReplicaSyncOptions): Promise<ReplicaSync> {
  const { transport, region, backend, hlc, log } = options
  const snapshots = transport.snapshots
  const replicas = new Map<string, Replica>()
  const listeners = new Set<(change: ReplicaChange) => void>()
  const dropListeners = new Set<(dropped: DroppedUpdate) => void>()
  let droppedUpdates = 0
  let closed = false
  const clock = createClockGuard({ hlc, now: options.now ?? Date.now })

  /**
   * The node's clock takes every stamp the replica now holds before anyone hears of the change; a
   * stamp beyond the drift bound is held by the guard, which stops judging until the clock takes it.
   */
  function merge(gameId: string, result: ApplyResult, source: ReplicaChange['source']): void {
    if (result.maxStamp !== null) {
      const wasSafe = clock.offsets().heldLeadMs === 0
      clock.merge(decodeStamp(result.maxStamp))
      if (wasSafe && clock.offsets().heldLeadMs > 0)
        log.warn({ gameId, ...clock.offsets() }, 'holding a stamp beyond the maximum drift; judging stops')
    }
    for (const listener of listeners) listener({ gameId, result, source })
  }

  function replicaFor(gameId: string): Replica {
    let replica = replicas.get(gameId)
    if (replica === undefined) {
      if (replicas.size >= GAMES_PER_NODE_MAX) throw new RangeError(`more than ${GAMES_PER_NODE_MAX} games`)
      replica = backend.create()
      replicas.set(gameId, replica)
    }
    return replica
  }

  /** Per game, the fences the log has accepted so far, in stream order (log-fences.ts). */
  const logFences = new Map<string, ReturnType<typeof createLogFences>>()
  function logFencesOf(gameId: string): ReturnType<typeof createLogFences> {
    let fences = logFences.get(gameId)
    if (fences === undefined) {
      fences = createLogFences()
      logFences.set(gameId, fences)
    }
    return fences
  }

  const startSeq = await restoreSnapshots({
    snapshots,
    backend,
    log,
    into: (gameId, replica) => {
      replicas.set(gameId, replica)
      // A snapshot is a prefix of the log (writers snapshot only then): its fences are the log's.
      for (const writer of writersOf(replica.game)) {
        const fence = fenceOf(replica.game, writer)
        if (fence !== null) logFencesOf(gameId).record(writer, writerOf(fence), fence.stamp)
      }
      // The node's clock must pass everything the snapshot holds before it stamps anything.
      merge(
        gameId,
        { added: replica.game.entries.size, skipped: 0, maxStamp: maxStamp(replica.game) },
        'stream',
      )
    },
  })

  const multiRegion = (options.regions?.length ?? 0) > 1
  const follower = await transport.follow({
    stream: multiRegion ? regionNames.globalFabricStream(region) : names.fabricStream(region),
    filterSubject: multiRegion ? regionNames.everyRegionGamesSubject : names.allGamesSubject(region),
    startSeq,
    log,
    onMessage(message) {
      const gameId = gameIdOf(message.subject)
      if (!isId(gameId)) return
      const writer = message.headers?.get(WRITER_HEADER)
      const reason = logFencesOf(gameId).decide(
        writer,
        fencesOf(message.headers?.get(FENCE_HEADER), message.headers?.get(FENCE_STAMPS_HEADER)),
      )
      if (reason !== null) {
        const event: DroppedUpdate = { gameId, seq: message.seq, writer: writer as string, reason }
        droppedUpdates++
        log.warn(event, 'dropped an update after a fence')
        for (const listener of dropListeners) listener(event)
        return
      }
      try {
        merge(gameId, replicaFor(gameId).apply(message.data), 'stream')
      } catch (error) {
        log.error({ gameId, seq: message.seq, err: error }, 'skipped an update the replica refused')
      }
    },
  })

  const stopHeartbeats = transport.subscribe(
    multiRegion ? regionNames.everyRegionHeartbeatsSubject : names.allHeartbeatsSubject(region),
    (subject, data) => {
      if (data.length > HEARTBEAT_BYTES_MAX) return
      const gameId = gameIdOf(subject)
      const replica = replicas.get(gameId)
      if (replica === undefined) return
      let value: unknown
      try {
        value = JSON.parse(new TextDecoder().decode(data))
      } catch {
        return
      }
      observeHeartbeat(clock, replica, value)
      merge(gameId, replica.applyHeartbeat(value), 'heartbeat')
    },
  )

  return {
    replica: (gameId) => replicas.get(gameId),
    replicaFor,
    games: () => [...replicas.keys()],
    fencedBy: (gameId, writer) => logFences.get(gameId)?.fencedBy(writer) ?? null,
    droppedUpdates: () => droppedUpdates,
    lastSeq: () => follower.lastSeq(),
    follower,
    clock,
    caughtUp: () => follower.caughtUp(),
    onChange(listener) {
      listeners.add(listener)
      return () => listeners.delete(listener)
    },
    onDrop(listener) {
      dropListeners.add(listener)
      return () => dropListeners.delete(listener)
    },
    async publishUpdate(gameId, update, msgId, author) {
      const headers: Record<string, string> = {}
      if (author !== undefined) {
        headers[WRITER_HEADER] = author.writer
        if (author.fences?.length) {
          headers[FENCE_HEADER] = author.fences.map((fence) => fence.target).join(',')
          headers[FENCE_STAMPS_HEADER] = author.fences.map((fence) => fence.stamp).join(',')
        }
      }
      const ack = await transport.append(names.gameSubject(region, gameId), update, { msgId, headers })
      return ack.seq
    },
    publishHeartbeat(gameId, heartbeat) {
      transport.publish(names.heartbeatSubject(region, gameId), JSON.stringify(heartbeat))
    },
    async writeSnapshots() {
      const seq = follower.lastSeq()
      const games = [...replicas.keys()]
      for (const gameId of games) {
        const data = encodeSnapshot(seq, (replicas.get(gameId) as Replica).snapshot())
        if (data.length > SNAPSHOT_BYTES_MAX) {
          log.error({ gameId, bytes: data.length }, 'snapshot over the size limit; not written')
          continue
        }
        await snapshots.put(names.snapshotKey(gameId), data)
      }
      await snapshots.put(CHECKPOINT_KEY, JSON.stringify({ seq, games }))
      return seq
    },
    async close() {
      if (closed) return
      closed = true
      stopHeartbeats()
      await follower.close()
    },
  }
}
