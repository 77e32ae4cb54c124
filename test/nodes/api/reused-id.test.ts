// Proves that a placement reusing a bet id with other terms learns which bet stands, on a real
// 3-server cluster. A client whose concurrent retry changed the body once saw `provisional` and then
// `refused: BET_ID_REUSED`, and could not tell which body was booked. Now the refusal carries the
// standing bet's terms and its own answer (same stamp, same ledger sequence), whether the retry came
// after the first placement or raced it through another API node.

import t from 'tap'
import type { PlaceBetReply, ProvisionalReply } from '../../../protocol/bets.ts'
import { betOn, deposit, openPoint, placeBet, startNodeStack } from '../../helpers/node-stack.ts'

t.test('a reused bet id is answered with the bet that stands', async (t) => {
  const stack = await startNodeStack(t, { apiNodes: ['api-1', 'api-2'] })
  const { apis, cluster } = stack
  await deposit(stack, 'alice', 100_000)
  const marketId = await openPoint(stack)
  const bet = (betId: string, stakeCents: number) => betOn(marketId, { betId, userId: 'alice', stakeCents })
  const [one, two] = [await cluster.connect(), await cluster.connect()]

  const first = (await placeBet(one, bet('reused-0001', 1_000))) as ProvisionalReply
  t.match(first, { ok: true, status: 'provisional' })
  const retry = await placeBet(two, bet('reused-0001', 2_000))
  t.match(
    retry,
    {
      ok: false,
      error: { code: 'BET_ID_REUSED' },
      standing: {
        terms: { stakeCents: 1_000, marketId, selectionId: 'home', odds: 1_001, policy: 'any' },
        reply: { ok: true, stamp: first.stamp, ledgerSeq: first.ledgerSeq },
      },
    },
    'a later retry with another stake learns the booked stake and its answer',
  )

  const raced: PlaceBetReply[] = await Promise.all([
    placeBet(one, bet('reused-0002', 1_000)),
    placeBet(two, bet('reused-0002', 3_000)),
  ])
  const booked = raced.filter((reply): reply is ProvisionalReply => reply.ok)
  const refused = raced.filter((reply) => !reply.ok)
  t.equal(booked.length, 1, 'one racing body is booked')
  t.equal(refused.length, 1, 'the other is refused')
  const winner = booked[0] as ProvisionalReply
  const stake = apis[0]?.ledger.foldFor('alice').bet('alice', 'reused-0002')?.stakeCents
  t.match(
    refused[0],
    {
      error: { code: 'BET_ID_REUSED' },
      standing: { terms: { stakeCents: stake }, reply: { stamp: winner.stamp, ledgerSeq: winner.ledgerSeq } },
    },
    'the loser of the race is told the winner’s terms and answer',
  )
})
