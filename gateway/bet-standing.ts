/**
 * A placement that reused a bet id with another body is refused BET_ID_REUSED, and the API node
 * says which bet stands under the id (`standing`): its terms and its own answer. The refusal is of
 * this placement's body only: it reaches the client with `standing`, and the bet that stands stays
 * tracked. Its answer is a status of the bet like any other, passed in its turn and once (a
 * concurrent retry's refusal may come before the booked placement's own answer), and its final and
 * settled statuses still follow, carrying the ref of the placement here whose body stands.
 */

import { type StandingBet, termsOf } from '../protocol/bets.ts'
import { admit, provisionalFields, release, sendAll } from './bet-ordering.ts'
import { bodyKeyOf, RANK, type RelayState, type UserChannel } from './bet-relay-state.ts'
import { type BetFrame, isServerFrame, type RefusedBetFrame, type StandingBetView } from './protocol.ts'

/** The refused placement: its ref and the API node's message. */
export interface ReusedPlacement {
  readonly betId: string
  readonly ref: string | undefined
  readonly message: string
}

export function passReused(
  state: RelayState,
  channel: UserChannel,
  placement: ReusedPlacement,
  standing: StandingBet | undefined,
): void {
  const view = viewOf(standing)
  const refusal = refusalOf(placement, view)
  if (view === undefined || !isServerFrame(refusal)) {
    if (standing !== undefined)
      state.log.warn({ betId: placement.betId, standing }, 'a malformed standing bet')
    passUnnamed(channel, placement)
    return
  }
  const track = channel.tracks.get(placement.betId)
  if (track !== undefined) track.ref = track.bodies.get(bodyKeyOf(view.terms))
  // The refusal right after the standing bet's answer, before any status held behind that answer.
  const passed = admit(state, channel, placement.betId, answerOf(placement.betId, view, track?.ref))
  sendAll(channel, refusal)
  if (passed) release(state, channel, placement.betId)
}

/**
 * No standing bet named (an API node of an older version): one stands all the same. Its later
 * statuses are let through, as for a bet that may stand.
 */
function passUnnamed(channel: UserChannel, placement: ReusedPlacement): void {
  const track = channel.tracks.get(placement.betId)
  if (track !== undefined) track.stage = Math.max(track.stage, RANK.provisional)
  sendAll(channel, refusalOf(placement, undefined))
}

/** The standing bet as the client reads it, if the API node's answer has its shape (checked in full after). */
function viewOf(standing: StandingBet | undefined): StandingBetView | undefined {
  const reply = standing?.reply
  if (!isObject(standing?.terms) || !isObject(reply)) return undefined
  const terms = termsOf(standing.terms)
  if (reply.ok === true && isObject(reply.verdict)) return { terms, reply: provisionalFields(reply) }
  if (reply.ok === false && isObject(reply.error))
    return { terms, reply: { status: 'refused', code: reply.error.code, message: reply.error.message } }
  return undefined
}

const isObject = (value: unknown): value is object => typeof value === 'object' && value !== null

function refusalOf(placement: ReusedPlacement, standing: StandingBetView | undefined): RefusedBetFrame {
  return {
    type: 'bet',
    betId: placement.betId,
    status: 'refused',
    code: 'BET_ID_REUSED',
    message: placement.message,
    atMs: Date.now(),
    ...(placement.ref ? { ref: placement.ref } : {}),
    ...(standing ? { standing } : {}),
  }
}

/** The standing bet's own answer, as the `bet` frame of its placement would have carried it. */
function answerOf(betId: string, view: StandingBetView, ref: string | undefined): BetFrame {
  return { type: 'bet', betId, ...view.reply, atMs: Date.now(), ...(ref ? { ref } : {}) }
}
