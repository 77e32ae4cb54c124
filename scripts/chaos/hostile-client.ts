/**
 * A hostile client for the `colliding-ids` chaos scenario. It listens to the status subjects to
 * learn the bet ids of users on its own ledger shard, then, for its own user, places
 * - bets under those ids: the fold holds the victim's bet under that id, so a coded refusal
 *   (BET_ID_REUSED) and nothing stored;
 * - bets under the settlement namespace's ids (`settle/<id>`): BAD_REQUEST;
 * - bets named like the old settlement ids (`settle-<id>`): ordinary bets of its own, which once
 *   took the victim's settlement's place in the fold and left the victim's bet open for good.
 * When stopped it asks `bets.lookup` until every victim it squatted has been settled, within
 * SETTLED_WAIT_MS. Bounded: at most HOSTILE_BETS_MAX placements, one every HOSTILE_PAUSE_MS.
 */

import type { NatsConnection } from '@nats-io/transport-node'
import { shardOf } from '../../nodes/fabric/ledger-sync.ts'
import { LOOKUP_BETS_MAX, type LookupReply, type PlaceBetReply } from '../../protocol/bets.ts'
import { settlementIdOf } from '../../protocol/ids.ts'
import { ALL_STATUSES_SUBJECT, LOOKUP_SUBJECT, PLACE_SUBJECT } from '../../protocol/subjects.ts'

export const HOSTILE_USER = 'mallory'
export const HOSTILE_BETS_MAX = 200
export const HOSTILE_PAUSE_MS = 50
const ANSWER_TIMEOUT_MS = 5_000
/** What each kind of hostile id must be answered with. */
const EXPECTED = {
  'same shard': 'BET_ID_REUSED',
  'settlement id': 'BAD_REQUEST',
  'old settlement id': 'accepted',
} as const
/** How long the victims of squatted settlement ids may take to be settled once the client stops. */
export const SETTLED_WAIT_MS = 20_000
const LOOKUP_EVERY_MS = 500

export interface HostileReport {
  readonly sent: number
  /** Answers by code (or `accepted`, `no answer`). */
  readonly answers: Readonly<Record<string, number>>
  /** Placements answered otherwise than their kind must be. */
  readonly wrong: readonly string[]
  /** Victims of a squatted old-style settlement id that were not settled in time. */
  readonly unsettled: readonly string[]
}

export interface HostileClient {
  stop(): Promise<HostileReport>
}

/** Ask `bets.lookup` until every squatted victim's bet is settled; returns those that are not. */
async function waitForSettlements(
  nc: NatsConnection,
  squatted: ReadonlyMap<string, string>,
): Promise<string[]> {
  const waiting = new Map(squatted)
  const deadline = Date.now() + SETTLED_WAIT_MS
  while (waiting.size > 0 && Date.now() < deadline) {
    const byUser = new Map<string, string[]>()
    for (const [betId, userId] of waiting) byUser.set(userId, [...(byUser.get(userId) ?? []), betId])
    for (const [userId, betIds] of byUser) {
      const request = JSON.stringify({ userId, betIds: betIds.slice(0, LOOKUP_BETS_MAX) })
      try {
        const answer = (
          await nc.request(LOOKUP_SUBJECT, request, { timeout: ANSWER_TIMEOUT_MS })
        ).json<LookupReply>()
        if (!answer.ok) continue
        for (const status of answer.data.statuses)
          if (status.status === 'settled') waiting.delete(status.betId)
      } catch {
        // No API node answered this time: ask again.
      }
    }
    if (waiting.size > 0) await new Promise((resolve) => setTimeout(resolve, LOOKUP_EVERY_MS))
  }
  return [...waiting].map(([betId, userId]) => `${userId}/${betId}`)
}

export function startHostileClient(
  nc: NatsConnection,
  options: { gameId: string; shards: number },
): HostileClient {
  const victims: { userId: string; betId: string }[] = []
  const myShard = shardOf(HOSTILE_USER, options.shards)
  const statuses = nc.subscribe(ALL_STATUSES_SUBJECT, {
    callback: (_error, message) => {
      const userId = message.subject.split('.')[2] ?? ''
      if (userId === HOSTILE_USER || shardOf(userId, options.shards) !== myShard || victims.length >= 1_000)
        return
      try {
        const betId = (message.json() as { betId?: unknown }).betId
        if (typeof betId === 'string') victims.push({ userId, betId })
      } catch {
        // Not a status: nothing to learn from it.
      }
    },
  })
  const answers: Record<string, number> = {}
  const wrong: string[] = []
  let sent = 0
  let stopped = false
  const inFlight = new Set<Promise<void>>()
  /** Victims whose bet id this client used in an old-style settlement id: bet id -> user. */
  const squatted = new Map<string, string>()

  function place(betId: string, kind: keyof typeof EXPECTED): void {
    sent++
    const request = {
      betId,
      userId: HOSTILE_USER,
      gameId: options.gameId,
      marketId: 'p1-winner',
      selectionId: 'home',
      stakeCents: 100,
      odds: 1_001,
      policy: 'any',
    }
    const done = nc
      .request(PLACE_SUBJECT, JSON.stringify(request), { timeout: ANSWER_TIMEOUT_MS })
      .then((reply) => {
        const answer = reply.json<PlaceBetReply>()
        const code = answer.ok ? 'accepted' : answer.error.code
        answers[code] = (answers[code] ?? 0) + 1
        // Refusals that say nothing about the id (a node not ready yet) are allowed; a wrong code is not.
        const allowed: string[] = [
          EXPECTED[kind],
          'REPLICA_STALE',
          'CLOCK_DRIFT',
          'OVERLOADED',
          'UNKNOWN_GAME',
        ]
        if (kind === 'old settlement id') allowed.push('INSUFFICIENT_FUNDS', 'USER_STAKE_LIMIT')
        if (!allowed.includes(code)) wrong.push(`${kind} id ${betId}: ${code}`)
      })
      .catch(() => {
        answers['no answer'] = (answers['no answer'] ?? 0) + 1
      })
      .finally(() => inFlight.delete(done))
    inFlight.add(done)
  }

  const timer = setInterval(() => {
    if (stopped || sent >= HOSTILE_BETS_MAX) return
    const victim = victims[sent % Math.max(1, victims.length)]
    if (victim === undefined) return
    if (sent % 3 === 0) place(victim.betId, 'same shard')
    else if (sent % 3 === 1) place(settlementIdOf(victim.betId), 'settlement id')
    else {
      squatted.set(victim.betId, victim.userId)
      place(`settle-${victim.betId}`, 'old settlement id')
    }
  }, HOSTILE_PAUSE_MS)

  return {
    async stop() {
      stopped = true
      clearInterval(timer)
      statuses.unsubscribe()
      await Promise.all([...inFlight])
      const unsettled = await waitForSettlements(nc, squatted)
      return { sent, answers, wrong, unsettled }
    },
  }
}
