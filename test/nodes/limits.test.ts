// Proves that a user's open-stake limit is exact on a real 3-server cluster, however bets race: eight
// bets of 1,000.00 sent at once against a limit of 5,000.00, spread over two API nodes, once all
// eight were accepted (each node checked its own fold before appending). Now the fold enforces the
// limit each bet carries: exactly five are accepted, three are refused USER_STAKE_LIMIT, and both
// nodes hold the same open stakes.

import t from 'tap'
import type { ApiNode } from '../../nodes/api/api-node.ts'
import { DEFAULT_BET_LIMITS } from '../../nodes/api/bet-service.ts'
import { marketIds } from '../../nodes/trader/trader.ts'
import { deposit, placeBet, startNodeStack } from '../helpers/node-stack.ts'
import { waitFor } from '../helpers/wait.ts'

const STAKE_CENTS = DEFAULT_BET_LIMITS.stakeCentsMax
const LIMIT_CENTS = DEFAULT_BET_LIMITS.userOpenStakeCentsMax
const RACERS = 8

t.test('bets racing past the open-stake limit on two API nodes: exactly the limit is taken', async (t) => {
  t.equal(LIMIT_CENTS / STAKE_CENTS, 5, 'five stakes fit the limit')
  const stack = await startNodeStack(t, { shards: 2, apiNodes: ['api-1', 'api-2'] })
  const { trader, apis, cluster } = stack
  const second = apis[1] as ApiNode
  await deposit(stack, 'rich', 10 * LIMIT_CENTS)
  trader.feed.emit({ type: 'match-start', home: 'A', away: 'B', server: 'home' })
  trader.feed.emit({ type: 'point-start', point: 1, server: 'home' })
  const marketId = marketIds(1).winner
  await waitFor('both nodes hold the open market', () =>
    apis.every((api) => api.replicas.replica('match-1')?.game.markets.get(marketId) !== undefined),
  )
  const clients = [await cluster.connect(), await cluster.connect()]
  const replies = await Promise.all(
    Array.from({ length: RACERS }, async (_, i) => {
      const request = {
        betId: `race-rich-${String(i).padStart(4, '0')}`,
        userId: 'rich',
        gameId: 'match-1',
        marketId,
        selectionId: 'home',
        stakeCents: STAKE_CENTS,
        odds: 1_001,
        policy: 'any',
      }
      return placeBet(clients[i % 2] as (typeof clients)[number], request)
    }),
  )
  const accepted = replies.filter((reply) => reply.ok)
  const refused = replies.filter((reply) => !reply.ok && reply.error.code === 'USER_STAKE_LIMIT')
  t.equal(accepted.length, 5, 'exactly five are booked')
  t.equal(refused.length, RACERS - 5, 'the rest are refused USER_STAKE_LIMIT')
  await waitFor('both nodes folded every bet', () =>
    apis.every((api) => api.ledger.lastSeq() === second.ledger.lastSeq()),
  )
  for (const api of apis)
    t.equal(
      api.ledger.foldFor('rich').exposure('rich').openStakesCents,
      LIMIT_CENTS,
      'open stakes are the limit',
    )
})
