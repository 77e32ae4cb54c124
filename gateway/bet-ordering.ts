/**
 * A bet's statuses in order and once each. Each bet placed here is tracked: a status is passed on
 * once, and only after the ones before it; an early one is held until then. A bet placed elsewhere
 * has no order to keep, but is remembered so that each of its statuses still passes once.
 */

import type { BetStatus, PlacedTerms, ProvisionalReply } from '../protocol/bets.ts'
import {
  BODIES_PER_BET_MAX,
  bodyKeyOf,
  RANK,
  type RelayState,
  type Track,
  type UserChannel,
} from './bet-relay-state.ts'
import type { BetFrame, ErrorFrame, ProvisionalBetFrame } from './protocol.ts'

/** A frame to every socket the user has watching. */
export function sendAll(channel: UserChannel, frame: BetFrame | ErrorFrame): void {
  for (const deliver of channel.deliver) deliver(frame)
}

/** Pass `frame` on in its turn; anything held behind it follows. */
export function offer(state: RelayState, channel: UserChannel, betId: string, frame: BetFrame): void {
  if (admit(state, channel, betId, frame)) release(state, channel, betId)
}

/**
 * Pass `frame` on if it is its turn, and say so: the statuses held behind it are then due
 * (`release`). An early one is held, and one passed before is dropped.
 */
export function admit(state: RelayState, channel: UserChannel, betId: string, frame: BetFrame): boolean {
  const rank = RANK[frame.status]
  const track = channel.tracks.get(betId)
  if (track === undefined) {
    // A bet placed elsewhere (another gateway, or before this user's sockets reconnected): no
    // order to keep, but each status passes once, so remember what has passed.
    sendAll(channel, frame)
    remember(state, channel, betId, fresh(state, rank, undefined))
    return false
  }
  if (rank <= track.stage) return false
  if (frame.status !== 'refused' && rank !== track.stage + 1) {
    track.held.set(rank, frame)
    return false
  }
  sendAll(channel, frame)
  track.stage = rank
  return true
}

/** After a status passed: the ones held behind it, in order, and the wait for the next anew. */
export function release(state: RelayState, channel: UserChannel, betId: string): void {
  const track = channel.tracks.get(betId)
  if (track === undefined) return
  for (
    let next = track.held.get(track.stage + 1);
    next !== undefined;
    next = track.held.get(track.stage + 1)
  ) {
    track.held.delete(track.stage + 1)
    sendAll(channel, withRef(next, track.ref))
    track.stage++
  }
  // It moved on: the wait for its next status starts over.
  track.lookups = 0
  track.lookupAt = state.now() + state.limits.statusRecoverAfterMs
  if (track.stage >= RANK.settled) channel.open.delete(betId)
}

/** A held status carries the ref the bet's statuses carry when it passes (bet-standing.ts). */
function withRef(frame: BetFrame, ref: string | undefined): BetFrame {
  const { ref: _held, ...rest } = frame
  return (ref === undefined ? rest : { ...rest, ref }) as BetFrame
}

/** A status event from the status subject or a lookup: pass it on in its turn, once. */
export function receive(state: RelayState, userId: string, event: BetStatus, looked = false): void {
  const current = state.users.get(userId)
  if (current === undefined) return
  // Several nodes announce each status: drop a repeat before building its frame.
  const track = current.tracks.get(event.betId)
  if (track !== undefined && RANK[event.status] <= track.stage) return
  offer(state, current, event.betId, statusFrame(event, track?.ref))
  // A status a lookup passed on had not come by itself within statusRecoverAfterMs: lost.
  if (looked && track !== undefined && track.stage >= RANK[event.status]) state.stats.recovered++
}

/** Start tracking a bet placed here, unless it already is (a retry); remember the body either way. */
export function track(
  state: RelayState,
  channel: UserChannel,
  betId: string,
  ref: string | undefined,
  terms: PlacedTerms,
): void {
  const kept = channel.tracks.get(betId)
  const body = bodyKeyOf(terms)
  if (kept === undefined) remember(state, channel, betId, fresh(state, 0, ref, terms))
  else if (!kept.bodies.has(body) && kept.bodies.size < BODIES_PER_BET_MAX) kept.bodies.set(body, ref)
}

function fresh(state: RelayState, stage: number, ref: string | undefined, terms?: PlacedTerms): Track {
  return {
    stage,
    ref,
    bodies: new Map(terms === undefined ? [] : [[bodyKeyOf(terms), ref]]),
    held: new Map(),
    lookupAt: state.now() + state.limits.statusRecoverAfterMs,
    lookups: 0,
  }
}

function remember(state: RelayState, channel: UserChannel, betId: string, entry: Track): void {
  channel.tracks.set(betId, entry)
  if (entry.stage < RANK.settled) channel.open.add(betId)
  if (channel.tracks.size > state.limits.trackedBetsPerUserMax) {
    const oldest = channel.tracks.keys().next().value
    if (oldest !== undefined) {
      channel.tracks.delete(oldest)
      channel.open.delete(oldest)
    }
  }
}

/** What a provisional `bet` frame says of an API node's answer. */
export function provisionalFields(reply: ProvisionalReply) {
  const { accepted, reason, odds, gameClockMs } = reply.verdict
  return {
    status: 'provisional',
    stamp: reply.stamp,
    accepted,
    reason,
    odds,
    gameClockMs,
    balanceCents: reply.balanceCents,
  } as const satisfies Omit<ProvisionalBetFrame, 'type' | 'betId' | 'atMs' | 'ref'>
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

/** A status event off the wire, or null for anything that is not one. */
export function parseStatus(data: Uint8Array): BetStatus | null {
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
