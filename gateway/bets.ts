/**
 * Bets through the gateway: a placement goes to the API nodes on `bets.place` with the user id from
 * the token, and every status of the bet comes back to the user's sockets in order: provisional,
 * final, settled (or refused, for a bet that never entered the book). The provisional verdict is
 * the API node's reply; the final and settled ones are events on `bets.status.<userId>`, which can
 * overtake the reply and arrive more than once (API and settlement nodes both announce finals, and
 * every settlement node announces settlements). So each bet placed here is tracked: a status is
 * passed on once, and only after the ones before it; an early one is held until then.
 *
 * Status events are core NATS: a server paused or cut off loses them. A bet whose next status has
 * not come within `statusRecoverAfterMs` is looked up (`bets.lookup`): an API node answers with the
 * statuses its replica and ledger vouch for, and they pass through the same ordering as any other.
 * A bet still waiting is asked about again after twice as long each time, up to a minute.
 */

import type { NatsConnection, Subscription } from '@nats-io/transport-node'
import type { Logger } from 'pino'
import { type BetStatus, LOOKUP_BETS_MAX, type LookupReply, type PlaceBetReply } from '../protocol/bets.ts'
import { LOOKUP_SUBJECT, PLACE_SUBJECT, routedSubject, statusSubject } from '../protocol/subjects.ts'
import type { BetFrame, ErrorFrame, PlaceFrame, RefusedBetFrame } from './protocol.ts'

export interface BetRelayLimits {
  /** Placements awaiting an API node's answer, over all users; more are refused at once. */
  readonly placementsInFlightMax: number
  /** How long to wait for an API node's answer. */
  readonly placeTimeoutMs: number
  /**
   * Bets tracked per user (placed here), settled ones too, so late duplicates stay suppressed; the
   * oldest is forgotten past this.
   */
  readonly trackedBetsPerUserMax: number
  /** How long a bet waits for its next status before it is looked up. */
  readonly statusRecoverAfterMs: number
  /** Lookups awaiting an API node at once (one per user at most). */
  readonly lookupsInFlightMax: number
}

/** How often the relay looks for bets whose next status is overdue. */
export const RECOVERY_SWEEP_MS = 1_000
/** The longest wait between two lookups of one bet. */
export const RECOVERY_BACKOFF_MAX_MS = 60_000

export type Deliver = (frame: BetFrame | ErrorFrame) => void

const RANK = { provisional: 1, final: 2, settled: 3, refused: 4 } as const

interface Track {
  /** Rank of the last status passed on. */
  stage: number
  readonly ref: string | undefined
  /** Statuses that arrived before their turn, by rank. */
  readonly held: Map<number, BetFrame>
  /** When to look the bet up if nothing moves it on, and how many lookups found nothing new. */
  lookupAt: number
  lookups: number
}

interface UserChannel {
  readonly deliver: Set<Deliver>
  readonly tracks: Map<string, Track>
  readonly subscription: Subscription
  /** Tracked bets not yet settled or refused: the ones a sweep looks at. */
  readonly open: Set<string>
  looking: boolean
}

export interface BetRelay {
  /** Start passing the user's bet statuses to `deliver`; returns the stop function. */
  watch(userId: string, deliver: Deliver): () => void
  /** Place a bet for the user; its statuses reach every socket the user has watching. */
  place(userId: string, frame: PlaceFrame): void
  inFlight(): number
  /** Lookups sent, and statuses passed on because a lookup found them (they were lost). */
  stats(): RelayStats
  close(): void
}

export interface RelayStats {
  readonly lookups: number
  readonly recovered: number
}

function statusFrame(event: BetStatus, ref: string | undefined): BetFrame {
  const base = { type: 'bet' as const, betId: event.betId, atMs: Date.now(), ...(ref ? { ref } : {}) }
  if (event.status === 'settled')
    return {
      ...base,
      status: 'settled',
      outcome: event.outcome,
      payoutCents: event.payoutCents,
      balanceCents: event.balanceCents,
    }
  const { accepted, reason, odds, gameClockMs } = event.verdict
  return {
    ...base,
    status: 'final',
    stamp: event.stamp,
    accepted,
    reason,
    odds,
    gameClockMs,
    finalAtMs: event.finalAtMs,
    balanceCents: event.balanceCents,
  }
}

function parseStatus(data: Uint8Array): BetStatus | null {
  try {
    const value = JSON.parse(new TextDecoder().decode(data)) as Partial<BetStatus> & Record<string, unknown>
    if (typeof value.betId !== 'string') return null
    if (value.status === 'final' && typeof value.verdict === 'object' && value.verdict !== null)
      return value as BetStatus
    if (value.status === 'settled' && typeof value.outcome === 'string') return value as BetStatus
    return null
  } catch {
    return null
  }
}

/**
 * `homeRegion` routes a user's bets in a super-cluster: to `bets.place.<home region>`; without it,
 * to `bets.place`.
 */
export function createBetRelay(
  nc: NatsConnection,
  limits: BetRelayLimits,
  log: Logger,
  homeRegion: (userId: string) => string | null = () => null,
): BetRelay {
  const users = new Map<string, UserChannel>()
  let inFlight = 0
  let lookupsInFlight = 0
  const stats = { lookups: 0, recovered: 0 }

  function send(channel: UserChannel, frame: BetFrame | ErrorFrame): void {
    for (const deliver of channel.deliver) deliver(frame)
  }

  /** Pass `frame` on in its turn; anything held behind it follows. */
  function offer(channel: UserChannel, betId: string, frame: BetFrame): void {
    const rank = RANK[frame.status]
    const track = channel.tracks.get(betId)
    if (track === undefined) {
      // A bet placed elsewhere (another gateway, or before this user's sockets reconnected): no
      // order to keep, but each status passes once, so remember what has passed.
      send(channel, frame)
      remember(channel, betId, fresh(rank, undefined))
      return
    }
    if (rank <= track.stage) return
    if (frame.status !== 'refused' && rank !== track.stage + 1) {
      track.held.set(rank, frame)
      return
    }
    send(channel, frame)
    track.stage = rank
    for (let next = track.held.get(rank + 1); next !== undefined; next = track.held.get(track.stage + 1)) {
      track.held.delete(track.stage + 1)
      send(channel, next)
      track.stage++
    }
    // It moved on: the wait for its next status starts over.
    track.lookups = 0
    track.lookupAt = Date.now() + limits.statusRecoverAfterMs
    if (track.stage >= RANK.settled) channel.open.delete(betId)
  }

  /** A status event from the status subject or a lookup: pass it on in its turn, once. */
  function receive(userId: string, event: BetStatus, looked = false): void {
    const current = users.get(userId)
    if (current === undefined) return
    // Several nodes announce each status: drop a repeat before building its frame.
    const track = current.tracks.get(event.betId)
    if (track !== undefined && RANK[event.status] <= track.stage) return
    offer(current, event.betId, statusFrame(event, track?.ref))
    // A status a lookup passed on had not come by itself within statusRecoverAfterMs: lost.
    if (looked && track !== undefined && track.stage >= RANK[event.status]) stats.recovered++
  }

  /**
   * Look up, for each user, the bets whose next status is overdue: provisional or final passed on
   * and nothing since, or a later status held for a missing one. Settled and refused bets are done.
   */
  function sweep(): void {
    const now = Date.now()
    for (const [userId, channel] of users) {
      if (lookupsInFlight >= limits.lookupsInFlightMax) return
      if (channel.looking) continue
      const due: string[] = []
      for (const betId of channel.open) {
        const track = channel.tracks.get(betId)
        if (track === undefined) continue
        const waiting = track.stage === RANK.provisional || track.stage === RANK.final || track.held.size > 0
        if (!waiting || now < track.lookupAt) continue
        due.push(betId)
        track.lookups++
        track.lookupAt =
          now + Math.min(RECOVERY_BACKOFF_MAX_MS, limits.statusRecoverAfterMs * 2 ** track.lookups)
        if (due.length >= LOOKUP_BETS_MAX) break
      }
      if (due.length > 0) lookUp(userId, channel, due)
    }
  }

  function lookUp(userId: string, channel: UserChannel, betIds: string[]): void {
    channel.looking = true
    lookupsInFlight++
    stats.lookups++
    nc.request(routedSubject(LOOKUP_SUBJECT, homeRegion(userId)), JSON.stringify({ userId, betIds }), {
      timeout: limits.placeTimeoutMs,
    })
      .then((message) => {
        const reply = message.json<LookupReply>()
        if (!reply.ok) return log.warn({ userId, error: reply.error }, 'status lookup refused')
        for (const status of reply.data.statuses) receive(userId, status, true)
      })
      .catch((error: unknown) => log.debug({ err: error, userId }, 'status lookup got no answer'))
      .finally(() => {
        channel.looking = false
        lookupsInFlight--
      })
  }

  const sweeper = setInterval(sweep, RECOVERY_SWEEP_MS)
  sweeper.unref()

  function channelFor(userId: string): UserChannel {
    let channel = users.get(userId)
    if (channel !== undefined) return channel
    const subscription = nc.subscribe(statusSubject(userId), {
      callback: (error, message) => {
        if (error !== null) return log.warn({ err: error, userId }, 'status subscription failed')
        const event = parseStatus(message.data)
        if (event !== null) receive(userId, event)
      },
    })
    channel = { deliver: new Set(), tracks: new Map(), subscription, open: new Set(), looking: false }
    users.set(userId, channel)
    return channel
  }

  function track(channel: UserChannel, betId: string, ref: string | undefined): void {
    if (!channel.tracks.has(betId)) remember(channel, betId, fresh(0, ref))
  }

  function fresh(stage: number, ref: string | undefined): Track {
    return { stage, ref, held: new Map(), lookupAt: Date.now() + limits.statusRecoverAfterMs, lookups: 0 }
  }

  function remember(channel: UserChannel, betId: string, entry: Track): void {
    channel.tracks.set(betId, entry)
    if (entry.stage < RANK.settled) channel.open.add(betId)
    if (channel.tracks.size > limits.trackedBetsPerUserMax) {
      const oldest = channel.tracks.keys().next().value
      if (oldest !== undefined) {
        channel.tracks.delete(oldest)
        channel.open.delete(oldest)
      }
    }
  }

  return {
    watch(userId, deliver) {
      const channel = channelFor(userId)
      channel.deliver.add(deliver)
      return () => {
        channel.deliver.delete(deliver)
        if (channel.deliver.size === 0 && users.get(userId) === channel) {
          channel.subscription.unsubscribe()
          users.delete(userId)
        }
      }
    },
    place(userId, frame) {
      const channel = channelFor(userId)
      const { type: _type, ref, betId, ...bet } = frame
      // A retry of a bet this gateway already passed a status of gets its answer whatever came since.
      const retry = (channel.tracks.get(betId)?.stage ?? 0) >= RANK.provisional
      const pass = (frame: BetFrame) => (retry ? send(channel, frame) : offer(channel, betId, frame))
      const refused = (code: RefusedBetFrame['code'], message: string) =>
        pass({
          type: 'bet',
          betId,
          status: 'refused',
          code,
          message,
          atMs: Date.now(),
          ...(ref ? { ref } : {}),
        })
      /** The bet may stand: let its later statuses through, and tell the client how to find out. */
      const mayStand = (why: string) => {
        const kept = channel.tracks.get(betId)
        if (kept !== undefined) kept.stage = Math.max(kept.stage, RANK.provisional)
        send(channel, {
          type: 'error',
          code: 'BET_UNAVAILABLE',
          message: `${why}; it may still stand: place it again with the same betId to learn its status`,
          ...(ref ? { ref } : {}),
        })
      }
      track(channel, betId, ref)
      if (inFlight >= limits.placementsInFlightMax)
        return refused('BET_UNAVAILABLE', 'the gateway has too many bets in flight; place it again shortly')
      inFlight++
      const request = JSON.stringify({ betId, userId, ...bet })
      nc.request(routedSubject(PLACE_SUBJECT, homeRegion(userId)), request, {
        timeout: limits.placeTimeoutMs,
      }).then(
        (message) => {
          inFlight--
          const reply = message.json<PlaceBetReply>()
          // Unacknowledged is not refused: the append may still be stored (a stream that lost its
          // leader mid-append, say). Like a timeout, the bet is left open to its later statuses.
          if (!reply.ok && reply.error.code === 'LEDGER_UNAVAILABLE') return mayStand(reply.error.message)
          if (!reply.ok) return refused(reply.error.code, reply.error.message)
          pass({
            type: 'bet',
            betId,
            status: 'provisional',
            stamp: reply.stamp,
            accepted: reply.verdict.accepted,
            reason: reply.verdict.reason,
            odds: reply.verdict.odds,
            gameClockMs: reply.verdict.gameClockMs,
            balanceCents: reply.balanceCents,
            atMs: Date.now(),
            ...(ref ? { ref } : {}),
          })
        },
        (error: unknown) => {
          inFlight--
          log.warn({ err: error, betId }, 'placement got no answer')
          mayStand(`no API node answered in time for bet ${betId}`)
        },
      )
    },
    inFlight: () => inFlight,
    stats: () => ({ ...stats }),
    close() {
      clearInterval(sweeper)
      for (const channel of users.values()) channel.subscription.unsubscribe()
      users.clear()
    },
  }
}
