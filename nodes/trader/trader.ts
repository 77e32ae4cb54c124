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
 */

import type { Logger } from 'pino'
import {
  AFTER_ALL_STAMPS,
  clockAt,
  type Entry,
  encodeStamp,
  firstStampAt,
  genesisOf,
  type Heartbeat,
  type Hlc,
  lastStampAt,
  type MarketStatus,
  type Op,
  type Prices,
  type Replica,
  stampOps,
  transitionAt,
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
}

export const DEFAULT_TRADER_LIMITS: TraderLimits = {
  heartbeatMs: 20,
  staleFeedMs: 8_000,
  priceJumpMax: 0.5,
  margin: 0.05,
  unpublishedMax: 1_000,
}

export interface TraderPublisher {
  publishUpdate(update: Uint8Array, msgId: string): Promise<unknown>
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
}

export interface TraderStats {
  opsWritten: number
  updatesPublished: number
  publishRetries: number
  heartbeats: number
  frozen: number
  staleSuspensions: number
}

export interface Trader {
  readonly stats: TraderStats
  handle(event: FeedEvent): void
  /** Heartbeat, check the feed for staleness, retry unpublished updates; call every heartbeatMs. */
  tick(): void
  kill(reason: string): void
  resume(): void
  /** Resolves when every committed update has been acknowledged. */
  flush(): Promise<void>
}

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
  }
  const unpublished: { update: Uint8Array; msgId: string }[] = []
  let publishing: Promise<void> = Promise.resolve()
  let killed = false
  let lastFeedMs = now()
  let current: { point: number; server: Side } | null = null

  function write(ops: readonly Op[]): void {
    if (ops.length === 0) return
    if (unpublished.length >= limits.unpublishedMax) {
      log.error(
        { unpublished: unpublished.length },
        'JetStream has not acknowledged updates; refusing to write more',
      )
      return
    }
    const entries = stampOps(hlc, ops)
    const update = replica.commit(entries)
    options.onCommit?.(entries)
    stats.opsWritten += entries.length
    unpublished.push({ update, msgId: (entries.at(-1) as { stamp: string }).stamp })
    drain()
  }

  /** Publish queued updates in order, one at a time; a failure leaves the rest for the next tick. */
  function drain(): void {
    publishing = publishing.then(async () => {
      while (unpublished.length > 0) {
        const next = unpublished[0] as { update: Uint8Array; msgId: string }
        try {
          await publisher.publishUpdate(next.update, next.msgId)
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
  const transition = (marketId: string, status: MarketStatus, prices: Prices, reason: string): Op => ({
    kind: 'transition',
    marketId,
    status,
    prices,
    reason,
  })

  function suspendOpen(reason: string): void {
    write(
      openMarkets().map((id) =>
        transition(id, 'suspended', transitionAt(replica.game, id, AFTER_ALL_STAMPS)?.prices ?? {}, reason),
      ),
    )
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
    const closed = (id: string) =>
      transition(id, 'closed', transitionAt(replica.game, id, AFTER_ALL_STAMPS)?.prices ?? {}, 'resulted')
    write([
      { kind: 'result', marketId: ids.winner, winners: [winner] },
      { kind: 'result', marketId: ids.ace, winners: [ace ? 'yes' : 'no'] },
      closed(ids.winner),
      closed(ids.ace),
    ])
  }

  function handle(event: FeedEvent): void {
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

  return {
    stats,
    handle,
    tick() {
      if (now() - lastFeedMs > limits.staleFeedMs && openMarkets().length > 0) {
        stats.staleSuspensions++
        suspendOpen('stale feed')
      }
      if (unpublished.length > 0) drain()
      if (genesisOf(replica.game) === null) return
      publisher.publishHeartbeat(replica.heartbeat(encodeStamp(hlc.now())))
      stats.heartbeats++
    },
    kill(reason) {
      killed = true
      suspendOpen(`kill switch: ${reason}`.slice(0, 200))
    },
    resume() {
      killed = false
    },
    async flush() {
      drain()
      await publishing
    },
  }
}
