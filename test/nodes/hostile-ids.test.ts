// Proves that ids a client chooses cannot reach another user's bets, on a real 3-server cluster.
// JetStream deduplicates message ids across a whole stream, and ids used to be the bare entry ids,
// so: another user's bet id on another shard was answered "accepted" with the first user's balance
// and sequence while nothing was stored; on the same shard it crashed the API node (its fold held
// another entry at the acknowledged sequence); and a bet named after a victim's settlement id took
// that settlement's place, leaving the victim's bet open for good. Now message ids and the fold's
// keys are scoped by kind and user, so each user's bet is that user's own on any shard, and derived
// ids use a character client ids cannot hold.

import type { NatsConnection } from '@nats-io/transport-node'
import t from 'tap'
import type { ApiNode } from '../../nodes/api/api-node.ts'
import { shardOf } from '../../nodes/fabric/ledger-sync.ts'
import type { SettlementNode } from '../../nodes/settlement/settlement-node.ts'
import { marketIds } from '../../nodes/trader/trader.ts'
import type { PlaceBetReply } from '../../protocol/bets.ts'
import { settlementIdOf } from '../../protocol/ids.ts'
import { DEPOSIT_BASE, PLACE_BASE, userRouting } from '../../protocol/subjects.ts'
import { startNodeStack } from '../helpers/node-stack.ts'
import { waitFor } from '../helpers/wait.ts'

const SHARDS = 4
const DEPOSIT_CENTS = 100_000

const route = userRouting(SHARDS)

/** A request of kind `base` (a placement, a deposit) on the subject of its user's shard. */
async function request(
  nc: NatsConnection,
  base: string,
  body: { readonly userId: string; readonly [field: string]: unknown },
): Promise<PlaceBetReply> {
  const reply = await nc.request(route(base, body.userId), JSON.stringify(body), { timeout: 5_000 })
  return reply.json<PlaceBetReply>()
}

t.test('colliding ids touch no other user', async (t) => {
  t.not(shardOf('alice', SHARDS), shardOf('mallory', SHARDS), 'mallory is on another shard')
  t.equal(shardOf('alice', SHARDS), shardOf('dave', SHARDS), 'dave is on the same shard')
  const { trader, apis, settlements, client } = await startNodeStack(t, {
    shards: SHARDS,
    settlementNodes: ['settle-1'],
  })
  const api = apis[0] as ApiNode
  const settlement = settlements[0] as SettlementNode
  for (const userId of ['alice', 'mallory', 'dave']) {
    const deposit = { id: `deposit-${userId}`, userId, amountCents: DEPOSIT_CENTS }
    t.match(await request(client, DEPOSIT_BASE, deposit), { ok: true, balanceCents: DEPOSIT_CENTS })
  }
  t.match(
    await request(client, DEPOSIT_BASE, { id: 'deposit-dotted', userId: 'a.b', amountCents: 100 }),
    { ok: false, error: { code: 'BAD_REQUEST' } },
    'a user id that would break the ledger subject is a bad request',
  )
  trader.feed.emit({ type: 'match-start', home: 'A', away: 'B', server: 'home' })
  trader.feed.emit({ type: 'point-start', point: 1, server: 'home' })
  const ids = marketIds(1)
  await waitFor('market open on the api node', () =>
    Boolean(api.replicas.replica('match-1')?.game.markets.get(ids.winner)?.transitions.length),
  )
  const bet = (userId: string, betId: string) => ({
    betId,
    userId,
    gameId: 'match-1',
    marketId: ids.winner,
    selectionId: 'home',
    stakeCents: 1_000,
    odds: 1_001,
    policy: 'any',
  })
  const victim = await request(client, PLACE_BASE, bet('alice', 'bet-alice-0001'))
  t.match(victim, { ok: true, verdict: { accepted: true }, balanceCents: DEPOSIT_CENTS - 1_000 })

  const copy = await request(client, PLACE_BASE, bet('mallory', 'bet-alice-0001'))
  t.match(
    copy,
    { ok: true, verdict: { accepted: true }, balanceCents: DEPOSIT_CENTS - 1_000 },
    "another shard: mallory's bet of the same id is mallory's own, with mallory's balance",
  )
  t.equal(
    (copy as { ledgerSeq: number }).ledgerSeq,
    api.ledger.foldFor('mallory').bet('mallory', 'bet-alice-0001')?.placedSeq,
    "its sequence is where mallory's shard's stream holds it",
  )
  t.equal(
    api.ledger.foldFor('mallory').bet('mallory', 'bet-alice-0001')?.userId,
    'mallory',
    'and it is stored',
  )

  const sameShard = await request(client, PLACE_BASE, bet('dave', 'bet-alice-0001'))
  t.match(
    sameShard,
    { ok: true, verdict: { accepted: true }, balanceCents: DEPOSIT_CENTS - 1_000 },
    "the same shard: dave's bet of the same id is dave's own too (the fold keys bets by user)",
  )
  t.match(api.ledger.foldFor('dave').bet('dave', 'bet-alice-0001'), { userId: 'dave', stakeCents: 1_000 })
  t.match(api.ledger.foldFor('alice').bet('alice', 'bet-alice-0001'), { userId: 'alice', status: 'open' })
  t.match(
    await request(client, PLACE_BASE, bet('mallory', settlementIdOf('bet-alice-0001'))),
    { ok: false, error: { code: 'BAD_REQUEST' } },
    'a client cannot name a bet like a settlement',
  )
  for (const squatter of ['mallory', 'dave']) {
    t.match(
      await request(client, PLACE_BASE, bet(squatter, 'settle-bet-alice-0001')),
      { ok: true, verdict: { accepted: true } },
      `${squatter}'s bet named like the old settlement id is a bet like any other`,
    )
  }
  trader.feed.emit({ type: 'serve', point: 1, second: false })
  trader.feed.emit({ type: 'point-end', point: 1, winner: 'home', ace: false })
  await waitFor(
    "alice's bet is settled and paid",
    () => api.ledger.foldFor('alice').bet('alice', 'bet-alice-0001')?.status === 'settled',
    20_000,
  )
  t.match(api.ledger.foldFor('alice').bet('alice', 'bet-alice-0001'), { outcome: 'won', userId: 'alice' })
  await waitFor(
    "mallory's copy is settled too",
    () => api.ledger.foldFor('mallory').bet('mallory', 'bet-alice-0001')?.status === 'settled',
    20_000,
  )
  t.equal(api.ledger.diverged(), null, 'no API node found its fold diverged')
  t.equal(settlement.ledger.diverged(), null, 'nor the settlement node')
})
