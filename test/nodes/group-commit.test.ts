// Proves group commit on a real 3-server cluster: forty users' bets sent at once to one API node on
// one shard go in fewer ledger messages than bets, each bet gets its own verdict at its own place
// (every funded bet accepted, every unfunded one refused), a retry of a batched bet alone gets its
// original answer (same stamp, same ledger sequence), and a second API node folding the same
// messages holds the same balances.

import t from 'tap'
import { marketIds } from '../../nodes/trader/trader.ts'
import type { ProvisionalReply } from '../../protocol/bets.ts'
import { deposit, placeBet, startNodeStack } from '../helpers/node-stack.ts'
import { waitFor } from '../helpers/wait.ts'

const USERS = 40

t.test('bets that arrive together are appended together, each with its own verdict', async (t) => {
  const stack = await startNodeStack(t, { shards: 1, apiNodes: ['api-1', 'api-2'] })
  const { trader, apis, cluster } = stack
  const [api, other] = apis as [(typeof apis)[number], (typeof apis)[number]]
  const users = Array.from({ length: USERS }, (_, i) => `user-${i}`)
  // Every other user can cover the stake.
  for (const [i, userId] of users.entries()) if (i % 2 === 0) await deposit(stack, userId, 5_000)
  trader.feed.emit({ type: 'match-start', home: 'A', away: 'B', server: 'home' })
  trader.feed.emit({ type: 'point-start', point: 1, server: 'home' })
  const marketId = marketIds(1).winner
  await waitFor('the market is open on both nodes', () =>
    apis.every((node) => node.replicas.replica('match-1')?.game.markets.get(marketId) !== undefined),
  )
  // Only api-1 serves placements here: api-2 stops taking them, and folds.
  await other.close()
  const bet = (userId: string) => ({
    betId: `batched-${userId}`,
    userId,
    gameId: 'match-1',
    marketId,
    selectionId: 'home',
    stakeCents: 1_000,
    odds: 1_001,
    policy: 'any',
  })
  const client = await cluster.connect()
  const before = api.ledger.betBatches()
  const replies = await Promise.all(users.map((userId) => placeBet(client, bet(userId))))
  const after = api.ledger.betBatches()
  const messages = after.messages - before.messages
  t.equal(after.items - before.items, USERS, 'every bet was appended')
  t.ok(messages < USERS, `${USERS} bets went in ${messages} ledger messages`)
  for (const [i, reply] of replies.entries()) {
    if (i % 2 === 0) t.match(reply, { ok: true, balanceCents: 4_000 }, `${users[i]} is accepted`)
    else t.match(reply, { ok: false, error: { code: 'INSUFFICIENT_FUNDS' } }, `${users[i]} is refused`)
  }
  const accepted = replies.filter((reply): reply is ProvisionalReply => reply.ok)
  const shared = accepted.filter((reply) =>
    accepted.some((o) => o !== reply && o.ledgerSeq === reply.ledgerSeq),
  )
  t.ok(shared.length > 0, `${shared.length} accepted bets share a ledger message with another`)
  const first = accepted[0] as ProvisionalReply
  t.match(
    await placeBet(client, bet(users[0] as string)),
    { ok: true, stamp: first.stamp, ledgerSeq: first.ledgerSeq },
    'a retry alone gets the original answer',
  )

  const auditor = await stack.startApi('api-3')
  await waitFor('a fresh node folded everything', () => auditor.ledger.lastSeq() === api.ledger.lastSeq())
  for (const userId of users)
    t.equal(auditor.ledger.foldFor(userId).balance(userId), api.ledger.foldFor(userId).balance(userId))
})
