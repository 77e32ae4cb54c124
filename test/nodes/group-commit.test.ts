// Proves group commit on a real 3-server cluster: forty users' bets sent at once to one API node on
// one shard go in fewer ledger messages than bets, each bet gets its own verdict at its own place
// (every funded bet accepted, every unfunded one refused), a retry of a batched bet alone gets its
// original answer (same stamp, same ledger sequence), and an API node started afterwards, folding
// the same messages, holds the same balances.

import t from 'tap'
import type { ProvisionalReply } from '../../protocol/bets.ts'
import { betOn, deposit, openPoint, placeBet, startNodeStack } from '../helpers/node-stack.ts'
import { waitFor } from '../helpers/wait.ts'

const USERS = 40

t.test('bets that arrive together are appended together, each with its own verdict', async (t) => {
  const stack = await startNodeStack(t, { shards: 1 })
  const { apis, cluster } = stack
  const api = apis[0] as (typeof apis)[number]
  const users = Array.from({ length: USERS }, (_, i) => `user-${i}`)
  // Every other user can cover the stake.
  for (const [i, userId] of users.entries()) if (i % 2 === 0) await deposit(stack, userId, 5_000)
  const marketId = await openPoint(stack)
  const bet = (userId: string) => betOn(marketId, { betId: `batched-${userId}`, userId })
  const client = await cluster.connect()
  const before = api.ledger.betBatches()
  const replies = await Promise.all(users.map((userId) => placeBet(client, bet(userId), stack.shards)))
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
    await placeBet(client, bet(users[0] as string), stack.shards),
    { ok: true, stamp: first.stamp, ledgerSeq: first.ledgerSeq },
    'a retry alone gets the original answer',
  )

  const auditor = await stack.startApi('api-3')
  await waitFor('a fresh node folded everything', () => auditor.ledger.lastSeq(0) === api.ledger.lastSeq(0))
  for (const userId of users)
    t.equal(auditor.ledger.foldFor(userId).balance(userId), api.ledger.foldFor(userId).balance(userId))
})
