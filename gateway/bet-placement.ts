/**
 * A placement in flight: the bet goes to the API nodes on `bets.place.<shard>` of the user's shard
 * (in a super-cluster, of the user's home region) with the user id from the token. The API node's reply is the provisional
 * verdict, or a refusal; no reply in time, or an append the ledger did not acknowledge, leaves the
 * bet open, as it may still stand. A refusal for reusing the id with another body names the bet
 * that stands, which stays open (bet-standing.ts).
 */

import { type PlaceBetReply, termsOf } from '../protocol/bets.ts'
import { PLACE_BASE } from '../protocol/subjects.ts'
import { offer, provisionalFields, sendAll, track } from './bet-ordering.ts'
import { RANK, type RelayState, type UserChannel } from './bet-relay-state.ts'
import { passReused } from './bet-standing.ts'
import type { BetFrame, PlaceFrame, RefusedBetFrame } from './protocol.ts'

export function placeBet(state: RelayState, channel: UserChannel, userId: string, frame: PlaceFrame): void {
  const { limits, log } = state
  const { type: _type, ref, betId, ...bet } = frame
  const answer = answersOf(state, channel, betId, ref)
  track(state, channel, betId, ref, termsOf(bet))
  if (state.inFlight >= limits.placementsInFlightMax) {
    answer.refused('BET_UNAVAILABLE', 'the gateway has too many bets in flight; place it again shortly')
    return
  }
  state.inFlight++
  const request = JSON.stringify({ betId, userId, ...bet })
  state.nc
    .request(state.route(PLACE_BASE, userId), request, {
      timeout: limits.placeTimeoutMs,
    })
    .then(
      (message) => {
        state.inFlight--
        const reply = message.json<PlaceBetReply>()
        // Unacknowledged is not refused: the append may still be stored (a stream that lost its
        // leader mid-append, say). Like a timeout, the bet is left open to its later statuses.
        if (!reply.ok && reply.error.code === 'LEDGER_UNAVAILABLE')
          return answer.mayStand(reply.error.message)
        if (!reply.ok && reply.error.code === 'BET_ID_REUSED')
          return passReused(state, channel, { betId, ref, message: reply.error.message }, reply.standing)
        if (!reply.ok) return answer.refused(reply.error.code, reply.error.message)
        answer.pass({
          type: 'bet',
          betId,
          ...provisionalFields(reply),
          atMs: Date.now(),
          ...(ref ? { ref } : {}),
        })
      },
      (error: unknown) => {
        state.inFlight--
        log.warn({ err: error, betId }, 'placement got no answer')
        answer.mayStand(`no API node answered in time for bet ${betId}`)
      },
    )
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
