// Proves that a user flooding placements they cannot cover stops filling the ledger, on a real
// 3-server cluster. Every refused placement used to be an entry in the user's shard, so a flood of
// unfunded bets filled a stream that refuses writes when full. Now past the per-minute cap the API
// node refuses, without writing, what its fold says the ledger would refuse: every placement is
// still answered INSUFFICIENT_FUNDS, and the ledger holds no more refused entries than the cap.

import t from 'tap'
import { DEFAULT_BET_LIMITS } from '../../../nodes/api/bet-limits.ts'
import { betOn, deposit, openPoint, placeBet, startNodeStack } from '../../helpers/node-stack.ts'

const CAP = DEFAULT_BET_LIMITS.refusedPerUserPerMinuteMax
const FLOOD = 3 * CAP

t.test('unfunded placements past the cap are refused without being written', async (t) => {
  const stack = await startNodeStack(t)
  const { apis, client } = stack
  const api = apis[0]
  await deposit(stack, 'pauper', 50)
  await deposit(stack, 'bystander', 100_000)
  const marketId = await openPoint(stack)
  const bet = (userId: string, i: number) =>
    betOn(marketId, { betId: `flood-${userId}-${String(i).padStart(4, '0')}`, userId })
  const codes = new Map<string, number>()
  for (let i = 0; i < FLOOD; i++) {
    const reply = await placeBet(client, bet('pauper', i))
    const code = reply.ok ? 'accepted' : reply.error.code
    codes.set(code, (codes.get(code) ?? 0) + 1)
  }
  t.same(Object.fromEntries(codes), { INSUFFICIENT_FUNDS: FLOOD }, 'every placement is answered, refused')
  const written = (api?.ledger.foldFor('pauper').toJSON().bets ?? []).filter((b) => b.userId === 'pauper')
  t.equal(written.length, CAP, `only ${CAP} refused entries were written, of ${FLOOD}`)
  t.match(await placeBet(client, bet('bystander', 0)), { ok: true }, 'another user is not touched')
  await deposit(stack, 'pauper', 100_000)
  t.match(await placeBet(client, bet('pauper', FLOOD)), { ok: true }, 'a funded placement is still written')
})
