/**
 * A trader process's wiring: the region's fabric, this game's replica, the trader, its heartbeat
 * and snapshot timers, and the kill switch on `trader.<region>.kill` / `trader.<region>.resume`
 * (payload `{"gameId": "..."}` for one game, `{}` for every game this trader runs).
 *
 * A standby starts its feed only when it takes over, from the point after the last one the replica
 * holds. An active trader starts its feed once its replica has caught up with the log: on a game
 * the log already holds (a restart), it rejoins (takeover.ts) and resumes after the last point, so
 * the game clock never goes back, no resulted market reopens, and no result is claimed twice. Its
 * clock resumes past its stored ceiling before it stamps anything (clock-ceiling.ts). Snapshots are
 * written only from a replica that equals a prefix of the stream: nothing of this trader's own left
 * unacknowledged or unread, and never once the trader has stood down.
 */

import type { NatsConnection } from '@nats-io/transport-node'
import type { Logger } from 'pino'
import { type Backend, createHlc, type Entry, genesisOf, type Hlc } from '../../crdt/index.ts'
import { killSubject, resumeSubject } from '../../protocol/subjects.ts'
import { natsFabricTransport } from '../fabric/regions.ts'
import { createReplicaSync, type ReplicaSync } from '../fabric/replica-sync.ts'
import { realTimers, sleep, type Timers } from '../fabric/timers.ts'
import type { FabricTransport } from '../fabric/transport.ts'
import { type ClockCeiling, restoreClockCeiling } from './clock-ceiling.ts'
import type { FeedAdapter, FeedEvent } from './feed.ts'
import { createManualFeed, type ManualFeed } from './replay-feed.ts'
import { createTrader, type Trader, type TraderLimits, type TraderRole } from './trader.ts'

/** How often a starting trader checks whether its replica has caught up, and logs that it waits. */
export const CATCH_UP_POLL_MS = 50
export const CATCH_UP_LOG_MS = 5_000

export interface TraderNodeOptions {
  /** The connection the trader's transport is built on, unless `transport` is given. */
  readonly nc?: NatsConnection
  /** The streams, heartbeats and snapshot store (transport.ts); the simulator passes memory. */
  readonly transport?: FabricTransport
  /** Heartbeat, snapshot and catch-up timers (timers.ts); default the real ones. */
  readonly timers?: Timers
  readonly region: string
  readonly node: string
  readonly gameId: string
  readonly writers: readonly string[]
  readonly feed: FeedAdapter
  readonly backend: Backend
  readonly log: Logger
  readonly snapshotIntervalMs: number
  readonly limits?: Partial<TraderLimits>
  readonly hlc?: Hlc
  /** Every region of a super-cluster, this one included (see nodes/fabric/regions.ts). */
  readonly regions?: readonly string[]
  /** The clock of staleness checks; the HLC's source when `hlc` is not given. */
  readonly now?: () => number
  /** The trader's own record of what it committed (see TraderOptions.onCommit). */
  readonly onCommit?: (entries: readonly Entry[]) => void
  /** Start as a standby (see nodes/trader/takeover.ts); default active. */
  readonly role?: Exclude<TraderRole, 'fenced'>
}

export interface TraderNode {
  readonly trader: Trader
  readonly replicas: ReplicaSync
  readonly hlc: Hlc
  close(): Promise<void>
}

function targetsGame(data: Uint8Array, gameId: string): boolean {
  try {
    const value = JSON.parse(new TextDecoder().decode(data)) as { gameId?: unknown }
    return value.gameId === undefined || value.gameId === gameId
  } catch {
    return false
  }
}

export async function startTraderNode(options: TraderNodeOptions): Promise<TraderNode> {
  const { region, gameId, log } = options
  const timers = options.timers ?? realTimers
  const hlc = options.hlc ?? createHlc({ node: options.node, ...(options.now ? { clock: options.now } : {}) })
  const transport = await transportOf(options)
  const replicas = await createReplicaSync({
    transport,
    region,
    backend: options.backend,
    hlc,
    log,
    ...(options.regions ? { regions: options.regions } : {}),
    ...(options.now ? { now: options.now } : {}),
  })
  const ceiling = await restoreClockCeiling({
    store: transport.snapshots,
    gameId,
    hlc,
    now: options.now ?? Date.now,
    log,
    timers,
  })
  const { trader, lastAckSeq } = createFabricTrader(options, replicas, hlc, ceiling)
  const stopDrops = replicas.onDrop((dropped) => {
    if (dropped.gameId === gameId && dropped.writer === hlc.node)
      trader.standDown(`an update of ours was dropped: ${dropped.reason}`)
  })
  /** Whether the replica equals what the stream holds up to lastSeq (see the module comment). */
  const snapshotSafe = () =>
    trader.role() !== 'fenced' && trader.backlog() === 0 && replicas.lastSeq() >= lastAckSeq()
  const heartbeatMs = options.limits?.heartbeatMs ?? 20
  const stopTicker = timers.setInterval(() => trader.tick(), heartbeatMs)
  const stopSnapshots =
    options.snapshotIntervalMs > 0
      ? timers.setInterval(() => {
          if (!snapshotSafe()) return
          replicas.writeSnapshots().catch((error) => log.warn({ err: error }, 'snapshot round failed'))
        }, options.snapshotIntervalMs)
      : null
  const stopKillSwitch = serveKillSwitch(transport, region, gameId, trader, log)
  if (trader.role() === 'active') await startFeedWhenCaughtUp({ ...options, replicas, trader, hlc, timers })
  log.info({ gameId, feed: options.feed.name, role: trader.role() }, 'trader started')

  return {
    trader,
    replicas,
    hlc,
    async close() {
      options.feed.stop()
      stopTicker()
      stopSnapshots?.()
      stopKillSwitch()
      stopDrops()
      await trader.flush()
      await replicas.close()
    },
  }
}

/**
 * The trader of this node's game, writing to the game's replica and publishing through the replica
 * sync; `lastAckSeq` is the highest stream sequence JetStream gave one of its updates.
 */
function createFabricTrader(
  options: TraderNodeOptions,
  replicas: ReplicaSync,
  hlc: Hlc,
  ceiling: ClockCeiling,
): { readonly trader: Trader; lastAckSeq(): number } {
  const { gameId, log } = options
  let lastAckSeq = 0
  const trader: Trader = createTrader({
    gameId,
    writers: options.writers,
    replica: replicas.replicaFor(gameId),
    hlc,
    log,
    limits: options.limits,
    role: options.role ?? 'active',
    caughtUp: () => replicas.caughtUp(),
    fencedBy: () => replicas.fencedBy(gameId, hlc.node),
    onTakeover(afterPoint) {
      log.warn({ gameId, afterPoint }, 'took over the game; starting the feed')
      options.feed.start((event) => trader.handle(event), { afterPoint })
    },
    onStandDown: () => options.feed.stop(),
    mayPromise: (wallMs) => ceiling.covers(wallMs),
    ...(options.onCommit ? { onCommit: options.onCommit } : {}),
    ...(options.now ? { now: options.now } : {}),
    publisher: {
      async publishUpdate(update, msgId, fences) {
        const seq = await replicas.publishUpdate(gameId, update, msgId, { writer: hlc.node, fences })
        lastAckSeq = Math.max(lastAckSeq, seq)
      },
      publishHeartbeat: (heartbeat) => replicas.publishHeartbeat(gameId, heartbeat),
    },
  })
  return { trader, lastAckSeq: () => lastAckSeq }
}

/** The kill switch: `trader.<region>.kill` suspends every open market, `.resume` lifts it. */
function serveKillSwitch(
  transport: FabricTransport,
  region: string,
  gameId: string,
  trader: Trader,
  log: Logger,
): () => void {
  const stopKill = transport.subscribe(killSubject(region), (_subject, data) => {
    if (!targetsGame(data, gameId)) return
    log.warn({ gameId }, 'kill switch: suspending every open market')
    trader.kill('kill switch')
  })
  const stopResume = transport.subscribe(resumeSubject(region), (_subject, data) => {
    if (targetsGame(data, gameId)) trader.resume()
  })
  return () => {
    stopKill()
    stopResume()
  }
}

/** Start the active trader's feed once the replica has caught up; rejoin a game already running. */
async function startFeedWhenCaughtUp(context: {
  readonly replicas: ReplicaSync
  readonly trader: Trader
  readonly hlc: Hlc
  readonly timers: Timers
  readonly gameId: string
  readonly feed: FeedAdapter
  readonly log: Logger
}): Promise<void> {
  const { replicas, trader, hlc, timers, gameId, feed, log } = context
  for (let waited = 0; !replicas.caughtUp(); waited += CATCH_UP_POLL_MS) {
    if (waited > 0 && waited % CATCH_UP_LOG_MS === 0)
      log.info({ waitedMs: waited }, 'catching up before the feed')
    await sleep(timers, CATCH_UP_POLL_MS)
  }
  const handle = (event: FeedEvent) => trader.handle(event)
  if (genesisOf(replicas.replicaFor(gameId).game) === null) {
    feed.start(handle)
    return
  }
  const fencer = replicas.fencedBy(gameId, hlc.node)
  if (fencer !== null) {
    trader.standDown(`fenced by ${fencer} while this trader was down`)
    return
  }
  feed.start(handle, { afterPoint: trader.rejoin() })
}

/** The transport given, or one over the NATS connection given. */
async function transportOf(options: TraderNodeOptions): Promise<FabricTransport> {
  if (options.transport) return options.transport
  if (!options.nc) throw new TypeError('a trader node needs a NATS connection or a transport')
  return natsFabricTransport(options.nc, options.region, options.regions)
}

/** A trader of one game driven event by event (tests, benchmarks, operator tools): writer `trader-1`. */
export async function startManualTraderNode(
  options: Pick<TraderNodeOptions, 'nc' | 'region' | 'backend' | 'log'> & Partial<TraderNodeOptions>,
): Promise<TraderNode & { readonly feed: ManualFeed }> {
  const feed = createManualFeed()
  const node = await startTraderNode({
    node: 'trader-1',
    gameId: 'match-1',
    writers: [options.node ?? 'trader-1'],
    snapshotIntervalMs: 0,
    ...options,
    feed,
  })
  return { ...node, feed }
}
