/**
 * What the bet relay's parts share (gateway/bets.ts composes them): the bets tracked per user, the
 * counts of requests in flight, and the relay's dependencies, in one object handed to placement,
 * ordering and recovery alike.
 */

import type { NatsConnection, Subscription } from '@nats-io/transport-node'
import type { Logger } from 'pino'
import type { StallDetector } from '../nodes/fabric/stall-detector.ts'
import type { Timers } from '../nodes/fabric/timers.ts'
import { BET_TERM_KEYS, type PlacedTerms } from '../protocol/bets.ts'
import type { UserRouting } from '../protocol/subjects.ts'
import type { ApiDirectory } from './api-directory.ts'
import type { BetFrame, ErrorFrame } from './protocol.ts'

export interface BetRelayLimits {
  /** Placements awaiting an API node's answer, over all users; more are refused at once. */
  readonly placementsInFlightMax: number
  /** How long to wait for an API node's answer. */
  readonly placeTimeoutMs: number
  /** The most a placement waits for one API node before it is hedged (api-directory.ts). */
  readonly hedgeAfterMs: number
  /** The longest a placement waits for its first answer before the client hears BET_UNAVAILABLE. */
  readonly answerWithinMs: number
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

export type Deliver = (frame: BetFrame | ErrorFrame) => void

/**
 * A bet's statuses in their order. Refused ranks last: it ends the bet whatever came before, and
 * is never held for another.
 */
export const RANK = { provisional: 1, final: 2, settled: 3, refused: 4 } as const

/**
 * Bodies of one bet id whose placements here are remembered, with their refs: a client retrying
 * with a changed body is a bug or an attack, and a few bodies are enough to tell which one stands.
 */
export const BODIES_PER_BET_MAX = 8

/** A placement's body, as a key: its terms in their order. */
export const bodyKeyOf = (terms: PlacedTerms) => JSON.stringify(BET_TERM_KEYS.map((key) => terms[key]))

export interface Track {
  /** Rank of the last status passed on. */
  stage: number
  /**
   * The ref the bet's statuses carry: its first placement's here; once a reused id was answered,
   * that of the placement here whose body stands (none if it was placed elsewhere).
   */
  ref: string | undefined
  /** Bodies placed here under this id (bodyKeyOf), each with its first placement's ref. */
  readonly bodies: Map<string, string | undefined>
  /** Statuses that arrived before their turn, by rank. */
  readonly held: Map<number, BetFrame>
  /** When to look the bet up if nothing moves it on, and how many lookups found nothing new. */
  lookupAt: number
  lookups: number
}

export interface UserChannel {
  readonly deliver: Set<Deliver>
  readonly tracks: Map<string, Track>
  readonly subscription: Subscription
  /** Tracked bets not yet settled or refused: the ones a sweep looks at. */
  readonly open: Set<string>
  looking: boolean
}

/**
 * A second connection, to another server than the relay's own (the node's append hedge,
 * nodes/fabric/transport.ts): a placement hedged to another API node goes through it, so that a
 * gateway whose server is cut off or paused still gets its bets answered, and moves off that server
 * once it has answered nothing for STALL_SILENT_MS while the second answers (stall-detector.ts).
 */
export interface SecondConnection {
  readonly nc: NatsConnection
  readonly onStalled?: () => void
}

export interface RelayState {
  readonly nc: NatsConnection
  /** Hedged placements go through it; null: through `nc` too. */
  readonly second: SecondConnection | null
  /** Whether `nc`'s server answers placements (stall-detector.ts). */
  readonly stall: StallDetector
  readonly limits: BetRelayLimits
  readonly log: Logger
  /** The subject of a request about a user (protocol/subjects.ts). */
  readonly route: UserRouting
  /** The clock lookups are scheduled by. Frames carry `Date.now()`: a client reads a wall time. */
  readonly now: () => number
  /** Hedge delays and the recovery sweep run on these. */
  readonly timers: Timers
  /** The API nodes known from their announcements, and the hedge delay (api-directory.ts). */
  readonly directory: ApiDirectory
  /** The users with a socket watching, or with a placement made through this relay. */
  readonly users: Map<string, UserChannel>
  readonly stats: {
    lookups: number
    recovered: number
    hedged: number
    hedgesAnswered: number
    /** Times `nc`'s server was found answering nothing while the second connection's answered. */
    stalls: number
  }
  /** Placements awaiting an API node's answer. */
  inFlight: number
  lookupsInFlight: number
}
