/**
 * Replica sync over JetStream: one CRDT replica per game, fed by the region's fabric stream
 * (updates, R3) and by writers' beats (core NATS, writer-beats.ts), restored from snapshots on start.
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
 *
 * The parts: replica-snapshots.ts writes and restores the snapshots and their checkpoint,
 * game-replicas.ts holds the replicas and the log's fences and applies what arrives,
 * update-author.ts reads and writes the headers naming an update's writer and fences; this module
 * wires them to the transport.
 */

import type { Logger } from 'pino'
import type { Backend, Hlc, Replica } from '../../crdt/index.ts'
import { regionNames } from '../../protocol/subjects.ts'
import { ARCHIVE_HEADER, archiveMsgId, createArchiveShelf, encodeArchive } from './archive.ts'
import { type ClockGuard, createClockGuard } from './clock-guard.ts'
import { type BeatWork, createGameReplicas, type DroppedUpdate, type ReplicaChange } from './game-replicas.ts'
import { restoreSnapshots, writeSnapshots } from './replica-snapshots.ts'
import type { FollowerView } from './stream-follower.ts'
import { names, SNAPSHOT_BYTES_MAX } from './streams.ts'
import type { FabricTransport } from './transport.ts'
import { authorHeaders, type UpdateAuthor } from './update-author.ts'
import { encodeWriterBeat, type WriterBeat } from './writer-beats.ts'

export {
  type DroppedUpdate,
  GAMES_PER_NODE_MAX,
  type ReplicaChange,
} from './game-replicas.ts'
export { FENCE_HEADER, FENCE_STAMPS_HEADER, type UpdateAuthor, WRITER_HEADER } from './update-author.ts'

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
  /**
   * Purge an archived game's messages below its marker from the streams this node can name (the
   * stream it follows, and its region's own fabric stream): traders and settlement nodes do.
   */
  readonly purgeArchived?: boolean
}

export interface ReplicaSync {
  /** The game's replica: a live one, or an archived one loaded now (see loadArchive). */
  replica(gameId: string): Replica | undefined
  /**
   * The game's replica, created empty if this node has not seen the game yet (writers use it);
   * throws for a game this node knows is archived.
   */
  replicaFor(gameId: string): Replica
  /** The live games (archived ones leave). */
  games(): string[]
  /** Whether this node knows the game is archived (archive.ts). */
  isArchived(gameId: string): boolean
  /** How many archived games this node knows of, and how many archives it loaded since start. */
  archiveCounts(): { readonly known: number; readonly loads: number }
  /** An archived game's replica, loaded from the snapshot bucket if need be; null without an archive. */
  loadArchive(gameId: string): Promise<Replica | null>
  /**
   * Archive a game this node writes: its replica's snapshot under `archive.<gameId>`, then its
   * marker on the game's subject; resolves with the marker's stream sequence. The caller makes
   * sure the replica holds everything the stream acknowledged of the game, and nothing more.
   */
  archive(gameId: string, author: UpdateAuthor): Promise<number>
  /** A game's marker was read: every node drops the game's replica there. */
  onArchive(listener: (gameId: string) => void): () => void
  /** The writer that fenced `writer` in the game, by the log's account, or null. */
  fencedBy(gameId: string, writer: string): string | null
  /** Updates dropped after a fence (see the module comment), since start. */
  droppedUpdates(): number
  /** What writers' beats have cost this node since it started (game-replicas.ts). */
  beatWork(): BeatWork
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
  /** Publish a writer process's beat (writer-beats.ts); a beat too large to send throws. */
  publishBeat(beat: WriterBeat): void
  /**
   * Write the snapshot of every game changed since this node's last one of it, then the checkpoint
   * naming them all; a changed game `keep` names keeps the snapshot it has (its replica may not be
   * a prefix of the stream just now).
   */
  writeSnapshots(keep?: (gameId: string) => boolean): Promise<number>
  close(): Promise<void>
}

export async function createReplicaSync(options: ReplicaSyncOptions): Promise<ReplicaSync> {
  const { transport, region, backend, hlc, log } = options
  const snapshots = transport.snapshots
  let closed = false
  const clock = createClockGuard({ hlc, now: options.now ?? Date.now })
  const archives = createArchiveShelf({
    snapshots,
    backend,
    log,
    ...(options.now ? { now: options.now } : {}),
  })
  const games = createGameReplicas({ backend, clock, log, archives, ownWriter: hlc.node })
  const startSeq = await restoreSnapshots({ snapshots, backend, log, into: games.restore, archives })
  const loadListeners = new Set<(change: ReplicaChange) => void>()
  /** The sequence of the snapshot of each game this node wrote last (replica-snapshots.ts). */
  const written = new Map<string, number>()

  const multiRegion = (options.regions?.length ?? 0) > 1
  const followed = multiRegion ? regionNames.globalFabricStream(region) : names.fabricStream(region)
  if (options.purgeArchived)
    games.onArchive((gameId, seq, subject, replica) => {
      shelveAndPurge(gameId, seq, subject, replica).catch((error: unknown) =>
        log.warn({ gameId, err: error }, 'could not purge an archived game'),
      )
    })
  /**
   * An archived game's messages below its marker leave the stream this node follows, once the
   * archive is in this region's bucket. The trader put it there before its marker; a node of
   * another region of a super-cluster puts it in its own region's from its replica, which at the
   * marker holds every update of the game (it read them all before, in stream order), unless the
   * bucket holds one already (a node whose replica lacked updates purged meanwhile finds the
   * archive of the node that purged them). A region's own fabric stream, which the others source,
   * is not purged in a super-cluster: a region cut off may not have sourced it yet.
   */
  async function shelveAndPurge(
    gameId: string,
    seq: number,
    subject: string,
    replica: Replica | undefined,
  ): Promise<void> {
    const key = names.archiveKey(gameId)
    if (replica !== undefined) await snapshots.create(key, encodeArchive(replica))
    else if ((await snapshots.get(key)) === null) {
      log.warn({ gameId }, 'an archived game with neither a replica here nor an archive: not purged')
      return
    }
    const purged = await transport.purge(followed, subject, seq)
    log.info({ gameId, stream: followed, purged }, 'purged an archived game')
  }
  const follower = await transport.follow({
    stream: followed,
    filterSubject: multiRegion ? regionNames.everyRegionGamesSubject : names.allGamesSubject(region),
    startSeq,
    log,
    onMessage: games.applyUpdate,
  })
  const stopHeartbeats = transport.subscribe(
    multiRegion ? regionNames.everyRegionBeatsSubject : names.beatSubject(region),
    (_subject, data) => games.applyBeat(data),
  )

  return {
    replica: (gameId) => games.replicas.get(gameId) ?? archives.loaded(gameId),
    replicaFor: games.replicaFor,
    games: () => [...games.replicas.keys()],
    isArchived: archives.known,
    archiveCounts: () => ({ known: archives.count(), loads: archives.loads() }),
    async loadArchive(gameId) {
      const live = games.replicas.get(gameId)
      if (live !== undefined) return live
      const wasLoaded = archives.loaded(gameId) !== undefined
      const replica = await archives.load(gameId)
      // Whoever waits on the game's changes (a settler's next pass) hears that it can be read now.
      if (replica !== null && !wasLoaded)
        for (const listener of loadListeners)
          listener({ gameId, result: { added: 0, skipped: 0, maxStamp: null }, source: 'archive' })
      return replica
    },
    async archive(gameId, author) {
      const replica = games.replicas.get(gameId)
      if (replica === undefined) throw new RangeError(`no live replica of ${gameId} to archive`)
      const data = encodeArchive(replica)
      if (data.length > SNAPSHOT_BYTES_MAX)
        throw new RangeError(`${gameId}'s archive is over SNAPSHOT_BYTES_MAX`)
      await snapshots.put(names.archiveKey(gameId), data)
      const headers = { ...authorHeaders(author), [ARCHIVE_HEADER]: '1' }
      const ack = await transport.append(names.gameSubject(region, gameId), new Uint8Array(0), {
        msgId: archiveMsgId(gameId),
        headers,
      })
      return ack.seq
    },
    onArchive: (listener) => games.onArchive((gameId) => listener(gameId)),
    fencedBy: games.fencedBy,
    droppedUpdates: games.droppedUpdates,
    beatWork: games.beatWork,
    lastSeq: () => follower.lastSeq(),
    follower,
    clock,
    caughtUp: () => follower.caughtUp(),
    onChange(listener) {
      loadListeners.add(listener)
      const stop = games.onChange(listener)
      return () => {
        loadListeners.delete(listener)
        stop()
      }
    },
    onDrop: games.onDrop,
    async publishUpdate(gameId, update, msgId, author) {
      const headers = authorHeaders(author)
      const ack = await transport.append(names.gameSubject(region, gameId), update, { msgId, headers })
      return ack.seq
    },
    publishBeat(beat) {
      // A beat must reach the region while a majority is reachable, even when this writer's
      // server is cut off: it goes through every connection the node has.
      transport.publish(names.beatSubject(region), encodeWriterBeat(beat), { everyConnection: true })
    },
    writeSnapshots: (keep) =>
      writeSnapshots({
        snapshots,
        log,
        // Restored from snapshots, the replicas hold the stream up to startSeq - 1 before the
        // follower has read anything past it.
        seq: Math.max(follower.lastSeq(), startSeq - 1),
        replicas: games.replicas,
        changedSince: (gameId, since) => games.lastSeqOf(gameId) > since,
        written,
        archives,
        ...(keep ? { keep } : {}),
      }),
    async close() {
      if (closed) return
      closed = true
      stopHeartbeats()
      await follower.close()
    },
  }
}
