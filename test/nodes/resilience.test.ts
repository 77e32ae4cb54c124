// Proves the fabric's promises under races and restarts on a real 3-server cluster. Two API nodes
// race bets of one user past the balance: exactly the bets the balance at their stream position
// cannot cover are refused, and both nodes' ledger folds are identical. An API node and a
// settlement node are stopped mid-stream and replaced: the new API node restores the game from
// the trader's snapshot and answers a retried placement with the original stamp; bets placed while
// no settlement node ran are all settled, once each, by the restarted one.

import { mkdtempSync, rmSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import type { NatsConnection } from '@nats-io/transport-node'
import pino from 'pino'
import t from 'tap'
import { yjsBackend } from '../../crdt/index.ts'
import { type ApiNode, startApiNode } from '../../nodes/api/api-node.ts'
import { startSettlementNode } from '../../nodes/settlement/settlement-node.ts'
import { marketIds } from '../../nodes/trader/trader.ts'
import { startManualTraderNode } from '../../nodes/trader/trader-node.ts'
import type { PlaceBetReply } from '../../protocol/bets.ts'
import { PLACE_SUBJECT } from '../../protocol/subjects.ts'
import { startNatsCluster } from '../../scripts/nats-cluster.ts'
import { waitFor } from '../helpers/wait.ts'

const log = pino({ level: process.env.TEST_LOG_LEVEL ?? 'silent' })
const REGION = 'eu'
const SHARDS = 4

async function place(
  nc: NatsConnection,
  subject: string,
  request: Record<string, unknown>,
): Promise<PlaceBetReply> {
  return (await nc.request(subject, JSON.stringify(request), { timeout: 5_000 })).json<PlaceBetReply>()
}

t.test('races and restarts', async (t) => {
  const cluster = await startNatsCluster()
  const dir = mkdtempSync(join(tmpdir(), 'resilience-'))
  const closers: (() => Promise<void>)[] = []
  t.teardown(async () => {
    for (const close of closers.reverse()) await close()
    await cluster.close()
    rmSync(dir, { recursive: true, force: true })
  })
  const trader = await startManualTraderNode({
    nc: await cluster.connect(),
    region: REGION,
    backend: yjsBackend,
    log,
    snapshotIntervalMs: 200,
  })
  const feed = trader.feed
  closers.push(() => trader.close())
  const startApi = async (node: string) =>
    startApiNode({
      nc: await cluster.connect(),
      region: REGION,
      node,
      backend: yjsBackend,
      shards: SHARDS,
      log,
    })
  const api1 = await startApi('api-1')
  const api2 = await startApi('api-2')
  closers.push(() => api2.close())
  const client = await cluster.connect()
  await api1.ledger.append({ type: 'deposit', id: 'deposit-carol', userId: 'carol', amountCents: 5_000 })

  feed.emit({ type: 'match-start', home: 'A', away: 'B', server: 'home' })
  feed.emit({ type: 'point-start', point: 1, server: 'home' })
  const ids = marketIds(1)
  const ready = (node: ApiNode) =>
    node.replicas.replica('match-1')?.game.markets.get(ids.winner)?.transitions.length === 1
  await waitFor(
    'both api nodes see the market',
    () => ready(api1) && ready(api2) && api2.ledger.foldFor('carol').balance('carol') === 5_000,
  )

  // Each node's queue subscription takes a share; 20 bets of 1,000 cents race for a 5,000 balance.
  const bet = (i: number) => ({
    betId: `bet-carol-${String(i).padStart(4, '0')}`,
    userId: 'carol',
    gameId: 'match-1',
    marketId: ids.winner,
    selectionId: 'away',
    stakeCents: 1_000,
    odds: 1_100,
    policy: 'any',
  })
  const replies = await Promise.all(
    Array.from({ length: 20 }, (_, i) => place(client, PLACE_SUBJECT, bet(i))),
  )
  const accepted = replies.filter((r) => r.ok)
  const refused = replies.filter((r) => !r.ok && r.error.code === 'INSUFFICIENT_FUNDS')
  t.equal(accepted.length, 5, 'exactly the covered stakes are accepted')
  t.equal(refused.length, 15, 'the overspending ones are refused')
  await waitFor('folds agree', () => api1.ledger.lastSeq() === api2.ledger.lastSeq())
  t.equal(
    api1.ledger.foldFor('carol').stateHash(),
    api2.ledger.foldFor('carol').stateHash(),
    'both nodes folded the same ledger',
  )
  t.equal(api1.ledger.foldFor('carol').balance('carol'), 0)

  // Stop api-1 mid-stream; its replacement restores from the trader's snapshot and the ledger.
  await waitFor('a snapshot round has run', async () => (await trader.replicas.writeSnapshots()) > 0)
  await api1.close()
  const api3 = await startApi('api-3')
  closers.push(() => api3.close())
  await waitFor(
    'the new node converged',
    () => api3.replicas.replica('match-1')?.stateHash() === trader.replicas.replica('match-1')?.stateHash(),
  )
  const original = accepted[0] as Extract<PlaceBetReply, { ok: true }>
  const retry = await place(client, PLACE_SUBJECT, bet(Number(original.betId.slice(-4))))
  t.match(
    retry,
    { ok: true, stamp: original.stamp },
    'a retried placement after the restart keeps its original stamp',
  )

  // No settlement node runs while the point ends; one starts, stops mid-stream, and is restarted.
  feed.emit({ type: 'serve', point: 1, second: false })
  feed.emit({ type: 'point-end', point: 1, winner: 'away', ace: false })
  const startSettlement = async () =>
    startSettlementNode({
      nc: await cluster.connect(),
      region: REGION,
      node: 'settle-1',
      backend: yjsBackend,
      shards: SHARDS,
      databasePath: join(dir, 'settle-1.db'),
      log,
    })
  await (await startSettlement()).close()
  const second = await startSettlement()
  closers.push(() => second.close())
  await waitFor(
    'every accepted bet settled',
    () =>
      accepted.every(
        (r) =>
          api3.ledger.foldFor('carol').bet('carol', (r as { betId: string }).betId)?.status === 'settled',
      ),
    20_000,
  )
  // Policy 'any': each bet stands at the price offered at its stamp, not the 1.100 the bettor sent.
  const offered =
    api3.replicas.replica('match-1')?.game.markets.get(ids.winner)?.transitions[0]?.prices.away ?? 0
  t.equal(
    api3.ledger.foldFor('carol').totals().payoutsCents,
    5 * offered,
    'five winners paid at the offered odds, once each',
  )
  t.ok(api3.ledger.foldFor('carol').invariantHolds(), 'the ledger sums')
})
