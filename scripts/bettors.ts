/**
 * A crowd of simulated bettors for the local stack: each is credited through the admin service,
 * watches the games through its own read-only replica, and bets on the current point of a game it
 * picks at random at the prices it sees (sometimes just too late), so bets spread over the matches. Every reply and status is counted; the ledger is folded here
 * too, independently, to check at the end that it sums and that no balance went negative.
 */

import type { NatsConnection } from '@nats-io/transport-node'
import type { Logger } from 'pino'
import { AFTER_ALL_STAMPS, type Backend, type Hlc, ODDS_POLICIES, transitionAt } from '../crdt/index.ts'
import { createPrng } from '../nodes/fabric/prng.ts'
import { joinLedger } from '../nodes/fabric/regions.ts'
import { createReplicaSync } from '../nodes/fabric/replica-sync.ts'
import { ensureFabric, limitsWithShards } from '../nodes/fabric/streams.ts'
import { natsTransport } from '../nodes/fabric/transport.ts'
import type { PlaceBetReply } from '../protocol/bets.ts'
import { ALL_STATUSES_SUBJECT, depositSubject, placeSubject } from '../protocol/subjects.ts'

export const DEPOSIT_CENTS = 100_000
export const REQUEST_TIMEOUT_MS = 5_000
export const LATENCY_SAMPLES_MAX = 100_000
const BET_INTERVAL_MS = { min: 200, max: 1_200 }
const SHARDS = 8

export interface BettorsOptions {
  readonly nc: NatsConnection
  readonly region: string
  readonly count: number
  readonly seed: number
  readonly hlc: Hlc
  readonly backend: Backend
  readonly log: Logger
  readonly readyTimeoutMs: number
}

export interface Bettors {
  progressLine(): string
  summary(): string
  healthy(): boolean
  stop(): Promise<void>
}

function percentile(samples: readonly number[], p: number): number {
  if (samples.length === 0) return 0
  const sorted = [...samples].sort((a, b) => a - b)
  return sorted[Math.min(sorted.length - 1, Math.floor((p / 100) * sorted.length))] as number
}

async function credit(nc: NatsConnection, userId: string, deadlineMs: number): Promise<void> {
  for (;;) {
    try {
      const reply = await nc.request(
        depositSubject(userId, SHARDS),
        JSON.stringify({ id: `deposit-${userId}`, userId, amountCents: DEPOSIT_CENTS }),
        { timeout: REQUEST_TIMEOUT_MS },
      )
      if ((reply.json() as { ok?: boolean }).ok) return
    } catch {
      // The API nodes are still starting: try again until the deadline.
    }
    if (Date.now() > deadlineMs) throw new Error(`could not credit ${userId}: no API node answered`)
    await new Promise((resolve) => setTimeout(resolve, 250))
  }
}

export async function startBettors(options: BettorsOptions): Promise<Bettors> {
  const { nc, region, log } = options
  const prng = createPrng(options.seed)
  const startedMs = Date.now()
  const { snapshots } = await ensureFabric(nc, region, limitsWithShards(SHARDS))
  const replicas = await createReplicaSync({
    transport: natsTransport(nc, snapshots),
    region,
    backend: options.backend,
    hlc: options.hlc,
    log,
  })
  const ledger = await joinLedger({ nc, region, shards: SHARDS, log })
  const users = Array.from({ length: options.count }, (_, i) => `bettor-${i + 1}`)
  const deadline = Date.now() + options.readyTimeoutMs
  await Promise.all(users.map((userId) => credit(nc, userId, deadline)))

  const counts = new Map<string, number>()
  const count = (key: string) => counts.set(key, (counts.get(key) ?? 0) + 1)
  const sentAt = new Map<string, number>()
  const provisionalMs: number[] = []
  const finalMs: number[] = []
  const sample = (list: number[], value: number) => {
    if (list.length < LATENCY_SAMPLES_MAX) list.push(value)
  }
  let placed = 0
  const settledBets = new Set<string>()
  /** The latest point bet on, by game. */
  const lastPoints = new Map<string, number>()
  let stopped = false

  const statuses = nc.subscribe(ALL_STATUSES_SUBJECT, {
    callback: (_error, message) => {
      const status = message.json<{ betId: string; status: string; outcome?: string }>()
      if (status.status === 'final') {
        // API and settlement nodes both announce final verdicts: the first one counts.
        const sent = sentAt.get(status.betId)
        if (sent === undefined) return
        sentAt.delete(status.betId)
        sample(finalMs, Date.now() - sent)
        count('final')
      } else if (status.status === 'settled' && !settledBets.has(status.betId)) {
        // Every settlement node announces what it saw folded; count each bet once.
        settledBets.add(status.betId)
        count(`settled:${status.outcome}`)
      }
    },
  })

  async function placeOne(userId: string): Promise<void> {
    const gameIds = replicas.games()
    if (gameIds.length === 0) return
    const gameId = prng.pick(gameIds)
    const game = replicas.replica(gameId)?.game
    if (game === undefined) return
    const points = [...game.markets.keys()].filter((id) => id.endsWith('-winner'))
    const marketId = prng.chance(0.8) ? points.at(-1) : `${points.at(-1)?.replace('-winner', '-ace')}`
    if (marketId === undefined) return
    lastPoints.set(gameId, Number(/^p(\d+)/.exec(marketId)?.[1] ?? 0))
    const shown = transitionAt(game, marketId, AFTER_ALL_STAMPS)
    const selections = Object.keys(shown?.prices ?? {})
    if (shown === null || selections.length === 0) return
    const selectionId = prng.pick(selections)
    const betId = `${userId}-${Date.now().toString(36)}-${prng.uint32().toString(36)}`
    const request = {
      betId,
      userId,
      gameId,
      marketId,
      selectionId,
      stakeCents: prng.int(100, 500),
      odds: shown.prices[selectionId],
      policy: prng.pick(ODDS_POLICIES),
    }
    const sent = Date.now()
    sentAt.set(betId, sent)
    placed++
    try {
      const reply = (
        await nc.request(placeSubject(request.userId, SHARDS), JSON.stringify(request), {
          timeout: REQUEST_TIMEOUT_MS,
        })
      ).json<PlaceBetReply>()
      sample(provisionalMs, Date.now() - sent)
      count(
        reply.ok
          ? reply.verdict.accepted
            ? 'accepted'
            : (reply.verdict.reason ?? 'rejected')
          : `error:${reply.error.code}`,
      )
    } catch {
      count('error:TIMEOUT')
    }
  }

  const loops = users.map(async (userId) => {
    while (!stopped) {
      await new Promise((resolve) => setTimeout(resolve, prng.int(BET_INTERVAL_MS.min, BET_INTERVAL_MS.max)))
      if (!stopped) await placeOne(userId)
    }
  })

  const get = (key: string) => counts.get(key) ?? 0
  const totals = () => {
    let payouts = 0
    let balances = 0
    let sums = true
    for (let shard = 0; shard < SHARDS; shard++) {
      const fold = ledger.fold(shard)
      payouts += fold.totals().payoutsCents
      balances += fold.totals().balancesCents
      sums &&= fold.invariantHolds()
    }
    return { payouts, balances, sums }
  }

  return {
    progressLine() {
      const elapsed = Math.round((Date.now() - startedMs) / 1_000)
      const rejected = [...counts]
        .filter(
          ([k]) => !['accepted', 'final'].includes(k) && !k.startsWith('settled') && !k.startsWith('error'),
        )
        .reduce((s, [, n]) => s + n, 0)
      const settled = [...counts].filter(([k]) => k.startsWith('settled')).reduce((s, [, n]) => s + n, 0)
      return (
        `t+${elapsed}s ${lastPoints.size} games, points up to ${Math.max(0, ...lastPoints.values())} | bets ${placed}: ${get('accepted')} accepted, ${rejected} rejected | ` +
        `provisional p50 ${percentile(provisionalMs, 50)} ms p99 ${percentile(provisionalMs, 99)} ms | ` +
        `final p50 ${percentile(finalMs, 50)} ms p99 ${percentile(finalMs, 99)} ms | settled ${settled} (won ${get('settled:won')})`
      )
    },
    summary() {
      const { payouts, balances, sums } = totals()
      const lines = [...counts].sort(([a], [b]) => a.localeCompare(b)).map(([k, n]) => `  ${k}: ${n}`)
      return [
        `summary: ${placed} bets placed by ${users.length} bettors`,
        ...lines,
        `  payouts ${(payouts / 100).toFixed(2)}, balances ${(balances / 100).toFixed(2)}, ledger sums: ${sums ? 'yes' : 'NO'}`,
      ].join('\n')
    },
    healthy() {
      return totals().sums && get('error:LEDGER_UNAVAILABLE') === 0
    },
    async stop() {
      stopped = true
      await Promise.all(loops)
      statuses.unsubscribe()
      await ledger.close()
      await replicas.close()
    },
  }
}
