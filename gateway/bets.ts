/**
 * Bets through the gateway: a placement goes to the API nodes on `bets.place` with the user id from
 * the token, and every status of the bet comes back to the user's sockets in order: provisional,
 * final, settled (or refused, for a bet that never entered the book). The provisional verdict is
 * the API node's reply; the final and settled ones are events on `bets.status.<userId>`, which can
 * overtake the reply and arrive more than once (API and settlement nodes both announce finals, and
 * every settlement node announces settlements). So each bet placed here is tracked: a status is
 * passed on once, and only after the ones before it; an early one is held until then
 * (bet-ordering.ts).
 *
 * Status events are core NATS, which a server paused or cut off loses: a bet whose next status is
 * overdue is looked up, less and less often while it stays so (bet-recovery.ts). The placement in
 * flight is in bet-placement.ts, and the state these parts share in bet-relay-state.ts; this
 * module composes them.
 */

import type { NatsConnection } from '@nats-io/transport-node'
import type { Logger } from 'pino'
import { createStallDetector } from '../nodes/fabric/stall-detector.ts'
import type { Timers } from '../nodes/fabric/timers.ts'
import { statusSubject, type UserRouting } from '../protocol/subjects.ts'
import { type ApiDirectory, createApiDirectory } from './api-directory.ts'
import { parseStatus, receive } from './bet-ordering.ts'
import { placeBet } from './bet-placement.ts'
import { startRecovery } from './bet-recovery.ts'
import type { BetRelayLimits, Deliver, RelayState, SecondConnection, UserChannel } from './bet-relay-state.ts'
import type { PlaceFrame } from './protocol.ts'

export { RECOVERY_BACKOFF_MAX_MS, RECOVERY_STEADY_LOOKUPS, RECOVERY_SWEEP_MS } from './bet-recovery.ts'
export type { BetRelayLimits, Deliver } from './bet-relay-state.ts'

export interface BetRelay {
  /** Start passing the user's bet statuses to `deliver`; returns the stop function. */
  watch(userId: string, deliver: Deliver): () => void
  /** Place a bet for the user; its statuses reach every socket the user has watching. */
  place(userId: string, frame: PlaceFrame): void
  inFlight(): number
  /** Status lookups awaiting an API node's answer. */
  lookupsInFlight(): number
  /** Lookups sent, and statuses passed on because a lookup found them (they were lost). */
  stats(): RelayStats
  close(): void
}

export interface RelayStats {
  readonly lookups: number
  readonly recovered: number
  /** Placements sent to a second API node after the hedge delay, and those the second answered. */
  readonly hedged: number
  readonly hedgesAnswered: number
  /** Times the relay's server answered nothing while the second connection's answered. */
  readonly stalls: number
}

/** The relay's sense of time: tests pass their own, and move it by hand. */
export interface BetRelayClock {
  /** When a bet is due for a lookup; default `Date.now`. */
  readonly now?: () => number
  /** The recovery sweep's interval; default the real timers, which keep no process alive. */
  readonly timers?: Timers
}

/** Real timers, unref'd: a relay nobody closed must not hold its process open. */
const BACKGROUND_TIMERS: Timers = {
  setTimeout(fn, ms) {
    const timer = setTimeout(fn, ms).unref()
    return () => clearTimeout(timer)
  },
  setInterval(fn, ms) {
    const timer = setInterval(fn, ms).unref()
    return () => clearInterval(timer)
  },
}

/**
 * `route` gives the subject of a request about a user: the user's ledger shard's, and in a
 * super-cluster the home region's (protocol/subjects.ts, `userRouting`).
 */
export function createBetRelay(
  nc: NatsConnection,
  limits: BetRelayLimits,
  log: Logger,
  route: UserRouting,
  clock: BetRelayClock = {},
  directory: ApiDirectory = createApiDirectory({ hedgeAfterMsMax: limits.hedgeAfterMs, log }),
  second: SecondConnection | null = null,
): BetRelay {
  const timers = clock.timers ?? BACKGROUND_TIMERS
  const state: RelayState = {
    nc,
    second,
    stall: createStallDetector(clock.now ?? Date.now),
    limits,
    log,
    route,
    now: clock.now ?? Date.now,
    timers,
    directory,
    users: new Map(),
    stats: { lookups: 0, recovered: 0, hedged: 0, hedgesAnswered: 0, stalls: 0 },
    inFlight: 0,
    lookupsInFlight: 0,
  }
  const stopRecovery = startRecovery(state, timers)
  return {
    watch(userId, deliver) {
      const channel = channelFor(state, userId)
      channel.deliver.add(deliver)
      return () => {
        channel.deliver.delete(deliver)
        if (channel.deliver.size === 0 && state.users.get(userId) === channel) {
          channel.subscription.unsubscribe()
          state.users.delete(userId)
        }
      }
    },
    place: (userId, frame) => placeBet(state, channelFor(state, userId), userId, frame),
    inFlight: () => state.inFlight,
    lookupsInFlight: () => state.lookupsInFlight,
    stats: () => ({ ...state.stats }),
    close() {
      stopRecovery()
      for (const channel of state.users.values()) channel.subscription.unsubscribe()
      state.users.clear()
    },
  }
}

/** The user's channel, subscribed to their status subject at its first use. */
function channelFor(state: RelayState, userId: string): UserChannel {
  const existing = state.users.get(userId)
  if (existing !== undefined) return existing
  const subscription = state.nc.subscribe(statusSubject(userId), {
    callback: (error, message) => {
      if (error !== null) return state.log.warn({ err: error, userId }, 'status subscription failed')
      const event = parseStatus(message.data)
      if (event !== null) receive(state, userId, event)
    },
  })
  const channel: UserChannel = {
    deliver: new Set(),
    tracks: new Map(),
    subscription,
    open: new Set(),
    looking: false,
  }
  state.users.set(userId, channel)
  return channel
}
