/**
 * A placement in flight: the bet goes, with the user id from the token, to an API node serving the
 * user's shard (in a super-cluster, of the user's home region): one the gateway knows from its
 * announcements, by its own subject (api-directory.ts), or any, on the shard's queue subject
 * `bets.place.<shard>`. If no answer comes within the hedge delay, the same bet, same id, goes to
 * another known node, and the first answer is the one the user gets: the ledger stores a bet id
 * once, and a node that finds the bet already stored answers with its verdict. The reply is the
 * provisional verdict, or a refusal; no reply in time, or an append the ledger did not acknowledge,
 * leaves the bet open, as it may still stand. A refusal for reusing the id with another body names
 * the bet that stands, which stays open (bet-standing.ts).
 */

import { RequestError } from '@nats-io/transport-node'
import { type PlaceBetReply, termsOf } from '../protocol/bets.ts'
import { PLACE_BASE } from '../protocol/subjects.ts'
import type { ApiNodeRef } from './api-directory.ts'
import { offer, provisionalFields, sendAll, track } from './bet-ordering.ts'
import { RANK, type RelayState, type UserChannel } from './bet-relay-state.ts'
import { passReused } from './bet-standing.ts'
import type { BetFrame, PlaceFrame, RefusedBetFrame } from './protocol.ts'

/**
 * Refusals that are about the node, not the bet: another node may well book it. A refusal about the
 * bet (funds, limits, a reused id) would be the same anywhere.
 */
const NODE_REFUSALS: ReadonlySet<string> = new Set([
  'REPLICA_STALE',
  'CLOCK_DRIFT',
  'OVERLOADED',
  'UNKNOWN_GAME',
])

export function placeBet(state: RelayState, channel: UserChannel, userId: string, frame: PlaceFrame): void {
  const { limits, log, directory } = state
  const { type: _type, ref, betId, ...bet } = frame
  const answer = answersOf(state, channel, betId, ref)
  track(state, channel, betId, ref, termsOf(bet))
  if (state.inFlight >= limits.placementsInFlightMax) {
    answer.refused('BET_UNAVAILABLE', 'the gateway has too many bets in flight; place it again shortly')
    return
  }
  state.inFlight++
  const request = JSON.stringify({ betId, userId, ...bet })
  const queue = state.route(PLACE_BASE, userId)
  /** The nodes tried, by their own subjects; the answers still awaited. */
  const tried = new Set<string>()
  let awaited = 0
  let done = false
  let hedged = false
  let queueTried = false
  /** Why the bet may stand though no node booked it: an attempt with no answer, or unacknowledged. */
  let unsure: string | null = null
  /** A refusal that placed nothing, held while another attempt may still place the bet. */
  let held: PlaceBetReply | null = null
  const timers: (() => void)[] = []

  const finish = (passOn: () => void) => {
    if (done) return
    done = true
    state.inFlight--
    for (const cancel of timers) cancel()
    passOn()
  }
  // With every attempt answered and none booked the bet: no answer, or an append the ledger did not
  // acknowledge, leaves the bet open, as it may still stand (a stream that lost its leader
  // mid-append, say); else the refusal held; else nothing was delivered anywhere.
  const lastAnswered = () => {
    if (awaited > 0 || done) return
    const refusal = held
    if (unsure !== null) finish(() => answer.mayStand(unsure ?? ''))
    else if (refusal !== null) finish(() => pass(state, channel, answer, { betId, ref }, refusal))
    else
      finish(() =>
        answer.refused(
          'BET_UNAVAILABLE',
          'no API node serves this bet’s shard now; nothing was placed: place it again shortly',
        ),
      )
  }

  const attempt = (node: ApiNodeRef | null, hedge: boolean) => {
    awaited++
    if (node !== null) tried.add(node.direct)
    else queueTried = true
    const sentAtMs = state.now()
    // A hedge goes through the second connection, to another server: the first's may be the trouble.
    const second = hedge ? state.second : null
    if (second === null) state.stall.sentThroughFirst()
    ;(second?.nc ?? state.nc)
      .request(node?.subject ?? queue, request, { timeout: limits.placeTimeoutMs })
      .then(
        (message) => {
          awaited--
          if (second === null) state.stall.answeredThroughFirst()
          else if (!done && state.stall.answeredThroughSecond()) {
            state.stats.stalls++
            second.onStalled?.()
          }
          const reply = message.json<PlaceBetReply>()
          if (node !== null) directory.answered(node.direct, state.now() - sentAtMs)
          if (!reply.ok && reply.error.code === 'LEDGER_UNAVAILABLE') {
            unsure = reply.error.message
            return lastAnswered()
          }
          // A refusal by one node placed nothing there, but the other attempt may yet place the bet
          // (a refusal for CLOCK_DRIFT from one node while the other books it): it waits for that.
          // A reused id is the ledger's own answer, final whatever the other says.
          if (!reply.ok && reply.error.code !== 'BET_ID_REUSED') {
            held ??= reply
            // A node that cannot judge now (its replica stale, its clock off, overloaded) says
            // nothing of the bet: another node may book it, at once.
            if (node !== null && NODE_REFUSALS.has(reply.error.code) && !done) {
              directory.suspect(node.direct)
              const other = directory.pick(queue, tried)
              if (other !== null) {
                state.stats.hedged++
                attempt(other, true)
                return
              }
            }
            return lastAnswered()
          }
          if (!done && hedge) state.stats.hedgesAnswered++
          finish(() => pass(state, channel, answer, { betId, ref }, reply))
        },
        (error: unknown) => {
          awaited--
          if (error instanceof RequestError && error.isNoResponders()) {
            // Nobody got it: nothing was placed. Another node, at once.
            if (node !== null) directory.suspect(node.direct)
            if (!done && sendAnother()) return
            return lastAnswered()
          }
          if (!done) log.warn({ err: error, betId, node: node?.node }, 'placement got no answer')
          unsure = `no API node answered in time for bet ${betId}`
          lastAnswered()
        },
      )
  }
  /** The bet to another node than those tried, or to the queue group once; false with none left. */
  const sendAnother = (): boolean => {
    const other = directory.pick(queue, tried)
    if (other === null && queueTried) return false
    attempt(other, true)
    return true
  }

  const first = directory.pick(queue, tried)
  attempt(first, false)
  // Past the hedge delay, the same bet goes to another node; the first booking of either is the one.
  timers.push(
    state.timers.setTimeout(() => {
      if (done || hedged) return
      hedged = true
      if (first !== null) directory.suspect(first.direct)
      // With no other node to try, the same one again through the second connection: the first
      // connection's server, not the node, may be what holds the bet up.
      const other = directory.pick(queue, tried)
      if (other === null && state.second === null) return
      state.stats.hedged++
      attempt(other ?? first, true)
    }, directory.hedgeAfterMs()),
  )
  // However the attempts fare, the user hears within answer-within-ms: past it the bet may stand,
  // and its statuses still come.
  timers.push(
    state.timers.setTimeout(() => {
      if (done) return
      finish(() =>
        answer.mayStand(`no API node answered within ${limits.answerWithinMs} ms for bet ${betId}`),
      )
    }, limits.answerWithinMs),
  )
}

/** Pass an API node's answer on to the user's sockets. */
function pass(
  state: RelayState,
  channel: UserChannel,
  answer: ReturnType<typeof answersOf>,
  bet: { readonly betId: string; readonly ref: string | undefined },
  reply: PlaceBetReply,
): void {
  const { betId, ref } = bet
  if (!reply.ok && reply.error.code === 'BET_ID_REUSED') {
    passReused(state, channel, { betId, ref, message: reply.error.message }, reply.standing)
    return
  }
  if (!reply.ok) {
    answer.refused(reply.error.code, reply.error.message)
    return
  }
  answer.pass({
    type: 'bet',
    betId,
    ...provisionalFields(reply),
    atMs: Date.now(),
    ...(ref ? { ref } : {}),
  })
}

/** The ways a placement is answered, bound to its bet. */
function answersOf(state: RelayState, channel: UserChannel, betId: string, ref: string | undefined) {
  // A retry of a bet this gateway already passed a status of gets its answer whatever came since.
  const retry = (channel.tracks.get(betId)?.stage ?? 0) >= RANK.provisional
  const pass = (frame: BetFrame) => (retry ? sendAll(channel, frame) : offer(state, channel, betId, frame))
  return {
    pass,
    refused: (code: RefusedBetFrame['code'], message: string) =>
      pass({
        type: 'bet',
        betId,
        status: 'refused',
        code,
        message,
        atMs: Date.now(),
        ...(ref ? { ref } : {}),
      }),
    /** The bet may stand: let its later statuses through, and tell the client how to find out. */
    mayStand(why: string) {
      const kept = channel.tracks.get(betId)
      if (kept !== undefined) kept.stage = Math.max(kept.stage, RANK.provisional)
      sendAll(channel, {
        type: 'error',
        code: 'BET_UNAVAILABLE',
        message: `${why}; it may still stand: place it again with the same betId to learn its status`,
        ...(ref ? { ref } : {}),
      })
    },
  }
}
