/**
 * Status events are core NATS: a server paused or cut off loses them. A bet whose next status has
 * not come within `statusRecoverAfterMs` is looked up (`bets.lookup`): an API node answers with the
 * statuses its replica and ledger vouch for, and they pass through the same ordering as any other.
 * A bet waiting for its final (due seconds after placement) is asked about again every
 * `statusRecoverAfterMs`, RECOVERY_STEADY_LOOKUPS times, before the waits grow: once a fault heals,
 * its final reaches the client within one such wait, not after a wait that doubled while nothing
 * could answer. A bet waiting for its settlement (which comes when its market settles, maybe much
 * later) is asked about again after twice as long each time. Waits are at most a minute.
 */

import type { Timers } from '../nodes/fabric/timers.ts'
import { LOOKUP_BETS_MAX, type LookupReply } from '../protocol/bets.ts'
import { LOOKUP_BASE } from '../protocol/subjects.ts'
import { receive } from './bet-ordering.ts'
import { RANK, type RelayState, type Track, type UserChannel } from './bet-relay-state.ts'

/** How often the relay looks for bets whose next status is overdue. */
export const RECOVERY_SWEEP_MS = 1_000
/** The longest wait between two lookups of one bet. */
export const RECOVERY_BACKOFF_MAX_MS = 60_000
/** Lookups of a bet waiting for its final that come `statusRecoverAfterMs` apart (a minute's worth at 5 s). */
export const RECOVERY_STEADY_LOOKUPS = 12

/** Sweep every `RECOVERY_SWEEP_MS`; returns the stop function. */
export function startRecovery(state: RelayState, timers: Timers): () => void {
  return timers.setInterval(() => sweep(state), RECOVERY_SWEEP_MS)
}

/**
 * Look up, for each user, the bets whose next status is overdue: provisional or final passed on
 * and nothing since, or a later status held for a missing one. Settled and refused bets are done.
 */
function sweep(state: RelayState): void {
  const now = state.now()
  for (const [userId, channel] of state.users) {
    if (state.lookupsInFlight >= state.limits.lookupsInFlightMax) return
    if (channel.looking) continue
    const due: string[] = []
    for (const betId of channel.open) {
      const track = channel.tracks.get(betId)
      if (track === undefined || !overdue(track, now)) continue
      due.push(betId)
      track.lookups++
      track.lookupAt = now + backoffMs(state.limits.statusRecoverAfterMs, track)
      if (due.length >= LOOKUP_BETS_MAX) break
    }
    if (due.length > 0) lookUp(state, userId, channel, due)
  }
}

function overdue(track: Track, now: number): boolean {
  const waiting = track.stage === RANK.provisional || track.stage === RANK.final || track.held.size > 0
  return waiting && now >= track.lookupAt
}

/**
 * The wait after a bet's `lookups`-th lookup in a row: while it waits for its final, the same
 * until RECOVERY_STEADY_LOOKUPS, then twice the one before; at most a minute.
 */
function backoffMs(statusRecoverAfterMs: number, track: Pick<Track, 'stage' | 'lookups'>): number {
  const doublings =
    track.stage < RANK.final ? Math.max(0, track.lookups - RECOVERY_STEADY_LOOKUPS) : track.lookups
  return Math.min(RECOVERY_BACKOFF_MAX_MS, statusRecoverAfterMs * 2 ** doublings)
}

function lookUp(state: RelayState, userId: string, channel: UserChannel, betIds: string[]): void {
  const { nc, limits, log } = state
  channel.looking = true
  state.lookupsInFlight++
  state.stats.lookups++
  nc.request(state.route(LOOKUP_BASE, userId), JSON.stringify({ userId, betIds }), {
    timeout: limits.placeTimeoutMs,
  })
    .then((message) => {
      const reply = message.json<LookupReply>()
      if (!reply.ok) return log.warn({ userId, error: reply.error }, 'status lookup refused')
      for (const status of reply.data.statuses) receive(state, userId, status, true)
    })
    .catch((error: unknown) => log.debug({ err: error, userId }, 'status lookup got no answer'))
    .finally(() => {
      channel.looking = false
      state.lookupsInFlight--
    })
}
