/**
 * A hostile client for the `colliding-ids` chaos scenario. It funds its own user, listens to the
 * status subjects to learn the bet ids of users on its own ledger shard, then, for its own user,
 * places
 * - bets under those ids: a bet id is its user's own, so each is the hostile user's own bet, booked
 *   beside the victim's on the same shard (`accepted`), and the victim's bet is untouched;
 * - bets under the settlement namespace's ids (`settle/<id>`): BAD_REQUEST;
 * - bets named like the old settlement ids (`settle-<id>`): ordinary bets of its own, which once
 *   took the victim's settlement's place in the fold and left the victim's bet open for good.
 * When stopped it asks `bets.lookup` until every victim, of any kind, has been settled as its own
 * bet (asked for under the victim's user), and so has every bet the hostile user booked under a
 * victim's id, within SETTLED_WAIT_MS. Bounded: at most HOSTILE_BETS_MAX placements, one every
 * HOSTILE_PAUSE_MS.
 */

import type { NatsConnection } from '@nats-io/transport-node'
import { shardOf } from '../../nodes/fabric/ledger-sync.ts'
import { LOOKUP_BETS_MAX, type LookupReply, type PlaceBetReply } from '../../protocol/bets.ts'
import { betKeyOf, settlementIdOf } from '../../protocol/ids.ts'
import { ALL_STATUSES_SUBJECT, depositSubject, lookupSubject, placeSubject } from '../../protocol/subjects.ts'

export const HOSTILE_USER = 'mallory'
export const HOSTILE_BETS_MAX = 200
export const HOSTILE_PAUSE_MS = 50
const HOSTILE_STAKE_CENTS = 100
/** Enough for every placement to stand, so that a collision is never hidden behind INSUFFICIENT_FUNDS. */
const HOSTILE_DEPOSIT_CENTS = HOSTILE_BETS_MAX * HOSTILE_STAKE_CENTS
const ANSWER_TIMEOUT_MS = 5_000
/** What each kind of hostile id must be answered with. */
const EXPECTED = {
  'same shard': 'accepted',
  'settlement id': 'BAD_REQUEST',
  'old settlement id': 'accepted',
} as const
export type HostileKind = keyof typeof EXPECTED
/** Refusals that say nothing about the id (a node not ready yet, or overloaded): allowed for every kind. */
const UNRELATED_REFUSALS = ['REPLICA_STALE', 'CLOCK_DRIFT', 'OVERLOADED', 'UNKNOWN_GAME']
/** Refusals an accepted kind may also meet, since it is an ordinary bet of the hostile user's. */
const ORDINARY_BET_REFUSALS = ['INSUFFICIENT_FUNDS', 'USER_STAKE_LIMIT']
/** How long victims (and the hostile user's bets under their ids) may take to be settled once the client stops. */
export const SETTLED_WAIT_MS = 20_000
const LOOKUP_EVERY_MS = 500
const VICTIMS_MAX = 1_000

export interface HostileReport {
  readonly sent: number
  /** Answers per kind of hostile id, by code (or `accepted`, `no answer`). */
  readonly answers: Readonly<Record<HostileKind, Readonly<Record<string, number>>>>
  /** Placements answered otherwise than their kind must be. */
  readonly wrong: readonly string[]
  /**
   * Bets not settled in time, as `userId/betId`: victims of any kind, and the hostile user's own
   * bets booked under a victim's id.
   */
  readonly unsettled: readonly string[]
}

export interface HostileClient {
  stop(): Promise<HostileReport>
}

interface BetName {
  readonly userId: string
  readonly betId: string
}

/** Ask `bets.lookup` until every bet is settled (each asked for under its own user); returns those that are not. */
async function waitForSettlements(
  nc: NatsConnection,
  bets: ReadonlyMap<string, BetName>,
  shards: number,
): Promise<string[]> {
  const waiting = new Map(bets)
  const deadline = Date.now() + SETTLED_WAIT_MS
  while (waiting.size > 0 && Date.now() < deadline) {
    const byUser = new Map<string, string[]>()
    for (const { userId, betId } of waiting.values())
      byUser.set(userId, [...(byUser.get(userId) ?? []), betId])
    for (const [userId, betIds] of byUser) {
      const request = JSON.stringify({ userId, betIds: betIds.slice(0, LOOKUP_BETS_MAX) })
      try {
        const answer = (
          await nc.request(lookupSubject(userId, shards), request, { timeout: ANSWER_TIMEOUT_MS })
        ).json<LookupReply>()
        if (!answer.ok) continue
        for (const status of answer.data.statuses)
          if (status.status === 'settled') waiting.delete(betKeyOf(userId, status.betId))
      } catch {
        // No API node answered this time: ask again.
      }
    }
    if (waiting.size > 0) await new Promise((resolve) => setTimeout(resolve, LOOKUP_EVERY_MS))
  }
  return [...waiting.values()].map(({ userId, betId }) => `${userId}/${betId}`)
}

/** Credit the hostile user, so that its bets are judged on their ids rather than refused for funds. */
async function fund(nc: NatsConnection, shards: number): Promise<void> {
  const request = {
    id: `hostile-deposit-${HOSTILE_USER}`,
    userId: HOSTILE_USER,
    amountCents: HOSTILE_DEPOSIT_CENTS,
  }
  const reply = await nc.request(depositSubject(HOSTILE_USER, shards), JSON.stringify(request), {
    timeout: ANSWER_TIMEOUT_MS,
  })
  const answer = reply.json<{ ok: boolean; error?: { code: string } }>()
  if (!answer.ok)
    throw new Error(`the hostile user's deposit was refused: ${answer.error?.code ?? 'no code'}`)
}

/** Whether a placement of this kind may be answered so: its own answer, or one that says nothing about the id. */
function allowedAnswer(kind: HostileKind, code: string): boolean {
  if (code === EXPECTED[kind] || UNRELATED_REFUSALS.includes(code)) return true
  return EXPECTED[kind] === 'accepted' && ORDINARY_BET_REFUSALS.includes(code)
}

/** Learn from every user's statuses the bets of other users on the hostile user's shard (at most VICTIMS_MAX). */
function watchVictims(nc: NatsConnection, shards: number) {
  const victims: BetName[] = []
  const myShard = shardOf(HOSTILE_USER, shards)
  const statuses = nc.subscribe(ALL_STATUSES_SUBJECT, {
    callback: (_error, message) => {
      const userId = message.subject.split('.')[2] ?? ''
      if (userId === HOSTILE_USER || shardOf(userId, shards) !== myShard || victims.length >= VICTIMS_MAX)
        return
      try {
        const betId = (message.json() as { betId?: unknown }).betId
        if (typeof betId === 'string') victims.push({ userId, betId })
      } catch {
        // Not a status: nothing to learn from it.
      }
    },
  })
  return { victims, stop: () => statuses.unsubscribe() }
}

export async function startHostileClient(
  nc: NatsConnection,
  options: { gameId: string; shards: number },
): Promise<HostileClient> {
  await fund(nc, options.shards)
  const { victims, stop: stopWatching } = watchVictims(nc, options.shards)
  const answers: Record<HostileKind, Record<string, number>> = {
    'same shard': {},
    'settlement id': {},
    'old settlement id': {},
  }
  const wrong: string[] = []
  let sent = 0
  let stopped = false
  const inFlight = new Set<Promise<void>>()
  /** Per bet key, every bet that must end settled: the victims, and the hostile user's bets under their ids. */
  const mustSettle = new Map<string, BetName>()
  const settleLater = (bet: BetName) => mustSettle.set(betKeyOf(bet.userId, bet.betId), bet)

  function place(betId: string, kind: HostileKind): void {
    sent++
    const request = {
      betId,
      userId: HOSTILE_USER,
      gameId: options.gameId,
      marketId: 'p1-winner',
      selectionId: 'home',
      stakeCents: HOSTILE_STAKE_CENTS,
      odds: 1_001,
      policy: 'any',
    }
    const done = nc
      .request(placeSubject(HOSTILE_USER, options.shards), JSON.stringify(request), {
        timeout: ANSWER_TIMEOUT_MS,
      })
      .then((reply) => {
        const answer = reply.json<PlaceBetReply>()
        const code = answer.ok ? 'accepted' : answer.error.code
        answers[kind][code] = (answers[kind][code] ?? 0) + 1
        if (code === 'accepted' && kind === 'same shard') settleLater({ userId: HOSTILE_USER, betId })
        if (!allowedAnswer(kind, code)) wrong.push(`${kind} id ${betId}: ${code}`)
      })
      .catch(() => {
        answers[kind]['no answer'] = (answers[kind]['no answer'] ?? 0) + 1
      })
      .finally(() => inFlight.delete(done))
    inFlight.add(done)
  }

  const timer = setInterval(() => {
    if (stopped || sent >= HOSTILE_BETS_MAX) return
    const victim = victims[sent % Math.max(1, victims.length)]
    if (victim === undefined) return
    // Whatever is sent under its id, the victim's own bet must still be settled as its own.
    settleLater(victim)
    if (sent % 3 === 0) place(victim.betId, 'same shard')
    else if (sent % 3 === 1) place(settlementIdOf(victim.betId), 'settlement id')
    else place(`settle-${victim.betId}`, 'old settlement id')
  }, HOSTILE_PAUSE_MS)

  return {
    async stop() {
      stopped = true
      clearInterval(timer)
      stopWatching()
      await Promise.all([...inFlight])
      const unsettled = await waitForSettlements(nc, mustSettle, options.shards)
      return { sent, answers, wrong, unsettled }
    },
  }
}
