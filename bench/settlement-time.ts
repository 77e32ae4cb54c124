/**
 * The settlement part of the bet benchmark: many bets on one market, then the time from the
 * trader's result to the last of them settled in the ledger (the fold sees every settlement entry
 * applied). It includes the correction window: settlement pays a market only once the deadline for
 * feed corrections is final.
 */

import type { NatsConnection } from '@nats-io/transport-node'
import pino from 'pino'
import { joinLedger } from '../nodes/fabric/regions.ts'
import type { ManualFeed } from '../nodes/trader/replay-feed.ts'
import { marketIds } from '../nodes/trader/trader.ts'
import { placeSubject } from '../protocol/subjects.ts'

export interface SettlementRun {
  /** The point whose winner market takes the bets. */
  readonly point: number
  readonly bets: number
  readonly users: number
  readonly region: string
  readonly shards: number
  readonly stakeCents: number
}

/** Place `bets` bets on one market, then time their settlement from the trader's result. */
export async function settlementTime(
  nc: NatsConnection,
  feed: ManualFeed,
  run: SettlementRun,
): Promise<void> {
  const { point, users } = run
  const count = run.bets
  console.log(`settling ${count} bets on one market`)
  feed.emit({ type: 'point-start', point, server: 'home' })
  const marketId = marketIds(point).winner
  const window = 200
  for (let sent = 0; sent < count; sent += window) {
    await Promise.all(
      Array.from({ length: Math.min(window, count - sent) }, (_, k) => {
        const i = sent + k
        const request = {
          betId: `settle-${point}-${i}`,
          userId: `user-${i % users}`,
          gameId: 'match-1',
          marketId,
          selectionId: i % 2 ? 'home' : 'away',
          stakeCents: run.stakeCents,
          odds: 1_001,
          policy: 'any',
        }
        return nc.request(placeSubject(request.userId, run.shards), JSON.stringify(request), {
          timeout: 10_000,
        })
      }),
    )
  }
  const ledger = await joinLedger({
    nc,
    region: run.region,
    shards: run.shards,
    log: pino({ level: 'warn' }),
  })
  const prefix = `settle-${point}-`
  let settled = 0
  ledger.onEntry((_shard, _seq, result, entry) => {
    if (entry?.type === 'settlement' && entry.betId.startsWith(prefix) && result.status === 'applied')
      settled++
  })
  while (!ledger.caughtUp()) await new Promise((resolve) => setTimeout(resolve, 20))
  feed.emit({ type: 'serve', point, second: false })
  const resultAt = performance.now()
  feed.emit({ type: 'point-end', point, winner: 'home', ace: false })
  const deadline = Date.now() + 120_000
  while (settled < count && Date.now() < deadline) await new Promise((resolve) => setTimeout(resolve, 5))
  const elapsedMs = performance.now() - resultAt
  console.log(
    `settlement: ${settled} of ${count} bets on one market settled ${(elapsedMs / 1000).toFixed(2)} s after the result (goal <= 1 s)`,
  )
  await ledger.close()
}
