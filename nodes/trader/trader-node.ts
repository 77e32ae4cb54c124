/**
 * A trader process's wiring: the region's fabric, one replica sync for every game, a trader per
 * game it runs (each with its own feed, takeover and stand-down), one writer beat per round for
 * all of them (nodes/fabric/writer-beats.ts), one clock ceiling, the snapshot timer, and the kill
 * switch on `trader.<region>.kill` / `trader.<region>.resume` (payload `{"gameId": "..."}` for
 * one game, `{}` for every game this process runs).
 *
 * A standby starts a game's feed only when it takes the game over, from the point after the last
 * one the replica holds. An active trader starts its feeds once its replicas have caught up with
 * the log: on a game the log already holds (a restart), it rejoins (takeover.ts) and resumes after
 * the last point, so the game clock never goes back, no resulted market reopens, and no result is
 * claimed twice; a new game starts after its own delay, so that matches start staggered. The clock
 * resumes past its stored ceiling before it stamps anything (clock-ceiling.ts). A game's snapshot
 * is written only from a replica that equals a prefix of the stream: nothing of this writer's own
 * left unacknowledged or unread, and never once its trader has stood down.
 */

import type { NatsConnection } from '@nats-io/transport-node'
import type { Logger } from 'pino'
import { type Backend, createHlc, type Entry, genesisOf, type Hlc } from '../../crdt/index.ts'
import { killSubject, releaseSubject, resumeSubject } from '../../protocol/subjects.ts'
import { natsFabricTransport } from '../fabric/regions.ts'
import { createReplicaSync, type ReplicaSync } from '../fabric/replica-sync.ts'
import { names } from '../fabric/streams.ts'
import { realTimers, sleep, type Timers } from '../fabric/timers.ts'
import type { AppendHedge, FabricTransport } from '../fabric/transport.ts'
import { type BeatWriter, createBeatWriter, WRITER_GAMES_MAX } from '../fabric/writer-beats.ts'
import { type ClockCeiling, restoreClockCeiling } from './clock-ceiling.ts'
import type { FeedAdapter, FeedEvent } from './feed.ts'
import { ARCHIVE_AFTER_MS_DEFAULT, createMatchArchiver, type MatchArchiver } from './match-archive.ts'
import { createManualFeed, type ManualFeed } from './replay-feed.ts'
import { createTrader, type Trader, type TraderLimits, type TraderRole } from './trader.ts'

/** How often a starting trader checks whether its replica has caught up, and logs that it waits. */
export const CATCH_UP_POLL_MS = 50
export const CATCH_UP_LOG_MS = 5_000

/** One game a trader process runs. */
export interface TraderGame {
  readonly gameId: string
  readonly feed: FeedAdapter
  /** How long after the process is ready a new match starts (a rejoined one resumes at once). */
  readonly startAfterMs?: number
}

interface ProcessOptions {
  /** The connection the trader's transport is built on, unless `transport` is given. */
  readonly nc?: NatsConnection
  /** The streams, beats and snapshot store (transport.ts); the simulator passes memory. */
  readonly transport?: FabricTransport
  /** Updates not acknowledged in time go again through a second connection (transport.ts); over `nc` only. */
  readonly appendHedge?: AppendHedge
  /** Heartbeat, snapshot and catch-up timers (timers.ts); default the real ones. */
  readonly timers?: Timers
  readonly region: string
  /** The writer: this process's node id, the same in every game it writes. */
  readonly node: string
  /** Every writer of each game (the same for all the process's games). */
  readonly writers: readonly string[]
  readonly backend: Backend
  readonly log: Logger
  readonly snapshotIntervalMs: number
  readonly limits?: Partial<TraderLimits>
  readonly hlc?: Hlc
  /** Every region of a super-cluster, this one included (see nodes/fabric/regions.ts). */
  readonly regions?: readonly string[]
  /** The clock of staleness checks; the HLC's source when `hlc` is not given. */
  readonly now?: () => number
  /** The trader's own record of what it committed, game by game (see TraderOptions.onCommit). */
  readonly onCommit?: (entries: readonly Entry[], gameId: string) => void
  /** Start as a standby in every game (see nodes/trader/takeover.ts); default active. */
  readonly role?: Exclude<TraderRole, 'fenced'>
  /**
   * How long after a match ends it is archived (match-archive.ts); 0 never archives. Default
   * ARCHIVE_AFTER_MS_DEFAULT.
   */
  readonly archiveAfterMs?: number
}

export interface TraderProcessOptions extends ProcessOptions {
  /** The games, at most TRADER_GAMES_MAX, each once. */
  readonly games: readonly TraderGame[]
}

export interface TraderNodeOptions extends ProcessOptions {
  readonly gameId: string
  readonly feed: FeedAdapter
}

/** The games one trader process runs: as many as one writer beat can carry. */
export const TRADER_GAMES_MAX = WRITER_GAMES_MAX

export interface TraderProcess {
  /** Each game's trader, by game: games archived since the process started leave. */
  readonly traders: ReadonlyMap<string, Trader>
  /** Games this process archived. */
  archived(): number
  readonly replicas: ReplicaSync
  readonly hlc: Hlc
  /** Beats published, and beats that could not be built or sent. */
  readonly beats: { sent: number; failed: number }
  close(): Promise<void>
}

/** A trader process of one game. */
export interface TraderNode {
  readonly trader: Trader
  readonly replicas: ReplicaSync
  readonly hlc: Hlc
  close(): Promise<void>
}

/** The game an operator's command names: its id, undefined for every game, null if malformed. */
function commandGame(data: Uint8Array): string | undefined | null {
  try {
    const { gameId } = JSON.parse(new TextDecoder().decode(data)) as { gameId?: unknown }
    return gameId === undefined || typeof gameId === 'string' ? gameId : null
  } catch {
    return null
  }
}

/** A trader process of one game (tests, the simulator, benchmarks). */
export async function startTraderNode(options: TraderNodeOptions): Promise<TraderNode> {
  const { gameId, feed, ...rest } = options
  const process = await startTraderProcess({ ...rest, games: [{ gameId, feed }] })
  const trader = process.traders.get(gameId)
  if (trader === undefined) {
    await process.close()
    throw new RangeError(`game ${gameId} is archived`)
  }
  return {
    trader,
    replicas: process.replicas,
    hlc: process.hlc,
    close: process.close,
  }
}

export async function startTraderProcess(options: TraderProcessOptions): Promise<TraderProcess> {
  const { region, log } = options
  checkGames(options.games)
  const timers = options.timers ?? realTimers
  const hlc = options.hlc ?? createHlc({ node: options.node, ...(options.now ? { clock: options.now } : {}) })
  const transport = await transportOf(options)
  const replicas = await createReplicaSync({
    transport,
    region,
    backend: options.backend,
    hlc,
    log,
    purgeArchived: true,
    ...(options.regions ? { regions: options.regions } : {}),
    ...(options.now ? { now: options.now } : {}),
  })
  // An archived match is over for good: a restarted process must not start it again.
  const live = await unarchived(options.games, replicas, transport, log)
  const ceiling = await restoreClockCeiling({
    store: transport.snapshots,
    gameIds: live.map((game) => game.gameId),
    hlc,
    now: options.now ?? Date.now,
    log,
    timers,
  })
  const beats = createBeatWriter(hlc.node)
  const archiver = createMatchArchiver({
    replicas,
    writer: hlc.node,
    archiveAfterMs: options.archiveAfterMs ?? ARCHIVE_AFTER_MS_DEFAULT,
    now: options.now ?? Date.now,
    log,
  })
  let games = live.map((game) =>
    createFabricTrader(
      options,
      game,
      { replicas, hlc, ceiling, beats, archiver },
      log.child({ gameId: game.gameId }),
    ),
  )
  const traders = new Map(games.map((game) => [game.gameId, game.trader]))
  // At its marker, an archived game leaves the rounds: its feed stops, and the beat withdraws it.
  const stopArchives = replicas.onArchive((gameId) => {
    const game = games.find((running) => running.gameId === gameId)
    if (game === undefined) return
    game.feed.stop()
    games = games.filter((running) => running !== game)
    traders.delete(gameId)
  })
  const stopDrops = replicas.onDrop((dropped) => {
    if (dropped.writer === hlc.node)
      traders.get(dropped.gameId)?.standDown(`an update of ours was dropped: ${dropped.reason}`)
  })
  const beatCounts = { sent: 0, failed: 0 }
  const heartbeatMs = options.limits?.heartbeatMs ?? 20
  const failures = createRoundErrors(log, options.now ?? Date.now)
  // Step every game, then promise them all with one stamp taken after every step's commits. A game
  // whose step or heartbeat throws is left out of the round (the beat withdraws it), never the others.
  const stopTicker = timers.setInterval(() => {
    for (const { gameId, trader } of games) {
      try {
        trader.step()
      } catch (error) {
        failures.report(gameId, error)
      }
    }
    const stamp = hlc.now()
    for (const game of games) {
      try {
        game.trader.heartbeat(stamp)
        archiver.consider(game)
      } catch (error) {
        failures.report(game.gameId, error)
      }
    }
    try {
      beats.flush((beat) => {
        replicas.publishBeat(beat)
        beatCounts.sent++
      })
    } catch (error) {
      beats.discard()
      beatCounts.failed++
      failures.report('(the beat)', error)
    }
  }, heartbeatMs)
  const stopSnapshots = startSnapshots(options.snapshotIntervalMs, games, replicas, timers, log)
  const stopKillSwitch = serveKillSwitch(transport, region, traders, log)
  const stopFeeds = await startFeedsWhenCaughtUp({ replicas, hlc, timers, log, games })
  log.info({ games: games.length, role: options.role ?? 'active' }, 'trader started')

  return {
    traders,
    archived: archiver.archived,
    replicas,
    hlc,
    beats: beatCounts,
    async close() {
      stopFeeds()
      for (const { feed } of games) feed.stop()
      stopTicker()
      stopSnapshots()
      stopKillSwitch()
      stopDrops()
      stopArchives()
      await Promise.all(games.map(({ trader }) => trader.flush()))
      await replicas.close()
    },
  }
}

/** A round's errors are logged at most once per this long for each game (and for the beat). */
export const ROUND_ERROR_LOG_MS = 10_000

/**
 * A round that fails for a game fails again 50 times a second: the log gets the first, and then
 * one line per ROUND_ERROR_LOG_MS with how many came since.
 */
function createRoundErrors(log: Logger, now: () => number) {
  const logged = new Map<string, { atMs: number; since: number }>()
  return {
    report(subject: string, error: unknown): void {
      const last = logged.get(subject)
      if (last !== undefined && now() - last.atMs < ROUND_ERROR_LOG_MS) {
        last.since++
        return
      }
      log.error(
        { subject, err: error, failedSinceLastLine: last?.since ?? 0 },
        'a round failed: the game (or the beat) promises nothing this round',
      )
      if (logged.size > TRADER_GAMES_MAX) logged.clear()
      logged.set(subject, { atMs: now(), since: 0 })
    },
  }
}

/** The games not archived: the snapshot bucket holds an archive of none of them. */
async function unarchived(
  games: readonly TraderGame[],
  replicas: ReplicaSync,
  transport: FabricTransport,
  log: Logger,
): Promise<TraderGame[]> {
  const archived = await Promise.all(
    games.map(
      async ({ gameId }) =>
        replicas.isArchived(gameId) || (await transport.snapshots.get(names.archiveKey(gameId))) !== null,
    ),
  )
  const live = games.filter((_, i) => !archived[i])
  if (live.length < games.length)
    log.warn(
      { archived: games.filter((_, i) => archived[i]).map((game) => game.gameId) },
      'archived games are not run',
    )
  return live
}

function checkGames(games: readonly TraderGame[]): void {
  if (games.length === 0 || games.length > TRADER_GAMES_MAX)
    throw new RangeError(`a trader process runs 1-${TRADER_GAMES_MAX} games, not ${games.length}`)
  const ids = new Set(games.map((game) => game.gameId))
  if (ids.size !== games.length) throw new RangeError('a trader process runs each game once')
}

/** A game's trader and what the process needs to know of it. */
interface FabricTrader extends TraderGame {
  readonly trader: Trader
  /** The highest stream sequence JetStream gave one of this game's updates. */
  lastAckSeq(): number
  /** Hand a feed event to the trader (and the match's end to the archiver). */
  handle(event: FeedEvent): void
}

/**
 * The trader of one game, writing to the game's replica and publishing updates through the replica
 * sync and heartbeats into the process's beat.
 */
function createFabricTrader(
  options: ProcessOptions,
  game: TraderGame,
  shared: {
    readonly replicas: ReplicaSync
    readonly hlc: Hlc
    readonly ceiling: ClockCeiling
    readonly beats: BeatWriter
    readonly archiver: MatchArchiver
  },
  log: Logger,
): FabricTrader {
  const { gameId, feed } = game
  const { replicas, hlc, ceiling, beats, archiver } = shared
  const handle = (event: FeedEvent) => {
    trader.handle(event)
    if (event.type === 'match-end') archiver.ended(gameId)
  }
  const { onCommit } = options
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
      feed.start(handle, { afterPoint })
    },
    onStandDown: () => feed.stop(),
    mayPromise: (wallMs) => ceiling.covers(wallMs),
    ...(onCommit ? { onCommit: (entries: readonly Entry[]) => onCommit(entries, gameId) } : {}),
    ...(options.now ? { now: options.now } : {}),
    publisher: {
      async publishUpdate(update, msgId, fences) {
        const seq = await replicas.publishUpdate(gameId, update, msgId, { writer: hlc.node, fences })
        lastAckSeq = Math.max(lastAckSeq, seq)
      },
      publishHeartbeat: (heartbeat) => beats.offer(gameId, heartbeat),
    },
  })
  return { ...game, trader, lastAckSeq: () => lastAckSeq, handle }
}
/**
 * Every snapshotIntervalMs, write the snapshot of each game whose replica equals a prefix of the
 * stream (see the module comment); the others keep their last one. Returns the way to stop.
 */
function startSnapshots(
  intervalMs: number,
  games: readonly FabricTrader[],
  replicas: ReplicaSync,
  timers: Timers,
  log: Logger,
): () => void {
  if (intervalMs <= 0) return () => {}
  const byGame = new Map(games.map((game) => [game.gameId, game]))
  const unsafe = (gameId: string) => {
    const game = byGame.get(gameId)
    if (game === undefined) return false // a game of another writer: this process wrote nothing to it
    const { trader } = game
    return trader.role() === 'fenced' || trader.backlog() > 0 || replicas.lastSeq() < game.lastAckSeq()
  }
  return timers.setInterval(() => {
    replicas.writeSnapshots(unsafe).catch((error) => log.warn({ err: error }, 'snapshot round failed'))
  }, intervalMs)
}

/**
 * The kill switch: `trader.<region>.kill` suspends every open market, `.resume` lifts it; and
 * `trader.<region>.release` hands one game over: its trader stands down (it writes and promises
 * nothing more), so a standby among the game's writers fences it and takes over.
 */
function serveKillSwitch(
  transport: FabricTransport,
  region: string,
  traders: ReadonlyMap<string, Trader>,
  log: Logger,
): () => void {
  const targets = (data: Uint8Array) => {
    const named = commandGame(data)
    return [...traders].filter(([gameId]) => named === undefined || named === gameId)
  }
  const stopKill = transport.subscribe(killSubject(region), (_subject, data) => {
    for (const [gameId, trader] of targets(data)) {
      log.warn({ gameId }, 'kill switch: suspending every open market')
      trader.kill('kill switch')
    }
  })
  const stopResume = transport.subscribe(resumeSubject(region), (_subject, data) => {
    for (const [, trader] of targets(data)) trader.resume()
  })
  // A release names its game (`{}` hands nothing over: a process's every game at once is a stop),
  // and only the trader running it stands down: the game's standbys hear it too, and stay.
  const stopRelease = transport.subscribe(releaseSubject(region), (_subject, data) => {
    for (const [gameId, trader] of targets(data)) {
      if (commandGame(data) === undefined || trader.role() !== 'active') continue
      log.warn({ gameId }, 'released: standing down so that a standby takes the game over')
      trader.standDown('released by an operator')
    }
  })
  return () => {
    stopKill()
    stopResume()
    stopRelease()
  }
}

/**
 * Once the replicas have caught up, start each active game's feed: a game the log holds already
 * is rejoined at once, a new one after its startAfterMs. Returns the way to cancel starts not yet due.
 */
async function startFeedsWhenCaughtUp(context: {
  readonly replicas: ReplicaSync
  readonly hlc: Hlc
  readonly timers: Timers
  readonly log: Logger
  readonly games: readonly FabricTrader[]
}): Promise<() => void> {
  const { replicas, timers, log } = context
  for (let waited = 0; !replicas.caughtUp(); waited += CATCH_UP_POLL_MS) {
    if (waited > 0 && waited % CATCH_UP_LOG_MS === 0)
      log.info({ waitedMs: waited }, 'catching up before the feeds')
    await sleep(timers, CATCH_UP_POLL_MS)
  }
  const pending = new Set<() => void>()
  for (const game of context.games) {
    // A game archived meanwhile (by a standby that took it over) is over.
    if (game.trader.role() !== 'active' || replicas.isArchived(game.gameId)) continue
    const delayMs = game.startAfterMs ?? 0
    const isNew = genesisOf(replicas.replicaFor(game.gameId).game) === null
    if (!isNew || delayMs <= 0) {
      startFeed(context, game)
      continue
    }
    const cancel = timers.setTimeout(() => {
      pending.delete(cancel)
      startFeed(context, game)
    }, delayMs)
    pending.add(cancel)
  }
  return () => {
    for (const cancel of pending) cancel()
  }
}

/** Start a new game's feed, or rejoin a game the log holds (unless another writer fenced this one). */
function startFeed(context: { readonly replicas: ReplicaSync; readonly hlc: Hlc }, game: FabricTrader): void {
  const { replicas, hlc } = context
  const { gameId, feed, trader, handle } = game
  if (trader.role() !== 'active' || replicas.isArchived(gameId)) return
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
async function transportOf(options: ProcessOptions): Promise<FabricTransport> {
  if (options.transport) return options.transport
  if (!options.nc) throw new TypeError('a trader node needs a NATS connection or a transport')
  return natsFabricTransport(options.nc, options.region, options.regions, 0, options.appendHedge, options.log)
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
