/**
 * The trader: runs one game's markets from a feed. For each point it opens "point winner" and
 * "ace" markets with prices, suspends them when the serve is struck, reprices after a fault (or
 * freezes a market whose price would jump past the sanity band), results and closes them when the
 * point ends, and voids a window on a feed correction. It keeps the game clock, heartbeats so that
 * verdicts turn final, suspends everything when the feed goes stale or the kill switch is thrown.
 *
 * Every op is committed to the local replica first (so heartbeats never promise what the replica
 * does not hold) and then published; publishing retries with the same message id until JetStream
 * acknowledges it, so a publish is never lost and never stored twice.
 *
 * Takeover: a game may have standby traders among its writers. A standby heartbeats (so finality
 * waits for it too, which is what keeps the fence sound; see crdt FenceOp) but writes nothing.
 * Any trader that has heard nothing from another writer of its game for `takeoverAfterMs` fences
 * it. A standby that fences the active trader becomes active: in the same commit it closes every
 * market left without a result and voids its bets (nobody knows what happened while no trader
 * watched, so they are refunded), then asks its feed for the match from the next point. A trader
 * that the log has fenced, or whose own update was dropped after someone else's fence, stands down
 * for good: its replica holds updates that no other replica will, so it writes, heartbeats and
 * snapshots nothing more.
 */

import type { Logger } from 'pino'
import {
  AFTER_ALL_STAMPS,
  activeWriters,
  clockAt,
  correctionDeadline,
  type Entry,
  encodeStamp,
  fenceOf,
  firstStampAt,
  type GameState,
  genesisOf,
  type Heartbeat,
  type Hlc,
  isValidEntry,
  lastStampAt,
  type MarketStatus,
  type Op,
  type Prices,
  type Replica,
  resultOf,
  type StampKey,
  specAt,
  stampOps,
  transitionAt,
  watermarkOf,
  writerOf,
} from '../../crdt/index.ts'
import type { FeedEvent, Side } from './feed.ts'
import { largestMove, twoWay } from './pricing.ts'

export interface TraderLimits {
  readonly heartbeatMs: number
  /** Markets suspend when the feed says nothing for this long while they are open. */
  readonly staleFeedMs: number
  /** A reprice moving any price by more than this fraction freezes the market instead. */
  readonly priceJumpMax: number
  readonly margin: number
  /** Unpublished updates held for retry before the trader refuses to write more. */
  readonly unpublishedMax: number
  /** Fence a writer of the game not heard from for this long (0: never take over). */
  readonly takeoverAfterMs: number
}

export const DEFAULT_TRADER_LIMITS: TraderLimits = {
  heartbeatMs: 20,
  staleFeedMs: 8_000,
  priceJumpMax: 0.5,
  margin: 0.05,
  unpublishedMax: 1_000,
  takeoverAfterMs: 0,
}

export interface UpdateFence {
  readonly target: string
  readonly stamp: StampKey
}

export interface TraderPublisher {
  /** `fences`: the writers this update fences (a takeover), with the stamps of the fences. */
  publishUpdate(update: Uint8Array, msgId: string, fences: readonly UpdateFence[]): Promise<unknown>
  publishHeartbeat(heartbeat: Heartbeat): void
}

export interface TraderOptions {
  readonly gameId: string
  readonly writers: readonly string[]
  readonly replica: Replica
  readonly hlc: Hlc
  readonly publisher: TraderPublisher
  readonly log: Logger
  readonly limits?: Partial<TraderLimits>
  readonly now?: () => number
  /** Called with every batch of entries this writer commits, in order: its own record of them. */
  readonly onCommit?: (entries: readonly Entry[]) => void
  /** `standby`: heartbeat only, until taking over from the active trader. Default `active`. */
  readonly role?: 'active' | 'standby'
  /** Whether this node's replica has caught up with the log; a trader behind it never fences. */
  readonly caughtUp?: () => boolean
  /** The writer that fenced this one by the log's account (replica-sync.ts), or null. */
  readonly fencedBy?: () => string | null
  /** A standby took over: start the feed from the point after `afterPoint`. */
  readonly onTakeover?: (afterPoint: number) => void
  /** The trader stood down (see the module comment). */
  readonly onStandDown?: (reason: string) => void
  /**
   * Whether a heartbeat stamped at this wall time keeps the writer's promise across restarts
   * (clock-ceiling.ts); a heartbeat it does not cover is skipped. Default: every one.
   */
  readonly mayPromise?: (wallMs: number) => boolean
}

export type TraderRole = 'active' | 'standby' | 'fenced'

export interface TraderStats {
  opsWritten: number
  updatesPublished: number
  publishRetries: number
  heartbeats: number
  frozen: number
  staleSuspensions: number
  fencesWritten: number
  marketsVoidedOnTakeover: number
  /** Markets left without a result by an earlier life of this trader, voided when it rejoined. */
  marketsVoidedOnRejoin: number
  /** Corrections that came after their market's correction deadline, and so void nothing. */
  lateCorrections: number
}

export interface Trader {
  readonly stats: TraderStats
  role(): TraderRole
  /** Updates committed and not yet acknowledged by JetStream. */
  backlog(): number
  /** Why the trader stood down, once it has. */
  fencedReason(): string | null
  /** Stand down for good (see the module comment). */
  standDown(reason: string): void
  handle(event: FeedEvent): void
  /** Heartbeat, check the feed for staleness, retry unpublished updates; call every heartbeatMs. */
  tick(): void
  kill(reason: string): void
  resume(): void
  /**
   * Pick up a match this writer was running before it restarted: close every market left without a
   * result and void its bets (nobody watched it while the trader was down), and return the last
   * point the replica holds, for the feed to resume after. Call once the replica has caught up.
   */
  rejoin(): number
  /** Resolves when every committed update has been acknowledged. */
  flush(): Promise<void>
}

/** A gap between a trader's own ticks longer than this share of takeoverAfterMs: it was paused. */
const SELF_PAUSE_SHARE = 0.5

const SERVER_WINS = { first: 0.64, second: 0.55 }
const ACE = { first: 0.09, second: 0.02 }

export const marketIds = (point: number) => ({ winner: `p${point}-winner`, ace: `p${point}-ace` })

function pointPrices(server: Side, second: boolean, margin: number): { winner: Prices; ace: Prices } {
  const serverWins = second ? SERVER_WINS.second : SERVER_WINS.first
  const homeWins = server === 'home' ? serverWins : 1 - serverWins
  return {
    winner: twoWay('home', 'away', homeWins, margin),
    ace: twoWay('yes', 'no', second ? ACE.second : ACE.first, margin),
  }
}

/**
 * The writer running the match: the author of the latest entry other than membership (admit,
 * retire, fence), or null before the genesis. Standbys write nothing else.
 */
export function runningWriter(game: GameState): string | null {
  let latest: Entry | null = genesisOf(game)
  for (const entry of game.entries.values()) {
    if (entry.kind === 'admit' || entry.kind === 'retire' || entry.kind === 'fence') continue
    if (latest !== null && entry.stamp <= latest.stamp) continue
    if (isValidEntry(game, entry)) latest = entry
  }
  return latest === null ? null : writerOf(latest)
}

export function createTrader(options: TraderOptions): Trader {
  const limits = { ...DEFAULT_TRADER_LIMITS, ...options.limits }
  const { replica, hlc, log, publisher } = options
  const now = options.now ?? Date.now
  const stats: TraderStats = {
    opsWritten: 0,
    updatesPublished: 0,
    publishRetries: 0,
    heartbeats: 0,
    frozen: 0,
    staleSuspensions: 0,
    fencesWritten: 0,
    marketsVoidedOnTakeover: 0,
    marketsVoidedOnRejoin: 0,
    lateCorrections: 0,
  }
  const me = hlc.node
  let role: TraderRole = options.role ?? 'active'
  let fencedReason: string | null = null
  /** Per other writer: its watermark when this trader last saw it move, and when that was. */
  const heard = new Map<string, { watermark: StampKey | null; atMs: number }>()
  let lastTickMs = now()
  const unpublished: { update: Uint8Array; msgId: string; fences: readonly UpdateFence[] }[] = []
  let publishing: Promise<void> = Promise.resolve()
  let killed = false
  let lastFeedMs = now()
  let current: { point: number; server: Side } | null = null

  function write(ops: readonly Op[]): void {
    if (ops.length === 0 || role !== 'active') return
    commit(stampOps(hlc, ops))
  }

  /** Commit and queue for publishing; false when the queue is full and nothing was committed. */
  function commit(entries: readonly Entry[]): boolean {
    if (unpublished.length >= limits.unpublishedMax) {
      log.error(
        { unpublished: unpublished.length },
        'JetStream has not acknowledged updates; refusing to write more',
      )
      return false
    }
    const update = replica.commit(entries)
    options.onCommit?.(entries)
    stats.opsWritten += entries.length
    const fences = entries.flatMap((entry) =>
      entry.kind === 'fence' ? [{ target: entry.writer, stamp: entry.stamp }] : [],
    )
    unpublished.push({ update, msgId: (entries.at(-1) as { stamp: string }).stamp, fences })
    drain()
    return true
  }

  /** Publish queued updates in order, one at a time; a failure leaves the rest for the next tick. */
  function drain(): void {
    publishing = publishing.then(async () => {
      while (unpublished.length > 0) {
        const next = unpublished[0] as (typeof unpublished)[number]
        if (role === 'fenced') return
        try {
          await publisher.publishUpdate(next.update, next.msgId, next.fences)
        } catch (error) {
          stats.publishRetries++
          log.warn({ err: error, msgId: next.msgId }, 'publish failed; will retry')
          return
        }
        unpublished.shift()
        stats.updatesPublished++
      }
    })
  }

  const openMarkets = () => {
    if (current === null) return []
    const ids = marketIds(current.point)
    return [ids.winner, ids.ace].filter((id) => statusOf(id) === 'open')
  }
  const statusOf = (marketId: string): MarketStatus | null =>
    transitionAt(replica.game, marketId, AFTER_ALL_STAMPS)?.status ?? null
  const transitionTo = (marketId: string, status: MarketStatus, reason: string): Op =>
    transition(marketId, status, transitionAt(replica.game, marketId, AFTER_ALL_STAMPS)?.prices ?? {}, reason)
  const transition = (marketId: string, status: MarketStatus, prices: Prices, reason: string): Op => ({
    kind: 'transition',
    marketId,
    status,
    prices,
    reason,
  })

  function suspendOpen(reason: string): void {
    write(openMarkets().map((id) => transitionTo(id, 'suspended', reason)))
  }

  function openPoint(point: number, server: Side): void {
    current = { point, server }
    const ids = marketIds(point)
    const prices = pointPrices(server, false, limits.margin)
    const status: MarketStatus = killed ? 'suspended' : 'open'
    const selections = (a: string, b: string) => [
      { id: a, name: a },
      { id: b, name: b },
    ]
    write([
      {
        kind: 'market',
        marketId: ids.winner,
        name: `Point ${point}: winner`,
        selections: selections('home', 'away'),
      },
      {
        kind: 'market',
        marketId: ids.ace,
        name: `Point ${point}: ace on the next serve`,
        selections: selections('yes', 'no'),
      },
      transition(ids.winner, status, prices.winner, killed ? 'kill switch' : 'point starts'),
      transition(ids.ace, status, prices.ace, killed ? 'kill switch' : 'point starts'),
    ])
  }

  /** After a fault: second-serve prices, unless a price would jump past the band (then freeze). */
  function reprice(point: number): void {
    if (current?.point !== point || killed) return
    const ids = marketIds(point)
    const prices = pointPrices(current.server, true, limits.margin)
    const ops: Op[] = []
    for (const [id, next] of [
      [ids.winner, prices.winner],
      [ids.ace, prices.ace],
    ] as const) {
      const before = transitionAt(replica.game, id, AFTER_ALL_STAMPS)
      if (before?.status !== 'suspended' || before.reason !== 'serve') continue
      if (largestMove(before.prices, next) > limits.priceJumpMax) {
        stats.frozen++
        ops.push(transition(id, 'suspended', before.prices, 'price jump: frozen'))
      } else {
        ops.push(transition(id, 'open', next, 'second serve'))
      }
    }
    write(ops)
  }

  function endPoint(point: number, winner: Side, ace: boolean): void {
    const ids = marketIds(point)
    write([
      { kind: 'result', marketId: ids.winner, winners: [winner] },
      { kind: 'result', marketId: ids.ace, winners: [ace ? 'yes' : 'no'] },
      transitionTo(ids.winner, 'closed', 'resulted'),
      transitionTo(ids.ace, 'closed', 'resulted'),
    ])
  }

  function handle(event: FeedEvent): void {
    if (role !== 'active') return
    lastFeedMs = now()
    switch (event.type) {
      case 'match-start':
        if (genesisOf(replica.game) === null) {
          write([{ kind: 'game', gameId: options.gameId, writers: [...options.writers] }])
        }
        write([{ kind: 'clock', period: 1, running: true, clockMs: 0 }])
        return
      case 'point-start':
        openPoint(event.point, event.server)
        return
      case 'serve':
        suspendOpen('serve')
        return
      case 'fault':
        reprice(event.point)
        return
      case 'point-end':
        endPoint(event.point, event.winner, event.ace)
        return
      case 'correction': {
        const ids = marketIds(event.point)
        const window = {
          from: firstStampAt(event.fromMs),
          to: lastStampAt(event.toMs),
          reason: 'feed correction',
        }
        // Written all the same, for the record; every replica ignores it past the deadline.
        const deadline = correctionDeadline(replica.game, ids.winner)
        if (deadline !== null && firstStampAt(now()) > deadline) {
          stats.lateCorrections++
          log.warn({ point: event.point }, 'feed correction after the correction deadline; it voids nothing')
        }
        write([
          { kind: 'void', marketId: ids.winner, ...window },
          { kind: 'void', marketId: ids.ace, ...window },
        ])
        return
      }
      case 'match-end': {
        suspendOpen('match ended')
        const clock = clockAt(replica.game, encodeStamp(hlc.now()))
        write([{ kind: 'clock', period: clock?.period ?? 1, running: false, clockMs: clock?.clockMs ?? 0 }])
      }
    }
  }

  /** The last point whose markets the replica holds (their ids are `p<point>-...`). */
  function lastPoint(): number {
    let last = 0
    for (const marketId of replica.game.markets.keys()) {
      const point = /^p(\d+)-/.exec(marketId)?.[1]
      if (point !== undefined) last = Math.max(last, Number(point))
    }
    return last
  }

  function standDown(reason: string): void {
    if (role === 'fenced') return
    role = 'fenced'
    fencedReason = reason
    unpublished.length = 0
    log.error({ reason }, 'standing down: this trader writes nothing more for the game')
    options.onStandDown?.(reason)
  }

  /** The writers of the game, other than this one, not heard from for takeoverAfterMs. */
  function silentWriters(): string[] {
    // A trader that was itself paused heard nothing because it listened to nothing: start over.
    if (now() - lastTickMs > limits.takeoverAfterMs * SELF_PAUSE_SHARE) heard.clear()
    lastTickMs = now()
    const silent: string[] = []
    for (const writer of activeWriters(replica.game)) {
      if (writer === me) continue
      const watermark = watermarkOf(replica.game, writer)
      const seen = heard.get(writer)
      if (seen === undefined || seen.watermark !== watermark) heard.set(writer, { watermark, atMs: now() })
      else if (now() - seen.atMs > limits.takeoverAfterMs) silent.push(writer)
    }
    return silent
  }

  /**
   * Fence the silent writers. A standby left as the only writer takes over: every market without a
   * result is closed, and its bets voided up to the takeover, in the same commit as the fences.
   */
  function fenceSilentWriters(): void {
    if (limits.takeoverAfterMs <= 0 || !(options.caughtUp?.() ?? true)) return
    if (!activeWriters(replica.game).includes(me)) return
    const silent = silentWriters()
    if (silent.length === 0) return
    // A standby takes over when no other writer is left to run the match, or when the writer it
    // fences is the one running it (with two standbys, the other standby is heard all along).
    const running = runningWriter(replica.game)
    const takingOver =
      role === 'standby' &&
      (activeWriters(replica.game).every((w) => w === me || silent.includes(w)) ||
        (running !== null && running !== me && silent.includes(running)))
    const entries = closeUnresulted(
      silent.map((writer): Op => ({ kind: 'fence', writer })),
      takingOver ? 'trader takeover' : null,
    )
    const voids = entries.filter((entry) => entry.kind === 'void').length
    log.warn({ fenced: silent, takingOver, voided: voids }, 'fencing writers not heard from')
    // A fence that was not committed took nothing over: the standby stays a standby.
    if (!commit(entries)) return
    stats.fencesWritten += silent.length
    stats.marketsVoidedOnTakeover += voids
    for (const writer of silent) heard.delete(writer)
    if (takingOver) {
      role = 'active'
      current = null
      lastFeedMs = now()
      options.onTakeover?.(lastPoint())
    }
  }

  /**
   * Stamp `first`, then (with a reason) close every market without a result and void its bets up to
   * the close: what a trader that takes over or rejoins cannot know, it refunds.
   */
  function closeUnresulted(first: readonly Op[], reason: string | null): Entry[] {
    const unresulted = reason === null ? [] : unresultedMarkets()
    // Every one is closed again, closed or not: a close by the writer this commit fences may be
    // stamped after the fence, and then it stops counting the moment the fence is applied.
    const entries = stampOps(hlc, [
      ...first,
      ...unresulted.map((id) => transitionTo(id, 'closed', reason as string)),
    ])
    if (unresulted.length === 0) return entries
    const to = entries.at(-1)?.stamp ?? encodeStamp(hlc.now())
    const voids = stampOps(
      hlc,
      unresulted.map(
        (marketId): Op => ({ kind: 'void', marketId, from: firstStampAt(0), to, reason: reason as string }),
      ),
    )
    return [...entries, ...voids]
  }

  /** Markets with no result yet, closed or not. */
  function unresultedMarkets(): string[] {
    return [...replica.game.markets.keys()].filter(
      (id) => resultOf(replica.game, id).state === 'pending' && specAt(replica.game, id, AFTER_ALL_STAMPS),
    )
  }

  return {
    stats,
    role: () => role,
    backlog: () => unpublished.length,
    fencedReason: () => fencedReason,
    standDown,
    handle,
    tick() {
      if (role === 'fenced') return
      const fence = fenceOf(replica.game, me)
      const fencer = options.fencedBy?.() ?? (fence === null ? null : writerOf(fence))
      if (fencer !== null) {
        standDown(`fenced by ${fencer}`)
        return
      }
      fenceSilentWriters()
      if (now() - lastFeedMs > limits.staleFeedMs && openMarkets().length > 0) {
        stats.staleSuspensions++
        suspendOpen('stale feed')
      }
      if (unpublished.length > 0) drain()
      if (genesisOf(replica.game) === null) return
      // A heartbeat promises that the replica holds all this writer ever published up to it: a
      // restarted writer must first have read its own earlier updates back from the log.
      if (!(options.caughtUp?.() ?? true)) return
      const stamp = hlc.now()
      if (options.mayPromise && !options.mayPromise(stamp.wall)) return
      publisher.publishHeartbeat(replica.heartbeat(encodeStamp(stamp)))
      stats.heartbeats++
    },
    kill(reason) {
      killed = true
      suspendOpen(`kill switch: ${reason}`.slice(0, 200))
    },
    resume() {
      killed = false
    },
    rejoin() {
      const entries = closeUnresulted([], 'trader restart')
      const voided = entries.filter((entry) => entry.kind === 'void').length
      if (entries.length > 0 && commit(entries)) stats.marketsVoidedOnRejoin += voided
      current = null
      lastFeedMs = now()
      const afterPoint = lastPoint()
      log.warn({ afterPoint, voided }, 'rejoined the match after a restart')
      return afterPoint
    },
    async flush() {
      drain()
      await publishing
    },
  }
}
